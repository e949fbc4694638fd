"""Exception types raised by OncoLabel.

Errors are raised next to the bad input, with the bad value in the message, and caught only at
the edges (HTTP endpoint, CLI, Slicer widget), where they become one sentence a radiologist can act on.
"""

from __future__ import annotations


class OncoLabelError(Exception):
    """Base class of every error OncoLabel raises on purpose."""


class InvalidInputError(OncoLabelError, ValueError):
    """An input (image, mask, table, request field) is unusable; the message names the problem."""


class ImageReadError(InvalidInputError):
    """An image file or DICOM folder cannot be read (corrupt, wrong type, empty, ambiguous)."""


class GeometryError(InvalidInputError):
    """Two images that must share a grid do not (size, spacing, origin or direction differ)."""


class UnknownTaskError(OncoLabelError, KeyError):
    """A task / model name that does not exist; the message lists the known names."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the plain sentence
        return str(self.args[0]) if self.args else ""


class ModelNotFoundError(OncoLabelError, FileNotFoundError):
    """A checkpoint path does not exist or holds no usable model."""


class CheckpointError(OncoLabelError):
    """A checkpoint exists but does not match the task spec it is loaded for."""


class DatastoreError(OncoLabelError):
    """A datastore operation was refused (unknown id, path trick, conflicting write)."""


class NotFittedError(OncoLabelError, AttributeError):
    """An estimator was used before ``fit``."""


class NotFoundError(OncoLabelError, LookupError):
    """A requested image, label or model does not exist."""


class ConflictError(DatastoreError):
    """A write would overwrite something already stored (e.g. an image id that exists)."""


class PacsError(OncoLabelError):
    """A PACS (DICOMweb service) could not be reached or answered with an error; the message names the URL."""


class PayloadTooLargeError(InvalidInputError):
    """An upload exceeds the configured size limit."""
