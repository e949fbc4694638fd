"""MONAI Label task adapters: hand OncoLabel library objects to MONAI Label's interfaces.

* :class:`SegmentationInfer` (``InferTask``): the task's predictor on the served model; reloads when a new
  model is published.
* :class:`SegmentationTrain` (``TrainTask``): fine-tunes the served model on the datastore's final labels with the
  generic :class:`oncolabel.training.Trainer` and publishes the result atomically.
* :class:`UncertaintyScoring` (``ScoringMethod``) and :class:`UncertaintyStrategy` / :class:`RandomStrategy`
  (``Strategy``): active learning.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from typing import Any, Dict, Tuple

import numpy as np
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.checkpoint import load_checkpoint
from oncolabel.errors import InvalidInputError
from oncolabel.inference import SegmentationPredictor
from oncolabel.io import read_image, write_image
from oncolabel.modelstore import ModelStore
from oncolabel.tasks import TaskSpec
from oncolabel.training import Trainer, finetune_settings

logger = logging.getLogger(__name__)

UNCERTAINTY_KEY = "oncolabel_uncertainty"


class PredictorCache:
    """The predictor for the model currently published in ``store`` (reloaded when it changes).

    ``predictor_class`` (called as ``cls(checkpoint, task=spec, device=device)``) lets other task families reuse it.
    """

    predictor_class: Any = SegmentationPredictor

    def __init__(self, spec: TaskSpec, store: ModelStore, device: str) -> None:
        self.spec, self.store, self.device = spec, store, device
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._predictor: SegmentationPredictor | None = None

    def get(self) -> SegmentationPredictor:
        with self._lock:
            key = self.store.stat_key()
            if self._predictor is None or key != self._key:
                ckpt = load_checkpoint(self.store.current(), task=self.spec.name)
                self._predictor = self.predictor_class(ckpt, task=self.spec, device=self.device)
                self._key = key
                logger.info("%s: serving model %s", self.spec.name, self._predictor.version)
            return self._predictor


class ServesModel:
    """``is_valid`` and ``info`` of an infer task serving the current model of ``self.served`` (a cache with
    ``store`` and ``get()``, such as :class:`PredictorCache`): valid while a model is published; ``info`` names the
    served model version (or why none can be loaded) and the research-use notice, and never fails."""

    served: Any

    def is_valid(self) -> bool:
        try:
            self.served.store.current()
            return True
        except Exception:  # noqa: BLE001 -- info() must not fail because one model is missing
            return False

    def info(self) -> Dict[str, Any]:
        out = super().info()  # type: ignore[misc]  -- the InferTask next in the MRO
        try:
            out["model_version"] = self.served.get().version
        except Exception as exc:  # noqa: BLE001
            out["model_version"] = f"unavailable: {exc}"
        out["notice"] = RESEARCH_USE_ONLY
        return out


class SegmentationInfer(ServesModel, InferTask):
    """Segmentation inference on an image of the datastore or an uploaded file."""

    def __init__(self, spec: TaskSpec, predictors: PredictorCache, results_dir: str) -> None:
        labels = {k: v for k, v in spec.labels.items() if v != 0}
        super().__init__(type=InferType.SEGMENTATION, labels=labels, dimension=3,
                         description=spec.description, config={"device": predictors.device})
        self.spec, self.predictors = spec, predictors
        # results are written here, not to /tmp: MONAI Label deletes the file after sending it, and a client on the
        # same machine saving into /tmp under the same name would lose its copy
        self.results_dir = results_dir
        os.makedirs(results_dir, exist_ok=True)

    @property
    def served(self) -> PredictorCache:
        return self.predictors

    def __call__(self, request: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
        image_path = request.get("image")
        if not isinstance(image_path, str) or not image_path:
            raise InvalidInputError("no image given: pass an image id of the datastore or upload a file")
        predictor = self.predictors.get()
        result = predictor.predict(read_image(image_path))
        fd, out = tempfile.mkstemp(prefix=f"{self.spec.name}_", suffix=".nii.gz", dir=self.results_dir)
        os.close(fd)
        write_image(result.label, out)
        params = result.to_json()
        params.update({"model": self.spec.name, "model_version": predictor.version, "label_names": dict(self.spec.labels)})
        return out, params


class SegmentationTrain(TrainTask):
    """One active-learning training round: fine-tune the served model on the final labels, then publish."""

    def __init__(self, spec: TaskSpec, store: ModelStore, device: str, seed: int) -> None:
        super().__init__(f"Fine-tune {spec.name} on the datastore's final labels (warm start from the served model)")
        self.spec, self.store, self.device, self.seed = spec, store, device, seed

    def config(self) -> Dict[str, Any]:
        ft = finetune_settings(self.spec)
        return {"max_iterations": ft["iterations"], "learning_rate": ft["learning_rate"],
                "batch_size": self.spec.training.batch_size, "device": self.device}

    def stats(self) -> Dict[str, Any]:
        hist = self.store.history()
        return {"published_models": len(hist), "latest": hist[-1] if hist else None}

    def trainer(self, request: Dict[str, Any], parent: Any) -> Trainer:
        """The warm-started trainer of one round, with the request's overrides of :meth:`config`."""
        cfg = self.config()
        try:
            iterations = int(request.get("max_iterations", cfg["max_iterations"]))
            lr = float(request.get("learning_rate", cfg["learning_rate"]))
            batch = int(request.get("batch_size", cfg["batch_size"]))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"training parameters: {exc}") from exc
        return Trainer(self.spec, iterations=iterations, learning_rate=lr, batch_size=batch, init=parent,
                       device=request.get("device", self.device), seed=int(request.get("seed", self.seed)))

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        items = datastore.datalist()
        if not items:
            raise InvalidInputError(f"no image has a '{DefaultLabelTag.FINAL.value}' label yet: submit a corrected "
                                    "label before training")
        parent = load_checkpoint(self.store.current(), task=self.spec.name)
        trainer = self.trainer(request, parent)
        iterations = trainer.iterations
        result = trainer.fit(items)
        result.checkpoint.training["datastore_images"] = [str(i["image"]) for i in items]
        self.store.publish(result.checkpoint)
        out = {"model": self.spec.name, "model_version": result.checkpoint.version,
               "parent_version": parent.version, "iterations": iterations, "n_labels": len(items),
               "seconds": round(result.seconds, 1), "final_loss": result.history[-1]["loss"] if result.history else None}
        logger.info("training round done: %s", out)
        return out


def _unlabeled(datastore: Datastore, task: str | None = None) -> list[str]:
    """Unlabelled images; with ``task``, only those not reserved for another task (image info ``task``)."""
    images = sorted(datastore.get_unlabeled_images())
    if task is None:
        return images
    return [i for i in images if datastore.get_image_info(i).get("task", task) == task]


class UncertaintyScoring(ScoringMethod):
    """Score unlabelled images by model uncertainty (MC dropout + flip TTA); stored in the image info."""

    def __init__(self, predictors: PredictorCache, samples: int) -> None:
        super().__init__("Per-image uncertainty (Monte-Carlo dropout + flip test-time augmentation)")
        self.predictors, self.samples = predictors, samples

    def score_image(self, datastore: Datastore, image_id: str) -> float:
        predictor = self.predictors.get()
        info = datastore.get_image_info(image_id).get(UNCERTAINTY_KEY) or {}
        if info.get("model_version") == predictor.version:
            return float(info["uncertainty"])
        res = predictor.uncertainty(read_image(datastore.get_image_uri(image_id)), samples=self.samples)
        datastore.update_image_info(image_id, {UNCERTAINTY_KEY: {**res, "model_version": predictor.version}})
        return float(res["uncertainty"])

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        task = self.predictors.spec.name
        return {"scores": {i: self.score_image(datastore, i) for i in _unlabeled(datastore, task)},
                "model_version": self.predictors.get().version}


class UncertaintyStrategy(Strategy):
    """Next sample = the unlabelled image the current model is least sure about."""

    def __init__(self, scoring: UncertaintyScoring, max_compute: int) -> None:
        super().__init__("Uncertainty first: the unlabelled image with the highest model uncertainty")
        self.scoring, self.max_compute = scoring, max_compute

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        images = _unlabeled(datastore, self.scoring.predictors.spec.name)
        if not images:
            return {}
        version = self.scoring.predictors.get().version
        scores: dict[str, float] = {}
        computed = 0
        for image_id in images:
            info = datastore.get_image_info(image_id).get(UNCERTAINTY_KEY) or {}
            if info.get("model_version") == version:
                scores[image_id] = float(info["uncertainty"])
            elif computed < self.max_compute:
                scores[image_id] = self.scoring.score_image(datastore, image_id)
                computed += 1
        if not scores:
            return {"id": images[0], "strategy": "uncertainty", "note": "no image scored yet"}
        best = max(sorted(scores), key=lambda k: scores[k])
        return {"id": best, "strategy": "uncertainty", "uncertainty": scores[best], "model_version": version,
                "scored": len(scores), "unlabeled": len(images)}


class RandomStrategy(Strategy):
    """Next sample = a uniformly random unlabelled image (seeded per request with ``seed``)."""

    def __init__(self, seed: int) -> None:
        super().__init__("Random: a uniformly random unlabelled image")
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        images = _unlabeled(datastore)
        if not images:
            return {}
        with self._lock:
            rng = np.random.default_rng(int(request["seed"])) if "seed" in request else self._rng
            return {"id": images[int(rng.integers(len(images)))], "strategy": "random", "unlabeled": len(images)}
