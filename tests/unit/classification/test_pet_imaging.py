"""SUV from DICOM headers (known answers), PET reading (MONOCHROME1), MIPs and working grids."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from oncolabel.errors import ImageReadError, InvalidInputError
from oncolabel.imaging import backproject, centred_grid, check_hounsfield, map_to_image, mip, resample_onto
from oncolabel.pet import (SuvUnavailableError, declares_suv, mark_suv, read_pet_dicom, read_suv,
                           suv_scale_factor)
from tests.conftest import realdata


def _expected_factors() -> dict[str, float]:
    ts = (realdata("pet_suv_metadata_calculate-suv") / "calculateSUV_SampleData.test.ts").read_text()
    found = dict((k, float(v)) for k, v in re.findall(r"set\(\s*'([^']+)',\s*([0-9.eE+-]+)\s*\)", ts))
    assert len(found) == 8
    return found


def test_suv_factors_reproduce_calculate_suv_known_answers():
    root = realdata("pet_suv_metadata_calculate-suv", "metadata")
    for name, expected in _expected_factors().items():
        headers = json.loads((root / f"{name}-instances.json").read_text())
        assert suv_scale_factor(headers).factor == pytest.approx(expected, abs=1e-6), name


def test_suv_bqml_by_hand_and_refusals():
    """Known answer: 70 kg, 370 MBq injected 1 h before the scan, F-18 half-life 6586.2 s."""
    h = {"Units": "BQML", "CorrectedImage": ["ATTN", "DECY"], "DecayCorrection": "START", "PatientWeight": 70,
         "RadionuclideTotalDose": 370e6, "RadionuclideHalfLife": 6586.2, "SeriesDate": "20240101",
         "SeriesTime": "100000", "AcquisitionDate": "20240101", "AcquisitionTime": "100000",
         "RadiopharmaceuticalStartTime": "090000"}
    f = suv_scale_factor(h)
    assert f.factor == pytest.approx(70000.0 / (370e6 * 2 ** (-3600 / 6586.2)), rel=1e-12)
    assert f.decay_seconds == 3600
    with pytest.raises(SuvUnavailableError, match="PatientWeight"):
        suv_scale_factor({**h, "PatientWeight": None})
    with pytest.raises(SuvUnavailableError, match="ATTN"):
        suv_scale_factor({**h, "CorrectedImage": ["DECY"]})
    with pytest.raises(SuvUnavailableError, match="after the scan"):
        suv_scale_factor({**h, "RadiopharmaceuticalStartTime": "110000"})
    with pytest.raises(SuvUnavailableError, match="Philips"):
        suv_scale_factor({**h, "Units": "CNTS", "PhilipsPETPrivateGroup": {}})
    assert suv_scale_factor({**h, "Units": "GML"}).factor == 1.0


def test_nema_phantom_is_read_right_side_up_and_has_no_suv():
    folder = realdata("pet_nema_iq_pynemaiqpet", "pet_recon_2")
    series = read_pet_dicom(folder)
    assert series.photometric == "MONOCHROME1" and series.image.GetSize() == (192, 192, 89)
    ours = sitk.GetArrayFromImage(series.image)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    gdcm = sitk.GetArrayFromImage(reader.Execute())
    assert np.corrcoef(ours.ravel(), gdcm.ravel())[0, 1] < -0.99  # GDCM inverts MONOCHROME1: we do not
    with pytest.raises(SuvUnavailableError, match="RadionuclideTotalDose"):
        series.suv_factor()
    with pytest.raises(SuvUnavailableError, match="--suv-scale"):
        read_suv(folder)
    img, info = read_suv(folder, suv_scale=1e-3)
    assert declares_suv(img) and info["factor"] == 1e-3


def test_a_pet_exported_with_its_ct_in_one_folder_reads_the_pet(tmp_path):
    """PET/CT exports often put both series in one folder: the PET reader takes the PT slices (the real NEMA PET next
    to dcmqi's real CT series); a CT task reading the folder is told there are two image series."""
    import shutil

    from oncolabel.io import read_image

    folder = tmp_path / "petct"
    shutil.copytree(realdata("pet_nema_iq_pynemaiqpet", "pet_recon_2"), folder)
    for f in realdata("dcmqi", "segmentations", "ct-3slice").glob("*.dcm"):
        shutil.copy(f, folder / f"CT_{f.name}")
    pet = read_pet_dicom(folder)
    alone = read_pet_dicom(realdata("pet_nema_iq_pynemaiqpet", "pet_recon_2"))
    assert pet.image.GetSize() == (192, 192, 89) and len(pet.headers) == 89
    assert np.array_equal(sitk.GetArrayFromImage(pet.image), sitk.GetArrayFromImage(alone.image))
    with pytest.raises(ImageReadError, match=r"2 DICOM image series \((PT|CT) .*; (PT|CT) "):
        read_image(folder)


@pytest.mark.parametrize("recon", ["pet_recon_1", "pet_recon_2"])
def test_mip_of_the_real_nema_phantom_shows_the_six_hot_spheres(recon):
    """Axial MIP (edge slices left out): six blobs whose areas match the NEMA sphere diameters 10-37 mm."""
    series = read_pet_dicom(realdata("pet_nema_iq_pynemaiqpet", recon))
    arr = sitk.GetArrayFromImage(series.image)
    proj = mip(arr[15:-15], "axial").array
    background = np.median(proj[proj > 0.05 * proj.max()])
    lab, n = ndimage.label(proj > 2.0 * background)
    areas = np.sort(ndimage.sum(np.ones_like(proj), lab, np.arange(1, n + 1)))
    areas = areas[areas >= 10]
    px = series.image.GetSpacing()[0] ** 2
    expected = np.pi * (np.array([10, 13, 17, 22, 28, 37]) / 2) ** 2 / px
    assert areas.size == 6
    np.testing.assert_allclose(areas, expected, rtol=0.45)
    frontal = mip(series.image, "frontal")
    assert frontal.array.shape == (89, 192) and frontal.spacing == pytest.approx((2.78, 2.0833), abs=1e-3)
    assert frontal.array[20:70].max() > 5 * np.median(frontal.array[20:70][frontal.array[20:70] > 0])


def test_mip_orientation_and_backprojection_geometry():
    arr = np.zeros((10, 8, 6), np.float32)
    arr[8, 2, 1] = 5.0  # near the head (high z), anterior, patient right
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((2.0, 3.0, 4.0))
    img.SetOrigin((10.0, -5.0, 7.0))
    f, lat = mip(img, "frontal"), mip(img, "lateral")
    assert f.array.shape == (10, 6) and np.unravel_index(f.array.argmax(), f.array.shape) == (1, 1)
    assert lat.array.shape == (10, 8) and np.unravel_index(lat.array.argmax(), lat.array.shape) == (1, 2)
    assert f.spacing == (4.0, 2.0) and f.depth_index[1, 1] == 2
    heat = backproject({"frontal": f.array / 5, "lateral": lat.array / 5}, img)
    assert heat.GetSize() == img.GetSize() and heat.GetOrigin() == img.GetOrigin()
    h = sitk.GetArrayFromImage(heat)
    assert np.unravel_index(h.argmax(), h.shape) == (8, 2, 1) and h.max() == pytest.approx(1.0)
    with pytest.raises(InvalidInputError, match="view"):
        mip(img, "oblique")


def test_working_grid_round_trip():
    img = sitk.GetImageFromArray(np.arange(6 * 40 * 50, dtype=np.float32).reshape(6, 40, 50))
    img.SetSpacing((0.8, 0.8, 3.0))
    img.SetOrigin((-20.0, -16.0, 0.0))
    centre = img.TransformContinuousIndexToPhysicalPoint((24.5, 19.5, 2.5))
    grid = centred_grid(img, centre, (20, 20, 2), (1.6, 1.6, 3.0))
    sampled = resample_onto(img, grid)
    assert sampled.shape == (2, 20, 20)
    back = map_to_image(np.ones((2, 20, 20), np.float32), grid, img)
    b = sitk.GetArrayFromImage(back)
    assert back.GetSize() == img.GetSize() and b[2:4, 10:30, 10:40].mean() > 0.9 and b[0].max() == 0


def test_suv_declaration_round_trip(tmp_path):
    img = sitk.GetImageFromArray(np.ones((4, 5, 6), np.float32))
    plain = tmp_path / "plain.nii.gz"
    sitk.WriteImage(img, str(plain))
    with pytest.raises(SuvUnavailableError, match="--suv-scale"):
        read_suv(plain)
    scaled, info = read_suv(plain, suv_scale=2.5)
    assert sitk.GetArrayViewFromImage(scaled).max() == pytest.approx(2.5) and info["factor"] == 2.5
    for name in ("suv.nii.gz", "suv.nrrd"):
        sitk.WriteImage(mark_suv(sitk.Image(img)), str(tmp_path / name))
        again, info = read_suv(tmp_path / name)
        assert info["source"] == "file declares SUVbw"
        with pytest.raises(InvalidInputError, match="already holds SUV"):
            read_suv(tmp_path / name, suv_scale=2.0)
    with pytest.raises(InvalidInputError, match="positive"):
        read_suv(plain, suv_scale=-1.0)


def test_check_hounsfield_takes_cts_and_crops_and_refuses_other_units():
    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(realdata("pyradiomics", "lung1_image.nrrd"))))
    lo, hi = check_hounsfield(ct)  # real chest CT
    assert lo < -900 and 0 < hi < 3072
    yy, xx = np.mgrid[:64, :64]
    crop = np.where((yy - 32) ** 2 + (xx - 32) ** 2 < 24 ** 2, 40.0, -110.0)[None].repeat(5, 0)  # mass in fat
    assert check_hounsfield(crop) == (-110.0, 40.0)
    padded = ct.astype(np.float32)
    padded[:, :40] = -3024.0  # scanners' padding outside the reconstructed circle counts as air
    assert check_hounsfield(padded)[0] == -1024.0
    mr = sitk.GetArrayFromImage(sitk.ReadImage(str(realdata("pyradiomics", "brain1_image.nrrd"))))
    for values, message in ((ct + 1024, "no air or fat"), (mr, "no air or fat"), (crop / 1000.0 + 0.2, "not a CT"),
                            (ct * 20.0, "99th percentile above 5000"), (np.full((4, 8, 8), np.nan), "NaN")):
        with pytest.raises(InvalidInputError, match=message):
            check_hounsfield(values, what="test CT")
    with pytest.raises(InvalidInputError, match="the nephrographic phase's intensities span 0..1"):
        check_hounsfield(np.linspace(0, 1, 1000), what="nephrographic phase")


def test_inputs_on_other_grids_are_aligned_by_physical_coordinates():
    """Phases of one examination stored on other grids (axis order, pixel size, extent) come onto the reference
    grid; one that does not cover the reference's region is refused, naming how much it covers."""
    from oncolabel.errors import GeometryError
    from oncolabel.imaging import align_onto, check_covers, covered_fraction

    rng = np.random.default_rng(0)
    ref = sitk.GetImageFromArray(rng.normal(40.0, 10.0, (6, 30, 40)).astype(np.float32))
    ref.SetSpacing((0.7, 0.7, 2.5))
    ref.SetOrigin((-14.0, -10.5, -6.25))
    assert align_onto(ref, ref, what="a", reference_what="b") is ref
    turned = sitk.DICOMOrient(ref, "RAS")  # the same voxels in another axis order: back exactly
    assert covered_fraction(ref, turned) == 1.0
    back = align_onto(ref, turned, what="the excretory phase", reference_what="corticomedullary phase")
    assert back.GetSize() == ref.GetSize() and back.GetOrigin() == pytest.approx(ref.GetOrigin())
    np.testing.assert_allclose(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(ref), atol=1e-4)
    # coarser slices over a box short by half a slice at each end: within the one-voxel margin, edges filled
    coarse = sitk.Image([40, 30, 3], sitk.sitkFloat32)
    coarse.SetSpacing((0.7, 0.7, 5.0))
    coarse.SetOrigin((-14.0, -10.5, -5.0))
    coarse += 7.0
    out = sitk.GetArrayFromImage(align_onto(ref, coarse, what="x", reference_what="y"))
    assert out.shape == (6, 30, 40) and np.all(out == 7.0)
    half = sitk.RegionOfInterest(ref, [20, 30, 6], [0, 0, 0])
    assert covered_fraction(ref, half) == pytest.approx(0.5, abs=0.06)
    with pytest.raises(GeometryError, match=r"the nephrographic phase covers about (4|5)\d% of the corticomedullary "
                                            r"phase's region"):
        check_covers(ref, half, what="the nephrographic phase", reference_what="corticomedullary phase")
    far = sitk.Image(ref)
    far.SetOrigin((200.0, 0.0, 0.0))
    assert covered_fraction(ref, far) == 0.0
    with pytest.raises(GeometryError, match="lies outside the b's region"):
        align_onto(ref, far, what="a", reference_what="b")
