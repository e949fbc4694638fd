from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from oncolabel.errors import InvalidInputError
from oncolabel.preprocessing import CTSlicePreprocessing
from oncolabel.tasks import get_task
from oncolabel.training import SegmentationAdapter, SliceSampler
from oncolabel.transforms import (AxisOrientation, BodyBox, InplaneZoom, IntensityWindow, IntensityWindowd, RandInplaneZoom,
                                  SliceContext)
from tests.conftest import toy_ct


def test_intensity_window_numpy_and_torch_agree():
    x = np.array([-2000, -250, 500, 1250, 3000], dtype=np.float32)
    w = IntensityWindow(-250, 1250)
    assert np.allclose(w(x), [0, 0, 0.5, 1, 1])
    assert np.allclose(w(torch.from_numpy(x)).numpy(), w(x))
    assert np.allclose(IntensityWindowd("img", -250, 1250)({"img": x})["img"], w(x))
    with pytest.raises(InvalidInputError):
        IntensityWindow(5, 5)


def test_slice_context_repeats_edges():
    vol = torch.arange(4.0).view(4, 1, 1).expand(4, 2, 2)
    out = SliceContext(1)(vol)
    assert out.shape == (4, 3, 2, 2)
    assert out[0, :, 0, 0].tolist() == [0, 0, 1] and out[3, :, 0, 0].tolist() == [2, 3, 3]
    assert SliceContext(0)(vol).shape == (4, 1, 2, 2)


def test_rand_zoom_is_replayable():
    x = torch.rand(1, 40, 50)
    z = RandInplaneZoom((0.5, 1.5))
    a = z(x, rng=np.random.default_rng(3))
    b = z(x, rng=np.random.default_rng(3))
    assert torch.equal(a, b) and a.shape[-2:] == (round(40 * z.factor), round(50 * z.factor))
    assert InplaneZoom((40, 50), mode="nearest")(torch.ones(40, 50, dtype=torch.uint8)).dtype == torch.uint8


def test_body_box_covers_body_only():
    image, _ = toy_ct(0)
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    box = BodyBox.from_volume(hu)
    body_rows = np.nonzero((hu > -300).any(axis=(0, 2)))[0]
    assert box.y0 <= body_rows.min() and box.y1 > body_rows.max()
    assert box.shape[0] < hu.shape[1]


def test_prepare_restore_roundtrip_geometry():
    prep = CTSlicePreprocessing()
    image, label = toy_ct(0)
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    p = prep.prepare(hu, (1.5, 1.5))
    assert p.image.shape[0] == hu.shape[0] and p.image.min() >= 0 and p.image.max() <= 1
    lab = prep.prepare_label(sitk.GetArrayFromImage(label), p)
    back = prep.restore(lab.float(), p) >= 0.5
    truth = sitk.GetArrayFromImage(label).astype(bool)
    dice = 2 * (back & truth).sum() / (back.sum() + truth.sum())
    assert back.shape == truth.shape and dice > 0.85


def test_prepare_reads_a_read_only_int16_view_without_writing_it():
    prep = CTSlicePreprocessing()
    image, _ = toy_ct(1)
    view = sitk.GetArrayViewFromImage(image)  # int16, read-only
    before = view.copy()
    a = prep.prepare(view, (1.5, 1.5))
    b = prep.prepare(sitk.GetArrayFromImage(image).astype(np.float32), (1.5, 1.5))
    assert view.dtype == np.int16 and not view.flags.writeable
    assert torch.equal(a.image, b.image) and a.box == b.box and a.image.dtype == torch.float32
    assert np.array_equal(view, before)
    c = prep.prepare_image(image)  # the SimpleITK entry point training and inference share
    assert torch.equal(c.image, a.image) and c.box == a.box
    with pytest.raises(InvalidInputError, match="2D"):
        prep.prepare_image(sitk.Image(32, 32, sitk.sitkInt16))


def test_check_ct_rejects_non_ct_intensities():
    prep = CTSlicePreprocessing()
    image, _ = toy_ct(0)
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    yy, xx = np.mgrid[:hu.shape[1], :hu.shape[2]]
    padded = np.where(((yy - 47.5) ** 2 + (xx - 47.5) ** 2 > 46 ** 2)[None], -3024.0, hu)
    prep.check_ct(padded)  # scanners pad outside the reconstructed circle with -3024 (or -2048): still a CT
    with pytest.raises(InvalidInputError, match="no air or fat"):
        prep.check_ct(hu + 1024)  # stored values without the rescale intercept
    with pytest.raises(InvalidInputError, match="not a CT"):
        prep.check_ct(np.random.default_rng(0).uniform(0, 1, (4, 32, 32)).astype(np.float32))  # e.g. a PNG-like 0..1
    with pytest.raises(InvalidInputError, match="3D"):
        prep.check_ct(np.zeros((32, 32)))


def test_training_and_inference_inputs_are_identical(toy_pair):
    """The training sampler (augmentation off) and the predictor build byte-identical network input."""
    from oncolabel.inference import SegmentationPredictor
    from oncolabel.io import read_image

    spec = get_task("bone_metastasis")
    ip, lp = toy_pair
    vols = SegmentationAdapter(spec).volumes([{"image": str(ip), "label": str(lp)}])
    model = spec.network.build().eval()
    predictor = SegmentationPredictor.from_model(model, spec)
    prepared = predictor.prepare(read_image(ip))
    infer_x = spec.preprocessing.slices(prepared)
    sampler = SliceSampler(spec.preprocessing, vols, augment=False)
    for z in range(infer_x.shape[0]):
        train_x = spec.preprocessing.slices(vols[0].prepared, [z])[0]
        assert torch.equal(train_x, infer_x[z])
    x, y = sampler.sample(np.random.default_rng(0))
    assert x.shape == (spec.preprocessing.in_channels, 160, 160) and y.shape == (160, 160)


def _signed_permutations():
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            d = np.zeros((3, 3))
            for a, p in enumerate(perm):
                d[p, a] = signs[a]
            yield d


@pytest.mark.parametrize("tilt_deg", [0.0, 12.0])
def test_axis_orientation_matches_dicom_orient_for_every_axis_order(tilt_deg):
    """All 48 axis orders and flips (and the same tilted like a gantry): the canonical array, shape, spacing and
    direction are SimpleITK's DICOMOrient(LPS), and the way back restores the original array."""
    c, s = np.cos(np.radians(tilt_deg)), np.sin(np.radians(tilt_deg))
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    arr = np.random.default_rng(0).normal(size=(4, 5, 6)).astype(np.float32)
    for d in _signed_permutations():
        img = sitk.GetImageFromArray(arr)
        img.SetDirection((tilt @ d).ravel().tolist())
        img.SetSpacing((0.5, 0.7, 2.0))
        ref = sitk.DICOMOrient(img, "LPS")
        o = AxisOrientation.from_direction(img.GetDirection())
        canonical = o.to_canonical(sitk.GetArrayViewFromImage(img))
        np.testing.assert_array_equal(canonical, sitk.GetArrayViewFromImage(ref))
        np.testing.assert_allclose(o.shape(img.GetSpacing()[::-1]), ref.GetSpacing()[::-1])
        np.testing.assert_allclose(o.direction(img.GetDirection()), ref.GetDirection(), atol=1e-12)
        np.testing.assert_array_equal(o.from_canonical(canonical), arr)
        assert o.is_identity == np.array_equal(d, np.eye(3))  # a tilt alone keeps the axes


def test_axis_orientation_refuses_a_degenerate_direction():
    with pytest.raises(InvalidInputError, match="not a valid orientation"):
        AxisOrientation.from_direction([1, 0, 0, 1, 0, 0, 0, 0, 1])
    with pytest.raises(InvalidInputError, match="volume"):
        AxisOrientation().to_canonical(np.zeros((3, 3)))


@pytest.mark.parametrize("code", ["RAS", "LPI", "PSL"])
def test_prepare_image_sees_the_same_anatomy_whatever_the_storage_order(code):
    """A CT stored with other axes (RAS as NIfTI converters write it: the spine at the top of the array) is prepared
    exactly like the LPS original, its label too, and restored results land on its own array."""
    prep = CTSlicePreprocessing()
    image, label = toy_ct(0)
    turned, turned_label = sitk.DICOMOrient(image, code), sitk.DICOMOrient(label, code)
    a, b = prep.prepare_image(image), prep.prepare_image(turned)
    assert torch.equal(a.image, b.image) and a.box == b.box
    assert b.original_shape == sitk.GetArrayViewFromImage(turned).shape
    lab_a = prep.prepare_label(sitk.GetArrayFromImage(label), a)
    lab_b = prep.prepare_label(sitk.GetArrayFromImage(turned_label), b)
    assert torch.equal(lab_a, lab_b) and lab_a.any()
    back = prep.restore(lab_b.float(), b)
    assert back.flags.c_contiguous and back.shape == b.original_shape
    expected = sitk.GetImageFromArray(prep.restore(lab_a.float(), a))
    expected.CopyInformation(image)
    np.testing.assert_array_equal(back, sitk.GetArrayFromImage(sitk.DICOMOrient(expected, code)))
