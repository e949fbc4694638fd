"""Server configuration: the only place that parses MONAI Label's ``--conf key value`` strings."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from oncolabel.errors import InvalidInputError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise InvalidInputError(f"conf {key}={value!r}: expected true or false")


@dataclass(frozen=True)
class ServerConfig:
    """Settings of the OncoLabel MONAI Label app.

    Attributes:
        studies: the datastore folder.
        work_dir: OncoLabel's own state (model store, label versions, logs): ``<studies>/.oncolabel``.
        tasks: task names served (default: every registered task).
        tasks_explicit: True when ``tasks`` came from the conf (then a task without a model is an error;
            by default such a task is skipped with a warning).
        models: task -> initial checkpoint override (``--conf model.<task> PATH``); default: the shipped model.
        device: ``cpu`` or ``cuda``.
        max_upload_mb: uploads larger than this are refused with 413.
        uncertainty_samples: MC-dropout passes per image for active-learning scores.
        strategy_max_compute: unscored images the uncertainty strategy may score on the fly per request.
        seed: seed of the random strategy and of training rounds.
        pacs_url: DICOMweb root of the PACS the datastore is fed from (``oncolabel serve --pacs URL``).
        pacs_store_labels: also store each submitted (``final``) label of an image from that PACS back in it, as
            a DICOM SEG (off by default: nothing is written to the PACS unless asked).
    """

    studies: Path
    work_dir: Path
    tasks: tuple[str, ...] = ()
    tasks_explicit: bool = False
    models: Mapping[str, Path] = field(default_factory=dict)
    device: str = "cpu"
    max_upload_mb: float = 1024.0
    uncertainty_samples: int = 3
    strategy_max_compute: int = 8
    seed: int = 0
    pacs_url: str | None = None
    pacs_store_labels: bool = False

    KEYS = ("tasks", "device", "max_upload_mb", "uncertainty_samples", "strategy_max_compute", "seed", "work_dir",
            "model.<task>", "pacs_url", "pacs_store_labels")

    @property
    def models_dir(self) -> Path:
        return self.work_dir / "models"

    @classmethod
    def from_conf(cls, studies: str | Path, conf: Mapping[str, str] | None) -> "ServerConfig":
        """Parse MONAI Label's string conf; unknown keys are an error with a suggestion."""
        from oncolabel.tasks import get_task, task_names

        conf = dict(conf or {})
        studies = Path(studies)
        kw: dict = {"studies": studies, "work_dir": Path(conf.pop("work_dir", studies / ".oncolabel"))}
        models: dict[str, Path] = {}
        for key in list(conf):
            if key.startswith("model."):
                task = get_task(key[len("model."):]).name
                models[task] = Path(conf.pop(key))
        if "tasks" in conf:
            kw["tasks"] = tuple(get_task(t.strip()).name for t in conf.pop("tasks").split(",") if t.strip())
            kw["tasks_explicit"] = True
        else:
            kw["tasks"] = tuple(task_names())
        if "device" in conf:
            kw["device"] = conf.pop("device")
        for key, typ in (("max_upload_mb", float), ("uncertainty_samples", int), ("strategy_max_compute", int),
                         ("seed", int)):
            if key in conf:
                raw = conf.pop(key)
                try:
                    kw[key] = typ(raw)
                except ValueError as exc:
                    raise InvalidInputError(f"conf {key}={raw!r}: expected a {typ.__name__}") from exc
        if conf.get("pacs_url"):
            from oncolabel.pacs import check_dicomweb_url

            kw["pacs_url"] = check_dicomweb_url(conf.pop("pacs_url"))
        conf.pop("pacs_url", None)
        if "pacs_store_labels" in conf:
            kw["pacs_store_labels"] = _bool("pacs_store_labels", conf.pop("pacs_store_labels"))
            if kw["pacs_store_labels"] and not kw.get("pacs_url"):
                raise InvalidInputError("conf pacs_store_labels=true needs a PACS: give pacs_url (--pacs URL) too")
        # keys MONAI Label itself passes through
        for passthrough in ("preload", "skip_trainers", "skip_strategies", "skip_scoring", "server_mode"):
            conf.pop(passthrough, None)
        if conf:
            key = next(iter(conf))
            close = difflib.get_close_matches(key, [k for k in cls.KEYS], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InvalidInputError(f"unknown conf key {key!r}{hint} (known: {', '.join(cls.KEYS)})")
        return cls(models=models, **kw)
