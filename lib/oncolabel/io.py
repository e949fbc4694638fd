"""Reading and writing medical images with clear errors.

Every reader returns a :class:`SimpleITK.Image` (physical geometry kept: size, spacing, origin, direction);
every writer is atomic (temporary file in the destination folder, then :func:`os.replace`), so a failure
never leaves a half-written file at the destination and never damages a file already there.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from oncolabel.errors import GeometryError, ImageReadError, InvalidInputError

#: file name endings read as single-file images
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: file name endings a label can be written to
LABEL_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd")


def image_suffix(path: str | Path) -> str:
    """The recognised image suffix of ``path`` (``.nii.gz`` counts as one), or ``""``."""
    name = Path(path).name.lower()
    for suffix in sorted(IMAGE_SUFFIXES + LABEL_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return ""


#: DICOM modalities whose objects are not image slices (segmentations, contours, plans, reports, ...): a series of
#: them next to the image series in one folder (a CT exported with its SEG) is not a second candidate volume
NON_IMAGE_MODALITIES = frozenset({"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "SR", "PR", "KO", "REG", "DOC"})


#: Secondary Capture Image Storage (and its multi-frame variants, ``.1`` ...): dose reports, screenshots
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def dicom_header(path: str | Path) -> Any:
    """The header fields that say what a DICOM file is (Modality, ImageType, SOPClassUID, SeriesDescription), or
    None when pydicom cannot read it as a DICOM file (GDCM decides)."""
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[
            "Modality", "ImageType", "SOPClassUID", "SeriesDescription"])
    except Exception:  # unreadable by pydicom
        return None


def not_a_volume(header: Any) -> str:
    """Why a DICOM object is no slice of a volume to read ("" when it may be one): a non-image object (a SEG,
    RTSTRUCT or report exported with the series), a localizer (ImageType LOCALIZER: the scout/topogram every CT
    study holds) or a secondary capture (a dose report, a screenshot). ``header``: a pydicom dataset, or None."""
    if header is None:
        return ""
    modality = str(header.get("Modality", "") or "").upper()
    if modality in NON_IMAGE_MODALITIES:
        return f"{modality} objects"
    image_type = header.get("ImageType") or []
    if "LOCALIZER" in ([str(image_type)] if isinstance(image_type, str) else [str(v) for v in image_type]):
        return "localizer (scout) images"
    sop_class = str(header.get("SOPClassUID", "") or "")
    if sop_class == _SECONDARY_CAPTURE or sop_class.startswith(_SECONDARY_CAPTURE + "."):
        return "secondary captures (e.g. dose reports)"
    return ""


@dataclass(frozen=True)
class DicomdirSeries:
    """One series a DICOMDIR lists: its UID, modality, description (from its first file), files (paths), and why it
    is no volume to read (:func:`not_a_volume` of its first file; "" for an image series)."""

    uid: str
    modality: str
    description: str
    files: tuple[Path, ...]
    not_a_volume: str = ""


def dicomdir_of(folder: str | Path) -> Path | None:
    """The DICOMDIR file of a folder (a CD/DVD or USB export: the series lie in subfolders it indexes), or None."""
    folder = Path(folder)
    found = [p for p in (folder / "DICOMDIR", folder / "dicomdir") if p.is_file()]
    return found[0] if found else None


def _file_id_path(dicomdir: Path, file_id, listings: dict[Path, dict[str, str]]) -> Path:
    """A DICOMDIR's ReferencedFileID as a path under the DICOMDIR's folder (path tricks refused), matching each
    component regardless of case when the exact name is not there (Linux shows an ISO 9660 CD's upper-case names in
    lower case); ``listings`` caches each folder's names by their lower-case form."""
    parts = [str(file_id)] if isinstance(file_id, str) else [str(p) for p in file_id]
    path = dicomdir.parent
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\\" in part:
            shown = "\\".join(parts)
            raise ImageReadError(f"{dicomdir}: names a file outside its folder ({shown!r}); a DICOMDIR's file ids "
                                 "are plain folder and file names")
        exact = path / part
        if not exact.exists() and path.is_dir():
            if path not in listings:
                listings[path] = {c.name.lower(): c.name for c in path.iterdir()}
            exact = path / listings[path].get(part.lower(), part)
        path = exact
    return path


def dicomdir_series(dicomdir: str | Path) -> list[DicomdirSeries]:
    """The series a DICOMDIR lists (image records only), in the DICOMDIR's order, read by following its records'
    offsets (patient -> study -> series -> image).

    Raises:
        ImageReadError: the DICOMDIR cannot be read, or names a file that is not there (an incomplete copy:
            reading the rest would give a volume with slices missing).
    """
    import pydicom

    dicomdir = Path(dicomdir)
    try:
        ds = pydicom.dcmread(dicomdir)
        records = {int(r.seq_item_tell): r for r in ds.DirectoryRecordSequence}
        first = int(ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity)
    except Exception as exc:  # pydicom raises several types for a malformed file
        raise ImageReadError(f"{dicomdir}: cannot read the DICOMDIR ({exc})") from exc
    series: dict[str, tuple[str, list[Path]]] = {}
    seen: set[int] = set()
    listings: dict[Path, dict[str, str]] = {}

    def walk(offset: int, series_record) -> None:
        while offset and offset not in seen:
            if offset not in records:
                raise ImageReadError(f"{dicomdir}: cannot read the DICOMDIR (a record points to offset {offset}, "
                                     "where there is none)")
            seen.add(offset)
            record = records[offset]
            kind = str(record.get("DirectoryRecordType", "")).upper()
            if record.get("RecordInUseFlag", 0xFFFF) != 0:
                if kind == "IMAGE" and series_record is not None and "ReferencedFileID" in record:
                    uid = str(series_record.get("SeriesInstanceUID", ""))
                    series.setdefault(uid, (str(series_record.get("Modality", "")), []))[1].append(
                        _file_id_path(dicomdir, record.ReferencedFileID, listings))
                walk(int(record.get("OffsetOfReferencedLowerLevelDirectoryEntity", 0) or 0),
                     record if kind == "SERIES" else series_record)
            offset = int(record.get("OffsetOfTheNextDirectoryRecord", 0) or 0)

    walk(first, None)
    out = []
    for uid, (modality, files) in series.items():
        absent = [f for f in files if not f.is_file()]
        if absent:
            raise ImageReadError(f"{dicomdir}: lists {absent[0].relative_to(dicomdir.parent)}, which is not there "
                                 f"({len(absent)} of series {uid}'s {len(files)} files missing: an incomplete copy?)")
        header = dicom_header(files[0])
        description = str(header.get("SeriesDescription", "") or "") if header is not None else ""
        reason = not_a_volume(header) or (f"{modality.upper()} objects" if modality.upper() in NON_IMAGE_MODALITIES
                                          else "")
        out.append(DicomdirSeries(uid, modality, description.strip(), tuple(files), reason))
    return out


def _dicomdir_image_series(folder: Path, dicomdir: Path, *, modality: str | None = None) -> DicomdirSeries:
    """The one image series (of ``modality`` if given) a folder's DICOMDIR lists; refused naming them otherwise."""
    every = dicomdir_series(dicomdir)
    listed = [s for s in every if not s.not_a_volume]
    if modality is not None and any(s.modality == modality for s in listed):
        listed = [s for s in listed if s.modality == modality]
    if len(listed) == 1:
        return listed[0]
    if not listed:
        others = sorted({s.not_a_volume for s in every})
        raise ImageReadError(f"{folder}: its DICOMDIR lists no image series" + (f", only {', '.join(others)}"
                                                                                 if others else ""))

    own = _own_folders(listed)

    def where(s: DicomdirSeries) -> str:
        parents = {f.parent for f in s.files}
        return str(parents.pop().relative_to(folder)) if len(parents) == 1 else f"{len(parents)} folders"

    shown = [f"{s.modality or '?'} '{s.description or 'no description'}' ({len(s.files)} files, {where(s)})"
             for s in listed[:6]]
    raise ImageReadError(f"{folder}: its DICOMDIR lists {len(listed)} image series ({'; '.join(shown)}"
                         f"{'; ...' if len(listed) > 6 else ''}): give the folder of the one to read"
                         + ("" if all(own) else " (a series that shares its folder with another, or is spread over "
                            "several, must first be copied into a folder of its own)"))


def _own_folders(listed: Sequence[DicomdirSeries]) -> list[Path | None]:
    """For each series, the folder that holds its files and no other listed series' (None when it is spread over
    several folders or shares its folder)."""
    parents = [{f.parent for f in s.files} for s in listed]
    users: dict[Path, int] = {}
    for ps in parents:
        for p in ps:
            users[p] = users.get(p, 0) + 1
    return [next(iter(ps)) if len(ps) == 1 and users[next(iter(ps))] == 1 else None for ps in parents]


def dicomdir_series_folders(folder: str | Path) -> list[Path]:
    """The folders of the image series a folder's DICOMDIR lists, one per series (an export that stores each
    series in a folder of its own, as CD/DVD exports usually do), in the DICOMDIR's order.

    Raises:
        ImageReadError: no DICOMDIR, or a series whose files are spread over several folders or share a folder
            with another series (each series must be given as a folder here).
    """
    folder = Path(folder)
    dicomdir = dicomdir_of(folder)
    if dicomdir is None:
        raise ImageReadError(f"{folder}: holds no DICOMDIR")
    listed = [s for s in dicomdir_series(dicomdir) if not s.not_a_volume]
    own = _own_folders(listed)
    if None in own:
        s = listed[own.index(None)]
        raise ImageReadError(f"{folder}: its DICOMDIR's series '{s.description or s.uid}' shares its folder with "
                             "another series or is spread over several; copy each series' files into a folder of its "
                             "own")
    return [f for f in own if f is not None]


def _along_normal(files: list[str]) -> list[str]:
    """Slice files in the order GDCM gives a folder's series (ascending position along the slice normal), so that a
    series listed by a DICOMDIR is stored as the same volume; files without a position keep their order (the
    geometry check refuses them)."""
    import pydicom

    keys = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True,
                                 specific_tags=["ImagePositionPatient", "ImageOrientationPatient"])
            o = np.asarray([float(v) for v in ds.ImageOrientationPatient]).reshape(2, 3)
            keys.append(float(np.dot(np.cross(o[0], o[1]), [float(v) for v in ds.ImagePositionPatient])))
        except Exception:  # unreadable or unplaced: left to the geometry check and GDCM
            return files
    return [f for _, f in sorted(zip(keys, files), key=lambda kv: kv[0])]


def dicom_series_files(folder: str | Path) -> list[str]:
    """The files of the one DICOM image series in ``folder`` (non-image series such as a SEG next to it are not
    counted), or of the one image series its DICOMDIR lists (a CD export); :class:`ImageReadError` naming the
    problem otherwise (empty folder, several image series, ...)."""
    folder = Path(folder)
    dicomdir = dicomdir_of(folder)
    if dicomdir is not None:
        return _along_normal([str(f) for f in _dicomdir_image_series(folder, dicomdir).files])
    entries = list(folder.iterdir())
    if not any(p.is_file() for p in entries):
        subfolders = sorted(p.name for p in entries if p.is_dir())
        if subfolders:
            raise ImageReadError(f"{folder}: the folder holds no files, only the subfolder(s) "
                                 f"{', '.join(subfolders[:4])}{'...' if len(subfolders) > 4 else ''}: give the folder "
                                 "that holds the series' files")
        raise ImageReadError(f"{folder}: the folder is empty")
    reader = sitk.ImageSeriesReader()
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # GDCM's own warning would be a second, less clear line
    try:
        series = {uid: list(reader.GetGDCMSeriesFileNames(str(folder), uid))
                  for uid in reader.GetGDCMSeriesIDs(str(folder))}
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    if not series:
        raise ImageReadError(f"{folder}: the folder holds no readable DICOM image series")
    headers = {uid: dicom_header(files[0]) if files else None for uid, files in series.items()}
    modality = {uid: str(h.get("Modality", "") or "") if h is not None else "" for uid, h in headers.items()}
    reasons = {uid: not_a_volume(h) for uid, h in headers.items()}
    images = [uid for uid in series if not reasons[uid]]  # a localizer, a dose report or a SEG beside it is none
    if not images:
        raise ImageReadError(f"{folder}: the folder holds no DICOM image series, only "
                             f"{', '.join(sorted(set(reasons.values())))}")
    if len(images) > 1:
        listed = [f"{modality[uid] or '?'} {len(series[uid])} file(s) {uid}" for uid in images[:4]]
        raise ImageReadError(f"{folder}: the folder holds {len(images)} DICOM image series ({'; '.join(listed)}"
                             f"{'...' if len(images) > 4 else ''}); put one series per folder")
    files = series[images[0]]
    if not files:
        raise ImageReadError(f"{folder}: DICOM series {images[0]} lists no files")
    return files


def _regular_slice_steps(folder: Path, positions: np.ndarray, normal: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Steps (mm) between consecutive slices along the slice normal; :class:`ImageReadError` unless the slices form
    a regular volume: distinct and evenly spaced (a gap means missing slices: a volume built from them would
    misplace every slice after it), and stacked along their normal (a gantry-tilted series is sheared: ITK would
    build an orthogonal volume with the slices' distance as its spacing, misplacing every slice in-plane by up to
    the tilt's tangent times the scan length)."""
    order = np.argsort(positions @ normal)
    pos = positions[order]
    steps = np.diff(pos @ normal)
    if steps.size and (np.any(steps <= 1e-4) or np.ptp(steps) > 0.01 * abs(float(np.median(steps))) + 1e-3):
        where = int(np.argmax(np.abs(steps - np.median(steps))))
        raise ImageReadError(f"{folder}: slices are not evenly spaced along the slice normal (step "
                             f"{steps[where]:.2f} mm after slice {where + 1} of {steps.size + 1}, median "
                             f"{float(np.median(steps)):.2f} mm: missing or duplicate slices?); cannot form a volume")
    offset = pos - pos[0]
    lateral = offset - np.outer(offset @ normal, normal)  # each slice's in-plane shift from the first one's
    shift = np.linalg.norm(lateral, axis=1)
    if steps.size and float(shift.max()) > 0.5 * pixel_mm:
        k = int(np.argmax(shift))
        tilt = float(np.degrees(np.arctan2(shift[k], abs(float(offset[k] @ normal)))))
        raise ImageReadError(f"{folder}: the slices are not stacked along their normal (gantry tilt about {tilt:.1f} "
                             f"degrees: slice {k + 1} of {len(pos)} lies {shift[k]:.1f} mm off in-plane); a tilted "
                             "series cannot form a regular volume here: convert it with a tool that corrects the tilt "
                             "first (e.g. dcm2niix, or 3D Slicer's acquisition geometry regularization)")
    return steps


def _frame_count(path: str | Path) -> int:
    """NumberOfFrames of a DICOM file (1 when absent or unreadable by pydicom)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["NumberOfFrames"])
        return int(ds.get("NumberOfFrames", 1) or 1)
    except Exception:  # unreadable by pydicom: let GDCM decide
        return 1


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def functional_group(ds, k: int, name: str):
    """Frame ``k``'s item of the functional group ``name`` (per-frame first, then shared), or ``None``."""
    for key, index in (("PerFrameFunctionalGroupsSequence", k), ("SharedFunctionalGroupsSequence", 0)):
        groups = ds.get(key)
        items = groups[index].get(name) if groups is not None and index < len(groups) else None
        if items:
            return items[0]
    return None


def frame_planes(ds, *, where: str | Path) -> list[tuple[list[float], list[float], list[float]]]:
    """(position, row/column orientation, pixel spacing) of each frame of a multi-frame dataset, from its
    functional groups (per-frame, else shared); :class:`ImageReadError` naming the first frame that lacks one."""
    n = int(ds.get("NumberOfFrames", 1) or 1)
    out = []
    for k in range(n):
        plane = functional_group(ds, k, "PlanePositionSequence")
        orient = functional_group(ds, k, "PlaneOrientationSequence")
        measures = functional_group(ds, k, "PixelMeasuresSequence")
        if plane is None or orient is None or measures is None or "ImagePositionPatient" not in plane \
                or "ImageOrientationPatient" not in orient or "PixelSpacing" not in measures:
            raise ImageReadError(f"{where}: frame {k + 1} of {n} has no plane position, orientation or pixel spacing "
                                 "(functional groups); its frames cannot be placed in space")
        out.append(([float(v) for v in plane.ImagePositionPatient], [float(v) for v in orient.ImageOrientationPatient],
                    [float(v) for v in measures.PixelSpacing]))
    return out


def _read_multiframe(path: Path) -> sitk.Image:
    """A multi-frame (enhanced) CT file as a volume: the frames placed from their functional groups (per-frame
    plane positions), sorted along the slice normal, with the regular-volume checks of a series.

    ITK keeps the frames in file order, but places them from the first frame alone (frames stored out of spatial
    order, as DICOM allows, came back misplaced and with 1 mm pixels), so only its decoded, rescaled pixels are
    used."""
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    n = int(ds.NumberOfFrames)
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        raise ImageReadError(f"{path}: a MONOCHROME1 multi-frame file is not supported; export the series as "
                             "single-frame slices")
    positions, orientations, spacings = (list(v) for v in zip(*frame_planes(ds, where=path)))
    rescales = []
    for k in range(n):
        value = functional_group(ds, k, "PixelValueTransformationSequence") or ds
        rescales.append([float(value.get("RescaleSlope", 1.0) or 1.0),
                         float(value.get("RescaleIntercept", 0.0) or 0.0)])
    if np.ptp(np.asarray(rescales), axis=0).max() > 1e-6:
        raise ImageReadError(f"{path}: the {n} frames differ in their rescale slopes / intercepts; they do not form "
                             "one volume (export the series as single-frame slices)")
    rows, steps = _check_slices(path, [f"frame {k + 1}" for k in range(n)], positions, orientations, spacings)
    normal = np.cross(rows[0], rows[1])
    (dy, dx), pos = spacings[0], np.asarray(positions)
    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)
    if arr.ndim != 3 or arr.shape[0] != n:
        raise ImageReadError(f"{path}: {arr.shape[0] if arr.ndim == 3 else 1} frame(s) decoded, the header lists {n}")
    _check_first_frame(path, arr[0], (rescales[0][0], rescales[0][1]))
    order = np.argsort(pos @ normal, kind="stable")
    out = sitk.GetImageFromArray(arr[order])
    out.SetSpacing((dx, dy, float(np.median(steps))))
    out.SetOrigin(tuple(float(v) for v in pos[order[0]]))
    out.SetDirection(tuple(np.column_stack([rows[0], rows[1], normal]).ravel().tolist()))
    return out


def _check_first_frame(path: Path, decoded: np.ndarray, rescale: tuple[float, float]) -> None:
    """ITK's first frame against pydicom's stored values x the frames' rescale (where pydicom can decode the pixel
    data without plugins): a mismatch means ITK applied another rescale or another frame order."""
    from pydicom.pixels import pixel_array

    try:
        raw = pixel_array(str(path), index=0)  # reads that frame only
    except Exception:  # compressed data pydicom cannot decode here: GDCM's decoding stands
        return
    expected = raw.astype(np.float64) * rescale[0] + rescale[1]
    if raw.shape != decoded.shape or not np.allclose(decoded, expected, atol=0.5 * abs(rescale[0])):
        raise ImageReadError(f"{path}: the decoded first frame does not match its stored values x rescale "
                             f"{rescale[0]:g} / {rescale[1]:g}; cannot read this multi-frame file reliably")


def _one_value(where: Path, values: list[list[float]], names: list[str], *, what: str) -> np.ndarray:
    """The value (orientation, pixel spacing) all slices (or frames) named ``names`` share; :class:`ImageReadError`
    naming the first one with another (ITK stacks every slice with the first one's, silently)."""
    arr = np.asarray(values, dtype=float)
    bad = np.flatnonzero(np.abs(arr - arr[0]).max(axis=1) > 1e-4 * max(1.0, float(np.abs(arr[0]).max())))
    if bad.size:
        k = int(bad[0])
        pair = arr[[k, 0]]
        shown = (pair.astype(int) if np.array_equal(pair, np.round(pair)) else np.round(pair, 3)).tolist()
        raise ImageReadError(f"{where}: {names[k]} has another {what} than {names[0]} "
                             f"({shown[0]} vs {shown[1]}); the "
                             f"{len(arr)} images do not form one volume")
    return arr[0]


def _check_slices(where: Path, names: list[str], positions: list[list[float]], orientations: list[list[float]],
                  spacings: list[list[float]],
                  matrices: list[list[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The checks every series (and multi-frame file) passes before it is stacked, from its slices' (frames')
    headers: one matrix size, orientation and pixel spacing (:func:`_one_value`: ITK stacks every slice with the
    first one's), distinct, evenly spaced slices along the normal and no tilt (:func:`_regular_slice_steps`).
    Returns the row/column orientation (2 x 3) and the steps between slices (mm)."""
    if matrices is not None:
        _one_value(where, matrices, names, what="matrix size (rows, columns)")  # ITK: "cannot read the image"
    rows = _one_value(where, orientations, names, what="orientation").reshape(2, 3)
    pixel_mm = float(_one_value(where, spacings, names, what="pixel spacing").min())
    steps = _regular_slice_steps(where, np.asarray(positions, dtype=float), np.cross(rows[0], rows[1]), pixel_mm)
    return rows, steps


def _unplaced(folder: Path, name: str) -> str:
    return (f"{folder}: file {name} has no ImagePositionPatient / ImageOrientationPatient: the series' slices can "
            "be neither placed nor ordered (a secondary capture, or an export that removed them); export the series "
            "with its geometry")


def _check_series_geometry(folder: Path, files: list[str]) -> bool:
    """The regular-volume check (one orientation, even spacing, no gantry tilt) of a series from its headers alone
    (before any pixel is read, so that ITK's own warning about non-uniform sampling never comes first). A slice
    without ImagePositionPatient or ImageOrientationPatient is refused: ITK stacked such slices in file order at
    1 mm from an origin of 0, a volume that exists nowhere in the patient.

    Returns whether a slice's rescale slope or intercept is fractional: the volume then needs floating-point voxels
    (ITK's integer output, chosen from the first slice, truncated the other slices' values toward zero)."""
    import pydicom

    positions, orientations, spacings, matrices, fractional = [], [], [], [], False
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=[
                "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns",
                "RescaleSlope", "RescaleIntercept"])
        except Exception:  # unreadable by pydicom: let GDCM decide
            return False
        fractional = fractional or any(float(v) != round(float(v)) for v in (ds.get("RescaleSlope", 1) or 1,
                                                                             ds.get("RescaleIntercept", 0) or 0))
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            raise ImageReadError(_unplaced(folder, Path(f).name))
        positions.append([float(v) for v in ds.ImagePositionPatient])
        orientations.append([float(v) for v in ds.ImageOrientationPatient])
        spacings.append([float(v) for v in ds.get("PixelSpacing", [1.0, 1.0])])
        matrices.append([int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)])
    _check_slices(folder, [f"file {Path(f).name}" for f in files], positions, orientations, spacings, matrices)
    return fractional


class _NonFiniteCounter:
    """Counts NaN / infinite values of a float voxel stream fed in arbitrary byte blocks (``dtype=None``: counts
    nothing)."""

    def __init__(self, dtype: np.dtype | None, offset: int, end: int) -> None:
        self.dtype, self.offset, self.end = dtype, offset, end
        self.pos, self.carry, self.count = 0, b"", 0

    def feed(self, block: bytes) -> None:
        start, self.pos = self.pos, self.pos + len(block)
        if self.dtype is None or self.pos <= self.offset or start >= self.end:
            return
        data = self.carry + block[max(0, self.offset - start):max(0, self.end - start)]
        usable = len(data) - len(data) % self.dtype.itemsize
        values = np.frombuffer(data[:usable], dtype=self.dtype)
        self.count += values.size - int(np.count_nonzero(np.isfinite(values)))
        self.carry = data[usable:]


def _check_nifti_complete(p: Path) -> None:
    """ITK pads a truncated NIfTI with zeros silently, and reads NaN and infinite voxels of a float NIfTI as 0 (NRRD
    and MHA keep them): refuse both instead (header size vs. data present; float voxels counted while the data is
    streamed for the size check anyway)."""
    import gzip
    import zlib

    import nibabel as nib

    try:
        header = nib.load(str(p)).header
        dtype = header.get_data_dtype()
        offset = int(header.get_data_offset())
        expected = offset + int(np.prod(header.get_data_shape())) * dtype.itemsize
    except Exception as exc:  # nibabel raises several types for bad headers
        raise ImageReadError(f"{p}: not a valid NIfTI file ({exc})") from exc
    counter = _NonFiniteCounter(dtype if dtype.kind == "f" else None, offset, expected)
    gz = p.name.lower().endswith(".gz")
    size = 0 if gz or counter.dtype is not None else p.stat().st_size  # else: streamed below
    if gz or counter.dtype is not None:
        try:
            with gzip.open(p, "rb") if gz else open(p, "rb") as fh:
                while size < expected and (block := fh.read(1 << 22)):
                    size += len(block)
                    counter.feed(block)
        except (EOFError, OSError, zlib.error) as exc:
            raise ImageReadError(f"{p}: the compressed file is truncated or corrupt ({exc})") from exc
    if size < expected:
        raise ImageReadError(f"{p}: the file is truncated ({size} of {expected} bytes present)")
    if counter.count:
        raise ImageReadError(f"{p}: {counter.count} voxel(s) are NaN or infinite (ITK would read them as 0); replace "
                             "them with a real value (e.g. air, -1024 HU) first")


@dataclass
class DicomVolume:
    """A DICOM series read slice by slice with pydicom.

    Attributes:
        image: float32 image of ``pixel_array * RescaleSlope + RescaleIntercept`` per slice (slopes may differ
            between slices), slices ordered along the slice normal.
        datasets: the slices' pydicom datasets, in the same order (pixel data already decoded).
        photometric: PhotometricInterpretation of the series.
    """

    image: sitk.Image
    datasets: list = field(default_factory=list)
    photometric: str = ""


def read_dicom_volume(folder: str | Path, *, modality: str | None = None) -> DicomVolume:
    """Read the one DICOM image series in ``folder`` with pydicom, keeping stored *values* (never display values).

    GDCM, and hence SimpleITK's series reader, returns ``max - value`` for MONOCHROME1 images (it converts them for
    display); for quantitative images (PET activity, some CT/CR exports) that is wrong. This reader applies each
    slice's rescale and nothing else.

    Args:
        folder: folder holding one series (other files are ignored when pydicom cannot read them), or whose DICOMDIR
            lists one image series (of ``modality``, if given).
        modality: if given (e.g. ``"PT"``), only slices of that modality are read (a PET/CT export holding both
            series in one folder gives its PET), and a folder without any is refused.

    Raises:
        ImageReadError: no readable image slice, several series, another modality, or slices that do not form a
            regular volume.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"{folder}: not a folder of DICOM files")
    slices, unplaced, multiframe, skipped = [], [], 0, set()
    dicomdir = dicomdir_of(folder)
    candidates = (_dicomdir_image_series(folder, dicomdir, modality=modality).files if dicomdir is not None
                  else (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")))
    for path in sorted(candidates):
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError, ValueError):
            continue
        reason = not_a_volume(ds)
        if reason:  # a localizer, a dose report or a SEG exported with the series
            skipped.add(reason)
            continue
        is_multiframe = int(ds.get("NumberOfFrames", 1) or 1) > 1
        if "PixelData" in ds and "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds:
            slices.append(ds)
        elif "PixelData" in ds and not is_multiframe:
            unplaced.append(ds)
        multiframe += is_multiframe
    if not slices and multiframe:
        raise ImageReadError(f"{folder}: multi-frame (enhanced) DICOM files are not read here (this reader needs each "
                             "slice's own rescale and timing); export the series as single-frame slices")
    if not slices and unplaced:
        raise ImageReadError(_unplaced(folder, Path(str(unplaced[0].filename)).name))
    if not slices:
        raise ImageReadError(f"{folder}: no DICOM image slices found"
                             + (f", only {', '.join(sorted(skipped))}" if skipped else ""))
    if modality is not None and any(str(ds.get("Modality", "")) == modality for ds in slices):
        slices = [ds for ds in slices if str(ds.get("Modality", "")) == modality]  # a PET/CT export: the PET
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in slices}
    if len(series) > 1:
        raise ImageReadError(f"{folder}: the folder holds {len(series)} DICOM series; put one series per folder")
    missing = [ds for ds in unplaced if str(ds.get("SeriesInstanceUID", "")) in series]
    if missing:  # they were dropped, silently: a volume missing its slices
        raise ImageReadError(_unplaced(folder, Path(str(missing[0].filename)).name))
    found = str(slices[0].get("Modality", ""))
    if modality is not None and found not in (modality, ""):
        raise ImageReadError(f"{folder}: modality {found!r} is not {modality}")
    orient, steps = _check_slices(folder, [f"file {Path(str(ds.filename)).name}" for ds in slices],
                                  [[float(v) for v in ds.ImagePositionPatient] for ds in slices],
                                  [[float(v) for v in ds.ImageOrientationPatient] for ds in slices],
                                  [[float(v) for v in ds.get("PixelSpacing", [1.0, 1.0])] for ds in slices],
                                  [[int(ds.Rows), int(ds.Columns)] for ds in slices])
    normal = np.cross(orient[0], orient[1])
    slices.sort(key=lambda ds: float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])))
    pos = np.asarray([[float(v) for v in ds.ImagePositionPatient] for ds in slices])
    vol = np.empty((len(slices), int(slices[0].Rows), int(slices[0].Columns)), dtype=np.float32)
    for k, ds in enumerate(slices):
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        try:
            vol[k] = ds.pixel_array.astype(np.float64) * slope + intercept
        except Exception as exc:  # pydicom raises several types for undecodable pixel data
            raise ImageReadError(f"{folder}: cannot decode the pixel data of a slice ({exc})") from exc
    img = sitk.GetImageFromArray(vol)
    dy, dx = (float(v) for v in slices[0].PixelSpacing)
    dz = float(np.median(steps)) if steps.size else float(slices[0].get("SliceThickness", 1.0) or 1.0)
    img.SetSpacing((dx, dy, dz))
    img.SetOrigin(tuple(float(v) for v in pos[0]))
    img.SetDirection(tuple(np.column_stack([orient[0], orient[1], normal]).ravel().tolist()))
    return DicomVolume(image=img, datasets=slices, photometric=str(slices[0].get("PhotometricInterpretation", "")))


def _is_monochrome1(files: list[str]) -> bool:
    import pydicom

    try:
        ds = pydicom.dcmread(files[0], stop_before_pixels=True, specific_tags=["PhotometricInterpretation"])
    except Exception:  # unreadable by pydicom: let GDCM decide
        return False
    return str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1"


def read_image(path: str | Path, *, pixel_type: int | None = None) -> sitk.Image:
    """Read a NIfTI / NRRD / MHA file, a folder holding exactly one DICOM series, or a folder whose DICOMDIR lists
    exactly one image series (a CD/DVD export; with several, the error lists them and their folders).

    A MONOCHROME1 DICOM series is read with :func:`read_dicom_volume` (stored values, not GDCM's inverted display
    values). A series of one multi-frame (enhanced) CT file, or that file itself, is placed frame by frame from its
    functional groups (:func:`_read_multiframe`).

    Args:
        path: file or folder.
        pixel_type: optional SimpleITK pixel type to cast to (e.g. ``sitk.sitkFloat32``).

    Raises:
        ImageReadError: missing, empty, unreadable or corrupt input, a folder with several series, or a series whose
            slices are not evenly spaced (missing or duplicate slices) or not stacked along their normal (gantry
            tilt).
    """
    p = Path(path)
    if not p.exists():
        raise ImageReadError(f"{p}: no such file or folder")
    try:
        if p.is_dir():
            files = dicom_series_files(p)
            if _frame_count(files[0]) > 1:
                if len(files) > 1:
                    raise ImageReadError(f"{p}: the series holds {len(files)} multi-frame files; one multi-frame "
                                         "file (or single-frame slices) per volume is supported")
                img = _read_multiframe(Path(files[0]))
            elif _is_monochrome1(files):
                img = read_dicom_volume(p).image  # checks the spacing itself
            else:
                fractional = _check_series_geometry(p, files)
                reader = sitk.ImageSeriesReader()
                reader.SetFileNames(files)
                if fractional:
                    reader.SetOutputPixelType(sitk.sitkFloat32)
                reader.MetaDataDictionaryArrayUpdateOn()
                reader.LoadPrivateTagsOff()
                img = reader.Execute()
        else:
            if p.stat().st_size == 0:
                raise ImageReadError(f"{p}: the file is empty")
            if p.name.lower().endswith((".nii", ".nii.gz")):
                _check_nifti_complete(p)
            if not image_suffix(p) and _is_dicom_file(p) and _frame_count(p) > 1:
                img = _read_multiframe(p)
            else:
                img = sitk.ReadImage(str(p))
    except ImageReadError:
        raise
    except RuntimeError as exc:  # SimpleITK reports every read failure as RuntimeError
        first = next((ln.strip() for ln in str(exc).splitlines() if "ERROR" in ln or "rror" in ln), "")
        raise ImageReadError(f"{p}: cannot read the image (corrupt or unsupported file){': ' + first if first else ''}") from exc
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(f"{p}: image has {img.GetNumberOfComponentsPerPixel()} components per voxel; "
                             "a scalar (grey-level) image is required (an RGB image, or a segmentation whose "
                             "overlapping segments are stored as layers: export the segment as a labelmap)")
    if pixel_type is not None:
        img = sitk.Cast(img, pixel_type)
    return img


def check_label_values(values: np.ndarray, *, what: str = "label") -> None:
    """Raise :class:`InvalidInputError` unless ``values`` are those of a label image: finite, whole, non-negative
    numbers (0 background, > 0 a label). A probability map passes for a label wherever it is above 0, silently."""
    values = np.asarray(values)
    if values.dtype.kind in "fc":
        if not np.isfinite(values).all():
            raise InvalidInputError(f"{what} holds NaN or infinite values: not a label image")
        if np.any(values != np.round(values)):
            raise InvalidInputError(f"{what} holds fractional values ({float(values.min()):.3g}.."
                                    f"{float(values.max()):.3g}): a probability map? a label image (0 background, "
                                    "> 0 a label) is required, thresholded first")
    if values.size and values.min() < 0:
        raise InvalidInputError(f"{what} holds negative values (minimum {float(values.min()):g}): a label image (0 "
                                "background, > 0 a label) is required")


def require_3d(img: sitk.Image, *, what: str = "image", min_slices: int = 2) -> sitk.Image:
    """Raise :class:`InvalidInputError` unless ``img`` is a 3D volume with at least ``min_slices`` slices."""
    if img.GetDimension() != 3:
        raise InvalidInputError(f"{what} is {img.GetDimension()}D (size {img.GetSize()}); a 3D volume is required")
    if img.GetSize()[2] < min_slices:
        raise InvalidInputError(f"{what} has {img.GetSize()[2]} slice(s) (size {img.GetSize()}); "
                                f"a 3D volume with at least {min_slices} slices is required")
    return img


def same_geometry(a: sitk.Image, b: sitk.Image, *, tol: float = 1e-4) -> bool:
    """True when two images share size, spacing, origin and direction (within ``tol``)."""
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol, rtol=tol)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=max(tol, 1e-3))
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol))


def check_same_geometry(image: sitk.Image, other: sitk.Image, *, what: str = "label",
                        fields: Sequence[str] = ("size", "spacing", "origin", "direction")) -> None:
    """Raise :class:`GeometryError` naming the first difference between ``other`` and ``image`` (in ``fields``)."""
    every = set(fields) >= {"size", "spacing", "origin", "direction"}
    if every and same_geometry(image, other):
        return
    for name in fields:
        ga, gb = (getattr(im, f"Get{name.capitalize()}")() for im in (image, other))
        if name == "size" and ga != gb or name != "size" and not np.allclose(ga, gb, atol=1e-3):
            fmt = lambda v: "(" + ", ".join(f"{x:.4g}" for x in v) + ")"  # noqa: E731
            raise GeometryError(f"{what} {name} {fmt(gb)} differs from the image {name} {fmt(ga)}")
    if every:  # a difference within the tolerances above but beyond same_geometry's
        raise GeometryError(f"{what} geometry differs from the image geometry")


def mask_on_grid(image: sitk.Image, mask: sitk.Image, *, what: str = "mask") -> sitk.Image:
    """``mask`` on ``image``'s grid, voxel for voxel.

    A mask on the image's grid is returned as it is. One on a part of that grid (same spacing and direction, its
    origin on one of the image's voxels: a 3D Slicer ``.seg.nrrd`` is stored cropped to its segments' extent, and
    so is a labelmap exported without a reference volume) is placed into the image's grid with zeros around it; a
    part reaching outside the image is cut off if it holds only zeros there. Nothing is interpolated.

    Raises:
        GeometryError: another spacing or direction, an origin between the image's voxels, or mask voxels outside
            the image (the difference named, as :func:`check_same_geometry` does).
        InvalidInputError: ``mask`` is not 3D (e.g. a segmentation whose overlapping segments are stored as
            layers).
    """
    layers = mask.GetNumberOfComponentsPerPixel()
    if mask.GetDimension() != 3 or layers != 1:
        shape = f"{mask.GetDimension()}D" + (f" with {layers} layers" if layers != 1 else "")
        raise InvalidInputError(f"{what} is {shape} (size {mask.GetSize()}); one 3D label image is required (a "
                                "segmentation with overlapping segments is stored as layers: export the segment as "
                                "a labelmap)")
    if same_geometry(image, mask):
        return mask
    check_same_geometry(image, mask, what=what, fields=("spacing", "direction"))
    start = np.asarray(image.TransformPhysicalPointToContinuousIndex(mask.GetOrigin()))
    if not np.allclose(start, np.round(start), atol=1e-3):
        raise GeometryError(f"{what} origin {tuple(round(v, 4) for v in mask.GetOrigin())} lies between the image's "
                            f"voxels (index {tuple(round(float(v), 3) for v in start)}); a mask must be on the "
                            "image's grid or a part of it")
    # the grids share their voxels: nearest-neighbour sampling copies them, zeros where the mask has none
    placed = sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, mask.GetPixelID())
    labelled = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    kept = int(np.count_nonzero(sitk.GetArrayViewFromImage(placed)))
    if kept != labelled:
        lo = np.round(start).astype(int)
        apart = np.any(lo + np.asarray(mask.GetSize()) <= 0) or np.any(lo >= np.asarray(image.GetSize()))
        where = f"{what} (size {mask.GetSize()}, starting at the image's voxel {tuple(lo.tolist())})"
        raise GeometryError(f"{where} {'lies outside' if apart else 'has labelled voxels outside'} the image "
                            f"(size {image.GetSize()})")
    return placed


@contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success move it onto ``dest`` atomically.

    On any exception the temporary file is removed and ``dest`` is left as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    suffix = image_suffix(dest) or dest.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{suffix}", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_image(img: sitk.Image, dest: str | Path, *, compress: bool = True) -> Path:
    """Write ``img`` atomically to ``dest`` (format from the extension)."""
    dest = Path(dest)
    if not image_suffix(dest):
        raise InvalidInputError(f"{dest}: unsupported output extension; use one of {', '.join(IMAGE_SUFFIXES)}")
    with atomic_path(dest) as tmp:
        sitk.WriteImage(img, str(tmp), compress)
    return dest


def write_label(label: sitk.Image, dest: str | Path, *, segments: Mapping[int, str]) -> Path:
    """Write a label image atomically to ``dest``: a 3D Slicer segmentation for ``.seg.nrrd`` (one segment per
    label value in ``segments``, value -> name, on the label's full grid, written by ``slicerio``: Slicer opens it
    as a segmentation with those names), else as :func:`write_image` does."""
    dest = Path(dest)
    if image_suffix(dest) != ".seg.nrrd":
        return write_image(label, dest)
    import slicerio

    arr = sitk.GetArrayViewFromImage(label)
    unknown = sorted(set(np.unique(arr).tolist()) - {0} - set(segments))
    if unknown:
        raise InvalidInputError(f"label values {unknown} have no segment name (known: {dict(segments)})")
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = np.asarray(label.GetDirection(), dtype=float).reshape(3, 3) * np.asarray(label.GetSpacing())
    ijk_to_lps[:3, 3] = label.GetOrigin()
    seg = slicerio.create_segmentation(label.GetSize(), ijk_to_lps)
    ijk = np.transpose(arr, (2, 1, 0))  # (z, y, x) -> (i, j, k)
    for value, name in sorted(segments.items()):
        slicerio.add_segment(seg, ijk == value, {"id": f"Segment_{value}", "name": name,
                                                 "color": segment_colour(name, value)})
    with atomic_path(dest) as tmp:
        slicerio.write_segmentation(str(tmp), seg)
    return dest


#: segment colours (RGB in [0, 1]) of known label names; others take :data:`SEGMENT_PALETTE` by label value. The
#: Slicer module, which runs without this package, keeps the same table (``OncoLabelLib.arrays``; a test compares
#: them), so a segment has one colour whether the module or ``infer ... OUT.seg.nrrd`` made it.
SEGMENT_COLOURS = {"metastasis": (0.90, 0.20, 0.20), "tumour": (0.95, 0.60, 0.10), "tumor": (0.95, 0.60, 0.10),
                   "lymph_node": (0.30, 0.60, 0.95)}
SEGMENT_PALETTE = ((0.12, 0.47, 0.71), (0.17, 0.63, 0.17), (0.58, 0.40, 0.74), (0.55, 0.34, 0.29),
                   (0.89, 0.47, 0.76), (0.50, 0.50, 0.50), (0.74, 0.74, 0.13), (0.09, 0.75, 0.81))


def segment_colour(name: str, value: int) -> tuple[float, float, float]:
    """The display colour of a segment (:data:`SEGMENT_COLOURS`, else the palette by label value)."""
    return SEGMENT_COLOURS.get(name.lower(), SEGMENT_PALETTE[(int(value) - 1) % len(SEGMENT_PALETTE)])


def array_to_image(arr: np.ndarray, reference: sitk.Image, *, pixel_type: int | None = None) -> sitk.Image:
    """A SimpleITK image holding ``arr`` (z, y, x) on ``reference``'s grid."""
    out = sitk.GetImageFromArray(arr)
    if out.GetSize() != reference.GetSize():
        raise GeometryError(f"array size {out.GetSize()} differs from the reference size {reference.GetSize()}")
    out.CopyInformation(reference)
    if pixel_type is not None:
        out = sitk.Cast(out, pixel_type)
    return out


def case_id_of(path: str | Path) -> str:
    """Case id of an image file: its name without the image suffix."""
    p = Path(path)
    suffix = image_suffix(p)
    return p.name[: -len(suffix)] if suffix else p.name


def list_images(folder: str | Path, *, subfolder: str | None = None) -> dict[str, Path]:
    """Image files of ``folder`` by case id (``folder/subfolder`` when that exists, e.g. a phantom cohort's
    ``labels/``). Hidden files and non-image files are ignored.

    Raises:
        ImageReadError: the folder does not exist or holds no image.
    """
    root = Path(folder)
    if subfolder and (root / subfolder).is_dir():
        root = root / subfolder
    if not root.is_dir():
        raise ImageReadError(f"{root}: no such folder")
    out = {case_id_of(p): p for p in sorted(root.iterdir())
           if p.is_file() and not p.name.startswith(".") and image_suffix(p)}
    if not out:
        raise ImageReadError(f"{root}: no NIfTI/NRRD images in this folder")
    return out
