"""Fixtures of the Slicer-module tests: the module's Lib on sys.path, a real MRML scene (PyPI slicer-core)."""

from __future__ import annotations

import importlib.util
import sys
import types
import unittest
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


@pytest.fixture
def module_under_test(mrml_scene, tmp_path, monkeypatch):
    """OncoLabel.py itself: real MRML (slicer-core) and ``slicer.util``; stand-ins only for Slicer's GUI-side Python
    that slicer-core lacks (``qt``, the ScriptedLoadableModule base classes, ``slicer.i18n``,
    ``slicer.parameterNodeWrapper``, ``slicer.app``). Its Logic class then runs for real; its Widget needs Qt."""
    slicer = slicer_core()

    class Base:
        def __init__(self, *args, **kwargs) -> None:
            pass

    stand_ins = {
        "qt": types.ModuleType("qt"),
        "slicer.i18n": types.SimpleNamespace(tr=lambda text: text),
        "slicer.parameterNodeWrapper": types.SimpleNamespace(parameterNodeWrapper=lambda cls: cls,
                                                             Choice=lambda *a: None, WithinRange=lambda *a: None),
        "slicer.ScriptedLoadableModule": types.SimpleNamespace(
            ScriptedLoadableModule=type("ScriptedLoadableModule", (Base,), {}),
            ScriptedLoadableModuleWidget=type("ScriptedLoadableModuleWidget", (Base,), {}),
            ScriptedLoadableModuleLogic=type("ScriptedLoadableModuleLogic", (Base,), {}),
            ScriptedLoadableModuleTest=unittest.TestCase),
    }
    for name, module in stand_ins.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(slicer, "mrmlScene", mrml_scene, raising=False)
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(slicerUserSettingsFilePath=str(tmp_path / "Slicer.ini")),
                        raising=False)
    spec = importlib.util.spec_from_file_location("OncoLabel_under_test", MODULE_DIR / "OncoLabel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
