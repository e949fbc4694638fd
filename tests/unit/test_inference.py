"""SegmentationPredictor: the network run only on the bone region (``bone_roi_margin_mm``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from oncolabel.errors import InvalidInputError
from oncolabel.inference import SegmentationPredictor
from oncolabel.tasks import get_task
from tests.conftest import toy_ct


def roi_predictor(checkpoint, margin_mm, *, flip: bool = False) -> SegmentationPredictor:
    spec = get_task("bone_metastasis")
    post = dataclasses.replace(spec.postprocessing, bone_roi_margin_mm=margin_mm, flip_average=flip)
    return SegmentationPredictor(checkpoint, task=dataclasses.replace(spec, postprocessing=post), precision="fp32")


def test_bone_roi_box_margin_minimum_size_and_no_bone(toy_checkpoint):
    p = roi_predictor(toy_checkpoint, 8.0)  # 8 mm = 10 working pixels of 0.8 mm
    x = torch.zeros(2, 3, 100, 120)
    x[1, 2, 40:55, 60:75] = 1.0  # bone in one channel of one slice counts for the whole batch
    assert p._bone_roi(x) == (slice(30, 65), slice(50, 85))
    assert p._bone_roi(torch.zeros(2, 3, 100, 120)) is None
    corner = torch.zeros(1, 3, 100, 120)
    corner[0, 1, 0, 119] = 1.0  # a box of 11 x 11 pixels is widened to 32 inside the image
    assert p._bone_roi(corner) == (slice(0, 32), slice(88, 120))
    assert roi_predictor(toy_checkpoint, None)._bone_roi(x) == (slice(0, 100), slice(0, 120))
    soft = torch.full((1, 3, 100, 120), p.spec.preprocessing.window_value(150.0))  # soft tissue is not bone
    assert p._bone_roi(soft) is None


def _toy_with_lateral_bone() -> sitk.Image:
    image, _ = toy_ct(3)
    hu = sitk.GetArrayFromImage(image)
    hu[:, 40:48, 14:22] = 900  # a bone island off the midline: the region is not symmetric
    out = sitk.GetImageFromArray(hu)
    out.CopyInformation(image)
    return out


def test_the_network_runs_inside_the_region_only_also_for_the_flipped_pass(toy_checkpoint):
    p = roi_predictor(toy_checkpoint, 6.0)
    prepared = p.prepare(_toy_with_lateral_bone())
    ry, rx = p._bone_roi(p.spec.preprocessing.slices(prepared))  # 12 slices: one batch
    inside = np.zeros(prepared.size, bool)
    inside[ry, rx] = True
    assert 0 < inside.mean() < 1
    for flip in (False, True):
        prob = p._forward(prepared, flip=flip).numpy()
        assert (prob[:, ~inside] == 0).all() and (prob[:, inside] > 0).all(), flip


def test_a_region_covering_the_input_changes_nothing(toy_checkpoint):
    image = _toy_with_lateral_bone()
    whole = roi_predictor(toy_checkpoint, None).predict_probability(image)
    wide = roi_predictor(toy_checkpoint, 1000.0).predict_probability(image)
    np.testing.assert_array_equal(whole, wide)


def test_probabilities_do_not_depend_on_the_batch_size(toy_checkpoint):
    image, _ = toy_ct(4)
    hu = sitk.GetArrayFromImage(image)
    hu[:4, 40:48, 14:22] = 900  # a lateral bone island in the first slices only: the two groups' boxes differ
    lateral = sitk.GetImageFromArray(hu)
    lateral.CopyInformation(image)
    spec = get_task("bone_metastasis")

    def prob(group: int, batch_size: int) -> np.ndarray:
        post = dataclasses.replace(spec.postprocessing, bone_roi_margin_mm=6.0, bone_roi_slices=group)
        return SegmentationPredictor(toy_checkpoint, task=dataclasses.replace(spec, postprocessing=post),
                                     precision="fp32", batch_size=batch_size).predict_probability(lateral)

    ref = prob(6, 6)
    for batch_size in (1, 4, 12):  # forward batches that cut across the groups, or hold both
        np.testing.assert_allclose(prob(6, batch_size), ref, atol=1e-6)
    # the box is part of the function (the network pools over it): one group of 12 changes the later slices
    assert np.abs(prob(12, 6)[6:] - ref[6:]).max() > 1e-3
    with pytest.raises(InvalidInputError, match="bone_roi_slices 0"):
        dataclasses.replace(spec.postprocessing, bone_roi_slices=0)
    with pytest.raises(InvalidInputError, match="batch size 0"):
        SegmentationPredictor(toy_checkpoint, batch_size=0)


@pytest.mark.parametrize("code", ["RAS", "PIL"])
def test_a_ct_stored_with_other_axes_gets_the_same_segmentation_on_its_own_grid(code):
    """The shipped model on a sample case and on the same physical CT stored as RAS (NIfTI converters' habit: the
    spine at the top of the array, left and right swapped) or as sagittal slices (PIL). The network must see the
    anatomy as it learnt it (fed the array as stored, the RAS copy gave Dice 0.21 instead of 0.88 and 2,300
    instead of 525 label voxels), and the component filter its features along the same axes."""
    from pathlib import Path

    from oncolabel.io import read_image

    root = Path(__file__).resolve().parents[2] / "sample-data" / "bone-metastasis"
    image = read_image(root / "images" / "bm_s22_0003.nii.gz")
    truth = sitk.GetArrayFromImage(read_image(root / "labels" / "bm_s22_0003.nii.gz")) > 0
    predictor = SegmentationPredictor(precision="fp32")
    lps = predictor.predict(image)
    ras_image = sitk.DICOMOrient(image, code)
    ras = predictor.predict(ras_image)
    assert ras.label.GetSize() == ras_image.GetSize() and ras.label.GetOrigin() == ras_image.GetOrigin()
    assert ras.label.GetDirection() == ras_image.GetDirection() and ras.label.GetSpacing() == ras_image.GetSpacing()
    mask = sitk.GetArrayFromImage(lps.label) > 0
    back = sitk.GetArrayFromImage(sitk.DICOMOrient(ras.label, "LPS")) > 0
    np.testing.assert_array_equal(back, mask)
    assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) > 0.8
    assert [les.volume_ml for les in ras.lesions] == pytest.approx([les.volume_ml for les in lps.lesions])


def test_component_features_are_measured_along_the_patients_axes():
    """The false-positive filter's features (slice count, z extent, slice-to-slice correlation, in-plane rim...) of a
    CT stored as sagittal slices equal those of the axial original: the filter sees what it was fitted on."""
    from pathlib import Path

    from oncolabel.io import read_image

    root = Path(__file__).resolve().parents[2] / "sample-data" / "bone-metastasis"
    predictor = SegmentationPredictor(precision="fp32")
    for case in ("bm_s22_0003", "bm_s22_0004"):  # a metastasis, and a false-positive component
        image, truth = read_image(root / "images" / f"{case}.nii.gz"), read_image(root / "labels" / f"{case}.nii.gz")
        X, y = predictor.component_table(image, sitk.GetArrayFromImage(truth) > 0)
        turned, turned_truth = sitk.DICOMOrient(image, "PIL"), sitk.DICOMOrient(truth, "PIL")
        Xt, yt = predictor.component_table(turned, sitk.GetArrayFromImage(turned_truth) > 0)
        assert len(y) >= 1
        np.testing.assert_array_equal(yt, y)
        np.testing.assert_allclose(Xt, X, rtol=1e-5, atol=1e-6)


def test_inputs_outside_the_training_images_voxel_sizes_are_named(toy_checkpoint):
    """The shipped model records no training spacing: the task's assumption (the phantom generator's defaults, 0.6-0.9
    mm pixels, 1-5 mm slices) stands in; a model trained by the trainer carries its own (the toy model: 1.5 / 3 mm).
    Spacings are read along the patient's axes, whichever way the file stores them."""
    shipped = SegmentationPredictor()
    inside, _ = toy_ct(0, shape=(6, 32, 32), spacing=(0.7, 0.7, 2.5))
    assert shipped.input_warnings(inside) == []
    assert shipped.input_warnings(sitk.DICOMOrient(inside, "SAR")) == []  # stored as sagittal slices
    coarse, _ = toy_ct(0, shape=(6, 32, 32), spacing=(3.0, 3.0, 8.0))
    warnings = shipped.input_warnings(coarse)
    assert warnings == ["in-plane pixel size 3.00 mm lies outside the 0.60-0.90 mm of the images this model was "
                        "trained on: its output is an extrapolation",
                        "slice spacing 8.00 mm lies outside the 1.00-5.00 mm of the images this model was trained on: "
                        "its output is an extrapolation"]
    assert shipped.input_warnings(sitk.DICOMOrient(coarse, "SAR")) == warnings
    toy = SegmentationPredictor(toy_checkpoint)
    assert toy.input_warnings(coarse) and toy.input_warnings(toy_ct(0)[0]) == []
    result = toy.predict(coarse)
    assert result.warnings == tuple(toy.input_warnings(coarse))
    assert result.to_json()["warnings"] == list(result.warnings)
    assert "warnings" not in toy.predict(toy_ct(0)[0]).to_json()


def test_active_learning_uncertainty_is_reproducible():
    """The MC-dropout masks come from the call's seed: the same image scores the same whatever torch's global random
    state (before: each scoring run drew other masks, so the uncertainty-first order of images could change between
    runs), and that state is left as it was."""
    image, _ = toy_ct(2)
    predictor = SegmentationPredictor(precision="fp32")
    scores = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        scores.append(predictor.uncertainty(image, samples=3))
        assert torch.equal(torch.get_rng_state(), state)
    assert scores[0] == scores[1] and scores[0]["variance"] > 0  # dropout did act
    assert predictor.uncertainty(image, samples=3, seed=1) != scores[0]
