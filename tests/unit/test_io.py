from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from oncolabel.errors import GeometryError, ImageReadError, InvalidInputError
from oncolabel.io import (array_to_image, atomic_path, case_id_of, check_same_geometry, list_images, read_image,
                          require_3d, write_image)
from oncolabel.preprocessing import CTSlicePreprocessing
from tests.conftest import cd_export, multiframe_dicom_copy, realdata, tilted_dicom_copy, toy_ct


def test_roundtrip_nifti_and_nrrd_keep_geometry(tmp_path):
    image, _ = toy_ct(1)
    for name in ("a.nii.gz", "a.nrrd"):
        write_image(image, tmp_path / name)
        back = read_image(tmp_path / name)
        check_same_geometry(image, back)
        assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image))


@pytest.mark.parametrize("content, match", [(b"", "empty"), (b"not an image at all" * 10, "not a valid NIfTI|cannot read")])
def test_bad_files_raise_named_error(tmp_path, content, match):
    p = tmp_path / "bad.nii.gz"
    p.write_bytes(content)
    with pytest.raises(ImageReadError, match=match):
        read_image(p)


def test_truncated_nifti_is_an_error(tmp_path):
    image, _ = toy_ct(0)
    p = tmp_path / "t.nii"
    write_image(image, p, compress=False)
    p.write_bytes(p.read_bytes()[:2000])
    with pytest.raises(ImageReadError, match="t.nii"):
        read_image(p)


def test_missing_and_empty_folder(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError, match="empty"):
        read_image(tmp_path / "empty")


def test_folder_without_dicom(tmp_path, capfd):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.txt").write_text("hello")
    with pytest.raises(ImageReadError, match="no readable DICOM"):
        read_image(tmp_path / "d")
    assert capfd.readouterr().err == ""  # GDCM's own "No Series were found" warning is not a second line
    (tmp_path / "study" / "series1").mkdir(parents=True)  # an export's study folder, one level too high
    with pytest.raises(ImageReadError, match=r"only the subfolder\(s\) series1: give the folder that holds"):
        read_image(tmp_path / "study")


def test_a_ct_series_exported_with_its_segmentation_object_is_read(tmp_path):
    """dcmqi's real CT series with its DICOM SEG (another series, modality SEG) in one folder: the SEG is not a second
    candidate volume; a folder with the SEG alone holds no image series."""
    import shutil

    ct = realdata("dcmqi", "segmentations", "ct-3slice")
    both = tmp_path / "both"
    shutil.copytree(ct, both)
    shutil.copy(realdata("dcmqi", "segmentations", "liver.dcm"), both / "liver.dcm")
    got, ref = read_image(both), read_image(ct)
    check_same_geometry(ref, got)
    assert np.array_equal(sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(ref))
    (tmp_path / "seg").mkdir()
    shutil.copy(realdata("dcmqi", "segmentations", "liver.dcm"), tmp_path / "seg" / "liver.dcm")
    with pytest.raises(ImageReadError, match="no DICOM image series, only SEG objects"):
        read_image(tmp_path / "seg")


def _copy_as(src, dest, **values):
    """A copy of a real DICOM file with other header values and its own series and instance UIDs."""
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(src)
    ds.SeriesInstanceUID = values.pop("series_uid", None) or generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for key, value in values.items():
        setattr(ds, key, value)
    ds.save_as(dest)


def test_a_study_export_with_its_localizer_and_dose_report_reads_as_its_volume(tmp_path):
    """Every CT study holds a localizer (topogram, ImageType LOCALIZER) and often a dose report (a secondary
    capture); exported into the series' folder they made it "2 DICOM image series" (or 3), and alone the localizer
    read as a 2D image. They are now no candidate volume: the folder reads as its series (by ITK and by the pydicom
    reader), on a CD too; a folder holding only them says so."""
    import shutil

    from oncolabel.io import read_dicom_volume

    ct = realdata("dcmqi", "segmentations", "ct-3slice")
    first = sorted(ct.glob("*.dcm"))[0]
    folder = tmp_path / "study"
    shutil.copytree(ct, folder)
    _copy_as(first, folder / "scout.dcm", ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
             SeriesDescription="Topogram 0.6 T20s")
    _copy_as(realdata("pydicom", "CT_small.dcm"), folder / "dose.dcm", SeriesDescription="Patient Protocol",
             SOPClassUID="1.2.840.10008.5.1.4.1.1.7")
    expected = read_image(ct)
    for got in (read_image(folder), read_dicom_volume(folder).image):
        np.testing.assert_array_equal(sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(expected))
        check_same_geometry(expected, got)
    only = tmp_path / "only"
    only.mkdir()
    for name in ("scout", "dose"):
        (tmp_path / name).mkdir()
        shutil.copy(folder / f"{name}.dcm", tmp_path / name / f"{name}.dcm")
        shutil.copy(folder / f"{name}.dcm", only / f"{name}.dcm")
    with pytest.raises(ImageReadError, match=r"only/?: the folder holds no DICOM image series, only localizer \(scout\) "
                                             r"images, secondary captures \(e.g. dose reports\)$"):
        read_image(only)
    with pytest.raises(ImageReadError, match=r"no DICOM image slices found, only localizer \(scout\) images, "
                                             r"secondary captures"):
        read_dicom_volume(only)
    cd = cd_export(tmp_path / "cd", [(tmp_path / "scout", {}), (ct, {}), (tmp_path / "dose", {})])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(cd)), sitk.GetArrayFromImage(expected))


def _write_dicom_series(folder, image, uid):
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        sl = image[:, :, k]
        for tag, val in (("0020|000e", uid), ("0020|0013", str(k + 1)), ("0008|0060", "CT"),
                         ("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k))))),
                         ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0028|0030", "1.5\\1.5"), ("0018|0050", "3.0")):
            sl.SetMetaData(tag, val)
        writer.SetFileName(str(folder / f"{uid[-3:]}_{k:03d}.dcm"))
        writer.Execute(sl)


def test_dicom_series_folder_and_two_series(tmp_path):
    image, _ = toy_ct(0, shape=(4, 32, 32))
    _write_dicom_series(tmp_path / "one", image, "1.2.826.0.1.3680043.2.1125.1.1")
    got = read_image(tmp_path / "one")
    assert got.GetSize() == (32, 32, 4)
    assert np.allclose(got.GetSpacing(), (1.5, 1.5, 3.0))
    _write_dicom_series(tmp_path / "one", image, "1.2.826.0.1.3680043.2.1125.1.2")
    with pytest.raises(ImageReadError, match=r"2 DICOM image series \(CT 4 file\(s\) .*; CT 4 file\(s\) "):
        read_image(tmp_path / "one")


def test_real_dicom_series():
    folder = realdata("dcmqi", "segmentations", "ct-3slice")
    img = read_image(folder)
    assert img.GetDimension() == 3 and img.GetSize() == (512, 512, 3)
    # pydicom's 4-slice series has a 202.5 mm gap after its first slice: ITK only warned and built a volume that
    # misplaced three of the four slices
    with pytest.raises(ImageReadError, match=r"not evenly spaced .*202\.50 mm after slice 1 of 4"):
        read_image(realdata("pydicom", "CT2_series_16x16"))


def test_a_series_with_a_missing_or_duplicated_slice_is_refused(tmp_path):
    image, _ = toy_ct(0, shape=(5, 32, 32))
    _write_dicom_series(tmp_path / "gap", image, "1.2.826.0.1.3680043.2.1125.1.3")
    sorted((tmp_path / "gap").iterdir())[2].unlink()  # the middle slice
    with pytest.raises(ImageReadError, match=r"6\.00 mm after slice 2 of 4, median 3\.00 mm"):
        read_image(tmp_path / "gap")
    _write_dicom_series(tmp_path / "twice", image, "1.2.826.0.1.3680043.2.1125.1.4")
    dup = image[:, :, 1:2]  # a second file at slice 1's position, as when an export is repeated into the folder
    dup.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1.4")
    for tag, val in (("0020|0013", "9"), ("0008|0060", "CT"), ("0020|0037", "1\\0\\0\\0\\1\\0"),
                     ("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, 1)))))):
        dup.SetMetaData(tag, val)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(tmp_path / "twice" / "copy.dcm"))
    writer.Execute(dup)
    with pytest.raises(ImageReadError, match="not evenly spaced"):
        read_image(tmp_path / "twice")


def test_a_gantry_tilted_series_is_refused(tmp_path):
    """ITK built an orthogonal volume from a tilted series (spacing = the slices' distance, shear dropped), which
    misplaces every slice in-plane by tan(tilt) times its distance from the first."""
    for name, mono in (("gdcm", False), ("pydicom", True)):  # ITK's reader and ours (MONOCHROME1) both check
        folder = tilted_dicom_copy(tmp_path / name, 15.0, monochrome1=mono)
        with pytest.raises(ImageReadError, match=r"gantry tilt about 15\.0 degrees: slice 3 of 3 lies 0\.5 mm off"):
            read_image(folder)
    slight = read_image(tilted_dicom_copy(tmp_path / "slight", 5.0))  # 0.17 mm at most: under half a 0.81 mm pixel
    assert slight.GetSize() == (512, 512, 3)


def test_a_series_with_a_slice_in_another_orientation_pixel_size_or_matrix_is_refused(tmp_path):
    """The real series with its middle slice rotated 10 degrees in-plane (position unchanged), or with 0.9 mm pixels
    instead of 0.81: ITK stacked it with the first slice's geometry, silently (the CLI reported a label on that
    volume until 2026-12-07). A slice of 256 rows among 512: ITK's "cannot read the image (corrupt or unsupported
    file)" until then."""
    import pydicom

    def cropped(ds):
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[:256]).tobytes()
        ds.Rows = 256

    t = np.radians(10.0)
    changes = {"orientation": (lambda ds: setattr(ds, "ImageOrientationPatient", [
                   float(np.cos(t)), float(np.sin(t)), 0.0, float(-np.sin(t)), float(np.cos(t)), 0.0]), "[0.985,"),
               "pixel spacing": (lambda ds: setattr(ds, "PixelSpacing", [0.9, 0.9]), "[0.9, 0.9] vs [0.811, 0.811]"),
               "matrix size (rows, columns)": (cropped, "[256, 512] vs [512, 512]")}
    for what, (change, shown) in changes.items():
        for name, mono in (("gdcm", False), ("pydicom", True)):  # ITK's reader and ours (MONOCHROME1)
            folder = tmp_path / f"{what}-{name}"
            folder.mkdir()
            for k, path in enumerate(sorted(realdata("dcmqi", "segmentations", "ct-3slice").glob("*.dcm"))):
                ds = pydicom.dcmread(path)
                if k == 1:
                    change(ds)
                if mono:
                    ds.PhotometricInterpretation = "MONOCHROME1"
                ds.save_as(folder / path.name)
            expected = rf"file 02\.dcm has another {re.escape(what)} than file 0[13]\.dcm \({re.escape(shown)}"
            with pytest.raises(ImageReadError, match=expected):
                read_image(folder)


def test_a_slice_with_a_fractional_rescale_keeps_its_fractions(tmp_path):
    """dcmqi's real series with its middle slice stored at rescale slope 0.5 (values HU + 0.5): ITK chose integer
    voxels from the first slice and truncated that slice's values toward zero (up to 1 HU off) until 2026-12-07."""
    import pydicom

    reference = sitk.GetArrayFromImage(read_image(realdata("dcmqi", "segmentations", "ct-3slice"))).astype(float)
    for k, path in enumerate(sorted(realdata("dcmqi", "segmentations", "ct-3slice").glob("*.dcm"))):
        ds = pydicom.dcmread(path)
        if k == 1:
            stored = 2 * ds.pixel_array.astype(np.int32) * float(ds.RescaleSlope) + 1  # (HU + 0.5 - intercept) / 0.5
            ds.PixelData = stored.astype(ds.pixel_array.dtype).tobytes()
            ds.RescaleSlope = 0.5
        ds.save_as(tmp_path / path.name)
    got = sitk.GetArrayFromImage(read_image(tmp_path)).astype(float)
    middle = int(np.flatnonzero([not np.array_equal(got[j], reference[j]) for j in range(3)])[0])
    assert np.array_equal(got[middle], reference[middle] + 0.5)
    assert all(np.array_equal(got[j], reference[j]) for j in range(3) if j != middle)


def test_a_series_without_slice_positions_is_refused(tmp_path):
    """dcmqi's real series with ImagePositionPatient removed from every slice or from one: ITK stacked the slices in
    file order at 1 mm from an origin of 0 and the CLI wrote a label there; our pixel reader (MONOCHROME1) dropped
    the unplaced slice silently. Both refuse, naming the file."""
    import pydicom

    for name, which, mono in (("all", {0, 1, 2}, False), ("one", {2}, False), ("mono-all", {0, 1, 2}, True),
                              ("mono-one", {2}, True)):
        folder = tmp_path / name
        folder.mkdir()
        for k, path in enumerate(sorted(realdata("dcmqi", "segmentations", "ct-3slice").glob("*.dcm"))):
            ds = pydicom.dcmread(path)
            if k in which:
                del ds.ImagePositionPatient
            if mono:
                ds.PhotometricInterpretation = "MONOCHROME1"
            ds.save_as(folder / path.name)
        with pytest.raises(ImageReadError, match=r"file 0[1-3]\.dcm has no ImagePositionPatient / "
                                                 r"ImageOrientationPatient: the series' slices can be neither placed"):
            read_image(folder)


def test_a_multi_frame_ct_reads_as_its_series(tmp_path):
    """The real series as one multi-frame file (folder or file given; frames in order and stored out of spatial
    order) reads voxel for voxel onto the series' grid. ITK's own reading of the file (a folder of it: a 4D volume,
    refused as such until 2026-12-07) takes the geometry from the first frame: out of order, the slices come back
    misplaced and with 1 mm pixels instead of 0.81."""
    ref = read_image(realdata("dcmqi", "segmentations", "ct-3slice"))
    in_order = multiframe_dicom_copy(tmp_path / "mf")
    shuffled = multiframe_dicom_copy(tmp_path / "shuffled", order=(1, 2, 0))
    for source in (in_order.parent, in_order, shuffled.parent, shuffled):
        got = read_image(source)
        check_same_geometry(ref, got)
        assert np.array_equal(sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(ref)), source
    itk = sitk.ReadImage(str(shuffled))
    assert itk.GetSpacing()[0] == pytest.approx(1.0) and ref.GetSpacing()[0] == pytest.approx(0.810547)


def test_compressed_dicom_reads_as_the_uncompressed_series(tmp_path):
    """PACS and vendor exports often store DICOM compressed; dcmtk compresses the real series here (JPEG lossless
    process 14, the most common; JPEG-LS; RLE). Each reads voxel for voxel as the uncompressed series: the PET
    reader (pydicom, which decodes JPEG lossless only with GDCM: "cannot decode the pixel data of a slice" until
    2026-12-07), the CT series (ITK) and the multi-frame CT (ITK's frames checked against pydicom's decoding)."""
    import shutil
    import subprocess

    import pydicom

    from oncolabel.pet import read_pet_dicom

    if shutil.which("dcmcjpeg") is None:
        pytest.skip("dcmtk is not installed (apt-get install dcmtk; scripts/setup.sh installs it when run as root)")
    pet = realdata("pet_nema_iq_pynemaiqpet", "pet_recon_1")
    ct = realdata("dcmqi", "segmentations", "ct-3slice")
    multiframe = multiframe_dicom_copy(tmp_path / "mf", order=(2, 0, 1)).parent
    expected_pet = sitk.GetArrayFromImage(read_pet_dicom(pet).image)
    expected_ct = read_image(ct)
    for tool in ("dcmcjpeg", "dcmcjpls", "dcmcrle"):
        copies = {}
        for name, source in (("pet", pet), ("ct", ct), ("mf", multiframe)):
            copies[name] = tmp_path / tool / name
            copies[name].mkdir(parents=True)
            for f in sorted(source.glob("*.dcm")):
                subprocess.run([tool, str(f), str(copies[name] / f.name)], check=True, capture_output=True)
                syntax = pydicom.dcmread(copies[name] / f.name, stop_before_pixels=True).file_meta.TransferSyntaxUID
                assert syntax.is_compressed, (tool, f.name, syntax.name)
        assert np.array_equal(sitk.GetArrayFromImage(read_pet_dicom(copies["pet"]).image), expected_pet), tool
        for name in ("ct", "mf"):
            got = read_image(copies[name])
            check_same_geometry(expected_ct, got)
            assert np.array_equal(sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(expected_ct)), (tool, name)


def test_multi_frame_files_that_form_no_volume_are_refused(tmp_path):
    import pydicom

    def altered(name, change):
        path = multiframe_dicom_copy(tmp_path / name)
        ds = pydicom.dcmread(path)
        change(ds)
        ds.save_as(path)
        return path.parent

    def tilt(ds):  # positions shifted in-plane as a tilted gantry's, orientation unchanged
        for k, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
            x, y, z = (float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient)
            frame.PlanePositionSequence[0].ImagePositionPatient = [x, y + 0.5 * k, z]

    def gap(ds):
        frame = ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]  # the top slice, 3 mm higher
        frame.ImagePositionPatient = [*frame.ImagePositionPatient[:2], float(frame.ImagePositionPatient[2]) + 3.0]

    def rescale(ds):
        for k, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
            item = pydicom.Dataset()
            item.RescaleSlope, item.RescaleIntercept, item.RescaleType = 1, -1024 + k, "HU"
            frame.PixelValueTransformationSequence = pydicom.Sequence([item])

    def unplaced(ds):
        del ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence

    for name, change, match in (("tilt", tilt, r"gantry tilt about .* slice 3 of 3 lies 1\.0 mm off"),
                                ("gap", gap, r"not evenly spaced .*median 2\.50 mm"),
                                ("rescale", rescale, r"differ in their rescale slopes / intercepts"),
                                ("unplaced", unplaced, r"frame 2 of 3 has no plane position")):
        with pytest.raises(ImageReadError, match=match):
            read_image(altered(name, change))
    first = pydicom.dcmread(multiframe_dicom_copy(tmp_path / "two"))
    again = multiframe_dicom_copy(tmp_path / "two", name="again.dcm")  # the series exported twice into one folder
    ds = pydicom.dcmread(again)
    ds.SeriesInstanceUID = first.SeriesInstanceUID
    ds.save_as(again)
    with pytest.raises(ImageReadError, match="the series holds 2 multi-frame files"):
        read_image(tmp_path / "two")
    from oncolabel.io import read_dicom_volume  # the PET / MONOCHROME1 reader needs each slice's own headers

    with pytest.raises(ImageReadError, match="multi-frame .* not read here"):
        read_dicom_volume(tmp_path / "tilt")


def test_require_3d_rejects_2d_and_single_slice():
    with pytest.raises(InvalidInputError, match="2D"):
        require_3d(sitk.Image(8, 8, sitk.sitkInt16))
    with pytest.raises(InvalidInputError, match="1 slice"):
        require_3d(sitk.Image(8, 8, 1, sitk.sitkInt16))


def test_geometry_error_names_difference():
    a, _ = toy_ct(0)
    b = sitk.Image(a)
    b.SetSpacing((2.0, 1.5, 3.0))
    with pytest.raises(GeometryError, match="spacing"):
        check_same_geometry(a, b)
    with pytest.raises(GeometryError, match="size"):
        array_to_image(np.zeros((2, 2, 2)), a)


def test_atomic_write_keeps_existing_file_on_failure(tmp_path):
    dest = tmp_path / "keep.txt"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_list_images_and_case_ids(tmp_path):
    image, _ = toy_ct(0, shape=(3, 16, 16))
    (tmp_path / "labels").mkdir()
    write_image(image, tmp_path / "labels" / "bm_1.nii.gz")
    (tmp_path / "labels" / "notes.txt").write_text("x")
    assert list(list_images(tmp_path, subfolder="labels")) == ["bm_1"]
    assert case_id_of("x/y/a.b.nii.gz") == "a.b"
    with pytest.raises(ImageReadError):
        list_images(tmp_path / "labels" / "none")


def test_truncated_gzip_nifti_is_an_error(tmp_path):
    image, _ = toy_ct(0)
    p = tmp_path / "t.nii.gz"
    write_image(image, p)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(p)


def test_nan_or_infinite_voxels_are_refused_not_read_as_zero(tmp_path):
    """ITK reads NaN and infinite voxels of a float NIfTI as 0 (water, in a CT), silently; NRRD keeps them, and the
    CT check refuses them there."""
    image, _ = toy_ct(0)
    values = sitk.GetArrayFromImage(image).astype(np.float32)
    values[5, 10:20, 10:20] = np.nan
    values[6, 0, 0] = -np.inf
    for name, dtype in (("f.nii.gz", np.float32), ("f.nii", np.float32), ("d.nii.gz", np.float64)):
        bad = sitk.GetImageFromArray(values.astype(dtype))
        bad.CopyInformation(image)
        write_image(bad, tmp_path / name, compress=name.endswith(".gz"))
        assert np.isnan(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / name)))).sum() == 0  # ITK's zeros
        with pytest.raises(ImageReadError, match=f"{name}: 101 voxel\\(s\\) are NaN or infinite"):
            read_image(tmp_path / name)
    truncated = tmp_path / "cut.nii"  # uncompressed float: streamed for the count, still refused when short
    truncated.write_bytes((tmp_path / "f.nii").read_bytes()[:3000])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(truncated)
    good = sitk.GetImageFromArray(np.nan_to_num(values, nan=0.0, neginf=-1024.0))
    good.CopyInformation(image)
    write_image(good, tmp_path / "ok.nii.gz")
    assert read_image(tmp_path / "ok.nii.gz").GetSize() == image.GetSize()
    bad = sitk.GetImageFromArray(values)
    bad.CopyInformation(image)
    write_image(bad, tmp_path / "f.nrrd")
    with pytest.raises(InvalidInputError, match="holds 101 NaN or infinite"):
        CTSlicePreprocessing().prepare_image(read_image(tmp_path / "f.nrrd"))


def test_monochrome1_series_keeps_stored_values(tmp_path):
    """GDCM returns max - value for MONOCHROME1; read_image must return the stored (rescaled) values."""
    import pydicom

    image, _ = toy_ct(1, shape=(4, 24, 24))
    folder = tmp_path / "m1"
    _write_dicom_series(folder, image, "1.2.826.0.1.3680043.2.1125.1.7")
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.save_as(f)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    gdcm = sitk.GetArrayFromImage(reader.Execute()).astype(float)
    truth = sitk.GetArrayFromImage(image).astype(float)
    assert not np.allclose(gdcm, truth)  # the trap is real
    got = read_image(folder)
    assert np.allclose(sitk.GetArrayFromImage(got), truth)
    assert np.allclose(got.GetSpacing(), (1.5, 1.5, 3.0))
    assert np.allclose(got.GetOrigin(), image.GetOrigin())


def test_real_monochrome1_pet_series_is_not_inverted():
    from oncolabel.pet import read_pet_dicom

    folder = realdata("pet_nema_iq_pynemaiqpet", "pet_recon_1")
    got = sitk.GetArrayFromImage(read_image(folder))
    assert np.array_equal(got, sitk.GetArrayFromImage(read_pet_dicom(folder).image))
    assert got.max() > 10 * max(np.median(got), 1e-6)  # hot spheres are maxima, not minima


def test_a_cd_export_reads_as_the_series_its_dicomdir_lists(tmp_path):
    """A CD/DVD export (a DICOMDIR indexing PT*/ST*/SE* folders of files without a suffix) was refused ('the folder
    holds no readable DICOM image series'). Its one image series now reads as the same volume the series' own folder
    gives (same voxels, same storage order), by ITK and by pydicom; several series are refused naming each with its
    folder, and that folder reads; a DICOMDIR naming a file that is not there, or unreadable, is refused so."""
    from oncolabel.io import dicom_series_files, read_dicom_volume

    ct = realdata("dcmqi", "segmentations", "ct-3slice")
    one = cd_export(tmp_path / "one", [(ct, {"SeriesDescription": "Abdomen 1.0"})])
    assert (one / "DICOMDIR").is_file() and not any(one.glob("*/*/*/*.dcm"))
    expected = read_image(ct)
    got = read_image(one)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(expected))
    check_same_geometry(expected, got)
    assert got.GetDirection() == expected.GetDirection()  # slices in the order the series folder gives them
    by_pydicom = read_dicom_volume(one).image
    np.testing.assert_array_equal(sitk.GetArrayFromImage(by_pydicom), sitk.GetArrayFromImage(expected))
    assert [p.split("/")[-4:-1] for p in dicom_series_files(one)] == [["PT000000", "ST000000", "SE000000"]] * 3
    lower = tmp_path / "lower"  # a CD mounted on Linux without Rock Ridge: every name in lower case
    shutil.copytree(one, lower)
    for path in sorted(lower.rglob("*"), key=lambda q: -len(q.parts)):
        path.rename(path.with_name(path.name.lower()))
    assert (lower / "dicomdir").is_file()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(lower)), sitk.GetArrayFromImage(expected))

    pet = realdata("pet_nema_iq_pynemaiqpet", "pet_recon_1")
    two = cd_export(tmp_path / "two", [(ct, {"SeriesDescription": "Abdomen 1.0"}), (pet, {})])
    with pytest.raises(ImageReadError, match=r"its DICOMDIR lists 2 image series \(CT 'Abdomen 1.0' \(3 files, "
                                             r"PT000000/ST000000/SE000000\); PT '.*' \(89 files, PT000001/ST000000/"
                                             r"SE000000\)\): give the folder of the one to read$"):
        read_image(two)
    check_same_geometry(expected, read_image(two / "PT000000" / "ST000000" / "SE000000"))
    from oncolabel.pet import read_pet_dicom  # a PET/CT CD: the PET reader takes the PET series

    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_dicom_volume(two, modality="PT").image),
                                  sitk.GetArrayFromImage(read_pet_dicom(pet).image))

    # two series in one folder (a flat export): the message says a folder alone cannot choose between them
    flat = cd_export(tmp_path / "flat", [(ct, {"SeriesDescription": "Abdomen 1.0"})] * 2)
    study = flat / "PT000000" / "ST000000"
    for k in range(3):
        (study / "SE000001" / f"IM00000{k}").rename(study / "SE000000" / f"IM10000{k}")
    dicomdir = flat / "DICOMDIR"
    dicomdir.write_bytes(dicomdir.read_bytes().replace(b"SE000001\\IM00000", b"SE000000\\IM10000"))
    with pytest.raises(ImageReadError, match=r"lists 2 image series \(CT 'Abdomen 1.0' \(3 files, PT000000/ST000000/"
                                             r"SE000000\); CT .*give the folder of the one to read \(a series that "
                                             r"shares its folder with another.*copied into a folder of its own\)"):
        read_image(flat)
    from oncolabel.io import dicomdir_series_folders  # the renal phases of a CD need a folder per series

    with pytest.raises(ImageReadError, match=r"series 'Abdomen 1.0' shares its folder with another series"):
        dicomdir_series_folders(flat)
    trick = cd_export(tmp_path / "trick", [(ct, {})])  # a file id leading out of the export's folder
    dicomdir = trick / "DICOMDIR"
    dicomdir.write_bytes(dicomdir.read_bytes().replace(b"PT000000\\ST000000\\SE000000\\IM000001",
                                                       b"..\\..\\..\\..\\..\\..\\..\\..\\..\\..\\..\\XX"))
    with pytest.raises(ImageReadError, match=r"trick/DICOMDIR: names a file outside its folder"):
        read_image(trick)

    next((one / "PT000000" / "ST000000" / "SE000000").iterdir()).unlink()
    with pytest.raises(ImageReadError, match=r"lists PT000000/ST000000/SE000000/IM00000\d, which is not there \(1 of "
                                             r"series .*'s 3 files missing: an incomplete copy\?\)"):
        read_image(one)
    (one / "DICOMDIR").write_bytes(b"DICM" * 40)
    with pytest.raises(ImageReadError, match=r"one/DICOMDIR: cannot read the DICOMDIR"):
        read_image(one)


def _slicerio_sample(name: str):
    slicerio = pytest.importorskip("slicerio")
    from pathlib import Path

    path = Path(slicerio.__file__).parent / "data" / name
    if not path.exists():
        pytest.skip(f"slicerio {slicerio.__version__} ships no {name}")
    return slicerio, path


def test_a_slicer_segmentation_cropped_to_its_segments_is_placed_on_the_image_grid(tmp_path):
    """Slicer stores a .seg.nrrd cropped to its segments' extent (and exports labelmaps so without a reference
    volume): slicerio's sample segmentation of its sample CT, cropped the way Slicer writes it, is placed back voxel
    for voxel; what is not on the image's grid is refused, naming why."""
    from oncolabel.io import mask_on_grid

    slicerio, seg_path = _slicerio_sample("Segmentation.seg.nrrd")
    ct = read_image(seg_path.parent / "CTChest4.nrrd")
    full = read_image(seg_path)
    assert mask_on_grid(ct, full) is full
    seg = slicerio.read_segmentation(str(seg_path))
    (i0, j0, k0), (i1, j1, k1) = (np.argwhere(seg["voxels"] == 5).min(0),
                                  np.argwhere(seg["voxels"] == 5).max(0) + 1)
    seg["voxels"] = np.where(seg["voxels"][i0:i1, j0:j1, k0:k1] == 5, 5, 0).astype(np.uint8)
    seg["ijkToLPS"][:3, 3] += seg["ijkToLPS"][:3, :3] @ np.array([i0, j0, k0], float)
    seg["referenceImageExtentOffset"] = [int(i0), int(j0), int(k0)]
    seg["segments"] = [dict(s, extent=[0, i1 - i0 - 1, 0, j1 - j0 - 1, 0, k1 - k0 - 1])
                       for s in seg["segments"] if s["labelValue"] == 5]
    slicerio.write_segmentation(str(tmp_path / "one.seg.nrrd"), seg)
    cropped = read_image(tmp_path / "one.seg.nrrd")
    assert cropped.GetSize() == (i1 - i0, j1 - j0, k1 - k0) != ct.GetSize()
    with pytest.raises(GeometryError, match="size"):
        check_same_geometry(ct, cropped)
    placed = mask_on_grid(ct, cropped, what="tumour mask")
    assert placed.GetSize() == ct.GetSize() and placed.GetOrigin() == ct.GetOrigin()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(placed),
                                  np.where(sitk.GetArrayFromImage(full) == 5, 5, 0))
    shifted = sitk.Image(cropped)
    shifted.SetOrigin(np.add(cropped.GetOrigin(), (1.0, 0.0, 0.0)).tolist())  # a third of a voxel
    with pytest.raises(GeometryError, match="tumour mask origin .* lies between the image's voxels"):
        mask_on_grid(ct, shifted, what="tumour mask")
    coarse = sitk.Image(cropped)
    coarse.SetSpacing([2.0 * s for s in cropped.GetSpacing()])
    with pytest.raises(GeometryError, match="tumour mask spacing"):
        mask_on_grid(ct, coarse, what="tumour mask")
    beyond = sitk.ConstantPad(full, [0, 0, 0], [0, 0, 2], 1)  # two more slices, labelled, past the CT's end
    with pytest.raises(GeometryError, match="labelled voxels outside the image"):
        mask_on_grid(ct, beyond)
    zeros_beyond = sitk.ConstantPad(full, [3, 0, 1], [0, 2, 0], 0)  # a margin of zeros around it is cut off
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask_on_grid(ct, zeros_beyond)),
                                  sitk.GetArrayFromImage(full))
    far = sitk.Image(cropped)
    far.SetOrigin(np.add(ct.GetOrigin(), (-1000.0 * 3.04687595367432, 0.0, 0.0)).tolist())
    with pytest.raises(GeometryError, match="lies outside the image"):
        mask_on_grid(ct, far)
    _, overlapping = _slicerio_sample("SegmentationOverlapping.seg.nrrd")  # overlapping segments: 2 layers
    with pytest.raises(ImageReadError, match="2 components per voxel.*export the segment as a labelmap"):
        read_image(overlapping)
    layers = sitk.ReadImage(str(overlapping))
    with pytest.raises(InvalidInputError, match="is 3D with 2 layers .* export the segment as a labelmap"):
        mask_on_grid(ct, layers)
