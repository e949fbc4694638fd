"""Image features for scoring models: pyradiomics radiomics and CNN deep features (scikit-learn transformers).

* :func:`extract_radiomics` / :func:`extract_radiomics_with_provenance` - pyradiomics with provenance and strict
  errors (:mod:`oncolabel.features.radiomics`); :func:`radiomics_table` for a cohort, with a perturbed replicate
  for stability analysis (:mod:`oncolabel.features.table`).
* :class:`DeepFeatures` - the task's CNN trained with the generic trainer, as a transformer, with cross-fitting
  (:mod:`oncolabel.features.deep`; imports torch on first use).
* :class:`StabilityFilter`, :class:`RedundancyFilter`, :class:`LassoSelector`, :class:`ColumnSubset` - selection
  steps meant to sit inside a cross-validated pipeline (:mod:`oncolabel.features.selection`).
* :func:`measure_tumour` / :func:`tumour_measurements` - four noise-referenced tumour measurements (volume,
  necrotic fraction, enhancement, heterogeneity) (:mod:`oncolabel.features.tumour`).
* :func:`measure_renal_mass` / :func:`renal_mass_measurements` - four-phase measurements of the mass at the centre
  of a lesion-centred region, no contour needed (attenuation, enhancement relative to the renal cortex, central
  deficit, cross-phase texture) (:mod:`oncolabel.features.renal`).

Importing this package does not import pyradiomics (it is imported inside the extraction functions).
"""

from __future__ import annotations

from typing import Any

from oncolabel.features.renal import (
    RENAL_MEASUREMENT_NAMES,
    RenalMeasurementError,
    measure_renal_mass,
    renal_mass_measurements,
)
from oncolabel.features.radiomics import (
    RadiomicsError,
    RadiomicsResult,
    extract_radiomics,
    extract_radiomics_with_provenance,
    load_params,
)
from oncolabel.features.selection import ColumnSubset, LassoSelector, RedundancyFilter, StabilityFilter, icc_1_1
from oncolabel.features.table import perturb_case, radiomics_table
from oncolabel.features.tumour import (
    MEASUREMENT_NAMES,
    TumourMeasurementError,
    measure_tumour,
    tumour_measurements,
)

__all__ = ["MEASUREMENT_NAMES", "RENAL_MEASUREMENT_NAMES", "ColumnSubset", "DeepFeatures", "LassoSelector",
           "RadiomicsError", "RadiomicsResult", "RedundancyFilter", "RenalMeasurementError", "StabilityFilter",
           "TumourMeasurementError", "extract_radiomics", "extract_radiomics_with_provenance", "icc_1_1",
           "load_params", "measure_renal_mass", "measure_tumour", "perturb_case", "radiomics_table",
           "renal_mass_measurements", "tumour_measurements"]


def __getattr__(name: str) -> Any:
    if name == "DeepFeatures":  # torch and the task registry only when deep features are asked for
        from oncolabel.features.deep import DeepFeatures

        return DeepFeatures
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
