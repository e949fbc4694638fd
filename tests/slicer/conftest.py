"""Fixtures of the Slicer-module tests: the module's Lib on sys.path, a real MRML scene (PyPI slicer-core)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "slicer_module" / "OncoLabel"
if str(MODULE_DIR) not in sys.path:  # as Slicer does for a scripted module's folder
    sys.path.insert(0, str(MODULE_DIR))


def slicer_core():
    """The ``slicer`` package of PyPI slicer-core, or skip the test with the reason."""
    try:
        import slicer
    except ImportError:
        pytest.skip("PyPI slicer-core is not installed (pip install slicer-core): MRML conversions not tested")
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("the installed 'slicer' package is not slicer-core (no vtkMRMLScene)")
    return slicer


@pytest.fixture
def mrml_scene():
    """An empty MRML scene with the Segmentations logic registered (as Slicer's startup does)."""
    slicer = slicer_core()
    scene = slicer.vtkMRMLScene()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    yield scene
    logic.SetMRMLScene(None)
    scene.Clear(1)


@pytest.fixture
def settings(tmp_path):
    """Module settings in a temporary file."""
    from OncoLabelLib.settings import ModuleSettings

    return ModuleSettings(str(tmp_path / "settings.json"))


def one_sentence(text: str) -> None:
    """Assert ``text`` is one sentence a radiologist can read: one line, no raw payloads or tracebacks."""
    assert text and "\n" not in text, text
    assert text[0].isupper() or text[0].isdigit(), text
    assert text.endswith((".", "…")), text
    for raw in ("Traceback", "{\"detail\"", "sitk::ERROR", "/tmp/tmp", "HTTP 500"):
        assert raw not in text, text
