"""``oncolabel serve``: the MONAI Label server with the OncoLabel app."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="start the MONAI Label server with the OncoLabel app",
                       description="Same as `monailabel start_server --app apps/oncolabel --studies DIR`, with "
                                   "OncoLabel's fixes (pydicom 3, MLflow, non-blocking endpoints, 4xx errors).")
    p.add_argument("--studies", required=True, metavar="DIR", help="datastore folder (NIfTI/NRRD images)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--app-dir", metavar="DIR", help="MONAI Label app folder (default: apps/oncolabel)")
    p.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="app setting, e.g. --conf device cuda --conf model.bone_metastasis my.pt")
    p.add_argument("--pacs", metavar="URL", help="feed the datastore from this PACS (DICOMweb root, e.g. "
                   "http://127.0.0.1:8042/dicom-web): its series are imported in the background, at start and "
                   "every --pacs-poll-s seconds")
    p.add_argument("--pacs-modality", default="CT",
                   help="modality or modalities of the series to import: CT (default), PT (in SUVbw), CT,PT; 'any': "
                        "every series holding images")
    p.add_argument("--pacs-query", action="append", default=[], metavar="KEY=VALUE",
                   help="only series matching this QIDO-RS filter (DICOM keyword, * wildcards), e.g. "
                        "StudyDescription=*SPINE*; repeatable")
    p.add_argument("--pacs-poll-s", type=float, default=60.0, help="seconds between imports (0: once)")
    p.add_argument("--pacs-max-series", type=int, metavar="N",
                   help="import at most N series from the PACS in all (in study and series UID order; removed ones "
                        "count too); default: every matching series")
    p.add_argument("--pacs-labels", action="store_true",
                   help="read a PACS image's newest DICOM SEG (a reader's annotation) as its final label while it has "
                        "none")
    p.add_argument("--pacs-store-labels", action="store_true",
                   help="also store each submitted final label of a PACS image back in the PACS as a DICOM SEG")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: tracking off)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from oncolabel.pacs import parse_query
    from oncolabel.server.app import serve

    print(f"OncoLabel server on http://{args.host}:{args.port} (studies: {args.studies}); Ctrl-C stops it",
          flush=True)
    conf = dict(args.conf)
    if args.pacs_store_labels:
        conf["pacs_store_labels"] = "true"
    serve(args.studies, host=args.host, port=args.port, app_dir=args.app_dir, conf=conf,
          tracking_uri=args.tracking_uri, log_level=args.log_level, pacs_url=args.pacs,
          pacs_modality=args.pacs_modality,
          pacs_poll_s=args.pacs_poll_s, pacs_query=parse_query(args.pacs_query), pacs_labels=args.pacs_labels,
          pacs_max_series=args.pacs_max_series)
    return 0
