"""Noise-referenced tumour measurements: four hand-written rules on a CT and its tumour contour.

Volume, necrotic fraction, enhancement of the viable tumour and texture heterogeneity, measured at the acquired
resolution. What sets them apart from first-order radiomics of the same region is the *noise reference*: the
tumour's intensity variance is corrected by the scanner noise measured in the patient's own homogeneous soft tissue
away from the tumour. Texture finer than the noise grain cannot be told from noise otherwise, and the noise level
varies between scans far more than the texture does between tumours (``docs/classifiers.md``, "Head and neck").

Rules (:func:`tumour_measurements`; every threshold is a keyword argument):

* ``log_volume_ml``: ``log`` of the contour's voxel count x voxel volume (ml).
* ``necrosis_fraction``: fraction of the contour darker than the midpoint between necrotic tissue (``necrosis_hu``,
  20 HU) and the viable tumour's level (the median of the smoothed interior above 50 HU), after an in-plane Gaussian
  smoothing (``smoothing_mm``), counted only deeper than ``margin_mm`` inside the contour (partial volume at the edge
  is not necrosis).
* ``enhancement_hu``: mean HU of the viable tumour: deeper than ``margin_mm`` and more than ``core_gap_mm`` from the
  necrotic core.
* ``log_heterogeneity``: ``0.5 log(var_tumour - var_noise)`` in that viable interior (0 when the tumour varies
  no more than the noise, ``var_tumour - var_noise <= 1 HU^2``); the noise variance
  (``noise_sd_hu`` in the output) is the robust variance ``(1.4826 MAD)^2`` of soft tissue (``reference_hu``, after a
  3 mm smoothing, in the 30% flattest places) more than ``reference_distance_mm`` from the contour and within
  ``crop_margin_mm`` of it.

Scope: the rules assume a contrast-enhanced soft-tissue tumour (viable tissue well above 50 HU, necrosis near
20 HU), as the H&N phantom renders it. On real CT they run (tested on a real lung lesion and the liver of an
unenhanced CT: the volume is exact and the noise reference agrees with the spread inside the liver), but on an
unenhanced organ the necrosis rule calls much of it necrotic: the necrotic fraction and the enhancement have not
been validated on real tumours.

Research use only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from oncolabel.errors import InvalidInputError
from oncolabel.io import mask_on_grid, require_3d
from oncolabel.transforms import AxisOrientation

__all__ = ["MEASUREMENT_NAMES", "TumourMeasurementError", "measure_tumour", "tumour_measurements"]

#: the four measurements a model uses (the output also holds ``noise_sd_hu``, the reference noise level)
MEASUREMENT_NAMES: tuple[str, ...] = ("log_volume_ml", "necrosis_fraction", "enhancement_hu", "log_heterogeneity")


class TumourMeasurementError(InvalidInputError):
    """A tumour measurement cannot be made on this image (e.g. no noise reference tissue, a tumour too small)."""


def _robust_sd(v: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def _crop(mask: np.ndarray, spacing_zyx: tuple[float, float, float], margin_mm: float) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0) + 1
    pad = [int(math.ceil(margin_mm / s)) for s in spacing_zyx]
    return tuple(slice(max(int(a) - p, 0), min(int(b) + p, n)) for a, b, p, n in zip(lo, hi, pad, mask.shape))


def tumour_measurements(ct: np.ndarray, mask: np.ndarray, spacing_zyx: tuple[float, float, float], *,
                        noise_reference: bool = True, necrosis_hu: float = 20.0, margin_mm: float = 2.5,
                        smoothing_mm: float = 1.5, core_gap_mm: float = 3.0,
                        reference_hu: tuple[float, float] = (35.0, 70.0), reference_distance_mm: float = 10.0,
                        crop_margin_mm: float | None = 40.0, min_reference_voxels: int = 50) -> dict[str, float]:
    """The measurements of one tumour (module docstring) from a CT ``(z, y, x)`` in HU and its mask (> 0.5 = tumour).

    Args:
        spacing_zyx: voxel size in mm, in array order.
        noise_reference: correct the heterogeneity by the noise measured around the tumour; ``False`` (an input
            without surroundings) gives the log SD of the viable interior uncorrected, and no ``noise_sd_hu``.
        crop_margin_mm: measure within the mask's bounding box grown by this much (the noise reference is local and
            the work is bounded); ``None``: the whole image.

    Raises:
        InvalidInputError: wrong dimensions or an empty mask.
        TumourMeasurementError: too few viable tumour voxels for a variance, or (with ``noise_reference``) too few
            reference voxels.
    """
    ct = np.asarray(ct)
    m = np.asarray(mask) > 0.5
    if ct.ndim != 3 or ct.shape != m.shape:
        raise InvalidInputError(f"tumour measurements need a 3D CT and a mask of its shape, got {ct.shape} and "
                                f"{m.shape}")
    if not m.any():
        raise InvalidInputError("the tumour mask is empty: nothing to measure")
    spacing_zyx = tuple(float(s) for s in spacing_zyx)
    if crop_margin_mm is not None:
        box = _crop(m, spacing_zyx, crop_margin_mm)
        ct, m = ct[box], m[box]
    ct = ct.astype(np.float64)
    sz, sy, sx = spacing_zyx
    out = {"log_volume_ml": math.log(max(float(m.sum()) * sz * sy * sx / 1000.0, 1e-3))}
    depth = ndimage.distance_transform_edt(m, sampling=spacing_zyx)
    interior = depth > margin_mm
    if interior.sum() < 20:  # a thin tumour: its deeper half
        interior = depth > 0.5 * depth.max()
    smooth = ndimage.gaussian_filter(ct, (0.0, smoothing_mm / sy, smoothing_mm / sx))
    bright = smooth[interior & (smooth > 50.0)]
    viable_level = float(np.median(bright)) if bright.size else 85.0
    core = interior & (smooth < 0.5 * (necrosis_hu + viable_level))
    out["necrosis_fraction"] = float(core.sum() / m.sum())
    viable = interior & ~core
    if core.any():
        far = interior & (ndimage.distance_transform_edt(~core, sampling=spacing_zyx) > core_gap_mm)
        if far.sum() >= 10:
            viable = far
    if viable.sum() < 2:
        raise TumourMeasurementError(f"the tumour has {int(viable.sum())} viable interior voxels: too few to "
                                     "measure its enhancement and texture")
    out["enhancement_hu"] = float(ct[viable].mean())
    var_t = float(ct[viable].var())
    if not noise_reference:
        out["log_heterogeneity"] = 0.5 * math.log(max(var_t, 1e-3))
        return out
    smooth3 = ndimage.gaussian_filter(ct, (0.0, 3.0 / sy, 3.0 / sx))
    grad = ndimage.gaussian_gradient_magnitude(smooth3, (0.0, 1.0, 1.0))
    away = ndimage.distance_transform_edt(~m, sampling=spacing_zyx) > reference_distance_mm
    if not away.any():
        raise TumourMeasurementError(f"no tissue lies more than {reference_distance_mm} mm from the tumour inside "
                                     "the image: the noise reference cannot be measured")
    flat = grad < np.percentile(grad[away], 30)
    reference = away & flat & (smooth3 > reference_hu[0]) & (smooth3 < reference_hu[1])
    if reference.sum() < min_reference_voxels:
        raise TumourMeasurementError(
            f"only {int(reference.sum())} voxels of homogeneous soft tissue ({reference_hu[0]:g}-{reference_hu[1]:g} "
            f"HU) lie {reference_distance_mm:g}-{crop_margin_mm} mm from the tumour (need {min_reference_voxels}): "
            "the noise reference cannot be measured")
    sd_n = _robust_sd(ct[reference])
    out["log_heterogeneity"] = 0.5 * math.log(max(var_t - sd_n ** 2, 1.0))
    out["noise_sd_hu"] = sd_n
    return out


def measure_tumour(ct: sitk.Image, mask: sitk.Image, **kwargs: Any) -> dict[str, float]:
    """:func:`tumour_measurements` of a CT image in HU and its tumour mask on its grid or a part of it
    (:func:`oncolabel.io.mask_on_grid`; keyword arguments are passed on), on the patient's axes in LPS order (axial
    planes first, whichever way the file stores them)."""
    require_3d(ct, what="CT")
    mask = mask_on_grid(ct, mask, what="tumour mask")
    orientation = AxisOrientation.of_image(ct)
    ct_view, mask_view = (orientation.to_canonical(sitk.GetArrayViewFromImage(im)) for im in (ct, mask))
    return tumour_measurements(ct_view, mask_view, orientation.spacing_zyx(ct), **kwargs)
