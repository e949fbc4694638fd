"""OncoLabelLib without a server: jobs, settings and consent, result shapes, tables, arrays, error sentences,
the client loader, and the connection failures that need a peer other than our server (real HTTP stubs)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Tuple

import numpy as np
import pytest

from oncolabel.client import AuthError, OncoLabelClient, ServerRequestError, ServerUnavailableError, TrainingFailedError
from OncoLabelLib import arrays, protocol, tables
from OncoLabelLib.clientloader import find_checkout_lib, load_client_module, load_client_module_with_source
from OncoLabelLib.errors import (ClientUnavailableError, ConsentRequiredError, MissingInputError, ModuleError,
                                 NotOncoLabelServerError, ResultFormatError, UnknownModelError, VersionMismatchError,
                                 clean_detail, describe)
from OncoLabelLib.jobs import CANCELLED, DONE, FAILED, Job, JobCancelled, run_now
from OncoLabelLib.service import OncoLabelService, safe_image_id
from OncoLabelLib.settings import HISTORY_SIZE, ModuleSettings, normalize_url, server_key
from tests.slicer.conftest import MODULE_DIR, REPO, one_sentence

# --- synthetic server answers (the documented shapes of the tasks not yet on the server) --------------------------
INFO = {"name": "OncoLabel", "version": "0.1.0", "labels": ["metastasis"],
        "models": {"bone_metastasis": {"type": "segmentation", "labels": {"metastasis": 1}, "model_version": "aa33"},
                   "renal_mass": {"type": "classification", "labels": ["benign", "malignant"], "model_version": "r1"},
                   "hn_response": {"type": "classification", "inputs": ["ct", "mask"], "model_version": "h1"},
                   "pannet_ln": {"type": "classification", "model_version": "p1",
                                 "inputs": {"image": "contrast CT", "label": "tumour mask"}},
                   "lung_future": {"type": "classification", "model_version": "x"}},
        "trainers": {"bone_metastasis": {}}, "strategies": {"uncertainty": {}, "random": {}}}
RENAL = {"probabilities": {"clear_cell": 0.62, "papillary": 0.2, "chromophobe": 0.1, "oncocytoma": 0.08},
         "prediction": "clear_cell", "model_version": "r1", "notice": "research use only: test"}
PANNET = {"score": 0.71, "risk_group": "high", "recommendation": "tumour > 2 cm: resection with lymphadenectomy",
          "top_features": [{"name": "glcm_contrast", "contribution": 0.21, "value": 3.5},
                           {"feature": "diameter_mm", "weight": -0.4}, ["shape_sphericity", 0.05]],
          "model_version": "p1"}
#: the score as lib/oncolabel/scoring/rdp.py writes it
RDP = {"task": "pannet_ln", "notice": "research use only: not for clinical diagnosis or treatment decisions",
       "score": 0.42, "score_name": "RDP score", "risk_group": "low", "threshold": 0.5, "size_cm": 1.6,
       "size_source": "mask", "size_group": "<= 2 cm", "recommendation": "<= 2 cm and low risk: surveillance",
       "top_contributions": [{"feature": "original_glcm_Idm", "value": 0.8, "z": 1.2, "contribution_log_odds": -0.3},
                             {"feature": "cnn_0", "value": 1.0, "z": 0.1, "contribution_log_odds": 0.9}],
       "model_version": "p2", "provenance": {}}


# --- jobs -----------------------------------------------------------------------------------------------------------
def test_job_reports_progress_and_returns_the_result():
    gate = threading.Event()

    def work(ctx):
        ctx.progress(0.25, "a quarter")
        gate.wait(5)
        return 42

    job = Job(work, title="work").start()
    deadline = time.monotonic() + 5
    while job.poll().message != "a quarter" and time.monotonic() < deadline:
        time.sleep(0.01)
    status = job.poll()
    assert (status.state, status.fraction, status.text().startswith("a quarter (")) == ("running", 0.25, True)
    gate.set()
    assert job.wait(5).state == DONE and job.result() == 42 and job.poll().fraction == 1.0


def test_job_failure_is_kept_for_the_widget():
    job = Job(lambda ctx: 1 / 0, title="divide").start()
    assert job.wait(5).state == FAILED
    assert isinstance(job.error, ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        job.result()
    one_sentence(describe(job.error).text)


def test_cancel_hands_the_job_back_at_once_and_drops_the_late_result():
    release = threading.Event()
    started = threading.Event()
    job = Job(lambda ctx: started.set() or (release.wait(10) and "late"), title="blocked call").start()
    assert started.wait(5)
    job.cancel()
    # handed back while the worker is still blocked: cancel() did not wait for it (no timing threshold)
    assert job.poll().state == CANCELLED and not job.join(0)
    release.set()
    assert job.join(5)
    assert job.poll().state == CANCELLED
    with pytest.raises(JobCancelled):
        job.result()


def test_context_sleep_wakes_on_cancel_and_poll_never_blocks():
    def loop(ctx):
        ctx.progress(0.5, "half")
        while True:
            ctx.sleep(10)

    job = Job(loop, title="loop").start()
    deadline = time.monotonic() + 5
    while job.poll().message != "half" and time.monotonic() < deadline:
        time.sleep(0.01)
    # the worker is inside a 10 s wait; every poll answers from the last report without waiting for it
    assert all(job.poll().message == "half" for _ in range(50)) and not job.join(0)
    job.cancel()
    assert job.join(2), "the worker did not wake up on cancel"
    with pytest.raises(RuntimeError, match="already started"):
        job.start()


def test_run_now_runs_on_the_calling_thread():
    assert run_now(lambda ctx: (ctx.cancelled, threading.current_thread() is threading.main_thread())) == (False, True)


# --- settings and consent ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("typed, url", [
    ("127.0.0.1:8000", "http://127.0.0.1:8000"), (" http://host:8000/ ", "http://host:8000"),
    ("https://srv/info/", "https://srv"), ("localhost:8000/docs", "http://localhost:8000"),
])
def test_normalize_url(typed, url):
    assert normalize_url(typed) == url


def test_url_history_is_most_recent_first_bounded_and_persistent(settings):
    with pytest.raises(ValueError, match="empty"):
        settings.remember_url("  ")
    assert settings.last_url == "http://127.0.0.1:8000"
    for i in range(HISTORY_SIZE + 3):
        settings.remember_url(f"host{i}:8000")
    settings.remember_url("http://host5:8000/")
    settings.save()
    again = ModuleSettings(settings.path)
    assert again.url_history[0] == "http://host5:8000" and len(again.url_history) == HISTORY_SIZE
    assert again.url_history.count("http://host5:8000") == 1


def test_consent_is_remembered_per_server_and_never_stores_tokens(settings):
    url = "http://LocalHost:8000/"
    assert not settings.has_consent(url)
    settings.grant_consent(url, user="reader1")
    settings.save()
    again = ModuleSettings(settings.path)
    assert again.has_consent("localhost:8000") and not again.has_consent("localhost:8001")
    assert not again.has_consent("https://localhost:8000")
    assert again.consented_servers() == [server_key(url)]
    again.revoke_consent("localhost:8000")
    assert not again.has_consent(url)
    assert "token" not in open(settings.path).read().lower()


def test_unreadable_settings_file_is_ignored(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    assert ModuleSettings(str(path)).url_history == []


def test_no_client_call_without_consent(settings, tmp_path):
    """The consent check runs before any client exists: nothing can leave the machine."""

    class NoClient:
        def __getattr__(self, name):
            raise AssertionError(f"client used before consent ({name})")

    service = OncoLabelService("127.0.0.1:9", settings, client_module=NoClient())
    phases = {name: "phase.nrrd" for name in protocol.RENAL_PHASES}
    for call in (lambda: service.infer("bone_metastasis", file=str(tmp_path / "x.nrrd")),
                 lambda: service.infer("pannet_ln", file="ct.nrrd", mask_file="mask.nii.gz"),
                 lambda: service.infer_case("renal_mass", phases, case="c1"),
                 lambda: service.submit_label("case00", "label.nii.gz")):
        with pytest.raises(ConsentRequiredError) as caught:
            call()
        one_sentence(describe(caught.value).text)
    with pytest.raises(MissingInputError, match="tumour segment"):
        service.infer("pannet_ln", file="ct.nrrd")
    with pytest.raises(MissingInputError, match="select nephrographic, excretory"):
        service.infer_case("renal_mass", {"unenhanced": "a", "corticomedullary": "b"}, case="c1")


# --- protocol: server info and result shapes --------------------------------------------------------------------
def test_server_info_kinds_and_models():
    info = protocol.ServerInfo.from_info("http://h:1", INFO)
    assert [m.name for m in info.models_of(protocol.SEGMENTATION)] == ["bone_metastasis"]
    assert [m.name for m in info.models_of(protocol.CLASSIFICATION)] == ["hn_response", "lung_future", "renal_mass"]
    assert [m.name for m in info.models_of(protocol.SCORE)] == ["pannet_ln"]  # known by name, whatever the type
    assert info.model("renal_mass").labels == {"benign": 1, "malignant": 2}
    renal, hn, pannet = (info.model(n).task for n in ("renal_mass", "hn_response", "pannet_ln"))
    assert renal.uses_datastore and renal.image_inputs == protocol.RENAL_PHASES
    assert renal.datastore_layout("c7")["excretory"] == ("c7_excretory", None)
    assert renal.primary_image_id("c7") == "c7_unenhanced"
    assert hn.inputs == ("ct", "mask")  # as /info/ reports them
    assert hn.datastore_layout("c8") == {"ct": ("c8", None), "mask": ("c8", "tumour")}
    assert pannet.needs_mask and not pannet.uses_datastore and pannet.inputs == ("image",)  # dict: request parts
    assert not info.model("bone_metastasis").task.uses_datastore
    with pytest.raises(UnknownModelError, match="offers: bone_metastasis"):
        info.model("renal_mass", protocol.SEGMENTATION)


@pytest.mark.parametrize("info, error, words", [
    ({"detail": "Not Found"}, NotOncoLabelServerError, "no model list"),
    ({**INFO, "name": "MONAILabel"}, NotOncoLabelServerError, "'MONAILabel', not OncoLabel"),
    ({**INFO, "version": "0.3.0"}, VersionMismatchError, "OncoLabel 0.3.0"),
    ({**INFO, "version": ""}, VersionMismatchError, "(no version)"),
])
def test_server_info_refuses_other_servers_and_versions(info, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")) as caught:
        protocol.ServerInfo.from_info("http://h:1", info)
    one_sentence(describe(caught.value).text)


def test_classification_result_from_documented_shape(tmp_path):
    heat = tmp_path / "heat.nii.gz"
    heat.write_bytes(b"x")
    res = protocol.parse_result(protocol.CLASSIFICATION, "renal_mass", str(heat), RENAL)
    assert res.prediction == "clear_cell" and res.heatmap_path == str(heat) and res.model_version == "r1"
    assert res.heatmap_grid_of is None
    as_served = protocol.parse_result(protocol.CLASSIFICATION, "renal_mass", str(heat),
                                      {**RENAL, "calibrated": True, "heatmap": {"grid_of": "nephrographic"}})
    assert as_served.heatmap_grid_of == "nephrographic"
    assert [c for c, _ in res.ranked] == ["clear_cell", "papillary", "chromophobe", "oncocytoma"]
    no_heat = protocol.parse_result(protocol.CLASSIFICATION, "hn_response", None, {**RENAL, "notice": ""})
    assert no_heat.heatmap_path is None and no_heat.notice.startswith("research use only")


@pytest.mark.parametrize("change, words", [
    ({"probabilities": None}, "lacks 'probabilities'"),
    ({"probabilities": {"a": 0.5, "b": 1.5}, "prediction": "a"}, "outside [0, 1]"),
    ({"probabilities": {"a": "high"}, "prediction": "a"}, "non-numeric"),
    ({"prediction": "papilloma"}, "not one of its classes"),
    ({"model_version": None}, "lacks 'model_version'"),
])
def test_classification_result_errors_are_sentences(change, words):
    params = {k: v for k, v in {**RENAL, **change}.items() if v is not None}
    with pytest.raises(ResultFormatError) as caught:
        protocol.parse_result(protocol.CLASSIFICATION, "renal_mass", None, params)
    assert words in str(caught.value)
    one_sentence(describe(caught.value).text)


def test_score_result_accepts_every_documented_feature_form():
    res = protocol.parse_result(protocol.SCORE, "pannet_ln", None, PANNET)
    assert (res.score, res.risk_group, res.notice) == (0.71, "high", protocol.RESEARCH_USE_ONLY)
    assert [f.name for f in res.top_features] == ["diameter_mm", "glcm_contrast", "shape_sphericity"]
    assert res.top_features[1].value == 3.5
    served = protocol.parse_result(protocol.SCORE, "pannet_ln", None, RDP)
    assert [(f.name, f.contribution, f.value) for f in served.top_features] == [("cnn_0", 0.9, 1.0),
                                                                              ("original_glcm_Idm", -0.3, 0.8)]
    assert (served.size_cm, served.size_group, served.model_version) == (1.6, "<= 2 cm", "p2")
    assert served.warnings == () and "Warning" not in dict(tables.summary(served))
    conflict = ("the given size 1.6 cm and the mask's maximum 3D diameter 2.4 cm lie on different sides of the 2 cm "
                "rule: the suggestion follows the given size; check the size and the mask")
    warned = protocol.parse_result(protocol.SCORE, "pannet_ln", None, {**RDP, "warnings": [conflict]})
    assert dict(tables.summary(warned))["Warning"] == conflict
    as_dict = protocol.parse_result(protocol.SCORE, "pannet_ln", None, {**PANNET, "top_features": {"a": 1, "b": -2}})
    assert [(f.name, f.contribution) for f in as_dict.top_features] == [("b", -2.0), ("a", 1.0)]
    for bad in ({**PANNET, "score": float("nan")}, {k: v for k, v in PANNET.items() if k != "risk_group"},
                {**PANNET, "top_features": "glcm"}, {**PANNET, "top_features": [{"name": "x"}]}):
        with pytest.raises(ResultFormatError):
            protocol.parse_result(protocol.SCORE, "pannet_ln", None, bad)
    with pytest.raises(UnknownModelError):
        protocol.parse_result("other", "lung_future", None, {})


def test_segmentation_result_needs_a_label_image(tmp_path):
    params = {"model_version": "v", "label_names": {"background": 0, "metastasis": 1}, "lesions": []}
    with pytest.raises(ResultFormatError, match="no label image"):
        protocol.parse_result(protocol.SEGMENTATION, "bone_metastasis", None, params)
    label = tmp_path / "l.nii.gz"
    label.write_bytes(b"x")
    res = protocol.parse_result(protocol.SEGMENTATION, "bone_metastasis", str(label), params)
    assert res.label_names == {"metastasis": 1} and res.total_volume_ml is None and res.warnings == ()
    assert "Warning" not in dict(tables.summary(res))
    warned = {**params, "warnings": ["in-plane pixel size 3.00 mm lies outside the 0.60-0.90 mm of the images this "
                                     "model was trained on: its output is an extrapolation"]}
    res = protocol.parse_result(protocol.SEGMENTATION, "bone_metastasis", str(label), warned)
    assert dict(tables.summary(res))["Warning"].endswith("an extrapolation")
    with pytest.raises(ResultFormatError, match="warnings are not a list"):
        protocol.parse_result(protocol.SEGMENTATION, "bone_metastasis", str(label), {**params, "warnings": "careful"})


def test_training_progress_from_status_lines():
    """Detail lines as the server writes them (copied from a real round)."""
    status = {"id": "t1", "status": "RUNNING", "request": {"model": "bone_metastasis", "max_iterations": 120},
              "details": ["[2026-11-25 15:17:30,017] [25088] [MainThread] [INFO] (__main__:37) - Initializing App"]}
    assert protocol.TrainingProgress.from_status(status).message == "Training: starting the training process"
    status["details"].append("[..] [INFO] (oncolabel.training:175) - train bone_metastasis: {'iteration': 25, "
                             "'loss': 0.41234, 'lr': 0.0004, 'seconds': 14.4}")
    progress = protocol.TrainingProgress.from_status(status)
    assert (progress.iteration, progress.total, progress.fraction) == (25, 120, 25 / 120)
    assert progress.message == "Training: iteration 25 of 120 (loss 0.412)"
    status.update(status="DONE")
    status["details"].append('[..] [INFO] (__main__:61) - Result: {"model": "bone_metastasis", "model_version": '
                             '"2b62d47c8318", "parent_version": "aa3309e6022d", "iterations": 120}')
    done = protocol.TrainingProgress.from_status(status)
    assert done.finished and done.fraction == 1.0 and done.model_version == "2b62d47c8318"
    assert "2b62d47c8318" in done.message


def test_next_case_parsing():
    case = protocol.NextCase.from_json({"id": "case03", "name": "case03.nii.gz", "uncertainty": 0.9}, "uncertainty")
    assert (case.image_id, case.suffix, case.score) == ("case03", ".nii.gz", 0.9)
    assert protocol.NextCase.from_json({"id": "x", "name": "x.NRRD"}, "random").suffix == ".nrrd"
    assert protocol.NextCase.from_json({}, "random") is None


# --- tables and arrays --------------------------------------------------------------------------------------------
def test_classification_measurements_warnings_and_measurement_errors_are_shown():
    """What the renal and H&N models measured, why a case could not be measured, and extrapolation warnings reach
    the reader (summary lines above the table); malformed ones are refused with the task named."""
    measured = {**RENAL, "measurements": {"diameter_mm": 32.5, "log_heterogeneity": 1.8004},
                "warnings": ["log_volume_ml = 9 lies 5.0 SD from the mean of the cases the model was fitted on: it "
                             "extrapolates"]}
    res = protocol.parse_result(protocol.CLASSIFICATION, "renal_mass", None, measured)
    assert res.measurements == {"diameter_mm": 32.5, "log_heterogeneity": 1.8004} and len(res.warnings) == 1
    lines = tables.summary(res)
    assert ("Measurements", "diameter_mm 32.5, log_heterogeneity 1.8") in lines
    assert [v for k, v in lines if k == "Warning"][0].endswith("it extrapolates")
    assert lines[-1][0] == "Notice"
    failed = protocol.parse_result(protocol.CLASSIFICATION, "renal_mass", None,
                                   {**RENAL, "measurement_error": "no renal cortex outside the mass"})
    assert dict(tables.summary(failed))["Measurements"].startswith("not made (no renal cortex")
    plain = protocol.parse_result(protocol.CLASSIFICATION, "renal_mass", None, RENAL)
    assert plain.measurements == {} and plain.warnings == () and "Measurements" not in dict(tables.summary(plain))
    with pytest.raises(protocol.ResultFormatError, match="renal_mass.*measurement 'd'"):
        protocol.parse_result(protocol.CLASSIFICATION, "renal_mass", None, {**RENAL, "measurements": {"d": "x"}})
    with pytest.raises(protocol.ResultFormatError, match="warnings are not a list"):
        protocol.parse_result(protocol.CLASSIFICATION, "renal_mass", None, {**RENAL, "warnings": "careful"})


def test_tables_rank_and_mark_and_end_with_the_notice():
    res = protocol.parse_result(protocol.CLASSIFICATION, "renal_mass", None, RENAL)
    table = tables.classification_table(res)
    assert table.column("Class")[0] == "clear_cell" and table.column("Predicted") == ["yes", "", "", ""]
    assert table.column("Probability") == sorted(table.column("Probability"), reverse=True)
    score = protocol.parse_result(protocol.SCORE, "pannet_ln", None, PANNET)
    assert tables.table_for(score).column("Contribution") == [-0.4, 0.21, 0.05]
    assert math.isnan(tables.score_table(score).column("Value")[0])
    lines = dict(tables.summary(score))
    assert lines["Recommendation"].startswith("tumour > 2 cm") and lines["Risk group"] == "high"
    assert tables.summary(res)[-1] == ("Notice", "research use only: test")
    with pytest.raises(ValueError, match="has 1 values for 2 columns"):
        tables.Table("t", (tables.Column("a"), tables.Column("b")), (("x",),))


def test_array_helpers():
    with pytest.raises(MissingInputError, match="empty"):
        arrays.binary_mask(np.zeros((2, 3, 4)))
    assert arrays.binary_mask(np.array([0, 3, 0])).tolist() == [0, 1, 0]
    assert arrays.display_window(np.array([0.1, 0.7])) == (0.0, 1.0)
    assert arrays.display_window(np.array([-2.0, 5.0, np.nan])) == (-2.0, 5.0)
    assert arrays.display_window(np.array([3.0, 3.0])) == (3.0, 4.0)
    with pytest.raises(ResultFormatError, match=r"values \[7\]"):
        arrays.check_label_values(np.array([0, 1, 7]), [1])
    colors = arrays.segment_colors({"metastasis": 1, "other": 2})
    assert colors["metastasis"] == arrays.KNOWN_COLORS["metastasis"] and colors["other"] == arrays.PALETTE[1]


# --- error sentences ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exc, words", [
    (ServerUnavailableError("x: 0.0.0.0 is a listening address"), "use http://127.0.0.1:8123"),
    (ServerUnavailableError("no OncoLabel server answers"), "start it with 'oncolabel serve"),
    (ServerUnavailableError("the server did not answer within 10 s"), "did not answer in time"),
    (AuthError("refused", status=403), "refused the credentials (HTTP 403)"),
    (ServerRequestError("x", status=404, detail="Inference Task is not Initialized. There is no model 'lung' "
                                                "available"), "has no model 'lung'"),
    (ServerRequestError("x", status=404, detail="ActiveLearning Task is not Initialized. There is no such "
                                                "strategy 'best' available"), "strategy 'best'"),
    (ServerRequestError("x", status=404, detail="No Train Tasks Found"), "no training round"),
    (ServerRequestError("x", status=400, detail="/tmp/tmpab12.txt: cannot read the image (corrupt or unsupported "
                                                "file): sitk::ERROR: Unable to determine ImageIO reader"),
     "could not use the input: cannot read the image (corrupt or unsupported file)."),
    (ServerRequestError("x", status=429, detail="++++++++++ Train Task is Already Running"), "already running"),
    (ServerRequestError("x", status=413, detail="upload larger than the server limit of 32 MB"), "too large"),
    (ServerRequestError("x", status=500, detail="internal error (KeyError); see the server log"), "internal error"),
    (TrainingFailedError("training ended with ERROR: RuntimeError: boom"), "training round failed"),
    (TrainingFailedError("training cancelled by the user"), "training was cancelled"),
    (JobCancelled("x"), "Cancelled."),
    (FileNotFoundError("no such file: a.nrrd"), "a file could not be used"),
    (KeyError("surprise"), "unexpected error (KeyError)"),
])
def test_every_error_becomes_one_actionable_sentence(exc, words):
    msg = describe(exc, url="http://0.0.0.0:8123" if "0.0.0.0" in str(exc) else "http://127.0.0.1:8000")
    one_sentence(msg.text)
    assert words.lower() in msg.text.lower()
    assert type(exc).__name__ in msg.details


def test_clean_detail_and_long_messages():
    assert clean_detail("/tmp/x/a.nii.gz: not a valid NIfTI file (HTTP 400)") == "not a valid NIfTI file"
    long = describe(ServerRequestError("x", status=400, detail="word " * 200)).text
    assert len(long) <= 240 and long.endswith("…")


def test_safe_image_id():
    assert safe_image_id("CT chest (2)") == "CT_chest_2"
    with pytest.raises(MissingInputError):
        safe_image_id("///")


# --- the client: one copy, found three ways ---------------------------------------------------------------------
def test_client_loader_strategies(tmp_path):
    installed, how = load_client_module_with_source(["installed"])
    assert how == "installed" and installed.OncoLabelClient is OncoLabelClient
    assert find_checkout_lib(str(MODULE_DIR / "OncoLabelLib")) == str(REPO / "lib")
    assert load_client_module(["checkout"]).OncoLabelClient is OncoLabelClient
    with pytest.raises(ClientUnavailableError) as caught:
        load_client_module(["checkout", "bundled"], start=str(tmp_path))
    one_sentence(describe(caught.value).text)
    with pytest.raises(ValueError, match="unknown client strategy"):
        load_client_module(["pip"])


def test_bundled_client_as_the_cmake_step_installs_it(tmp_path):
    """A built extension: OncoLabelLib plus the build-time copy of lib/oncolabel/client.py, no repository."""
    shutil.copytree(MODULE_DIR / "OncoLabelLib", tmp_path / "OncoLabelLib")
    shutil.copy(REPO / "lib" / "oncolabel" / "client.py", tmp_path / "OncoLabelLib" / "_bundled_client.py")
    code = ("import sys; from OncoLabelLib.clientloader import load_client_module_with_source as f; "
            "m, how = f(['checkout', 'bundled']); print(how, m.__name__, m.OncoLabelClient('h:1').url)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["bundled", "OncoLabelLib._bundled_client", "http://h:1"], out.stderr


# --- connection failures that need a peer other than our server ---------------------------------------------------
Routes = Dict[Tuple[str, str], Tuple[int, str, bytes]]


@contextmanager
def stub_server(routes: Routes):
    """A real HTTP server on 127.0.0.1 answering fixed routes; records the requests it got."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            seen.append((self.command, self.path.split("?")[0], dict(self.headers), body))
            status, ctype, payload = routes.get((self.command, self.path.split("?")[0]),
                                                (404, "application/json", b'{"detail": "Not Found"}'))
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def _json(body: dict) -> Tuple[int, str, bytes]:
    return 200, "application/json", json.dumps(body).encode()


@pytest.mark.parametrize("routes, error, words", [
    ({("GET", "/info/"): (401, "application/json", b'{"detail": "Not authenticated"}')}, AuthError,
     "refused the credentials (HTTP 401)"),
    ({("GET", "/info/"): (200, "text/html", b"<html>router login</html>")}, NotOncoLabelServerError,
     "not as an OncoLabel server"),
    ({}, NotOncoLabelServerError, "has no /info/ page"),
    ({("GET", "/info/"): _json({**INFO, "version": "0.9.2"})}, VersionMismatchError, "OncoLabel 0.9.2"),
    ({("GET", "/info/"): _json({**INFO, "name": "radiology_app"})}, NotOncoLabelServerError, "'radiology_app'"),
])
def test_connect_to_the_wrong_peer_says_what_is_wrong(settings, routes, error, words):
    with stub_server(routes) as (url, _seen):
        job = Job(OncoLabelService(url, settings).connect, title="connect").start()
        assert job.wait(30).state == FAILED
    assert isinstance(job.error, error)
    msg = describe(job.error, url=url)
    one_sentence(msg.text)
    assert words in msg.text


def test_token_login_then_requests_carry_the_token(settings):
    routes = {("POST", "/auth/token"): _json({"access_token": "tok123", "token_type": "bearer"}),
              ("GET", "/info/"): _json(INFO)}
    with stub_server(routes) as (url, seen):
        service = OncoLabelService(url, settings)
        service.login("reader", "secret")
        info = service.connect()
    assert info.version == "0.1.0" and service.token == "tok123"
    assert b"username=reader" in seen[0][3]
    assert seen[1][2].get("Authorization") == "Bearer tok123"
    with stub_server({("POST", "/auth/token"): _json({"access_token": None})}) as (url, _seen):
        with pytest.raises(AuthError, match="no token"):
            OncoLabelService(url, settings).login("reader", "secret")


def test_training_an_unknown_model_is_refused_before_any_request(settings):
    service = OncoLabelService("127.0.0.1:9", settings)
    service.info = protocol.ServerInfo.from_info(service.url, INFO)
    with pytest.raises(ModuleError, match="cannot train 'renal_mass' \\(it trains: bone_metastasis\\)"):
        service.train("renal_mass")
