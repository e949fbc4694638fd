"""Helpers shared by the CLI commands (the CLI is the only layer that prints)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oncolabel.io import atomic_path


def write_json(data: Any, dest: str | Path) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str))
    return Path(dest)



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
