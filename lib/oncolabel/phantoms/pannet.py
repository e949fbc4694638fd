"""Contrast-enhanced pancreatic CT with a non-functional pancreatic neuroendocrine tumour (PanNET).

Emulates the cohorts of the RDP-score study (320 patients, two centres; lymph-node metastasis of
non-functional PanNET predicted from radiomics + deep features of pancreatic-phase CT). Each case is a
crop around the pancreas (128 x 128 pixels at 0.75-0.86 mm, 20-48 slices) with one tumour and its mask,
drawn from a documented generative model of lymph-node (LN) status.

Generative model (:class:`PannetModel`; every coefficient is a field you can change)
---------------------------------------------------------------------------------------
Latent traits of a patient, drawn in this order:

* ``size_cm``: longest tumour diameter, ``exp(log(1.8) + 0.55 z)`` clipped to 0.5-6 cm (``z`` standard normal;
  median 1.8 cm, about 60 % of tumours <= 2 cm as in surgical PanNET series).
* aggressiveness ``a = 0.45 z + sqrt(1 - 0.45^2) e`` (``e`` standard normal): the shared biology behind grade,
  heterogeneity and margins.
* ``grade`` (WHO G1/G2/G3): ``a`` cut at 0.45 and 1.55 (about 67 / 27 / 6 %).
* ``heterogeneity`` ``h = expit(1.1 a - 0.3 + 0.9 e_h)``: amplitude of the enhancement texture (8 + 55 h HU) and,
  for large tumours, a necrotic/cystic core.
* ``margin`` ``m = expit(1.0 a - 0.4 + 1.0 e_m)``: irregularity of the tumour surface (lobulation, spiculation).
* ``vascular_invasion`` ``v ~ Bernoulli(expit(-2.8 + 1.4 ln(size/2) + 0.9 a))``: the tumour encases the
  superior mesenteric vein (head) or the splenic vein (body/tail) and narrows it; otherwise a fat plane
  separates them.
* ``ln_metastasis ~ Bernoulli(expit(eta))`` with
  ``eta = b0 + b_size ln(size/2) + b_h (h - 0.5) + b_m (m - 0.5) + b_g (grade - 1) + b_v v``.
* ``nodes_visible``: enlarged peripancreatic nodes near the tumour, ``P = 0.40`` when LN+ and ``0.06`` when
  LN- (reactive nodes look the same).

The image shows every trait only through the scanner (noise, blur, partial volume), so the Bayes posterior
``P(LN+ | size, h, m, grade, v, nodes_visible)`` (:meth:`PannetModel.posterior`) is an upper bound for any model
that sees only the image: its AUC on a cohort is the cohort's *ceiling AUC*, written into the manifest.

Grade is visible through enhancement: tumour attenuation is the pancreas attenuation times 1.25-1.6 (G1,
hyper-enhancing), 1.05-1.35 (G2) or 0.75-1.05 (G3), with the patient's contrast timing scaling every
enhancing tissue (see Lewis et al., Radiology 2010;257:107 for hyper-enhancement of well-differentiated PanNET
and its loss in higher grades; Canellas et al., AJR 2018;210:341 for size, margins, heterogeneity and vascular
involvement as CT predictors of nodal metastasis).

Disease-free survival: Weibull times (shape 1.2, scale 333 months, about 88 % 5-year DFS for LN-/G1) with hazard
ratio ``exp(1.3 LN + 0.6 (grade - 1))``; censoring uniform on 12-96 months.

Centres (:data:`CENTRES`) differ in pixel size, slice thickness, reconstruction kernel (PSF), noise and contrast
timing: centre B (3 mm slices, sharper kernel, twice the noise) is a real shift from centre A.

Attenuation in the pancreatic (late arterial) phase: aorta/SMA 230-330 HU, portal/splenic/SMV 130-190 HU,
IVC 80-120 HU, pancreas 95-135 HU, renal cortex 150-200 HU, bowel wall 70-110 HU, fat -115..-85 HU
(Kalender, Computed Tomography 2011; Fletcher et al., Radiology 2003;229:81 for pancreatic-phase enhancement).
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
from scipy import ndimage
from scipy.special import expit

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.errors import InvalidInputError
from oncolabel.io import atomic_path
from oncolabel.phantoms._ct import (
    HU_TABLE, case_seed, check_seed, default_case_id, seed_sequence, Canvas, CTGrid, Tissue, acquire, child_seed, correlated_noise, occupancy, plane_wave_field,
    random_rotation, sdf_capsule, sdf_ellipsoid,
)
from oncolabel.phantoms.io import PhantomCase, check_case_id, read_manifest, write_cohort

GENERATOR = "oncolabel.phantoms.pannet"
GENERATOR_VERSION = "1.0.0"
CLINICAL_COLUMNS = ("id", "centre", "age", "sex", "size_cm", "grade", "ln_metastasis", "dfs_months", "dfs_event")
SITES = ("head", "body", "tail")

# independent random streams inside one case
_STREAM_TRAITS, _STREAM_ACQ, _STREAM_ANATOMY, _STREAM_TUMOUR, _STREAM_NODES, _STREAM_NOISE, _STREAM_CLINIC = range(7)


@dataclass(frozen=True)
class CentreProfile:
    """Acquisition of one centre (ranges are drawn per case).

    Attributes
    ----------
    spacing_mm : in-plane pixel size.
    thickness_mm : slice thickness (= spacing; contiguous slices).
    noise_sd_hu : image noise standard deviation.
    psf_sigma_mm : in-plane point-spread function (reconstruction kernel); smaller is sharper.
    contrast_scale : multiplies the enhancement (above the unenhanced value) of every enhancing tissue
        (bolus timing, injection rate, cardiac output).
    """

    name: str
    spacing_mm: float
    thickness_mm: float
    noise_sd_hu: tuple[float, float]
    psf_sigma_mm: tuple[float, float]
    contrast_scale: tuple[float, float]


CENTRES: dict[str, CentreProfile] = {
    "A": CentreProfile("A", spacing_mm=0.75, thickness_mm=2.0, noise_sd_hu=(9.0, 13.0), psf_sigma_mm=(0.75, 0.95),
                       contrast_scale=(0.9, 1.1)),
    "B": CentreProfile("B", spacing_mm=0.86, thickness_mm=3.0, noise_sd_hu=(17.0, 23.0), psf_sigma_mm=(0.45, 0.6),
                       contrast_scale=(0.8, 1.15)),
}


@dataclass(frozen=True)
class PannetModel:
    """The generative model of tumour traits, LN status and survival (module docstring has the formulas)."""

    size_median_cm: float = 1.8
    size_log_sd: float = 0.55
    size_range_cm: tuple[float, float] = (0.5, 6.0)
    size_aggr_corr: float = 0.45
    grade_cuts: tuple[float, float] = (0.45, 1.55)
    b0: float = -1.75
    b_size: float = 1.3
    b_h: float = 2.0
    b_m: float = 2.2
    b_grade: float = 0.8
    b_v: float = 1.4
    p_nodes_visible_pos: float = 0.40
    p_nodes_visible_neg: float = 0.06
    dfs_shape: float = 1.2
    dfs_scale_months: float = 333.0
    dfs_log_hr_ln: float = 1.3
    dfs_log_hr_grade: float = 0.6
    censor_months: tuple[float, float] = (12.0, 96.0)

    def ln_logit(self, size_cm: Any, heterogeneity: Any, margin: Any, grade: Any, vascular_invasion: Any) -> np.ndarray:
        """``eta`` of ``P(LN+ | traits) = expit(eta)`` before the node-visibility evidence."""
        return (self.b0 + self.b_size * np.log(np.asarray(size_cm, float) / 2.0)
                + self.b_h * (np.asarray(heterogeneity, float) - 0.5) + self.b_m * (np.asarray(margin, float) - 0.5)
                + self.b_grade * (np.asarray(grade, float) - 1.0) + self.b_v * np.asarray(vascular_invasion, float))

    def posterior(self, size_cm: Any, heterogeneity: Any, margin: Any, grade: Any, vascular_invasion: Any,
                  nodes_visible: Any) -> np.ndarray:
        """Bayes posterior ``P(LN+ | all drawn traits)``: prior odds ``exp(eta)`` times the likelihood ratio of
        the node evidence (``p_pos / p_neg`` if nodes are visible, ``(1 - p_pos) / (1 - p_neg)`` if not)."""
        nv = np.asarray(nodes_visible, bool)
        lr = np.where(nv, self.p_nodes_visible_pos / self.p_nodes_visible_neg,
                      (1 - self.p_nodes_visible_pos) / (1 - self.p_nodes_visible_neg))
        return expit(self.ln_logit(size_cm, heterogeneity, margin, grade, vascular_invasion) + np.log(lr))

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        """One patient's latent traits, LN status and node visibility (fixed number of draws)."""
        z, e, e_h, e_m, u_v, u_ln, u_node = rng.standard_normal(4).tolist() + rng.uniform(size=3).tolist()
        size = float(np.clip(math.exp(math.log(self.size_median_cm) + self.size_log_sd * z), *self.size_range_cm))
        rho = self.size_aggr_corr
        aggr = rho * z + math.sqrt(1 - rho * rho) * e
        grade = 1 + int(aggr >= self.grade_cuts[0]) + int(aggr >= self.grade_cuts[1])
        h = float(expit(1.1 * aggr - 0.3 + 0.9 * e_h))
        m = float(expit(1.0 * aggr - 0.4 + 1.0 * e_m))
        v = int(u_v < expit(-2.8 + 1.4 * math.log(size / 2.0) + 0.9 * aggr))
        ln = int(u_ln < float(expit(self.ln_logit(size, h, m, grade, v))))
        p_vis = self.p_nodes_visible_pos if ln else self.p_nodes_visible_neg
        return {"size_cm": round(size, 3), "aggressiveness": round(aggr, 4), "grade": grade,
                "heterogeneity": round(h, 4), "margin": round(m, 4), "vascular_invasion": v, "ln_metastasis": ln,
                "nodes_visible": int(u_node < p_vis)}

    def draw_dfs(self, rng: np.random.Generator, ln: int, grade: int) -> tuple[float, int]:
        """Disease-free survival (months, event) from the Weibull proportional-hazards model."""
        u, c = rng.uniform(), rng.uniform(*self.censor_months)
        hr = math.exp(self.dfs_log_hr_ln * ln + self.dfs_log_hr_grade * (grade - 1))
        t = self.dfs_scale_months * (-math.log(1.0 - u) / hr) ** (1.0 / self.dfs_shape)
        return (round(min(t, c), 1), int(t <= c))


@dataclass(frozen=True)
class PannetPhantomConfig:
    """Knobs of the PanNET phantom.

    Attributes
    ----------
    centre : ``"A"`` or ``"B"`` (acquisition profile, see :data:`CENTRES`).
    matrix : in-plane size of the crop (square).
    slices : (min, max) number of slices; the extent covers the tumour plus 30 mm.
    model : the generative model of traits and outcomes.
    site_weights : relative frequency of head, body, tail tumours.
    """

    centre: str = "A"
    matrix: int = 128
    slices: tuple[int, int] = (20, 48)
    model: PannetModel = field(default_factory=PannetModel)
    site_weights: tuple[float, float, float] = (0.45, 0.30, 0.25)

    def __post_init__(self) -> None:
        if self.centre not in CENTRES:
            raise InvalidInputError(f"centre must be one of {sorted(CENTRES)}, got {self.centre!r}")
        if not isinstance(self.matrix, int) or not 64 <= self.matrix <= 256:
            raise InvalidInputError(f"matrix must be an integer in 64..256, got {self.matrix!r}")
        if len(self.slices) != 2 or not 4 <= self.slices[0] <= self.slices[1] <= 128:
            raise InvalidInputError(f"slices must be (min, max) with 4 <= min <= max <= 128, got {self.slices!r}")
        w = self.site_weights
        if len(w) != 3 or min(w) < 0 or sum(w) <= 0:
            raise InvalidInputError(f"site_weights must be 3 non-negative numbers with a positive sum, got {w!r}")

    @property
    def profile(self) -> CentreProfile:
        return CENTRES[self.centre]


# ----------------------------------------------------------------------------------------------- anatomy
@dataclass
class _Anatomy:
    """Positions (mm, world, relative to the tumour centre at the origin) and attenuation of one patient."""

    hu: dict[str, float]
    site: str
    pancreas_y: float
    pancreas_z: float
    slope_z: float
    curve: float
    radius: float
    key_vessel: str
    key_xy: tuple[float, float]
    key_z: float
    vessel_r: float


def _enhanced_hu(rng: np.random.Generator, scale: float) -> dict[str, float]:
    """Pancreatic-phase attenuation of each tissue; enhancement above the unenhanced value scales with ``scale``."""
    def enh(unenhanced: float, low: float, high: float) -> float:
        return unenhanced + scale * (float(rng.uniform(low, high)) - unenhanced)

    return {"fat": HU_TABLE["fat"].draw(rng), "aorta": enh(45.0, 230.0, 330.0), "portal": enh(45.0, 130.0, 190.0),
            "ivc": enh(45.0, 80.0, 120.0), "pancreas": enh(40.0, 95.0, 135.0), "kidney": enh(35.0, 150.0, 200.0),
            "bowel_wall": enh(40.0, 70.0, 110.0), "fluid": HU_TABLE["fluid"].draw(rng),
            "node": enh(40.0, 60.0, 85.0)}


def _pancreas_centre(an: _Anatomy, x: np.ndarray | float) -> tuple[Any, Any]:
    """(y, z) of the pancreas centreline at world ``x`` (gentle curve; the tail rises)."""
    return an.pancreas_y + an.curve * (np.asarray(x) / 40.0) ** 2, an.pancreas_z + an.slope_z * np.asarray(x)


def _paint_tube(canvas: Canvas, points: list[tuple[float, float, float]], radius: float, hu: float, tissue: int,
                *, only_on: tuple[int, ...] | None = None) -> None:
    """Partial-volume paint of a tube through ``points`` (union of capsules)."""
    grid = canvas.grid
    pts = np.asarray(points, float)
    lo, hi = pts.min(0) - radius - 2.0, pts.max(0) + radius + 2.0
    box = grid.box(lo, hi)
    if box is None:
        return
    p = grid.coords(box)
    shape = tuple(s.stop - s.start for s in box)
    sdf = np.full(shape, np.inf, dtype=np.float32)
    for a, b in zip(pts[:-1], pts[1:]):
        sdf = np.minimum(sdf, np.broadcast_to(sdf_capsule(p, a, b, radius), shape))
    occ = occupancy(np.ascontiguousarray(sdf), grid.spacing_zyx)
    if only_on is not None:
        occ = occ * np.isin(canvas.tissue[box], np.asarray(only_on, np.uint8))
    canvas.blend(box, occ, hu, tissue)


def _draw_anatomy(rng: np.random.Generator, hu: dict[str, float], site: str, tumour_r: float,
                  invasion: bool) -> _Anatomy:
    """Pancreas and the key vessel (SMV for head tumours, splenic vein otherwise) placed around the tumour."""
    radius = {"head": 12.0, "body": 9.0, "tail": 8.0}[site] * float(rng.uniform(0.85, 1.15))
    vessel_r = float(rng.uniform(4.0, 5.5)) if site == "head" else float(rng.uniform(3.5, 4.8))
    # the tumour sits in the pancreas: the centreline passes close to the tumour centre
    off = rng.uniform(-0.35, 0.35, size=2) * radius
    an = _Anatomy(hu=hu, site=site, pancreas_y=float(off[0]), pancreas_z=float(off[1]),
                  slope_z=float(rng.uniform(0.05, 0.2)) * (1.0 if site != "head" else 0.5),
                  curve=float(rng.uniform(-6.0, 6.0)), radius=radius,
                  key_vessel="smv" if site == "head" else "splenic_vein", key_xy=(0.0, 0.0), key_z=0.0,
                  vessel_r=vessel_r)
    angle = float(rng.uniform(-1.0, 1.0))  # radians around "posterior"
    if invasion:  # the vessel runs through the tumour margin: encased over > 180 degrees
        dist = tumour_r * float(rng.uniform(0.45, 0.8))
    else:  # a fat plane of 2-8 mm between tumour and vessel wall
        dist = tumour_r + vessel_r + float(rng.uniform(2.0, 8.0))
    if an.key_vessel == "smv":  # vertical vessel: position in the axial plane
        an.key_xy = (dist * math.sin(angle), dist * math.cos(angle))
    else:  # horizontal vessel along x: position in the y-z plane
        an.key_xy = (0.0, dist * math.cos(angle))
        an.key_z = dist * math.sin(angle)
    return an


def _paint_background(canvas: Canvas, an: _Anatomy, rng: np.random.Generator) -> None:
    """Visceral fat with mottled texture, bowel loops, aorta, IVC, a kidney, pancreas and its vessels."""
    grid = canvas.grid
    p = grid.coords()
    canvas.hu[...] = an.hu["fat"] + 6.0 * plane_wave_field(p, rng, 25.0, 5)
    canvas.tissue[...] = Tissue.VISCERAL_FAT
    xs = grid.axis(2)
    x_lo, x_hi = float(xs[0]) - 20.0, float(xs[-1]) + 20.0
    z_axis = grid.axis(0)
    z_lo, z_hi = float(z_axis[0]) - 20.0, float(z_axis[-1]) + 20.0
    # great vessels posterior to the pancreas
    y_post = an.pancreas_y + an.radius + float(rng.uniform(22.0, 34.0))
    x_aorta = float(rng.uniform(-5.0, 15.0))
    _paint_tube(canvas, [(x_aorta, y_post, z_lo), (x_aorta, y_post, z_hi)], float(rng.uniform(9.0, 12.0)),
                an.hu["aorta"], Tissue.ARTERY)
    x_ivc = x_aorta - float(rng.uniform(24.0, 32.0))
    _paint_tube(canvas, [(x_ivc, y_post - 2.0, z_lo), (x_ivc, y_post - 2.0, z_hi)], float(rng.uniform(9.0, 12.0)),
                an.hu["ivc"], Tissue.BLOOD)
    # superior mesenteric artery in its fat collar, left of the SMV
    x_sma = x_aorta + float(rng.uniform(-4.0, 4.0))
    y_sma = an.pancreas_y + an.radius + float(rng.uniform(6.0, 12.0))
    _paint_tube(canvas, [(x_sma, y_sma, z_lo), (x_sma, y_post - 8.0, z_hi)], float(rng.uniform(3.0, 4.0)),
                an.hu["aorta"], Tissue.ARTERY)
    # left kidney, posterolateral
    kc = (float(rng.uniform(55.0, 75.0)), y_post + float(rng.uniform(5.0, 15.0)), float(rng.uniform(-20.0, 10.0)))
    box = grid.box(np.subtract(kc, 40.0), np.add(kc, 40.0))
    if box is not None:
        shape = tuple(s.stop - s.start for s in box)
        sdf = np.ascontiguousarray(np.broadcast_to(sdf_ellipsoid(grid.coords(box), kc, (22.0, 30.0, 50.0)), shape))
        canvas.blend(box, occupancy(sdf, grid.spacing_zyx), an.hu["kidney"], Tissue.KIDNEY)
    # bowel loops anterior to the pancreas: wall then fluid lumen
    for _ in range(int(rng.integers(2, 5))):
        c = np.array([rng.uniform(x_lo + 20, x_hi - 20), an.pancreas_y - rng.uniform(22.0, 45.0),
                      rng.uniform(z_lo, z_hi)])
        d = rng.normal(size=3)
        d /= np.linalg.norm(d) + 1e-9
        half = float(rng.uniform(20.0, 45.0))
        r = float(rng.uniform(8.0, 13.0))
        pts = [tuple(c - half * d), tuple(c + half * d)]
        _paint_tube(canvas, pts, r, an.hu["bowel_wall"], Tissue.BOWEL_WALL)
        _paint_tube(canvas, pts, r - float(rng.uniform(2.0, 3.0)), an.hu["fluid"], Tissue.FLUID)
    # duodenum around the head (on the patient's right)
    xd = -an.radius - float(rng.uniform(25.0, 40.0)) + (25.0 if an.site == "head" else -30.0)
    yd, zd = _pancreas_centre(an, xd)
    loop = [(xd, float(yd) - 15.0, float(zd) + 25.0), (xd - 5.0, float(yd), float(zd)),
            (xd, float(yd) + 5.0, float(zd) - 30.0)]
    _paint_tube(canvas, loop, 10.0, an.hu["bowel_wall"], Tissue.BOWEL_WALL)
    _paint_tube(canvas, loop, 7.5, an.hu["fluid"], Tissue.FLUID)
    # pancreas: a lobulated tube along x, with fine lobular texture
    xs_c = np.linspace(x_lo, x_hi, 9)
    ys_c, zs_c = _pancreas_centre(an, xs_c)
    box = grid.box((x_lo, an.pancreas_y - 40.0, z_lo), (x_hi, an.pancreas_y + 40.0, z_hi))
    if box is not None:
        pb = grid.coords(box)
        shape = tuple(s.stop - s.start for s in box)
        sdf = np.full(shape, np.inf, dtype=np.float32)
        for i in range(len(xs_c) - 1):
            a = (xs_c[i], ys_c[i], zs_c[i])
            b = (xs_c[i + 1], ys_c[i + 1], zs_c[i + 1])
            sdf = np.minimum(sdf, np.broadcast_to(sdf_capsule(pb, a, b, an.radius, scale=(1.0, 1.0, 1.3)), shape))
        sdf = sdf + 0.8 * plane_wave_field(pb, rng, 14.0, 6)
        occ = occupancy(np.ascontiguousarray(sdf), grid.spacing_zyx)
        texture = an.hu["pancreas"] + 7.0 * plane_wave_field(pb, rng, 4.0, 6)
        canvas.blend(box, occ, texture, Tissue.PANCREAS)
    _paint_key_vessels(canvas, an, (z_lo, z_hi), (x_lo, x_hi), radius_scale=1.0)


def _key_vessel_points(an: _Anatomy, z_range: tuple[float, float], x_range: tuple[float, float],
                       offset_mm: float) -> tuple[list[tuple[float, float, float]], list[tuple[float, float, float]]]:
    """Centrelines of the SMV (vertical) and splenic vein (horizontal) given the key vessel's position; the other
    vein joins it ``offset_mm`` behind (the confluence)."""
    if an.key_vessel == "smv":
        sx, sy = an.key_xy
        smv = [(sx, sy, z_range[0]), (sx, sy, z_range[1])]
        splenic_y = sy + offset_mm
        splenic = [(sx, splenic_y, z_range[1] - 6.0), (x_range[1], splenic_y + 4.0, z_range[1] + 4.0)]
    else:
        vy, vz = an.key_xy[1], an.key_z
        splenic = [(x_range[0], vy, vz), (x_range[1], vy + 3.0, vz + 4.0)]
        smv = [(x_range[0] + 10.0, vy + offset_mm, z_range[0]), (x_range[0] + 10.0, vy, vz)]
    return smv, splenic


def _paint_key_vessels(canvas: Canvas, an: _Anatomy, z_range: tuple[float, float], x_range: tuple[float, float], *,
                       radius_scale: float) -> None:
    """SMV and splenic vein; the key vessel (the one near the tumour) with its radius times ``radius_scale``."""
    smv, splenic = _key_vessel_points(an, z_range, x_range, offset_mm=2.0)
    other = splenic if an.key_vessel == "smv" else smv
    key = smv if an.key_vessel == "smv" else splenic
    _paint_tube(canvas, other, an.vessel_r * 0.9, an.hu["portal"], Tissue.BLOOD)
    _paint_tube(canvas, key, an.vessel_r * radius_scale, an.hu["portal"], Tissue.BLOOD)


# ----------------------------------------------------------------------------------------------- tumour, nodes
def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of ``mask`` (all False when empty)."""
    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum_labels(mask, lab, index=np.arange(1, n + 1))
    return lab == (int(np.argmax(sizes)) + 1)


def _paint_tumour(canvas: Canvas, an: _Anatomy, traits: Mapping[str, Any],
                  rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """The tumour at the origin; returns its label (voxel centres inside) and a record."""
    grid = canvas.grid
    a = 5.0 * float(traits["size_cm"])  # half the longest diameter, mm
    radii = (a, a * float(rng.uniform(0.7, 0.95)), a * float(rng.uniform(0.7, 0.95)))
    rot = random_rotation(rng)
    m, h, grade = float(traits["margin"]), float(traits["heterogeneity"]), int(traits["grade"])
    reach = a * (1.0 + 0.45 * m) + 3.0
    box = grid.box((-reach, -reach, -reach), (reach, reach, reach))
    p = grid.coords(box)
    shape = tuple(s.stop - s.start for s in box)
    sdf = np.broadcast_to(sdf_ellipsoid(p, (0.0, 0.0, 0.0), radii, rot), shape).astype(np.float32)
    # margin irregularity: lobulation (wavelength ~ radius) plus spiculation (short wavelength)
    lobes = np.clip(plane_wave_field(p, rng, max(4.0, 0.9 * a), 6), -1.5, 1.5)
    spikes = np.clip(plane_wave_field(p, rng, max(2.5, 0.35 * a), 6), -1.5, 1.5)
    sdf = np.ascontiguousarray(sdf + (0.03 + 0.30 * m) * a * lobes + 0.12 * m * a * spikes)
    inside = _largest_component(sdf < 0)
    ratio = {1: rng.uniform(1.25, 1.6), 2: rng.uniform(1.05, 1.35), 3: rng.uniform(0.75, 1.05)}[grade]
    base = 40.0 + float(ratio) * (an.hu["pancreas"] - 40.0)
    texture_sd = 8.0 + 55.0 * h
    corr_mm = float(rng.uniform(1.2, 2.5))
    sigma_vox = [corr_mm / s for s in grid.spacing_zyx]
    hu = base + texture_sd * correlated_noise(rng, shape, sigma_vox)
    necrosis = bool(h > 0.55 and a >= 12.5 and rng.uniform() < 0.5 + 0.5 * h)
    if necrosis:  # hypo-attenuating necrotic / cystic core
        core = np.clip((-sdf - 0.45 * a) / 3.0, 0.0, 1.0)
        hu = hu + core * (float(rng.uniform(25.0, 45.0)) - hu)
    occ = occupancy(sdf, grid.spacing_zyx) * ndimage.binary_dilation(inside, iterations=2)
    canvas.blend(box, occ, hu.astype(np.float32), Tissue.PANCREATIC_TUMOUR)
    label = np.zeros(grid.shape, np.uint8)
    label[box] = inside
    if not label.any():  # sub-voxel tumour on thick slices: keep the voxel holding the centre
        label[tuple(reversed(grid.index_of((0.0, 0.0, 0.0))))] = 1
    rec = {"type": "pannet", "labelled": True, "diameter_mm": round(2 * a, 2), "radii_mm": [round(r, 2) for r in radii],
           "enhancement_ratio": round(float(ratio), 3), "mean_hu_drawn": round(base, 1),
           "texture_sd_hu": round(texture_sd, 1), "necrotic_core": necrosis, "site": an.site,
           "key_vessel": an.key_vessel, "voxels": int(label.sum())}
    return label, rec


def _paint_nodes(canvas: Canvas, an: _Anatomy, traits: Mapping[str, Any], rng: np.random.Generator,
                 tumour_r: float) -> list[dict[str, Any]]:
    """Small normal nodes in every patient; enlarged nodes near the tumour when ``nodes_visible``."""
    grid = canvas.grid
    out = []
    enlarged = int(rng.integers(1, 4)) if traits["nodes_visible"] else 0
    n_small = int(rng.integers(1, 4))
    half_fov = 0.5 * grid.shape[2] * grid.spacing[0]
    for k in range(enlarged + n_small):
        big = k < enlarged
        short = float(rng.uniform(8.0, 15.0)) if big else float(rng.uniform(3.0, 6.0))
        radii = (short / 2.0 * float(rng.uniform(1.0, 1.25 if big else 1.8)), short / 2.0, short / 2.0)
        for _ in range(30):  # a place in fat, inside the crop, not on the tumour
            ang = rng.uniform(0, 2 * math.pi)
            dist = tumour_r + short / 2.0 + float(rng.uniform(6.0, 26.0 if big else 35.0))
            c = (dist * math.cos(ang), dist * math.sin(ang), float(rng.uniform(-5.0, 5.0) if big else rng.uniform(-15, 15)))
            if max(abs(c[0]), abs(c[1])) < half_fov - short:
                idx = tuple(reversed(grid.index_of(c)))
                if canvas.tissue[idx] == Tissue.VISCERAL_FAT:
                    break
        else:
            continue
        box = grid.box(np.subtract(c, short + 2), np.add(c, short + 2))
        if box is None:
            continue
        p = grid.coords(box)
        shape = tuple(s.stop - s.start for s in box)
        sdf = np.ascontiguousarray(np.broadcast_to(sdf_ellipsoid(p, c, radii, random_rotation(rng)), shape))
        occ = occupancy(sdf, grid.spacing_zyx) * (canvas.tissue[box] == Tissue.VISCERAL_FAT)
        level = (40.0 + float(rng.uniform(1.0, 1.4)) * (an.hu["pancreas"] - 40.0)) if big else an.hu["node"]
        hu = level + (15.0 if big else 5.0) * correlated_noise(rng, shape, 1.0)
        canvas.blend(box, occ.astype(np.float32), hu.astype(np.float32), Tissue.LYMPH_NODE)
        out.append({"type": "lymph_node", "labelled": False, "enlarged": big, "short_axis_mm": round(short, 1),
                    "centre_mm": [round(v, 1) for v in c]})
    return out


# ----------------------------------------------------------------------------------------------- a case
def generate_pannet_case(seed: int | np.random.SeedSequence, *, config: PannetPhantomConfig | None = None,
                         case_id: str | None = None) -> PhantomCase:
    """Generate one pancreatic-phase CT crop with a PanNET, its mask and its latent traits.

    Parameters
    ----------
    seed : non-negative integer or :class:`numpy.random.SeedSequence` (:func:`case_seed` for cohort case ``i``).
        The same seed and config give identical arrays.
    config : :class:`PannetPhantomConfig` (centre, matrix, generative model).
    case_id : default ``pnet{centre}_s{entropy}`` (``_{i:04d}`` appended for cohort seeds).

    Returns
    -------
    PhantomCase
        int16 HU ``image``, uint8 tumour ``label`` (1 = tumour), ``lesions`` (the tumour record),
        ``hard_negatives`` (lymph nodes, unlabelled) and ``meta`` with the latent traits, the posterior
        ``P(LN+ | traits)``, the clinical fields and the acquisition.
    """
    cfg = config if config is not None else PannetPhantomConfig()
    if not isinstance(cfg, PannetPhantomConfig):
        raise InvalidInputError(f"config must be a PannetPhantomConfig, got {type(cfg).__name__}")
    ss = seed_sequence(seed)
    cid = check_case_id(case_id if case_id is not None else default_case_id(f"pnet{cfg.centre}", ss))
    r_traits, r_acq, r_anat, r_tum, r_nodes, r_noise, r_clin = (np.random.default_rng(child_seed(ss, k))
                                                                for k in range(7))
    model = cfg.model
    traits = model.draw(r_traits)
    prof = cfg.profile
    noise_sd = float(r_acq.uniform(*prof.noise_sd_hu))
    psf = float(r_acq.uniform(*prof.psf_sigma_mm))
    contrast = float(r_acq.uniform(*prof.contrast_scale))
    jitter = r_acq.uniform(-8.0, 8.0, size=3)
    site = SITES[int(r_anat.choice(3, p=np.asarray(cfg.site_weights) / sum(cfg.site_weights)))]
    hu = _enhanced_hu(r_anat, contrast)
    tumour_r = 5.0 * float(traits["size_cm"])
    an = _draw_anatomy(r_anat, hu, site, tumour_r, bool(traits["vascular_invasion"]))

    n = cfg.matrix
    sp, th = prof.spacing_mm, prof.thickness_mm
    nz = int(np.clip(math.ceil((2.0 * tumour_r + 30.0) / th), *cfg.slices))
    origin = (float(-(n - 1) / 2 * sp + jitter[0]), float(-(n - 1) / 2 * sp + jitter[1]),
              float(-(nz - 1) / 2 * th + jitter[2] * th / 8.0))
    grid = CTGrid((nz, n, n), (sp, sp, th), origin)
    canvas = Canvas(grid, background_hu=hu["fat"])
    _paint_background(canvas, an, r_anat)
    nodes = _paint_nodes(canvas, an, traits, r_nodes, tumour_r)
    label, tumour = _paint_tumour(canvas, an, traits, r_tum)
    if traits["vascular_invasion"]:  # the encased vessel stays patent but narrowed, painted over the tumour
        z_axis = grid.axis(0)
        x_axis = grid.axis(2)
        rng_v = np.random.default_rng(child_seed(ss, 99))
        _paint_key_vessels(canvas, an, (float(z_axis[0]) - 20, float(z_axis[-1]) + 20),
                           (float(x_axis[0]) - 20, float(x_axis[-1]) + 20), radius_scale=float(rng_v.uniform(0.5, 0.75)))
        label[canvas.tissue == Tissue.BLOOD] = 0
        if not label.any():
            label[tuple(reversed(grid.index_of((0.0, 0.0, 0.0))))] = 1
        tumour["voxels"] = int(label.sum())
    image = acquire(canvas.hu, grid.spacing_zyx, r_noise, noise_sd_hu=noise_sd, psf_sigma_mm=psf,
                    slice_thickness_mm=th, fov_circle=False)
    canvas.hu = None  # type: ignore[assignment]  # consumed by acquire
    posterior = float(model.posterior(traits["size_cm"], traits["heterogeneity"], traits["margin"], traits["grade"],
                                      traits["vascular_invasion"], traits["nodes_visible"]))
    age = float(np.clip(r_clin.normal(56.0, 12.0), 20.0, 88.0))
    sex = "F" if r_clin.uniform() < 0.48 else "M"
    dfs, event = model.draw_dfs(r_clin, traits["ln_metastasis"], traits["grade"])
    meta = {
        "generator": GENERATOR, "version": GENERATOR_VERSION, "notice": RESEARCH_USE_ONLY, "case_id": cid,
        "seed": {"entropy": int(ss.entropy), "spawn_key": [int(k) for k in ss.spawn_key]},
        "centre": cfg.centre, "size": [n, n, nz], "spacing": [sp, sp, th], "origin": [round(o, 4) for o in origin],
        "direction": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "coordinate_system": "LPS (SimpleITK); NIfTI files hold the equivalent RAS affine",
        "slice_thickness_mm": th, "noise_sd_hu": round(noise_sd, 2), "psf_sigma_mm": round(psf, 3),
        "contrast_scale": round(contrast, 3), "site": site, "hu": {k: round(v, 1) for k, v in hu.items()},
        "traits": traits, "posterior_ln": round(posterior, 6),
        "clinical": {"id": cid, "centre": cfg.centre, "age": round(age), "sex": sex,
                     "size_cm": round(float(traits["size_cm"]), 1), "grade": traits["grade"],
                     "ln_metastasis": traits["ln_metastasis"], "dfs_months": dfs, "dfs_event": event},
        "label_voxels": int(label.sum()),
    }
    return PhantomCase(case_id=cid, image=grid.to_image(image), label=grid.to_image(label), lesions=[tumour],
                       meta=meta, hard_negatives=nodes, tissue=grid.to_image(canvas.tissue))


# ----------------------------------------------------------------------------------------------- cohorts
def ceiling_auc(cases_meta: list[Mapping[str, Any]]) -> float | None:
    """AUC of the generator's posterior ``P(LN+ | traits)`` against the drawn LN status (None if one class)."""
    from oncolabel.stats import roc_auc

    y = [int(m["traits"]["ln_metastasis"]) for m in cases_meta]
    if len(set(y)) < 2:
        return None
    return float(roc_auc(y, [float(m["posterior_ln"]) for m in cases_meta]))


def _summary(cases: list[PhantomCase]) -> dict[str, Any]:
    metas = [c.meta for c in cases]
    small = [m for m in metas if m["traits"]["size_cm"] <= 2.0]
    large = [m for m in metas if m["traits"]["size_cm"] > 2.0]
    return {
        "cases": len(metas),
        "ln_positive": sum(m["traits"]["ln_metastasis"] for m in metas),
        "ceiling_auc": ceiling_auc(metas),
        "ceiling_auc_size_le_2cm": ceiling_auc(small),
        "ceiling_auc_size_gt_2cm": ceiling_auc(large),
        "ceiling_definition": "AUC of the generator's posterior P(LN+ | size, heterogeneity, margin, grade, "
                              "vascular invasion, visible nodes) against the drawn LN status",
        "size_le_2cm": len(small),
        "grades": {g: sum(1 for m in metas if m["traits"]["grade"] == g) for g in (1, 2, 3)},
        "vascular_invasion": sum(m["traits"]["vascular_invasion"] for m in metas),
        "nodes_visible": sum(m["traits"]["nodes_visible"] for m in metas),
        "sites": {s: sum(1 for m in metas if m["site"] == s) for s in SITES},
    }


def write_clinical_csv(metas: list[Mapping[str, Any]], dest: str | Path) -> Path:
    """Write the clinical table (:data:`CLINICAL_COLUMNS`) atomically."""
    with atomic_path(dest) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(CLINICAL_COLUMNS))
            w.writeheader()
            for m in metas:
                w.writerow({k: m["clinical"][k] for k in CLINICAL_COLUMNS})
    return Path(dest)


def write_pannet_cohort(out_dir: str | Path, n: int, seed: int, *,
                        config: PannetPhantomConfig | None = None) -> list[Path]:
    """Generate ``n`` cases and write them under ``out_dir``; returns the image paths in case order.

    Layout: ``images/``, ``labels/`` (tumour masks), ``lesions/`` (JSON with traits and posterior),
    ``clinical.csv`` and ``manifest.json`` (with ``summary.ceiling_auc``). Case ``i`` depends only on
    ``(seed, i, config)`` and is named ``pnet{centre}_s{seed}_{i:04d}``.
    """
    check_seed(seed)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidInputError(f"n must be a positive integer, got {n!r}")
    cfg = config if config is not None else PannetPhantomConfig()
    metas: list[dict[str, Any]] = []

    def cases() -> Iterator[tuple[int, PhantomCase]]:
        for i in range(int(n)):
            case = generate_pannet_case(case_seed(seed, i), config=cfg, case_id=f"pnet{cfg.centre}_s{int(seed)}_{i:04d}")
            case.tissue = None
            metas.append(case.meta)
            yield i, case

    settings = asdict(cfg)
    settings["profile"] = asdict(cfg.profile)
    paths = write_cohort(out_dir, cases(), generator=GENERATOR, version=GENERATOR_VERSION, seed=int(seed), n=int(n),
                         settings=settings, summarise=_summary)
    write_clinical_csv(metas, Path(out_dir) / "clinical.csv")
    return paths


def cohort_ceiling(out_dir: str | Path) -> float | None:
    """The ceiling AUC recorded in a cohort's manifest."""
    return read_manifest(out_dir).get("summary", {}).get("ceiling_auc")


__all__ = ["CENTRES", "CLINICAL_COLUMNS", "CentreProfile", "PancreasTissue", "PannetModel", "PannetPhantomConfig",
           "generate_pannet_case", "write_pannet_cohort", "case_seed", "ceiling_auc", "cohort_ceiling",
           "write_clinical_csv", "GENERATOR_VERSION"]
