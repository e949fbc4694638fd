"""Model checkpoints: self-describing, hashed, published atomically.

A checkpoint is a ``torch.save`` dict::

    {"format": "oncolabel-checkpoint/1", "task": <task name>, "network": {"name": ..., "kwargs": {...}},
     "preprocessing": {...}, "state_dict": {...}, "metrics": {...}, "training": {...},
     "parent_sha256": <checkpoint it was fine-tuned from or None>, "created_utc": ..., "software": {...}}

It is written to a temporary file in the destination folder and moved into place with :func:`os.replace`,
so a reader never sees a torn file and a crash mid-write leaves the previous model served.
"""

from __future__ import annotations

import datetime as _dt
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from oncolabel.errors import CheckpointError, ModelNotFoundError
from oncolabel.io import atomic_path
from oncolabel.provenance import file_sha256, package_versions

FORMAT = "oncolabel-checkpoint/1"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the network and what is known about it."""

    task: str
    network: Mapping[str, Any]
    preprocessing: Mapping[str, Any]
    state_dict: Mapping[str, torch.Tensor]
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    parent_sha256: str | None = None
    created_utc: str = ""
    software: dict[str, str] = field(default_factory=dict)
    #: a fitted false-positive filter of predicted components (:class:`oncolabel.candidates.ComponentFilter`
    #: ``to_dict()``, plain numbers) or None
    component_filter: dict[str, Any] | None = None
    path: Path | None = None
    sha256: str | None = None

    @property
    def version(self) -> str:
        """Short model version: the first 12 hex digits of the file's SHA-256."""
        return (self.sha256 or "unsaved")[:12]

    def preprocessing_matches(self, preprocessing: Any) -> bool:
        """Whether this checkpoint was trained with ``preprocessing`` (a task spec's preprocessing object).

        A setting added to a preprocessing class after the checkpoint was written is absent from its record and
        counts as its default value: options are added with defaults that keep the old behaviour, so older
        checkpoints stay usable. Any other difference (a changed value, a setting the class no longer has) is a
        mismatch.
        """
        current = preprocessing.to_dict()
        saved = dict(self.preprocessing)
        inner = getattr(preprocessing, "inner", preprocessing)  # a caching wrapper delegates to the real object
        if dataclasses.is_dataclass(inner):
            for f in dataclasses.fields(inner):
                if f.name not in saved and f.name in current and f.default is not dataclasses.MISSING:
                    saved[f.name] = f.default
        return saved == current

    def input_spacing(self, default: Mapping[str, Any] | None = None) -> dict[str, tuple[float, float]] | None:
        """Range (mm) of the in-plane pixel size (``inplane``) and slice spacing (``slice``) of the images the
        network was trained on, its parents' included, as the trainer records it under ``training["input_spacing_mm"]``;
        ``default`` (e.g. a task's :attr:`~oncolabel.tasks.TaskSpec.assumed_input_spacing_mm`) for a checkpoint that
        records none (those written before 2026-12-07)."""
        record = self.training.get("input_spacing_mm") or default
        if not record:
            return None
        return {k: (float(record[k][0]), float(record[k][1])) for k in ("inplane", "slice")}


def merge_input_spacing(*ranges: Mapping[str, Any] | None) -> dict[str, tuple[float, float]] | None:
    """The union of :meth:`Checkpoint.input_spacing` ranges (``None`` entries are skipped)."""
    given = [r for r in ranges if r]
    if not given:
        return None
    return {k: (min(float(r[k][0]) for r in given), max(float(r[k][1]) for r in given)) for k in ("inplane", "slice")}


def save_checkpoint(ckpt: Checkpoint, dest: str | Path) -> Path:
    """Write ``ckpt`` atomically to ``dest``; sets ``ckpt.path`` and ``ckpt.sha256``."""
    dest = Path(dest)
    payload = {
        "format": FORMAT, "task": ckpt.task, "network": dict(ckpt.network),
        "preprocessing": dict(ckpt.preprocessing),
        "state_dict": {k: v.detach().cpu() for k, v in ckpt.state_dict.items()},
        "metrics": ckpt.metrics, "training": ckpt.training, "parent_sha256": ckpt.parent_sha256,
        "created_utc": ckpt.created_utc or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "software": ckpt.software or package_versions(("torch", "monai", "numpy")),
        "component_filter": ckpt.component_filter,
    }
    with atomic_path(dest) as tmp:
        torch.save(payload, tmp)
    ckpt.path, ckpt.sha256 = dest, file_sha256(dest)
    return dest


def load_checkpoint(path: str | Path, *, task: str | None = None) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        ModelNotFoundError: no file at ``path``.
        CheckpointError: not an OncoLabel checkpoint, or one for another task.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelNotFoundError(f"{p}: no model checkpoint at this path")
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(f"{p}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{p}: not an OncoLabel checkpoint (expected format {FORMAT!r})")
    if task is not None and raw.get("task") != task:
        raise CheckpointError(f"{p}: checkpoint is for task {raw.get('task')!r}, not {task!r}")
    return Checkpoint(task=raw["task"], network=raw["network"], preprocessing=raw["preprocessing"],
                      state_dict=raw["state_dict"], metrics=raw.get("metrics", {}),
                      training=raw.get("training", {}), parent_sha256=raw.get("parent_sha256"),
                      created_utc=raw.get("created_utc", ""), software=raw.get("software", {}),
                      component_filter=raw.get("component_filter"), path=p, sha256=file_sha256(p))
