"""How the module gets the repository's one HTTP client (``lib/oncolabel/client.py``) without a second copy.

Tried in order (see docs/slicer.md, "Where the client comes from"):

1. ``installed``: ``oncolabel.client`` imports as it is (the oncolabel package is installed in Slicer's Python,
   or its folder is already on ``sys.path``);
2. ``checkout``: the module runs from a checkout (``<repo>/slicer_module/OncoLabel``): ``<repo>/lib`` is put on
   ``sys.path``. Importing ``oncolabel.client`` loads only ``oncolabel/__init__.py`` (no torch, no MONAI);
3. ``bundled``: a built extension: CMake copied ``lib/oncolabel/client.py`` next to this file as
   ``_bundled_client.py`` at build time (a build product, never a second source).

The client itself needs only the standard library and ``requests`` (bundled with Slicer).
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Optional, Sequence, Tuple

from OncoLabelLib.errors import ClientUnavailableError

__all__ = ["load_client_module", "find_checkout_lib", "STRATEGIES"]

STRATEGIES = ("installed", "checkout", "bundled")
_HERE = os.path.dirname(os.path.abspath(__file__))


def find_checkout_lib(start: str = _HERE, levels: int = 5) -> Optional[str]:
    """The ``lib`` folder of the checkout holding ``start`` (the folder that has ``oncolabel/client.py``)."""
    folder = os.path.abspath(start)
    for _ in range(levels):
        candidate = os.path.join(folder, "lib")
        if os.path.isfile(os.path.join(candidate, "oncolabel", "client.py")):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return None


def _installed() -> ModuleType:
    return importlib.import_module("oncolabel.client")


def _checkout(start: str) -> ModuleType:
    lib = find_checkout_lib(start)
    if lib is None:
        raise ImportError(f"no checkout's lib/oncolabel/client.py above {start}")
    if lib not in sys.path:
        sys.path.insert(0, lib)
    return importlib.import_module("oncolabel.client")


def _bundled() -> ModuleType:
    return importlib.import_module("OncoLabelLib._bundled_client")


def load_client_module(strategies: Sequence[str] = STRATEGIES, *, start: str = _HERE) -> ModuleType:
    """The ``oncolabel.client`` module, found by the first strategy that works.

    Args:
        strategies: subset and order of :data:`STRATEGIES` to try.
        start: where the checkout search begins (the module's folder).

    Raises:
        ClientUnavailableError: no strategy found the client; the message says how to fix it.
    """
    module, _ = load_client_module_with_source(strategies, start=start)
    return module


def load_client_module_with_source(strategies: Sequence[str] = STRATEGIES, *,
                                   start: str = _HERE) -> Tuple[ModuleType, str]:
    """Like :func:`load_client_module`, also naming the strategy that worked (shown in the module's About box)."""
    tried = []
    for name in strategies:
        if name not in STRATEGIES:
            raise ValueError(f"unknown client strategy {name!r}; known: {', '.join(STRATEGIES)}")
        loaders = {"installed": _installed, "checkout": lambda: _checkout(start), "bundled": _bundled}
        try:
            module = loaders[name]()
        except ImportError as exc:
            tried.append(f"{name}: {exc}")
            continue
        return module, name
    raise ClientUnavailableError(
        "the OncoLabel client was not found: run the module from an OncoLabel checkout, or install the built "
        "extension (details: " + "; ".join(tried) + ")")
