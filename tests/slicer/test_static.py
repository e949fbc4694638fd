"""Static checks of the Slicer glue that 3D Slicer itself would only reveal at run time: the .ui against the
parameter node, CMake file lists (and the real CMake run with Slicer's macros stubbed), Python 3.9 / 3.12+
compatibility (grammar, stdlib, real interpreters where present), and one copy of the HTTP client."""

from __future__ import annotations

import ast
import builtins
import glob
import os
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from typing import Dict, List

import pytest

from OncoLabelLib.protocol import RENAL_PHASES
from tests.slicer.conftest import MODULE_DIR, REPO

EXTENSION_DIR = REPO / "slicer_module"
MODULE_PY = MODULE_DIR / "OncoLabel.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "OncoLabel.ui"
LIB_DIR = MODULE_DIR / "OncoLabelLib"
CLIENT = REPO / "lib" / "oncolabel" / "client.py"
MODULE_FILES = sorted(p for p in EXTENSION_DIR.rglob("*.py") if "__pycache__" not in p.parts)
#: parameter-node fields the widget sets in code (no widget of their own)
CODE_ONLY_FIELDS = {"heatmapVolume", "resultTable"}
SCENE_WIDGETS = ("qMRMLNodeComboBox", "qMRMLSegmentSelectorWidget")


def parameter_fields() -> Dict[str, ast.AnnAssign]:
    tree = ast.parse(MODULE_PY.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "OncoLabelParameterNode")
    assert any(ast.unparse(d) == "parameterNodeWrapper" for d in cls.decorator_list)
    return {n.target.id: n for n in cls.body if isinstance(n, ast.AnnAssign)}


def ui_widgets() -> Dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(UI_FILE).getroot().iter("widget")}


def ui_property(widget: ET.Element, name: str):
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            child = prop[0]
            return [s.text for s in child] if child.tag == "stringlist" else child.text
    return None


# --- the .ui and the parameter node -------------------------------------------------------------------------------
def test_ui_parses_and_is_the_modules_top_widget():
    root = ET.parse(UI_FILE).getroot()
    assert root.tag == "ui" and root.findtext("class") == "OncoLabel"
    top = root.find("widget")
    assert (top.get("class"), top.get("name")) == ("qMRMLWidget", "OncoLabel")
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    assert {c for c in used if c.startswith(("ctk", "qMRML"))} <= declared


def _connector_accepts(widget_class: str, annotation: str) -> bool:
    """Mirrors Slicer's parameterNodeWrapper GUI connectors (they compare the widget type exactly)."""
    choice = "Choice(" in annotation
    bounded = "WithinRange(" in annotation or ("Minimum(" in annotation and "Maximum(" in annotation)
    if "vtkMRML" in annotation:
        return widget_class == "qMRMLNodeComboBox"
    base = re.sub(r"Annotated\[(\w+),.*", r"\1", annotation)
    if widget_class == "QComboBox":
        return choice and base in ("str", "int", "float", "bool")
    allowed = {"bool": ("QCheckBox", "QPushButton"), "int": ("QSpinBox", "QSlider"),
               "float": ("QDoubleSpinBox", "ctkSliderWidget"), "str": ("QLineEdit", "QTextEdit")}.get(base, ())
    if widget_class in ("ctkSliderWidget", "QSlider") and not bounded:
        return False
    return widget_class in allowed


def test_every_parameter_name_in_the_ui_is_a_field_of_a_fitting_type():
    fields = parameter_fields()
    bound = {}
    for name, widget in ui_widgets().items():
        param = ui_property(widget, "SlicerParameterName")
        if param is None:
            continue
        assert param in fields, f"{name}: SlicerParameterName {param!r} is not a parameter-node field"
        annotation = ast.unparse(fields[param].annotation)
        assert _connector_accepts(widget.get("class"), annotation), (name, widget.get("class"), annotation)
        if widget.get("class") == "qMRMLNodeComboBox":
            assert ui_property(widget, "nodeTypes") == [annotation], name
        bound[param] = name
    assert set(fields) - set(bound) == CODE_ONLY_FIELDS
    for phase in RENAL_PHASES:
        assert "phase" + phase.capitalize() in bound, phase


def test_parameter_node_annotations_evaluate_on_python_39():
    """``get_type_hints`` evaluates them at run time: no ``X | Y``, only names the module imports."""
    tree = ast.parse(MODULE_PY.read_text(encoding="utf-8"))
    imported = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imported |= {(a.asname or a.name).split(".")[0] for a in node.names}
    for name, field in parameter_fields().items():
        for node in ast.walk(field.annotation):
            assert not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)), name
            if isinstance(node, ast.Name) and node.id not in dir(builtins):
                assert node.id in imported, f"{name}: {node.id} is not imported at module level"


def test_scene_widgets_get_the_scene():
    root = ET.parse(UI_FILE).getroot()
    connected = {(c.findtext("sender"), c.findtext("signal"), c.findtext("receiver"), c.findtext("slot"))
                 for c in root.iter("connection")}
    for name, widget in ui_widgets().items():
        if widget.get("class") in SCENE_WIDGETS:
            assert ("OncoLabel", "mrmlSceneChanged(vtkMRMLScene*)", name, "setMRMLScene(vtkMRMLScene*)") in connected


def test_the_module_uses_only_widgets_and_fields_that_exist():
    tree = ast.parse(MODULE_PY.read_text(encoding="utf-8"))
    widgets, fields = set(ui_widgets()), set(parameter_fields())
    wrapper_api = {"connectGui", "disconnectGui", "getValue", "setValue", "parameterNode", "default", "StartModify",
                   "EndModify", "AddObserver", "RemoveObserver", "Modified"}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = ast.unparse(node.value)
        if owner == "self.ui":
            assert node.attr in widgets, f"self.ui.{node.attr} is not in OncoLabel.ui"
        if owner in ("self._parameterNode", "p"):
            assert node.attr in fields | wrapper_api, f"{owner}.{node.attr} is not a parameter-node field"


def test_module_has_the_four_slicer_classes_and_a_real_self_test():
    tree = ast.parse(MODULE_PY.read_text(encoding="utf-8"))
    classes = {n.name: [ast.unparse(b) for b in n.bases] for n in tree.body if isinstance(n, ast.ClassDef)}
    assert classes["OncoLabel"] == ["ScriptedLoadableModule"]
    assert classes["OncoLabelWidget"] == ["ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    assert classes["OncoLabelLogic"] == ["ScriptedLoadableModuleLogic"]
    assert classes["OncoLabelTest"] == ["ScriptedLoadableModuleTest"]
    test_cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "OncoLabelTest")
    methods = {f.name: ast.unparse(f) for f in test_cls.body if isinstance(f, ast.FunctionDef)}
    for name in (m for m in methods if m.startswith("test_")):
        assert f"self.{name}()" in methods["runTest"], name
    assert "ONCOLABEL_SERVER_URL" in methods["test_AllTasksAgainstServer"]
    samples = glob.glob(str(MODULE_DIR / ".." / ".." / "sample-data" / "bone-metastasis" / "images" / "*.nii.gz"))
    assert samples, "the self-test's sample data moved"
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "OncoLabelLogic")
    assert not re.search(r"\b(qt\.|Display\(|QMessageBox|QInputDialog)", ast.unparse(logic)), "dialogs in the logic"


# --- CMake ---------------------------------------------------------------------------------------------------------
def cmake_list(name: str) -> List[str]:
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    body = re.search(rf"set\({name}\s+(.*?)\)", text, re.S).group(1)
    return [item.replace("${MODULE_NAME}", "OncoLabel") for item in body.split()]


def test_cmake_lists_every_file_of_the_module():
    on_disk_py = {p.relative_to(MODULE_DIR).as_posix() for p in MODULE_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    on_disk_res = {p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()}
    assert set(cmake_list("MODULE_PYTHON_SCRIPTS")) == on_disk_py
    assert set(cmake_list("MODULE_PYTHON_RESOURCES")) == on_disk_res
    top = (EXTENSION_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf"set\(EXTENSION_{key} ", top), key
    assert "add_subdirectory(OncoLabel)" in top and "find_package(Slicer REQUIRED)" in top


STUB_SLICER = """
set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/empty.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/empty.cmake")
set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/empty.cmake")
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "lib/Slicer-5.8/qt-scripted-modules")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "lib/Slicer-5.8/qt-scripted-modules")
function(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(M "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  foreach(f ${M_SCRIPTS} ${M_RESOURCES})
    if(NOT EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/${f}")
      message(FATAL_ERROR "listed file missing: ${f}")
    endif()
    get_filename_component(d "${f}" DIRECTORY)
    install(FILES "${CMAKE_CURRENT_SOURCE_DIR}/${f}" DESTINATION "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/${d}")
  endforeach()
endfunction()
function(slicer_add_python_unittest)
  cmake_parse_arguments(T "" "SCRIPT" "" ${ARGN})
  file(WRITE "${CMAKE_BINARY_DIR}/unittest.txt" "${T_SCRIPT}")
endfunction()
"""


def test_cmake_build_bundles_the_one_client_and_the_installed_module_finds_it(tmp_path):
    """Real CMake over our CMakeLists, Slicer's macros stubbed; then the installed tree imports its client copy."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    stub = tmp_path / "SlicerStub"
    stub.mkdir()
    (stub / "SlicerConfig.cmake").write_text(STUB_SLICER)
    (stub / "empty.cmake").write_text("")
    build, prefix = tmp_path / "build", tmp_path / "install"
    env = {**os.environ, "CFLAGS": "", "CXXFLAGS": ""}
    for cmd in ([cmake, "-S", str(EXTENSION_DIR), "-B", str(build), f"-DSlicer_DIR={stub}", "-DBUILD_TESTING=ON"],
                [cmake, "--install", str(build), "--prefix", str(prefix)]):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
    built = build / "lib/Slicer-5.8/qt-scripted-modules/OncoLabelLib/_bundled_client.py"
    installed = prefix / "lib/Slicer-5.8/qt-scripted-modules"
    assert built.read_bytes() == CLIENT.read_bytes()
    assert (installed / "OncoLabelLib" / "_bundled_client.py").read_bytes() == CLIENT.read_bytes()
    assert (build / "unittest.txt").read_text(encoding="utf-8") == "OncoLabel.py"
    for listed in cmake_list("MODULE_PYTHON_SCRIPTS") + cmake_list("MODULE_PYTHON_RESOURCES"):
        assert (installed / listed).is_file(), listed
    code = ("from OncoLabelLib.clientloader import load_client_module_with_source as f; m, how = f(['checkout', "
            "'bundled']); print(how, m.OncoLabelClient('0.0.0.0:1').url)")
    run = subprocess.run([sys.executable, "-c", code], cwd=installed, capture_output=True, text=True, timeout=60)
    assert run.stdout.split() == ["bundled", "http://0.0.0.0:1"], run.stderr


# --- Python 3.9 (Slicer 5.8) and 3.12+ (Slicer 5.10) ---------------------------------------------------------------
FORBIDDEN_MODULES = {"cgi", "cgitb", "tomllib", "distutils", "imghdr", "asyncore", "asynchat", "smtpd", "telnetlib",
                     "pipes", "crypt", "nntplib", "sndhdr", "uu", "xdrlib", "audioop", "chunk", "msilib", "nis",
                     "ossaudiodev", "spwd", "sunau", "mailcap"}
NEWER_NAMES = {"StrEnum", "TypeAlias", "ParamSpec", "TypeGuard", "Self", "Never", "LiteralString", "Required",
               "NotRequired", "Unpack", "override", "pairwise", "ExceptionGroup", "TaskGroup", "UTC", "chdir",
               "batched", "TypeIs", "ReadOnly"}
TYPE_NAMES = {"None", "int", "str", "float", "bool", "bytes", "list", "dict", "tuple", "set", "type"}


@pytest.mark.parametrize("path", MODULE_FILES + [CLIENT], ids=lambda p: str(p.relative_to(REPO)))
def test_sources_stay_within_python_39_and_312(path):
    src = path.read_text(encoding="utf-8")
    ast.parse(src, feature_version=(3, 9))
    tree = ast.parse(src)
    annotations = set()
    for node in ast.walk(tree):
        for ann in [getattr(node, "annotation", None), getattr(node, "returns", None)]:
            if ann is not None:
                annotations |= {id(n) for n in ast.walk(ann)}
    for node in ast.walk(tree):
        assert type(node).__name__ not in ("Match", "TryStar", "TypeAlias"), f"{path.name}:{node.lineno}"
        if isinstance(node, ast.Import):
            names = {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names = {(node.module or "").split(".")[0]} | {a.name for a in node.names}
        else:
            names = set()
        assert not names & FORBIDDEN_MODULES, f"{path.name}: {names & FORBIDDEN_MODULES}"
        assert not names & NEWER_NAMES, f"{path.name}: {names & NEWER_NAMES}"
        if isinstance(node, ast.Attribute):
            assert node.attr not in NEWER_NAMES, f"{path.name}:{node.lineno}: {node.attr}"
        if isinstance(node, ast.keyword):
            assert node.arg not in ("strict", "kw_only", "slots"), f"{path.name}: {node.arg}= is Python 3.10+"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and id(node) not in annotations:
            operands = {ast.unparse(node.left), ast.unparse(node.right)}
            assert not operands & TYPE_NAMES, f"{path.name}:{node.lineno}: runtime X | Y union"
    if path != CLIENT:
        assert "from __future__ import annotations" in src, path.name


def test_lib_imports_no_slicer_qt_ctk_or_vtk_at_import_time():
    for path in LIB_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only: mrml imports inside its functions
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = {a.name.split(".")[0] for a in node.names} if isinstance(node, ast.Import) else \
                    {(node.module or "").split(".")[0]}
                assert not mods & {"slicer", "qt", "ctk", "vtk", "vtkmodules", "requests"}, f"{path.name}: {mods}"


def other_pythons() -> List[str]:
    found = []
    for version in ("3.9", "3.12", "3.13"):
        candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")))
        candidates += [shutil.which(f"python{version}")]
        for path in filter(None, candidates):
            if subprocess.run([path, "-c", "pass"], capture_output=True, timeout=30).returncode == 0:
                found.append(path)
                break
    return found


SMOKE = """
import json, sys
from OncoLabelLib import protocol, tables, jobs, settings, errors, service, clientloader
info = protocol.ServerInfo.from_info("http://h:1", {"name": "OncoLabel", "version": "0.1.0", "models": {
    "renal_mass": {"type": "classification"}}})
res = protocol.parse_result("classification", "renal_mass", None, {"probabilities": {"a": 0.3, "b": 0.7},
                            "prediction": "b", "model_version": "v"})
job = jobs.Job(lambda ctx: tables.classification_table(res).column("Class"), title="t").start()
assert job.wait(10).state == "done", job.error
s = settings.ModuleSettings(sys.argv[1]); s.grant_consent("h:1"); s.save()
print(json.dumps([info.models_of("classification")[0].task.inputs, job.result(),
                  errors.describe(errors.ModuleError("x")).text, settings.ModuleSettings(sys.argv[1]).has_consent("h:1")]))
"""


@pytest.mark.parametrize("python", other_pythons() or [None], ids=lambda p: os.path.basename(p or "none"))
def test_real_python_39_and_312_plus_compile_and_run_the_lib(python, tmp_path):
    if python is None:
        pytest.skip("no Python 3.9, 3.12 or 3.13 interpreter on this machine (checked PATH and ~/.pyenv)")
    files = [str(p) for p in MODULE_FILES] + [str(CLIENT)]
    compiled = subprocess.run([python, "-c", "import py_compile, sys; [py_compile.compile(f, cfile=sys.argv[1] + "
                               "'/x.pyc', doraise=True) for f in sys.argv[2:]]", str(tmp_path)] + files,
                              capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stderr
    out = subprocess.run([python, "-c", SMOKE, str(tmp_path / "s.json")], cwd=MODULE_DIR, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ('[["unenhanced", "corticomedullary", "nephrographic", "excretory"], ["b", "a"], '
                                  '"X.", true]')


# --- the client: one copy ------------------------------------------------------------------------------------------
def test_one_http_client_in_the_repository():
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    definers = [f for f in listed if f.endswith(".py") and (REPO / f).is_file()
                and re.search(r"^class OncoLabelClient\b", (REPO / f).read_text(encoding="utf-8", errors="replace"), re.M)]
    assert definers == ["lib/oncolabel/client.py"]
    assert not list(EXTENSION_DIR.rglob("_bundled_client.py")), "a build product in the source tree"
    for path in MODULE_FILES:
        src = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(import requests|from requests)", src, re.M), f"{path.name} talks HTTP itself"


def test_icon_is_a_real_png():
    data = (MODULE_DIR / "Resources" / "Icons" / "OncoLabel.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (128, 128)
