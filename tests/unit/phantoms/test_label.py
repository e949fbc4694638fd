"""The label is exactly where metastases were drawn, and nothing else."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk

from oncolabel.phantoms import Tissue, generate_bone_metastasis_case


@pytest.fixture(scope="module", params=[3, 8, 21])
def pair(request, clean_config):
    """The same clean case drawn with and without its metastases."""
    seed = request.param
    cfg = dataclasses.replace(clean_config, lesion_free_fraction=0.0, max_lesions=4)
    a = generate_bone_metastasis_case(seed, config=cfg)
    b = generate_bone_metastasis_case(seed, config=dataclasses.replace(cfg, lesion_free_fraction=1.0))
    return a, b


def test_label_equals_drawn_lesions(pair):
    a, b = pair
    img_a = sitk.GetArrayFromImage(a.image).astype(np.int32)
    img_b = sitk.GetArrayFromImage(b.image).astype(np.int32)
    label = sitk.GetArrayFromImage(a.label).astype(bool)
    assert a.lesions, "fixture must have metastases"
    changed = img_a != img_b
    assert not (changed & ~label).any(), "voxels outside the label changed"
    assert changed[label].mean() > 0.95
    assert label.sum() == sum(les["n_voxels"] for les in a.lesions)
    tissue = sitk.GetArrayFromImage(a.tissue)
    np.testing.assert_array_equal(tissue == Tissue.METASTASIS, label)


def test_every_lesion_has_contrast(pair):
    a, b = pair
    img_a = sitk.GetArrayFromImage(a.image).astype(np.float64)
    img_b = sitk.GetArrayFromImage(b.image).astype(np.float64)
    label = sitk.GetArrayFromImage(a.label).astype(bool)
    from scipy import ndimage

    comps, n = ndimage.label(label)
    assert n >= 1
    for les in a.lesions:
        assert abs(les["contrast_hu"]) >= 80 and abs(les["contrast_to_surround_hu"]) >= 80
        i, j, k = les["centre_voxel"]
        cid = comps[k, j, i]
        if cid == 0:
            continue
        m = comps == cid
        assert abs(img_a[m].mean() - img_b[m].mean()) >= 80


def test_hard_negatives_unlabelled(cohort30):
    seen = 0
    for case in cohort30:
        label = sitk.GetArrayFromImage(case.label)
        tissue = sitk.GetArrayFromImage(case.tissue)
        mimic = np.isin(tissue, [Tissue.BONE_ISLAND, Tissue.ENDPLATE_SCLEROSIS, Tissue.OSTEOPHYTE,
                                 Tissue.SCHMORL_NODE, Tissue.HEMANGIOMA, Tissue.VASCULAR_CALCIFICATION])
        assert not (label.astype(bool) & mimic).any()
        for h in case.hard_negatives:
            assert h["labelled"] is False
            i, j, k = h["centre_voxel"]
            assert label[k, j, i] == 0
        seen += len(case.hard_negatives)
    assert seen > 0


def test_lesion_records(cohort30):
    for case in cohort30:
        label = sitk.GetArrayFromImage(case.label)
        ids = [les["id"] for les in case.lesions]
        assert ids == list(range(1, len(ids) + 1))
        for les in case.lesions:
            assert les["labelled"] is True
            assert les["type"] in ("lytic", "blastic", "mixed")
            assert les["volume_ml"] > 0 and les["n_voxels"] >= 1
            # the recorded centre is a physical point of this image and lies in the lesion's slice range
            idx = case.image.TransformPhysicalPointToIndex(les["centre_mm"])
            assert list(idx) == les["centre_voxel"]
            assert les["slices"][0] <= idx[2] <= les["slices"][1]
        assert case.meta["label_voxels"] == int(label.sum())
        assert case.meta["lesion_slices"] == int(label.any(axis=(1, 2)).sum())
