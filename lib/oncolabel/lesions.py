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


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """3D connected components (26-connectivity) of a ``(z, y, x)`` mask."""
    return ndimage.label(mask.astype(bool), structure=STRUCTURE_3D)


def remove_small_components(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """``mask`` without components smaller than ``min_voxels``."""
    lab, n = label_components(mask)
    if n == 0 or min_voxels <= 1:
        return mask.astype(bool)
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[lab]


def components_with_seeds(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The components of ``mask`` (26-connectivity) that contain at least one ``seeds`` voxel.

    Hysteresis thresholding when ``mask = p >= low`` and ``seeds = p >= high``: a lesion must reach the high
    probability somewhere, and is then kept down to the low one (Canny, IEEE TPAMI 1986;8:679).
    """
    lab, n = label_components(mask)
    if n == 0:
        return mask.astype(bool)
    keep = np.zeros(n + 1, dtype=bool)
    keep[np.unique(lab[seeds.astype(bool) & (lab > 0)])] = True
    keep[0] = False
    return keep[lab]


def find_lesions(mask: np.ndarray, reference: sitk.Image) -> list[Lesion]:
    """Lesions of a ``(z, y, x)`` mask on ``reference``'s grid, largest first."""
    lab, n = label_components(mask)
    if n == 0:
        return []
    spacing = np.asarray(reference.GetSpacing(), dtype=float)  # x, y, z
    voxel_ml = float(np.prod(spacing)) / 1000.0
    objs = ndimage.find_objects(lab)
    counts = np.bincount(lab.ravel())[1:]
    centroids = ndimage.center_of_mass(np.ones_like(lab, dtype=np.uint8), lab, index=np.arange(1, n + 1))
    out = []
    for i in np.argsort(-counts, kind="stable"):
        zc, yc, xc = centroids[i]
        idx = (float(xc), float(yc), float(zc))
        phys = reference.TransformContinuousIndexToPhysicalPoint(idx)
        vol_mm3 = counts[i] * voxel_ml * 1000.0
        out.append(Lesion(id=len(out) + 1, voxels=int(counts[i]), volume_ml=round(counts[i] * voxel_ml, 4),
                          centroid_mm=tuple(round(float(v), 2) for v in phys),
                          centroid_index=tuple(round(v, 2) for v in idx),
                          slices=(int(objs[i][0].start), int(objs[i][0].stop - 1)),
                          diameter_mm=round(float((6.0 * vol_mm3 / np.pi) ** (1.0 / 3.0)), 2)))
    return out
