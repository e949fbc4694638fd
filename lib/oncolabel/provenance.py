"""Provenance records: which software, which model, which settings produced an output."""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from oncolabel import RESEARCH_USE_ONLY, __version__

_PACKAGES = ("numpy", "scipy", "SimpleITK", "torch", "monai", "scikit-learn", "pyradiomics", "monailabel")


def package_versions(packages: tuple[str, ...] = _PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (``"not installed"`` where absent)."""
    out: dict[str, str] = {"oncolabel": __version__, "python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def file_sha256(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def path_sha256(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder's content (a DICOM series): the digest of each visible file's relative path
    and SHA-256, in path order, so that renaming, adding, removing or changing a file changes it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    p = Path(path)
    if not p.is_dir():
        return file_sha256(p)
    h = hashlib.sha256()
    for f in sorted(f for f in p.rglob("*") if f.is_file()
                    and not any(part.startswith(".") for part in f.relative_to(p).parts)):
        h.update(f"{f.relative_to(p).as_posix()}\t{file_sha256(f)}\n".encode())
    return h.hexdigest()


def provenance(*, settings: Mapping[str, Any] | None = None, model_path: str | Path | None = None,
               inputs: Mapping[str, str | Path] | None = None, **extra: Any) -> dict[str, Any]:
    """A JSON-serialisable provenance record.

    Args:
        settings: the settings used (task spec, thresholds, ...).
        model_path: checkpoint used; its SHA-256 is recorded.
        inputs: name -> file path; each file's SHA-256 is recorded.
        extra: further fields recorded as given.
    """
    rec: dict[str, Any] = {
        "notice": RESEARCH_USE_ONLY,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "software": package_versions(),
        "platform": platform.platform(),
    }
    if settings is not None:
        rec["settings"] = dict(settings)
    if model_path is not None:
        rec["model"] = {"path": str(model_path), "sha256": file_sha256(model_path)}
    if inputs:
        rec["inputs"] = {k: {"path": str(v), "sha256": file_sha256(v)} for k, v in inputs.items()}
    rec.update(extra)
    return rec
