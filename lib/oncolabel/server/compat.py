"""Compatibility fixes that let monailabel 0.8.5 run with current dependencies.

1. **pydicom 3** removed ``pydicom._storage_sopclass_uids``; ``pydicom_seg`` 0.4.1 (imported by monailabel's
   endpoints and datastores) still imports ``SegmentationStorage`` from it, so the server fails at import
   (MONAI Label issue #1841). pydicom 3 keeps every storage SOP class UID in :mod:`pydicom.uid`; we register a
   module under the old name that exposes exactly those UIDs. OncoLabel itself writes DICOM SEG with highdicom,
   never with pydicom_seg.
2. **MLflow tracking**: monailabel's ``BasicTrainTask`` turns MLflow tracking on by default with an empty
   tracking URI, which current MLflow rejects. OncoLabel's train tasks do not use ``BasicTrainTask``; tracking
   is off unless a valid URI is configured (``oncolabel serve --tracking-uri sqlite:///...``), and
   :func:`configure_tracking` validates such a URI up front.

Both are applied by :func:`apply` before monailabel's app is imported (``oncolabel serve`` and the app's
``main.py``, which also runs in MONAI Label's training subprocess).
"""

from __future__ import annotations

import importlib
import os
import sys
import types

from oncolabel.errors import InvalidInputError

_SHIM = "pydicom._storage_sopclass_uids"


def install_pydicom_compat() -> bool:
    """Register ``pydicom._storage_sopclass_uids`` under pydicom 3. Returns True when a shim was installed."""
    import pydicom
    import pydicom.uid

    try:
        importlib.import_module(_SHIM)
        return False  # pydicom 2.x (or already shimmed)
    except ModuleNotFoundError:
        pass
    mod = types.ModuleType(_SHIM, "Storage SOP class UIDs (OncoLabel compatibility shim for pydicom 3)")
    for name in dir(pydicom.uid):
        value = getattr(pydicom.uid, name)
        if isinstance(value, pydicom.uid.UID) and not name.startswith("_"):
            setattr(mod, name, value)
    sys.modules[_SHIM] = mod
    pydicom._storage_sopclass_uids = mod  # type: ignore[attr-defined]
    return True


def configure_tracking(uri: str | None) -> None:
    """Set monailabel's experiment-tracking environment.

    ``None`` or ``""`` switches tracking off; otherwise ``uri`` must be a URI MLflow accepts
    (``sqlite:///abs/path.db``, ``http://127.0.0.1:5000``, or ``file:///abs/dir``).
    """
    if not uri:
        os.environ["MONAI_LABEL_TRACKING_ENABLED"] = "false"
        os.environ.pop("MONAI_LABEL_TRACKING_URI", None)
        return
    if not uri.startswith(("sqlite:///", "http://", "https://", "file:///", "postgresql://", "mysql://")):
        raise InvalidInputError(f"tracking URI {uri!r}: use sqlite:///ABS/PATH.db, http(s)://HOST:PORT or file:///ABS/DIR")
    os.environ["MONAI_LABEL_TRACKING_ENABLED"] = "true"
    os.environ["MONAI_LABEL_TRACKING_URI"] = uri


def apply() -> None:
    """Apply every fix (idempotent)."""
    install_pydicom_compat()
    if "MONAI_LABEL_TRACKING_ENABLED" not in os.environ:
        configure_tracking(None)
