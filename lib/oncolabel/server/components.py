"""Builds the OncoLabel objects a MONAI Label app hands to the server, from its configuration."""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any, Callable, Mapping

from oncolabel.config import ServerConfig
from oncolabel.errors import ModelNotFoundError, NotFoundError
from oncolabel.inference import default_checkpoint_path
from oncolabel.modelstore import ModelStore
from oncolabel.server.datastore import OncoDatastore
from oncolabel.server.tasks import (PredictorCache, RandomStrategy, SegmentationInfer, SegmentationTrain,
                                    UncertaintyScoring, UncertaintyStrategy)
from oncolabel.tasks import TaskSpec, get_task


logger = logging.getLogger(__name__)

#: task kind -> factory(spec, store, config) returning a dict with optional keys "infer" (an InferTask),
#: "train" (a TrainTask), "strategies" and "scoring" (name -> Strategy / ScoringMethod) for MONAI Label;
#: segmentation is built in, other task families register theirs (e.g. oncolabel.server.classification)
SERVER_TASK_FACTORIES: dict[str, Callable[[TaskSpec, ModelStore, ServerConfig], dict[str, Any]]] = {}
_FACTORY_MODULES = ("oncolabel.server.classification", "oncolabel.server.scoring")


def _load_factory_modules() -> None:
    for name in _FACTORY_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


class AppComponents:
    """Datastore, infer/train tasks, strategies and scoring methods for ``studies`` and MONAI Label's ``conf``."""

    def __init__(self, studies: str, conf: Mapping[str, str] | None) -> None:
        self.config = ServerConfig.from_conf(studies, conf)
        self.specs: dict[str, TaskSpec] = {}
        self.stores: dict[str, ModelStore] = {}
        self.skipped: dict[str, str] = {}
        for name in self.config.tasks:
            spec = get_task(name)
            try:
                initial = self.config.models.get(name) or default_checkpoint_path(spec)
            except ModelNotFoundError as exc:
                if self.config.tasks_explicit:
                    raise
                logger.warning("task %s not served: %s", name, exc)
                self.skipped[name] = str(exc)
                continue
            self.specs[name] = spec
            self.stores[name] = ModelStore(self.config.models_dir, name, initial=initial)
        self.predictors = {name: PredictorCache(spec, self.stores[name], self.config.device)
                           for name, spec in self.specs.items() if spec.kind == "segmentation"}
        _load_factory_modules()
        self.other_tasks = {name: SERVER_TASK_FACTORIES[spec.kind](spec, self.stores[name], self.config)
                            for name, spec in self.specs.items()
                            if spec.kind != "segmentation" and spec.kind in SERVER_TASK_FACTORIES}
        first = next(iter(self.predictors), None)
        self.scoring_method = (UncertaintyScoring(self.predictors[first], self.config.uncertainty_samples)
                               if first else None)

    @staticmethod
    def check_image_request(request: Mapping[str, Any], datastore: Any) -> None:
        """Refuse an infer request for an image id the datastore does not hold (404 instead of a vague 400).

        Path-like ids never get here (refused at the HTTP edge); an existing path is an uploaded file.
        """
        image = request.get("image")
        if isinstance(image, str) and image and not os.path.exists(image) and not datastore.get_image_uri(image):
            raise NotFoundError(f"image {image!r} is not in the datastore")

    def datastore(self) -> OncoDatastore:
        exporter = None
        if self.config.pacs_store_labels:
            from oncolabel.pacs import DicomWebSource
            from oncolabel.server.pacs_mirror import PacsLabelExporter

            segments = {int(v): name for spec in self.specs.values() if spec.kind == "segmentation"
                        for name, v in spec.labels.items() if int(v) != 0}
            exporter = PacsLabelExporter(DicomWebSource(self.config.pacs_url), segments,
                                         algorithm=f"OncoLabel {', '.join(sorted(self.predictors)) or 'labels'}")
        return OncoDatastore(str(self.config.studies), on_final_label=exporter)

    @staticmethod
    def sessions() -> Any:
        """MONAI Label's upload sessions, refusing unreadable uploads (:mod:`oncolabel.server.sessions`)."""
        from monailabel.config import settings

        from oncolabel.server.sessions import CheckedSessions

        return CheckedSessions(settings.MONAI_LABEL_SESSION_PATH, settings.MONAI_LABEL_SESSION_EXPIRY)

    def infers(self) -> dict[str, Any]:
        results = str(self.config.work_dir / "results")
        out = {name: SegmentationInfer(self.specs[name], pc, results) for name, pc in self.predictors.items()}
        out.update({name: parts["infer"] for name, parts in self.other_tasks.items() if parts.get("infer")})
        return out

    def trainers(self) -> dict[str, Any]:
        out = {name: SegmentationTrain(self.specs[name], self.stores[name], self.config.device, self.config.seed)
               for name in self.predictors}
        out.update({name: parts["train"] for name, parts in self.other_tasks.items() if parts.get("train")})
        return out

    def strategies(self) -> dict[str, Any]:
        out: dict[str, Any] = {"random": RandomStrategy(self.config.seed)}
        if self.scoring_method is not None:
            out = {"uncertainty": UncertaintyStrategy(self.scoring_method, self.config.strategy_max_compute), **out}
        for parts in self.other_tasks.values():
            out.update(parts.get("strategies", {}))
        return out

    def scoring_methods(self) -> dict[str, Any]:
        out = {"uncertainty": self.scoring_method} if self.scoring_method is not None else {}
        for parts in self.other_tasks.values():
            out.update(parts.get("scoring", {}))
        return out
