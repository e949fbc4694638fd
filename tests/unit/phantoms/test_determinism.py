from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from oncolabel.phantoms import case_seed, generate_bone_metastasis_case


def _arrays(case):
    return sitk.GetArrayFromImage(case.image), sitk.GetArrayFromImage(case.label)


def test_same_seed_same_case(small_config):
    a = generate_bone_metastasis_case(11, config=small_config)
    b = generate_bone_metastasis_case(11, config=small_config)
    ia, la = _arrays(a)
    ib, lb = _arrays(b)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(la, lb)
    assert a.lesions == b.lesions and a.hard_negatives == b.hard_negatives
    assert a.meta == b.meta


def test_different_seeds_differ(small_config):
    ia, _ = _arrays(generate_bone_metastasis_case(1, config=small_config))
    ib, _ = _arrays(generate_bone_metastasis_case(2, config=small_config))
    assert ia.shape != ib.shape or not np.array_equal(ia, ib)


def test_case_seed_matches_spawn_and_ignores_cohort_size():
    for n in (3, 10):
        child = np.random.SeedSequence(7).spawn(n)[2]
        assert case_seed(7, 2).generate_state(4).tolist() == child.generate_state(4).tolist()


def test_seed_sequence_is_not_consumed(small_config):
    ss = case_seed(5, 1)
    a = generate_bone_metastasis_case(ss, config=small_config)
    b = generate_bone_metastasis_case(ss, config=small_config)
    assert a.case_id == b.case_id == "bm_s5_0001"
    np.testing.assert_array_equal(_arrays(a)[0], _arrays(b)[0])


def test_lesions_do_not_change_anatomy(clean_config):
    """Separate random streams: switching lesions off leaves everything else identical."""
    import dataclasses

    with_lesions = dataclasses.replace(clean_config, lesion_free_fraction=0.0)
    without = dataclasses.replace(clean_config, lesion_free_fraction=1.0)
    a = generate_bone_metastasis_case(3, config=with_lesions)
    b = generate_bone_metastasis_case(3, config=without)
    assert a.lesions and not b.lesions
    assert a.hard_negatives == b.hard_negatives
    assert a.meta["spacing"] == b.meta["spacing"] and a.meta["size"] == b.meta["size"]
