"""Image operations shared by the classifiers: maximum-intensity projections and their inverse for heat maps, lesion-
centred grids, inputs of one examination on different grids brought onto one, and the check that a CT input holds
Hounsfield units.

Views (patient coordinates, LPS as SimpleITK uses them; the volume is first reoriented to LPS axes)::

    frontal  (coronal MIP)  : max along the anterior-posterior axis; rows head -> feet, columns patient right -> left
    lateral  (sagittal MIP) : max along the right-left axis;          rows head -> feet, columns anterior -> posterior
    axial                   : max along the head-feet axis;           rows anterior -> posterior, columns right -> left

Rows run from head to feet (the way MIPs are displayed), i.e. the superior end of the volume is row 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from oncolabel.errors import GeometryError, InvalidInputError
from oncolabel.io import same_geometry
from oncolabel.transforms import AxisOrientation

__all__ = ["VIEWS", "Projection", "mip", "to_lps", "backproject", "centred_grid", "resample_onto", "map_to_image",
           "hounsfield_percentiles", "check_hounsfield"]

#: view name -> numpy axis of an LPS ``(z, y, x)`` array that is collapsed
VIEWS = {"frontal": 1, "coronal": 1, "lateral": 2, "sagittal": 2, "axial": 0}


def hounsfield_percentiles(values: np.ndarray, q: Sequence[float] = (1.0, 99.0)) -> np.ndarray:
    """Percentiles ``q`` of a CT's values, on a strided sample of a large array (about 1/256 of a 512 x 512 x 200
    volume, at least 16 slices); values below -1024 count as -1024 (air): scanners pad outside the reconstructed
    circle with -2048 or -3024."""
    arr = np.asarray(values)
    if arr.size > 2_000_000 and arr.ndim == 3:
        arr = arr[:: max(1, arr.shape[0] // 16), ::4, ::4]
    return np.percentile(np.maximum(arr, -1024), list(q))


def check_hounsfield(values: np.ndarray, *, what: str = "CT", max_low_percentile_hu: float = -50.0,
                     max_high_percentile_hu: float = 5000.0) -> tuple[float, float]:
    """Raise :class:`InvalidInputError` unless ``values`` look like a CT in Hounsfield units; return its 1st and
    99th percentiles.

    A CT holds air or fat (below ``max_low_percentile_hu``) in its lowest percent of voxels, whether a whole torso or
    a lesion-centred crop (perirenal, peripancreatic fat); MR and PET images start at 0, CT values stored without
    their rescale intercept (water near 1024) or rescaled to 0..1 lie above it. Without this check such an image
    is classified with full confidence.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "fc":  # the percentiles look at a sample: a slab of NaN would slip through to the network
        bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise InvalidInputError(f"the {what} holds {bad} NaN or infinite value(s)")
    lo, hi = (float(v) for v in hounsfield_percentiles(arr))
    if lo > max_low_percentile_hu:
        raise InvalidInputError(
            f"the {what}'s intensities span {lo:.0f}..{hi:.0f} (1st-99th percentile) with nothing below "
            f"{max_low_percentile_hu:.0f}: no air or fat, so not a CT in Hounsfield units (an MR or PET image, or CT "
            "values stored without their rescale intercept, water near 1024?)")
    if hi > max_high_percentile_hu:
        raise InvalidInputError(f"the {what}'s intensities span {lo:.0f}..{hi:.0f} (1st-99th percentile): not a CT in "
                                f"Hounsfield units (99th percentile above {max_high_percentile_hu:.0f})")
    return lo, hi


@dataclass(frozen=True)
class Projection:
    """A 2D maximum-intensity projection.

    Attributes:
        array: ``(rows, columns)`` float32, in display orientation (see the module docstring).
        spacing: ``(row_mm, column_mm)``.
        view: ``frontal``, ``lateral`` or ``axial``.
        depth_index: for each pixel, the index along the collapsed axis of the voxel that gave the maximum
            (on the LPS-reoriented volume; the same orientation as ``array``).
    """

    array: np.ndarray
    spacing: tuple[float, float]
    view: str
    depth_index: np.ndarray


def to_lps(image: sitk.Image, *, allow_oblique: bool = False) -> sitk.Image:
    """``image`` resampled without interpolation onto LPS-ordered axes (a permutation / flip of its voxels; the
    image-level twin of :class:`oncolabel.transforms.AxisOrientation`, which does the same on array views).

    Args:
        allow_oblique: map an oblique direction onto its closest axes (its tilt kept) instead of refusing it.

    Raises:
        InvalidInputError: not a 3D image, or an oblique direction matrix (not a permutation of the axes) unless
            ``allow_oblique``.
    """
    if image.GetDimension() != 3:
        raise InvalidInputError(f"a 3D volume is required, got a {image.GetDimension()}D image of size {image.GetSize()}")
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    if not allow_oblique and not np.allclose(np.abs(d), np.round(np.abs(d)), atol=1e-3):
        raise InvalidInputError(f"oblique image orientation {np.round(d, 3).tolist()}: reslice the volume to the "
                                "patient axes first")
    return sitk.DICOMOrient(image, "LPS")


def _canonical_view(view: str) -> str:
    key = view.lower()
    if key not in VIEWS:
        raise InvalidInputError(f"unknown MIP view {view!r}; use one of {', '.join(sorted(set(VIEWS)))}")
    return {"coronal": "frontal", "sagittal": "lateral"}.get(key, key)


def mip(volume: sitk.Image | np.ndarray, view: str = "frontal", *,
        spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Projection:
    """Maximum-intensity projection of a 3D volume.

    Args:
        volume: a SimpleITK image (any axis-aligned orientation; reoriented to LPS), or a numpy ``(z, y, x)`` array
            already in LPS order (z increasing towards the head), with ``spacing_zyx``.
        view: ``frontal`` (``coronal``), ``lateral`` (``sagittal``) or ``axial``.

    Returns:
        The projection in display orientation (head at the top for frontal and lateral views).
    """
    name = _canonical_view(view)
    if isinstance(volume, sitk.Image):
        img = to_lps(volume)
        arr = sitk.GetArrayViewFromImage(img)
        sx, sy, sz = img.GetSpacing()
        spacing_zyx = (sz, sy, sx)
    else:
        arr = np.asarray(volume)
        if arr.ndim != 3:
            raise InvalidInputError(f"a 3D (z, y, x) array is required, got shape {arr.shape}")
    axis = VIEWS[name]
    proj = arr.max(axis=axis).astype(np.float32)
    depth = arr.argmax(axis=axis).astype(np.int32)
    kept = [k for k in range(3) if k != axis]
    spacing = (float(spacing_zyx[kept[0]]), float(spacing_zyx[kept[1]]))
    if name != "axial":  # LPS z grows towards the head: flip so that the head is row 0
        proj, depth = proj[::-1], depth[::-1]
    return Projection(array=np.ascontiguousarray(proj), spacing=spacing, view=name,
                      depth_index=np.ascontiguousarray(depth))


def backproject(maps: dict[str, np.ndarray], reference: sitk.Image) -> sitk.Image:
    """A 3D heat map on ``reference``'s grid from 2D maps of its frontal / lateral / axial views.

    Each map (display orientation, the projection's shape) is smeared along its projection rays; several views are
    combined by their geometric mean, so a voxel is hot only where every view's ray through it is hot (the 3D
    location consistent with all views). Values stay in the maps' range.
    """
    lps = to_lps(reference)
    nz, ny, nx = sitk.GetArrayViewFromImage(lps).shape
    out = np.ones((nz, ny, nx), dtype=np.float64)
    if not maps:
        raise InvalidInputError("no projection maps to back-project")
    for view, m in maps.items():
        name = _canonical_view(view)
        axis = VIEWS[name]
        m = np.asarray(m, dtype=np.float64)
        if name != "axial":
            m = m[::-1]
        expected = tuple(s for k, s in enumerate((nz, ny, nx)) if k != axis)
        if m.shape != expected:
            raise InvalidInputError(f"{name} map shape {m.shape} does not match the volume's projection {expected}")
        out *= np.expand_dims(np.clip(m, 0, None), axis)
    out = out ** (1.0 / len(maps))
    img = sitk.GetImageFromArray(out.astype(np.float32))
    img.CopyInformation(lps)
    # back onto the reference's own axis order (identity when it already was LPS)
    return sitk.Resample(img, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, sitk.sitkFloat32)


# --- working grids: a fixed physical box around a point, and the way back ---------------------------------------


def region_centre(image: sitk.Image) -> np.ndarray:
    """The physical point (x, y, z mm) at the centre of ``image``'s voxel centres."""
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in image.GetSize()]))


def centred_grid(reference: sitk.Image, centre: Sequence[float], size: Sequence[int],
                 spacing: Sequence[float]) -> sitk.Image:
    """An empty float32 grid of ``size`` voxels and ``spacing`` mm (both x, y, z) centred on the physical point
    ``centre``, along ``reference``'s axes put in LPS order (:class:`oncolabel.transforms.AxisOrientation`): its
    columns run to the patient's left, rows to posterior, slices to superior whichever way the file stores them
    (so a network sees anatomy the way it learnt it), an oblique tilt kept."""
    grid = sitk.Image([int(v) for v in size], sitk.sitkFloat32)
    grid.SetSpacing([float(v) for v in spacing])
    grid.SetDirection(AxisOrientation.of_image(reference).direction(reference.GetDirection()))
    d = np.asarray(grid.GetDirection()).reshape(3, 3)
    half = (np.asarray(size, dtype=float) - 1.0) / 2.0 * np.asarray(spacing, dtype=float)
    grid.SetOrigin(tuple((np.asarray(centre, dtype=float) - d @ half).tolist()))
    return grid


def resample_onto(image: sitk.Image, grid: sitk.Image, *, interpolator: int = sitk.sitkLinear,
                  default: float = 0.0) -> np.ndarray:
    """``image`` sampled on ``grid`` (physical coordinates), as a float32 ``(z, y, x)`` array."""
    out = sitk.Resample(image, grid, sitk.Transform(), interpolator, float(default), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def map_to_image(array: np.ndarray, grid: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """A ``(z, y, x)`` array living on ``grid`` resampled (linear) onto ``reference``'s grid; 0 outside ``grid``."""
    src = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    src.CopyInformation(grid)
    return sitk.Resample(src, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


# --- inputs acquired on different grids (the phases of one examination) ----------------------------------------


def covered_fraction(reference: sitk.Image, image: sitk.Image, *, tolerance_voxels: float = 1.0,
                     samples: int = 17) -> float:
    """Share of ``reference``'s region that ``image`` covers: of ``samples``^3 points spread evenly over the
    reference's voxel centres (its corners included), those lying within ``image``'s voxel centres grown by
    ``tolerance_voxels`` of its own voxels along each axis (physical coordinates). 1.0 means the whole region is
    covered: both regions are boxes, so covered corners cover everything between them."""
    size = np.asarray(reference.GetSize(), dtype=float)
    axes = [np.linspace(0.0, s - 1.0, samples if s > 1 else 1) for s in size]
    idx = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    ref_dir = np.asarray(reference.GetDirection(), dtype=float).reshape(3, 3)
    points = (np.asarray(reference.GetOrigin(), dtype=float)
              + (idx * np.asarray(reference.GetSpacing(), dtype=float)) @ ref_dir.T)
    img_dir = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    cont = np.linalg.solve(img_dir, (points - np.asarray(image.GetOrigin(), dtype=float)).T).T
    cont /= np.asarray(image.GetSpacing(), dtype=float)
    upper = np.asarray(image.GetSize(), dtype=float) - 1.0
    inside = np.all((cont >= -tolerance_voxels) & (cont <= upper + tolerance_voxels), axis=1)
    return float(inside.mean())


def check_covers(reference: sitk.Image, image: sitk.Image, *, what: str, reference_what: str,
                 tolerance_voxels: float = 1.0) -> None:
    """Raise :class:`GeometryError` unless ``image`` covers ``reference``'s whole region (within
    ``tolerance_voxels`` of its own voxels: boxes cropped separately differ by up to a voxel at their edges)."""
    frac = covered_fraction(reference, image, tolerance_voxels=tolerance_voxels)
    if frac < 1.0:
        share = f"covers about {min(frac, 0.99):.0%} of" if frac > 0.0 else "lies outside"
        raise GeometryError(f"{what} {share} the {reference_what}'s region (physical coordinates); give every input "
                            "over the same region (e.g. crop them with one box)")


def align_onto(reference: sitk.Image, image: sitk.Image, *, what: str, reference_what: str,
               tolerance_voxels: float = 1.0) -> sitk.Image:
    """``image`` on ``reference``'s grid: itself when the grids agree, else resampled by its physical coordinates
    (linear interpolation, float32; the up-to-one-voxel margin of :func:`check_covers` filled from the nearest
    voxel). Aligning by coordinates assumes the inputs share the scanner's frame (one examination, no patient
    movement between them): nothing is registered.

    Raises:
        GeometryError: ``image`` does not cover ``reference``'s region.
    """
    if same_geometry(reference, image):
        return image
    check_covers(reference, image, what=what, reference_what=reference_what, tolerance_voxels=tolerance_voxels)
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32, True)
