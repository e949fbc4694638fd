"""Head-and-neck response task: shrinkage rate from the two masks, soft labels, context ring, augmentation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from oncolabel.errors import InvalidInputError
from oncolabel.tasks.hn_response import PREPROCESSING, TumourCubePreprocessing, shrinkage_rate, soft_labels


def _image(array: np.ndarray, spacing: tuple[float, float, float]) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    return img


def test_shrinkage_rate_from_mask_files(tmp_path):
    pre = np.zeros((10, 20, 20), np.uint8)
    pre[2:8, 5:15, 5:15] = 1  # 600 voxels of 1 x 1 x 2 mm = 1.2 ml
    post = np.zeros((20, 20, 20), np.uint8)
    post[5:10, 5:15, 5:13] = 3  # 400 voxels of 1 x 1 x 1 mm = 0.4 ml (any label value > 0 counts)
    sitk.WriteImage(_image(pre, (1.0, 1.0, 2.0)), str(tmp_path / "pre.nii.gz"))
    sitk.WriteImage(_image(post, (1.0, 1.0, 1.0)), str(tmp_path / "post.nii.gz"))
    rate = shrinkage_rate(sitk.ReadImage(str(tmp_path / "pre.nii.gz")), sitk.ReadImage(str(tmp_path / "post.nii.gz")))
    assert rate == pytest.approx(1.0 - 0.4 / 1.2)
    assert shrinkage_rate(_image(post, (1.0, 1.0, 1.0)), _image(pre, (1.0, 1.0, 2.0))) == pytest.approx(-2.0)
    with pytest.raises(InvalidInputError, match="empty"):
        shrinkage_rate(_image(np.zeros_like(pre), (1.0, 1.0, 1.0)), _image(post, (1.0, 1.0, 1.0)))


def test_soft_labels_keep_the_distance_from_the_median():
    rates = np.array([0.1, 0.4, 0.5, 0.6, 0.9])
    q = soft_labels(rates, threshold=0.5, spread=0.1)
    assert q[2] == pytest.approx(0.5) and np.all(np.diff(q) > 0)
    assert q[1] == pytest.approx(1.0 - q[3]) and q[3] == pytest.approx(0.8413447, abs=1e-6)  # Phi(1)
    np.testing.assert_allclose(soft_labels(rates[[0, 1, 3, 4]], threshold=0.5, spread=1e-6), [0, 0, 1, 1])
    with pytest.raises(InvalidInputError, match="spread"):
        soft_labels(rates, threshold=0.5, spread=0.0)


def _sphere_case(tmp_path, radius_mm: float = 10.0) -> dict[str, str]:
    """A 60 HU sphere in 40 HU tissue out to 30 mm from its centre, air beyond (a CT holds air or fat), 1.25 mm
    voxels, written to real files."""
    n, sp = 64, 1.25
    zz, yy, xx = (np.indices((n, n, n)) - (n - 1) / 2) * sp
    r2 = zz ** 2 + yy ** 2 + xx ** 2
    inside = r2 <= radius_mm ** 2
    ct = np.where(inside, 60, np.where(r2 <= 30.0 ** 2, 40, -1000)).astype(np.int16)
    paths = {"image": str(tmp_path / "ct.nii.gz"), "mask": str(tmp_path / "mask.nii.gz")}
    sitk.WriteImage(_image(ct, (sp, sp, sp)), paths["image"])
    sitk.WriteImage(_image(inside.astype(np.uint8), (sp, sp, sp)), paths["mask"])
    return paths


def test_context_ring_shows_the_surroundings_up_to_its_width(tmp_path):
    item = _sphere_case(tmp_path)
    prep = dataclasses.replace(PREPROCESSING, context_mm=7.5)
    x = prep.load(item).numpy()
    base = dataclasses.replace(PREPROCESSING, context_mm=0.0).load(item).numpy()
    np.testing.assert_array_equal(x[1], base[1])  # the mask channel is unchanged
    c = prep.size // 2 - 0.5  # the cube is centred on the sphere's centre
    zz, yy, xx = np.indices(x.shape[1:]) - c
    r = np.sqrt(zz ** 2 + yy ** 2 + xx ** 2) * prep.spacing_mm
    tissue = (40.0 - prep.hu_low) / (prep.hu_high - prep.hu_low)
    ring = (r > 12.5) & (r < 16.0)  # clear of the partial-volume edge, well inside the 7.5 mm ring
    np.testing.assert_allclose(x[0][ring], tissue, atol=1e-4)
    assert np.all(base[0][ring] == 0.0)  # tumour only: nothing outside
    assert np.all(x[0][r > 10.0 + 7.5 + 2 * prep.spacing_mm] == 0.0)
    inner = r < 7.5
    np.testing.assert_array_equal(x[0][inner], base[0][inner])  # the tumour itself is the same


def test_rotate_augmentation_draws_the_cube_symmetries():
    prep = TumourCubePreprocessing(rotate=True)
    x = torch.zeros(2, 4, 4, 4)
    x[1, 0, 0, 1] = 1.0  # an asymmetric mask voxel
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        out = prep.augment(x, rng)
        assert out.shape == x.shape and torch.equal(out[1].sum(), x[1].sum())
        seen.add(tuple(torch.nonzero(out[1])[0].tolist()))
    assert len(seen) == 16  # 4 rotations x left-right flip x craniocaudal flip
    fixed = TumourCubePreprocessing()
    positions = {tuple(torch.nonzero(fixed.augment(x, rng)[1])[0].tolist()) for _ in range(100)}
    assert len(positions) == 4  # flips only


def test_cohort_soft_labels_split_at_the_median():
    from oncolabel.tasks.hn_response import cohort_soft_labels

    rates = np.array([0.2, 0.3, 0.5, 0.7, 0.8])
    q, info = cohort_soft_labels(rates, 0.5)
    assert info["threshold_rate"] == pytest.approx(0.5) and info["spread_rate"] == pytest.approx(0.5 * rates.std(),
                                                                                                 abs=1e-4)
    np.testing.assert_allclose(q, soft_labels(rates, threshold=0.5, spread=0.5 * rates.std()))
    assert np.array_equal(q > 0.5, rates > 0.5)
    with pytest.raises(InvalidInputError, match="at least 2"):
        cohort_soft_labels([0.4], 0.5)
