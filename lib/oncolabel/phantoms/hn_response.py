"""Synthetic contrast-enhanced neck CT with a primary head-and-neck tumour, and its response to radiotherapy.

Emulates the setting of pre-treatment CT deep features predicting tumour shrinkage during radiotherapy (label: rate
of volume change above vs below the cohort median; deep features AUC 0.75, hand-crafted radiomics 0.63, clinical
0.64). Each case has a pre-treatment CT with the gross tumour volume (GTV) mask and a second CT at the follow-up time
point with the shrunken tumour.

Generative model (every draw recorded in ``traits``):

1. clinical: HPV (p16) status, then age and sex given HPV (HPV-positive patients are younger and more often men);
2. tumour traits given HPV (clinical variables act only through them): log volume (HPV-positive tumours smaller),
   necrosis fraction (a non-enhancing core; commoner without HPV), enhancement (mean HU of the viable tumour;
   higher with HPV), heterogeneity (log amplitude of a fine texture, lower with HPV);
3. response score ``s = b . z(traits) + e``, ``e ~ N(0, sigma)``: large, necrotic (hypoxic), poorly enhancing and
   heterogeneous tumours shrink less; ``z`` standardises each trait by its population mean and SD;
4. shrinkage rate ``1 - V_followup / V_pre = 0.1 + 0.75 Phi(s / sd(s))``, a monotone function of ``s``;
   ``label = 1`` (responder) when the rate exceeds the population median rate (``s > 0``, the median of ``s``);
5. nuisance: neck size, airway, vessels, spine, tumour position and shape, noise, blur.

``posterior`` = ``P(s > 0 | traits) = Phi(b . z(traits) / sigma)``; T stage is derived from the tumour's largest
diameter (image), so the clinical variables carry information only through the image traits: the ceiling is reachable
from the image in principle. In practice three traits are measured almost exactly, but the heterogeneity (a texture
of about 1 mm grain, about 8 HU after the scanner's blur) is mixed with the scan's noise (8-14 HU, varying between
scans) and needs a noise reference outside the tumour (``bench/hn_response_observability.py``: r = 0.74 with the
truth for a simple measurement).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import norm

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.errors import InvalidInputError
from oncolabel.phantoms._ct import (CTGrid, acquire, case_seed, child_seed, seed_sequence, correlated_noise, occupancy, plane_wave_field,
                                    sdf_ellipse, sdf_ellipsoid)
from oncolabel.phantoms.io import ClassificationCase, write_generated_cohort

GENERATOR = "oncolabel.phantoms.hn_response"
GENERATOR_VERSION = "1.0.0"
CLASSES = ("poor_response", "good_response")

#: trait -> (mean if HPV-negative, mean if HPV-positive, SD within HPV group)
TRAITS = {"log_volume_ml": (2.7, 2.45, 0.55), "necrosis_fraction": (0.22, 0.15, 0.10),
          "enhancement_hu": (85.0, 92.5, 13.0), "log_heterogeneity": (2.5, 2.35, 0.3)}
#: response-score weights on the standardised traits (sign: + favours shrinkage)
WEIGHTS = {"log_volume_ml": -0.8, "necrosis_fraction": -0.9, "enhancement_hu": 0.7, "log_heterogeneity": -0.6}
HPV_POSITIVE = 0.5


def _population_moments() -> dict[str, tuple[float, float]]:
    """Mean and SD of each trait over the HPV mixture (exact for a two-component normal mixture)."""
    out = {}
    for k, (m0, m1, sd) in TRAITS.items():
        mean = (1 - HPV_POSITIVE) * m0 + HPV_POSITIVE * m1
        var = sd * sd + HPV_POSITIVE * (1 - HPV_POSITIVE) * (m1 - m0) ** 2
        out[k] = (mean, math.sqrt(var))
    return out


MOMENTS = _population_moments()


@dataclass(frozen=True)
class HnResponsePhantomConfig:
    """Knobs of the head-and-neck phantom.

    Attributes
    ----------
    matrix, fov_mm : in-plane grid (fov drawn per case); ``slices`` x ``thickness_mm`` along z.
    noise_sd : SD of the response-score noise ``e`` (sets the ceiling: larger = harder).
    noise_sd_hu, psf_sigma_mm : scanner.
    """

    matrix: int = 128
    fov_mm: tuple[float, float] = (140.0, 165.0)
    slices: int = 32
    thickness_mm: float = 3.0
    noise_sd: float = 1.6
    noise_sd_hu: tuple[float, float] = (8.0, 14.0)
    psf_sigma_mm: tuple[float, float] = (0.6, 0.9)

    def __post_init__(self) -> None:
        if not isinstance(self.matrix, int) or not 64 <= self.matrix <= 512:
            raise InvalidInputError(f"matrix must be an integer in 64..512, got {self.matrix!r}")
        if self.slices * self.thickness_mm < 80:
            raise InvalidInputError(f"slices x thickness must cover >= 80 mm, got {self.slices * self.thickness_mm}")
        if not self.noise_sd > 0:
            raise InvalidInputError(f"noise_sd must be positive, got {self.noise_sd!r}")


def response_mean(traits: dict[str, Any]) -> float:
    """``b . z(traits)``: the expected response score given the tumour traits."""
    return float(sum(w * (traits[k] - MOMENTS[k][0]) / MOMENTS[k][1] for k, w in WEIGHTS.items()))


def posterior_response(traits: dict[str, Any], *, config: HnResponsePhantomConfig | None = None) -> float:
    """``P(good response | tumour traits) = Phi(b . z / sigma)`` (the median of the score is 0 by symmetry)."""
    cfg = config or HnResponsePhantomConfig()
    return float(norm.cdf(response_mean(traits) / cfg.noise_sd))


def _draw_traits(rng: np.random.Generator, cfg: HnResponsePhantomConfig) -> dict[str, Any]:
    hpv = bool(rng.random() < HPV_POSITIVE)
    t: dict[str, Any] = {"hpv_positive": hpv,
                         "age": round(float(np.clip(rng.normal(58.0 if hpv else 64.0, 9.0), 30, 90)), 1),
                         "sex": "M" if rng.random() < (0.85 if hpv else 0.75) else "F"}
    for k, (m0, m1, sd) in TRAITS.items():
        t[k] = float(rng.normal(m1 if hpv else m0, sd))
    t["log_volume_ml"] = float(np.clip(t["log_volume_ml"], math.log(1.5), math.log(70.0)))
    t["necrosis_fraction"] = float(np.clip(t["necrosis_fraction"], 0.0, 0.5))
    mean = response_mean(t)
    score = mean + float(rng.normal(0.0, cfg.noise_sd))
    sd_s = math.sqrt(sum(w * w for w in WEIGHTS.values()) + cfg.noise_sd ** 2)  # approximate SD of s
    t["response_score"] = round(score, 4)
    t["shrinkage_rate"] = round(0.1 + 0.75 * float(norm.cdf(score / sd_s)), 4)
    t["good_response"] = bool(score > 0.0)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in t.items()}


def t_stage(max_diameter_mm: float) -> int:
    """AJCC-style T category from the largest diameter alone (T1 <= 20 mm, T2 <= 40 mm, T3 > 40 mm)."""
    return 1 if max_diameter_mm <= 20 else 2 if max_diameter_mm <= 40 else 3


def _paint_neck(grid: CTGrid, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    x, y, z = grid.coords()
    a, b = float(rng.uniform(58, 70)), float(rng.uniform(52, 62))
    hu = np.full(grid.shape, -1000.0, dtype=np.float32)
    body = sdf_ellipse(x, y, a, b) + np.zeros_like(z)
    hu[body < 0] = -95.0  # subcutaneous fat
    hu[body < -float(rng.uniform(5, 10))] = 52.0  # muscle compartment
    air_c = (float(rng.uniform(-3, 3)), float(rng.uniform(-22, -15)))
    airway = sdf_ellipse(x - air_c[0], y - air_c[1], float(rng.uniform(8, 12)), float(rng.uniform(6, 10))) \
        + np.zeros_like(z)
    spine_c = float(rng.uniform(18, 26))
    vert = sdf_ellipse(x, y - spine_c, 15.0, 13.0) + np.zeros_like(z)
    hu[vert < 0] = 700.0
    hu[vert < -2.0] = float(rng.uniform(180, 280))
    canal = sdf_ellipse(x, y - spine_c - 20.0, 7.0, 7.0) + np.zeros_like(z)
    hu[canal < 0] = 30.0
    for side in (-1, 1):
        for dx, r, v in ((26.0, 4.5, 260.0), (34.0, 6.0, 190.0)):  # carotid, jugular (contrast-enhanced)
            ves = sdf_ellipse(x - side * dx, y - float(rng.uniform(-2, 4)), r, r) + np.zeros_like(z)
            hu[ves < 0] = v
        scm = sdf_ellipse(x - side * (a - 18), y + 5.0, 9.0, 16.0) + np.zeros_like(z)
        hu[(scm < 0) & (body < -3)] = 58.0
    hu[airway < 0] = -1000.0
    return hu, {"neck_half_axes_mm": [round(a, 1), round(b, 1)], "airway_centre_mm": [round(v, 1) for v in air_c]}


def _tumour(grid: CTGrid, rng: np.random.Generator, volume_ml: float, airway: list[float]) -> dict[str, Any]:
    """Tumour geometry: an irregular ellipsoid beside the airway, sized to ``volume_ml``."""
    r = (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    aspect = rng.uniform(0.8, 1.2, size=3)
    aspect /= np.prod(aspect) ** (1 / 3)
    side = float(rng.choice([-1.0, 1.0]))
    centre = (airway[0] + side * float(rng.uniform(10, 18)), airway[1] + float(rng.uniform(-4, 6)),
              float(rng.uniform(-8, 8)))
    return {"centre": centre, "radii": tuple(float(r * k) for k in aspect), "wobble_seed": int(rng.integers(2**31))}


def _paint_tumour(hu: np.ndarray, grid: CTGrid, geom: dict[str, Any], scale: float, traits: dict[str, Any],
                  texture: np.ndarray) -> np.ndarray:
    x, y, z = grid.coords()
    radii = tuple(r * scale for r in geom["radii"])
    wob = plane_wave_field((x, y, z), np.random.default_rng(geom["wobble_seed"]), 12.0, 4)
    sdf = sdf_ellipsoid((x, y, z), geom["centre"], radii) + 1.2 * scale * wob
    sdf = np.ascontiguousarray(np.broadcast_to(sdf, grid.shape), dtype=np.float32)
    occ = occupancy(sdf, grid.spacing_zyx)
    core_r = traits["necrosis_fraction"] ** (1 / 3)  # core volume fraction = necrosis fraction
    core = (sdf_ellipsoid((x, y, z), geom["centre"], tuple(r * core_r for r in radii)) < 0 if core_r > 0.05
            else np.zeros(grid.shape, dtype=bool))
    viable = traits["enhancement_hu"] + math.exp(traits["log_heterogeneity"]) * texture
    value = np.where(core, 22.0, viable).astype(np.float32)
    hu += occ * (value - hu)
    return (sdf < 0).astype(np.uint8)


def generate_hn_response_case(seed: int | np.random.SeedSequence, *, config: HnResponsePhantomConfig | None = None,
                              case_id: str | None = None) -> ClassificationCase:
    """Pre-treatment neck CT (``image``), its GTV ``mask``, and the follow-up CT / mask (``followup``,
    ``followup_mask``); ``label`` 1 = good response (shrinkage rate above the median)."""
    cfg = config or HnResponsePhantomConfig()
    ss = seed_sequence(seed)
    cid = case_id or f"hn_s{ss.entropy}" + "".join(f"_{k:04d}" for k in ss.spawn_key)
    trait_rng, anat_rng, tex_rng = (np.random.default_rng(child_seed(ss, k)) for k in range(3))
    traits = _draw_traits(trait_rng, cfg)
    n, nz = cfg.matrix, cfg.slices
    fov = float(anat_rng.uniform(*cfg.fov_mm))
    sp = fov / n
    noise_sd = float(anat_rng.uniform(*cfg.noise_sd_hu))
    psf = float(anat_rng.uniform(*cfg.psf_sigma_mm))
    grid = CTGrid((nz, n, n), (sp, sp, cfg.thickness_mm),
                  (-(n - 1) / 2 * sp, -(n - 1) / 2 * sp, -(nz - 1) / 2 * cfg.thickness_mm))
    neck, anatomy = _paint_neck(grid, anat_rng)
    geom = _tumour(grid, anat_rng, math.exp(traits["log_volume_ml"]), anatomy["airway_centre_mm"])
    texture = correlated_noise(tex_rng, grid.shape, (0.4, 1.0 / sp, 1.0 / sp))
    images: dict[str, Any] = {}
    shrink = (1.0 - traits["shrinkage_rate"]) ** (1.0 / 3.0)
    masks = {}
    for k, (name, scale) in enumerate((("image", 1.0), ("followup", shrink))):
        hu = neck.copy()
        masks[name] = _paint_tumour(hu, grid, geom, scale, traits, texture)
        ct = acquire(hu, grid.spacing_zyx, np.random.default_rng(child_seed(ss, 10 + k)), noise_sd_hu=noise_sd,
                     psf_sigma_mm=psf, slice_thickness_mm=cfg.thickness_mm, fov_circle=True)
        images[name] = grid.to_image(ct)
    images["mask"] = grid.to_image(masks["image"])
    images["followup_mask"] = grid.to_image(masks["followup"])
    voxel_ml = sp * sp * cfg.thickness_mm / 1000.0
    v0, v1 = masks["image"].sum() * voxel_ml, masks["followup"].sum() * voxel_ml
    max_d = 2.0 * max(geom["radii"])
    traits.update({"t_stage": t_stage(max_d), "max_diameter_mm": round(max_d, 1),
                   "volume_pre_ml": round(float(v0), 3), "volume_followup_ml": round(float(v1), 3),
                   "measured_shrinkage": round(float(1 - v1 / max(v0, 1e-9)), 4)})
    posterior = posterior_response(traits, config=cfg)
    label = int(traits["good_response"])
    meta = {"generator": GENERATOR, "version": GENERATOR_VERSION, "notice": RESEARCH_USE_ONLY, "case_id": cid,
            "seed": {"entropy": int(ss.entropy), "spawn_key": [int(k) for k in ss.spawn_key]},
            "size": [n, n, nz], "spacing": [round(sp, 6), round(sp, 6), cfg.thickness_mm],
            "noise_sd_hu": round(noise_sd, 2), "psf_sigma_mm": round(psf, 3), **anatomy,
            "tumour_centre_mm": [round(v, 2) for v in geom["centre"]]}
    return ClassificationCase(case_id=cid, images=images, label=label, label_name=CLASSES[label],
                              posterior=round(posterior, 6), traits=traits, meta=meta)


def write_hn_response_cohort(out_dir: str | Path, n: int, seed: int, *,
                             config: HnResponsePhantomConfig | None = None) -> list[dict[str, Any]]:
    """Write ``n`` cases (ids ``hn_s{seed}_{i:04d}``) under ``out_dir``; returns the manifest entries."""
    def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
        rates = [r["traits"]["shrinkage_rate"] for r in records]
        return {"median_shrinkage_rate": round(float(np.median(rates)), 4),
                "population_median_rule": "good response = response score > 0 (its population median)"}

    return write_generated_cohort(out_dir, n, seed, generate=generate_hn_response_case, prefix="hn",
                                  config=config or HnResponsePhantomConfig(), generator=GENERATOR,
                                  version=GENERATOR_VERSION, summarise=summary)


__all__ = ["HnResponsePhantomConfig", "generate_hn_response_case", "write_hn_response_cohort", "posterior_response",
           "t_stage", "TRAITS", "WEIGHTS", "CLASSES", "case_seed"]
