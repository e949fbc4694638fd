"""Tumour masks from RT Structure Sets and DICOM SEGs, placed on their CT's grid (oncolabel.masks)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import SimpleITK as sitk

from oncolabel.errors import GeometryError, InvalidInputError
from oncolabel.io import read_image
from oncolabel.masks import read_mask, rtstruct_mask
from tests.conftest import real_rtstruct, realdata


def _grid(spacing=(5.0, 5.0, 2.5), origin=(-247.5, -197.5, -200.0), size=(100, 80, 9)) -> sitk.Image:
    image = sitk.Image(size, sitk.sitkInt16)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def _expected(ds, roi_number: int, reference: sitk.Image) -> np.ndarray:
    """The contours filled by matplotlib's point-in-polygon on the voxel centres' physical coordinates (an
    implementation independent of ours)."""
    from matplotlib.path import Path as Polygon

    out = np.zeros(reference.GetSize()[::-1], dtype=bool)
    nx, ny, nz = reference.GetSize()
    for rc in ds.ROIContourSequence:
        if int(rc.ReferencedROINumber) != roi_number:
            continue
        for c in rc.ContourSequence:
            pts = np.asarray(c.ContourData, dtype=float).reshape(-1, 3)
            k = reference.TransformPhysicalPointToIndex(tuple(pts[0]))[2]
            centres = np.asarray([reference.TransformIndexToPhysicalPoint((i, j, k)) for j in range(ny)
                                  for i in range(nx)])[:, :2]
            out[k] ^= Polygon(pts[:, :2]).contains_points(centres).reshape(ny, nx)
    return out


def test_an_rtstruct_structure_is_filled_on_the_ct_slices_it_lies_on(tmp_path):
    """A real RTSTRUCT: its structure chosen by name, each closed contour filled on the CT slice it lies on (voxel
    centres inside, as matplotlib finds them); a contour inside another on one slice is a hole; point structures,
    an unnamed choice among several, contours between the CT's slices or outside it are refused naming them."""
    ds = real_rtstruct(tmp_path / "RS.dcm")
    ct = _grid()
    got = read_mask(tmp_path / "RS.dcm", ct, roi="PATIENT")
    assert (got.source, got.structure) == ("RTSTRUCT", "patient")
    arr = sitk.GetArrayFromImage(got.mask).astype(bool)
    np.testing.assert_array_equal(arr, _expected(ds, 1, ct))
    assert [int(arr[k].sum()) for k in range(9)] == [4800, 0, 0, 0, 4800, 0, 0, 0, 4800]  # 80 x 60 pixel centres
    assert got.mask.GetSpacing() == ct.GetSpacing() and got.mask.GetOrigin() == ct.GetOrigin()
    (tmp_path / "RS series").mkdir()  # the structure set's series folder, as a PACS exports it
    real_rtstruct(tmp_path / "RS series" / "RS.1.dcm")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_mask(tmp_path / "RS series", ct, roi="patient").mask),
                                  sitk.GetArrayFromImage(got.mask))
    with pytest.raises(InvalidInputError, match=r"RS.dcm \(RTSTRUCT\) holds 3 structures \('patient', 'Isocenter 1', "
                                                r"'Isocenter 2'\): name the tumour's with --roi"):
        read_mask(tmp_path / "RS.dcm", ct)
    with pytest.raises(InvalidInputError, match=r"structure 'Isocenter 1' has no closed planar contour \(only 1 "):
        read_mask(tmp_path / "RS.dcm", ct, roi="isocenter 1")
    with pytest.raises(InvalidInputError, match=r"no structure\(s\) named 'GTV'"):
        read_mask(tmp_path / "RS.dcm", ct, roi="GTV")
    with pytest.raises(GeometryError, match=r"contour 1 of 'patient' does not lie on one of the CT's slices"):
        read_mask(tmp_path / "RS.dcm", _grid(origin=(-247.5, -197.5, -201.25)), roi="patient")
    with pytest.raises(GeometryError, match=r"lies outside the CT"):
        read_mask(tmp_path / "RS.dcm", _grid(size=(100, 80, 5)), roi="patient")
    holed = copy.deepcopy(ds)  # a second contour inside the first on the same slice: a hole
    inner = copy.deepcopy(holed.ROIContourSequence[0].ContourSequence[0])
    inner.ContourData = [-50.0, -50.0, -200.0, 50.0, -50.0, -200.0, 50.0, 50.0, -200.0, -50.0, 50.0, -200.0]
    inner.NumberOfContourPoints = 4
    holed.ROIContourSequence[0].ContourSequence.append(inner)
    holed_arr = sitk.GetArrayFromImage(rtstruct_mask(holed, ct, roi="patient").mask).astype(bool)
    np.testing.assert_array_equal(holed_arr, _expected(holed, 1, ct))
    assert holed_arr[0].sum() == 4800 - 400 and not holed_arr[0, 39, 49]


def test_a_dicom_seg_segment_is_read_as_a_mask(tmp_path):
    """dcmqi's real liver SEG on its CT series gives its reference label map voxel for voxel, with the series
    checked when the CT is the DICOM series and without when it is a NIfTI file; a label image takes no --roi."""
    import pydicom

    from oncolabel.dicom_seg import series_headers

    folder = realdata("dcmqi", "segmentations", "ct-3slice")
    seg = realdata("dcmqi", "segmentations", "liver.dcm")
    truth = sitk.GetArrayFromImage(read_image(realdata("dcmqi", "segmentations", "liver_seg.nrrd"))) > 0
    ct = read_image(folder)
    (tmp_path / "SEG series").mkdir()  # a PACS export: the SEG in a folder of its own
    (tmp_path / "SEG series" / "1.dcm").write_bytes(seg.read_bytes())
    for headers, given in ((series_headers(folder), seg), (None, seg), (None, tmp_path / "SEG series")):
        got = read_mask(given, ct, reference_headers=headers)
        assert got.source == "DICOM SEG" and got.structure
        np.testing.assert_array_equal(sitk.GetArrayFromImage(got.mask).astype(bool), truth)
    other = pydicom.dcmread(seg)
    other.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.1"
    other.save_as(tmp_path / "other.dcm")
    with pytest.raises(InvalidInputError, match=r"other.dcm \(SEG\) lies in another frame of reference than the CT"):
        read_mask(tmp_path / "other.dcm", ct, reference_headers=series_headers(folder))
    sitk.WriteImage(sitk.Cast(read_mask(seg, ct).mask, sitk.sitkUInt8), str(tmp_path / "liver.nii.gz"))
    with pytest.raises(InvalidInputError, match=r"--roi 'liver' names a structure of an RTSTRUCT or DICOM SEG"):
        read_mask(tmp_path / "liver.nii.gz", ct, roi="liver")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_mask(tmp_path / "liver.nii.gz", ct).mask) > 0, truth)
