"""Image features for scoring models: pyradiomics radiomics and CNN deep features (scikit-learn transformers).

* :func:`extract_radiomics` / :func:`extract_radiomics_with_provenance` - pyradiomics with provenance and
  strict errors.
"""

from __future__ import annotations

from oncolabel.features.radiomics import (
    RadiomicsError,
    RadiomicsResult,
    extract_radiomics,
    extract_radiomics_with_provenance,
    load_params,
)

__all__ = ["RadiomicsError", "RadiomicsResult", "extract_radiomics", "extract_radiomics_with_provenance",
           "load_params"]
