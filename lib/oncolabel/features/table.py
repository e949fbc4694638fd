"""Radiomics feature tables for a cohort: one row per case, optionally with a perturbed re-acquisition.

:func:`radiomics_table` extracts :func:`~oncolabel.features.radiomics.extract_radiomics` for every case (in
``n_jobs`` worker processes) into columns ``rad:<feature>``; with ``perturb=True`` it also extracts the features of
:func:`perturb_case` (noise, blur, contour change) into ``radp:<feature>`` for the stability filter. Extraction
involves no learning, so doing it once per cohort before cross-validation leaks nothing; every *selection* happens
later, inside the folds.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import SimpleITK as sitk

from oncolabel.errors import InvalidInputError
from oncolabel.features.radiomics import extract_radiomics_with_provenance, load_params
from oncolabel.features.selection import RAD_PREFIX, REPLICATE_PREFIX

__all__ = ["perturb_case", "radiomics_table"]


def perturb_case(image: sitk.Image, mask: sitk.Image, seed: int, *, noise_sd_hu: float = 8.0,
                 blur_mm: float = 0.4, contour_voxels: int = 1) -> tuple[sitk.Image, sitk.Image]:
    """A plausible re-acquisition and re-contouring of one case (Zwanenburg et al., Sci Rep 2019;9:614).

    The image gets additive Gaussian noise of ``noise_sd_hu`` and a Gaussian blur of ``blur_mm``; the mask is
    dilated or eroded in-plane by ``contour_voxels`` (chosen at random; erosion is skipped when it would empty
    the mask). Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    arr = sitk.GetArrayFromImage(image).astype(np.float32)
    arr += rng.normal(0.0, noise_sd_hu, arr.shape).astype(np.float32)
    noisy = sitk.GetImageFromArray(arr)
    noisy.CopyInformation(image)
    if blur_mm > 0:
        noisy = sitk.SmoothingRecursiveGaussian(noisy, blur_mm)
    m = sitk.Cast(mask == 1, sitk.sitkUInt8)
    radius = [int(contour_voxels), int(contour_voxels), 0]
    if rng.uniform() < 0.5:
        eroded = sitk.BinaryErode(m, radius)
        m = eroded if sitk.GetArrayViewFromImage(eroded).any() else sitk.BinaryDilate(m, radius)
    else:
        m = sitk.BinaryDilate(m, radius)
    m.CopyInformation(mask)
    return noisy, m


def _one_case(args: tuple[str, str, str, Mapping[str, Any], bool, int]) -> tuple[str, dict, dict | None, dict]:
    case_id, image_path, mask_path, params, perturb, seed = args
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    img = sitk.ReadImage(image_path)
    msk = sitk.ReadImage(mask_path)
    res = extract_radiomics_with_provenance(img, msk, params)
    pert = None
    if perturb:
        p_img, p_msk = perturb_case(img, msk, seed)
        pert = extract_radiomics_with_provenance(p_img, p_msk, params).values
    prov = {k: v for k, v in res.provenance.items() if k != "diagnostics"}
    return case_id, res.values, pert, prov


def radiomics_table(cases: Sequence[tuple[str, str | Path, str | Path]], params: Mapping[str, Any] | str | Path, *,
                    perturb: bool | Sequence[bool] = False, n_jobs: int = 1, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Radiomics of every case as a DataFrame indexed by case id.

    Parameters
    ----------
    cases : ``(case_id, image_path, mask_path)`` triples.
    params : pyradiomics parameter mapping or YAML path.
    perturb : also extract the perturbed replicate (``radp:`` columns), for all cases or per case.
    n_jobs : worker processes (``spawn`` context: safe next to torch threads).
    seed : base seed of the perturbations (case ``i`` uses ``seed + i``).

    Returns
    -------
    table : columns ``rad:<feature>`` (and ``radp:<feature>``; NaN where not perturbed).
    provenance : settings, software versions, image types and features of the extraction (one record: all cases
        share them), plus the number of cases.

    Raises
    ------
    InvalidInputError
        A case failed; the message names it (no case is silently dropped).
    """
    prm = load_params(params)
    flags = [bool(perturb)] * len(cases) if isinstance(perturb, bool) else [bool(p) for p in perturb]
    if len(flags) != len(cases):
        raise InvalidInputError(f"perturb has {len(flags)} entries for {len(cases)} cases")
    jobs = [(str(cid), str(img), str(msk), prm, flags[i], int(seed) + i) for i, (cid, img, msk) in enumerate(cases)]
    rows: dict[str, dict[str, float]] = {}
    prov: dict[str, Any] = {}

    def collect(result: tuple[str, dict, dict | None, dict]) -> None:
        cid, values, pert, p = result
        row = {RAD_PREFIX + k: v for k, v in values.items()}
        if pert is not None:
            row.update({REPLICATE_PREFIX + k: v for k, v in pert.items()})
        rows[cid] = row
        prov.update({k: v for k, v in p.items() if k not in ("image", "mask")})

    def run(job: tuple) -> tuple:
        try:
            return _one_case(job)
        except Exception as exc:  # name the case; the type stays visible in the message
            raise InvalidInputError(f"radiomics of case {job[0]} failed: {type(exc).__name__}: {exc}") from exc

    if n_jobs <= 1 or len(jobs) < 2:
        for job in jobs:
            collect(run(job))
    else:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=int(n_jobs), mp_context=ctx) as pool:
            futures = {pool.submit(_one_case, job): job for job in jobs}
            for fut in cf.as_completed(futures):
                try:
                    collect(fut.result())
                except Exception as exc:
                    raise InvalidInputError(f"radiomics of case {futures[fut][0]} failed: "
                                            f"{type(exc).__name__}: {exc}") from exc
    table = pd.DataFrame.from_dict(rows, orient="index").loc[[str(c[0]) for c in cases]]
    rad_cols = sorted(c for c in table.columns if c.startswith(RAD_PREFIX))
    rep_cols = sorted(c for c in table.columns if c.startswith(REPLICATE_PREFIX))
    prov["n_cases"] = len(cases)
    prov["n_perturbed"] = int(sum(flags))
    return table[rad_cols + rep_cols], prov
