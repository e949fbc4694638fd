"""Cohort-level statistics of findings over thirty small cases."""

from __future__ import annotations

from collections import Counter

VERTEBRAL = {"vertebral body", "pedicle", "posterior elements"}


def test_lesion_free_fraction(cohort30):
    free = sum(1 for c in cohort30 if not c.lesions)
    assert 5 <= free <= 20  # expected 12 of 30 (40 %)


def test_lesion_counts_sizes_types_sites(cohort30):
    lesions = [les for c in cohort30 for les in c.lesions]
    assert all(len(c.lesions) <= 6 for c in cohort30)
    assert len(lesions) >= 20
    assert all(5.0 <= les["diameter_mm"] <= 40.0 for les in lesions)
    assert all(les["measured_diameter_mm"] <= 40.0 + 12.0 for les in lesions)  # + voxel size at 3 x 3 x 5 mm
    types = Counter(les["type"] for les in lesions)
    assert set(types) == {"lytic", "blastic", "mixed"}
    vertebral = sum(1 for les in lesions if les["site_class"] in VERTEBRAL)
    assert vertebral / len(lesions) >= 0.6
    assert all(les["site"] for les in lesions)


def test_hard_negatives_in_positive_and_negative_cases(cohort30):
    pos = [c for c in cohort30 if c.lesions]
    neg = [c for c in cohort30 if not c.lesions]
    assert sum(1 for c in pos if c.hard_negatives) >= len(pos) // 2
    assert sum(1 for c in neg if c.hard_negatives) >= len(neg) // 2
    kinds = {h["type"] for c in cohort30 for h in c.hard_negatives}
    assert {"bone_island", "endplate_sclerosis", "schmorl_node", "hemangioma"} <= kinds


def test_regions_and_thicknesses_vary(cohort30):
    assert len({c.meta["z_region"] for c in cohort30}) == 4
    from oncolabel.phantoms import BoneMetastasisPhantomConfig, case_seed, generate_bone_metastasis_case

    cfg = BoneMetastasisPhantomConfig(matrix=64, z_mm=(40.0, 40.0))
    th = {generate_bone_metastasis_case(case_seed(1, i), config=cfg).meta["slice_thickness_mm"] for i in range(12)}
    assert len(th) >= 3 and th <= {1.0, 1.25, 2.0, 2.5, 3.0, 5.0}
