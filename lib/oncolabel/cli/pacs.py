"""``oncolabel pacs-import``: copy a PACS's series (DICOMweb) into a folder of NIfTI files for headless cohorts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.cli._common import write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pacs-import", help="copy a PACS's series (DICOMweb) into a folder of NIfTI files",
                       description="Find the series of one modality in a DICOMweb service (QIDO-RS), fetch those "
                                   "the folder does not hold yet (WADO-RS), read each with the checks of a DICOM "
                                   "folder and write it as OUT/<SeriesInstanceUID>.nii.gz. OUT/pacs_series.json "
                                   "records each series' patient, study and source. Nothing is written to the "
                                   "PACS; a series that forms no regular volume is listed with the reason.")
    p.add_argument("url", metavar="URL", help="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web (Orthanc)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder of NIfTI images (created)")
    p.add_argument("--modality", default="CT", help="series modality to import (default CT; 'any' for all)")
    p.add_argument("--timeout-s", type=float, default=60.0, help="per-request timeout (seconds)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the import report here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from oncolabel.pacs import DicomWebSource, FolderStore, import_series

    source = DicomWebSource(args.url, timeout_s=args.timeout_s)
    store = FolderStore(args.out, url=source.url)
    report = import_series(source, store.add, present=store.series_uids(),
                           modality=None if args.modality.lower() == "any" else args.modality)
    for uid, reason in report.refused.items():
        print(f"warning: series {uid} not imported: {reason}", file=sys.stderr)
    if args.json:
        write_json({"notice": RESEARCH_USE_ONLY, **report.to_dict(), "folder": str(args.out)}, args.json)
    print(f"{args.out}: {len(report.imported)} series imported, {len(report.already_present)} already there, "
          f"{len(report.refused)} refused ({source.url})")
    return 0
