"""The module's Lib against the real OncoLabel server on 127.0.0.1, driven as the widget drives it: every call is a
background job polled like the QTimer does; results go into a real MRML scene where slicer-core is installed."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, List, Tuple

import numpy as np
import pytest
import SimpleITK as sitk

from oncolabel.client import OncoLabelClient, ServerRequestError, ServerUnavailableError
from oncolabel.server.process import ServerProcess, free_port
from OncoLabelLib import mrml, tables
from OncoLabelLib.errors import ConsentRequiredError, UnknownModelError, describe
from OncoLabelLib.jobs import CANCELLED, DONE, FAILED, Job, JobStatus
from OncoLabelLib.protocol import (CLASSIFICATION, MASK_INPUT, SCORE, SEGMENTATION, ClassificationResult,
                                   ScoreResult)
from OncoLabelLib.service import OncoLabelService
from OncoLabelLib.settings import ModuleSettings
from tests.conftest import toy_ct
from tests.slicer.conftest import one_sentence, slicer_core

pytestmark = pytest.mark.integration

MODEL = "bone_metastasis"


@pytest.fixture(scope="module")
def server(tmp_path_factory, toy_checkpoint):
    """The server over three toy CTs; case02 already has a final label (so a training round has data)."""
    root = tmp_path_factory.mktemp("slicer_srv")
    studies, truth = root / "studies", root / "truth"
    studies.mkdir()
    truth.mkdir()
    for i in range(3):
        image, label = toy_ct(200 + i, lesion=i != 1)
        sitk.WriteImage(image, str(studies / f"case{i:02d}.nii.gz"))
        sitk.WriteImage(label, str(truth / f"case{i:02d}.nii.gz"))
    with ServerProcess(studies, conf={"model.bone_metastasis": str(toy_checkpoint), "max_upload_mb": "32"}) as srv:
        srv.root, srv.studies, srv.truth = root, studies, truth
        srv.client.save_label("case02", str(truth / "case02.nii.gz"))
        yield srv


@pytest.fixture
def service(server, tmp_path) -> OncoLabelService:
    settings = ModuleSettings(str(tmp_path / "settings.json"))
    settings.grant_consent(server.url)
    svc = OncoLabelService(server.url, settings)
    svc.connect()
    return svc


def run(fn: Callable[[Any], Any], *, timeout: float = 300.0) -> Tuple[Job, List[JobStatus]]:
    """Run ``fn`` as the widget does: a background job polled every 20 ms; the GUI side must never wait."""
    job = Job(fn, title="test").start()
    statuses: List[JobStatus] = []
    slowest = 0.0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = time.perf_counter()
        status = job.poll()
        slowest = max(slowest, time.perf_counter() - t)
        if not statuses or statuses[-1].message != status.message:
            statuses.append(status)
        if status.finished:
            break
        time.sleep(0.02)
    # a poll that waited on the worker's HTTP call would take as long as the call; 0.5 s leaves room for a loaded
    # CI machine's scheduling (poll() itself only reads the last report: tests/slicer/test_lib.py)
    assert slowest < 0.5, f"poll() blocked the GUI thread for {slowest:.3f} s"
    assert job.poll().finished, f"job still running after {timeout} s: {job.poll()}"
    return job, statuses


def done(fn: Callable[[Any], Any], **kw: Any) -> Any:
    job, _ = run(fn, **kw)
    if job.poll().state != DONE:
        raise AssertionError(f"job ended {job.poll().state}: {job.error!r}")
    return job.result()


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing())
            and np.allclose(a.GetOrigin(), b.GetOrigin()) and np.allclose(a.GetDirection(), b.GetDirection()))


# --- connect, next case, infer, submit ------------------------------------------------------------------------------
def test_connect_lists_the_segmentation_task(server, tmp_path):
    service = OncoLabelService(server.url.replace("http://", "") + "/info/", ModuleSettings(str(tmp_path / "s.json")))
    job, _ = run(service.connect)
    info = job.result()
    assert (info.name, info.version, service.url) == ("OncoLabel", "0.1.0", server.url)
    model = info.model(MODEL, SEGMENTATION)
    assert model.labels == {"metastasis": 1} and model.model_version and not model.task.uses_datastore
    assert {"uncertainty", "random"} <= set(info.strategies) and MODEL in info.trainers


def test_next_case_comes_from_the_uncertainty_strategy(service, server, tmp_path):
    case, path = done(lambda ctx: service.next_case("uncertainty", str(tmp_path / "cases"), ctx))
    assert case.image_id in {"case00", "case01"} and case.strategy == "uncertainty" and case.score is not None
    assert Path(path).read_bytes() == (server.studies / f"{case.image_id}.nii.gz").read_bytes()


def test_segmentation_result_names_its_model_version(service, server):
    result = done(lambda ctx: service.infer(MODEL, image_id="case01", ctx=ctx))
    label = sitk.ReadImage(result.label_path)
    assert same_grid(label, sitk.ReadImage(str(server.studies / "case01.nii.gz")))
    assert result.label_names == {"metastasis": 1}
    assert result.model_version == service.info.models[MODEL].model_version
    assert result.notice.startswith("research use only")
    assert len(tables.lesion_table(result).rows) == len(result.lesions)


def test_submit_label_of_a_datastore_image(service, server, tmp_path):
    answer = done(lambda ctx: service.submit_label("case01", str(server.truth / "case01.nii.gz"), annotator="r1",
                                                   ctx=ctx))
    assert answer["image"] == "case01"
    stored = OncoLabelClient(server.url).download_label("case01", str(tmp_path / "stored.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(stored)),
                          sitk.GetArrayFromImage(sitk.ReadImage(str(server.truth / "case01.nii.gz"))))


@pytest.mark.slicer
def test_local_volume_to_segmentation_node_correct_and_submit(service, server, mrml_scene, tmp_path):
    """The radiologist's loop in MRML: upload a loaded CT, get a segmentation node, correct it, submit it."""
    slicer = slicer_core()
    import vtk

    image, truth = toy_ct(300, lesion=True)
    sitk.WriteImage(image, str(tmp_path / "local_ct.nii.gz"))
    sitk.WriteImage(truth, str(tmp_path / "truth.nii.gz"))
    ct = mrml.load_volume(mrml_scene, str(tmp_path / "local_ct.nii.gz"), "local_ct")
    upload = mrml.write_volume(ct, str(tmp_path / "upload.nrrd"))  # what the logic sends
    result = done(lambda ctx: service.infer(MODEL, file=upload, ctx=ctx))
    seg = mrml.segmentation_from_label_file(mrml_scene, result.label_path, result.label_names,
                                            name=f"local_ct {result.task}", reference_volume=ct,
                                            attributes={"ModelVersion": result.model_version})
    assert seg.GetAttribute("OncoLabel.ModelVersion") == result.model_version
    segment_id = seg.GetSegmentation().GetSegmentIdBySegmentName("metastasis")
    assert segment_id, "the task's label is a named segment even when the model found nothing"
    # what the model found, measured on the CT grid, is what the server reported
    found = sitk.GetArrayFromImage(sitk.ReadImage(mrml.segmentation_to_label_file(
        seg, ct, result.label_names, str(tmp_path / "as_found.nii.gz"))))
    assert found.sum() * np.prod(image.GetSpacing()) / 1000.0 == pytest.approx(result.total_volume_ml, abs=1e-3)
    # the correction (as Segment Editor leaves it): the segment now holds the true lesion
    truth_node = mrml.load_volume(mrml_scene, str(tmp_path / "truth.nii.gz"), "truth", labelmap=True)
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(truth_node, seg, ids)
    corrected = mrml.segmentation_to_label_file(seg, ct, result.label_names, str(tmp_path / "corrected.nii.gz"))
    answer = done(lambda ctx: service.submit_label("local_ct", corrected, image_path=upload, ctx=ctx))
    assert answer["image"] == "local_ct"
    stored = sitk.ReadImage(OncoLabelClient(server.url).download_label("local_ct", str(tmp_path / "s.nii.gz")))
    assert np.array_equal(sitk.GetArrayFromImage(stored), sitk.GetArrayFromImage(truth))
    assert same_grid(stored, image)


# --- training ---------------------------------------------------------------------------------------------------------
def test_training_round_reports_progress_and_the_new_model_serves(service):
    before = service.info.models[MODEL].model_version
    job, statuses = run(lambda ctx: service.train(MODEL, max_iterations=4, params={"batch_size": 2}, ctx=ctx),
                        timeout=240)
    assert job.poll().state == DONE, job.error
    progress = job.result()
    messages = [s.message for s in statuses]
    assert messages[0] in ("test", "Starting a training round of bone_metastasis")
    assert any(m.startswith("Training: ") for m in messages), messages
    assert progress.state == "DONE" and progress.fraction == 1.0
    assert progress.model_version and progress.model_version != before
    assert service.info.models[MODEL].model_version == progress.model_version  # /info/ refreshed
    result = done(lambda ctx: service.infer(MODEL, image_id="case00", ctx=ctx))
    assert result.model_version == progress.model_version


def test_cancel_stops_the_training_round_on_the_server(service, server):
    job = Job(lambda ctx: service.train(MODEL, max_iterations=100000, params={"batch_size": 2}, ctx=ctx),
              title="long training").start()
    deadline = time.monotonic() + 60
    while not job.poll().message.startswith("Training") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.poll().state == "running", job.error
    job.cancel()
    assert job.poll().state == CANCELLED  # handed back at once; the worker stops the round on the server below
    assert job.join(60), "the worker did not stop the round"
    status = OncoLabelClient(server.url).train_status()
    assert status["status"] == "STOPPED" and status["request"]["max_iterations"] == 100000


def test_cancel_during_an_inference_hands_control_back_at_once(service, tmp_path):
    image, _ = toy_ct(77, shape=(160, 256, 256), spacing=(0.8, 0.8, 1.0))  # seconds of work, even on an idle machine
    sitk.WriteImage(image, str(tmp_path / "big.nii.gz"))
    job = Job(lambda ctx: service.infer(MODEL, file=str(tmp_path / "big.nii.gz"), ctx=ctx), title="infer").start()
    time.sleep(0.2)
    assert job.poll().state == "running"
    job.cancel()
    assert job.poll().state == CANCELLED
    assert job.join(120)
    assert job.poll().state == CANCELLED  # the late answer was dropped


# --- every error the radiologist can meet, as one sentence ---------------------------------------------------------
def failed(fn: Callable[[Any], Any]) -> BaseException:
    job, _ = run(fn, timeout=120)
    assert job.poll().state == FAILED, job.poll()
    return job.error


def test_server_not_running(settings):
    url = f"http://127.0.0.1:{free_port()}"
    exc = failed(OncoLabelService(url, settings, timeout=2).connect)
    assert isinstance(exc, ServerUnavailableError)
    text = describe(exc, url=url).text
    one_sentence(text)
    assert f"No OncoLabel server answers at {url}" in text and "oncolabel serve" in text


def test_listening_address_instead_of_a_server_address(server, settings):
    url = f"http://0.0.0.0:{server.port}"
    text = describe(failed(OncoLabelService(url, settings).connect), url=url).text
    one_sentence(text)
    assert f"use http://127.0.0.1:{server.port}" in text


def test_unknown_model(server, service, settings):
    unconnected = OncoLabelService(server.url, settings)
    exc = failed(lambda ctx: unconnected.infer("no_such_model", image_id="case00", ctx=ctx))
    assert isinstance(exc, ServerRequestError) and exc.status == 404
    text = describe(exc, url=server.url).text
    one_sentence(text)
    assert "has no model 'no_such_model'" in text
    local = failed(lambda ctx: service.infer("no_such_model", image_id="case00", ctx=ctx))
    assert isinstance(local, UnknownModelError) and "it offers: bone_metastasis" in describe(local).text


@pytest.mark.parametrize("call, words", [
    (lambda s, p: s.infer(MODEL, file=str(p / "notes.txt")),
     "could not use the input: the uploaded file: cannot read the image"),
    (lambda s, p: s.submit_label("case00", str(p / "label.nii.gz")), "could not use the input"),
    (lambda s, p: s.infer(MODEL, image_id="missing_case"), "could not find"),
    (lambda s, p: s.next_case("best_first", str(p)), "no active-learning strategy 'best_first'"),
])
def test_bad_requests_are_one_sentence(service, tmp_path, call, words):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "label.nii.gz").write_bytes(b"not nifti" * 40)
    exc = failed(lambda ctx: call(service, tmp_path))
    assert isinstance(exc, ServerRequestError) and 400 <= exc.status < 500
    msg = describe(exc, url=service.url)
    one_sentence(msg.text)
    assert words in msg.text, msg.text
    assert str(exc.status) in msg.details


# --- the official MONAI Label client still works against our server ------------------------------------------------
def test_monailabel_client_segments_on_our_server(server, tmp_path):
    """MONAI Label's Slicer plugin uses this client code (the plugin is not shipped in the wheel; the client is)."""
    from monailabel.client import MONAILabelClient

    ml = MONAILabelClient(server.url, tmpdir=str(tmp_path))
    assert MODEL in ml.info()["models"]
    sample = ml.next_sample("random", {"seed": 1})
    label_file, params = ml.infer(MODEL, sample["id"], {})
    assert same_grid(sitk.ReadImage(label_file), sitk.ReadImage(str(server.studies / f"{sample['id']}.nii.gz")))
    assert params["model_version"]
    saved = ml.save_label(sample["id"], str(server.truth / f"{sample['id']}.nii.gz"), tag="final")
    assert saved["image"] == sample["id"]


# --- classification and scoring: against the server when it offers them -------------------------------------------
def test_inputs_the_server_reads_from_its_datastore(service, server, tmp_path):
    """The plumbing of multi-input tasks (phases as ``<case>_<phase>``, an image with its ``tumour`` label), run here
    with the segmentation model standing in for a classifier: real uploads, real label tags, one inference."""
    image, label = toy_ct(600, lesion=True)
    files = {"unenhanced": str(tmp_path / "u.nii.gz"), "excretory": str(tmp_path / "e.nii.gz"),
             "ct": str(tmp_path / "u.nii.gz"), "mask": str(tmp_path / "m.nii.gz")}
    sitk.WriteImage(image, files["unenhanced"])
    sitk.WriteImage(sitk.Cast(image, sitk.sitkFloat32) + 10.0, files["excretory"])
    sitk.WriteImage(label, files["mask"])
    model = service.info.models[MODEL]
    client = OncoLabelClient(server.url)
    for inputs in (("unenhanced", "excretory"), ("ct", "mask")):
        service.info.models[MODEL] = replace(model, task=replace(model.task, inputs=inputs))
        first = done(lambda ctx: service.infer_case(MODEL, {k: files[k] for k in inputs}, case="Renal case", ctx=ctx))
        again = done(lambda ctx: service.infer_case(MODEL, {k: files[k] for k in inputs}, case="Renal case", ctx=ctx))
        assert first.model_version == again.model_version  # the second run reused the stored inputs (409)
        stored = sorted(i for i in client.datastore()["objects"] if i.startswith("Renal_case_"))
        assert stored, client.datastore()
    service.info.models[MODEL] = model
    case_ids = {i.rsplit("_", 1)[0] for i in stored if i.endswith(("_unenhanced", "_excretory"))}
    assert len(case_ids) == 1, stored
    case_id = case_ids.pop()
    assert {f"{case_id}_unenhanced", f"{case_id}_excretory"} <= set(stored)
    with_mask = [i for i in stored if not i.endswith(("_unenhanced", "_excretory"))]
    assert len(with_mask) == 1
    mask = client.download_label(with_mask[0], str(tmp_path / "back.nii.gz"), tag="tumour")
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(mask)), sitk.GetArrayFromImage(label))


def test_classification_and_scoring_tasks_the_server_offers(service, tmp_path):
    models = service.info.models_of(CLASSIFICATION) + service.info.models_of(SCORE)
    if not models:
        pytest.skip(f"the server offers no classification or scoring task yet ({', '.join(service.info.models)}); "
                    "their Lib logic is tested on the documented result shapes in test_lib.py")
    image, label = toy_ct(400, lesion=True)
    sitk.WriteImage(sitk.Cast(image, sitk.sitkFloat32), str(tmp_path / "image.nrrd"))
    sitk.WriteImage(label, str(tmp_path / "mask.nii.gz"))
    image_path, mask_path = str(tmp_path / "image.nrrd"), str(tmp_path / "mask.nii.gz")
    for model in models:
        task = model.task
        if task.uses_datastore:
            files = {name: mask_path if name == MASK_INPUT else image_path for name in task.inputs}
            result = done(lambda ctx: service.infer_case(model.name, files, case="selftest", ctx=ctx))
        elif model.name == "pet_lymphoma":  # a CT is not an SUV PET: the server must refuse it in one sentence
            exc = failed(lambda ctx: service.infer(model.name, file=image_path, ctx=ctx))
            assert "suv" in str(exc).lower()
            continue
        else:
            result = done(lambda ctx: service.infer(model.name, file=image_path,
                                                    mask_file=mask_path if task.needs_mask else None, ctx=ctx))
        assert result.model_version and "research use only" in result.notice.lower()
        if isinstance(result, ClassificationResult):
            assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=0.01)
            assert tables.classification_table(result).column("Class")[0] == result.prediction
        else:
            assert isinstance(result, ScoreResult) and result.recommendation and result.risk_group


# --- the module's own Logic (OncoLabel.py) on a real scene against the real server ---------------------------------
@pytest.mark.slicer
def test_module_logic_runs_the_radiologists_loop(module_under_test, server, mrml_scene, tmp_path):
    logic = module_under_test.OncoLabelLogic(settingsPath=str(tmp_path / "settings.json"))
    assert logic.defaultSettingsPath() == str(tmp_path / "OncoLabel.json")
    failed_connect = failed(logic.connectJob("http://0.0.0.0:8000").fn)
    assert "use http://127.0.0.1:8000" in describe(failed_connect).text
    info = done(logic.connectJob(server.url.replace("http://", ""), token="").fn)
    assert logic.settings.url_history[0] == server.url and MODEL in info.models
    assert logic.task(MODEL).image_inputs == ("image",)

    # a CT loaded from disk: consent first, then upload, segment, correct (here: as found) and submit
    image, _ = toy_ct(500, lesion=True)
    sitk.WriteImage(image, str(tmp_path / "Local CT.nii.gz"))
    ct = mrml.load_volume(mrml_scene, str(tmp_path / "Local CT.nii.gz"), "Local CT")
    assert logic.needsUpload(ct)
    with pytest.raises(ConsentRequiredError):
        logic.segmentJob(MODEL, ct)
    logic.grantConsent()
    assert module_under_test.ModuleSettings(logic.settings.path).has_consent(server.url)
    job = logic.segmentJob(MODEL, ct)
    result = done(job.fn)
    assert not list(Path(logic.workDir).glob("*.nrrd")), "the upload copy outlived its job"
    seg = logic.showSegmentation(result, ct)
    assert seg.GetName() == "Local CT bone_metastasis" and not Path(result.label_path).exists()
    assert seg.GetAttribute("OncoLabel.ModelVersion") == result.model_version
    answer = done(logic.submitJob(seg, ct).fn)
    assert answer["image"] == "Local_CT" and not logic.needsUpload(ct)

    # the next case comes from the server: no upload, so no consent needed for segmenting it
    fresh, _ = toy_ct(501, lesion=False)
    sitk.WriteImage(fresh, str(tmp_path / "fresh.nii.gz"))
    OncoLabelClient(server.url).upload_image(str(tmp_path / "fresh.nii.gz"), image_id="logic_case")
    logic.forgetConsent()
    case_volume = logic.loadCase(*done(logic.nextCaseJob("random").fn))
    assert case_volume.GetAttribute("OncoLabel.Server") == server.url and not logic.needsUpload(case_volume)
    assert case_volume.GetAttribute("OncoLabel.ImageId") == case_volume.GetName()
    result = done(logic.segmentJob(MODEL, case_volume).fn)
    assert result.model_version == logic.service.info.models[MODEL].model_version

    # classification and score results (shapes of the tasks to come) into nodes; unknown tasks are refused
    logic.grantConsent()
    with pytest.raises(UnknownModelError, match="no classification model 'no_such_classifier'"):
        logic.classifyJob("no_such_classifier", [ct])
    heat_path = tmp_path / "heat.nii.gz"
    heat = sitk.Cast(image, sitk.sitkFloat32) * 0 + 0.25
    sitk.WriteImage(heat, str(heat_path))
    classification = ClassificationResult("hn_response", {"responder": 0.8, "non_responder": 0.2}, "responder", "h1",
                                          str(heat_path), "research use only")
    composite = slicer_core().vtkMRMLSliceCompositeNode()
    mrml_scene.AddNode(composite)
    heatmap = logic.showHeatmap(classification, ct, 0.4, True)
    assert mrml.same_geometry(heatmap, ct) and composite.GetForegroundVolumeID() == heatmap.GetID()
    logic.setHeatmapDisplay(heatmap, ct, 0.4, False)
    assert composite.GetForegroundOpacity() == 0.0
    table = logic.showTable(tables.classification_table(classification))
    assert table.GetCellText(0, 0) == "responder"
    assert logic.showTable(tables.score_table(ScoreResult("pannet_ln", 0.4, "low", "observe", [], "p", "n")),
                           table) is table
