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

