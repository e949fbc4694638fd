"""Connected-component lesions of a binary mask, in physical units."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

#: 26-connectivity in 3D
STRUCTURE_3D = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class Lesion:
    """One connected component.

    Attributes:
        id: 1-based component number (ordered by decreasing volume).
        voxels: voxel count.
        volume_ml: volume in millilitres.
        centroid_mm: centroid in physical (LPS) coordinates.
        centroid_index: centroid as (x, y, z) voxel index (SimpleITK order).
        slices: first and last slice index (z) it touches.
        diameter_mm: equivalent-sphere diameter, (6 V / pi)^(1/3).
    """

    id: int
    voxels: int
    volume_ml: float
    centroid_mm: tuple[float, float, float]
    centroid_index: tuple[float, float, float]
    slices: tuple[int, int]
    diameter_mm: float

    def to_dict(self) -> dict:
        return asdict(self)


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding every nonzero voxel of ``mask`` (one slice per axis), or None when it is empty.

    Component operations below run on this box: components never leave it, and a lesion mask is a tiny part of a
    512 x 512 x 200 CT (labelling the whole volume cost seconds per call).
    """
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if not hit.size:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
        mask = mask[(slice(None),) * axis + (box[-1],)]  # later axes scan only the part that can hold voxels
    return tuple(box)


def _on_box(mask: np.ndarray, fn) -> np.ndarray:
    """``fn`` applied to ``mask`` cropped to its bounding box, pasted back into an all-False full-size mask."""
    mask = np.asarray(mask).astype(bool, copy=False)
    out = np.zeros(mask.shape, dtype=bool)
    box = bounding_box(mask)
    if box is not None:
        out[box] = fn(mask[box], box)
    return out


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """3D connected components (26-connectivity) of a ``(z, y, x)`` mask."""
    return ndimage.label(mask.astype(bool), structure=STRUCTURE_3D)


def remove_small_components(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """``mask`` without components smaller than ``min_voxels``."""
    def keep_large(sub: np.ndarray, _box: tuple[slice, ...]) -> np.ndarray:
        if min_voxels <= 1:
            return sub
        lab, n = label_components(sub)
        keep = np.bincount(lab.ravel(), minlength=n + 1) >= min_voxels
        keep[0] = False
        return keep[lab]

    return _on_box(mask, keep_large)


def components_with_seeds(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The components of ``mask`` (26-connectivity) that contain at least one ``seeds`` voxel.

    Hysteresis thresholding when ``mask = p >= low`` and ``seeds = p >= high``: a lesion must reach the high
    probability somewhere, and is then kept down to the low one (Canny, IEEE TPAMI 1986;8:679).
    """
    def seeded(sub: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
        lab, n = label_components(sub)
        keep = np.zeros(n + 1, dtype=bool)
        keep[np.unique(lab[np.asarray(seeds[box]).astype(bool) & (lab > 0)])] = True
        keep[0] = False
        return keep[lab]

    return _on_box(mask, seeded)


def find_lesions(mask: np.ndarray, reference: sitk.Image) -> list[Lesion]:
    """Lesions of a ``(z, y, x)`` mask on ``reference``'s grid, largest first."""
    mask = np.asarray(mask).astype(bool, copy=False)
    box = bounding_box(mask)
    if box is None:
        return []
    lab, n = label_components(mask[box])
    offset = np.array([b.start for b in box], dtype=float)  # z, y, x
    spacing = np.asarray(reference.GetSpacing(), dtype=float)  # x, y, z
    voxel_ml = float(np.prod(spacing)) / 1000.0
    objs = ndimage.find_objects(lab)
    counts = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    out = []
    for i in np.argsort(-counts, kind="stable"):
        own = np.nonzero(lab[objs[i]] == i + 1)
        zc, yc, xc = (np.mean(own[k]) + objs[i][k].start + offset[k] for k in range(3))
        idx = (float(xc), float(yc), float(zc))
        phys = reference.TransformContinuousIndexToPhysicalPoint(idx)
        vol_mm3 = counts[i] * voxel_ml * 1000.0
        z0 = int(objs[i][0].start + offset[0])
        out.append(Lesion(id=len(out) + 1, voxels=int(counts[i]), volume_ml=round(counts[i] * voxel_ml, 4),
                          centroid_mm=tuple(round(float(v), 2) for v in phys),
                          centroid_index=tuple(round(v, 2) for v in idx),
                          slices=(z0, z0 + int(objs[i][0].stop - objs[i][0].start) - 1),
                          diameter_mm=round(float((6.0 * vol_mm3 / np.pi) ** (1.0 / 3.0)), 2)))
    return out
