"""Synthetic four-phase CT of a small solid renal mass (<= 4 cm): malignant vs benign, with the Bayes posterior.

Emulates the setting of Inception-v3 per CT phase for small solid renal masses (159 patients, 168 masses <= 4 cm;
unenhanced, corticomedullary, nephrographic and excretory phases; corticomedullary best, accuracy 88%). Each case is
the lesion-centred region a reader places around the mass: a 96 x 96 matrix over 64-76 mm and five contiguous
2.5-3 mm slices, the mass at the centre, arising from the renal cortex, in four co-registered phases.

Generative model (every draw recorded in ``traits``):

1. class: malignant with probability ``malignant_fraction``; subtype within class (clear-cell RCC 75% / papillary RCC
   25%; oncocytoma 50% / fat-poor angiomyolipoma 50%);
2. age, sex given class (mildly informative: malignant masses are commoner in older men);
3. size: diameter uniform in ``diameter_mm`` for every subtype (not discriminative);
4. enhancement kinetics given subtype (attenuation rise over the unenhanced value, HU, at a patient enhancement
   factor of 1): clear-cell RCC avid corticomedullary enhancement with washout; papillary RCC low, gradual;
   oncocytoma avid (a clear-cell mimic); fat-poor AML hyperattenuating unenhanced, moderate enhancement. Values after
   Young et al., Radiology 2013;267:444 and Pierorazio et al., Radiology 2013;268:132, widened for overlap;
5. central non-enhancing area (necrosis in RCC, central scar in oncocytoma) present with a subtype probability;
   it does not enhance, so it is invisible on the unenhanced phase;
6. enhancement heterogeneity (log HU amplitude, at the phase of peak enhancement, of a smooth texture that scales
   with enhancement: :func:`texture_scale`) given subtype;
7. nuisance, independent of class: patient enhancement factor (scales kidney and mass alike), kidney geometry and
   position, exophytic fraction, noise, blur, slice thickness.

``posterior`` is ``P(malignant | age, sex, unenhanced HU, enhancement per phase, central area, heterogeneity)``
computed exactly from these distributions (mixture over subtypes; draws clipped at a bound - enhancement at 0 HU,
age at 18 or 95 - enter as the probability mass beyond the bound); ``image_posterior`` leaves out age and sex.
Their AUCs over a cohort are the ceilings of a multivariable model and of an image-only model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.stats import norm

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.errors import InvalidInputError
from oncolabel.phantoms._ct import CTGrid, acquire, case_seed, child_seed, seed_sequence, correlated_noise, plane_wave_field, sdf_ellipsoid
from oncolabel.phantoms.io import ClassificationCase, write_generated_cohort

GENERATOR = "oncolabel.phantoms.renal_mass"
GENERATOR_VERSION = "1.1.0"  # 1.1: texture referred to peak enhancement; censored posterior at clip bounds
PHASES = ("unenhanced", "corticomedullary", "nephrographic", "excretory")
CLASSES = ("benign", "malignant")


@dataclass(frozen=True)
class Subtype:
    """Distributions of one histological subtype (normal means/SDs; ``enhancement`` over CM, NG, EX)."""

    name: str
    malignant: bool
    weight: float  # share within its class
    unenhanced: tuple[float, float]
    enhancement: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    central_area: float  # probability of a central non-enhancing area
    heterogeneity: float  # mean of log(texture amplitude in HU at peak enhancement)


SUBTYPES = (
    Subtype("clear_cell_rcc", True, 0.75, (34.0, 6.0), ((105.0, 37.0), (75.0, 27.0), (45.0, 19.0)), 0.55, 2.8),
    Subtype("papillary_rcc", True, 0.25, (36.0, 6.0), ((28.0, 15.0), (45.0, 19.0), (40.0, 16.0)), 0.15, 2.2),
    Subtype("oncocytoma", False, 0.50, (35.0, 6.0), ((88.0, 34.0), (82.0, 29.0), (55.0, 20.0)), 0.35, 2.35),
    Subtype("fat_poor_aml", False, 0.50, (44.0, 6.0), ((68.0, 27.0), (55.0, 21.0), (35.0, 16.0)), 0.05, 2.0),
)
HETEROGENEITY_SD = 0.3  # SD of log texture amplitude within a subtype
AGE_RANGE = (18.0, 95.0)  # ages are clipped to it (censored in the posterior)


@dataclass(frozen=True)
class RenalMassPhantomConfig:
    """Knobs of the renal-mass phantom (ranges are drawn uniformly per case).

    Attributes
    ----------
    matrix : in-plane size of the lesion-centred region (pixels).
    fov_mm : its field of view.
    slices : number of contiguous slices.
    thickness_mm : slice thicknesses to draw from.
    malignant_fraction : prevalence of malignancy.
    diameter_mm : mass diameter range (<= 40 mm: small renal masses).
    noise_sd_hu, psf_sigma_mm : scanner noise and in-plane blur.
    age_male : per class (benign, malignant): mean age, SD, probability male.
    """

    matrix: int = 96
    fov_mm: tuple[float, float] = (64.0, 76.0)
    slices: int = 5
    thickness_mm: tuple[float, ...] = (2.5, 3.0)
    malignant_fraction: float = 0.7
    diameter_mm: tuple[float, float] = (12.0, 40.0)
    noise_sd_hu: tuple[float, float] = (10.0, 16.0)
    psf_sigma_mm: tuple[float, float] = (0.6, 0.9)
    age_male: tuple[tuple[float, float, float], tuple[float, float, float]] = ((56.0, 12.0, 0.45), (61.0, 11.0, 0.65))

    def __post_init__(self) -> None:
        if not isinstance(self.matrix, int) or not 75 <= self.matrix <= 256:
            raise InvalidInputError(f"matrix must be an integer in 75..256, got {self.matrix!r}")
        if not isinstance(self.slices, int) or not 3 <= self.slices <= 21 or self.slices % 2 == 0:
            raise InvalidInputError(f"slices must be an odd integer in 3..21, got {self.slices!r}")
        if not 0.0 < self.malignant_fraction < 1.0:
            raise InvalidInputError(f"malignant_fraction must be in (0, 1), got {self.malignant_fraction!r}")
        lo, hi = self.diameter_mm
        if not 5.0 <= lo <= hi <= 40.0:
            raise InvalidInputError(f"diameter_mm must satisfy 5 <= low <= high <= 40 (small renal masses), got "
                                    f"{self.diameter_mm!r}")
        if self.fov_mm[0] < 1.4 * hi or self.fov_mm[0] > self.fov_mm[1]:
            raise InvalidInputError(f"fov_mm {self.fov_mm!r} must be ordered and at least 1.4 x the largest diameter")


def _censored_logpdf(x: float, mu: float, sd: float, *, low: float = -math.inf, high: float = math.inf) -> float:
    """log-likelihood of a normal draw clipped to ``[low, high]``: the point masses ``P(X <= low)`` and
    ``P(X >= high)`` at the bounds, the normal density inside (a clipped draw is censored, not truncated)."""
    if x <= low:
        return float(norm.logcdf(low, mu, sd))
    if x >= high:
        return float(norm.logsf(high, mu, sd))
    return float(norm.logpdf(x, mu, sd))


def texture_scale(enhancement_hu: dict[str, float]) -> dict[str, float]:
    """Per contrast phase, the texture amplitude relative to ``exp(log_heterogeneity)``: the phase's enhancement over
    the peak enhancement of the three contrast phases (1 at the peak phase, never above 1).

    The heterogeneity is a perfusion heterogeneity (``enhancement(x) = enhancement * (1 + h t(x))``) whose HU
    amplitude at peak enhancement is the trait. (Generator 1.0 referred it to the corticomedullary phase, which made
    the texture of a mass with near-zero corticomedullary but later enhancement - a papillary RCC - tens of times
    the trait in the later phases.)
    """
    peak = max(max(enhancement_hu[p] for p in PHASES[1:]), 1.0)
    return {p: enhancement_hu[p] / peak for p in PHASES[1:]}


#: image traits of the posterior (``posterior_malignant(..., use=...)`` takes a subset of them)
IMAGE_TRAITS = ("unenhanced", "corticomedullary", "nephrographic", "excretory", "central_area", "heterogeneity")


def _log_likelihoods(traits: dict[str, Any], *, clinical: bool, cfg: RenalMassPhantomConfig,
                     use: frozenset[str] = frozenset(IMAGE_TRAITS)) -> np.ndarray:
    """log p(traits | subtype) + log P(subtype) for each subtype (in :data:`SUBTYPES` order), over the image traits
    in ``use`` (and age and sex when ``clinical``)."""
    out = np.zeros(len(SUBTYPES))
    for k, s in enumerate(SUBTYPES):
        prior = s.weight * (cfg.malignant_fraction if s.malignant else 1.0 - cfg.malignant_fraction)
        ll = math.log(prior)
        if "unenhanced" in use:
            ll += norm.logpdf(traits["unenhanced_hu"], *s.unenhanced)
        for j, phase in enumerate(PHASES[1:]):
            if phase in use:
                ll += _censored_logpdf(traits["enhancement_hu"][phase], *s.enhancement[j], low=0.0)
        if "central_area" in use:
            ll += math.log(s.central_area if traits["central_area"] else 1.0 - s.central_area)
        if "heterogeneity" in use:
            ll += norm.logpdf(traits["log_heterogeneity"], s.heterogeneity, HETEROGENEITY_SD)
        if clinical:
            mu, sd, p_male = cfg.age_male[int(s.malignant)]
            ll += _censored_logpdf(traits["age"], mu, sd, low=AGE_RANGE[0], high=AGE_RANGE[1])
            ll += math.log(p_male if traits["sex"] == "M" else 1.0 - p_male)
        out[k] = ll
    return out


def posterior_malignant(traits: dict[str, Any], *, clinical: bool = True,
                        config: RenalMassPhantomConfig | None = None, use: Sequence[str] | None = None) -> float:
    """``P(malignant | traits)`` under the generator's distributions (age and sex included when ``clinical``).

    ``use``: only these of :data:`IMAGE_TRAITS` (default all), i.e. the posterior of an observer who sees only them
    (the traits are independent given the subtype, so leaving one out marginalises it).
    """
    cfg = config or RenalMassPhantomConfig()
    chosen = frozenset(IMAGE_TRAITS if use is None else use)
    unknown = sorted(chosen - set(IMAGE_TRAITS))
    if unknown:
        raise InvalidInputError(f"unknown renal-mass trait(s) {unknown}; use some of {', '.join(IMAGE_TRAITS)}")
    ll = _log_likelihoods(traits, clinical=clinical, cfg=cfg, use=chosen)
    w = np.exp(ll - ll.max())
    mal = np.array([s.malignant for s in SUBTYPES])
    return float(w[mal].sum() / w.sum())


def _draw_traits(rng: np.random.Generator, cfg: RenalMassPhantomConfig) -> dict[str, Any]:
    malignant = bool(rng.random() < cfg.malignant_fraction)
    members = [s for s in SUBTYPES if s.malignant == malignant]
    w = np.array([s.weight for s in members])
    s = members[int(rng.choice(len(members), p=w / w.sum()))]
    mu, sd, p_male = cfg.age_male[int(malignant)]
    age = float(np.clip(rng.normal(mu, sd), *AGE_RANGE))
    sex = "M" if rng.random() < p_male else "F"
    enh = {phase: float(max(0.0, rng.normal(*s.enhancement[j]))) for j, phase in enumerate(PHASES[1:])}
    return {"malignant": malignant, "subtype": s.name, "age": round(age, 1), "sex": sex,
            "diameter_mm": round(float(rng.uniform(*cfg.diameter_mm)), 2),
            "unenhanced_hu": round(float(rng.normal(*s.unenhanced)), 2),
            "enhancement_hu": {k: round(v, 2) for k, v in enh.items()},
            "central_area": bool(rng.random() < s.central_area),
            "log_heterogeneity": round(float(rng.normal(s.heterogeneity, HETEROGENEITY_SD)), 4)}


# kidney attenuation per phase at enhancement factor 1: (cortex, medulla) in HU
_KIDNEY_HU = {"unenhanced": (32.0, 30.0), "corticomedullary": (175.0, 75.0), "nephrographic": (155.0, 150.0),
              "excretory": (125.0, 135.0)}
_FAT_HU, _MUSCLE_HU = -100.0, 52.0
_MUSCLE_ENH = {"unenhanced": 0.0, "corticomedullary": 12.0, "nephrographic": 15.0, "excretory": 12.0}


def generate_renal_mass_case(seed: int | np.random.SeedSequence, *, config: RenalMassPhantomConfig | None = None,
                             case_id: str | None = None) -> ClassificationCase:
    """One lesion-centred four-phase CT region with a small renal mass.

    Returns a :class:`~oncolabel.phantoms.io.ClassificationCase` whose ``images`` are the four phases (int16 HU,
    identical geometry) and ``mask`` (uint8, 1 = mass); ``label`` 1 = malignant.
    """
    cfg = config or RenalMassPhantomConfig()
    ss = seed_sequence(seed)
    cid = case_id or f"rm_s{ss.entropy}" + "".join(f"_{k:04d}" for k in ss.spawn_key)
    trait_rng, geo_rng, tex_rng = (np.random.default_rng(child_seed(ss, k)) for k in range(3))
    traits = _draw_traits(trait_rng, cfg)

    # acquisition and nuisance draws
    n = cfg.matrix
    fov = float(geo_rng.uniform(*cfg.fov_mm))
    sp = fov / n
    thick = float(cfg.thickness_mm[int(geo_rng.integers(len(cfg.thickness_mm)))])
    noise_sd = float(geo_rng.uniform(*cfg.noise_sd_hu))
    psf = float(geo_rng.uniform(*cfg.psf_sigma_mm))
    factor = float(geo_rng.uniform(0.85, 1.15))  # patient enhancement factor (cardiac output, dose, timing)
    theta = float(geo_rng.uniform(0, 2 * math.pi))
    exophytic = float(geo_rng.uniform(0.25, 0.75))
    kidney_radii = (float(geo_rng.uniform(26, 32)), float(geo_rng.uniform(45, 60)), float(geo_rng.uniform(45, 55)))
    psoas_side = float(geo_rng.uniform(-1, 1))
    nz = cfg.slices
    origin = (-(n - 1) / 2 * sp, -(n - 1) / 2 * sp, -(nz - 1) / 2 * thick)
    grid = CTGrid((nz, n, n), (sp, sp, thick), origin)
    x, y, z = grid.coords()
    r_mass = traits["diameter_mm"] / 2.0
    # kidney: an ellipsoid whose first local axis points along u at the mass; its surface crosses the mass so that
    # the fraction `exophytic` of the mass diameter lies outside the kidney
    u = np.array([math.cos(theta), math.sin(theta), 0.0])
    kc = u * (r_mass * (1 - 2 * exophytic) - kidney_radii[0])
    rot = np.array([[math.cos(theta), math.sin(theta), 0], [-math.sin(theta), math.cos(theta), 0], [0, 0, 1.0]])
    kidney = sdf_ellipsoid((x, y, z), kc, kidney_radii, rot)
    medulla = kidney + 6.0  # cortex ~6 mm thick
    wobble = plane_wave_field((x, y, z), geo_rng, 14.0, 3)
    mass = np.sqrt(x * x + y * y + z * z) - r_mass + 0.6 * wobble
    psoas = sdf_ellipsoid((x, y, z), (psoas_side * 30.0, 38.0, 0.0), (14.0, 11.0, 80.0))
    centre = np.sqrt(x * x + y * y + z * z) < 0.45 * r_mass
    central = centre & bool(traits["central_area"])
    texture = correlated_noise(tex_rng, grid.shape, (0.6, 1.5 / sp, 1.5 / sp))
    het_amp = math.exp(traits["log_heterogeneity"])
    scale = texture_scale(traits["enhancement_hu"])
    mass_occ = np.clip(0.5 - mass / sp, 0.0, 1.0).astype(np.float32)
    images: dict[str, Any] = {}
    for k, phase in enumerate(PHASES):
        cortex_hu, medulla_hu = _KIDNEY_HU[phase]
        ue_k = _KIDNEY_HU["unenhanced"][0]
        cortex_hu, medulla_hu = ue_k + factor * (cortex_hu - ue_k), ue_k + factor * (medulla_hu - ue_k)
        hu = np.full(grid.shape, _FAT_HU, dtype=np.float32)
        hu[psoas < 0] = _MUSCLE_HU + factor * _MUSCLE_ENH[phase]
        hu[kidney < 0] = cortex_hu
        hu[medulla < 0] = medulla_hu
        enh = 0.0 if phase == "unenhanced" else factor * traits["enhancement_hu"][phase]
        tex = 0.0 if phase == "unenhanced" else het_amp * scale[phase]
        lesion = traits["unenhanced_hu"] + enh + tex * texture
        lesion = np.where(central, traits["unenhanced_hu"] + 0.08 * enh, lesion)  # non-enhancing centre
        hu += mass_occ * (lesion.astype(np.float32) - hu)
        rng_noise = np.random.default_rng(child_seed(ss, 10 + k))
        images[phase] = grid.to_image(acquire(hu, grid.spacing_zyx, rng_noise, noise_sd_hu=noise_sd,
                                              psf_sigma_mm=psf, slice_thickness_mm=thick, fov_circle=False))
    images["mask"] = grid.to_image((mass < 0).astype(np.uint8))
    posterior = posterior_malignant(traits, clinical=True, config=cfg)
    traits["image_posterior"] = round(posterior_malignant(traits, clinical=False, config=cfg), 6)
    meta = {"generator": GENERATOR, "version": GENERATOR_VERSION, "notice": RESEARCH_USE_ONLY, "case_id": cid,
            "seed": {"entropy": int(ss.entropy), "spawn_key": [int(k) for k in ss.spawn_key]},
            "size": [n, n, nz], "spacing": [round(sp, 6), round(sp, 6), thick], "phases": list(PHASES),
            "noise_sd_hu": round(noise_sd, 2), "psf_sigma_mm": round(psf, 3),
            "enhancement_factor": round(factor, 4), "exophytic_fraction": round(exophytic, 3),
            "mass_voxels": int(np.count_nonzero(mass < 0))}
    label = int(traits["malignant"])
    return ClassificationCase(case_id=cid, images=images, label=label, label_name=CLASSES[label],
                              posterior=round(posterior, 6), traits=traits, meta=meta)


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    from oncolabel.stats import roc_auc

    y = [r["label"] for r in records]
    out: dict[str, Any] = {"subtypes": {s.name: sum(1 for r in records if r["traits"]["subtype"] == s.name)
                                        for s in SUBTYPES}}
    if len(set(y)) == 2:
        out["image_ceiling_auc"] = round(float(roc_auc(y, [r["traits"]["image_posterior"] for r in records])), 4)
    return out


def write_renal_mass_cohort(out_dir: str | Path, n: int, seed: int, *,
                            config: RenalMassPhantomConfig | None = None) -> list[dict[str, Any]]:
    """Write ``n`` cases (ids ``rm_s{seed}_{i:04d}``) under ``out_dir``; returns the manifest entries.

    The manifest summary holds ``ceiling_auc`` (posterior with age and sex) and ``image_ceiling_auc``.
    """
    return write_generated_cohort(out_dir, n, seed, generate=generate_renal_mass_case, prefix="rm",
                                  config=config or RenalMassPhantomConfig(), generator=GENERATOR,
                                  version=GENERATOR_VERSION, summarise=_summary)


__all__ = ["RenalMassPhantomConfig", "generate_renal_mass_case", "write_renal_mass_cohort", "posterior_malignant",
           "PHASES", "CLASSES", "SUBTYPES", "IMAGE_TRAITS", "case_seed", "texture_scale"]
