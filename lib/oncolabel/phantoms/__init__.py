"""Synthetic CT phantoms with known ground truth.

No patient data ships with OncoLabel; these generators produce realistic cases (attenuation in HU,
scanner noise and blur, anatomy that varies from case to case) with exact labels, for training,
tests, benchmarks and the demo.

* :func:`generate_bone_metastasis_case` / :func:`write_bone_metastasis_cohort` - torso CT with
  spinal bone metastases (lytic, blastic, mixed) and unlabelled mimics.
* :func:`write_renal_mass_cohort`, :func:`write_pet_lymphoma_cohort`, :func:`write_hn_response_cohort` -
  classification cohorts (four-phase renal-mass CT, whole-body FDG-PET in SUV, neck CT before / during
  radiotherapy), each case with the Bayes posterior of its class (the cohort's ceiling AUC).
* :func:`generate_pannet_case` / :func:`write_pannet_cohort` - pancreatic-phase CT with a PanNET, its mask,
  lymph-node status, DFS and the posterior P(LN+ | traits) (the cohort's ceiling AUC).

Shared building blocks (grid, canvas, SDF primitives, acquisition model, HU table) are in
:mod:`oncolabel.phantoms._ct`; cohort writing in :mod:`oncolabel.phantoms.io`.
"""

from __future__ import annotations

from oncolabel.phantoms._ct import HU_TABLE, Tissue
from oncolabel.phantoms.bone_metastasis import (
    GENERATOR_VERSION, STANDARD_THICKNESSES_MM, Z_REGIONS, BoneMetastasisPhantomConfig, case_seed,
    generate_bone_metastasis_case, write_bone_metastasis_cohort,
)
from oncolabel.phantoms.hn_response import write_hn_response_cohort
from oncolabel.phantoms.io import (ClassificationCase, PhantomCase, read_classification_cohort, read_lesion_record,
                                   read_manifest, verify_cohort)
from oncolabel.phantoms.pannet import PannetPhantomConfig, generate_pannet_case, write_pannet_cohort
from oncolabel.phantoms.pet_lymphoma import write_pet_lymphoma_cohort
from oncolabel.phantoms.renal_mass import write_renal_mass_cohort

__all__ = [
    "BoneMetastasisPhantomConfig", "PhantomCase", "generate_bone_metastasis_case", "write_bone_metastasis_cohort",
    "case_seed", "read_manifest", "read_lesion_record", "verify_cohort", "Tissue", "HU_TABLE", "GENERATOR_VERSION",
    "Z_REGIONS",
    "STANDARD_THICKNESSES_MM", "ClassificationCase", "read_classification_cohort", "write_renal_mass_cohort",
    "write_pet_lymphoma_cohort", "write_hn_response_cohort",
    "PannetPhantomConfig", "generate_pannet_case", "write_pannet_cohort",
]
