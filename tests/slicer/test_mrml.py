"""Server files <-> MRML nodes with the real MRML library (PyPI slicer-core): geometry, names, colours, tables."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from OncoLabelLib import arrays, mrml, protocol, tables
from OncoLabelLib.errors import MissingInputError, ResultFormatError
from tests.slicer.conftest import slicer_core

pytestmark = pytest.mark.slicer

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def write(tmp_path, name, array, *, spacing=(0.8, 0.9, 2.5), origin=(-40.0, 30.0, 12.5), direction=None):
    """A NIfTI/NRRD file from a ``(z, y, x)`` array; an oblique direction by default (rotated about z)."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    c, s = np.cos(0.3), np.sin(0.3)
    image.SetDirection(direction or (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    path = tmp_path / name
    sitk.WriteImage(image, str(path))
    return str(path), image


def ijk_to_ras(node) -> np.ndarray:
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def sitk_ijk_to_ras(image) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    m[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ m


def labels_array(shape=(6, 20, 24)) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    lab[2:4, 5:9, 6:12] = 1
    lab[1, 14:17, 3:5] = 2
    return lab


def segment_names(node):
    seg = node.GetSegmentation()
    return [seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())]


def ct_with_segmentation(scene, tmp_path, names):
    """A CT of :func:`labels_array`'s shape and the segmentation node made from that label map."""
    lab = labels_array()
    ct_path, image = write(tmp_path, "ct.nii.gz", np.zeros(lab.shape, np.int16))
    label_path, _ = write(tmp_path, "label.nii.gz", lab)
    ct = mrml.load_volume(scene, ct_path, "ct")
    seg = mrml.segmentation_from_label_file(scene, label_path, names, name="s", reference_volume=ct)
    return ct, seg, lab, image, label_path


def test_volume_geometry_is_the_files_lps_geometry_in_ras(mrml_scene, tmp_path):
    slicer = slicer_core()
    data = np.arange(6 * 20 * 24, dtype=np.int16).reshape(6, 20, 24)
    path, image = write(tmp_path, "ct.nii.gz", data)
    node = mrml.load_volume(mrml_scene, path, "ct", attributes={"ImageId": "case7"})
    assert np.allclose(ijk_to_ras(node), sitk_ijk_to_ras(image), atol=1e-4)
    assert np.array_equal(slicer.util.arrayFromVolume(node), data)
    assert node.GetAttribute("OncoLabel.ImageId") == "case7"
    out = mrml.write_volume(node, str(tmp_path / "upload.nrrd"))
    back = sitk.ReadImage(out)
    assert np.allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-4)
    assert np.allclose(back.GetDirection(), image.GetDirection(), atol=1e-6)
    assert np.array_equal(sitk.GetArrayFromImage(back), data)
    (tmp_path / "bad.nii.gz").write_bytes(b"not an image")
    with pytest.raises(ResultFormatError, match="cannot read the image bad.nii.gz"):
        mrml.load_volume(mrml_scene, str(tmp_path / "bad.nii.gz"))


def test_label_map_becomes_named_coloured_segments_and_round_trips(mrml_scene, tmp_path):
    lab = labels_array()
    ct_path, _ = write(tmp_path, "ct.nii.gz", np.zeros(lab.shape, np.int16))
    label_path, _ = write(tmp_path, "label.nii.gz", lab)
    ct = mrml.load_volume(mrml_scene, ct_path, "ct")
    names = {"metastasis": 1, "other": 2, "oedema": 3}  # 'oedema' is absent from the image
    n_before = mrml_scene.GetNumberOfNodes()
    seg = mrml.segmentation_from_label_file(mrml_scene, label_path, {"background": 0, **names}, name="ct lesions",
                                            reference_volume=ct, attributes={"ModelVersion": "aa33"})
    assert seg.GetName() == "ct lesions" and seg.GetAttribute("OncoLabel.ModelVersion") == "aa33"
    assert segment_names(seg) == ["metastasis", "other", "oedema"]  # the absent label: an empty segment to paint
    colors = arrays.segment_colors(names)
    segmentation = seg.GetSegmentation()
    for i in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(i)
        assert np.allclose(segment.GetColor(), colors[segment.GetName()])
    # only the segmentation and its display node were added: temporary label map, colour table removed
    assert mrml_scene.GetNumberOfNodes() - n_before == 2
    out = mrml.segmentation_to_label_file(seg, ct, names, str(tmp_path / "corrected.nii.gz"))
    back = sitk.ReadImage(out)
    assert np.array_equal(sitk.GetArrayFromImage(back), lab)
    assert np.allclose(back.GetDirection(), sitk.ReadImage(ct_path).GetDirection(), atol=1e-6)
    # server values follow segment names, not segment order: swap the names' values
    swapped = mrml.segmentation_to_label_file(seg, ct, {"metastasis": 2, "other": 1, "oedema": 3},
                                              str(tmp_path / "swapped.nii.gz"))
    arr = sitk.GetArrayFromImage(sitk.ReadImage(swapped))
    assert np.array_equal(arr == 2, lab == 1) and np.array_equal(arr == 1, lab == 2)


def test_a_seg_nrrd_written_by_the_cli_opens_as_a_named_segmentation(mrml_scene, tmp_path):
    """``oncolabel infer ... OUT.seg.nrrd`` (``io.write_label``) read by Slicer's own segmentation storage node: the
    segment is named after the task's label, on the CT's oblique grid, voxel for voxel; an empty result too."""
    slicer = slicer_core()
    from oncolabel.io import write_label

    lab = labels_array()
    lab[lab > 1] = 0
    ct_path, image = write(tmp_path, "ct.nii.gz", np.zeros(lab.shape, np.int16))
    ct = mrml.load_volume(mrml_scene, ct_path, "ct")
    for name, array in (("found.seg.nrrd", lab), ("none.seg.nrrd", np.zeros_like(lab))):
        label = sitk.GetImageFromArray(array)
        label.CopyInformation(image)
        write_label(label, tmp_path / name, segments={1: "metastasis"})
        node = mrml_scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        storage = mrml_scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
        storage.SetFileName(str(tmp_path / name))
        assert storage.ReadData(node) == 1
        assert segment_names(node) == ["metastasis"]
        back = mrml.segmentation_to_label_file(node, ct, {"metastasis": 1}, str(tmp_path / f"{name}.nii.gz"))
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(back)), array)
    assert isinstance(slicer.vtkMRMLSegmentationStorageNode(), slicer.vtkMRMLStorageNode)
    color = node.GetSegmentation().GetNthSegment(0).GetColor()  # the module's colour for the segment
    assert np.allclose(color, arrays.segment_colors({"metastasis": 1})["metastasis"], atol=1e-3)


def test_the_module_and_the_library_colour_segments_alike():
    """Two tables by necessity (the module runs without the package): they must not drift."""
    from oncolabel.io import SEGMENT_COLOURS, SEGMENT_PALETTE, segment_colour

    assert arrays.KNOWN_COLORS == SEGMENT_COLOURS and arrays.PALETTE == SEGMENT_PALETTE
    names = {"metastasis": 1, "other": 2, "oedema": 3, "Tumour": 4, "x": 12}
    assert arrays.segment_colors(names) == {n: segment_colour(n, v) for n, v in names.items()}


def test_segments_the_server_does_not_know_are_refused(mrml_scene, tmp_path):
    ct, seg, _, _, label_path = ct_with_segmentation(mrml_scene, tmp_path, {"metastasis": 1, "other": 2})
    with pytest.raises(MissingInputError, match="segment 'other' is not a label the server knows"):
        mrml.segmentation_to_label_file(seg, ct, {"metastasis": 1}, str(tmp_path / "x.nii.gz"))
    with pytest.raises(ResultFormatError, match=r"values \[2\]"):
        mrml.segmentation_from_label_file(mrml_scene, label_path, {"metastasis": 1}, name="t")
    with pytest.raises(MissingInputError, match="select the image"):
        mrml.segmentation_to_label_file(seg, None, {"metastasis": 1, "other": 2}, str(tmp_path / "y.nii.gz"))


def test_tumour_segment_becomes_a_binary_mask_on_the_ct_grid(mrml_scene, tmp_path):
    ct, seg, lab, ct_image, _ = ct_with_segmentation(mrml_scene, tmp_path, {"tumour": 1, "node": 2, "cyst": 3})
    ids = {seg.GetSegmentation().GetNthSegment(i).GetName(): seg.GetSegmentation().GetNthSegmentID(i)
           for i in range(3)}
    mask = sitk.ReadImage(mrml.segment_mask_file(seg, ids["node"], ct, str(tmp_path / "mask.nii.gz")))
    assert np.array_equal(sitk.GetArrayFromImage(mask), (lab == 2).astype(np.uint8))
    assert mask.GetSize() == ct_image.GetSize()
    with pytest.raises(MissingInputError, match="empty"):
        mrml.segment_mask_file(seg, ids["cyst"], ct, str(tmp_path / "empty.nii.gz"))
    with pytest.raises(MissingInputError, match="pick the tumour segment"):
        mrml.segment_mask_file(seg, "", ct, str(tmp_path / "none.nii.gz"))


def test_segment_volume_matches_the_voxel_count(mrml_scene, tmp_path):
    """What Segment Statistics would measure: the segment's voxels on the reference grid times the voxel volume."""
    slicer = slicer_core()
    ct, seg, lab, image, _ = ct_with_segmentation(mrml_scene, tmp_path, {"metastasis": 1, "other": 2})
    segment_id = seg.GetSegmentation().GetSegmentIdBySegmentName("metastasis")
    mask_path = mrml.segment_mask_file(seg, segment_id, ct, str(tmp_path / "m.nii.gz"))
    voxels = int(sitk.GetArrayFromImage(sitk.ReadImage(mask_path)).sum())
    ml = voxels * float(np.prod(image.GetSpacing())) / 1000.0
    assert voxels == int((lab == 1).sum())
    assert ml == pytest.approx(float((lab == 1).sum()) * 0.8 * 0.9 * 2.5 / 1000.0)
    assert slicer.util.arrayFromVolume(ct).shape == lab.shape


def test_heat_map_keeps_its_own_geometry_and_probability_window(mrml_scene, tmp_path):
    slicer = slicer_core()
    shape = (6, 20, 24)
    ct_path, _ = write(tmp_path, "ct.nii.gz", np.zeros(shape, np.int16))
    ct = mrml.load_volume(mrml_scene, ct_path, "ct")
    same_path, _ = write(tmp_path, "heat.nii.gz", np.random.default_rng(0).random(shape).astype(np.float32))
    same = mrml.heatmap_volume(mrml_scene, same_path, "heat", attributes={"Task": "renal_mass"})
    assert mrml.same_geometry(same, ct)
    display = same.GetDisplayNode()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, 1.0)
    assert not display.GetAutoWindowLevel()
    # a coarser heat map (e.g. Grad-CAM at half resolution) covering the same box: placed by its own geometry
    fine = sitk.ReadImage(ct_path)
    shift = np.array(fine.GetDirection()).reshape(3, 3) @ (np.array([1.6, 1.8, 5.0]) - fine.GetSpacing()) / 2
    coarse_path, coarse = write(tmp_path, "coarse.nii.gz", np.full((3, 10, 12), 0.5, np.float32),
                                spacing=(1.6, 1.8, 5.0), origin=tuple(np.array(fine.GetOrigin()) + shift))
    node = mrml.heatmap_volume(mrml_scene, coarse_path, "coarse")
    assert not mrml.same_geometry(node, ct)
    assert np.allclose(ijk_to_ras(node), sitk_ijk_to_ras(coarse), atol=1e-4)
    bounds_ct, bounds_heat = [0.0] * 6, [0.0] * 6
    ct.GetRASBounds(bounds_ct)
    node.GetRASBounds(bounds_heat)
    assert np.allclose(bounds_ct, bounds_heat, atol=1e-3)  # the same physical box in the slice views
    assert slicer.util.arrayFromVolume(node).mean() == pytest.approx(0.5)


def test_overlay_opacity_and_hide_in_every_slice_view(mrml_scene, tmp_path):
    slicer = slicer_core()
    views = []
    for name in ("Red", "Yellow", "Green"):
        composite = slicer.vtkMRMLSliceCompositeNode()
        composite.SetName(name)
        mrml_scene.AddNode(composite)
        views.append(composite)
    ct = mrml.load_volume(mrml_scene, write(tmp_path, "ct.nii.gz", np.zeros((4, 5, 6), np.int16))[0], "ct")
    heat = mrml.heatmap_volume(mrml_scene, write(tmp_path, "h.nii.gz", np.zeros((4, 5, 6), np.float32))[0], "h")
    assert mrml.show_overlay(mrml_scene, ct, heat, opacity=0.35) == 3
    for view in views:
        assert (view.GetBackgroundVolumeID(), view.GetForegroundVolumeID()) == (ct.GetID(), heat.GetID())
        assert view.GetForegroundOpacity() == pytest.approx(0.35)
    mrml.show_overlay(mrml_scene, None, heat, opacity=0.35, visible=False)
    assert all(v.GetForegroundOpacity() == 0.0 and v.GetBackgroundVolumeID() == ct.GetID() for v in views)


def test_result_tables_become_typed_table_nodes(mrml_scene):
    result = protocol.ClassificationResult("renal_mass", {"benign": 0.3, "malignant": 0.7}, "malignant", "r1", None,
                                           protocol.RESEARCH_USE_ONLY)
    node = mrml.table_node(mrml_scene, tables.classification_table(result), "OncoLabel results")
    table = node.GetTable()
    assert (node.GetNumberOfRows(), node.GetNumberOfColumns()) == (2, 3)
    assert [table.GetColumn(i).GetName() for i in range(3)] == ["Class", "Probability", "Predicted"]
    assert table.GetColumn(1).GetClassName() == "vtkDoubleArray"
    assert (node.GetCellText(0, 0), table.GetValue(0, 1).ToDouble(), node.GetCellText(0, 2)) == ("malignant", 0.7, "yes")
    assert "renal_mass" in node.GetAttribute("OncoLabel.Title")
    lesions = protocol.SegmentationResult("bone_metastasis", "x", {"metastasis": 1}, "v",
                                          [{"id": 1, "volume_ml": 1.5, "diameter_mm": 14.2, "slices": [3, 7]}], 1.5,
                                          "n")
    again = mrml.table_node(mrml_scene, tables.lesion_table(lesions), "OncoLabel results", node)
    assert again is node and node.GetNumberOfColumns() == 5 and node.GetCellText(0, 4) == "7"
    assert node.GetTable().GetColumn(0).GetClassName() == "vtkIntArray"
