"""Versioned model store: every trained checkpoint kept, the served one published atomically.

Layout under ``root/<task>/``::

    current.pt                      the checkpoint being served (replaced atomically)
    versions/<n>-<sha12>.pt         every checkpoint ever published, never overwritten
    history.json                    one record per publication (version, sha256, parent, metrics, time)

A reader that opens ``current.pt`` gets either the old or the new file, never a torn one; a crash during training
or publication leaves the previous model in place.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

from filelock import FileLock

from oncolabel.checkpoint import Checkpoint, save_checkpoint
from oncolabel.errors import ModelNotFoundError
from oncolabel.io import atomic_path
from oncolabel.provenance import file_sha256


class ModelStore:
    """Models of one task under ``root``.

    Args:
        root: folder of the store (e.g. ``<studies>/.oncolabel/models``).
        task: task name.
        initial: checkpoint copied in as version 1 when the store is empty (the shipped or a user model).
    """

    def __init__(self, root: str | Path, task: str, *, initial: str | Path | None = None) -> None:
        self.dir = Path(root) / task
        self.task = task
        self.initial = Path(initial) if initial else None
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "versions").mkdir(exist_ok=True)
        self._lock = FileLock(str(self.dir / ".lock"))
        self._tlock = threading.Lock()

    @property
    def current_path(self) -> Path:
        return self.dir / "current.pt"

    @property
    def history_path(self) -> Path:
        return self.dir / "history.json"

    def history(self) -> list[dict[str, Any]]:
        if not self.history_path.exists():
            return []
        return json.loads(self.history_path.read_text())

    def current(self) -> Path:
        """Path of the served checkpoint (seeded from ``initial`` on first use)."""
        if not self.current_path.exists():
            if self.initial is None or not self.initial.is_file():
                raise ModelNotFoundError(f"no model for task {self.task!r} in {self.dir} and no initial checkpoint")
            with self._tlock, self._lock:
                if not self.current_path.exists():
                    self._publish_file(self.initial, {"source": str(self.initial)})
        return self.current_path

    def stat_key(self) -> tuple[int, int, int]:
        """Changes whenever a new model is published (mtime_ns, size, inode of ``current.pt``)."""
        st = self.current().stat()
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _publish_file(self, src: Path, record: dict[str, Any]) -> Path:
        sha = file_sha256(src)
        n = len(self.history()) + 1
        version_path = self.dir / "versions" / f"{n:04d}-{sha[:12]}.pt"
        with atomic_path(version_path) as tmp:
            shutil.copyfile(src, tmp)
        with atomic_path(self.current_path) as tmp:
            shutil.copyfile(version_path, tmp)
        hist = self.history() + [{"version": n, "sha256": sha, "file": version_path.name,
                                   "published_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                                   **record}]
        with atomic_path(self.history_path) as tmp:
            tmp.write_text(json.dumps(hist, indent=2, default=str))
        return self.current_path

    def publish(self, ckpt: Checkpoint) -> Path:
        """Write ``ckpt`` as a new version and make it the served model (atomically)."""
        with self._tlock, self._lock:
            staging = self.dir / f".staging-{os.getpid()}-{threading.get_ident()}.pt"
            try:
                save_checkpoint(ckpt, staging)
                out = self._publish_file(staging, {"parent_sha256": ckpt.parent_sha256, "metrics": ckpt.metrics,
                                                   "training": {k: v for k, v in ckpt.training.items()
                                                                if k != "history_tail"}})
            finally:
                staging.unlink(missing_ok=True)
            ckpt.path, ckpt.sha256 = out, file_sha256(out)
            return out
