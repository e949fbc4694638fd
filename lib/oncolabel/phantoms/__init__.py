"""Synthetic CT phantoms with known ground truth.

No patient data ships with OncoLabel; these generators produce realistic cases (attenuation in HU,
scanner noise and blur, anatomy that varies from case to case) with exact labels, for training,
tests, benchmarks and the demo.

* :func:`generate_bone_metastasis_case` / :func:`write_bone_metastasis_cohort` - torso CT with
  spinal bone metastases (lytic, blastic, mixed) and unlabelled mimics.

Shared building blocks (grid, canvas, SDF primitives, acquisition model, HU table) are in
:mod:`oncolabel.phantoms._ct`; cohort writing in :mod:`oncolabel.phantoms.io`.
"""

from __future__ import annotations

from oncolabel.phantoms._ct import HU_TABLE, Tissue
from oncolabel.phantoms.bone_metastasis import (
    GENERATOR_VERSION, STANDARD_THICKNESSES_MM, Z_REGIONS, BoneMetastasisPhantomConfig, case_seed,
    generate_bone_metastasis_case, write_bone_metastasis_cohort,
)
from oncolabel.phantoms.io import PhantomCase, read_manifest, verify_cohort

__all__ = [
    "BoneMetastasisPhantomConfig", "PhantomCase", "generate_bone_metastasis_case", "write_bone_metastasis_cohort",
    "case_seed", "read_manifest", "verify_cohort", "Tissue", "HU_TABLE", "GENERATOR_VERSION", "Z_REGIONS",
    "STANDARD_THICKNESSES_MM",
]
