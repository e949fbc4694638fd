"""Plain-Python logic of the OncoLabel Slicer module: usable, and tested, without 3D Slicer.

Modules:
    clientloader: where the repository's one HTTP client (``oncolabel.client``) comes from.
    errors:       the module's exceptions and :func:`describe`, the error-to-sentence mapping.
    settings:     server URL history and remembered consent.
    protocol:     every server JSON shape (info, results, training status): the one place to adjust.
    service:      the workflow calls (connect, next case, infer, submit, train) for background jobs.
    jobs:         background jobs with progress and cancel, polled by the GUI.
    tables:       result tables and summaries as plain data.
    arrays:       numpy conversions (masks, heat-map windows, label checks, segment colours).
    mrml:         file <-> MRML node conversions (imports ``slicer``/``vtk`` inside its functions).

Nothing here imports ``slicer``, ``qt``, ``ctk`` or ``vtk`` at import time, and the syntax stays within
Python 3.9 (Slicer 5.8).
"""

from __future__ import annotations

__all__ = ["clientloader", "errors", "settings", "protocol", "service", "jobs", "tables", "arrays", "mrml"]
