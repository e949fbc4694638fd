from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from oncolabel.errors import GeometryError, InvalidInputError
from oncolabel.evaluation import case_counts, evaluate_cases, evaluate_images
from oncolabel.lesions import components_with_seeds, find_lesions, remove_small_components


def _cube(shape, z0, z1, y0, y1, x0, x1):
    m = np.zeros(shape, bool)
    m[z0:z1, y0:y1, x0:x1] = True
    return m


def test_known_counts():
    shape = (10, 40, 40)
    truth = _cube(shape, 2, 6, 5, 15, 5, 15) | _cube(shape, 7, 9, 30, 33, 30, 33)  # lesion A (4 slices), B (2 slices)
    pred = _cube(shape, 3, 6, 6, 14, 6, 14) | _cube(shape, 0, 1, 20, 25, 20, 25)    # hits A on 3 slices; one FP blob
    c = case_counts(pred, truth, spacing=(1, 1, 1), min_area_mm2=0, min_overlap=0.1, large_mm=5)
    assert (c.truth_slices, c.detected_slices) == (6, 3)
    assert (c.predicted_slices, c.true_predicted_slices) == (4, 3)
    assert (c.truth_lesions, c.detected_lesions, c.false_positive_lesions) == (2, 1, 1)
    assert c.lesion_detected == (True, False)
    inter = (pred & truth).sum()
    assert c.dice == pytest.approx(2 * inter / (pred.sum() + truth.sum()))
    # lesion A: 400 voxels -> d = (6*400/pi)^(1/3) = 9.14 mm ; B: 18 voxels -> 3.25 mm; large_mm=5 keeps A only
    assert c.lesion_diameters_mm == pytest.approx((9.14, 3.25), abs=0.01)
    assert (c.truth_lesions_large, c.detected_lesions_large) == (1, 1)


def test_min_area_drops_small_slices():
    shape = (3, 20, 20)
    truth = _cube(shape, 0, 3, 0, 4, 0, 4)
    truth[2] = False
    truth[2, 0, 0] = True  # 1 voxel sliver
    c = case_counts(truth, truth, spacing=(1, 1, 1), min_area_mm2=5)
    assert c.truth_slices == 2 and c.detected_slices == 2


def test_pooling_and_intervals():
    shape = (4, 20, 20)
    t = _cube(shape, 0, 4, 2, 8, 2, 8)
    cases = [case_counts(t, t, spacing=(1, 1, 1), case_id="a"),
             case_counts(np.zeros(shape, bool), t, spacing=(1, 1, 1), case_id="b")]
    ev = evaluate_cases(cases, random_state=0, n_boot=200)
    s = ev.slice_sensitivity
    assert (s.numerator, s.denominator, s.value) == (4, 8, 0.5)
    assert s.wilson_low < 0.5 < s.wilson_high
    assert 0.0 <= s.bootstrap_low <= 0.5 <= s.bootstrap_high <= 1.0
    assert ev.slice_ppv.value == 1.0 and ev.dice_pooled == pytest.approx(2 * 144 / (144 + 288))
    assert ev.to_dict()["notice"].startswith("research use only")
    with pytest.raises(InvalidInputError):
        evaluate_cases([])


def test_empty_truth_and_prediction():
    z = np.zeros((3, 8, 8), bool)
    c = case_counts(z, z, spacing=(1, 1, 1))
    assert c.dice is None and c.truth_slices == 0
    ev = evaluate_cases([c])
    assert ev.slice_sensitivity.value is None and ev.false_positives_per_scan == 0


def test_evaluate_images_checks_geometry():
    """A reference label on a part of the prediction's grid (a Slicer .seg.nrrd is stored cropped to its segments)
    is evaluated as the full label; one on another grid, or labelled outside the image, is refused."""
    truth = np.zeros((6, 20, 20), np.uint8)
    truth[2:5, 5:12, 6:14] = 1
    pred = np.zeros_like(truth)
    pred[2:4, 6:12, 6:10] = 1
    t, p = sitk.GetImageFromArray(truth), sitk.GetImageFromArray(pred)
    for im in (t, p):
        im.SetSpacing((0.8, 0.8, 2.0))
    full = evaluate_images([("x", p, t)])
    cropped = sitk.RegionOfInterest(t, [10, 9, 4], [5, 4, 1])
    assert cropped.GetSize() != t.GetSize()
    assert evaluate_images([("x", p, cropped)]).to_dict() == full.to_dict()
    coarse = sitk.Image(t)
    coarse.SetSpacing((1.6, 1.6, 2.0))
    with pytest.raises(GeometryError, match="reference label of case x spacing"):
        evaluate_images([("x", p, coarse)])
    beyond = sitk.Image(t)
    beyond.SetOrigin((8.0, 0.0, 0.0))  # 10 voxels to the right: its lesion's right part lies outside the image
    with pytest.raises(GeometryError, match="labelled voxels outside the image"):
        evaluate_images([("x", p, beyond)])


def test_slices_are_axial_whichever_way_the_files_store_their_axes():
    """The known-counts case as images, and the same images stored as sagittal slices (PIL): the same axial slice
    counts, lesions and Dice (the study's slice-wise figures are per axial slice)."""
    shape = (10, 40, 40)
    truth = _cube(shape, 2, 6, 5, 15, 5, 15) | _cube(shape, 7, 9, 30, 33, 30, 33)
    pred = _cube(shape, 3, 6, 6, 14, 6, 14) | _cube(shape, 0, 1, 20, 25, 20, 25)
    images = []
    for m in (pred, truth):
        img = sitk.GetImageFromArray(m.astype(np.uint8))
        img.SetSpacing((0.8, 0.8, 2.5))
        images.append(img)
    axial = evaluate_images([("c", *images)], min_area_mm2=0).cases[0]
    sagittal = evaluate_images([("c", *(sitk.DICOMOrient(img, "PIL") for img in images))], min_area_mm2=0).cases[0]
    assert (axial.truth_slices, axial.detected_slices, axial.predicted_slices) == (6, 3, 4)
    assert sagittal == axial


def test_lesions_and_small_component_removal():
    m = _cube((6, 20, 20), 1, 4, 2, 6, 2, 6)
    m[5, 18, 18] = True
    assert remove_small_components(m, 2).sum() == m.sum() - 1
    ref = sitk.Image(20, 20, 6, sitk.sitkUInt8)
    ref.SetSpacing((0.5, 0.5, 2.0))
    les = find_lesions(m, ref)
    assert len(les) == 2 and les[0].voxels == 48 and les[0].volume_ml == pytest.approx(48 * 0.5 / 1000)
    assert les[0].slices == (1, 3)


def test_hysteresis_keeps_components_that_reach_the_seed_probability():
    prob = np.zeros((4, 16, 16), dtype=np.float32)
    prob[1:3, 2:6, 2:6] = 0.6
    prob[2, 3, 3] = 0.95  # this component reaches the seed level
    prob[1:3, 9:13, 9:13] = 0.7  # this one never does
    kept = components_with_seeds(prob >= 0.5, prob >= 0.9)
    assert kept[1:3, 2:6, 2:6].all() and not kept[:, 9:13, 9:13].any()
    assert not components_with_seeds(prob >= 0.5, np.zeros_like(kept)).any()


def test_predictor_postprocess_applies_hysteresis_only_above_the_threshold():
    import dataclasses

    from oncolabel.inference import SegmentationPredictor
    from oncolabel.networks import DeepLabV3Plus
    from oncolabel.tasks import get_task

    spec = get_task("bone_metastasis")
    net = DeepLabV3Plus(in_channels=spec.preprocessing.in_channels, channels=(4, 4, 4, 4), aspp_channels=4,
                        low_level_channels=4, decoder_channels=4)
    prob = np.zeros((4, 16, 16), dtype=np.float32)
    prob[1:3, 2:6, 2:6], prob[1:3, 9:13, 9:13], prob[2, 3, 3] = 0.6, 0.7, 0.95
    ref = sitk.Image(16, 16, 4, sitk.sitkUInt8)
    for seed, expected in ((0.0, 64), (0.9, 32)):
        post = dataclasses.replace(spec.postprocessing, threshold=0.5, min_lesion_mm3=1.0, seed_threshold=seed)
        pred = SegmentationPredictor.from_model(net, dataclasses.replace(spec, postprocessing=post))
        assert int(pred.postprocess(prob, ref).sum()) == expected


def test_component_functions_equal_the_whole_volume_computation():
    """The lesion functions work on the mask's bounding box; results equal labelling the whole volume (random
    masks near the volume's edges, empty masks, seeds outside the mask)."""
    from scipy import ndimage

    from oncolabel.lesions import (STRUCTURE_3D, bounding_box, components_with_seeds, find_lesions,
                                   remove_small_components)

    rng = np.random.default_rng(3)
    for trial in range(12):
        shape = tuple(int(v) for v in rng.integers(4, 24, size=3))
        mask = ndimage.binary_dilation(rng.random(shape) < 0.02, iterations=int(rng.integers(0, 2)))
        if trial == 0:
            mask[:] = False
        seeds = rng.random(shape) < 0.05
        lab, n = ndimage.label(mask, structure=STRUCTURE_3D)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        keep = sizes >= 4
        keep[0] = False
        np.testing.assert_array_equal(remove_small_components(mask, 4), keep[lab])
        keep = np.zeros(n + 1, bool)
        keep[np.unique(lab[seeds & (lab > 0)])] = True
        keep[0] = False
        np.testing.assert_array_equal(components_with_seeds(mask, seeds), keep[lab])
        ref = sitk.Image(shape[2], shape[1], shape[0], sitk.sitkUInt8)
        ref.SetSpacing((0.7, 0.8, 2.0))
        lesions = find_lesions(mask, ref)
        assert len(lesions) == n and (bounding_box(mask) is None) == (n == 0)
        if n:
            order = np.argsort(-sizes[1:], kind="stable")
            centres = ndimage.center_of_mass(mask, lab, order + 1)
            objs = ndimage.find_objects(lab)
            for lesion, i, (zc, yc, xc) in zip(lesions, order, centres):
                assert lesion.voxels == sizes[i + 1]
                np.testing.assert_allclose(lesion.centroid_index, (xc, yc, zc), atol=0.006)
                assert lesion.slices == (objs[i][0].start, objs[i][0].stop - 1)


def test_case_counts_of_empty_masks_are_zero():
    empty = np.zeros((5, 6, 7), bool)
    c = case_counts(empty, empty, spacing=(1.0, 1.0, 1.0), case_id="none")
    assert (c.truth_slices, c.predicted_slices, c.truth_lesions, c.false_positive_lesions, c.intersection) == (0,) * 5
    one = empty.copy()
    one[4, 5, 6] = True  # a voxel in the last corner: the crop must keep it
    c = case_counts(one, empty, spacing=(4.0, 4.0, 1.0))
    assert (c.predicted_slices, c.false_positive_lesions, c.predicted_voxels) == (1, 1, 1)


def test_flip_average_is_the_mean_of_the_plain_and_mirrored_passes():
    import dataclasses

    import torch

    from oncolabel.inference import SegmentationPredictor
    from oncolabel.networks import DeepLabV3Plus
    from oncolabel.tasks import get_task

    torch.manual_seed(0)
    spec = get_task("bone_metastasis")
    net = DeepLabV3Plus(in_channels=spec.preprocessing.in_channels, channels=(4, 4, 4, 4), aspp_channels=4,
                        low_level_channels=4, decoder_channels=4).eval()
    rng = np.random.default_rng(0)
    hu = rng.normal(40, 30, (3, 48, 40)).astype(np.float32)
    hu[:, 10:30, 8:20] += 700.0  # an asymmetric bright block: the mirrored pass sees something else
    hu[:, :4], hu[:, -4:] = -1000.0, -1000.0  # air above and below, as in any CT
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((1.25, 1.25, 3.0))
    plain = SegmentationPredictor.from_model(net, spec)
    flip = SegmentationPredictor.from_model(net, dataclasses.replace(
        spec, postprocessing=dataclasses.replace(spec.postprocessing, flip_average=True)))
    prepared = plain.prepare(image)
    mirrored = spec.preprocessing.restore(plain._forward(prepared, flip=True), prepared)
    p0, p1 = plain.predict_probability(image), flip.predict_probability(image)
    assert not np.allclose(p0, mirrored, atol=1e-4)
    np.testing.assert_allclose(p1, (p0 + mirrored) / 2, atol=1e-5)
