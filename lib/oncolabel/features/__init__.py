"""Image features for scoring models: pyradiomics radiomics and CNN deep features (scikit-learn transformers).

* :func:`extract_radiomics` / :func:`extract_radiomics_with_provenance` - pyradiomics with provenance and strict
  errors (:mod:`oncolabel.features.radiomics`); :func:`radiomics_table` for a cohort, with a perturbed replicate
  for stability analysis (:mod:`oncolabel.features.table`).
* :class:`DeepFeatures` - the task's CNN trained with the generic trainer, as a transformer, with cross-fitting
  (:mod:`oncolabel.features.deep`; imports torch on first use).
* :class:`StabilityFilter`, :class:`RedundancyFilter`, :class:`LassoSelector`, :class:`ColumnSubset` - selection
  steps meant to sit inside a cross-validated pipeline (:mod:`oncolabel.features.selection`).

Importing this package does not import pyradiomics (it is imported inside the extraction functions).
"""

from __future__ import annotations

from typing import Any

from oncolabel.features.radiomics import (
    RadiomicsError,
    RadiomicsResult,
    extract_radiomics,
    extract_radiomics_with_provenance,
    load_params,
)
from oncolabel.features.selection import ColumnSubset, LassoSelector, RedundancyFilter, StabilityFilter, icc_1_1
from oncolabel.features.table import perturb_case, radiomics_table

__all__ = ["ColumnSubset", "DeepFeatures", "LassoSelector", "RadiomicsError", "RadiomicsResult", "RedundancyFilter",
           "StabilityFilter", "extract_radiomics", "extract_radiomics_with_provenance", "icc_1_1", "load_params",
           "perturb_case", "radiomics_table"]


def __getattr__(name: str) -> Any:
    if name == "DeepFeatures":  # torch and the task registry only when deep features are asked for
        from oncolabel.features.deep import DeepFeatures

        return DeepFeatures
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
