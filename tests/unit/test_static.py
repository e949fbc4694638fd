"""Static checks over the source tree for bugs that tests cannot provoke reliably."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_no_array_view_of_a_temporary_image():
    """An array view of an image returned by a call views the memory of an image freed right after the call (SimpleITK
    does not keep it alive): reading the view is a use-after-free (garbage values or a segmentation fault). Keep the image
    in a variable, or use ``GetArrayFromImage``."""
    pattern = re.compile(r"GetArrayViewFromImage\(\s*[\w.]+\(")
    offenders = []
    for folder in ("lib", "apps", "bench", "slicer_module", "tests"):
        for path in (REPO / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "array views of temporary images:\n" + "\n".join(offenders)
