"""Synthetic whole-body FDG-PET (SUVbw, 4 mm voxels): sarcoidosis vs malignant lymphoma, with the Bayes posterior.

Emulates the setting of a CNN on frontal and lateral maximum-intensity projections separating sarcoidosis (56
patients) from malignant lymphoma (62 patients); 5-fold CV accuracy 0.890, AUC 0.963; Grad-CAM; a table of regional
involvement. Each case is a vertex-to-thigh PET volume in SUV with physiological uptake (brain, myocardium with
case-to-case variation, blood pool, liver, spleen, kidneys and urinary bladder, marrow, salivary glands, bowel) and
FDG-avid lesions in the regions the class draws.

Generative model (every draw recorded in ``traits``):

1. class: lymphoma with probability ``lymphoma_fraction`` (62/118 by default);
2. regional involvement: each of the 11 regions independently with the study's per-class frequencies
   (:data:`REGIONS`: sarcoidosis / lymphoma), redrawn until at least one region is involved;
3. mediastinal pattern when the mediastinum is involved: symmetric bilateral hilar and paratracheal nodes (the
   sarcoid "lambda" pattern) with probability 0.85 in sarcoidosis and 0.20 in lymphoma, else a bulky anterior
   mediastinal mass;
4. nuisance, independent of class: lesion count, size and SUVmax within a region, myocardial and bladder uptake,
   liver / blood-pool SUV, body size, noise, resolution.

``posterior`` = ``P(lymphoma | involvement pattern, mediastinal pattern)`` from these distributions (conditioned on at
least one involved region). Its AUC over a cohort is the ceiling of any image model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy import ndimage

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.errors import InvalidInputError
from oncolabel.phantoms._ct import CTGrid, case_seed, child_seed, seed_sequence, correlated_noise, occupancy, sdf_ellipse, sdf_ellipsoid
from oncolabel.phantoms.io import ClassificationCase, write_generated_cohort

GENERATOR = "oncolabel.phantoms.pet_lymphoma"
GENERATOR_VERSION = "1.0.0"
CLASSES = ("sarcoidosis", "lymphoma")

#: region -> (P(involved | sarcoidosis), P(involved | lymphoma)), the study's Table 1 (56 vs 62 patients)
REGIONS: dict[str, tuple[float, float]] = {
    "salivary_glands": (0.036, 0.145), "cervical_nodes": (0.107, 0.403), "axillary_nodes": (0.161, 0.177),
    "lung": (0.321, 0.032), "mediastinal_nodes": (0.929, 0.403), "abdominal_nodes": (0.411, 0.387),
    "inguinal_nodes": (0.179, 0.194), "liver": (0.054, 0.048), "spleen": (0.125, 0.175), "adrenal": (0.0, 0.065),
    "skin": (0.036, 0.097),
}
#: P(symmetric hilar pattern | mediastinal involvement) for sarcoidosis, lymphoma
HILAR_PATTERN = (0.85, 0.20)


@dataclass(frozen=True)
class PetLymphomaPhantomConfig:
    """Knobs of the PET phantom.

    Attributes
    ----------
    shape : (z, y, x) voxels; ``spacing_mm`` cubic voxels (4 mm: 864 x 224 x 384 mm by default).
    lymphoma_fraction : prevalence of lymphoma.
    fwhm_mm : scanner resolution (Gaussian FWHM) range.
    noise : relative noise level range (SD of a voxel / sqrt(SUV)).
    lesion_suv : median SUVmax of nodal / organ lesions (log-normal, 35% spread).
    """

    shape: tuple[int, int, int] = (216, 56, 96)
    spacing_mm: float = 4.0
    lymphoma_fraction: float = 62.0 / 118.0
    fwhm_mm: tuple[float, float] = (6.0, 8.0)
    noise: tuple[float, float] = (0.12, 0.2)
    lesion_suv: float = 7.0

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or self.shape[0] * self.spacing_mm < 800 or self.shape[2] * self.spacing_mm < 360:
            raise InvalidInputError(f"shape {self.shape} x {self.spacing_mm} mm must cover at least 800 mm (z) and "
                                    "360 mm (x) for a vertex-to-thigh body")
        if not 0.0 < self.lymphoma_fraction < 1.0:
            raise InvalidInputError(f"lymphoma_fraction must be in (0, 1), got {self.lymphoma_fraction!r}")


def posterior_lymphoma(involved: dict[str, bool], hilar_pattern: bool | None, *,
                       config: PetLymphomaPhantomConfig | None = None) -> float:
    """``P(lymphoma | involvement, mediastinal pattern)`` (naive Bayes of the generative model, given >= 1 region)."""
    cfg = config or PetLymphomaPhantomConfig()
    lik = []
    for c in (0, 1):
        p_regions = np.array([REGIONS[r][c] for r in REGIONS])
        inv = np.array([bool(involved[r]) for r in REGIONS])
        lk = float(np.prod(np.where(inv, p_regions, 1.0 - p_regions))) / (1.0 - float(np.prod(1.0 - p_regions)))
        if involved["mediastinal_nodes"]:
            lk *= HILAR_PATTERN[c] if hilar_pattern else 1.0 - HILAR_PATTERN[c]
        lik.append(lk * (cfg.lymphoma_fraction if c else 1.0 - cfg.lymphoma_fraction))
    return lik[1] / (lik[0] + lik[1])


def _draw_traits(rng: np.random.Generator, cfg: PetLymphomaPhantomConfig) -> dict[str, Any]:
    c = int(rng.random() < cfg.lymphoma_fraction)
    while True:
        involved = {r: bool(rng.random() < p[c]) for r, p in REGIONS.items()}
        if any(involved.values()):
            break
    hilar = bool(rng.random() < HILAR_PATTERN[c]) if involved["mediastinal_nodes"] else None
    return {"class": CLASSES[c], "involved": involved, "hilar_pattern": hilar}


class _Painter:
    """Adds SUV-valued structures to a volume with partial-volume edges (box-limited for speed)."""

    def __init__(self, grid: CTGrid) -> None:
        self.grid = grid
        self.suv = np.zeros(grid.shape, dtype=np.float32)
        self.lesions = np.zeros(grid.shape, dtype=np.uint8)

    def trunk(self, a: float, b: float, z_range: tuple[float, float], value: float) -> None:
        """Elliptic cylinder with half-axes ``a`` (x) and ``b`` (y), widening by 12% at the shoulders."""
        x, y, z = self.grid.coords()
        widen = 1.0 + 0.12 * np.exp(-((z - (z_range[1] - 30.0)) / 40.0) ** 2)
        sdf = sdf_ellipse(x, y, a * widen, b) + np.zeros_like(z)
        sdf = np.maximum(sdf, np.maximum(z_range[0] - z, z - z_range[1]))
        occ = occupancy(np.ascontiguousarray(sdf, dtype=np.float32), self.grid.spacing_zyx)
        self.suv += occ * (np.float32(value) - self.suv)

    def ellipsoid(self, centre: tuple[float, float, float], radii: tuple[float, float, float], value: float, *,
                  mode: str = "set", lesion: int = 0) -> np.ndarray | None:
        pad = max(radii) + 2 * self.grid.spacing[0]
        box = self.grid.box([c - pad for c in centre], [c + pad for c in centre])
        if box is None:
            return None
        sdf = sdf_ellipsoid(self.grid.coords(box), centre, radii)
        sdf = np.ascontiguousarray(np.broadcast_to(sdf, tuple(s.stop - s.start for s in box)))
        occ = occupancy(sdf, self.grid.spacing_zyx)
        view = self.suv[box]
        if mode == "set":
            view += occ * (np.float32(value) - view)
        else:  # lesion: raise to the lesion's uptake where it exceeds the tissue's
            view[:] = np.maximum(view, occ * np.float32(value) + (1 - occ) * view)
        if lesion:
            self.lesions[box][occ >= 0.5] = lesion
        return occ


def _anatomy(p: _Painter, rng: np.random.Generator, s: float) -> dict[str, Any]:
    """Body and physiological uptake; returns the landmarks lesions are placed at (mm, LPS)."""
    body_a, body_b = 150.0 * s, 100.0 * s
    liver_suv = float(rng.uniform(1.9, 2.7))
    blood_suv = float(rng.uniform(1.3, 1.9))
    bg = float(rng.uniform(0.45, 0.7))
    # trunk: an elliptic cylinder from the pelvis to the shoulders (wider at the shoulders), legs, neck, head
    p.trunk(body_a, body_b, (130.0, 610.0), bg)
    for side in (-1, 1):
        p.ellipsoid((side * 60.0 * s, 0.0, 70.0), (62.0 * s, 65.0 * s, 140.0), bg)
    p.ellipsoid((0.0, 5.0, 640.0), (55.0 * s, 55.0 * s, 45.0), bg)
    p.ellipsoid((0.0, 5.0, 755.0), (75.0 * s, 95.0 * s, 100.0), bg)
    p.ellipsoid((0.0, 10.0, 770.0), (63.0 * s, 80.0 * s, 65.0), float(rng.uniform(6.5, 11.0)))  # brain
    for side in (-1, 1):  # lungs, parotid and submandibular glands, kidneys
        p.ellipsoid((side * 75.0 * s, 10.0, 500.0), (58.0 * s, 72.0 * s, 105.0), 0.35)
        p.ellipsoid((side * 55.0 * s, 15.0, 690.0), (12.0, 16.0, 20.0), float(rng.uniform(1.4, 2.2)))
        p.ellipsoid((side * 32.0 * s, -25.0, 668.0), (9.0, 9.0, 9.0), float(rng.uniform(1.4, 2.2)))
        p.ellipsoid((side * 65.0 * s, 45.0 * s, 330.0), (26.0, 24.0, 48.0), float(rng.uniform(2.5, 4.0)))
        p.ellipsoid((side * 58.0 * s, 40.0 * s, 330.0), (9.0, 9.0, 16.0), float(rng.uniform(5.0, 14.0)))  # pelvis
    p.ellipsoid((0.0, 10.0, 520.0), (22.0, 30.0, 60.0), blood_suv)  # mediastinal blood pool
    myo = float(math.exp(rng.normal(math.log(3.5), 0.6)))
    p.ellipsoid((20.0, -15.0, 450.0), (55.0, 48.0, 52.0), myo)  # myocardium
    p.ellipsoid((20.0, -15.0, 450.0), (40.0, 33.0, 38.0), blood_suv)  # ventricular cavities
    p.ellipsoid((15.0, 35.0 * s, 360.0), (11.0, 11.0, 200.0), blood_suv)  # descending aorta
    p.ellipsoid((-70.0 * s, 0.0, 385.0), (92.0 * s, 82.0 * s, 72.0), liver_suv)
    spleen = (92.0 * s, 40.0 * s, 395.0)
    p.ellipsoid(spleen, (32.0, 45.0, 50.0), float(rng.uniform(0.75, 0.95)) * liver_suv)
    p.ellipsoid((0.0, 55.0 * s, 380.0), (16.0, 16.0, 260.0), float(rng.uniform(1.2, 1.7)))  # vertebral marrow
    for _ in range(int(rng.integers(3, 8))):  # patchy physiological bowel uptake
        c = (float(rng.uniform(-90, 90)) * s, float(rng.uniform(-60, 20)) * s, float(rng.uniform(200, 320)))
        p.ellipsoid(c, (float(rng.uniform(10, 25)), float(rng.uniform(8, 15)), float(rng.uniform(10, 25))),
                    float(rng.uniform(1.5, 3.0)), mode="max")
    p.ellipsoid((0.0, -20.0 * s, 150.0), (45.0 * s, 35.0 * s, 35.0), float(math.exp(rng.normal(math.log(12), 0.6))))
    return {"s": s, "body_a": body_a, "body_b": body_b, "spleen": spleen, "liver_suv": liver_suv,
            "myocardium_suv": myo, "blood_suv": blood_suv}


def _lesion_painters(rng: np.random.Generator, cfg: PetLymphomaPhantomConfig, lm: dict[str, Any],
                     hilar: bool | None) -> dict[str, Callable[[_Painter], list[dict[str, Any]]]]:
    s = lm["s"]

    def suv(median: float = cfg.lesion_suv) -> float:
        return float(math.exp(rng.normal(math.log(median), 0.35)))

    def nodes(p: _Painter, centres: list[tuple[float, float, float]], d_range: tuple[float, float],
              code: int, median: float = cfg.lesion_suv) -> list[dict[str, Any]]:
        out = []
        for c in centres:
            d = float(rng.uniform(*d_range))
            r = (d / 2 * float(rng.uniform(0.85, 1.15)), d / 2 * float(rng.uniform(0.85, 1.15)), d / 2)
            v = suv(median)
            p.ellipsoid(c, r, v, mode="max", lesion=code)
            out.append({"centre_mm": [round(x, 1) for x in c], "diameter_mm": round(d, 1), "suvmax": round(v, 2)})
        return out

    def sides(k: int) -> list[int]:
        return [int(x) for x in rng.choice([-1, 1], size=k)]

    def u(a: float, b: float) -> float:
        return float(rng.uniform(a, b))

    def salivary(p: _Painter) -> list[dict[str, Any]]:
        return nodes(p, [(si * 55.0 * s + u(-5, 5), 15.0 + u(-5, 5), 690.0 + u(-8, 8))
                         for si in sides(int(rng.integers(1, 3)))], (10, 18), 1)

    def cervical(p: _Painter) -> list[dict[str, Any]]:
        return nodes(p, [(si * u(30, 45) * s, u(-10, 20), u(605, 670)) for si in sides(int(rng.integers(1, 5)))],
                     (10, 25), 2)

    def axillary(p: _Painter) -> list[dict[str, Any]]:
        return nodes(p, [(si * u(118, 140) * s, u(-10, 20), u(535, 580)) for si in sides(int(rng.integers(1, 4)))],
                     (10, 24), 3)

    def lung(p: _Painter) -> list[dict[str, Any]]:
        cs = [(si * u(50, 100) * s, u(-30, 50), u(420, 580)) for si in sides(int(rng.integers(4, 11)))]
        return nodes(p, cs, (7, 12), 4, median=4.5)

    def mediastinal(p: _Painter) -> list[dict[str, Any]]:
        if hilar:
            cs = [(side * u(36, 46), u(5, 20), u(470, 495)) for side in (-1, 1)]
            cs += [(side * u(10, 16), u(-5, 10), u(515, 535)) for side in (-1, 1)][: int(rng.integers(1, 3))]
            cs += [(u(-5, 5), u(10, 20), u(455, 470))] * int(rng.random() < 0.5)
            out = nodes(p, cs, (12, 20), 5)
            for rec in out:
                rec["pattern"] = "hilar_symmetric"
            return out
        centre = (u(-15, 15), u(-45, -30), u(480, 520))
        size = u(40, 75)
        out = nodes(p, [centre], (size, size), 5)
        for _ in range(int(rng.integers(1, 3))):  # lobulation
            c = tuple(centre[k] + u(-0.3, 0.3) * size for k in range(3))
            out += nodes(p, [c], (0.5 * size, 0.8 * size), 5)  # type: ignore[list-item]
        for rec in out:
            rec["pattern"] = "bulky_anterior"
        return out

    def abdominal(p: _Painter) -> list[dict[str, Any]]:
        cs = [(u(-35, 35), u(10, 40) * s, u(240, 350)) for _ in range(int(rng.integers(1, 5)))]
        return nodes(p, cs, (12, 30), 6)

    def inguinal(p: _Painter) -> list[dict[str, Any]]:
        return nodes(p, [(si * u(60, 85) * s, u(-45, -25) * s, u(115, 150)) for si in sides(int(rng.integers(1, 4)))],
                     (10, 24), 7)

    def liver(p: _Painter) -> list[dict[str, Any]]:
        cs = [(-70.0 * s + u(-45, 45) * s, u(-40, 40) * s, 385.0 + u(-35, 35)) for _ in range(int(rng.integers(1, 4)))]
        return nodes(p, cs, (14, 30), 8)

    def spleen(p: _Painter) -> list[dict[str, Any]]:
        sx, sy, sz = lm["spleen"]
        if rng.random() < 0.5:  # diffuse splenic involvement
            v = float(rng.uniform(3.5, 6.0))
            p.ellipsoid((sx, sy, sz), (32.0, 45.0, 50.0), v, mode="max", lesion=9)
            return [{"centre_mm": [sx, sy, sz], "diffuse": True, "suvmax": round(v, 2)}]
        cs = [(sx + u(-15, 15), sy + u(-20, 20), sz + u(-25, 25)) for _ in range(int(rng.integers(1, 4)))]
        return nodes(p, cs, (12, 24), 9)

    def adrenal(p: _Painter) -> list[dict[str, Any]]:
        return nodes(p, [(si * 48.0 * s, 35.0 * s, u(375, 395)) for si in sides(1)], (15, 30), 10)

    def skin(p: _Painter) -> list[dict[str, Any]]:
        cs = []
        for _ in range(int(rng.integers(1, 5))):
            t, z = u(0, 2 * math.pi), u(180, 580)
            cs.append((0.96 * lm["body_a"] * math.cos(t), 0.96 * lm["body_b"] * math.sin(t), z))
        return nodes(p, cs, (8, 15), 11, median=5.0)

    return {"salivary_glands": salivary, "cervical_nodes": cervical, "axillary_nodes": axillary, "lung": lung,
            "mediastinal_nodes": mediastinal, "abdominal_nodes": abdominal, "inguinal_nodes": inguinal,
            "liver": liver, "spleen": spleen, "adrenal": adrenal, "skin": skin}


def generate_pet_lymphoma_case(seed: int | np.random.SeedSequence, *,
                               config: PetLymphomaPhantomConfig | None = None,
                               case_id: str | None = None) -> ClassificationCase:
    """One whole-body FDG-PET in SUVbw (float32, marked as SUV; see :func:`oncolabel.pet.mark_suv`).

    ``images``: ``image`` (SUV) and ``lesions`` (uint8: 1 + the region index of :data:`REGIONS`); ``label`` 1 =
    lymphoma.
    """
    from oncolabel.pet import mark_suv

    cfg = config or PetLymphomaPhantomConfig()
    ss = seed_sequence(seed)
    cid = case_id or f"pl_s{ss.entropy}" + "".join(f"_{k:04d}" for k in ss.spawn_key)
    trait_rng, anat_rng, lesion_rng, noise_rng = (np.random.default_rng(child_seed(ss, k)) for k in range(4))
    traits = _draw_traits(trait_rng, cfg)
    nz, ny, nx = cfg.shape
    sp = cfg.spacing_mm
    grid = CTGrid(cfg.shape, (sp, sp, sp), (-(nx - 1) / 2 * sp, -(ny - 1) / 2 * sp, 0.0))
    painter = _Painter(grid)
    scale = float(anat_rng.uniform(0.9, 1.1))
    landmarks = _anatomy(painter, anat_rng, scale)
    draw = _lesion_painters(lesion_rng, cfg, landmarks, traits["hilar_pattern"])
    lesions = {}
    for region in REGIONS:  # fixed order, every region's drawer called only when involved
        if traits["involved"][region]:
            lesions[region] = draw[region](painter)
    fwhm = float(noise_rng.uniform(*cfg.fwhm_mm))
    noise = float(noise_rng.uniform(*cfg.noise))
    suv = ndimage.gaussian_filter(painter.suv, fwhm / 2.3548 / sp, mode="constant")
    body = suv > 0.05
    field = correlated_noise(noise_rng, grid.shape, 0.7)
    suv = np.where(body, suv + noise * np.sqrt(np.maximum(suv, 0.0)) * field, 0.0)
    suv = np.clip(suv, 0.0, None).astype(np.float32)
    posterior = posterior_lymphoma(traits["involved"], traits["hilar_pattern"], config=cfg)
    traits["lesions"] = lesions
    label = CLASSES.index(traits["class"])
    meta = {"generator": GENERATOR, "version": GENERATOR_VERSION, "notice": RESEARCH_USE_ONLY, "case_id": cid,
            "seed": {"entropy": int(ss.entropy), "spawn_key": [int(k) for k in ss.spawn_key]},
            "size": [nx, ny, nz], "spacing": [sp, sp, sp], "units": "SUVbw", "fwhm_mm": round(fwhm, 2),
            "noise": round(noise, 3), "body_scale": round(scale, 3),
            **{k: round(float(v), 3) for k, v in landmarks.items() if k in ("liver_suv", "myocardium_suv",
                                                                         "blood_suv")}}
    return ClassificationCase(case_id=cid, images={"image": mark_suv(grid.to_image(suv)),
                                                   "lesions": grid.to_image(painter.lesions)},
                              label=label, label_name=CLASSES[label], posterior=round(posterior, 6), traits=traits,
                              meta=meta)


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    from oncolabel.tasks.pet_lymphoma import region_table

    rows = region_table([{"class": r["label_name"], "involved": r["traits"]["involved"]} for r in records])
    return {"region_table": [dict(zip(("region", "sarcoidosis_n", "sarcoidosis_pct", "lymphoma_n", "lymphoma_pct",
                                       "p_fisher"), row)) for row in rows.rows]}


def write_pet_lymphoma_cohort(out_dir: str | Path, n: int, seed: int, *,
                              config: PetLymphomaPhantomConfig | None = None) -> list[dict[str, Any]]:
    """Write ``n`` cases (ids ``pl_s{seed}_{i:04d}``) under ``out_dir``; returns the manifest entries (the manifest
    summary holds ``ceiling_auc`` and the cohort's region table with Fisher's exact test)."""
    return write_generated_cohort(out_dir, n, seed, generate=generate_pet_lymphoma_case, prefix="pl",
                                  config=config or PetLymphomaPhantomConfig(), generator=GENERATOR,
                                  version=GENERATOR_VERSION, summarise=_summary)


__all__ = ["PetLymphomaPhantomConfig", "generate_pet_lymphoma_case", "write_pet_lymphoma_cohort",
           "posterior_lymphoma", "REGIONS", "HILAR_PATTERN", "CLASSES", "case_seed"]
