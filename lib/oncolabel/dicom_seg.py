"""Label images as DICOM SEG objects (highdicom) that reference the CT series they were made on.

A label made by OncoLabel on a DICOM series lies on the grid :func:`oncolabel.io.read_image` built from it (slices
sorted along their normal). :func:`segmentation_frames` finds, for each instance of the series, the label's slice
under it (by its position: no assumption about file order) and refuses a label on any other grid;
:func:`segmentation_dataset` wraps those frames in a BINARY DICOM SEG with one segment per label value and the
algorithm identified. Used by ``oncolabel infer ... OUTPUT.dcm`` and to send labels back to a PACS
(:mod:`oncolabel.pacs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from oncolabel.errors import GeometryError, ImageReadError, InvalidInputError

__all__ = ["segmentation_dataset", "segmentation_frames", "series_headers"]


def series_headers(folder: str | Path) -> list[Any]:
    """The headers (pydicom datasets without pixel data) of the instances of the one DICOM image series in
    ``folder``, the same files :func:`oncolabel.io.read_image` reads there."""
    import pydicom

    from oncolabel.io import dicom_series_files

    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"{folder}: not a folder of DICOM files")
    return [pydicom.dcmread(f, stop_before_pixels=True) for f in dicom_series_files(folder)]


def segmentation_frames(label: sitk.Image, headers: Sequence[Any]) -> np.ndarray:
    """The slice of ``label`` under each single-frame instance of ``headers``, in their order: ``(n, rows,
    columns)``. The label must lie on the series' grid (as :func:`oncolabel.io.read_image` builds it): same
    orientation, pixel spacing and matrix, and each instance's position on one of its slices.

    Raises:
        GeometryError: the label is on another grid (an instance falls between slices or outside it).
        InvalidInputError: multi-frame or unplaced instances.
    """
    if not headers:
        raise InvalidInputError("the series has no instance")
    if any(int(h.get("NumberOfFrames", 1) or 1) > 1 for h in headers):
        raise InvalidInputError("the series is a multi-frame file: a DICOM SEG is made only for a series of "
                                "single-frame slices (write a .nii.gz or .nrrd label instead)")
    if label.GetDimension() != 3:
        raise InvalidInputError(f"the label is {label.GetDimension()}D; a 3D label is required")
    direction = np.asarray(label.GetDirection(), dtype=float).reshape(3, 3)
    spacing, origin = np.asarray(label.GetSpacing(), float), np.asarray(label.GetOrigin(), float)
    size = label.GetSize()
    arr = sitk.GetArrayViewFromImage(label)
    out = np.zeros((len(headers), size[1], size[0]), dtype=np.uint8)
    for i, h in enumerate(headers):
        if "ImagePositionPatient" not in h or "ImageOrientationPatient" not in h or "PixelSpacing" not in h:
            raise InvalidInputError(f"instance {i + 1} of the series has no position, orientation or pixel spacing")
        rows = np.asarray([float(v) for v in h.ImageOrientationPatient]).reshape(2, 3)
        dy, dx = (float(v) for v in h.PixelSpacing)
        index = direction.T @ (np.asarray([float(v) for v in h.ImagePositionPatient]) - origin) / spacing
        k = int(round(index[2]))
        if (np.abs(rows - direction[:, :2].T).max() > 1e-4 or abs(dx - spacing[0]) > 1e-3 * dx
                or abs(dy - spacing[1]) > 1e-3 * dy or (int(h.Rows), int(h.Columns)) != (size[1], size[0])
                or np.abs(index[:2]).max() > 0.01 or abs(index[2] - k) > 0.01 or not 0 <= k < size[2]):
            raise GeometryError(f"the label does not lie on the series' grid (instance {i + 1}: index "
                                f"{np.round(index, 2).tolist()} of a {list(size)} label); send labels made on the "
                                "image imported from this series")
        out[i] = arr[k]
    return out


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
            return hd.seg.Segmentation(
                source_images=sources, pixel_array=remapped, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9001,
                sop_instance_uid=hd.UID(), instance_number=1, manufacturer="OncoLabel", omit_empty_frames=bool(values),
                manufacturer_model_name=algorithm[:64], software_versions=__version__, device_serial_number="none",
                series_description=(description or f"{algorithm}, research use only")[:64])
    except (ValueError, TypeError, AttributeError, KeyError) as exc:  # highdicom names what the headers lack
        raise InvalidInputError(f"cannot make a DICOM SEG referencing this series: {exc}") from exc
