"""Images from a PACS over DICOMweb (Orthanc, dcm4chee, a cloud DICOM store, ...).

A research group's images usually sit in a PACS, not in a folder of NIfTI files. This module finds series there
(QIDO-RS), fetches them (WADO-RS) and reads each with exactly the checks of a DICOM folder
(:func:`oncolabel.io.read_image`: one series, even spacing, no gantry tilt, multi-frame files placed frame by frame),
so a series that would be refused from a folder is refused from the PACS too, with its series UID in the message;
a PET series is converted to SUVbw from its own headers at import (they do not survive a NIfTI file).
:func:`import_series` copies the series not yet held into any store (a folder of NIfTI files for the CLI, the
server's datastore for ``oncolabel serve --pacs URL``); the image id of a series is its SeriesInstanceUID.

Readers' annotations come in with :func:`import_labels` (a series' newest DICOM SEG read as its label on the
imported volume). Labels go back only when asked (:meth:`DicomWebSource.store_segmentation`: a DICOM SEG
referencing the series' instances, built with highdicom, stored with STOW-RS); nothing else is ever written to the
PACS. Connections time out (``timeout_s``) instead of hanging; every failure of the PACS itself raises
:class:`oncolabel.errors.PacsError`.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Mapping
from urllib.parse import urlparse

import SimpleITK as sitk

from oncolabel.dicom_seg import segmentation_dataset
from oncolabel.errors import ConflictError, ImageReadError, InvalidInputError, NotFoundError, PacsError
from oncolabel.io import atomic_path, case_id_of, image_suffix, read_image, write_image
from oncolabel.provenance import file_sha256

__all__ = ["ArrivalCheck", "DicomWebSource", "FolderStore", "LabelImportReport", "PacsImportReport", "PacsSeries",
           "check_count", "check_dicomweb_url", "check_query", "check_uid", "import_labels", "import_series",
           "list_series", "parse_modalities", "parse_query", "series_record", "NON_IMAGE_MODALITIES"]

#: a DICOM UID (PS3.5 9.1): digit groups separated by dots, at most 64 characters; also a safe file name
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")

#: modalities of series that hold no image volume, passed over when every modality is imported
NON_IMAGE_MODALITIES = frozenset({"SEG", "SR", "KO", "PR", "RTSTRUCT", "RTPLAN", "RTRECORD", "RTDOSE", "REG", "FID",
                                  "DOC", "RWV", "PLAN", "AU", "ECG", "HD"})

_UNSEEN = object()

#: a DICOM modality code (CS value)
_MODALITY = re.compile(r"^[A-Z0-9_]{1,16}$")

#: QIDO-RS fields asked for each series (beyond the UIDs a PACS always returns)
_SERIES_FIELDS = ("Modality", "PatientID", "SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances")


@dataclass(frozen=True)
class PacsSeries:
    """One series found in the PACS."""

    study_uid: str
    series_uid: str
    modality: str = ""
    patient_id: str = ""
    description: str = ""
    n_instances: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PacsImportReport:
    """What :func:`import_series` did: series imported, already held, refused (series UID -> reason), left for a
    later import by its ``max_new`` (``deferred``) or because they were not ready (``waiting``)."""

    url: str
    modality: str | None
    imported: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    deferred: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_uid(uid: str, *, what: str = "SeriesInstanceUID") -> str:
    """``uid`` unchanged; :class:`InvalidInputError` unless it is a DICOM UID (it becomes a file name and an image
    id, so nothing else may pass: no ``/``, no ``..``)."""
    if not isinstance(uid, str) or len(uid) > 64 or not _UID.match(uid):
        raise InvalidInputError(f"{what} {uid!r} is not a DICOM UID (digits and dots, at most 64 characters)")
    return uid


def parse_modalities(modality: str | Collection[str] | None) -> tuple[str, ...] | None:
    """The modalities to import: ``"CT"``, ``"CT,PT"`` or ``["CT", "PT"]``; ``None`` or ``"any"``: every series
    holding images (not :data:`NON_IMAGE_MODALITIES`)."""
    if modality is None or (isinstance(modality, str) and modality.strip().lower() == "any"):
        return None
    items = modality.split(",") if isinstance(modality, str) else list(modality)
    out = tuple(dict.fromkeys(str(m).strip().upper() for m in items))
    bad = [m for m in out if not _MODALITY.match(m)]
    if not out or bad:
        raise InvalidInputError(f"modality {modality!r}: give DICOM modality codes such as CT or CT,PT, or 'any'")
    return out


def check_count(value: Any, *, what: str, minimum: int = 0) -> int:
    """``value`` as a count (a whole number >= ``minimum``; bools refused), or :class:`InvalidInputError` naming
    ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"{what} {value!r}: must be a whole number >= {minimum}")
    return value


def series_record(series: PacsSeries, url: str) -> dict[str, Any]:
    """What a store keeps about an imported series (patient-level splits need ``patient_id``)."""
    return {"source": "dicomweb", "pacs_url": url, "study_uid": series.study_uid, "series_uid": series.series_uid,
            "patient_id": series.patient_id, "modality": series.modality, "description": series.description,
            "imported_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def check_query(query: Mapping[str, str]) -> dict[str, str]:
    """``query`` as QIDO-RS search filters; :class:`InvalidInputError` for a key that is not a DICOM keyword (a
    PACS ignores unknown keys, so a typing error would import everything)."""
    from pydicom.datadict import tag_for_keyword

    out = {}
    for key, value in query.items():
        if tag_for_keyword(str(key)) is None:
            raise InvalidInputError(f"query key {key!r} is not a DICOM keyword (e.g. PatientID, StudyDescription, "
                                    "StudyInstanceUID, SeriesNumber)")
        out[str(key)] = str(value)
    return out


def parse_query(items: Collection[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings (command-line ``--query``) as :func:`check_query` filters."""
    pairs = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"query {item!r}: expected KEY=VALUE, e.g. StudyDescription=*SPINE*")
        pairs[key.strip()] = value.strip()
    return check_query(pairs)


def check_dicomweb_url(url: str) -> str:
    """``url`` without a trailing slash; :class:`InvalidInputError` unless it is an http(s) URL with a host."""
    parts = urlparse(str(url))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(f"{url!r} is not a DICOMweb URL (expected http[s]://host[:port]/path, e.g. "
                                "http://127.0.0.1:8042/dicom-web for Orthanc)")
    return str(url).rstrip("/")


class DicomWebSource:
    """A DICOMweb service (QIDO-RS / WADO-RS root URL, e.g. ``http://127.0.0.1:8042/dicom-web``)."""

    def __init__(self, url: str, *, timeout_s: float = 60.0, page_size: int = 100) -> None:
        from dicomweb_client.api import DICOMwebClient

        if not timeout_s > 0:
            raise InvalidInputError(f"timeout {timeout_s!r}: must be a positive number of seconds")
        self.page_size = check_count(page_size, what="QIDO-RS page size", minimum=1)
        self.url = check_dicomweb_url(url)
        self.timeout_s = float(timeout_s)
        self._seg_headers: dict[str, tuple[frozenset[str], str, str]] = {}  # SEG series UID -> see _seg_header
        self._client = DICOMwebClient(url=self.url, timeout=self.timeout_s)
        # its default: 5 attempts with exponential waits (1, 2, 4, 8 s) after any failure, a refused connection too
        self._client.set_http_retry_params(max_attempts=3, wait_exponential_multiplier=250)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        import requests

        try:
            return fn(*args, **kwargs)
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else "?"
            raise PacsError(f"{self.url}: {what} failed with HTTP {code}") from exc
        except requests.Timeout as exc:
            raise PacsError(f"{self.url}: {what}: no answer within {self.timeout_s:g} s") from exc
        except requests.ConnectionError as exc:
            raise PacsError(f"{self.url}: {what}: cannot connect to the PACS (is it running, and is the URL "
                            "right?)") from exc
        except requests.RequestException as exc:
            raise PacsError(f"{self.url}: {what} failed: {type(exc).__name__} ({exc})") from exc
        except ValueError as exc:  # a malformed answer (dicomweb_client raises ValueError)
            raise PacsError(f"{self.url}: {what}: malformed answer ({exc})") from exc

    def _search_series(self, what: str, filters: Mapping[str, str], fields: Collection[str]) -> list[Any]:
        """Every series matching ``filters`` (QIDO-RS), as pydicom datasets, asked for page by page (``limit`` =
        ``page_size``, ``offset``): DICOMweb lets a PACS cap each answer at its own maximum (PS3.18 8.3.4.4; cloud
        stores and dcm4chee do), saying so only in a Warning header that DICOMweb clients do not surface. The search
        ends at an empty page, or at one that brings no series not seen yet (a PACS that ignores ``offset``). A PACS
        that truncates every answer and does not page (Orthanc with ``LimitFindResults``) cannot be read past its
        limit by any client."""
        from pydicom import Dataset

        found: dict[str, Any] = {}
        offset = 0
        while True:
            page = self._call(what, self._client.search_for_series, search_filters=dict(filters),
                              fields=list(fields), limit=self.page_size, offset=offset) or []
            new = 0
            for item in page:
                ds = Dataset.from_json(item)
                uid = str(ds.get("SeriesInstanceUID", ""))
                if uid and uid not in found:
                    found[uid] = ds
                    new += 1
            if not new:
                return list(found.values())
            offset += len(page)

    def find_series(self, *, modality: str | None = "CT", query: Mapping[str, str] | None = None) -> list[PacsSeries]:
        """Every series of ``modality`` (all series when ``None``) matching ``query`` (QIDO-RS matching: DICOM
        keyword -> value, ``*`` wildcards, e.g. ``{"StudyDescription": "*SPINE*"}``), ordered by study and series
        UID; asked for page by page (see :meth:`_search_series`)."""
        filters = {**check_query(query or {}), **({"Modality": modality} if modality else {})}
        out = []
        for ds in self._search_series("the series search (QIDO-RS)", filters, _SERIES_FIELDS):
            if not ds.get("StudyInstanceUID"):
                continue
            n = ds.get("NumberOfSeriesRelatedInstances")
            out.append(PacsSeries(study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
                                  modality=str(ds.get("Modality", "")) or (modality or ""),  # matched the filter
                                  patient_id=str(ds.get("PatientID", "")),
                                  description=str(ds.get("SeriesDescription", "")),
                                  n_instances=int(n) if n not in (None, "") else None))
        if modality:  # a PACS may ignore the filter
            out = [s for s in out if s.modality == modality]
        return sorted(out, key=lambda s: (s.study_uid, s.series_uid))

    def download(self, series: PacsSeries, folder: str | Path) -> int:
        """Write the series' instances (WADO-RS, streamed: one instance in memory at a time) into ``folder`` as DICOM
        files; returns how many."""
        folder = Path(folder)

        def fetch() -> int:
            n = 0
            for ds in self._client.iter_series(series.study_uid, series.series_uid):
                ds.save_as(folder / f"{n:06d}.dcm", enforce_file_format=True)
                n += 1
            return n

        return self._call(f"retrieving series {series.series_uid} (WADO-RS)", fetch)

    def find(self, series_uid: str) -> PacsSeries:
        """The series with this SeriesInstanceUID (:class:`oncolabel.errors.NotFoundError` when the PACS has none)."""
        from pydicom import Dataset

        found = self._call("the series search (QIDO-RS)", self._client.search_for_series,
                           search_filters={"SeriesInstanceUID": check_uid(series_uid)}, fields=list(_SERIES_FIELDS))
        for item in found or []:
            ds = Dataset.from_json(item)
            if str(ds.get("SeriesInstanceUID", "")) == series_uid and ds.get("StudyInstanceUID"):
                return PacsSeries(study_uid=str(ds.StudyInstanceUID), series_uid=series_uid,
                                  modality=str(ds.get("Modality", "")), patient_id=str(ds.get("PatientID", "")),
                                  description=str(ds.get("SeriesDescription", "")))
        raise NotFoundError(f"{self.url}: no series {series_uid}")

    def instance_headers(self, series: PacsSeries) -> list[Any]:
        """The series' instances' headers (WADO-RS metadata: no pixel data), as pydicom datasets."""
        from pydicom import Dataset

        meta = self._call(f"retrieving the metadata of series {series.series_uid} (WADO-RS)",
                          self._client.retrieve_series_metadata, series.study_uid, series.series_uid)
        out = []
        for item in meta or []:
            ds = Dataset.from_json(item, bulk_data_uri_handler=lambda tag, vr, uri: None)
            for tag in [t for t in ds.keys() if ds[t].VR in ("OB", "OW", "OF", "OD", "UN") or t == 0x7FE00010]:
                del ds[tag]  # bulk data URIs, not values
            out.append(ds)
        return out

    def store_segmentation(self, series: PacsSeries, label: sitk.Image, *, segments: Mapping[int, str],
                           manual: bool, algorithm: str, version: str, description: str = "") -> str:
        """Store ``label`` (on the series' grid, as imported) in the PACS as a DICOM SEG referencing the series
        (STOW-RS); returns the SEG's SeriesInstanceUID. See :func:`oncolabel.dicom_seg.segmentation_dataset`."""
        seg = segmentation_dataset(label, self.instance_headers(series), segments=segments, manual=manual,
                                   algorithm=algorithm, version=version, description=description)
        self._call(f"storing a segmentation of series {series.series_uid} (STOW-RS)", self._client.store_instances,
                   [seg])
        return str(seg.SeriesInstanceUID)

    def _seg_header(self, study_uid: str, seg_uid: str) -> tuple[frozenset[str], str, str]:
        """A SEG series' referenced series, date and time (series date and time, else content date and time), from
        its own headers (WADO-RS metadata, asked once per SEG: they never change). A search (QIDO-RS) answer need
        not hold the date: a PACS may ignore ``includefield`` and return only the required attributes."""
        from pydicom import Dataset

        if seg_uid not in self._seg_headers:
            meta = self._call(f"retrieving the metadata of series {seg_uid} (WADO-RS)",
                              self._client.retrieve_series_metadata, study_uid, seg_uid)
            headers = [Dataset.from_json(m, bulk_data_uri_handler=lambda tag, vr, uri: None) for m in meta or []]
            references = frozenset(str(r.get("SeriesInstanceUID", "")) for ds in headers
                                   for r in ds.get("ReferencedSeriesSequence", []))
            first = headers[0] if headers else Dataset()
            when = next(((str(first.get(d)), str(first.get(t, "") or "")) for d, t in
                         (("SeriesDate", "SeriesTime"), ("ContentDate", "ContentTime")) if first.get(d)), ("", ""))
            self._seg_headers[seg_uid] = (references, *when)
        return self._seg_headers[seg_uid]

    def find_segmentations(self, study_uid: str) -> dict[str, list[PacsSeries]]:
        """The DICOM SEG series of a study by the series they reference: series UID -> its SEG series, oldest first
        (by the date and time in their headers, then UID). One search per study; each SEG's headers are asked for
        once in this source's lifetime (:meth:`_seg_header`)."""
        found = self._search_series("the segmentation search (QIDO-RS)",
                                    {"StudyInstanceUID": check_uid(study_uid, what="StudyInstanceUID"),
                                     "Modality": "SEG"}, ["SeriesDescription"])
        segs = [PacsSeries(study_uid=study_uid, series_uid=str(ds.SeriesInstanceUID), modality="SEG",
                           description=str(ds.get("SeriesDescription", ""))) for ds in found]
        headers = {s.series_uid: self._seg_header(study_uid, s.series_uid) for s in segs}
        out: dict[str, list[PacsSeries]] = {}
        for seg in sorted(segs, key=lambda s: (*headers[s.series_uid][1:], s.series_uid)):
            for referenced in headers[seg.series_uid][0]:
                out.setdefault(referenced, []).append(seg)
        return out

    def fetch_label(self, seg: PacsSeries, series: PacsSeries, reference: sitk.Image) -> sitk.Image:
        """The SEG series ``seg`` (one instance) as a label image on ``reference``, the volume imported from
        ``series`` (:func:`oncolabel.dicom_seg.label_from_segmentation`)."""
        from oncolabel.dicom_seg import label_from_segmentation

        instances = self._call(f"retrieving series {seg.series_uid} (WADO-RS)", lambda: list(
            self._client.iter_series(seg.study_uid, seg.series_uid)))
        if len(instances) != 1:
            raise InvalidInputError(f"the DICOM SEG series {seg.series_uid} holds {len(instances)} instances; one "
                                    "SEG object per series is read")
        return label_from_segmentation(instances[0], self.instance_headers(series), reference)

    def fetch_image(self, series: PacsSeries, *, work_dir: str | Path | None = None
                    ) -> tuple[sitk.Image, dict[str, Any]]:
        """The series as a volume, read from a temporary folder (in ``work_dir`` when given, removed afterwards), and
        what its values are: a PET series (modality PT) in SUVbw from its own headers
        (:func:`oncolabel.pet.read_suv_dicom`; the image marked as SUV, ``{"values": "SUVbw", "suv": how}``), since
        the headers SUV needs do not survive the NIfTI file; any other with :func:`oncolabel.io.read_image` (``{}``).

        Raises:
            PacsError: the PACS failed or returned no instance.
            ImageReadError: fewer instances came than the search listed, or they do not form one regular volume
                (the message names the series).
            SuvUnavailableError: a PET series whose headers lack what SUV needs (named).
        """
        from oncolabel.pet import read_suv_dicom

        with tempfile.TemporaryDirectory(dir=work_dir, prefix=".pacs-") as tmp:
            n = self.download(series, tmp)
            if n == 0:
                raise PacsError(f"{self.url}: series {series.series_uid} returned no instance")
            if series.n_instances is not None and n < series.n_instances:  # a volume short of slices: never stored
                raise ImageReadError(f"series {series.series_uid}: {n} of the {series.n_instances} instances its "
                                     f"search listed were retrieved from {self.url}; not imported")
            try:  # pixels in memory: the files may go
                if series.modality == "PT":
                    image, suv = read_suv_dicom(tmp)
                    return image, {"values": "SUVbw", "suv": suv}
                return read_image(tmp), {}
            except InvalidInputError as exc:
                raise type(exc)(str(exc).replace(tmp, f"series {series.series_uid}")) from exc


def list_series(source: DicomWebSource, *, modality: str | Collection[str] | None = "CT",
                query: Mapping[str, str] | None = None) -> list[PacsSeries]:
    """The series of ``modality`` (:func:`parse_modalities`: one search per modality; ``None`` or ``"any"``: every
    series holding images) matching ``query``, in study and series UID order."""
    modalities = parse_modalities(modality)
    found = [s for m in (modalities or (None,)) for s in source.find_series(modality=m, query=query)
             if modalities or s.modality not in NON_IMAGE_MODALITIES]
    return sorted(found, key=lambda s: (s.study_uid, s.series_uid))


class ArrivalCheck:
    """Whether a series has stopped arriving: a PACS receives a series over minutes, and one caught mid-transfer
    would be imported short of slices. :meth:`ready` (an ``import_series`` ``ready``) is True when the series'
    instance count is the one seen at the previous look, and records this look's count."""

    def __init__(self) -> None:
        self._counts: dict[str, int | None] = {}

    def ready(self, series: PacsSeries) -> bool:
        before = self._counts.get(series.series_uid, _UNSEEN)
        self._counts[series.series_uid] = series.n_instances
        return before == series.n_instances


def import_series(source: DicomWebSource, store: Callable[[PacsSeries, sitk.Image, dict[str, Any]], None], *,
                  present: Collection[str] = (), skip: Collection[str] = (),
                  modality: str | Collection[str] | None = "CT",
                  query: Mapping[str, str] | None = None, work_dir: str | Path | None = None,
                  max_new: int | None = None, ready: Callable[[PacsSeries], bool] | None = None,
                  progress: Callable[[int, int, PacsSeries, str], None] | None = None) -> PacsImportReport:
    """Fetch every series of :func:`list_series` (``modality``, ``query``) whose UID is neither in ``present``
    (already held) nor
    in ``skip``, and hand it to ``store(series, image, values)`` (:meth:`DicomWebSource.fetch_image`); at most
    ``max_new`` of them (in study and series UID order; the others are listed under ``deferred``, for a later
    import); one for which ``ready(series)`` is False (e.g. still arriving in the PACS) is left for a later import
    too, under ``waiting``. ``progress(k, n, series, outcome)`` is called after each of the ``n`` series to fetch
    (``outcome``: ``imported``, ``already present`` or ``not imported: <reason>``).

    A series that cannot be read as a volume, or that ``store`` refuses with an :class:`InvalidInputError`, is
    recorded under ``refused`` with the reason and the others go on; a failure of the PACS itself
    (:class:`PacsError`) stops the import and propagates.
    """
    if max_new is not None:
        check_count(max_new, what="most series to import")
    modalities = parse_modalities(modality)
    report = PacsImportReport(url=source.url, modality=",".join(modalities) if modalities else None)
    todo = []
    for series in list_series(source, modality=modalities, query=query):
        if series.series_uid in present:
            report.already_present.append(series.series_uid)
        elif series.series_uid in skip:
            continue
        elif ready is not None and not ready(series):
            report.waiting.append(series.series_uid)
        else:
            todo.append(series)
    for k, series in enumerate(todo, 1):
        uid = series.series_uid
        if max_new is not None and len(report.imported) >= max_new:
            report.deferred.extend(s.series_uid for s in todo[k - 1:])
            break
        try:
            check_uid(uid)
            store(series, *source.fetch_image(series, work_dir=work_dir))
            report.imported.append(uid)
            outcome = "imported"
        except ConflictError:  # stored meanwhile (another importer)
            report.already_present.append(uid)
            outcome = "already present"
        except InvalidInputError as exc:
            report.refused[uid] = str(exc)
            outcome = f"not imported: {exc}"
        if progress is not None:
            progress(k, len(todo), series, outcome)
    return report


@dataclass
class LabelImportReport:
    """What :func:`import_labels` did: series UID -> SEG series UID read as its label, or the reason it was not
    (``refused``, with the SEG series refused in ``refused_seg``)."""

    imported: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    refused_seg: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def import_labels(source: DicomWebSource, series: Collection[PacsSeries], *,
                  reference: Callable[[PacsSeries], sitk.Image],
                  store: Callable[[PacsSeries, PacsSeries, sitk.Image], None],
                  skip_segs: Collection[str] = ()) -> LabelImportReport:
    """For each of ``series`` with a DICOM SEG referencing it in the PACS, read the newest SEG as a label on
    ``reference(series)`` (the imported volume) and hand it to ``store(series, seg_series, label)``. A SEG that cannot
    be one label on that grid is recorded under ``refused``; one whose newest SEG is in ``skip_segs`` (refused
    before) is passed over until a newer SEG arrives. A failure of the PACS itself propagates."""
    from oncolabel.io import check_label_values

    report = LabelImportReport()
    by_study: dict[str, dict[str, list[PacsSeries]]] = {}
    for s in series:
        try:
            if s.study_uid not in by_study:  # one search per study, not per series
                by_study[s.study_uid] = source.find_segmentations(s.study_uid)
        except InvalidInputError as exc:  # e.g. no valid StudyInstanceUID recorded for the series
            report.refused[s.series_uid] = str(exc)
            continue
        segs = by_study[s.study_uid].get(s.series_uid)
        if not segs:
            continue
        newest = segs[-1]
        if newest.series_uid in skip_segs:
            continue
        try:
            label = source.fetch_label(newest, s, reference(s))
            check_label_values(sitk.GetArrayViewFromImage(label), what=f"label of {s.series_uid}")
            store(s, newest, label)
        except ConflictError:  # labelled meanwhile
            continue
        except InvalidInputError as exc:
            report.refused[s.series_uid] = str(exc)
            report.refused_seg[s.series_uid] = newest.series_uid
            continue
        report.imported[s.series_uid] = newest.series_uid
    return report


class FolderStore:
    """A folder of NIfTI images named ``<SeriesInstanceUID>.nii.gz``, and ``pacs_series.json`` recording each
    imported series (:func:`series_record`, plus the file's SHA-256). Images are written atomically and never
    replaced."""

    MANIFEST = "pacs_series.json"

    def __init__(self, folder: str | Path, *, url: str = "") -> None:
        self.folder, self.url = Path(folder), url
        if self.folder.exists() and not self.folder.is_dir():
            raise InvalidInputError(f"{self.folder}: not a folder")

    @classmethod
    def recorded_description(cls, path: str | Path) -> str | None:
        """The SeriesDescription the manifest next to ``path`` (an image file of such a folder) records for it, or
        None (no manifest, not recorded, unreadable manifest)."""
        p = Path(path)
        try:
            manifest = json.loads((p.parent / cls.MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        record = next((r for r in manifest.values() if isinstance(r, dict) and r.get("file") == p.name), None)
        return (record.get("description") or None) if record else None

    def series_uids(self) -> set[str]:
        """Case ids of the images already in the folder."""
        if not self.folder.is_dir():
            return set()
        return {case_id_of(p) for p in self.folder.iterdir()
                if p.is_file() and not p.name.startswith(".") and image_suffix(p)}

    def manifest(self) -> dict[str, Any]:
        path = self.folder / self.MANIFEST
        return json.loads(path.read_text()) if path.exists() else {}

    def _write_manifest(self, manifest: Mapping[str, Any]) -> None:
        with atomic_path(self.folder / self.MANIFEST) as tmp:
            tmp.write_text(json.dumps(manifest, indent=2) + "\n")

    def _write_new(self, path: Path, image: sitk.Image, record: Callable[[dict[str, Any]], None]) -> Path:
        """Write ``image`` at ``path`` (never replacing a file) and let ``record`` update the manifest, both under
        the folder's lock."""
        from filelock import FileLock

        path.parent.mkdir(parents=True, exist_ok=True)  # only once there is something to write
        with FileLock(str(self.folder / f".{self.MANIFEST}.lock")):
            if path.exists():
                raise ConflictError(f"{path}: already exists; nothing was overwritten")
            write_image(image, path)
            manifest = self.manifest()
            record(manifest)
            self._write_manifest(manifest)
        return path

    def add(self, series: PacsSeries, image: sitk.Image, values: Mapping[str, Any] | None = None) -> Path:
        """Write ``series``' image (``values``: what its values are, recorded with it; see
        :meth:`DicomWebSource.fetch_image`)."""
        path = self.folder / f"{check_uid(series.series_uid)}.nii.gz"

        def record(manifest: dict[str, Any]) -> None:
            manifest[series.series_uid] = {**series_record(series, self.url), **(values or {}), "file": path.name,
                                           "sha256": file_sha256(path)}

        return self._write_new(path, image, record)

    def imported_series(self) -> list[PacsSeries]:
        """The series the manifest records whose image is still in the folder."""
        present = self.series_uids()
        return [PacsSeries(study_uid=r["study_uid"], series_uid=uid, modality=r.get("modality", ""),
                           patient_id=r.get("patient_id", ""), description=r.get("description", ""))
                for uid, r in sorted(self.manifest().items()) if uid in present]

    def label_path(self, series_uid: str) -> Path:
        return self.folder / "labels" / f"{check_uid(series_uid)}.nii.gz"

    def image(self, series: PacsSeries) -> sitk.Image:
        return read_image(self.folder / f"{check_uid(series.series_uid)}.nii.gz")

    def add_label(self, series: PacsSeries, seg: PacsSeries, label: sitk.Image) -> Path:
        """Write ``label`` as ``labels/<SeriesInstanceUID>.nii.gz`` (never replacing one) and record its SEG."""
        path = self.label_path(series.series_uid)

        def record(manifest: dict[str, Any]) -> None:
            manifest.setdefault(series.series_uid, {})["label"] = {
                "seg_series_uid": seg.series_uid, "file": f"labels/{path.name}", "sha256": file_sha256(path),
                "imported_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}

        return self._write_new(path, label, record)
