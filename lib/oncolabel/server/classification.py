"""MONAI Label adapters for the classification tasks (``kind="classification"``).

Registered in :data:`oncolabel.server.components.SERVER_TASK_FACTORIES`; for each task the factory returns

* ``infer``: :class:`ClassificationInfer` - calibrated class probabilities (JSON, with model version and provenance)
  and the Grad-CAM heat map as an image on the input's grid (written under the server's results folder);
* ``train``: :class:`ClassificationTrain` - fine-tunes the served model with the generic trainer on the class labels
  radiologists submitted, and publishes the new version atomically;
* ``strategies``: ``<task>_uncertainty`` (entropy of the calibrated probability, or ``{"measure": "margin"}``) and
  ``<task>_random``.

How a radiologist's class label is stored: a label saved with tag ``final`` and label info ``{"class": <class name or
index>}`` (the label file itself may be an empty mask on the image's grid, or, for ``hn_response``, the tumour
contour). Which datastore images a task uses (one datastore may hold several tasks' images): an image whose info has
``"task"`` belongs to that task; otherwise

* ``renal_mass``: image ids ``<case>_<phase>`` for the four phases (unenhanced, corticomedullary, nephrographic,
  excretory) - one case, four images; any of them stands for the case;
* ``pet_lymphoma``: images whose header declares SUVbw (:func:`oncolabel.pet.declares_suv`);
* ``hn_response``: images with a tumour contour (label tag ``tumour``, or the ``final`` label).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from typing import Any, Callable, Dict, Tuple

import numpy as np
import SimpleITK as sitk
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask

from oncolabel.checkpoint import load_checkpoint
from oncolabel.classification import (ClassifierPredictor, checkpoint_heads, checkpoint_model,
                                      refit_feature_heads, update_measurement_heads)
from oncolabel.config import ServerConfig
from oncolabel.errors import InvalidInputError, NotFoundError
from oncolabel.io import case_id_of, write_image
from oncolabel.modelstore import ModelStore
from oncolabel.server.components import SERVER_TASK_FACTORIES
from oncolabel.server.tasks import PredictorCache, SegmentationInfer, SegmentationTrain
from oncolabel.tasks import TaskSpec

logger = logging.getLogger(__name__)

MASK_TAGS = ("tumour", DefaultLabelTag.FINAL.value)
CLASS_KEY = "class"
UNCERTAINTY_KEY = "oncolabel_classifier_uncertainty"


class ClassifierCache(PredictorCache):
    """The :class:`ClassifierPredictor` of the model currently published in ``store`` (reloaded when it changes)."""

    predictor_class = ClassifierPredictor


class CaseResolver:
    """Maps datastore images to a task's cases and inputs (see the module docstring)."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.inputs = tuple(spec.preprocessing.inputs)
        self.multi = len(self.inputs) > 1 and "mask" not in self.inputs  # sibling images (phases)

    # --- which images / cases ---------------------------------------------------------------------------------
    def case_of(self, image_id: str) -> str | None:
        if not self.multi:
            return image_id
        for name in self.inputs:
            if image_id.endswith(f"_{name}"):
                return image_id[: -len(name) - 1]
        return None

    def image_ids(self, case: str) -> dict[str, str]:
        return {name: f"{case}_{name}" for name in self.inputs} if self.multi else {self.inputs[0]: case}

    def primary_id(self, case: str) -> str:
        ids = self.image_ids(case)
        return ids.get(self.spec.preprocessing.primary_input, next(iter(ids.values())))

    def belongs(self, datastore: Datastore, image_id: str) -> bool:
        task = (datastore.get_image_info(image_id) or {}).get("task")
        if task:
            return task == self.spec.name
        if self.multi:
            case = self.case_of(image_id)
            return case is not None and all(datastore.get_image_uri(i) for i in self.image_ids(case).values())
        if "mask" in self.inputs:
            return any(datastore.get_label_uri(image_id, tag) for tag in MASK_TAGS)
        from oncolabel.pet import declares_suv

        reader = sitk.ImageFileReader()
        reader.SetFileName(datastore.get_image_uri(image_id))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            return False
        info = sitk.Image([1, 1, 1], sitk.sitkUInt8)
        for key in reader.GetMetaDataKeys():
            info.SetMetaData(key, reader.GetMetaData(key))
        return declares_suv(info)

    def cases(self, datastore: Datastore) -> dict[str, bool]:
        """Case -> labelled (has a final label with a class) for every case of this task in the datastore."""
        datastore.datalist()  # reload what other processes wrote
        out: dict[str, bool] = {}
        for image_id in sorted(datastore.list_images()):
            case = self.case_of(image_id)
            if case is None or not self.belongs(datastore, image_id):
                continue
            labelled = self.class_label(datastore, image_id) is not None
            out[case] = out.get(case, False) or labelled
        return out

    def class_label(self, datastore: Datastore, image_id: str) -> int | None:
        if not datastore.get_label_uri(image_id, DefaultLabelTag.FINAL.value):
            return None
        value = (datastore.get_label_info(image_id, DefaultLabelTag.FINAL.value) or {}).get(CLASS_KEY)
        if value is None:
            return None
        labels = self.spec.labels
        if isinstance(value, str) and value in labels:
            return int(labels[value])
        try:
            idx = int(value)
        except (TypeError, ValueError):
            idx = -1
        if idx not in labels.values():
            raise InvalidInputError(f"image {image_id!r}: class label {value!r} is not one of {list(labels)} "
                                    f"(or their indices {sorted(labels.values())})")
        return idx

    # --- inputs ----------------------------------------------------------------------------------------------
    def mask_path(self, datastore: Datastore, image_id: str, tag: str | None = None) -> str:
        for t in ((tag,) if tag else MASK_TAGS):
            path = datastore.get_label_uri(image_id, t)
            if path:
                return path
        raise NotFoundError(f"image {image_id!r} has no tumour contour: save its mask as a label with tag "
                            f"{MASK_TAGS[0]!r} (or as its final label) first")

    def item(self, datastore: Datastore, case: str, request: Dict[str, Any] | None = None) -> dict[str, Any]:
        """File paths of a case's inputs."""
        request = request or {}
        if self.multi:
            paths = {name: datastore.get_image_uri(i) for name, i in self.image_ids(case).items()}
            missing = [n for n, p in paths.items() if not p]
            if missing:
                raise NotFoundError(f"case {case!r} lacks image(s) {', '.join(f'{case}_{n}' for n in missing)} "
                                    "in the datastore")
            return paths
        path = datastore.get_image_uri(case)
        if not path:
            raise NotFoundError(f"image {case!r} is not in the datastore")
        item = {"image": path}
        if "mask" in self.inputs:
            item["mask"] = self.mask_path(datastore, case, request.get("mask_tag"))
        return item


def _read_item(spec: TaskSpec, item: dict[str, Any], request: Dict[str, Any]) -> dict[str, sitk.Image]:
    if "suv_scale" in request:
        item = {**item, "suv_scale": float(request["suv_scale"])}
    return spec.preprocessing.read(item)


class ClassificationInfer(SegmentationInfer):
    """Classification of a datastore image (or an uploaded file, for single-input tasks).

    Shares :class:`~oncolabel.server.tasks.SegmentationInfer`'s model-store handling (``is_valid``, ``info`` with
    the served model version and the research-use notice); the result is JSON plus the heat map.
    """

    def __init__(self, spec: TaskSpec, predictors: ClassifierCache, results_dir: str,
                 datastore: Callable[[], Datastore]) -> None:
        InferTask.__init__(self, type=InferType.CLASSIFICATION, labels=dict(spec.labels), dimension=3,
                           description=spec.description, config={"device": predictors.device})
        self.spec, self.predictors, self.datastore = spec, predictors, datastore
        self.resolver = CaseResolver(spec)
        self.results_dir = results_dir  # not /tmp: MONAI Label deletes the result file after sending it
        os.makedirs(results_dir, exist_ok=True)

    def info(self) -> Dict[str, Any]:
        return {**super().info(), "inputs": list(self.resolver.inputs)}

    def _images(self, request: Dict[str, Any]) -> tuple[str, dict[str, sitk.Image]]:
        path = request.get("image")
        if not isinstance(path, str) or not path:
            raise InvalidInputError("no image given: pass an image id of the datastore or upload a file")
        ds = self.datastore()
        image_id = case_id_of(path)
        in_store = bool(ds.get_image_uri(image_id)) and os.path.realpath(ds.get_image_uri(image_id)) == \
            os.path.realpath(path)
        uploaded_mask = request.get("label") if "mask" in self.resolver.inputs else None
        if uploaded_mask and not (isinstance(uploaded_mask, str) and os.path.isfile(uploaded_mask)):
            uploaded_mask = None
        if not in_store:
            if self.resolver.multi:
                raise InvalidInputError(f"{self.spec.name} needs {', '.join(self.resolver.inputs)}: run it on an image "
                                        "of the datastore, not an uploaded file")
            item = {"image": path}
            if "mask" in self.resolver.inputs:
                if not uploaded_mask:
                    raise InvalidInputError(f"{self.spec.name} needs the tumour mask: upload it as the request's "
                                            "label part together with the image")
                item["mask"] = uploaded_mask
            return "image", _read_item(self.spec, item, request)
        case = self.resolver.case_of(image_id)
        if case is None:
            raise InvalidInputError(f"image {image_id!r} is not one of a case's {self.spec.name} inputs (expected ids "
                                    f"<case>_{{{','.join(self.resolver.inputs)}}})")
        item = {**self.resolver.item(ds, case, request)} if not uploaded_mask else {"image": path,
                                                                                     "mask": uploaded_mask}
        name = next((n for n, i in self.resolver.image_ids(case).items() if i == image_id), "image")
        return name, _read_item(self.spec, item, request)

    def __call__(self, request: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
        name, images = self._images(request)
        predictor = self.predictors.get()
        result = predictor.predict(images)
        heat = result.heatmaps.get(name) or next(iter(result.heatmaps.values()))
        fd, out = tempfile.mkstemp(prefix=f"{self.spec.name}_heatmap_", suffix=".nii.gz", dir=self.results_dir)
        os.close(fd)
        write_image(heat, out)
        params = result.to_json()
        params.update({"model": self.spec.name, "label_names": dict(self.spec.labels),
                       "heatmap": {"grid_of": name, "method": "Grad-CAM"}})
        return out, params


class ClassificationTrain(SegmentationTrain):
    """One active-learning round: fine-tune the served classifier on the submitted class labels, then publish.

    The calibration heads of the served model are kept (fitted on out-of-fold predictions of the full cohort; a few
    new labels cannot refit them reliably), except the deep-feature regression, which depends on the fine-tuned
    features: it is refitted on the labelled cases and recalibrated with the served model's Platt scaling; and, with
    at least 10 measured labelled cases of each class, the heads stacking margins with image measurements (renal
    mass): their measurement coefficients are updated from the labels, the served head as the prior
    (:func:`oncolabel.classification.update_measurement_heads`).
    """

    def __init__(self, spec: TaskSpec, store: ModelStore, device: str, seed: int) -> None:
        super().__init__(spec, store, device, seed)  # config() and stats() as for segmentation
        TrainTask.__init__(self, f"Fine-tune {spec.name} on the class labels in the datastore (warm start from the "
                                 "served model)")
        self.resolver = CaseResolver(spec)

    def items(self, datastore: Datastore) -> list[dict[str, Any]]:
        """One training item per labelled case (inputs and class index)."""
        out, seen = [], set()
        for image_id in datastore.get_labeled_images():
            case = self.resolver.case_of(image_id)
            label = self.resolver.class_label(datastore, image_id)
            if case is None or label is None or case in seen or not self.resolver.belongs(datastore, image_id):
                continue
            seen.add(case)
            out.append({**self.resolver.item(datastore, case), "label": label, "case": case})
        return out

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        datastore.datalist()
        items = self.items(datastore)
        classes = sorted({it["label"] for it in items})
        if len(classes) < 2:
            raise InvalidInputError(f"{self.spec.name}: {len(items)} case(s) carry a class label "
                                    f"({classes or 'none'}); training needs labelled cases of both classes (save a "
                                    f"'{DefaultLabelTag.FINAL.value}' label with info {{'{CLASS_KEY}': <class>}})")
        parent = load_checkpoint(self.store.current(), task=self.spec.name)
        train_items = [{k: v for k, v in it.items() if k != "case"} for it in items]
        trainer = self.trainer(request, parent)
        iterations = trainer.iterations
        result = trainer.fit(train_items)
        ckpt = result.checkpoint
        ckpt.training["heads"] = self._heads(parent, ckpt, train_items)
        ckpt.training["datastore_cases"] = [it["case"] for it in items]
        ckpt.metrics = {"parent_metrics": parent.metrics, "note": "fine-tuned on datastore labels; metrics are the "
                                                                  "parent's cross-validated ones"}
        self.store.publish(ckpt)
        out = {"model": self.spec.name, "model_version": ckpt.version, "parent_version": parent.version,
               "iterations": iterations, "n_labels": len(items), "classes": {str(c): sum(it["label"] == c for it in items)
                                                                            for c in classes},
               "seconds": round(result.seconds, 1),
               "final_loss": result.history[-1]["loss"] if result.history else None}
        logger.info("training round done: %s", out)
        return out

    def _heads(self, parent: Any, ckpt: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        model = checkpoint_model(ckpt)
        heads = refit_feature_heads(checkpoint_heads(parent), model, self.spec, items)
        heads = update_measurement_heads(heads, model, self.spec, items)
        return [h.to_dict() for h in heads]


class ClassifierUncertaintyStrategy(Strategy):
    """Next case = the unlabelled case whose calibrated probability is most uncertain (entropy, or margin)."""

    def __init__(self, spec: TaskSpec, predictors: ClassifierCache, max_compute: int) -> None:
        super().__init__(f"{spec.name}: the unlabelled case with the most uncertain calibrated probability "
                         "(binary entropy; {'measure': 'margin'} for 1 - |2p - 1|)")
        self.spec, self.predictors, self.max_compute = spec, predictors, max_compute
        self.resolver = CaseResolver(spec)

    def score(self, datastore: Datastore, case: str, measure: str) -> dict[str, float]:
        predictor = self.predictors.get()
        image_id = self.resolver.primary_id(case)
        cached = (datastore.get_image_info(image_id) or {}).get(UNCERTAINTY_KEY) or {}
        if cached.get("model_version") == predictor.version and measure in cached:
            return {**cached, "uncertainty": float(cached[measure])}
        images = self.spec.preprocessing.read(self.resolver.item(datastore, case))
        res = predictor.uncertainty(images, measure=measure)
        datastore.update_image_info(image_id, {UNCERTAINTY_KEY: {**res, "model_version": predictor.version}})
        return res

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        measure = str(request.get("measure", "entropy"))
        if measure not in ("entropy", "margin"):
            raise InvalidInputError(f"measure {measure!r}: use 'entropy' or 'margin'")
        unlabelled = [c for c, labelled in self.resolver.cases(datastore).items() if not labelled]
        if not unlabelled:
            return {}
        version = self.predictors.get().version
        scores: dict[str, float] = {}
        for computed, case in enumerate(unlabelled):
            cached = (datastore.get_image_info(self.resolver.primary_id(case)) or {}).get(UNCERTAINTY_KEY) or {}
            if cached.get("model_version") == version:
                scores[case] = float(cached[measure])
            elif computed < self.max_compute or not scores:
                scores[case] = float(self.score(datastore, case, measure)["uncertainty"])
        best = max(sorted(scores), key=lambda k: scores[k])
        return {"id": self.resolver.primary_id(best), "case": best, "strategy": f"{self.spec.name}_uncertainty",
                "measure": measure, "uncertainty": scores[best], "model_version": version, "scored": len(scores),
                "unlabeled": len(unlabelled)}


class ClassifierRandomStrategy(Strategy):
    """Next case = a uniformly random unlabelled case of the task (``{"seed": n}`` makes it reproducible)."""

    def __init__(self, spec: TaskSpec, seed: int) -> None:
        super().__init__(f"{spec.name}: a uniformly random unlabelled case")
        self.spec, self.resolver = spec, CaseResolver(spec)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    def __call__(self, request: Dict[str, Any], datastore: Datastore) -> Dict[str, Any]:
        unlabelled = sorted(c for c, labelled in self.resolver.cases(datastore).items() if not labelled)
        if not unlabelled:
            return {}
        with self._lock:
            rng = np.random.default_rng(int(request["seed"])) if "seed" in request else self._rng
            case = unlabelled[int(rng.integers(len(unlabelled)))]
        return {"id": self.resolver.primary_id(case), "case": case, "strategy": f"{self.spec.name}_random",
                "unlabeled": len(unlabelled)}


def classification_components(spec: TaskSpec, store: ModelStore, config: ServerConfig) -> dict[str, Any]:
    """The MONAI Label objects of one classification task."""
    from oncolabel.server.datastore import OncoDatastore

    holder: dict[str, Datastore] = {}
    lock = threading.Lock()

    def datastore() -> Datastore:
        with lock:
            if "ds" not in holder:
                holder["ds"] = OncoDatastore(str(config.studies))
            return holder["ds"]

    cache = ClassifierCache(spec, store, config.device)
    return {"infer": ClassificationInfer(spec, cache, str(config.work_dir / "results"), datastore),
            "train": ClassificationTrain(spec, store, config.device, config.seed),
            "strategies": {f"{spec.name}_uncertainty": ClassifierUncertaintyStrategy(spec, cache,
                                                                                     config.strategy_max_compute),
                           f"{spec.name}_random": ClassifierRandomStrategy(spec, config.seed)}}


SERVER_TASK_FACTORIES["classification"] = classification_components
