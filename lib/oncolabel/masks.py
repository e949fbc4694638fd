"""Tumour masks from the files clinics keep them in, placed on their CT's grid.

* a label image (NIfTI, NRRD, a 3D Slicer ``.seg.nrrd``, possibly cropped to its segments):
  :func:`oncolabel.io.mask_on_grid`;
* a DICOM RT Structure Set (RTSTRUCT: the contours of radiotherapy planning, e.g. the GTV): the chosen structure's
  closed planar contours filled on the CT slice each lies on (a pixel belongs to the structure when its centre lies
  inside the contour; a contour inside another on one slice is a hole: even-odd rule, as planning systems draw
  them). A contour that does not lie on one of the CT's slices is refused, not interpolated;
* a DICOM SEG (a PACS viewer's annotation): the chosen segment, each frame placed by its plane position
  (:func:`oncolabel.dicom_seg.label_from_segmentation`).

The structure or segment is chosen by name (``roi``, case-insensitive), else the only one, else the only one whose
name starts with "GTV"; otherwise the file is refused listing the names. The result is 1 inside, 0 outside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from oncolabel.errors import GeometryError, ImageReadError, InvalidInputError

__all__ = ["ReadMask", "dicom_object_modality", "read_mask", "rtstruct_mask", "rtstruct_names"]


@dataclass(frozen=True)
class ReadMask:
    """A mask on its CT's grid and where it came from: ``source`` ("label image", "RTSTRUCT" or "DICOM SEG") and
    ``structure`` (the structure's or segment's name; None for a label image)."""

    mask: sitk.Image
    source: str
    structure: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "structure": self.structure}


def dicom_object_modality(path: str | Path) -> str | None:
    """The Modality of a single DICOM file (``RTSTRUCT``, ``SEG``, ``CT`` ...), or None for anything else (a folder,
    a NIfTI file, an unreadable file)."""
    from oncolabel.io import dicom_header

    header = dicom_header(path) if Path(path).is_file() else None
    return str(header.get("Modality", "") or "") if header is not None else None


def _choose(names: dict[int, str], roi: str | None, *, what: str) -> int:
    """The number of the structure/segment named ``roi`` (else the only one, else the only GTV)."""
    if not names:
        raise InvalidInputError(f"{what} holds no structure")
    listed = ", ".join(repr(n) for n in names.values())
    if roi is not None:
        hits = [k for k, n in names.items() if n.strip().lower() == roi.strip().lower()]
        if len(hits) != 1:
            raise InvalidInputError(f"{what} holds {'no' if not hits else 'several'} structure(s) named {roi!r} "
                                    f"(it holds {listed})")
        return hits[0]
    if len(names) == 1:
        return next(iter(names))
    gtv = [k for k, n in names.items() if n.strip().upper().startswith("GTV")]
    if len(gtv) == 1:
        return gtv[0]
    raise InvalidInputError(f"{what} holds {len(names)} structures ({listed}): name the tumour's with --roi")


def rtstruct_names(ds: Any) -> dict[int, str]:
    """ROI number -> name of an RTSTRUCT dataset's structures."""
    return {int(r.ROINumber): str(r.get("ROIName", "") or f"ROI {r.ROINumber}")
            for r in ds.get("StructureSetROISequence", [])}


def _inside(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels of a ``shape`` (rows, columns) slice whose centres lie inside ``polygon`` ((x, y) = (column, row)
    continuous indices, closed), by the even-odd rule: row by row, a pixel is inside when an odd number of the
    polygon's edges cross the row to its right (so the work grows with rows x edges, not pixels x edges)."""
    out = np.zeros(shape, dtype=bool)
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, 1), np.roll(y1, 1)
    slanted = y1 != y2
    x1, y1, x2, y2 = x1[slanted], y1[slanted], x2[slanted], y2[slanted]
    rows = np.arange(max(int(np.floor(polygon[:, 1].min())), 0), min(int(np.ceil(polygon[:, 1].max())) + 1, shape[0]))
    for r in rows:
        crossing = (y1 > r) != (y2 > r)
        xs = np.sort(x1[crossing] + (r - y1[crossing]) * (x2[crossing] - x1[crossing]) / (y2[crossing] - y1[crossing]))
        for start, stop in zip(xs[0::2], xs[1::2]):  # columns c with start <= c < stop
            lo, hi = max(int(np.ceil(start)), 0), min(int(np.ceil(stop)), shape[1])
            if hi > lo:
                out[r, lo:hi] = True
    return out


def rtstruct_mask(ds: Any, reference: sitk.Image, *, roi: str | None = None, what: str = "the RTSTRUCT",
                  tolerance: float = 0.1) -> ReadMask:
    """The chosen structure of an RTSTRUCT dataset filled on ``reference``'s grid (module docstring).

    Args:
        ds: the RTSTRUCT (pydicom dataset).
        reference: the CT the contours were drawn on.
        roi: the structure's name (default: the only one, or the only GTV).
        tolerance: how far (in slices) a contour may lie from a CT slice, and its points from one plane.

    Raises:
        InvalidInputError: no such structure, a structure without closed contours, or one that fills nothing.
        GeometryError: a contour not on one of the CT's slices (another series, orientation or slice spacing), or
            outside the CT.
    """
    names = rtstruct_names(ds)
    number = _choose(names, roi, what=what)
    name = names[number]
    contours = [c for rc in ds.get("ROIContourSequence", []) if int(rc.get("ReferencedROINumber", -1)) == number
                for c in rc.get("ContourSequence", [])]
    closed = [c for c in contours if str(c.get("ContourGeometricType", "")).upper() == "CLOSED_PLANAR"]
    if not closed:
        raise InvalidInputError(f"{what}: structure {name!r} has no closed planar contour"
                                + (f" (only {len(contours)} point or open contour(s))" if contours else ""))
    size = reference.GetSize()
    to_index = np.linalg.inv(np.asarray(reference.GetDirection(), dtype=float).reshape(3, 3)
                             @ np.diag(reference.GetSpacing()))
    origin = np.asarray(reference.GetOrigin(), dtype=float)
    arr = np.zeros(size[::-1], dtype=bool)
    for n, contour in enumerate(closed, 1):
        points = np.asarray([float(v) for v in contour.ContourData], dtype=float).reshape(-1, 3)
        index = (points - origin) @ to_index.T  # continuous (x, y, z) voxel indices
        k = float(np.median(index[:, 2]))
        if np.ptp(index[:, 2]) > 2 * tolerance or abs(k - round(k)) > tolerance:
            raise GeometryError(f"{what}: contour {n} of {name!r} does not lie on one of the CT's slices (slice index "
                                f"{index[:, 2].min():.2f}-{index[:, 2].max():.2f}): drawn on another series, "
                                "orientation or slice spacing")
        if not 0 <= round(k) < size[2]:
            raise GeometryError(f"{what}: contour {n} of {name!r} lies outside the CT (slice {round(k)} of "
                                f"{size[2]})")
        arr[round(k)] ^= _inside(index[:, :2], (size[1], size[0]))
    if not arr.any():
        raise InvalidInputError(f"{what}: structure {name!r} covers no voxel centre of the CT")
    mask = sitk.GetImageFromArray(arr.astype(np.uint8))
    mask.CopyInformation(reference)
    return ReadMask(mask, "RTSTRUCT", name)


def _seg_mask(ds: Any, reference: sitk.Image, *, roi: str | None, what: str,
              headers: list[Any] | None) -> ReadMask:
    from oncolabel.dicom_seg import label_from_segmentation

    names = {int(s.SegmentNumber): str(s.get("SegmentLabel", "") or f"segment {s.SegmentNumber}")
             for s in ds.get("SegmentSequence", [])}
    number = _choose(names, roi, what=what)
    label = label_from_segmentation(ds, headers or [], reference)
    arr = sitk.GetArrayViewFromImage(label) == number
    if not arr.any():
        raise InvalidInputError(f"{what}: segment {names[number]!r} is empty")
    mask = sitk.GetImageFromArray(arr.astype(np.uint8))
    mask.CopyInformation(reference)
    return ReadMask(mask, "DICOM SEG", names[number])


def _structure_file_of(path: Path) -> Path:
    """A folder holding one RTSTRUCT or DICOM SEG file and no image slices (a PACS export gives each series, the
    structure set's too, a folder of its own) stands for that file; anything else is returned as given."""
    if not path.is_dir():
        return path
    files = [f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")]
    kinds = {f: dicom_object_modality(f) for f in files}
    objects = [f for f, m in kinds.items() if m in ("RTSTRUCT", "SEG")]
    if len(objects) == 1 and not any(m for f, m in kinds.items() if m not in (None, "RTSTRUCT", "SEG")):
        return objects[0]
    return path


def read_mask(path: str | Path, reference: sitk.Image, *, roi: str | None = None,
              reference_headers: list[Any] | None = None, what: str = "mask") -> ReadMask:
    """A mask file of any of the module docstring's kinds on ``reference``'s grid.

    Args:
        path: the mask file (or a folder holding only one RTSTRUCT or DICOM SEG file).
        reference: the CT it belongs to.
        roi: the structure (RTSTRUCT) or segment (DICOM SEG) to read; refused for a label image.
        reference_headers: the CT series' DICOM headers when it was read from DICOM: an RTSTRUCT or SEG of another
            frame of reference (another patient position, another scan) is then refused.
        what: how messages name the mask.

    Raises:
        ImageReadError, GeometryError, InvalidInputError: unreadable file, no or ambiguous structure, another grid.
    """
    p = _structure_file_of(Path(path))
    modality = dicom_object_modality(p)
    if modality in ("RTSTRUCT", "SEG"):
        import pydicom

        try:
            ds = pydicom.dcmread(p)
        except Exception as exc:  # pydicom raises several types for a damaged file
            raise ImageReadError(f"{p}: cannot read the {modality} ({exc})") from exc
        label = f"{what} {p.name} ({modality})"
        frame = str(reference_headers[0].get("FrameOfReferenceUID", "")) if reference_headers else ""
        theirs = ({str(f.FrameOfReferenceUID) for f in ds.get("ReferencedFrameOfReferenceSequence", [])}
                  if modality == "RTSTRUCT" else {str(ds.get("FrameOfReferenceUID", ""))})
        if frame and theirs - {""} and frame not in theirs:
            raise InvalidInputError(f"{label} lies in another frame of reference than the CT ({sorted(theirs)[0]} "
                                    f"vs {frame}): drawn on another scan")
        if modality == "RTSTRUCT":
            return rtstruct_mask(ds, reference, roi=roi, what=label)
        return _seg_mask(ds, reference, roi=roi, what=label, headers=reference_headers)
    if roi is not None:
        raise InvalidInputError(f"--roi {roi!r} names a structure of an RTSTRUCT or DICOM SEG; {what} {p.name} is a "
                                "label image")
    from oncolabel.io import mask_on_grid, read_image

    return ReadMask(mask_on_grid(reference, read_image(p), what=what), "label image")
