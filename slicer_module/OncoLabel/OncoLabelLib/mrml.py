"""Conversions between server files and MRML nodes: label map <-> segmentation, heat map -> volume, table -> table.

Uses only MRML classes and ``slicer.util`` array helpers that both 3D Slicer and PyPI ``slicer-core`` provide, so
the same code runs in the module and in the tests. ``slicer`` and ``vtk`` are imported inside the functions: the
rest of ``OncoLabelLib`` stays importable without them. Every function takes the scene (or a node in it)
explicitly; in Slicer that is ``slicer.mrmlScene``. Call these on the GUI thread only.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence, Tuple

from OncoLabelLib import arrays
from OncoLabelLib.errors import MissingInputError, ResultFormatError
from OncoLabelLib.tables import DOUBLE, INT, Table

__all__ = ["load_volume", "write_volume", "same_geometry", "segmentation_from_label_file",
           "segmentation_to_label_file", "segment_mask_file", "heatmap_volume", "show_overlay", "table_node",
           "ATTRIBUTE_PREFIX"]

ATTRIBUTE_PREFIX = "OncoLabel."
HEATMAP_COLORS = ("Inferno", "ColdToHotRainbow", "Rainbow")


def _slicer() -> Any:
    import slicer  # noqa: PLC0415 -- Slicer, or PyPI slicer-core outside Slicer

    return slicer


def _vtk() -> Any:
    import vtk  # noqa: PLC0415

    return vtk


def _set_attributes(node: Any, attributes: Optional[Mapping[str, Any]]) -> None:
    for key, value in (attributes or {}).items():
        node.SetAttribute(ATTRIBUTE_PREFIX + key, str(value))


def _remove(scene: Any, *nodes: Any) -> None:
    for node in nodes:
        if node is not None and node.GetScene() is not None:
            for i in range(node.GetNumberOfDisplayNodes() if hasattr(node, "GetNumberOfDisplayNodes") else 0):
                display = node.GetNthDisplayNode(i)
                if display is not None:
                    scene.RemoveNode(display)
            storage = node.GetStorageNode() if hasattr(node, "GetStorageNode") else None
            if storage is not None:
                scene.RemoveNode(storage)
            scene.RemoveNode(node)


# --- volumes ----------------------------------------------------------------------------------------------------
def load_volume(scene: Any, path: str, name: Optional[str] = None, *, labelmap: bool = False,
                attributes: Optional[Mapping[str, Any]] = None) -> Any:
    """Read an image file (NIfTI, NRRD, ...) into a new scalar (or label map) volume node.

    The file's LPS geometry becomes the node's RAS geometry exactly as Slicer's own loader does it.
    """
    slicer = _slicer()
    node = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
    node.SetName(name or os.path.basename(path).split(".")[0])
    scene.AddNode(node)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(path)
    if not storage.ReadData(node):
        scene.RemoveNode(storage)
        scene.RemoveNode(node)
        raise ResultFormatError(f"Slicer cannot read the image {os.path.basename(path)}: the file is damaged or "
                                "in an unsupported format")
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not labelmap:
        node.CreateDefaultDisplayNodes()
    _set_attributes(node, attributes)
    return node


def write_volume(node: Any, path: str, *, compress: bool = False) -> str:
    """Write a volume node (scalar, label map or vector) to ``path``; uncompressed NRRD is the fastest upload."""
    storage = node.CreateDefaultStorageNode()
    storage.SetFileName(path)
    storage.SetUseCompression(1 if compress else 0)
    if not storage.WriteData(node):
        raise OSError(f"could not write {node.GetName()} to {path}")
    return path


def _geometry(node: Any) -> Tuple[Tuple[int, ...], Any]:
    import numpy as np  # noqa: PLC0415

    vtk = _vtk()
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    dims = tuple(node.GetImageData().GetDimensions()) if node.GetImageData() is not None else ()
    return dims, np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def same_geometry(a: Any, b: Any, tolerance: float = 1e-4) -> bool:
    """Whether two volume nodes share one voxel grid (dimensions and IJK-to-RAS)."""
    import numpy as np  # noqa: PLC0415

    (dims_a, m_a), (dims_b, m_b) = _geometry(a), _geometry(b)
    return dims_a == dims_b and bool(np.allclose(m_a, m_b, atol=tolerance))


# --- segmentations ----------------------------------------------------------------------------------------------
def _color_table(scene: Any, label_names: Mapping[str, int], colors: Mapping[str, Tuple[float, float, float]]) -> Any:
    slicer = _slicer()
    table = slicer.vtkMRMLColorTableNode()
    table.SetTypeToUser()
    table.SetNumberOfColors(max(label_names.values()) + 1)
    table.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
    for name, value in label_names.items():
        r, g, b = colors[name]
        table.SetColor(int(value), name, r, g, b, 1.0)
    table.SetHideFromEditors(True)
    scene.AddNode(table)
    return table


def segmentation_from_label_file(scene: Any, label_path: str, label_names: Mapping[str, int], *, name: str,
                                 reference_volume: Any = None,
                                 attributes: Optional[Mapping[str, Any]] = None) -> Any:
    """A segmentation node from a server label image: one named, coloured segment per label.

    Labels the image does not contain (e.g. no lesion found) still get an empty segment, ready to paint in
    Segment Editor. With ``reference_volume`` the segmentation uses that volume's geometry.
    """
    slicer = _slicer()
    label_names = {str(k): int(v) for k, v in label_names.items() if int(v) != 0}
    labelmap = load_volume(scene, label_path, f"{name} labels", labelmap=True)
    table = None
    try:
        arrays.check_label_values(slicer.util.arrayFromVolume(labelmap), label_names.values(), name)
        colors = arrays.segment_colors(label_names)
        table = _color_table(scene, label_names, colors)
        display = slicer.vtkMRMLLabelMapVolumeDisplayNode()
        scene.AddNode(display)
        display.SetAndObserveColorNodeID(table.GetID())
        labelmap.SetAndObserveDisplayNodeID(display.GetID())
        node = slicer.vtkMRMLSegmentationNode()
        node.SetName(name)
        scene.AddNode(node)
        node.CreateDefaultDisplayNodes()
        if reference_volume is not None:
            node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node):
            raise ResultFormatError(f"Slicer could not turn the {name} label image into segments")
        segmentation = node.GetSegmentation()
        present = {segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())}
        for label, value in sorted(label_names.items(), key=lambda kv: kv[1]):
            if label not in present:
                segmentation.AddEmptySegment(label, label, list(colors[label]))
        for i in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(i)
            if segment.GetName() in colors:
                segment.SetColor(*colors[segment.GetName()])
        _set_attributes(node, attributes)
        return node
    finally:
        _remove(scene, labelmap, table)


def _export_labelmap(segmentation_node: Any, values: Mapping[str, int], reference_volume: Any,
                     segment_ids: Sequence[str]) -> Tuple[Any, Any]:
    """A temporary label map node: segment ``name`` painted with ``values[name]`` on the reference grid."""
    slicer, vtk = _slicer(), _vtk()
    scene = segmentation_node.GetScene()
    ids = vtk.vtkStringArray()
    for segment_id in segment_ids:
        ids.InsertNextValue(segment_id)
    colors = {name: (1.0, 1.0, 1.0) for name in values}
    table = _color_table(scene, values, colors)
    labelmap = slicer.vtkMRMLLabelMapVolumeNode()
    scene.AddNode(labelmap)
    ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
        segmentation_node, ids, labelmap, reference_volume, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, table)
    if not ok:
        _remove(scene, labelmap, table)
        raise MissingInputError(f"Slicer could not export {segmentation_node.GetName()} on the grid of "
                                f"{reference_volume.GetName()}")
    return labelmap, table


def segmentation_to_label_file(segmentation_node: Any, reference_volume: Any, label_names: Mapping[str, int],
                               path: str) -> str:
    """Write the segmentation as one label image on the reference volume's grid (segment name -> label value).

    Raises:
        MissingInputError: a segment whose name is not a label of the task (rename or delete it).
    """
    if reference_volume is None:
        raise MissingInputError("select the image the segmentation belongs to")
    segmentation = segmentation_node.GetSegmentation()
    label_names = {str(k): int(v) for k, v in label_names.items() if int(v) != 0}
    segment_ids = []
    for i in range(segmentation.GetNumberOfSegments()):
        name = segmentation.GetNthSegment(i).GetName()
        if name not in label_names:
            raise MissingInputError(f"segment '{name}' is not a label the server knows "
                                    f"({', '.join(label_names)}): rename it or delete it")
        segment_ids.append(segmentation.GetNthSegmentID(i))
    labelmap, table = _export_labelmap(segmentation_node, label_names, reference_volume, segment_ids)
    try:
        return write_volume(labelmap, path, compress=True)
    finally:
        _remove(segmentation_node.GetScene(), labelmap, table)


def segment_mask_file(segmentation_node: Any, segment_id: str, reference_volume: Any, path: str) -> str:
    """Write one segment as a binary mask (0/1) on the reference volume's grid (the tumour mask of a score)."""
    slicer = _slicer()
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id) if segment_id else None
    if segment is None:
        raise MissingInputError("pick the tumour segment")
    labelmap, table = _export_labelmap(segmentation_node, {segment.GetName(): 1}, reference_volume, [segment_id])
    try:
        slicer.util.updateVolumeFromArray(labelmap, arrays.binary_mask(slicer.util.arrayFromVolume(labelmap)))
        return write_volume(labelmap, path, compress=True)
    finally:
        _remove(segmentation_node.GetScene(), labelmap, table)


# --- heat maps and overlays ---------------------------------------------------------------------------------------
def heatmap_volume(scene: Any, path: str, name: str, *, attributes: Optional[Mapping[str, Any]] = None) -> Any:
    """A scalar volume from a heat-map file, on the file's own geometry, windowed for probabilities."""
    slicer = _slicer()
    node = load_volume(scene, path, name, attributes=attributes)
    lo, hi = arrays.display_window(slicer.util.arrayFromVolume(node))
    display = node.GetDisplayNode()
    if display is not None:
        display.SetAutoWindowLevel(0)
        display.SetWindowLevelMinMax(lo, hi)
        for color_name in HEATMAP_COLORS:
            color = scene.GetFirstNodeByName(color_name)
            if color is not None and color.IsA("vtkMRMLColorNode"):
                display.SetAndObserveColorNodeID(color.GetID())
                break
    return node


def show_overlay(scene: Any, background: Any, foreground: Any, *, opacity: float, visible: bool = True) -> int:
    """Show ``foreground`` (a heat map) over ``background`` in every slice view; returns the views updated."""
    nodes = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    count = 0
    for i in range(nodes.GetNumberOfItems()):
        composite = nodes.GetItemAsObject(i)
        if background is not None:
            composite.SetBackgroundVolumeID(background.GetID())
        composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
        composite.SetForegroundOpacity(float(opacity) if visible else 0.0)
        count += 1
    return count


# --- tables -------------------------------------------------------------------------------------------------------
def table_node(scene: Any, table: Table, name: str, node: Any = None) -> Any:
    """A table node holding ``table`` (typed columns); fills ``node`` instead of a new one when given."""
    slicer, vtk = _slicer(), _vtk()
    if node is None:
        node = slicer.vtkMRMLTableNode()
        scene.AddNode(node)
    node.SetName(name)
    node.RemoveAllColumns()
    array_types = {DOUBLE: vtk.vtkDoubleArray, INT: vtk.vtkIntArray}
    for index, column in enumerate(table.columns):
        array = array_types.get(column.kind, vtk.vtkStringArray)()
        array.SetName(column.name)
        for row in table.rows:
            value = row[index]
            array.InsertNextValue(str(value) if column.kind not in array_types else value)
        node.AddColumn(array)
    node.SetUseColumnNameAsColumnHeader(True)
    node.SetAttribute(ATTRIBUTE_PREFIX + "Title", table.title)
    return node
