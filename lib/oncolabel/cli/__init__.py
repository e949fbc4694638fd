"""Headless command line: ``oncolabel <command> ...``.

Each sub-module registers its commands through ``register(subparsers)``; this is the only place that
prints to the terminal or chooses an exit status. Library errors (:class:`oncolabel.errors.OncoLabelError`)
become one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from oncolabel import RESEARCH_USE_ONLY, __version__
from oncolabel.errors import OncoLabelError

# sub-modules of oncolabel.cli that register commands, in help order
_COMMAND_MODULES = ("demo", "phantoms", "infer", "batch", "evaluate", "train", "fit_filter", "serve", "pacs",
                    "score", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oncolabel", description=f"OncoLabel {__version__} ({RESEARCH_USE_ONLY})")
    parser.add_argument("--version", action="version", version=f"oncolabel {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"oncolabel.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"oncolabel.cli.{name}":
                continue  # command not built (yet) in this checkout
            raise
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except OncoLabelError as exc:
        print(f"oncolabel {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"oncolabel {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
