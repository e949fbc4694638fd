"""Synthetic torso CT with spinal bone metastases and labelled ground truth.

Emulates the setting of DeepLabV3+ segmentation of spinal bone metastases on CT (slice-wise
sensitivity 0.78 and PPV 0.68 on 5,991 metastasis vs 88,799 negative slices): a torso CT covering
part of the thoracolumbar spine (thoracic, thoracolumbar, lumbar or lumbosacral/pelvic), with
0-6 lytic, blastic or mixed metastases (about 40 % of cases have none) and, in most cases, benign
mimics that must *not* be segmented (bone islands, endplate sclerosis and osteophytes, Schmorl
nodes, hemangiomas, aortic calcification).

Pipeline of :func:`generate_bone_metastasis_case` (each step with its own random stream, so that
switching lesions off leaves anatomy and noise unchanged):

1. acquisition: region, field of view, slice thickness, noise, point-spread function;
2. anatomy (:mod:`._torso`, :mod:`._skeleton`) painted on an ideal HU canvas;
3. hard negatives, then metastases (:mod:`._findings`), recording the label where lesions are drawn;
4. scanner model (:func:`._ct.acquire`): correlated noise, blur, int16 rounding.

Ground truth: ``label == 1`` exactly on the voxels whose attenuation the metastasis set (before the
scanner blur). Each lesion differs from the tissue it replaced and from the bone around it by at
least ``min_contrast_hu`` on average.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.errors import InvalidInputError
from oncolabel.phantoms._ct import (CTGrid, Canvas, acquire, case_seed, check_seed, child_seed, default_case_id,
                                    seed_sequence)
from oncolabel.phantoms._findings import HARD_NEGATIVE_TYPES, LESION_TYPES, VERTEBRAL_SITE_CLASSES, FindingPainter
from oncolabel.phantoms._skeleton import paint_skeleton
from oncolabel.phantoms._torso import TorsoModel, paint_soft_tissues
from oncolabel.phantoms.io import PhantomCase, check_case_id, write_cohort

GENERATOR = "oncolabel.phantoms.bone_metastasis"
GENERATOR_VERSION = "1.0.0"
Z_REGIONS = ("thoracic", "thoracolumbar", "lumbar", "pelvic")
STANDARD_THICKNESSES_MM = (1.0, 1.25, 2.0, 2.5, 3.0, 5.0)
_REFERENCE_MATRIX = 512

# independent random streams inside one case
_STREAM_ACQ, _STREAM_ANATOMY, _STREAM_MIMICS, _STREAM_LESIONS, _STREAM_NOISE = range(5)


@dataclass(frozen=True)
class BoneMetastasisPhantomConfig:
    """Every knob of the bone-metastasis phantom, with defaults matching the emulated study.

    Ranges ``(low, high)`` are drawn per case (uniformly unless stated); give ``(v, v)`` to fix a value.

    Attributes
    ----------
    matrix : in-plane size (square), default 512.
    fov_mm : reconstruction field of view; 307-461 mm is 0.6-0.9 mm pixels at 512. Widened per case
        if the patient would not fit.
    spacing_mm : exact in-plane pixel size; overrides ``fov_mm`` (the patient is shrunk to fit).
    thickness_mm : slice thicknesses to draw from (uniform choice); slices are contiguous.
    z_mm : craniocaudal extent (range).
    z_regions : anatomical regions to centre the volume on, drawn uniformly: ``thoracic``
        (T6-T11, ribs, lungs, heart), ``thoracolumbar`` (T11-L2, lower ribs, lung bases, liver,
        kidneys), ``lumbar`` (L1-L5), ``pelvic`` (L4-S2 with iliac wings).
    age_years : patient age; sets trabecular attenuation (~300 HU at 30, -2.6 HU/year).
    noise_sd_hu : image noise standard deviation (correlated by the PSF).
    psf_sigma_mm : in-plane Gaussian PSF standard deviation.
    lesion_free_fraction : probability that a case has no metastasis.
    max_lesions : a positive case has 1..max_lesions metastases (geometric-like, mostly few).
    lesion_diameter_mm : metastasis longest diameter, drawn log-uniformly (ribs capped at 25 mm).
    lesion_type_weights : relative frequency of lytic, blastic, mixed.
    hard_negatives_mean : Poisson mean of bone mimics per case (bone island, endplate sclerosis +
        osteophyte, Schmorl node, hemangioma); aortic calcification is added with age.
    min_contrast_hu : each metastasis differs by at least this (mean HU) from what it replaced and
        from the bone around it.
    fov_circle : voxels outside the reconstruction circle are -1024, as on scanners.
    """

    matrix: int = 512
    fov_mm: tuple[float, float] = (307.2, 460.8)
    spacing_mm: float | None = None
    thickness_mm: tuple[float, ...] = STANDARD_THICKNESSES_MM
    z_mm: tuple[float, float] = (120.0, 160.0)
    z_regions: tuple[str, ...] = Z_REGIONS
    age_years: tuple[float, float] = (35.0, 85.0)
    noise_sd_hu: tuple[float, float] = (8.0, 25.0)
    psf_sigma_mm: tuple[float, float] = (0.6, 1.0)
    lesion_free_fraction: float = 0.4
    max_lesions: int = 6
    lesion_diameter_mm: tuple[float, float] = (5.0, 40.0)
    lesion_type_weights: tuple[float, float, float] = (0.45, 0.35, 0.20)
    hard_negatives_mean: float = 2.5
    min_contrast_hu: float = 80.0
    fov_circle: bool = True

    def __post_init__(self) -> None:
        def rng_pair(name: str, lo: float, hi: float) -> None:
            v = getattr(self, name)
            if len(v) != 2 or not (lo <= v[0] <= v[1] <= hi) or any(math.isnan(float(x)) for x in v):
                raise InvalidInputError(f"{name} must be (low, high) with {lo} <= low <= high <= {hi}, got {v!r}")

        if not isinstance(self.matrix, int) or not 32 <= self.matrix <= 1024:
            raise InvalidInputError(f"matrix must be an integer in 32..1024, got {self.matrix!r}")
        rng_pair("fov_mm", 250.0, 600.0)
        if self.spacing_mm is not None and not 250.0 <= self.spacing_mm * self.matrix <= 600.0:
            raise InvalidInputError(
                f"spacing_mm {self.spacing_mm!r} x matrix {self.matrix} gives a field of view of "
                f"{self.spacing_mm * self.matrix:.0f} mm; a torso needs 250-600 mm")
        if not self.thickness_mm or any(not 0.5 <= float(t) <= 10.0 for t in self.thickness_mm):
            raise InvalidInputError(f"thickness_mm must be a non-empty list of values in 0.5..10, got {self.thickness_mm!r}")
        rng_pair("z_mm", 10.0, 400.0)
        bad = [r for r in self.z_regions if r not in Z_REGIONS]
        if not self.z_regions or bad:
            raise InvalidInputError(f"z_regions must be a non-empty subset of {Z_REGIONS}, got {self.z_regions!r}")
        rng_pair("age_years", 18.0, 100.0)
        rng_pair("noise_sd_hu", 0.0, 200.0)
        rng_pair("psf_sigma_mm", 0.0, 5.0)
        if not 0.0 <= self.lesion_free_fraction <= 1.0:
            raise InvalidInputError(f"lesion_free_fraction must be in [0, 1], got {self.lesion_free_fraction!r}")
        if not isinstance(self.max_lesions, int) or not 0 <= self.max_lesions <= 20:
            raise InvalidInputError(f"max_lesions must be an integer in 0..20, got {self.max_lesions!r}")
        rng_pair("lesion_diameter_mm", 3.0, 60.0)
        w = self.lesion_type_weights
        if len(w) != 3 or min(w) < 0 or sum(w) <= 0:
            raise InvalidInputError(f"lesion_type_weights must be 3 non-negative numbers with a positive sum, got {w!r}")
        if not 0.0 <= self.hard_negatives_mean <= 20.0:
            raise InvalidInputError(f"hard_negatives_mean must be in [0, 20], got {self.hard_negatives_mean!r}")
        if not 0.0 <= self.min_contrast_hu <= 400.0:
            raise InvalidInputError(f"min_contrast_hu must be in [0, 400], got {self.min_contrast_hu!r}")


def _n_lesions(rng: np.random.Generator, cfg: BoneMetastasisPhantomConfig) -> int:
    free = rng.uniform() < cfg.lesion_free_fraction
    if free or cfg.max_lesions == 0:
        return 0
    w = 0.72 ** np.arange(cfg.max_lesions)  # 1 lesion most often, 6 rarely
    return int(rng.choice(np.arange(1, cfg.max_lesions + 1), p=w / w.sum()))


def _volume_range(m: TorsoModel, region: str, u: float, z_mm: float) -> tuple[float, float]:
    lv = m.level
    centres = {"pelvic": (m.z_s1 + 10.0, lv("L5").z_mid), "lumbar": (lv("L3").z_bot, lv("L2").z_top),
               "thoracolumbar": (lv("T12").z_bot, lv("T12").z_top + 10.0),
               "thoracic": (lv("T9").z_mid, lv("T7").z_mid)}
    lo_c, hi_c = centres[region]
    c = lo_c + u * (hi_c - lo_c)
    lo = min(max(c - z_mm / 2, m.z_min_modelled), m.z_max_modelled - z_mm)
    return lo, lo + z_mm


def generate_bone_metastasis_case(seed: int | np.random.SeedSequence, *,
                                  config: BoneMetastasisPhantomConfig | None = None,
                                  case_id: str | None = None) -> PhantomCase:
    """Generate one torso CT with spinal metastases, its label and its findings.

    Parameters
    ----------
    seed : non-negative integer, or a :class:`numpy.random.SeedSequence` (use :func:`case_seed` for
        case ``i`` of a cohort). The same seed and config give identical arrays.
    config : knobs; defaults to :class:`BoneMetastasisPhantomConfig()`.
    case_id : identifier; default ``bm_s{seed}`` (``bm_s{seed}_{i:04d}`` for cohort seeds).

    Returns
    -------
    PhantomCase with int16 HU ``image``, uint8 ``label``, ``lesions`` (labelled metastases),
    ``hard_negatives`` (unlabelled mimics), ``meta`` and the uint8 ``tissue`` map.
    """
    cfg = config if config is not None else BoneMetastasisPhantomConfig()
    if not isinstance(cfg, BoneMetastasisPhantomConfig):
        raise InvalidInputError(f"config must be a BoneMetastasisPhantomConfig, got {type(cfg).__name__}")
    ss = seed_sequence(seed)
    cid = check_case_id(case_id if case_id is not None else default_case_id("bm", ss))
    streams = [np.random.default_rng(child_seed(ss, k)) for k in range(5)]
    acq, anat, mimic_rng, lesion_rng, noise_rng = streams

    # 1. acquisition and patient draws (fixed number of draws: stream stays aligned across configs)
    region = cfg.z_regions[int(acq.integers(0, len(cfg.z_regions)))]
    u_centre = float(acq.uniform())
    age = float(acq.uniform(*cfg.age_years))
    noise_sd = float(acq.uniform(*cfg.noise_sd_hu))
    psf = float(acq.uniform(*cfg.psf_sigma_mm))
    fov = float(acq.uniform(*cfg.fov_mm))
    thickness = float(cfg.thickness_mm[int(acq.integers(0, len(cfg.thickness_mm)))])
    z_mm = float(acq.uniform(*cfg.z_mm))
    z_s1 = float(np.round(acq.uniform(-700.0, -500.0), 1))
    offset = acq.uniform(-8.0, 8.0, size=2)

    # 2. anatomy
    m = TorsoModel.draw(anat, z_s1=z_s1, age=age)
    a_max = float(np.max(m.body_axes(np.linspace(m.z_s1 - 60, m.z_s1 + 450, 64, dtype=np.float32))[0]))
    if cfg.spacing_mm is not None:
        fov = cfg.spacing_mm * cfg.matrix
    else:  # widen the field of view for a large patient, within the configured range
        fov = float(np.clip(max(fov, 2.0 * a_max / 0.9), *cfg.fov_mm))
    if 2.0 * a_max > 0.94 * fov:  # still too large: a smaller patient
        m.body_a *= 0.94 * fov / (2.0 * a_max)
    n = cfg.matrix
    sp = fov / n
    z_lo, z_hi = _volume_range(m, region, u_centre, z_mm)
    nz = max(1, int(round((z_hi - z_lo) / thickness)))
    origin = (float(-(n - 1) / 2 * sp + offset[0]), float(-(n - 1) / 2 * sp + offset[1]),
              float(round(z_lo + thickness / 2, 3)))
    grid = CTGrid((nz, n, n), (sp, sp, thickness), origin)
    canvas = Canvas(grid)
    paint_soft_tissues(canvas, m, anat)
    skeleton = paint_skeleton(canvas, m, anat)

    # 3. findings: mimics first (lesions keep clear of them), then metastases
    painter = FindingPainter(canvas, m, skeleton, min_contrast_hu=cfg.min_contrast_hu)
    hard: list[dict[str, Any]] = []
    n_hn = int(mimic_rng.poisson(cfg.hard_negatives_mean))
    w_hn = np.array([0.3, 0.3 * (0.5 + age / 80.0), 0.25, 0.15])
    for i in range(n_hn):
        kind = HARD_NEGATIVE_TYPES[int(mimic_rng.choice(len(HARD_NEGATIVE_TYPES), p=w_hn / w_hn.sum()))]
        hard += painter.draw_hard_negative(mimic_rng, kind, f"hn{i + 1}")
    n_calc = int(mimic_rng.poisson(max(0.0, (age - 50.0) / 25.0))) if cfg.hard_negatives_mean > 0 else 0
    hard += painter.draw_calcifications(mimic_rng, n_calc, n_hn + 1)

    lesions: list[dict[str, Any]] = []
    n_les = _n_lesions(lesion_rng, cfg)
    w_type = np.asarray(cfg.lesion_type_weights, dtype=float)
    for i in range(n_les):
        kind = LESION_TYPES[int(lesion_rng.choice(3, p=w_type / w_type.sum()))]
        rec = painter.draw_metastasis(lesion_rng, kind, cfg.lesion_diameter_mm, len(lesions) + 1)
        if rec is not None:
            lesions.append(rec)

    # 4. scanner
    tissue = canvas.tissue
    hu = acquire(canvas.hu, grid.spacing_zyx, noise_rng, noise_sd_hu=noise_sd, psf_sigma_mm=psf,
                 slice_thickness_mm=thickness, fov_circle=cfg.fov_circle)
    canvas.hu = None  # type: ignore[assignment]  # consumed by acquire
    label = painter.label
    z_axis = grid.axis(0)
    covered = [lv.name for lv in m.levels if lv.z_top > z_axis[0] and lv.z_bot < z_axis[-1]]
    lesion_slices = int(np.count_nonzero(label.any(axis=(1, 2))))
    meta = {
        "generator": GENERATOR, "version": GENERATOR_VERSION, "notice": RESEARCH_USE_ONLY,
        "case_id": cid,
        "seed": {"entropy": int(ss.entropy), "spawn_key": [int(k) for k in ss.spawn_key]},
        "size": [n, n, nz], "spacing": [round(sp, 6), round(sp, 6), thickness],
        "origin": [round(o, 4) for o in origin], "direction": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "coordinate_system": "LPS (SimpleITK); NIfTI files hold the equivalent RAS affine",
        "voxel_index_order": "centre_voxel = (i, j, k), SimpleITK order; numpy arrays are [k, j, i]",
        "slice_thickness_mm": thickness, "field_of_view_mm": round(fov, 2),
        "z_region": region, "levels": covered, "s1_endplate_z_mm": z_s1,
        "age_years": round(age, 1), "noise_sd_hu": round(noise_sd, 2), "psf_sigma_mm": round(psf, 3),
        "hu": {k: round(float(v), 1) for k, v in m.hu.items()},
        "n_lesions": len(lesions), "n_lesions_requested": n_les, "n_hard_negatives": len(hard),
        "lesion_slices": lesion_slices, "negative_slices": nz - lesion_slices,
        "label_voxels": int(label.sum()),
    }
    return PhantomCase(case_id=cid, image=grid.to_image(hu), label=grid.to_image(label), lesions=lesions,
                       meta=meta, hard_negatives=hard, tissue=grid.to_image(tissue))


def _summary(cases: list[PhantomCase]) -> dict[str, Any]:
    lesions = [les for c in cases for les in c.lesions]
    types = {t: sum(1 for les in lesions if les["type"] == t) for t in LESION_TYPES}
    sites: dict[str, int] = {}
    for les in lesions:
        sites[les["site_class"]] = sites.get(les["site_class"], 0) + 1
    hn: dict[str, int] = {}
    for c in cases:
        for h in c.hard_negatives:
            hn[h["type"]] = hn.get(h["type"], 0) + 1
    pos = sum(c.meta["lesion_slices"] for c in cases)
    neg = sum(c.meta["negative_slices"] for c in cases)
    return {
        "cases": len(cases), "lesion_free_cases": sum(1 for c in cases if not c.lesions),
        "lesions": len(lesions), "lesion_types": types, "lesion_site_classes": sites,
        "vertebral_fraction": round(sum(1 for les in lesions if les["site_class"] in VERTEBRAL_SITE_CLASSES)
                                    / max(len(lesions), 1), 3),
        "hard_negatives": hn, "lesion_slices": pos, "negative_slices": neg,
        "z_regions": {r: sum(1 for c in cases if c.meta["z_region"] == r) for r in Z_REGIONS},
    }


def write_bone_metastasis_cohort(out_dir: str | Path, n: int, seed: int, *,
                                 config: BoneMetastasisPhantomConfig | None = None,
                                 write_tissue: bool = False) -> list[Path]:
    """Generate ``n`` cases and write them under ``out_dir``; returns the image paths in case order.

    Case ``i`` uses :func:`case_seed` ``(seed, i)`` and the id ``bm_s{seed}_{i:04d}``, so it is the
    same whatever ``n`` is. Layout: ``images/``, ``labels/``, ``lesions/`` (JSON), optional
    ``tissue/``, and ``manifest.json`` (see :mod:`oncolabel.phantoms.io`).
    """
    check_seed(seed)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidInputError(f"n must be a positive integer, got {n!r}")
    cfg = config if config is not None else BoneMetastasisPhantomConfig()

    def cases() -> Iterator[tuple[int, PhantomCase]]:
        for i in range(int(n)):
            yield i, generate_bone_metastasis_case(case_seed(seed, i), config=cfg, case_id=f"bm_s{int(seed)}_{i:04d}")

    settings = asdict(cfg)
    return write_cohort(out_dir, cases(), generator=GENERATOR, version=GENERATOR_VERSION, seed=int(seed), n=int(n),
                        settings=settings, write_tissue=write_tissue, summarise=_summary)


__all__ = ["BoneMetastasisPhantomConfig", "generate_bone_metastasis_case", "write_bone_metastasis_cohort",
           "case_seed", "GENERATOR_VERSION", "Z_REGIONS", "STANDARD_THICKNESSES_MM", "PhantomCase"]
