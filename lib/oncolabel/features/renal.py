"""Four-phase measurements of a small renal mass at the centre of a lesion-centred CT region (no contour needed).

The renal-mass task's input is the region a reader places around the mass, the mass at its centre, in four
co-registered phases (unenhanced, corticomedullary, nephrographic, excretory). These rules measure, at the acquired
resolution, what a radiologist reads from such a region (``docs/classifiers.md``, "Renal mass: measurements"):

* the **radius**: the distance from the centre at which the radial edge strength, averaged over the sphere of that
  radius and summed over the four phases, is largest (searched from ``min_radius_mm`` to 0.7 x the half field of
  view, in ``bin_mm`` steps, after an in-plane Gaussian smoothing of ``smoothing_mm``). The mass is taken as the
  sphere of that radius: the rules assume a roughly round mass centred in the region;
* ``central_deficit``: the share of the mass's contrast enhancement (summed over the three contrast phases) missing
  in its centre (``centre_fraction`` x radius): about 1 for a non-enhancing central necrosis or scar, about 0 for a
  mass enhancing throughout;
* the **interior**: the sphere less ``edge_mm`` (partial volume with fat or cortex), less the central
  ``shell_fraction`` x radius when ``central_deficit`` exceeds ``central_threshold`` (the enhancing wall only);
* ``unenhanced_hu``: the interior's mean unenhanced attenuation; ``enhancement_<phase>_hu``: its mean rise over the
  unenhanced value per contrast phase;
* ``relative_enhancement_<phase>``: that rise over the enhancement of the renal cortex in the corticomedullary phase
  (corticomedullary minus unenhanced, median over voxels brighter than ``cortex_hu`` after smoothing, more than
  ``cortex_gap_mm`` outside the mass): the lesion-to-cortex ratio removes the patient's contrast dose and timing;
* ``log_heterogeneity``: log HU amplitude of the enhancement texture at the phase of peak enhancement. The texture
  of a perfused mass scales with each phase's enhancement (``s_p``: the phase's rise over the peak rise) and repeats
  across phases while scanner noise is independent per phase. Per interior voxel, the texture at peak scale is the
  least-squares fit ``u = sum_p s_p d_p / sum_p s_p^2`` of the three contrast phases' deviations ``d_p`` from their
  interior means; its variance less the noise's share ``var_noise / sum_p s_p^2`` is the texture variance ``v``,
  the noise variance measured in the same voxels on the unenhanced phase (no enhancement, no texture). Deviations
  are first clipped at ``clip_sd`` robust SDs (1.4826 MAD: partial volume with fat or cortex at the edge).
  ``0.5 log(max(v, 1 HU^2))``.

The output also holds ``diameter_mm``, ``noise_sd_hu``, ``cortex_enhancement_hu`` and ``interior_voxels``.

Scope: tested on drawn masses with known answers, on the renal phantom (every measurement against the trait it
drew) and on a mass implanted at the edge of a real kidney in a real CT (diameter, attenuation and relative
enhancement read back). The texture and central-deficit rules assume four phases co-registered voxel for voxel with
independent noise (breath-hold misregistration between real phases makes the texture read as noise); they have not
been validated on real renal masses. Research use only.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from oncolabel.errors import InvalidInputError
from oncolabel.io import check_same_geometry, require_3d
from oncolabel.transforms import AxisOrientation

__all__ = ["PHASES", "RENAL_MEASUREMENT_NAMES", "RenalMeasurementError", "measure_renal_mass",
           "renal_mass_measurements"]

PHASES: tuple[str, ...] = ("unenhanced", "corticomedullary", "nephrographic", "excretory")
CONTRAST_PHASES: tuple[str, ...] = PHASES[1:]

#: the measurements a model uses (the output holds more: see the module docstring)
RENAL_MEASUREMENT_NAMES: tuple[str, ...] = (
    "unenhanced_hu", *(f"relative_enhancement_{p}" for p in CONTRAST_PHASES), "central_deficit", "log_heterogeneity")


class RenalMeasurementError(InvalidInputError):
    """The renal-mass measurements cannot be made on this region (no mass edge, no renal cortex, a mass too small)."""


def _offsets_mm(shape: tuple[int, int, int], spacing_zyx: tuple[float, float, float]) -> list[np.ndarray]:
    return [((np.arange(n) - (n - 1) / 2.0) * s).reshape([-1 if i == k else 1 for k in range(3)])
            for i, (n, s) in enumerate(zip(shape, spacing_zyx))]


def _winsorised(v: np.ndarray, clip_sd: float) -> np.ndarray:
    sd = 1.4826 * float(np.median(np.abs(v - np.median(v))))
    return np.clip(v, -clip_sd * sd, clip_sd * sd) if sd > 0 else v


def mass_radius(phases: Mapping[str, np.ndarray], spacing_zyx: tuple[float, float, float], *,
                min_radius_mm: float = 4.0, bin_mm: float = 0.5, smoothing_mm: float = 1.0) -> float:
    """Radius (mm) of the mass at the centre of the region: the sphere with the strongest radial edge (module
    docstring). ``phases``: arrays ``(z, y, x)`` in HU on one grid."""
    arrays = list(phases.values())
    shape = arrays[0].shape
    z, y, x = _offsets_mm(shape, spacing_zyx)
    rho = np.sqrt(z * z + y * y + x * x)
    r_in = np.sqrt(y * y + x * x) + 1e-9
    uy, ux = y / r_in, x / r_in
    r_max = 0.7 * min(shape[1] * spacing_zyx[1], shape[2] * spacing_zyx[2]) / 2.0
    if r_max <= min_radius_mm + bin_mm:
        raise RenalMeasurementError(f"the region ({shape[2]} x {shape[1]} pixels of {spacing_zyx[2]:.2f} mm) is too "
                                    "small to find a mass edge in it")
    edges = np.arange(0.0, r_max + bin_mm, bin_mm)
    idx = (np.digitize(rho, edges) - 1).ravel()
    ok = (idx >= 0) & (idx < edges.size - 1)
    counts = np.bincount(idx[ok], minlength=edges.size - 1)
    profile = np.zeros(edges.size - 1)
    sigma = (0.0, smoothing_mm / spacing_zyx[1], smoothing_mm / spacing_zyx[2])
    for a in arrays:
        s = ndimage.gaussian_filter(np.asarray(a, dtype=np.float32), sigma)
        radial = np.abs(np.gradient(s, spacing_zyx[1], axis=1) * uy + np.gradient(s, spacing_zyx[2], axis=2) * ux)
        profile += np.bincount(idx[ok], radial.ravel()[ok], minlength=edges.size - 1) / np.maximum(counts, 1)
    centres = edges[:-1] + bin_mm / 2.0
    search = centres >= min_radius_mm
    if not np.any(profile[search] > 0):
        raise RenalMeasurementError("no edge around the centre of the region: is a mass at its centre?")
    return float(centres[search][int(np.argmax(profile[search]))])


def renal_mass_measurements(phases: Mapping[str, np.ndarray], spacing_zyx: tuple[float, float, float], *,
                            min_radius_mm: float = 4.0, edge_mm: float = 1.5, centre_fraction: float = 0.3,
                            shell_fraction: float = 0.55, central_threshold: float = 0.5, cortex_hu: float = 120.0,
                            cortex_gap_mm: float = 2.5, clip_sd: float = 3.5, min_interior_voxels: int = 30,
                            min_cortex_voxels: int = 20) -> dict[str, float]:
    """The measurements (module docstring) of the mass at the centre of a four-phase region.

    Args:
        phases: phase name -> array ``(z, y, x)`` in HU, all four phases of :data:`PHASES`, one shape.
        spacing_zyx: voxel size in mm, in array order.

    Raises:
        InvalidInputError: a phase missing, arrays not 3D or of different shapes.
        RenalMeasurementError: no mass edge, too few interior voxels, no renal cortex outside the mass.
    """
    missing = [p for p in PHASES if p not in phases]
    if missing:
        raise InvalidInputError(f"renal-mass measurements need all four phases; missing {', '.join(missing)}")
    arr = {p: np.asarray(phases[p], dtype=np.float64) for p in PHASES}
    shape = arr[PHASES[0]].shape
    if len(shape) != 3 or any(a.shape != shape for a in arr.values()):
        raise InvalidInputError(f"renal-mass measurements need four 3D arrays of one shape, got "
                                f"{[a.shape for a in arr.values()]}")
    spacing_zyx = tuple(float(s) for s in spacing_zyx)
    radius = mass_radius(arr, spacing_zyx, min_radius_mm=min_radius_mm)
    z, y, x = _offsets_mm(shape, spacing_zyx)
    rho = np.sqrt(z * z + y * y + x * x)

    def mean_rise(region: np.ndarray) -> dict[str, float]:
        ue = float(arr["unenhanced"][region].mean())
        return {p: float(arr[p][region].mean()) - ue for p in CONTRAST_PHASES}

    core = rho < centre_fraction * radius
    wall = (rho > shell_fraction * radius) & (rho < radius - edge_mm)
    if core.sum() < 1 or wall.sum() < min_interior_voxels:
        raise RenalMeasurementError(f"the mass (radius {radius:.1f} mm) holds too few voxels to measure "
                                    f"({int(wall.sum())} in its wall, need {min_interior_voxels})")
    rise_wall, rise_core = sum(mean_rise(wall).values()), sum(mean_rise(core).values())
    central_deficit = (rise_wall - rise_core) / max(rise_wall, 30.0)
    interior = wall if central_deficit > central_threshold else rho < radius - edge_mm

    ue = float(arr["unenhanced"][interior].mean())
    rise = mean_rise(interior)
    dev = {p: _winsorised(arr[p][interior] - arr[p][interior].mean(), clip_sd) for p in PHASES}
    noise_var = float(np.mean(dev["unenhanced"] ** 2))
    peak = max(max(rise.values()), 1.0)
    scale = np.array([max(rise[p], 0.0) / peak for p in CONTRAST_PHASES])
    norm = max(float(scale @ scale), 1e-3)
    texture = scale @ np.stack([dev[p] for p in CONTRAST_PHASES]) / norm  # least-squares texture at peak scale
    texture_var = float(np.mean(texture ** 2)) - noise_var / norm

    smooth_cm = ndimage.gaussian_filter(arr["corticomedullary"], (0.0, 1.0 / spacing_zyx[1], 1.0 / spacing_zyx[2]))
    cortex = (rho > radius + cortex_gap_mm) & (smooth_cm > cortex_hu)
    if cortex.sum() < min_cortex_voxels:
        raise RenalMeasurementError(f"no renal cortex (corticomedullary > {cortex_hu:g} HU) outside the mass in the "
                                    f"region ({int(cortex.sum())} voxels, need {min_cortex_voxels}): the enhancement "
                                    "cannot be referred to the kidney's")
    cortex_rise = float(np.median(arr["corticomedullary"][cortex] - arr["unenhanced"][cortex]))
    if cortex_rise <= 0:
        raise RenalMeasurementError(f"the renal cortex does not enhance ({cortex_rise:.1f} HU): are the phases in "
                                    "the right order?")
    out: dict[str, float] = {"unenhanced_hu": ue}
    out.update({f"relative_enhancement_{p}": rise[p] / cortex_rise for p in CONTRAST_PHASES})
    out.update({"central_deficit": float(central_deficit),
                "log_heterogeneity": 0.5 * math.log(max(texture_var, 1.0)),
                "diameter_mm": 2.0 * radius, "noise_sd_hu": math.sqrt(max(noise_var, 0.0)),
                "cortex_enhancement_hu": cortex_rise, "interior_voxels": float(interior.sum())})
    out.update({f"enhancement_{p}_hu": rise[p] for p in CONTRAST_PHASES})
    return out


def measure_renal_mass(images: Mapping[str, sitk.Image], **kwargs: Any) -> dict[str, float]:
    """:func:`renal_mass_measurements` of four co-registered phase images in HU (keyword arguments passed on), on
    the patient's axes in LPS order (axial planes first, whichever way the files store them)."""
    missing = [p for p in PHASES if images.get(p) is None]
    if missing:
        raise InvalidInputError(f"renal-mass measurements need all four phases; missing {', '.join(missing)}")
    ref = require_3d(images[PHASES[0]], what=f"{PHASES[0]} phase")
    for p in PHASES[1:]:
        check_same_geometry(ref, images[p], what=f"{p} phase (phases must be co-registered on one grid)")
    orientation = AxisOrientation.of_image(ref)
    return renal_mass_measurements({p: orientation.to_canonical(sitk.GetArrayViewFromImage(images[p])) for p in PHASES},
                                   orientation.spacing_zyx(ref), **kwargs)
