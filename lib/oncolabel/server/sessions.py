"""MONAI Label sessions (``PUT /session/``: the official Slicer plugin's upload of a volume the server does not hold)
that refuse what cannot be read.

The stock :class:`monailabel.utils.sessions.Sessions` stores any upload: a corrupt or 2D file became a session whose
every inference then failed with a message naming the server's session folder. Here the stored upload is read
(:func:`oncolabel.io.read_image`: a NIfTI/NRRD/MHA file or one DICOM series) and must be a 3D volume; otherwise the
session is removed again and the request is refused with a 400 naming the uploaded file, not the server's paths.
Sessions already stored are never touched by a refused upload (each upload gets its own new folder).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from monailabel.utils.sessions import Sessions

from oncolabel.errors import InvalidInputError, OncoLabelError
from oncolabel.io import read_image, require_3d

logger = logging.getLogger(__name__)


class CheckedSessions(Sessions):
    """:class:`~monailabel.utils.sessions.Sessions` whose :meth:`add_session` refuses unreadable or non-3D uploads."""

    def add_session(self, data_file: str, expiry: int = 0, uncompress: bool = False,
                    session_id: Any = None) -> tuple[str, Any]:
        name = os.path.basename(str(data_file).rstrip("/\\")) or "upload"
        sid, info = super().add_session(data_file, expiry, uncompress, session_id)
        try:
            require_3d(read_image(info.image), what=f"uploaded image {name!r}")
        except OncoLabelError as exc:
            self.remove_session(sid)
            message = str(exc)
            for path in {str(info.image), str(info.path), str(data_file)}:
                message = message.replace(path, name)
            logger.info("session upload %r refused: %s", name, message)
            raise InvalidInputError(message if name in message else f"uploaded image {name!r}: {message}") from exc
        return sid, info
