"""``oncolabel serve --pacs URL``: the server's datastore fed from a PACS (DICOMweb), in the background.

The datastore stays the local folder ``--studies DIR`` (labels, their versions and the models live there, so
nothing depends on the PACS once a series is in); a thread imports each series of the chosen modality that the
datastore does not hold yet (:func:`oncolabel.pacs.import_series`, image id = SeriesInstanceUID, the series' patient,
study and source in the image's info), at start and then every ``poll_s`` seconds. A series is imported once the
PACS reports the same number of instances at two successive polls: a PACS receives a series over minutes, and a
series caught mid-transfer was imported truncated, for good (with ``poll_s`` 0, one import, at once). A series
imported once is not
imported again (an image removed from the datastore stays removed, across restarts); a series that forms no regular
volume is refused once, with the reason, and not fetched again until the server restarts. The mirror's state is in
``<studies>/.oncolabel/pacs_mirror.json``.

With ``--pacs-store-labels`` (conf ``pacs_store_labels``), :class:`PacsLabelExporter` also stores each final label
submitted for an image from that PACS back in it, as a DICOM SEG referencing the series (a new SEG series per
submitted version, as the datastore keeps every version); the SEG's series UID, or the reason it was not stored, is
recorded in the label's info. The label itself is stored locally first, whatever the PACS does.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import SimpleITK as sitk

from oncolabel.errors import InvalidInputError, OncoLabelError, PacsError
from oncolabel.io import atomic_path, read_image, write_image
from oncolabel.pacs import (ArrivalCheck, DicomWebSource, PacsImportReport, PacsSeries, check_count, check_query,
                            import_labels, import_series, parse_modalities, series_record)
from oncolabel.server.datastore import OncoDatastore

logger = logging.getLogger(__name__)

#: ``source`` in the info of a final label read from a DICOM SEG in the PACS
LABEL_FROM_PACS = "dicomweb-seg"


class PacsMirror:
    """Imports a PACS's series into the datastore at ``studies`` (see the module docstring).

    Args:
        source: the DICOMweb service.
        studies: the server's datastore folder.
        modality: series modality or modalities to import (:func:`oncolabel.pacs.parse_modalities`; ``None``:
            every series holding images).
        query: QIDO-RS filters the series must match (:func:`oncolabel.pacs.check_query`).
        labels: also read the newest DICOM SEG of each imported image without a final label as its final label (a
            SEG refused once is not read again; a newer SEG of the series is).
        poll_s: seconds between imports; ``0`` imports once.
        max_series: import at most this many series from the PACS in all (those removed from the datastore since
            count too; in study and series UID order); ``None``: no limit.
    """

    def __init__(self, source: DicomWebSource, studies: str | Path, *, modality: str | Sequence[str] | None = "CT",
                 query: Mapping[str, str] | None = None, poll_s: float = 60.0, labels: bool = False,
                 max_series: int | None = None) -> None:
        if poll_s < 0:
            raise InvalidInputError(f"PACS poll interval {poll_s!r}: must be >= 0 seconds")
        if max_series is not None:
            check_count(max_series, what="most PACS series")
        self.source, self.studies, self.poll_s = source, Path(studies), float(poll_s)
        self.modality = parse_modalities(modality)
        self.query = check_query(query or {})
        self.labels = bool(labels)
        self.max_series = max_series
        self.deferred: list[str] = []
        self.waiting: list[str] = []  # series whose instance count changed since the previous poll
        self.labels_imported: dict[str, str] = {}
        self.labels_refused: dict[str, str] = {}
        self.labels_refused_seg: dict[str, str] = {}
        self._arrivals = ArrivalCheck()  # the instance counts seen at the previous poll
        self.work_dir = self.studies / ".oncolabel"
        self.status_path = self.work_dir / "pacs_mirror.json"
        self.refused: dict[str, str] = {}
        self.imported: list[str] = self._imported_before()
        self.runs = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _imported_before(self) -> list[str]:
        """Series this datastore already imported from this PACS (the state file of earlier runs)."""
        try:
            state = json.loads(self.status_path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            logger.warning("%s unreadable (%s): every series the datastore lacks is imported", self.status_path, exc)
            return []
        return list(state.get("imported", [])) if state.get("pacs_url") == self.source.url else []

    def _via_file(self, image: sitk.Image, series: PacsSeries, use: Callable[[str], Any]) -> None:
        """Hand ``image`` to ``use`` as a temporary NIfTI file (the datastore takes files), removed afterwards."""
        with tempfile.TemporaryDirectory(dir=self.work_dir, prefix=".pacs-") as tmp:
            use(str(write_image(image, Path(tmp) / f"{series.series_uid}.nii.gz")))

    def _store(self, datastore: OncoDatastore, series: PacsSeries, image: sitk.Image,
               values: Mapping[str, Any]) -> None:
        info = {**series_record(series, self.source.url), **values}
        self._via_file(image, series, lambda path: datastore.add_image(series.series_uid, path, info))

    def run_once(self) -> PacsImportReport:
        """One import; raises :class:`PacsError` when the PACS fails."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        datastore = OncoDatastore(str(self.studies))
        max_new = None if self.max_series is None else max(0, self.max_series - len(self.imported))
        report = import_series(self.source, lambda s, img, values: self._store(datastore, s, img, values),
                               present=set(datastore.list_images()), skip=set(self.refused) | set(self.imported),
                               modality=self.modality, query=self.query, work_dir=self.work_dir, max_new=max_new,
                               ready=self._arrivals.ready if self.poll_s else None, progress=self._log_progress)
        self.refused.update(report.refused)
        self.imported.extend(report.imported)
        if report.imported:
            logger.info("imported %d series from %s", len(report.imported), self.source.url)
        if report.deferred and len(report.deferred) != len(self.deferred):
            logger.warning("%d series of %s not imported: --pacs-max-series %d reached", len(report.deferred),
                           self.source.url, self.max_series)
        self.deferred = list(report.deferred)
        self.waiting = list(report.waiting)
        if self.labels:
            self._import_labels(datastore)
        return report

    @staticmethod
    def _log_progress(k: int, n: int, series: PacsSeries, outcome: str) -> None:
        level = logging.WARNING if outcome.startswith("not imported") else logging.INFO
        logger.log(level, "PACS series %s (%d of %d): %s", series.series_uid, k, n, outcome)

    def _import_labels(self, datastore: OncoDatastore) -> None:
        waiting = []
        for uid in datastore.get_unlabeled_images(label_tag="final"):
            info = datastore.get_image_info(uid)
            if info.get("source") == "dicomweb" and info.get("pacs_url") == self.source.url:
                waiting.append(PacsSeries(study_uid=str(info.get("study_uid", "")), series_uid=uid,
                                          patient_id=str(info.get("patient_id", ""))))

        def store(series: PacsSeries, seg: PacsSeries, label: sitk.Image) -> None:
            info = {"source": LABEL_FROM_PACS, "pacs_url": self.source.url, "seg_series_uid": seg.series_uid}
            self._via_file(label, series, lambda path: datastore.save_label(series.series_uid, path, "final", info))

        report = import_labels(self.source, waiting, store=store, skip_segs=set(self.labels_refused_seg.values()),
                               reference=lambda s: read_image(datastore.get_image_uri(s.series_uid)))
        self.labels_imported.update(report.imported)
        for uid in report.imported:  # a newer SEG of a series whose earlier one was refused
            self.labels_refused.pop(uid, None)
            self.labels_refused_seg.pop(uid, None)
        self.labels_refused.update(report.refused)
        self.labels_refused_seg.update(report.refused_seg)
        for uid, reason in report.refused.items():
            logger.warning("the segmentation of PACS series %s not imported: %s", uid, reason)

    def status(self) -> dict[str, Any]:
        return {"pacs_url": self.source.url, "modality": list(self.modality) if self.modality else "any",
                "query": self.query, "poll_s": self.poll_s,
                "max_series": self.max_series, "deferred": list(self.deferred), "waiting": list(self.waiting),
                "runs": self.runs,
                "updated_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "imported": list(self.imported), "refused": dict(self.refused), "labels": self.labels,
                "labels_imported": dict(self.labels_imported), "labels_refused": dict(self.labels_refused),
                "last_error": self.last_error}

    def _write_status(self) -> None:
        with atomic_path(self.status_path) as tmp:
            tmp.write_text(json.dumps(self.status(), indent=2) + "\n")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
                self.last_error = None
            except PacsError as exc:
                self.last_error = str(exc)
                logger.warning("PACS import: %s (retrying in %g s)", exc, self.poll_s)
            except Exception as exc:  # keep serving; the state file and the log say what happened
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("PACS import failed")
            self.runs += 1
            try:
                self._write_status()
            except OSError as exc:
                logger.warning("cannot write %s: %s", self.status_path, exc)
            if self.poll_s == 0:
                return
            self._stop.wait(self.poll_s)

    def start(self) -> None:
        """Import in a daemon thread (at once, then every ``poll_s`` seconds)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="oncolabel-pacs-mirror", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


class PacsLabelExporter:
    """The datastore's ``on_final_label``: a final label of an image imported from ``source`` is stored there as a
    DICOM SEG (a reader's label: SEMIAUTOMATIC); returns what goes into the label's info.

    Args:
        source: the PACS.
        segments: label value -> segment name (e.g. ``{1: "metastasis"}``).
        algorithm: the name recorded in the SEG's algorithm identification.
    """

    def __init__(self, source: DicomWebSource, segments: Mapping[int, str], *, algorithm: str = "OncoLabel") -> None:
        self.source, self.segments, self.algorithm = source, dict(segments), algorithm

    def __call__(self, image_id: str, image_info: Mapping[str, Any], label_path: str,
                 label_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
        from oncolabel import __version__

        if image_info.get("source") != "dicomweb" or (label_info or {}).get("source") == LABEL_FROM_PACS:
            return {}  # not a PACS image, or a label that came from the PACS (it is there already)
        if image_info.get("pacs_url") != self.source.url:
            return {"pacs_seg_error": f"the image came from {image_info.get('pacs_url')}, not {self.source.url}"}
        series = PacsSeries(study_uid=str(image_info.get("study_uid", "")), series_uid=image_id)
        try:
            uid = self.source.store_segmentation(series, read_image(label_path), segments=self.segments, manual=True,
                                                 algorithm=self.algorithm, version=__version__)
        except OncoLabelError as exc:
            logger.warning("final label of %s not stored in the PACS: %s", image_id, exc)
            return {"pacs_seg_error": str(exc)}
        return {"pacs_seg_series_uid": uid,
                "pacs_seg_stored_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
