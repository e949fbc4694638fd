"""What the OncoLabel server sends and expects, per task family: the one place to adjust when a shape changes.

Server facts used by the module (all parsing of server JSON happens here):

* ``GET /info/``: ``name`` ("OncoLabel"), ``version``, ``models`` {name: {type, labels, model_version, ...}},
  ``strategies``, ``trainers``.
* Segmentation (``bone_metastasis``): ``POST /infer/<task>`` returns a label image on the input grid and JSON with
  ``label_names`` {name: value}, ``lesions``, ``lesion_count``, ``total_volume_ml``, ``model_version``, ``notice``.
* Classification (``renal_mass``, ``pet_lymphoma``, ``hn_response``): JSON ``probabilities`` {class: p},
  ``prediction``, ``model_version``, ``heatmap`` {``grid_of``: input name} and a heat-map image on that input's
  grid. ``/info/`` lists each model's ``inputs``. A single-image task takes an uploaded file; a task with several
  inputs reads them from the datastore: phases as images ``<case>_<phase>`` (renal mass), an image with its tumour
  mask as the label tag ``tumour`` (``hn_response``); the model then runs on the case's first input.
* Scoring (``pannet_ln``): the CT as ``file`` plus the tumour mask as ``label``; JSON ``score``, ``risk_group``,
  ``recommendation`` (the 2 cm rule), ``top_contributions`` (or ``top_features``), ``size_cm``, ``size_group``,
  ``model_version``.
* Training: ``GET /train/`` status ``{id, status, request, details: [log lines]}``; our trainer logs
  ``{'iteration': i, 'loss': x, ...}`` lines and a final ``Result: {json}`` line.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple

from OncoLabelLib.errors import NotOncoLabelServerError, ResultFormatError, UnknownModelError, VersionMismatchError

__all__ = ["SEGMENTATION", "CLASSIFICATION", "SCORE", "RENAL_PHASES", "SUPPORTED_SERVER_VERSIONS", "TaskDescription",
           "KNOWN_TASKS", "ModelInfo", "ServerInfo", "NextCase", "SegmentationResult", "ClassificationResult",
           "FeatureContribution", "ScoreResult", "TrainingProgress", "parse_result", "RESEARCH_USE_ONLY"]

logger = logging.getLogger(__name__)

SEGMENTATION, CLASSIFICATION, SCORE = "segmentation", "classification", "score"
SERVER_NAME = "OncoLabel"
#: server versions (major.minor) whose API this module speaks
SUPPORTED_SERVER_VERSIONS = ("0.1",)
#: shown with every result even if a server forgets its own notice
RESEARCH_USE_ONLY = "research use only: not for clinical diagnosis or treatment decisions"
#: renal-mass CT phases (datastore ids ``<case>_<phase>``)
RENAL_PHASES = ("unenhanced", "corticomedullary", "nephrographic", "excretory")
#: the input name of a tumour mask, and the label tag it is stored under in the datastore
MASK_INPUT, TUMOUR_TAG = "mask", "tumour"
_INFO_TYPES = {"segmentation": SEGMENTATION, "classification": CLASSIFICATION, "score": SCORE, "scoring": SCORE}


@dataclass(frozen=True)
class TaskDescription:
    """How the module drives one task.

    Attributes:
        name: server model name.
        kind: :data:`SEGMENTATION`, :data:`CLASSIFICATION` or :data:`SCORE`.
        title: shown in the task list.
        inputs: the server's input names (``/info/`` reports them; these are the defaults).
        needs_mask: the tumour mask travels with the request as its ``label`` part (scoring).
    """

    name: str
    kind: str
    title: str
    inputs: Tuple[str, ...] = ("image",)
    needs_mask: bool = False

    @property
    def image_inputs(self) -> Tuple[str, ...]:
        """The inputs that are volumes (not the tumour mask)."""
        return tuple(i for i in self.inputs if i != MASK_INPUT)

    @property
    def uses_datastore(self) -> bool:
        """The server reads the inputs from its datastore (several volumes, or a volume and its mask)."""
        return not self.needs_mask and len(self.inputs) > 1

    def datastore_layout(self, case: str) -> Dict[str, Tuple[str, Optional[str]]]:
        """Input name -> (datastore image id, label tag; None for the image itself), in upload order."""
        if len(self.image_inputs) == 1:
            return {name: (case, TUMOUR_TAG if name == MASK_INPUT else None) for name in self.inputs}
        return {name: (f"{case}_{name}", None) for name in self.inputs}

    def primary_image_id(self, case: str) -> str:
        """The datastore image the model runs on (its heat map lies on this input's grid)."""
        return self.datastore_layout(case)[self.image_inputs[0]][0]


KNOWN_TASKS: Dict[str, TaskDescription] = {t.name: t for t in (
    TaskDescription("bone_metastasis", SEGMENTATION, "Bone metastasis segmentation (CT)"),
    TaskDescription("renal_mass", CLASSIFICATION, "Renal mass classification (4-phase CT)", RENAL_PHASES),
    TaskDescription("pet_lymphoma", CLASSIFICATION, "Lymphoma classification (PET, SUV)"),
    TaskDescription("hn_response", CLASSIFICATION, "Head & neck treatment response", ("image", MASK_INPUT)),
    TaskDescription("pannet_ln", SCORE, "PanNET lymph-node metastasis risk (RDP score)", needs_mask=True),
)}


def _number(value: Any, what: str, task: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ResultFormatError(f"the server's {task} result has a non-numeric {what} ({value!r}): "
                                "server and module versions may not match") from None
    if math.isnan(number):
        raise ResultFormatError(f"the server's {task} result has no value for {what} (NaN)")
    return number


def _require(params: Mapping[str, Any], key: str, task: str) -> Any:
    if key not in params:
        raise ResultFormatError(f"the server's {task} result lacks '{key}': server and module versions may not "
                                "match (update one of them)")
    return params[key]


def _warnings(params: Mapping[str, Any], task: str) -> Tuple[str, ...]:
    """The answer's warnings (how the input lies outside what the model was fitted or trained on), checked."""
    warnings = params.get("warnings") or []
    if isinstance(warnings, str) or not isinstance(warnings, (list, tuple)):
        raise ResultFormatError(f"the server's {task} warnings are not a list")
    return tuple(str(w) for w in warnings)


# --- server information ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelInfo:
    """One model the server offers, as the module needs it."""

    name: str
    kind: Optional[str]
    labels: Dict[str, int]
    model_version: str
    description: str
    task: TaskDescription

    @classmethod
    def from_info(cls, name: str, entry: Mapping[str, Any]) -> "ModelInfo":
        known = KNOWN_TASKS.get(name)
        kind = known.kind if known else _INFO_TYPES.get(str(entry.get("type", "")).lower())
        task = known or TaskDescription(name, kind or "other", name.replace("_", " "))
        inputs = entry.get("inputs")
        if isinstance(inputs, list) and inputs and all(isinstance(i, str) for i in inputs):
            task = replace(task, inputs=tuple(inputs))  # a dict only describes request parts (scoring)
        labels = entry.get("labels") or {}
        if isinstance(labels, list):  # MONAI Label also allows a plain list of names
            labels = {str(n): i + 1 for i, n in enumerate(labels)}
        return cls(name=name, kind=kind, labels={str(k): int(v) for k, v in dict(labels).items()},
                   model_version=str(entry.get("model_version", "")), description=str(entry.get("description", "")),
                   task=task)


@dataclass(frozen=True)
class ServerInfo:
    """``GET /info/`` of an OncoLabel server."""

    url: str
    name: str
    version: str
    models: Dict[str, ModelInfo]
    strategies: Tuple[str, ...]
    trainers: Tuple[str, ...]

    @classmethod
    def from_info(cls, url: str, info: Any) -> "ServerInfo":
        """Parse and check ``info``.

        Raises:
            NotOncoLabelServerError: not MONAI Label, or a MONAI Label app other than OncoLabel.
            VersionMismatchError: an OncoLabel version this module does not support.
        """
        if not isinstance(info, dict) or not isinstance(info.get("models"), dict):
            raise NotOncoLabelServerError(f"the server at {url} answers, but not as an OncoLabel server (no model "
                                          "list in /info/): check the address and port")
        name = str(info.get("name", ""))
        if name != SERVER_NAME:
            raise NotOncoLabelServerError(f"the server at {url} runs the MONAI Label app '{name}', not OncoLabel: "
                                          "start it with 'oncolabel serve --studies DIR'")
        version = str(info.get("version", ""))
        if ".".join(version.split(".")[:2]) not in SUPPORTED_SERVER_VERSIONS:
            supported = ", ".join(v + ".x" for v in SUPPORTED_SERVER_VERSIONS)
            raise VersionMismatchError(f"the server runs OncoLabel {version or '(no version)'}, but this Slicer "
                                       f"module supports {supported}: update the module or the server so that "
                                       "both match")
        models = {n: ModelInfo.from_info(n, e) for n, e in info["models"].items() if isinstance(e, dict)}
        return cls(url=url, name=name, version=version, models=models,
                   strategies=tuple(info.get("strategies") or ()), trainers=tuple(info.get("trainers") or ()))

    def models_of(self, kind: str) -> List[ModelInfo]:
        return [m for n, m in sorted(self.models.items()) if m.kind == kind]

    def model(self, name: str, kind: Optional[str] = None) -> ModelInfo:
        """The model ``name`` (of ``kind``); raises :class:`UnknownModelError` naming the ones offered."""
        candidates = self.models_of(kind) if kind else list(self.models.values())
        for m in candidates:
            if m.name == name:
                return m
        offered = ", ".join(m.name for m in candidates) or "none"
        what = f"{kind} model" if kind else "model"
        raise UnknownModelError(f"the server at {self.url} has no {what} '{name}' (it offers: {offered})")


@dataclass(frozen=True)
class NextCase:
    """The image the active-learning strategy proposes."""

    image_id: str
    file_name: str
    strategy: str
    score: Optional[float]

    @property
    def suffix(self) -> str:
        """File extension for the download (``.nii.gz``, ``.nrrd``...)."""
        name = self.file_name.lower()
        for ext in (".nii.gz", ".seg.nrrd", ".nrrd", ".nii", ".mha", ".mhd"):
            if name.endswith(ext):
                return ext
        return ".nii.gz"

    @classmethod
    def from_json(cls, sample: Any, strategy: str) -> Optional["NextCase"]:
        """None when the strategy has nothing left (every image is labelled)."""
        if not isinstance(sample, dict) or not sample.get("id"):
            return None
        score = sample.get("uncertainty", sample.get("score"))
        return cls(image_id=str(sample["id"]), file_name=str(sample.get("name") or sample["id"]),
                   strategy=str(sample.get("strategy", strategy)),
                   score=float(score) if isinstance(score, (int, float)) else None)


# --- results ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentationResult:
    """A segmentation answer: the label file and what the server says about it."""

    task: str
    label_path: str
    label_names: Dict[str, int]
    model_version: str
    lesions: List[Dict[str, Any]]
    total_volume_ml: Optional[float]
    notice: str
    #: e.g. an input voxel size outside the images the model was trained on ("... an extrapolation")
    warnings: Tuple[str, ...] = ()

    @classmethod
    def from_response(cls, task: str, label_path: Optional[str], params: Mapping[str, Any],
                      model: Optional[ModelInfo] = None) -> "SegmentationResult":
        if not label_path or not os.path.isfile(label_path):
            raise ResultFormatError(f"the server's {task} answer has no label image: server and module versions "
                                    "may not match")
        names = dict(params.get("label_names") or (model.labels if model else {}))
        names = {str(k): int(v) for k, v in names.items() if int(v) != 0}
        if not names:
            raise ResultFormatError(f"the server's {task} answer names no labels: cannot name the segments")
        total = params.get("total_volume_ml")
        return cls(task=task, label_path=label_path, label_names=names,
                   model_version=str(_require(params, "model_version", task)),
                   lesions=[dict(les) for les in params.get("lesions") or []],
                   total_volume_ml=float(total) if total is not None else None,
                   notice=str(params.get("notice") or RESEARCH_USE_ONLY), warnings=_warnings(params, task))


@dataclass(frozen=True)
class ClassificationResult:
    """Calibrated class probabilities, the predicted class and an optional heat map."""

    task: str
    probabilities: Dict[str, float]
    prediction: str
    model_version: str
    heatmap_path: Optional[str]
    notice: str
    heatmap_grid_of: Optional[str] = None
    #: image measurements the model used (renal mass, H&N), name -> value
    measurements: Dict[str, float] = field(default_factory=dict)
    #: why the case could not be measured (the model without measurements was used)
    measurement_error: Optional[str] = None
    #: e.g. a measurement far outside the cases the model was fitted on ("... it extrapolates")
    warnings: Tuple[str, ...] = ()

    @property
    def ranked(self) -> List[Tuple[str, float]]:
        """(class, probability), most probable first."""
        return sorted(self.probabilities.items(), key=lambda kv: (-kv[1], kv[0]))

    @classmethod
    def from_response(cls, task: str, file_path: Optional[str], params: Mapping[str, Any]) -> "ClassificationResult":
        raw = _require(params, "probabilities", task)
        if not isinstance(raw, dict) or not raw:
            raise ResultFormatError(f"the server's {task} result has no class probabilities")
        probs = {str(k): _number(v, f"probability of '{k}'", task) for k, v in raw.items()}
        bad = {k: p for k, p in probs.items() if not -1e-6 <= p <= 1 + 1e-6}
        if bad:
            raise ResultFormatError(f"the server's {task} result has probabilities outside [0, 1]: {bad}")
        total = sum(probs.values())
        if abs(total - 1.0) > 0.01:
            logger.warning("%s: class probabilities sum to %.3f, not 1", task, total)
        prediction = str(_require(params, "prediction", task))
        if prediction not in probs:
            raise ResultFormatError(f"the server's {task} prediction '{prediction}' is not one of its classes "
                                    f"({', '.join(probs)})")
        heatmap = file_path if file_path and os.path.isfile(file_path) else None
        grid_of = (params.get("heatmap") or {}).get("grid_of") if isinstance(params.get("heatmap"), dict) else None
        measured = params.get("measurements") or {}
        if not isinstance(measured, dict):
            raise ResultFormatError(f"the server's {task} measurements are not a name -> value mapping")
        warnings = _warnings(params, task)
        error = params.get("measurement_error")
        return cls(task=task, probabilities=probs, prediction=prediction,
                   model_version=str(_require(params, "model_version", task)), heatmap_path=heatmap,
                   notice=str(params.get("notice") or RESEARCH_USE_ONLY),
                   heatmap_grid_of=str(grid_of) if grid_of else None,
                   measurements={str(k): _number(v, f"measurement '{k}'", task) for k, v in measured.items()},
                   measurement_error=str(error) if error else None, warnings=warnings)


@dataclass(frozen=True)
class FeatureContribution:
    """One feature's contribution to a score (signed, in score units)."""

    name: str
    contribution: float
    value: Optional[float] = None


def _features(raw: Any, task: str) -> List[FeatureContribution]:
    """Feature contributions as a list: accepts {name: c}, [[name, c]] and
    [{name|feature, contribution|contribution_log_odds|weight, value}]."""
    items: List[FeatureContribution] = []
    if isinstance(raw, dict):
        raw = [{"name": k, "contribution": v} for k, v in raw.items()]
    if not isinstance(raw, list):
        raise ResultFormatError(f"the server's {task} result has unreadable top_features ({type(raw).__name__})")
    for entry in raw:
        if isinstance(entry, (list, tuple)) and len(entry) >= 2:
            entry = {"name": entry[0], "contribution": entry[1]}
        if not isinstance(entry, dict):
            raise ResultFormatError(f"the server's {task} result has an unreadable feature entry {entry!r}")
        name = entry.get("name", entry.get("feature"))
        contribution = next((entry[k] for k in ("contribution", "contribution_log_odds", "weight") if k in entry),
                            None)
        if name is None or contribution is None:
            raise ResultFormatError(f"the server's {task} feature entry {entry!r} lacks a name or contribution")
        value = entry.get("value")
        items.append(FeatureContribution(str(name), _number(contribution, f"contribution of '{name}'", task),
                                         float(value) if isinstance(value, (int, float)) else None))
    return sorted(items, key=lambda f: -abs(f.contribution))


@dataclass(frozen=True)
class ScoreResult:
    """A risk score with its group, the recommendation it implies, and what drove it."""

    task: str
    score: float
    risk_group: str
    recommendation: str
    top_features: List[FeatureContribution]
    model_version: str
    notice: str
    size_cm: Optional[float] = None
    size_group: str = ""
    #: e.g. a given size on the other side of the 2 cm rule than the mask's
    warnings: Tuple[str, ...] = ()

    @classmethod
    def from_response(cls, task: str, file_path: Optional[str], params: Mapping[str, Any]) -> "ScoreResult":
        size = params.get("size_cm")
        return cls(task=task, score=_number(_require(params, "score", task), "score", task),
                   risk_group=str(_require(params, "risk_group", task)),
                   recommendation=str(_require(params, "recommendation", task)),
                   top_features=_features(params.get("top_contributions", params.get("top_features", [])), task),
                   model_version=str(_require(params, "model_version", task)),
                   notice=str(params.get("notice") or RESEARCH_USE_ONLY),
                   size_cm=_number(size, "size_cm", task) if size is not None else None,
                   size_group=str(params.get("size_group") or ""), warnings=_warnings(params, task))


def parse_result(kind: str, task: str, file_path: Optional[str], params: Mapping[str, Any],
                 model: Optional[ModelInfo] = None) -> Any:
    """The result object for a task ``kind`` from the client's ``(file, json)`` answer."""
    if not isinstance(params, Mapping):
        raise ResultFormatError(f"the server's {task} answer is not a JSON object")
    if kind == SEGMENTATION:
        return SegmentationResult.from_response(task, file_path, params, model)
    if kind == CLASSIFICATION:
        return ClassificationResult.from_response(task, file_path, params)
    if kind == SCORE:
        return ScoreResult.from_response(task, file_path, params)
    raise UnknownModelError(f"the module cannot show results of '{task}' (task type {kind!r})")


# --- training ---------------------------------------------------------------------------------------------------
_ITERATION = re.compile(r"'iteration':\s*(\d+)")
_LOSS = re.compile(r"'loss':\s*([-+0-9.eE]+)")
_RESULT = re.compile(r"Result:\s*(\{.*\})\s*$")


@dataclass(frozen=True)
class TrainingProgress:
    """A training round's state, read from ``GET /train/``."""

    task_id: str
    state: str
    iteration: Optional[int] = None
    total: Optional[int] = None
    loss: Optional[float] = None
    outcome: Dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in ("DONE", "ERROR", "STOPPED")

    @property
    def fraction(self) -> Optional[float]:
        if self.state == "DONE":
            return 1.0
        if self.iteration is not None and self.total:
            return min(1.0, self.iteration / self.total)
        return None

    @property
    def model_version(self) -> Optional[str]:
        value = self.outcome.get("model_version")
        return str(value) if value else None

    @property
    def message(self) -> str:
        if self.state == "DONE":
            return f"Training done: new model {self.model_version or '(version not reported)'}"
        if self.state in ("ERROR", "STOPPED"):
            return f"Training {self.state.lower()}"
        if self.iteration is None:
            return "Training: starting the training process"
        of = f" of {self.total}" if self.total else ""
        loss = f" (loss {self.loss:.3f})" if self.loss is not None else ""
        return f"Training: iteration {self.iteration}{of}{loss}"

    @classmethod
    def from_status(cls, status: Mapping[str, Any], total: Optional[int] = None) -> "TrainingProgress":
        request = status.get("request") or {}
        if total is None and str(request.get("max_iterations", "")).isdigit():
            total = int(request["max_iterations"])
        iteration = loss = None
        outcome: Dict[str, Any] = {}
        for line in status.get("details") or []:
            line = str(line)
            it = _ITERATION.search(line)
            if it:
                iteration = int(it.group(1))
                lo = _LOSS.search(line)
                loss = float(lo.group(1)) if lo else loss
            res = _RESULT.search(line)
            if res:
                try:
                    outcome = dict(json.loads(res.group(1)))
                except ValueError:
                    logger.debug("unreadable training result line: %s", line)
        return cls(task_id=str(status.get("id", "")), state=str(status.get("status", "")), iteration=iteration,
                   total=total, loss=loss, outcome=outcome)
