"""Helpers shared by the CLI commands (the CLI is the only layer that prints)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from oncolabel.errors import InvalidInputError
from oncolabel.io import atomic_path


def read_tumour_mask(mask: str | Path, ct: str | Path, image: Any, roi: str | None) -> Any:
    """The tumour mask of a CT read with :func:`oncolabel.masks.read_mask` (a label image, an RTSTRUCT structure or
    a DICOM SEG segment), checked against the CT series' frame of reference when the CT is a DICOM folder."""
    from oncolabel.masks import read_mask

    headers = None
    if Path(ct).is_dir():
        from oncolabel.dicom_seg import series_headers

        headers = series_headers(ct)
    return read_mask(mask, image, roi=roi, reference_headers=headers, what="tumour mask")


def write_json(data: Any, dest: str | Path) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str))
    return Path(dest)


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links, or the same file under another name
    except OSError:  # one of them does not exist (yet)
        return False


def check_output_paths(outputs: Mapping[str, str | Path | None], inputs: Iterable[str | Path]) -> None:
    """Refuse, before any work, an output file that is one of the inputs (writing it would destroy the input) or
    another output (the second write would replace the first).

    Args:
        outputs: option name (as the user typed it, e.g. ``OUTPUT``, ``--json``) -> path; ``None`` = not asked for.
        inputs: the input files or folders.

    Raises:
        InvalidInputError: naming the clashing option and path.
    """
    given = [(name, Path(path)) for name, path in outputs.items() if path]
    sources = [Path(p) for p in inputs if p]
    for k, (name, path) in enumerate(given):
        for src in sources:
            if _same_file(path, src):
                raise InvalidInputError(f"{name} {str(path)!r} is an input file; writing it would destroy the input: "
                                        "choose another file name")
        for other, other_path in given[:k]:
            if _same_file(path, other_path):
                raise InvalidInputError(f"{name} FILE must differ from {other} FILE")


def register_extras(subparsers: Any, modules: tuple[str, ...], hook: str) -> None:
    """Call ``hook(subparsers)`` of each module in ``modules`` that exists (task families add sub-commands)."""
    import importlib

    for name in modules:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        getattr(mod, hook)(subparsers)
