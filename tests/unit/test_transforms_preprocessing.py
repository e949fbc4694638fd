from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from oncolabel.errors import InvalidInputError
from oncolabel.preprocessing import CTSlicePreprocessing
from oncolabel.tasks import get_task
from oncolabel.training import SegmentationAdapter, SliceSampler
from oncolabel.transforms import (BodyBox, InplaneZoom, IntensityWindow, IntensityWindowd, RandInplaneZoom,
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
