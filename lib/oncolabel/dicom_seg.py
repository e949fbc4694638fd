"""Label images as DICOM SEG objects (highdicom) that reference the CT series they were made on.

A label made by OncoLabel on a DICOM series lies on the grid :func:`oncolabel.io.read_image` built from it (slices
sorted along their normal). :func:`segmentation_frames` finds, for each instance of the series, the label's slice
under it (by its position: no assumption about file order) and refuses a label on any other grid;
:func:`segmentation_dataset` wraps those frames in a BINARY DICOM SEG with one segment per label value and the
algorithm identified. :func:`label_from_segmentation` reads a BINARY SEG (a reader's annotation in a PACS viewer)
back as a label image on the series' volume, each frame placed by its own plane position. Used by ``oncolabel
infer ... OUTPUT.dcm`` and by :mod:`oncolabel.pacs` (labels sent back, annotations imported).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from oncolabel.errors import GeometryError, ImageReadError, InvalidInputError

__all__ = ["label_from_segmentation", "segmentation_dataset", "segmentation_frames", "series_headers"]


def series_headers(folder: str | Path) -> list[Any]:
    """The headers (pydicom datasets without pixel data) of the instances of the one DICOM image series in
    ``folder``, the same files :func:`oncolabel.io.read_image` reads there."""
    import pydicom

    from oncolabel.io import dicom_series_files

    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"{folder}: not a folder of DICOM files")
    return [pydicom.dcmread(f, stop_before_pixels=True) for f in dicom_series_files(folder)]


def _grid(image: sitk.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]]:
    return (np.asarray(image.GetDirection(), dtype=float).reshape(3, 3), np.asarray(image.GetSpacing(), float),
            np.asarray(image.GetOrigin(), float), image.GetSize())


def _slice_on_grid(grid: tuple, position: Sequence[Any], orientation: Sequence[Any], pixel_spacing: Sequence[Any],
                   matrix: tuple[int, int]) -> tuple[int | None, np.ndarray]:
    """The slice of ``grid`` (:func:`_grid`) a DICOM plane lies on (``None`` when it lies on none: another
    orientation, pixel spacing or matrix, or between or outside its slices), and the plane's continuous index."""
    direction, spacing, origin, size = grid
    rows = np.asarray([float(v) for v in orientation]).reshape(2, 3)
    dy, dx = (float(v) for v in pixel_spacing)
    index = direction.T @ (np.asarray([float(v) for v in position]) - origin) / spacing
    k = int(round(index[2]))
    on_grid = (np.abs(rows - direction[:, :2].T).max() <= 1e-4 and abs(dx - spacing[0]) <= 1e-3 * dx
               and abs(dy - spacing[1]) <= 1e-3 * dy and tuple(matrix) == (size[1], size[0])
               and np.abs(index[:2]).max() <= 0.01 and abs(index[2] - k) <= 0.01 and 0 <= k < size[2])
    return (k if on_grid else None), index


def _source_planes(headers: Sequence[Any]) -> list[tuple[str, Any, Any, Any, tuple[int, int]]]:
    """(name, position, orientation, pixel spacing, matrix) of each source frame, in the order a SEG's frames
    follow them: each single-frame instance, or each frame of one multi-frame instance (from its functional
    groups)."""
    from oncolabel.io import frame_planes

    if not headers:
        raise InvalidInputError("the series has no instance")
    multi = [h for h in headers if int(h.get("NumberOfFrames", 1) or 1) > 1]
    if multi and len(headers) > 1:
        raise InvalidInputError(f"the series mixes {len(multi)} multi-frame file(s) with other instances; one "
                                "multi-frame file or single-frame slices are supported")
    if multi:
        h = multi[0]
        return [(f"frame {f + 1}", *plane, (int(h.Rows), int(h.Columns)))
                for f, plane in enumerate(frame_planes(h, where="the multi-frame series"))]
    out = []
    for i, h in enumerate(headers):
        if "ImagePositionPatient" not in h or "ImageOrientationPatient" not in h or "PixelSpacing" not in h:
            raise InvalidInputError(f"instance {i + 1} of the series has no position, orientation or pixel spacing")
        out.append((f"instance {i + 1}", h.ImagePositionPatient, h.ImageOrientationPatient, h.PixelSpacing,
                    (int(h.Rows), int(h.Columns))))
    return out


def _instance_slices(image: sitk.Image, headers: Sequence[Any], *, what: str) -> list[int]:
    """For each source frame of ``headers`` (:func:`_source_planes`), the index of the slice of ``image`` it lies
    on. ``image`` must be on the series' grid (as :func:`oncolabel.io.read_image` builds it): same orientation,
    pixel spacing and matrix, and each frame's position on one of its slices."""
    planes = _source_planes(headers)
    if image.GetDimension() != 3:
        raise InvalidInputError(f"the {what} is {image.GetDimension()}D; a 3D {what} is required")
    grid = _grid(image)
    out = []
    for name, position, orientation, pixel_spacing, matrix in planes:
        k, index = _slice_on_grid(grid, position, orientation, pixel_spacing, matrix)
        if k is None:
            raise GeometryError(f"the {what} does not lie on the series' grid ({name}: index "
                                f"{np.round(index, 2).tolist()} of a {list(grid[3])} {what}); use the image read or "
                                "imported from this series")
        out.append(k)
    return out


def segmentation_frames(label: sitk.Image, headers: Sequence[Any]) -> np.ndarray:
    """The slice of ``label`` under each source frame of ``headers`` (each single-frame instance, or each frame of
    one multi-frame instance), in their order: ``(n, rows, columns)``.

    Raises:
        GeometryError: the label is on another grid than the series' (an instance falls between slices or outside).
        InvalidInputError: unplaced frames, or a multi-frame file mixed with other instances.
    """
    slices = _instance_slices(label, headers, what="label")
    arr = sitk.GetArrayViewFromImage(label)
    return np.stack([np.asarray(arr[k], dtype=np.uint8) for k in slices])


def label_from_segmentation(seg: Any, headers: Sequence[Any], reference: sitk.Image) -> sitk.Image:
    """A BINARY DICOM SEG ``seg`` (a pydicom dataset) of the series ``headers`` as a label image on ``reference``
    (the series' volume as :func:`oncolabel.io.read_image` builds it): segment numbers as label values, 0 where no
    segment is. Each frame is placed by its own plane position (never by frame order), and must lie on one of the
    reference's slices with its orientation and pixel spacing: a SEG drawn on another grid is refused, not resampled.
    Without ``headers`` (a CT read from a NIfTI file) the series is not checked, only the placement.

    Raises:
        InvalidInputError: not a BINARY SEG of this series (or of its frame of reference), unplaced frames, or
            overlapping segments (no single label value).
        GeometryError: a frame does not lie on the reference grid.
    """
    from pydicom.pixels import pixel_array

    from oncolabel.io import frame_planes, functional_group

    uid = str(seg.get("SeriesInstanceUID", "?"))
    if str(seg.get("Modality", "")) != "SEG":
        raise InvalidInputError(f"{uid}: not a DICOM SEG (modality {seg.get('Modality', '')!r})")
    series_uid = str(headers[0].SeriesInstanceUID) if headers else ""
    referenced = {str(r.SeriesInstanceUID) for r in seg.get("ReferencedSeriesSequence", [])}
    if headers and series_uid not in referenced:
        raise InvalidInputError(f"the DICOM SEG {uid} references series {sorted(referenced)}, not {series_uid}")
    frame_of_reference = str(headers[0].get("FrameOfReferenceUID", "")) if headers else ""
    if frame_of_reference and str(seg.get("FrameOfReferenceUID", frame_of_reference)) != frame_of_reference:
        raise InvalidInputError(f"the DICOM SEG {uid} lies in another frame of reference than its series")
    if str(seg.get("SegmentationType", "")) != "BINARY":
        raise InvalidInputError(f"the DICOM SEG {uid} is {seg.get('SegmentationType', '?')}: only BINARY "
                                "segmentations are read as labels (threshold it first)")
    try:
        frames = np.asarray(pixel_array(seg))
    except Exception as exc:  # pydicom raises several types for undecodable pixel data
        raise InvalidInputError(f"the DICOM SEG {uid}: cannot decode its frames ({exc})") from exc
    n = int(seg.get("NumberOfFrames", 1) or 1)
    frames = frames.reshape(n, int(seg.Rows), int(seg.Columns))
    grid = _grid(reference)
    arr = np.zeros(sitk.GetArrayViewFromImage(reference).shape, dtype=np.uint8)
    planes = frame_planes(seg, where=f"the DICOM SEG {uid}")
    for f, (position, orientation, pixel_spacing) in enumerate(planes):
        ident = functional_group(seg, f, "SegmentIdentificationSequence")
        if ident is None:
            raise InvalidInputError(f"the DICOM SEG {uid}: frame {f + 1} has no segment number")
        k, index = _slice_on_grid(grid, position, orientation, pixel_spacing, (int(seg.Rows), int(seg.Columns)))
        if k is None:
            raise GeometryError(f"the DICOM SEG {uid}: frame {f + 1} does not lie on the series' grid (index "
                                f"{np.round(index, 2).tolist()} of a {list(grid[3])} image)")
        number = int(ident.ReferencedSegmentNumber)
        mask = frames[f] > 0
        clash = mask & (arr[k] != 0) & (arr[k] != number)
        if clash.any():
            raise InvalidInputError(f"the DICOM SEG {uid}: segments {int(arr[k][clash][0])} and {number} overlap on "
                                    f"slice {k} ({int(clash.sum())} pixels); one label image cannot hold both")
        arr[k][mask] = number
    label = sitk.GetImageFromArray(arr)
    label.CopyInformation(reference)
    return label


def segmentation_dataset(label: sitk.Image, headers: Sequence[Any], *, segments: Mapping[int, str], manual: bool,
                         algorithm: str, version: str, description: str = "") -> Any:
    """A DICOM SEG (highdicom, BINARY) of ``label`` referencing the instances ``headers``: one segment per label
    value named by ``segments`` (value -> name; every non-zero value of the label must be named). ``manual``:
    a reader's (corrected) label, SEMIAUTOMATIC; else the algorithm's output, AUTOMATIC."""
    import copy
    import warnings

    import highdicom as hd
    from pydicom.sr.codedict import codes

    from oncolabel import __version__

    frames = segmentation_frames(label, headers)
    values = sorted(int(v) for v in np.unique(frames) if v)
    unnamed = [v for v in values if v not in segments]
    if unnamed:
        raise InvalidInputError(f"label value(s) {unnamed} have no segment name (named: {dict(segments)})")
    numbers = {v: n for n, v in enumerate(sorted(segments), start=1)}
    kind = hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC if manual else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
    ident = hd.AlgorithmIdentificationSequence(name=algorithm, version=version,
                                               family=codes.cid7162.ArtificialIntelligence)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=numbers[v], segment_label=segments[v][:64],
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.NeoplasmMetastatic if "metasta" in segments[v].lower() else
        codes.SCT.Neoplasm, algorithm_type=kind, algorithm_identification=ident) for v in sorted(segments)]
    remapped = np.zeros_like(frames)
    for v, n in numbers.items():
        remapped[frames == v] = n
    sources = []
    for h in headers:
        h = copy.deepcopy(h)  # the caller's headers stay as they are (a shallow copy shares their elements)
        if "SpecificCharacterSet" in h and not h.SpecificCharacterSet:
            del h.SpecificCharacterSet  # an empty value (found in real exports) means the default repertoire
        sources.append(h)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # highdicom on source headers' person names and codes
            seg = hd.seg.Segmentation(
                source_images=sources, pixel_array=remapped, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9001,
                sop_instance_uid=hd.UID(), instance_number=1, manufacturer="OncoLabel", omit_empty_frames=bool(values),
                manufacturer_model_name=algorithm[:64], software_versions=__version__, device_serial_number="none",
                series_description=(description or f"{algorithm}, research use only")[:64])
    except (ValueError, TypeError, AttributeError, KeyError) as exc:  # highdicom names what the headers lack
        raise InvalidInputError(f"cannot make a DICOM SEG referencing this series: {exc}") from exc
    seg.SeriesDate, seg.SeriesTime = seg.ContentDate, seg.ContentTime  # a PACS lists series by them: newest SEG
    return seg
