"""Building blocks shared by the synthetic CT phantoms.

Nothing here knows about a clinical task: a voxel grid with its LPS geometry, a canvas that holds
attenuation (HU) and a tissue-code map, signed-distance primitives, partial-volume occupancy,
random textures, the acquisition model (point-spread blur, correlated noise) and the table of
attenuation values. The bone-metastasis phantom uses them; renal, pancreatic and head-and-neck
phantoms are meant to reuse them.

Conventions
-----------
* Arrays are numpy ``(z, y, x)``; SimpleITK sizes, spacings, origins and indices are ``(x, y, z)``.
* World coordinates are LPS millimetres as SimpleITK uses them (+x patient left, +y posterior,
  +z superior) and the direction matrix is the identity, so an axial slice displayed with row 0 at the
  top is in the radiological convention (anterior up, patient right on the viewer's left). Writing
  NIfTI through SimpleITK turns this into the RAS sform/qform that nibabel reads.
* Signed distances are in millimetres, negative inside.
* Everything random takes a :class:`numpy.random.Generator`; nothing touches the global RNG.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from oncolabel.errors import InvalidInputError

Coords = tuple[np.ndarray, np.ndarray, np.ndarray]
"""World coordinates ``(x, y, z)`` in mm as arrays that broadcast against each other."""

HU_MIN = -1024
HU_MAX = 3071


class Tissue(enum.IntEnum):
    """Codes of the tissue map every phantom returns next to its image (uint8).

    The map tells which tissue was drawn at a voxel (the largest share where partial volume mixes
    two); findings (metastasis, bone island, ...) overwrite the tissue they replace.
    """

    AIR = 0
    TABLE = 1
    SKIN = 2
    FAT = 3  # subcutaneous fat
    MUSCLE = 4
    VISCERAL_FAT = 5  # intra-abdominal, retroperitoneal and mediastinal fat
    LUNG = 6
    BLOOD = 7  # heart, great vessels, pulmonary vessels (unenhanced)
    LIVER = 8
    SPLEEN = 9
    KIDNEY = 10
    BOWEL_WALL = 11
    FLUID = 12  # bowel / gastric fluid, gallbladder, bladder
    BOWEL_GAS = 13
    FECES = 14
    CSF = 15
    SPINAL_CORD = 16
    DISC = 17
    CARTILAGE = 18
    CORTICAL_BONE = 19
    CANCELLOUS_BONE = 20
    METASTASIS = 30
    BONE_ISLAND = 31
    ENDPLATE_SCLEROSIS = 32
    OSTEOPHYTE = 33
    SCHMORL_NODE = 34
    HEMANGIOMA = 35
    VASCULAR_CALCIFICATION = 36
    # abdomen around the pancreas (PanNET phantom)
    PANCREAS = 40
    PANCREATIC_TUMOUR = 41
    LYMPH_NODE = 42
    ARTERY = 43  # enhanced aorta and its branches


BONE_TISSUES = (Tissue.CORTICAL_BONE, Tissue.CANCELLOUS_BONE)


@dataclass(frozen=True)
class HURange:
    """Plausible attenuation interval of one tissue in HU; phantoms draw a per-case value inside it."""

    low: float
    high: float

    def draw(self, rng: np.random.Generator) -> float:
        """A value drawn uniformly in ``[low, high]``."""
        return float(rng.uniform(self.low, self.high))

    @property
    def mid(self) -> float:
        return 0.5 * (self.low + self.high)


HU_TABLE: dict[str, HURange] = {
    # Hounsfield scale: water 0, air -1000 by definition (Hounsfield 1973, Br J Radiol 46:1016).
    "air": HURange(-1000.0, -1000.0),
    # Lung parenchyma -900..-700 with a gravity gradient (Kalender, Computed Tomography, 3rd ed. 2011).
    "lung": HURange(-880.0, -820.0),
    "fat": HURange(-115.0, -85.0),  # -120..-80 (Kalender 2011; Hofer, CT Teaching Manual)
    "skin": HURange(20.0, 50.0),
    "muscle": HURange(40.0, 60.0),  # skeletal muscle 40-60 unenhanced
    "liver": HURange(54.0, 66.0),  # unenhanced liver 55-65 (Kodama et al., AJR 2007;188:1307)
    "spleen": HURange(42.0, 50.0),  # liver exceeds spleen by ~10 HU when normal (Kodama 2007)
    "kidney": HURange(30.0, 40.0),  # unenhanced renal parenchyma
    "blood": HURange(38.0, 50.0),  # unenhanced blood, haematocrit dependent
    "fluid": HURange(5.0, 20.0),  # bowel fluid, bile, urine
    "bowel_gas": HURange(-980.0, -900.0),
    "feces": HURange(-250.0, 40.0),  # mottled gas/solid mixture
    "csf": HURange(4.0, 14.0),
    "cord": HURange(30.0, 40.0),
    "disc": HURange(70.0, 95.0),  # intervertebral disc ~80 HU
    "cartilage": HURange(100.0, 180.0),  # costal cartilage, uncalcified
    # Vertebral cortex as it appears on CT (thin shell, partial volume): 700-1000; compact bone 1000-1900.
    "cortical": HURange(750.0, 1000.0),
    # Trabecular bone of L1: ~300 at 30 y falling ~2.5 HU/year; <110 HU suggests osteoporosis
    # (Pickhardt et al., Ann Intern Med 2013;158:588).
    "cancellous": HURange(140.0, 300.0),
    "table": HURange(80.0, 200.0),
}


def check_seed(seed: Any) -> None:
    """Raise :class:`InvalidInputError` unless ``seed`` is a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")


def seed_sequence(seed: int | np.random.SeedSequence) -> np.random.SeedSequence:
    """``seed`` as a :class:`~numpy.random.SeedSequence` (a sequence passes through; an int is checked first)."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    check_seed(seed)
    return np.random.SeedSequence(int(seed))


def default_case_id(prefix: str, ss: np.random.SeedSequence) -> str:
    """``<prefix>_s<entropy>[_<spawn keys>]``: a case id that names the seed it was drawn from."""
    keys = "_".join(f"{k:04d}" for k in ss.spawn_key)
    return f"{prefix}_s{ss.entropy}" + (f"_{keys}" if keys else "")


def child_seed(seed: int | np.random.SeedSequence, *keys: int) -> np.random.SeedSequence:
    """A child :class:`~numpy.random.SeedSequence` of ``seed`` for the spawn path ``keys``.

    ``child_seed(s, i)`` equals ``SeedSequence(s).spawn(n)[i]`` for every ``n > i`` and never mutates
    its argument, so case ``i`` of a cohort and each random stream inside a case do not depend on
    how many others were drawn.
    """
    ss = seed_sequence(seed)
    return np.random.SeedSequence(ss.entropy, spawn_key=tuple(ss.spawn_key) + tuple(int(k) for k in keys),
                                  pool_size=ss.pool_size)


def case_seed(seed: int, index: int) -> np.random.SeedSequence:
    """Seed of case ``index`` of a cohort with seed ``seed``: ``SeedSequence(seed).spawn(n)[index]`` for any n.

    Every phantom's cohort writer uses it, so case ``i`` never depends on the cohort size.
    """
    check_seed(seed)
    if not isinstance(index, (int, np.integer)) or index < 0:
        raise InvalidInputError(f"case index must be a non-negative integer, got {index!r}")
    return child_seed(int(seed), int(index))


@dataclass(frozen=True)
class CTGrid:
    """A regular voxel grid with LPS geometry and identity direction.

    Parameters
    ----------
    shape : (nz, ny, nx) numpy order.
    spacing : (sx, sy, sz) mm, SimpleITK order.
    origin : LPS position (mm) of voxel (0, 0, 0), SimpleITK order.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        return (self.spacing[2], self.spacing[1], self.spacing[0])

    def axis(self, k: int) -> np.ndarray:
        """World coordinates (float32 mm) along numpy axis ``k`` (0 z, 1 y, 2 x)."""
        n = self.shape[k]
        sp = self.spacing[2 - k]
        return (self.origin[2 - k] + sp * np.arange(n)).astype(np.float32)

    def box(self, lo: Sequence[float], hi: Sequence[float]) -> tuple[slice, slice, slice] | None:
        """Index slices ``(z, y, x)`` of the voxels whose centres lie in the world box ``[lo, hi]`` (x, y, z).

        Returns None when the box misses the grid.
        """
        out = []
        for k in range(3):
            ax = 2 - k
            sp, o, n = self.spacing[ax], self.origin[ax], self.shape[k]
            a = max(0, int(math.ceil((min(lo[ax], hi[ax]) - o) / sp - 1e-6)))
            b = min(n, int(math.floor((max(lo[ax], hi[ax]) - o) / sp + 1e-6)) + 1)
            if b <= a:
                return None
            out.append(slice(a, b))
        return (out[0], out[1], out[2])

    def coords(self, box: tuple[slice, slice, slice] | None = None) -> Coords:
        """Broadcastable world coordinates ``(x, y, z)`` of the voxels in ``box`` (all voxels if None)."""
        box = box or (slice(None),) * 3
        z = self.axis(0)[box[0]][:, None, None]
        y = self.axis(1)[box[1]][None, :, None]
        x = self.axis(2)[box[2]][None, None, :]
        return x, y, z

    def index_of(self, point: Sequence[float]) -> tuple[int, int, int]:
        """Nearest voxel index (i, j, k) (SimpleITK order) of an LPS point, clipped to the grid."""
        idx = []
        for ax in range(3):
            i = int(round((point[ax] - self.origin[ax]) / self.spacing[ax]))
            idx.append(min(max(i, 0), self.shape[2 - ax] - 1))
        return idx[0], idx[1], idx[2]

    def to_image(self, array: np.ndarray) -> sitk.Image:
        """A SimpleITK image of ``array`` (numpy ``(z, y, x)``) with this grid's geometry."""
        if array.shape != self.shape:
            raise ValueError(f"array shape {array.shape} is not the grid shape {self.shape}")
        img = sitk.GetImageFromArray(array)
        img.SetSpacing(tuple(float(s) for s in self.spacing))
        img.SetOrigin(tuple(float(o) for o in self.origin))
        img.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
        return img


class Canvas:
    """Attenuation (float32 HU) and tissue-code (uint8) volumes painted structure by structure.

    Later paints cover earlier ones; ``only_on`` restricts a paint to voxels that still hold one of the
    given tissues, which is how organs stay inside the cavity that holds them.
    """

    def __init__(self, grid: CTGrid, background_hu: float = -1000.0) -> None:
        self.grid = grid
        self.hu = np.full(grid.shape, background_hu, dtype=np.float32)
        self.tissue = np.zeros(grid.shape, dtype=np.uint8)

    def paint(self, box: tuple[slice, slice, slice] | None, mask: np.ndarray, hu: float | np.ndarray,
              tissue: int, *, only_on: Iterable[int] | None = None) -> np.ndarray:
        """Set ``hu`` and ``tissue`` where ``mask`` is true inside ``box``; returns the painted mask."""
        if box is None:
            return np.zeros((0, 0, 0), dtype=bool)
        hv, tv = self.hu[box], self.tissue[box]
        m = np.broadcast_to(mask, hv.shape)
        if only_on is not None:
            m = m & np.isin(tv, np.asarray(list(only_on), dtype=np.uint8))
        if np.ndim(hu) == 0:
            hv[m] = hu
        else:
            hv[m] = np.broadcast_to(hu, hv.shape)[m]
        tv[m] = tissue
        return m

    def blend(self, box: tuple[slice, slice, slice] | None, occ: np.ndarray, hu: float | np.ndarray,
              tissue: int) -> None:
        """Partial-volume paint: ``hu_new = hu_old + occ * (hu - hu_old)``; tissue set where ``occ >= 0.5``."""
        if box is None:
            return
        hv, tv = self.hu[box], self.tissue[box]
        occ = np.broadcast_to(occ, hv.shape)
        hv += occ * (np.asarray(hu, dtype=np.float32) - hv)
        tv[occ >= 0.5] = tissue

    def composite_bone(self, box: tuple[slice, slice, slice] | None, occ_outer: np.ndarray, occ_inner: np.ndarray,
                       cortical_hu: float | np.ndarray, marrow_hu: float | np.ndarray) -> None:
        """Partial-volume paint of a bone: cortex between the outer and inner surfaces, marrow inside.

        ``occ_outer`` / ``occ_inner`` are the voxel fractions inside the periosteal and endosteal
        surfaces (see :func:`occupancy`); the rest of the voxel keeps what was there.
        """
        if box is None:
            return
        hv, tv = self.hu[box], self.tissue[box]
        occ_inner = np.minimum(occ_inner, occ_outer)
        touched = occ_outer > 0
        new = hv * (1.0 - occ_outer) + (occ_outer - occ_inner) * cortical_hu + occ_inner * marrow_hu
        hv[touched] = new[touched]
        tv[occ_inner >= 0.5] = Tissue.CANCELLOUS_BONE
        tv[(occ_outer >= 0.5) & (occ_inner < 0.5)] = Tissue.CORTICAL_BONE


# ----------------------------------------------------------------------------------------------- SDFs
def sdf_ellipse(dx: np.ndarray, dy: np.ndarray, rx: float | np.ndarray, ry: float | np.ndarray) -> np.ndarray:
    """Approximate signed distance (mm) to an axis-aligned ellipse, ``(dx, dy)`` from its centre.

    Uses the first-order bound ``k0 (k0 - 1) / k1`` with ``k0 = |p / r|`` and ``k1 = |p / r^2|``
    (Quilez, "ellipsoid SDF"); exact on the boundary, within a few % nearby.
    """
    ax, ay = dx / rx, dy / ry
    k0 = np.sqrt(ax * ax + ay * ay)
    bx, by = ax / rx, ay / ry
    k1 = np.sqrt(bx * bx + by * by)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def sdf_ellipsoid(p: Coords, centre: Sequence[float], radii: Sequence[float],
                  rotation: np.ndarray | None = None) -> np.ndarray:
    """Approximate signed distance (mm) to an ellipsoid; ``rotation`` rows are its local axes (world)."""
    d = [p[i] - np.float32(centre[i]) for i in range(3)]
    if rotation is not None:
        r = np.asarray(rotation, dtype=np.float32)
        d = [r[i, 0] * d[0] + r[i, 1] * d[1] + r[i, 2] * d[2] for i in range(3)]
    k0 = np.sqrt(sum((d[i] / radii[i]) ** 2 for i in range(3)))
    k1 = np.sqrt(sum((d[i] / (radii[i] * radii[i])) ** 2 for i in range(3)))
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def sdf_capsule(p: Coords, a: Sequence[float], b: Sequence[float], radius: float,
                scale: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Signed distance (mm) to the capsule of ``radius`` around segment ``a``-``b``.

    ``scale`` stretches space per axis before measuring (``(2, 1, 1)`` halves the capsule's x extent),
    an approximate SDF for flattened bars such as laminae and spinous processes.
    """
    q = [p[i] * np.float32(scale[i]) for i in range(3)]
    a_s = [a[i] * scale[i] for i in range(3)]
    b_s = [b[i] * scale[i] for i in range(3)]
    ab = np.array([b_s[i] - a_s[i] for i in range(3)], dtype=np.float64)
    ab2 = float(ab @ ab) or 1e-9
    pa = [q[i] - np.float32(a_s[i]) for i in range(3)]
    t = np.clip((pa[0] * ab[0] + pa[1] * ab[1] + pa[2] * ab[2]) / np.float32(ab2), 0.0, 1.0)
    dist = np.sqrt(sum((pa[i] - t * np.float32(ab[i])) ** 2 for i in range(3)))
    return dist - np.float32(radius)


def plane_wave_field(p: Coords, rng: np.random.Generator, wavelength_mm: float, n_waves: int = 4) -> np.ndarray:
    """A smooth random field of unit-ish amplitude: a sum of ``n_waves`` random plane waves.

    Cheap irregularity for lesion and organ surfaces (added to an SDF) and for mottled textures.
    """
    out = None
    for _ in range(n_waves):
        k = rng.normal(size=3)
        k *= 2.0 * math.pi / (wavelength_mm * np.linalg.norm(k) + 1e-9)
        phase = rng.uniform(0, 2 * math.pi)
        w = np.cos(np.float32(k[0]) * p[0] + np.float32(k[1]) * p[1] + np.float32(k[2]) * p[2] + np.float32(phase))
        out = w if out is None else out + w
    return out * np.float32(math.sqrt(2.0 / n_waves))


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed 3-D rotation matrix (normalised Gaussian quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def occupancy(sdf: np.ndarray, spacing_zyx: Sequence[float], inset_mm: float | np.ndarray = 0.0) -> np.ndarray:
    """Fraction of each voxel inside the surface ``sdf = -inset_mm`` (box-filter partial volume).

    The voxel's footprint along the surface normal is ``|n_x| s_x + |n_y| s_y + |n_z| s_z``; the normal
    comes from the numerical gradient of ``sdf``, which also rescales approximate distances to
    true ones. Thick slices therefore blur endplates and rib edges the way a real slice profile does.
    ``sdf`` must be a full (not broadcast) array on a regular sub-grid.
    """
    grads = []
    for k in range(3):
        if sdf.shape[k] > 1:
            grads.append(np.gradient(sdf, spacing_zyx[k], axis=k))
        else:
            grads.append(np.zeros_like(sdf))
    gz, gy, gx = grads
    norm = np.sqrt(gx * gx + gy * gy + gz * gz)
    ok = norm > 1e-3
    norm = np.where(ok, norm, 1.0)
    width = (np.abs(gx) * spacing_zyx[2] + np.abs(gy) * spacing_zyx[1] + np.abs(gz) * spacing_zyx[0]) / norm
    width = np.where(ok, np.maximum(width, 1e-3), min(spacing_zyx))
    return np.clip(0.5 - (sdf / norm + inset_mm) / width, 0.0, 1.0).astype(np.float32)


def correlated_noise(rng: np.random.Generator, shape: Sequence[int], sigma_vox: Sequence[float] | float) -> np.ndarray:
    """Zero-mean, unit-SD Gaussian noise smoothed by a Gaussian of ``sigma_vox`` voxels (float32)."""
    white = rng.standard_normal(tuple(shape), dtype=np.float32)
    if np.any(np.asarray(sigma_vox) > 0):
        white = ndimage.gaussian_filter(white, sigma_vox, mode="reflect")
    sd = float(white.std()) or 1.0
    return white / np.float32(sd)


def smoothstep(e0: float, e1: float, x: np.ndarray | float) -> np.ndarray | float:
    """Hermite step from 0 at ``e0`` to 1 at ``e1``."""
    t = np.clip((np.asarray(x, dtype=np.float32) - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# --------------------------------------------------------------------------------------- acquisition
def _gaussian_power(sigma_vox: float, truncate: float = 4.0) -> float:
    """Sum of squared weights of scipy's discrete Gaussian kernel (1 for sigma 0)."""
    if sigma_vox <= 0:
        return 1.0
    radius = int(truncate * sigma_vox + 0.5)
    delta = np.zeros(2 * radius + 1)
    delta[radius] = 1.0
    w = ndimage.gaussian_filter1d(delta, sigma_vox, truncate=truncate, mode="constant")
    return float(np.sum(w * w))


def acquire(hu: np.ndarray, spacing_zyx: Sequence[float], rng: np.random.Generator, *, noise_sd_hu: float,
            psf_sigma_mm: float, slice_thickness_mm: float, fov_circle: bool = True,
            chunk: int = 16) -> np.ndarray:
    """Simulate the scanner: add noise, blur with the system response, round to int16 HU.

    Parameters
    ----------
    hu : float32 ``(z, y, x)`` ideal attenuation; overwritten (used as work space).
    spacing_zyx : voxel size in mm.
    rng : noise source.
    noise_sd_hu : standard deviation of the noise in the output (before rounding), measured in a
        uniform region. Typical abdominal CT: 8-25 HU.
    psf_sigma_mm : in-plane Gaussian point-spread function (standard deviation, mm); 0 switches
        all blur off (in-plane and along z).
    slice_thickness_mm : nominal slice thickness; the slice sensitivity profile is a Gaussian with
        FWHM equal to it.
    fov_circle : set voxels outside the inscribed reconstruction circle to -1024, as scanners do.

    Notes
    -----
    White noise is added *before* the blur, so the noise takes the texture of the reconstruction
    kernel (correlated over about one PSF width); its amplitude is pre-scaled by the kernel's
    noise-power gain so that the final standard deviation is ``noise_sd_hu``.
    """
    sz, sy, sx = spacing_zyx
    if psf_sigma_mm > 0:
        sigma = (slice_thickness_mm / 2.3548 / sz, psf_sigma_mm / sy, psf_sigma_mm / sx)
    else:  # an ideal system: no blur at all, in-plane or along z
        sigma = (0.0, 0.0, 0.0)
    gain = math.sqrt(_gaussian_power(sigma[0]) * _gaussian_power(sigma[1]) * _gaussian_power(sigma[2]))
    amp = np.float32(noise_sd_hu / gain) if noise_sd_hu > 0 else np.float32(0.0)
    if amp > 0:
        for z0 in range(0, hu.shape[0], chunk):
            block = hu[z0:z0 + chunk]
            block += amp * rng.standard_normal(block.shape, dtype=np.float32)
    if any(s > 0 for s in sigma):
        hu = ndimage.gaussian_filter(hu, sigma, output=hu, mode="nearest")
    if fov_circle:
        ny, nx = hu.shape[1:]
        yy = (np.arange(ny, dtype=np.float32) - (ny - 1) / 2) / (ny / 2)
        xx = (np.arange(nx, dtype=np.float32) - (nx - 1) / 2) / (nx / 2)
        outside = (yy[:, None] ** 2 + xx[None, :] ** 2) > 1.0
        hu[:, outside] = HU_MIN
    np.rint(hu, out=hu)
    np.clip(hu, HU_MIN, HU_MAX, out=hu)
    return hu.astype(np.int16)
