"""``oncolabel pacs-import``: copy a PACS's series (DICOMweb) into a folder of NIfTI files for headless cohorts."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.cli._common import write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pacs-import", help="copy a PACS's series (DICOMweb) into a folder of NIfTI files",
                       description="Find the series of the chosen modalities in a DICOMweb service (QIDO-RS), fetch "
                                   "those the folder does not hold yet (WADO-RS), read each with the checks of a "
                                   "DICOM folder (a PET in SUVbw from its headers) and write it as "
                                   "OUT/<SeriesInstanceUID>.nii.gz. OUT/pacs_series.json "
                                   "records each series' patient, study and source. Nothing is written to the "
                                   "PACS; a series that forms no regular volume is listed with the reason.")
    _connection_arguments(p, json_help="write the import report here")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder of NIfTI images (created)")
    p.add_argument("--modality", default="CT",
                   help="series modality or modalities to import: CT (default), PT (converted to SUVbw), CT,PT; "
                        "'any': every series holding images")
    p.add_argument("--query", action="append", default=[], metavar="KEY=VALUE",
                   help="only series matching this QIDO-RS filter (DICOM keyword, * wildcards), e.g. "
                        "StudyDescription=*SPINE* or PatientID=P001; repeatable")
    p.add_argument("--max-series", type=int, metavar="N",
                   help="import at most N new series in this run (in study and series UID order); run again for "
                        "the next ones")
    p.add_argument("--settle-s", type=float, default=0.0, metavar="S",
                   help="list the series, wait S seconds, and import only those whose instance count did not change "
                        "meanwhile (a series still arriving in the PACS would be imported truncated); default 0")
    p.add_argument("--labels", action="store_true",
                   help="also read each imported series' newest DICOM SEG in the PACS (a reader's annotation) as "
                        "OUT/labels/<SeriesInstanceUID>.nii.gz, for `oncolabel train --data OUT [--labelled-only]` or "
                        "evaluate")
    p.set_defaults(func=run)

    e = sub.add_parser("pacs-export", help="send label images back to the PACS as DICOM SEG (DICOMweb STOW-RS)",
                       description="Each LABEL, named <SeriesInstanceUID>.nii.gz / .nrrd as pacs-import names the "
                                   "images, must lie on that series' grid (an `oncolabel infer` output of the "
                                   "imported image does); it is stored in the PACS as a DICOM SEG referencing the "
                                   "series' instances. Exit status 1 if any label was not stored.")
    _connection_arguments(e, json_help="write label -> SEG series UID here")
    e.add_argument("labels", nargs="+", type=Path, metavar="LABEL", help="label image(s) (0 background)")
    e.add_argument("--task", default="bone-metastasis", help="segmentation task naming the label values")
    e.add_argument("--manual", action="store_true",
                   help="the labels were drawn or corrected by a reader (SEMIAUTOMATIC; default: the algorithm's "
                        "output, AUTOMATIC)")
    e.set_defaults(func=run_export)


def _connection_arguments(p: argparse.ArgumentParser, *, json_help: str) -> None:
    p.add_argument("url", metavar="URL", help="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web (Orthanc)")
    p.add_argument("--timeout-s", type=float, default=60.0, help="per-request timeout (seconds)")
    p.add_argument("--json", type=Path, metavar="FILE", help=json_help)


def run_export(args: argparse.Namespace) -> int:
    import SimpleITK as sitk

    from oncolabel import __version__
    from oncolabel.errors import InvalidInputError, NotFoundError
    from oncolabel.io import case_id_of, check_label_values, read_image
    from oncolabel.pacs import DicomWebSource, check_uid
    from oncolabel.tasks import get_task

    spec = get_task(args.task)
    if spec.kind != "segmentation":
        raise InvalidInputError(f"task {spec.cli_name!r} is not a segmentation task")
    segments = {int(v): name for name, v in spec.labels.items() if int(v) != 0}
    source = DicomWebSource(args.url, timeout_s=args.timeout_s)
    stored: dict[str, str] = {}
    failed: dict[str, str] = {}
    for path in args.labels:
        try:
            uid = case_id_of(path)
            check_uid(uid, what=f"{path.name}: the file name (the series' SeriesInstanceUID, as pacs-import names "
                                "images)")
            label = read_image(path)
            check_label_values(sitk.GetArrayViewFromImage(label), what=f"label {path}")
            seg_uid = source.store_segmentation(
                source.find(uid), label, segments=segments, manual=args.manual,
                algorithm=f"OncoLabel {spec.name}", version=__version__)
        except (InvalidInputError, NotFoundError) as exc:
            failed[str(path)] = str(exc)
            print(f"warning: {path} not stored: {exc}", file=sys.stderr)
            continue
        stored[str(path)] = seg_uid
        print(f"{path}: stored as DICOM SEG series {seg_uid} ({source.url})")
    if args.json:
        write_json({"notice": RESEARCH_USE_ONLY, "url": source.url, "stored": stored, "failed": failed}, args.json)
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    from oncolabel.errors import InvalidInputError
    from oncolabel.pacs import (ArrivalCheck, DicomWebSource, FolderStore, PacsSeries, import_labels, import_series,
                                list_series, parse_modalities, parse_query)

    query, modalities = parse_query(args.query), parse_modalities(args.modality)
    if not 0 <= args.settle_s < float("inf"):
        raise InvalidInputError(f"--settle-s {args.settle_s!r}: must be >= 0 seconds")
    source = DicomWebSource(args.url, timeout_s=args.timeout_s)
    store = FolderStore(args.out, url=source.url)
    arrivals = ArrivalCheck() if args.settle_s > 0 else None
    if arrivals is not None:  # the instance counts now, against those the import's own search finds
        for series in list_series(source, modality=modalities, query=query):
            arrivals.ready(series)
        time.sleep(args.settle_s)

    def progress(k: int, n: int, series: PacsSeries, outcome: str) -> None:  # a line per series, as it goes
        warning = "warning: " if outcome.startswith("not imported") else ""
        print(f"{warning}[{k}/{n}] series {series.series_uid} {outcome}", file=sys.stderr, flush=True)

    report = import_series(source, store.add, present=store.series_uids(),
                           modality=modalities, query=query,
                           max_new=args.max_series, ready=arrivals.ready if arrivals else None,
                           progress=progress)
    payload = {"notice": RESEARCH_USE_ONLY, **report.to_dict(), "folder": str(args.out)}
    print(f"{args.out}: {len(report.imported)} series imported, {len(report.already_present)} already there, "
          f"{len(report.refused)} refused ({source.url})"
          + (f"; {len(report.deferred)} left for a later run (--max-series)" if report.deferred else "")
          + (f"; {len(report.waiting)} still arriving (run again later)" if report.waiting else ""))
    if args.labels:
        unlabelled = [s for s in store.imported_series() if not store.label_path(s.series_uid).exists()]
        labels = import_labels(source, unlabelled, reference=store.image, store=store.add_label)
        for uid, reason in labels.refused.items():
            print(f"warning: the segmentation of series {uid} not imported: {reason}", file=sys.stderr)
        payload["labels"] = labels.to_dict()
        print(f"{args.out}: {len(labels.imported)} label(s) imported from DICOM SEG, {len(labels.refused)} refused")
    if args.json:
        write_json(payload, args.json)
    return 0
