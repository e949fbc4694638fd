"""Shared fixtures: small, fast phantom configurations and a cached cohort."""

from __future__ import annotations

import dataclasses

import pytest

from oncolabel.phantoms import BoneMetastasisPhantomConfig, case_seed, generate_bone_metastasis_case

SMALL = BoneMetastasisPhantomConfig(matrix=128, thickness_mm=(5.0,), z_mm=(120.0, 120.0))
"""128 x 128 x 24 voxels: ~0.04 s a case."""

CLEAN = dataclasses.replace(SMALL, matrix=160, thickness_mm=(2.5,), noise_sd_hu=(0.0, 0.0),
                            psf_sigma_mm=(0.0, 0.0))
"""No noise, no blur: the image holds the drawn attenuation values."""


@pytest.fixture(scope="session")
def small_config() -> BoneMetastasisPhantomConfig:
    return SMALL


@pytest.fixture(scope="session")
def clean_config() -> BoneMetastasisPhantomConfig:
    return CLEAN


@pytest.fixture(scope="session")
def cohort30():
    """Thirty small cases of cohort seed 2024 (the distribution tests share them)."""
    return [generate_bone_metastasis_case(case_seed(2024, i), config=SMALL) for i in range(30)]
