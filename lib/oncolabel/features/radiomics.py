"""Radiomics features with pyradiomics, with clear errors and full provenance.

:func:`extract_radiomics` is the contract other code relies on: an image, a mask and a pyradiomics parameter
mapping (or YAML file) in, ``{feature name: float}`` out (pyradiomics' own names such as
``original_firstorder_Mean``; no ``diagnostics_*`` entries). :func:`extract_radiomics_with_provenance` returns the
same values together with the settings, the enabled image types and features, the software versions and
pyradiomics' diagnostics.

Departures from pyradiomics' habits (see ``STYLE.md``): nothing is configured at import (pyradiomics is
imported inside the functions and its logger is quietened only while a call runs, then restored), and a
feature that fails is an error naming it, never a silent NaN.

Reference: van Griethuysen JJM et al. Computational radiomics system to decode the radiographic phenotype.
Cancer Res 2017;77:e104-e107. Feature definitions: Zwanenburg A et al. The Image Biomarker Standardization
Initiative. Radiology 2020;295:328-338.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import SimpleITK as sitk

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.errors import GeometryError, InvalidInputError, OncoLabelError
from oncolabel.io import check_same_geometry, read_image, same_geometry
from oncolabel.provenance import file_sha256, package_versions

__all__ = ["RadiomicsError", "RadiomicsResult", "extract_radiomics", "extract_radiomics_with_provenance",
           "load_params", "requested_feature_names"]

_PARAM_KEYS = ("setting", "imageType", "featureClass", "voxelSetting")
_VERSION_PACKAGES = ("pyradiomics", "numpy", "SimpleITK", "PyWavelets", "scipy")


class RadiomicsError(OncoLabelError):
    """pyradiomics could not compute a requested feature (the message names it and pyradiomics' reason)."""


@dataclass(frozen=True)
class RadiomicsResult:
    """Feature values and how they were made.

    Attributes
    ----------
    values : feature name -> value (pyradiomics names; diagnostics excluded).
    provenance : settings, image types, enabled features, software versions, input hashes, diagnostics and the
        research-use notice.
    """

    values: dict[str, float]
    provenance: dict[str, Any] = field(default_factory=dict)


def load_params(params: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A pyradiomics parameter mapping from a mapping or a YAML file, checked for its top-level keys.

    Raises
    ------
    InvalidInputError
        Missing file, unreadable YAML, or keys other than ``setting``, ``imageType``, ``featureClass``,
        ``voxelSetting``.
    """
    if isinstance(params, (str, Path)):
        import yaml

        p = Path(params)
        if not p.is_file():
            raise InvalidInputError(f"radiomics parameter file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise InvalidInputError(f"radiomics parameter file {p} is not valid YAML: {exc}") from exc
        params = loaded or {}
    if not isinstance(params, Mapping):
        raise InvalidInputError(f"radiomics parameters must be a mapping or a YAML path, got {type(params).__name__}")
    bad = [k for k in params if k not in _PARAM_KEYS]
    if bad:
        raise InvalidInputError(f"unknown radiomics parameter section(s) {bad}; allowed: {list(_PARAM_KEYS)}")
    out = copy.deepcopy(dict(params))
    for key in ("setting", "imageType", "featureClass"):
        out[key] = dict(out.get(key) or {})
    return out


def requested_feature_names(params: Mapping[str, Any]) -> dict[str, list[str] | None]:
    """Feature class -> explicitly requested feature names (``None`` = every non-deprecated feature)."""
    return {cls: (list(names) if names else None) for cls, names in load_params(params)["featureClass"].items()}


class _Capture(logging.Handler):
    """Collects pyradiomics' error records while a call runs."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _quiet_radiomics() -> Iterator[_Capture]:
    """pyradiomics' logger at ERROR (its import-time handler would print every INFO/WARNING) for one call."""
    logger = logging.getLogger("radiomics")
    old = logger.level
    capture = _Capture()
    logger.setLevel(logging.ERROR)
    logger.addHandler(capture)
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.setLevel(old)


def _as_image(obj: Any, what: str) -> tuple[sitk.Image, dict[str, Any]]:
    if isinstance(obj, sitk.Image):
        return obj, {"source": "in-memory SimpleITK image"}
    if isinstance(obj, (str, Path)):
        img = read_image(obj)
        return img, {"path": str(obj), "sha256": file_sha256(obj) if Path(obj).is_file() else None}
    raise InvalidInputError(f"{what} must be a file path or a SimpleITK image, got {type(obj).__name__}")


def _check_mask(image: sitk.Image, mask: sitk.Image, label: int, correct_mask: bool) -> None:
    if mask.GetDimension() != image.GetDimension():
        raise GeometryError(f"mask is {mask.GetDimension()}D but the image is {image.GetDimension()}D")
    if not correct_mask and not same_geometry(image, mask):
        check_same_geometry(image, mask, what="mask")
    arr = sitk.GetArrayViewFromImage(mask)
    if not np.any(arr == label):
        present = np.unique(arr)[:10].tolist()
        raise InvalidInputError(f"the mask holds no voxel with label {label} (values present: {present}); "
                                "draw the tumour or pass the right label")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size > 1 else value.item()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def extract_radiomics_with_provenance(image: str | Path | sitk.Image, mask: str | Path | sitk.Image,
                                      params: Mapping[str, Any] | str | Path) -> RadiomicsResult:
    """Extract pyradiomics features and record how.

    Parameters
    ----------
    image, mask : file paths (NIfTI, NRRD, ...) or SimpleITK images; the mask must share the image geometry
        (unless ``setting.correctMask`` is true, then pyradiomics resamples it).
    params : pyradiomics parameter mapping ``{"setting": ..., "imageType": ..., "featureClass": ...}`` or a
        YAML file holding one (the structure of a pyradiomics params file).

    Returns
    -------
    RadiomicsResult
        ``values`` (feature -> float, diagnostics excluded) and ``provenance``.

    Raises
    ------
    InvalidInputError
        Bad parameters, unreadable image, empty mask (no voxel of the label).
    GeometryError
        Mask geometry differs from the image.
    RadiomicsError
        pyradiomics failed (message included), a value is not finite, or an explicitly requested feature was
        not computed (e.g. a deprecated one).
    """
    prm = load_params(params)
    img, img_info = _as_image(image, "image")
    msk, msk_info = _as_image(mask, "mask")
    setting = prm["setting"]
    label = int(setting.get("label", 1))
    _check_mask(img, msk, label, bool(setting.get("correctMask", False)))
    from radiomics import featureextractor, getFeatureClasses

    with _quiet_radiomics() as capture:
        try:
            extractor = featureextractor.RadiomicsFeatureExtractor(copy.deepcopy(prm))
        except Exception as exc:  # pykwalify / pyradiomics raise several types for bad parameters
            raise InvalidInputError(f"pyradiomics rejected the parameters: {exc}") from exc
        try:
            raw = extractor.execute(img, msk, label=label)
        except ValueError as exc:  # pyradiomics' own input checks (mask too small, bad ROI, ...)
            raise InvalidInputError(f"pyradiomics refused the image/mask: {exc}") from exc
    if capture.messages:
        raise RadiomicsError("pyradiomics failed: " + " | ".join(m.strip().splitlines()[-1] for m in capture.messages))
    values: dict[str, float] = {}
    diagnostics: dict[str, Any] = {}
    for key, val in raw.items():
        if key.startswith("diagnostics_"):
            diagnostics[key] = _jsonable(val)
            continue
        v = float(np.asarray(val))
        if not np.isfinite(v):
            raise RadiomicsError(f"feature {key} is {v} (pyradiomics could not compute it for this ROI)")
        values[key] = v
    classes = getFeatureClasses()
    for cls, names in (extractor.enabledFeatures or {}).items():
        for name in names or []:
            if not any(k.endswith(f"_{cls}_{name}") for k in values):
                deprecated = classes[cls].getFeatureNames().get(name)
                why = "it is deprecated in this pyradiomics version" if deprecated else "pyradiomics skipped it"
                raise RadiomicsError(f"requested feature {cls}:{name} was not computed ({why})")
    prov = {
        "notice": RESEARCH_USE_ONLY,
        "settings": _jsonable(dict(extractor.settings)),
        "image_types": _jsonable(dict(extractor.enabledImagetypes)),
        "features": _jsonable({k: list(v or []) for k, v in extractor.enabledFeatures.items()}),
        "software": package_versions(_VERSION_PACKAGES),
        "image": img_info, "mask": msk_info, "label": label,
        "diagnostics": diagnostics,
    }
    return RadiomicsResult(values=values, provenance=prov)


def extract_radiomics(image: str | Path | sitk.Image, mask: str | Path | sitk.Image,
                      params: Mapping[str, Any] | str | Path) -> dict[str, float]:
    """pyradiomics feature values ``{name: float}`` (diagnostics excluded); see
    :func:`extract_radiomics_with_provenance` for the arguments, errors and the provenance record."""
    return extract_radiomics_with_provenance(image, mask, params).values
