"""DICOM SEG output: ``oncolabel infer ... OUTPUT.dcm`` on a DICOM series; the SEG decoded by highdicom (not by our
code) matches the NIfTI label slice by slice, each instance placed by ITK from its own position."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from oncolabel.cli import main
from oncolabel.dicom_seg import label_from_segmentation, segmentation_dataset, segmentation_frames, series_headers
from oncolabel.errors import GeometryError, InvalidInputError
from oncolabel.io import read_image
from tests.conftest import label_slices_by_instance, multiframe_dicom_copy, realdata

SAMPLE = Path(__file__).resolve().parents[2] / "sample-data" / "bone-metastasis" / "images" / "bm_s22_0002.nii.gz"


def _write_series(image: sitk.Image, folder: Path, *, reverse: bool = False) -> Path:
    """``image`` as a DICOM CT series of single-frame slices (HU stored as is), files in slice order or reversed."""
    from pydicom.uid import generate_uid

    folder.mkdir()
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    n = image.GetDepth()
    for k in range(n):
        sl = image[:, :, k]
        for tag, value in (("0008|0060", "CT"), ("0020|000e", series), ("0020|000d", study), ("0020|0052", frame),
                           ("0008|0018", generate_uid()), ("0008|0016", "1.2.840.10008.5.1.4.1.1.2"),
                           ("0010|0020", "phantom22"), ("0020|0013", str(k + 1)),
                           ("0020|0032", "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k)))),
                           ("0020|0037", "\\".join(f"{v:.6f}" for v in (direction[0], direction[3], direction[6],
                                                                         direction[1], direction[4], direction[7]))),
                           ("0018|0050", str(image.GetSpacing()[2]))):
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{(n - 1 - k) if reverse else k:04d}.dcm"))
        writer.Execute(sl)
    return folder


def _decoded(seg_path: Path, folder: Path) -> dict[str, np.ndarray]:
    import highdicom as hd
    import pydicom

    sops = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in sorted(folder.glob("*.dcm"))]
    seg = hd.seg.segread(seg_path)
    masks = seg.get_pixels_by_source_instance(sops, segment_numbers=[1], assert_missing_frames_are_empty=True)
    return {sop: masks[i, ..., 0] for i, sop in enumerate(sops)}


def test_infer_writes_a_dicom_seg_of_a_dicom_series(tmp_path, capsys):
    folder = _write_series(read_image(SAMPLE), tmp_path / "ct", reverse=True)
    assert main(["infer", "bone-metastasis", str(folder), str(tmp_path / "label.nii.gz")]) == 0
    assert main(["infer", "bone-metastasis", str(folder), str(tmp_path / "label.dcm")]) == 0
    label = read_image(tmp_path / "label.nii.gz")
    expected = label_slices_by_instance(label, folder)
    assert sum(int(m.sum()) for m in expected.values()) > 50  # a metastasis of the phantom was found
    decoded = _decoded(tmp_path / "label.dcm", folder)
    for sop, mask in expected.items():
        assert np.array_equal(decoded[sop], mask), sop
    import pydicom

    seg = pydicom.dcmread(tmp_path / "label.dcm")
    back = label_from_segmentation(seg, series_headers(folder), read_image(folder))  # and read back as a label
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(label))
    assert seg.SegmentSequence[0].SegmentLabel == "metastasis"
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC" and "research use only" in seg.SeriesDescription
    capsys.readouterr()
    assert main(["infer", "bone-metastasis", str(SAMPLE), str(tmp_path / "x.dcm")]) == 1  # no series to reference
    assert "needs a DICOM series as INPUT" in capsys.readouterr().err and not (tmp_path / "x.dcm").exists()
    enhanced = multiframe_dicom_copy(tmp_path / "enhanced", order=(2, 0, 1)).parent  # one multi-frame file
    assert main(["infer", "bone-metastasis", str(enhanced), str(tmp_path / "m.dcm")]) == 0
    assert pydicom.dcmread(tmp_path / "m.dcm").NumberOfFrames == 3


def test_a_multi_frame_series_gets_a_seg_whose_frames_lie_where_the_label_is(tmp_path):
    """The SEG of a multi-frame file stored out of spatial order: each SEG frame, placed by ITK from the plane
    position highdicom gave it, holds the label's slice there; read back, the label comes out unchanged."""
    import pydicom
    from pydicom.pixels import pixel_array

    folder = multiframe_dicom_copy(tmp_path / "mf", order=(2, 0, 1)).parent
    image = read_image(folder)
    arr = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    arr[0, 100:130, 100:120] = 1
    arr[2, 300:310, 250:290] = 1
    label = sitk.GetImageFromArray(arr)
    label.CopyInformation(image)
    seg = segmentation_dataset(label, series_headers(folder), segments={1: "metastasis"}, manual=True,
                               algorithm="reader", version="1")
    seg.save_as(tmp_path / "seg.dcm")
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    frames = pixel_array(seg).reshape(int(seg.NumberOfFrames), *arr.shape[1:])
    assert int(frames.sum()) == int(arr.sum()) == 1000
    for f, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert np.array_equal(frames[f], arr[image.TransformPhysicalPointToIndex(position)[2]])
    back = label_from_segmentation(seg, series_headers(folder), image)
    assert np.array_equal(sitk.GetArrayFromImage(back), arr)


def test_a_label_on_another_grid_is_refused():
    folder = realdata("dcmqi", "segmentations", "ct-3slice")
    headers = series_headers(folder)
    image = read_image(folder)
    label = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    label.CopyInformation(image)
    assert segmentation_frames(label, headers).shape == (3, 512, 512)
    for other in (label[:, :, 1:], sitk.Flip(label, [False, True, False]), label[1:, :, :]):
        with pytest.raises(GeometryError, match="does not lie on the series' grid"):
            segmentation_frames(other, headers)
    two = sitk.Image(label)
    two[10, 10, 1] = 2
    with pytest.raises(InvalidInputError, match=r"label value\(s\) \[2\] have no segment name"):
        segmentation_dataset(two, headers, segments={1: "metastasis"}, manual=False, algorithm="a", version="1")
    assert "SpecificCharacterSet" in headers[0]  # the caller's headers are left as they were


def test_real_dicom_segs_read_as_labels():
    """dcmqi's real SEGs of its CT series: liver.dcm decodes voxel for voxel to the label map it was built from
    (107,098 voxels); partial_overlaps.dcm, whose segments overlap, cannot be one label image and says so."""
    import pydicom

    folder = realdata("dcmqi", "segmentations")
    headers, image = series_headers(folder / "ct-3slice"), read_image(folder / "ct-3slice")
    label = label_from_segmentation(pydicom.dcmread(folder / "liver.dcm"), headers, image)
    truth = sitk.GetArrayFromImage(read_image(folder / "liver_seg.nrrd"))
    assert np.array_equal(sitk.GetArrayFromImage(label), (truth > 0).astype(np.uint8)) and truth.sum() == 107098
    with pytest.raises(InvalidInputError, match=r"segments 1 and 2 overlap on slice 1"):
        label_from_segmentation(pydicom.dcmread(folder / "partial_overlaps.dcm"), headers, image)
    with pytest.raises(GeometryError, match="frame 1 does not lie on the series' grid"):
        label_from_segmentation(pydicom.dcmread(folder / "liver.dcm"), headers, image[:, :, 1:])
    other = [pydicom.dcmread(sorted(realdata("pydicom", "CT2_series_16x16").iterdir())[0], stop_before_pixels=True)]
    with pytest.raises(InvalidInputError, match="references series"):
        label_from_segmentation(pydicom.dcmread(folder / "liver.dcm"), other, image)
