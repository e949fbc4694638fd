"""Noise-referenced tumour measurements: known answers on a drawn tumour, the noise correction, refusals, and
agreement with the H&N phantom's own traits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from oncolabel.errors import GeometryError, InvalidInputError
from oncolabel.features.tumour import MEASUREMENT_NAMES, TumourMeasurementError, measure_tumour, tumour_measurements

SPACING = (2.0, 1.0, 1.0)  # z, y, x in mm


def drawn_tumour(*, noise_sd: float, texture_sd: float = 20.0, seed: int = 0, background_hu: float = 55.0,
                 radius_mm: float = 15.0, core_mm: float = 7.0) -> tuple[np.ndarray, np.ndarray]:
    """A spherical tumour (90 HU viable, white texture of ``texture_sd``) with a 20 HU necrotic core in muscle,
    white scanner noise of ``noise_sd`` everywhere."""
    rng = np.random.default_rng(seed)
    shape = (40, 100, 100)
    z, y, x = np.indices(shape, dtype=np.float64)
    r = np.sqrt(((z - 20) * SPACING[0]) ** 2 + (y - 50) ** 2 + (x - 50) ** 2)
    mask = r <= radius_mm
    ct = np.full(shape, background_hu)
    ct[mask] = 90.0 + texture_sd * rng.standard_normal(int(mask.sum()))
    ct[r <= core_mm] = 20.0
    return ct + noise_sd * rng.standard_normal(shape), mask.astype(np.uint8)


def test_known_answers_on_a_drawn_tumour():
    ct, mask = drawn_tumour(noise_sd=10.0)
    m = tumour_measurements(ct, mask, SPACING)
    assert set(MEASUREMENT_NAMES) <= set(m)
    assert m["log_volume_ml"] == pytest.approx(math.log(mask.sum() * 2.0 / 1000.0))
    assert m["necrosis_fraction"] == pytest.approx((7.0 / 15.0) ** 3, abs=0.03)
    assert m["enhancement_hu"] == pytest.approx(90.0, abs=3.0)
    assert m["noise_sd_hu"] == pytest.approx(10.0, rel=0.1)
    assert m["log_heterogeneity"] == pytest.approx(math.log(20.0), abs=0.1)  # the texture, not texture + noise


def test_the_noise_reference_separates_texture_from_noise():
    quiet = tumour_measurements(*drawn_tumour(noise_sd=5.0, seed=1), SPACING)
    loud = tumour_measurements(*drawn_tumour(noise_sd=25.0, seed=2), SPACING)
    assert abs(quiet["log_heterogeneity"] - loud["log_heterogeneity"]) < 0.15
    raw_quiet = tumour_measurements(*drawn_tumour(noise_sd=5.0, seed=1), SPACING, noise_reference=False)
    raw_loud = tumour_measurements(*drawn_tumour(noise_sd=25.0, seed=2), SPACING, noise_reference=False)
    assert raw_loud["log_heterogeneity"] - raw_quiet["log_heterogeneity"] > 0.3
    assert "noise_sd_hu" not in raw_quiet
    smooth = tumour_measurements(*drawn_tumour(noise_sd=10.0, texture_sd=5.0, seed=3), SPACING)
    assert quiet["log_heterogeneity"] - smooth["log_heterogeneity"] > 1.0


def test_the_crop_keeps_the_measurements_of_a_homogeneous_scan():
    ct, mask = drawn_tumour(noise_sd=10.0, seed=4)
    local = tumour_measurements(ct, mask, SPACING)
    whole = tumour_measurements(ct, mask, SPACING, crop_margin_mm=None)
    for name in MEASUREMENT_NAMES:
        assert local[name] == pytest.approx(whole[name], abs=0.05 if name != "enhancement_hu" else 0.5)


def test_refusals_name_the_problem():
    ct, mask = drawn_tumour(noise_sd=10.0)
    with pytest.raises(InvalidInputError, match="empty"):
        tumour_measurements(ct, np.zeros_like(mask), SPACING)
    with pytest.raises(InvalidInputError, match="3D CT"):
        tumour_measurements(ct[0], mask[0], SPACING)
    with pytest.raises(InvalidInputError, match="shape"):
        tumour_measurements(ct, mask[:-1], SPACING)
    air = np.where(mask > 0, ct, -1000.0)  # a tumour in air: nothing to measure the noise in
    with pytest.raises(TumourMeasurementError, match="noise reference"):
        tumour_measurements(air, mask, SPACING)
    assert tumour_measurements(air, mask, SPACING, noise_reference=False)["enhancement_hu"] == pytest.approx(90, abs=3)


def test_images_must_share_a_grid():
    ct, mask = drawn_tumour(noise_sd=10.0)
    img, msk = sitk.GetImageFromArray(ct), sitk.GetImageFromArray(mask)
    img.SetSpacing(SPACING[::-1]), msk.SetSpacing(SPACING[::-1])
    assert measure_tumour(img, msk) == tumour_measurements(ct, mask, SPACING)
    zs, ys, xs = np.nonzero(mask)  # cropped to the tumour, as a Slicer .seg.nrrd stores it: placed back
    box = sitk.RegionOfInterest(msk, [int(np.ptp(xs)) + 3, int(np.ptp(ys)) + 3, int(np.ptp(zs)) + 1],
                                [int(xs.min()) - 1, int(ys.min()) - 1, int(zs.min())])
    assert box.GetSize() != msk.GetSize() and measure_tumour(img, box) == measure_tumour(img, msk)
    msk.SetOrigin((0.5 * SPACING[2], 0.0, 0.0))  # half a voxel off: not on the CT's grid
    with pytest.raises(GeometryError, match="between the image's voxels"):
        measure_tumour(img, msk)


def test_measurements_follow_the_phantoms_traits():
    from oncolabel.phantoms.hn_response import generate_hn_response_case

    cases = [generate_hn_response_case(seed) for seed in range(6)]
    meas = [measure_tumour(c.images["image"], c.images["mask"]) for c in cases]
    truth = [c.traits for c in cases]
    for name in ("log_volume_ml", "necrosis_fraction", "enhancement_hu"):
        r = np.corrcoef([t[name] for t in truth], [m[name] for m in meas])[0, 1]
        assert r > 0.8, (name, r)
    noise = [c.meta["noise_sd_hu"] for c in cases]
    assert np.corrcoef(noise, [m["noise_sd_hu"] for m in meas])[0, 1] > 0.8


def test_real_ct_volume_is_exact_and_the_noise_reference_matches_a_homogeneous_organ():
    """Real CT (TotalSegmentator's example, 3 mm): the liver contour as the region, its volume from the mask, and
    the noise reference against the spread inside the eroded liver (homogeneous at 3 mm). The necrosis and
    enhancement rules assume a contrast-enhanced tumour and are not checked on this unenhanced organ."""
    from scipy import ndimage

    from tests.conftest import realdata

    ct = sitk.ReadImage(str(realdata("totalsegmentator", "example_ct_sm.nii.gz")))
    seg = sitk.ReadImage(str(realdata("totalsegmentator", "example_seg.nii.gz")))
    liver = sitk.Cast(seg == 5, sitk.sitkUInt8)  # label 5 = liver (label_map_total_v2.json)
    m = measure_tumour(ct, liver)
    voxels = int(sitk.GetArrayViewFromImage(liver).sum())
    assert m["log_volume_ml"] == pytest.approx(math.log(voxels * 27.0 / 1000.0))
    inner = ndimage.binary_erosion(sitk.GetArrayViewFromImage(liver) > 0, iterations=2)
    spread = float(np.std(sitk.GetArrayViewFromImage(ct)[inner]))
    assert 5.0 < m["noise_sd_hu"] < 40.0 and m["noise_sd_hu"] == pytest.approx(spread, rel=0.25)


def test_real_lung_lesion_is_measured():
    """pyradiomics' real chest CT and its lung lesion (837 voxels of 0.57 x 0.57 x 5 mm): every value finite, the
    noise reference from the chest wall in a plausible range."""
    from tests.conftest import realdata

    ct = sitk.ReadImage(str(realdata("pyradiomics", "lung1_image.nrrd")))
    label = sitk.ReadImage(str(realdata("pyradiomics", "lung1_label.nrrd")))
    m = measure_tumour(ct, sitk.Cast(label > 0, sitk.sitkUInt8))
    assert all(math.isfinite(v) for v in m.values())
    assert m["log_volume_ml"] == pytest.approx(math.log(837 * 0.5703125 ** 2 * 5.0 / 1000.0), abs=1e-6)
    assert 5.0 < m["noise_sd_hu"] < 60.0 and 0.0 <= m["necrosis_fraction"] <= 1.0


def test_a_ct_stored_with_other_axes_gets_the_same_measurements():
    """In-plane smoothing and the noise reference work on axial planes: a CT and mask stored as sagittal slices (or
    with flipped axes, as NIfTI's RAS) are measured along the patient's axes, not the file's."""
    from oncolabel.phantoms.hn_response import generate_hn_response_case

    case = generate_hn_response_case(3)
    ct, mask = case.images["image"], case.images["mask"]
    ref = measure_tumour(ct, mask)
    for order in ("SAR", "RAS", "ASL"):
        got = measure_tumour(sitk.DICOMOrient(ct, order), sitk.DICOMOrient(mask, order))
        assert got == pytest.approx(ref, rel=1e-6, abs=1e-9), order
