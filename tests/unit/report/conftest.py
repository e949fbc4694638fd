"""Seeded synthetic study data written to real CSV files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture()
def study_csvs(tmp_path: Path) -> dict[str, Path]:
    """predictions.csv (two models, two subsets) and survival.csv (two groups) in tmp_path."""
    import pandas as pd

    rng = np.random.default_rng(20240501)
    n = 90
    y = rng.integers(0, 2, n)
    ids = [f"P{i:03d}" for i in range(n)]
    lin = 2.0 * (y - 0.5)
    pd.DataFrame({
        "patient_id": ids,
        "y_true": y,
        "score_cnn": np.round(1 / (1 + np.exp(-(1.5 * lin + rng.normal(0, 1.0, n)))), 4),
        "score_radiomics": np.round(1 / (1 + np.exp(-(0.8 * lin + rng.normal(0, 1.0, n)))), 4),
        "subset": np.where(np.arange(n) < 50, "centre A", "centre B"),
    }).to_csv(tmp_path / "predictions.csv", index=False)
    group = np.where(rng.random(n) < 0.5, "low", "high")
    t = rng.exponential(np.where(group == "high", 12.0, 30.0))
    c = rng.uniform(6, 48, n)
    pd.DataFrame({"patient_id": ids, "time": np.round(np.minimum(t, c), 1), "event": (t <= c).astype(int),
                  "group": group}).to_csv(tmp_path / "survival.csv", index=False)
    return {"predictions": tmp_path / "predictions.csv", "survival": tmp_path / "survival.csv"}
