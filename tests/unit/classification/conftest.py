"""Shared fixtures: tiny phantom cohorts written to real files and briefly trained toy models of each task."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch

from oncolabel.checkpoint import save_checkpoint
from oncolabel.classification import fit_classifier
from oncolabel.phantoms.io import read_classification_cohort
from oncolabel.tasks import get_task

#: task -> (cohort writer, cohort seed): seeds chosen so that 8 cases hold at least 2 of each class
COHORTS = {"renal_mass": ("oncolabel.phantoms.renal_mass:write_renal_mass_cohort", 4),
           "pet_lymphoma": ("oncolabel.phantoms.pet_lymphoma:write_pet_lymphoma_cohort", 3),
           "hn_response": ("oncolabel.phantoms.hn_response:write_hn_response_cohort", 3)}


@contextmanager
def single_thread() -> Iterator[None]:
    """Tiny networks train several times faster on one thread than on two contended ones (measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def write_toy_cohort(task: str, out: Path, n: int = 8) -> list[dict]:
    import importlib

    mod, fn = COHORTS[task][0].split(":")
    getattr(importlib.import_module(mod), fn)(out, n, COHORTS[task][1])
    return read_classification_cohort(out)


def train_toy_model(task: str, root: Path) -> Path:
    """A checkpoint with calibrated heads after 2-fold CV of 2 iterations (a contract test model, not an accurate
    one)."""
    spec = get_task(task)
    raw = write_toy_cohort(task, root / f"{task}_cohort")
    items = [{**{k: it[k] for k in spec.preprocessing.inputs}, "label": it["label"]} for it in raw]
    cov = None
    if spec.postprocessing.covariates:
        tr = [it["record"]["traits"] for it in raw]
        cov = {"age": [t["age"] for t in tr], "sex_male": [float(t["sex"] == "M") for t in tr],
               "size_mm": [t["diameter_mm"] for t in tr]}
    with single_thread():
        fit = fit_classifier(spec, items, groups=[it["case_id"] for it in raw], n_splits=2, iterations=2,
                             batch_size=4, covariates=cov)
    return save_checkpoint(fit.checkpoint, root / f"{task}.pt")


@pytest.fixture(scope="session")
def toy_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("classifiers")
    return {task: train_toy_model(task, root) for task in COHORTS}


@pytest.fixture(scope="session")
def toy_cohorts(toy_models) -> dict[str, list[dict]]:
    return {task: read_classification_cohort(Path(path).parent / f"{task}_cohort") for task, path in toy_models.items()}
