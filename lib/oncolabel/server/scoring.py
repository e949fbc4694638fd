"""MONAI Label adapters for ``score`` tasks (the RDP score of ``pannet_ln``).

* :class:`ScoreInfer` (``InferTask``): CT + tumour mask (uploaded as ``label`` or a label of the datastore) +
  optional ``size_cm`` -> JSON with the score, risk group, suggestion, top feature contributions, model version
  and the research-use notice. No image is returned.
* :class:`ScoreTrain` (``TrainTask``): refits the whole RDP model (radiomics, CNN, selection, glmBoost,
  recalibration, threshold) on the datastore cases whose final label's info carries ``ln_metastasis`` and publishes
  it atomically in the task's model store; nothing is stored when it fails.

Registered in :data:`oncolabel.server.components.SERVER_TASK_FACTORIES` under ``"score"``.
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.interfaces.tasks.train import TrainTask

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.config import ServerConfig
from oncolabel.errors import InvalidInputError, NotFoundError
from oncolabel.io import case_id_of
from oncolabel.modelstore import ModelStore
from oncolabel.scoring.rdp import RdpModel
from oncolabel.server.components import SERVER_TASK_FACTORIES
from oncolabel.server.tasks import ServesModel
from oncolabel.tasks import TaskSpec

logger = logging.getLogger(__name__)

OUTCOME_KEY = "ln_metastasis"
MIN_TRAINING_CASES = 20


class ScoreModelCache:
    """The RDP model currently published in ``store`` (reloaded when a new one is published)."""

    def __init__(self, spec: TaskSpec, store: ModelStore) -> None:
        self.spec, self.store = spec, store
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._model: RdpModel | None = None

    def get(self) -> RdpModel:
        with self._lock:
            key = self.store.stat_key()
            if self._model is None or key != self._key:
                self._model = RdpModel.load(self.store.current())
                self._key = key
                logger.info("%s: serving RDP model %s", self.spec.name, self._model.version)
            return self._model


def _size(request: Dict[str, Any]) -> float | None:
    raw = request.get("size_cm")
    if raw in (None, ""):
        return None
    try:
        size = float(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"size_cm must be a number of centimetres, got {raw!r}") from exc
    if not (math.isfinite(size) and 0 < size < 50):
        raise InvalidInputError(f"size_cm must be a positive tumour size in cm (< 50), got {raw!r}")
    return size


class ScoreInfer(ServesModel, InferTask):
    """RDP score of one case: the CT, its tumour mask and optional clinical fields."""

    def __init__(self, spec: TaskSpec, models: ScoreModelCache, studies: str) -> None:
        super().__init__(type=InferType.CLASSIFICATION, labels=dict(spec.labels), dimension=3,
                         description=spec.description,
                         config={"label_tag": DefaultLabelTag.FINAL.value, "size_cm": ""})
        self.spec, self.models, self.studies = spec, models, studies
        self._datastore: Any = None

    @property
    def served(self) -> ScoreModelCache:
        return self.models

    def info(self) -> Dict[str, Any]:
        out = super().info()
        out["inputs"] = {"image": "contrast CT (pancreatic phase)",
                         "label": "tumour mask (label 1) on the image grid: upload it as 'label', or it is taken from "
                                  "the datastore label with tag 'label_tag' (default 'final')",
                         "size_cm": "optional tumour size; default: maximum 3D diameter of the mask"}
        return out

    def _datastore_label(self, image_path: str, tag: str) -> str:
        from oncolabel.server.datastore import OncoDatastore, check_id

        if self._datastore is None:
            self._datastore = OncoDatastore(self.studies)
        image_id = case_id_of(image_path)
        check_id(tag, what="label tag")
        self._datastore.get_label_info(image_id, tag)  # re-reads the datastore file if another process changed it
        uri = self._datastore.get_label_uri(image_id, tag) if self._datastore.get_image_uri(image_id) else ""
        if not uri:
            raise NotFoundError(f"image {image_id!r} has no '{tag}' label: upload the tumour mask as 'label' or save "
                                "it in the datastore first")
        return uri

    def __call__(self, request: Dict[str, Any]) -> Tuple[None, Dict[str, Any]]:
        image = request.get("image")
        if not isinstance(image, str) or not image:
            raise InvalidInputError("no image given: pass an image id of the datastore or upload a file")
        mask = request.get("label")
        if not isinstance(mask, str) or not mask:
            mask = self._datastore_label(image, str(request.get("label_tag") or DefaultLabelTag.FINAL.value))
        elif Path(mask).resolve().parent != Path(tempfile.gettempdir()).resolve():
            # MONAI Label stores an uploaded 'label' in the temp folder; a path passed in the JSON params would make
            # the server read any file it can see
            raise InvalidInputError("the tumour mask must be uploaded as the 'label' file or saved in the datastore; "
                                    "a server path is not accepted")
        result = self.models.get().predict(image, mask, size_cm=_size(request))
        out = result.to_json()
        out["model"] = self.spec.name
        return None, out


class ScoreTrain(TrainTask):
    """Refit the RDP model on the datastore's outcome-labelled cases and publish it."""

    def __init__(self, spec: TaskSpec, store: ModelStore, config: ServerConfig) -> None:
        super().__init__(f"Refit the {spec.name} RDP score on datastore cases whose final label info has "
                         f"'{OUTCOME_KEY}' (0/1)")
        self.spec, self.store, self.server_config = spec, store, config

    def config(self) -> Dict[str, Any]:
        return {"cnn_iterations": self.spec.training.max_iterations, "n_folds": 5, "n_jobs": 1,
                "min_cases": MIN_TRAINING_CASES}

    def stats(self) -> Dict[str, Any]:
        hist = self.store.history()
        return {"published_models": len(hist), "latest": hist[-1] if hist else None}

    @staticmethod
    def outcome_cases(datastore: Datastore) -> tuple[list[tuple[str, str, str, int]], list[str]]:
        """``(id, image, mask, outcome)`` of the cases with a final label and an outcome; ids without outcome."""
        cases, missing = [], []
        for image_id in sorted(datastore.get_labeled_images()):
            tag = DefaultLabelTag.FINAL.value
            info = datastore.get_label_info(image_id, tag) or {}
            raw = info.get(OUTCOME_KEY)
            if raw is None and isinstance(info.get("params"), dict):
                raw = info["params"].get(OUTCOME_KEY)
            if raw in (None, ""):
                missing.append(image_id)
                continue
            try:
                y = int(raw)
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(f"image {image_id!r}: {OUTCOME_KEY}={raw!r} is not 0 or 1") from exc
            if y not in (0, 1):
                raise InvalidInputError(f"image {image_id!r}: {OUTCOME_KEY}={raw!r} is not 0 or 1")
            cases.append((image_id, datastore.get_image_uri(image_id), datastore.get_label_uri(image_id, tag), y))
        return cases, missing

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        import pandas as pd

        from oncolabel.features.table import radiomics_table
        from oncolabel.scoring.study import StudySettings, fit_rdp

        cases, missing = self.outcome_cases(datastore)
        cfg = {**self.config(), **{k: request[k] for k in ("cnn_iterations", "n_folds", "n_jobs") if k in request}}
        y = np.array([c[3] for c in cases], int)
        n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
        if y.size < MIN_TRAINING_CASES or min(n_pos, n_neg) < int(cfg["n_folds"]):
            raise InvalidInputError(
                f"training needs at least {MIN_TRAINING_CASES} cases with a final tumour label whose info has "
                f"'{OUTCOME_KEY}' (0/1) and at least {cfg['n_folds']} of each outcome; found {y.size} "
                f"({n_pos} LN+, {n_neg} LN-); without outcome: {missing[:10]}")
        try:
            settings = StudySettings(seed=int(request.get("seed", self.server_config.seed)),
                                     n_folds=int(cfg["n_folds"]), n_jobs=int(cfg["n_jobs"]),
                                     cnn_iterations=int(cfg["cnn_iterations"]), methods=("glmboost",))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"training parameters: {exc}") from exc
        ids = [c[0] for c in cases]
        table, _ = radiomics_table([(c[0], c[1], c[2]) for c in cases], self.spec.preprocessing.radiomics(),
                                   perturb=True, n_jobs=settings.n_jobs, seed=settings.seed)
        X = pd.concat([pd.DataFrame({"image": [c[1] for c in cases], "mask": [c[2] for c in cases]}, index=ids),
                       table], axis=1)
        try:
            parent = self.store.current()
        except Exception:  # noqa: BLE001 -- no model yet: this is the first
            parent = None
        fit = fit_rdp(X, y, np.asarray(ids), settings, methods=("glmboost",), feature_sets=("combined",),
                      progress=lambda msg: logger.info("%s training: %s", self.spec.name, msg))
        ckpt = fit.model.checkpoint
        ckpt.training["datastore_images"] = ids
        if parent is not None:
            from oncolabel.provenance import file_sha256

            ckpt.parent_sha256 = file_sha256(parent)
        self.store.publish(ckpt)
        out = {"model": self.spec.name, "model_version": ckpt.version, "n_cases": int(y.size), "ln_positive": n_pos,
               "skipped_without_outcome": missing, "cv_auc": ckpt.metrics.get("auc_training_cv"),
               "features": list(fit.model.head.features), "notice": RESEARCH_USE_ONLY}
        logger.info("%s training done: %s", self.spec.name, out)
        return out


def score_task_factory(spec: TaskSpec, store: ModelStore, config: ServerConfig) -> dict[str, Any]:
    """MONAI Label objects of a ``score`` task."""
    return {"infer": ScoreInfer(spec, ScoreModelCache(spec, store), str(config.studies)),
            "train": ScoreTrain(spec, store, config)}


SERVER_TASK_FACTORIES["score"] = score_task_factory
