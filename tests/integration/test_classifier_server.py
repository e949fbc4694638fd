"""The real server serving the three classification tasks: infer, class labels from radiologists, one training
round, active-learning strategies."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from oncolabel.client import ServerRequestError
from oncolabel.inference import default_checkpoint_path
from oncolabel.io import check_same_geometry, read_image
from oncolabel.server.process import ServerProcess
from oncolabel.tasks import get_task

pytestmark = pytest.mark.integration

TASKS = ("renal_mass", "pet_lymphoma", "hn_response")


def _models(root: Path) -> dict[str, str]:
    """The shipped models; a toy model for any task whose shipped model is missing from this checkout."""
    from tests.unit.classification.conftest import train_toy_model

    out = {}
    for task in TASKS:
        try:
            default_checkpoint_path(get_task(task))
        except Exception:  # noqa: BLE001 - not shipped here: train a contract-test model
            out[f"model.{task}"] = str(train_toy_model(task, root))
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from oncolabel.phantoms.hn_response import write_hn_response_cohort
    from oncolabel.phantoms.io import read_classification_cohort
    from oncolabel.phantoms.pet_lymphoma import write_pet_lymphoma_cohort
    from oncolabel.phantoms.renal_mass import PHASES, write_renal_mass_cohort

    root = tmp_path_factory.mktemp("clsrv")
    studies = root / "studies"
    studies.mkdir()
    cases: dict[str, list[dict]] = {}
    write_renal_mass_cohort(root / "rm", 2, 4)
    cases["renal_mass"] = read_classification_cohort(root / "rm")
    for it in cases["renal_mass"]:
        for phase in PHASES:
            shutil.copyfile(it[phase], studies / f"{it['case_id']}_{phase}.nii.gz")
    write_pet_lymphoma_cohort(root / "pl", 4, 3)
    cases["pet_lymphoma"] = read_classification_cohort(root / "pl")
    for it in cases["pet_lymphoma"]:
        shutil.copyfile(it["image"], studies / f"{it['case_id']}.nii.gz")
    write_hn_response_cohort(root / "hn", 2, 3)
    cases["hn_response"] = read_classification_cohort(root / "hn")
    for it in cases["hn_response"]:
        shutil.copyfile(it["image"], studies / f"{it['case_id']}.nii.gz")
    conf = {"tasks": ",".join(TASKS), **_models(root)}
    with ServerProcess(studies, conf=conf) as srv:
        for it in cases["hn_response"]:  # the tumour contours the hn task needs
            srv.client.save_label(it["case_id"], it["mask"], tag="tumour")
        srv.root, srv.studies, srv.cases = root, studies, cases
        yield srv


def _empty_label(image_path: str, dest: Path) -> str:
    img = read_image(image_path)
    lab = sitk.Image(img.GetSize(), sitk.sitkUInt8)
    lab.CopyInformation(img)
    sitk.WriteImage(lab, str(dest))
    return str(dest)


def test_info_lists_the_classifiers(server):
    info = server.client.info()
    for task in TASKS:
        model = info["models"][task]
        assert model["type"] == "classification" and model["model_version"]
        assert set(model["labels"]) == set(get_task(task).labels)
        assert {f"{task}_uncertainty", f"{task}_random"} <= set(info["strategies"])


@pytest.mark.parametrize("task, image_id, grid_of", [
    ("renal_mass", "rm_s4_0000_corticomedullary", "corticomedullary"),
    ("renal_mass", "rm_s4_0001_unenhanced", "unenhanced"),
    ("pet_lymphoma", "pl_s3_0000", "image"),
    ("hn_response", "hn_s3_0000", "image"),
])
def test_infer_returns_calibrated_json_and_a_heatmap_on_the_input_grid(server, task, image_id, grid_of, tmp_path):
    heat_path, params = server.client.infer(task, image_id, label_out=str(tmp_path / "heat.nii.gz"))
    probs = params["probabilities"]
    assert set(probs) == set(get_task(task).labels) and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert params["calibrated"] and params["notice"].startswith("research use only")
    assert params["model_version"] and params["heatmap"]["grid_of"] == grid_of
    check_same_geometry(read_image(server.studies / f"{image_id}.nii.gz"), read_image(heat_path), what="heat map")
    assert not list(Path("/tmp").glob(f"{task}_heatmap_*"))  # results go under the server's work dir


def test_uploaded_pet_file_and_bad_requests(server, tmp_path):
    _, params = server.client.infer("pet_lymphoma", file=server.cases["pet_lymphoma"][1]["image"])
    assert sum(params["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ServerRequestError) as e:
        server.client.infer("renal_mass", file=server.cases["pet_lymphoma"][1]["image"])
    assert e.value.status == 400 and "datastore" in str(e.value)
    with pytest.raises(ServerRequestError) as e:
        server.client.infer("hn_response", "pl_s3_0001")  # a PET image has no tumour contour
    assert e.value.status == 404 and "tumour" in str(e.value)


def test_class_labels_train_round_and_strategies(server, tmp_path):
    c = server.client
    nxt = c.next_sample("pet_lymphoma_uncertainty", {})
    assert nxt["id"].startswith("pl_") and 0.0 <= nxt["uncertainty"] <= 1.0
    assert c.next_sample("renal_mass_random", {"seed": 1})["id"].endswith("_corticomedullary")
    assert c.next_sample("hn_response_uncertainty", {"measure": "margin"})["id"].startswith("hn_")
    before = c.info()["models"]["pet_lymphoma"]["model_version"]
    labelled = server.cases["pet_lymphoma"][:3]
    assert len({it["record"]["label_name"] for it in labelled}) == 2
    for it in labelled:
        res = c.save_label(it["case_id"], _empty_label(it["image"], tmp_path / f"{it['case_id']}.nii.gz"),
                           params={"class": it["record"]["label_name"], "annotator": "reader1"})
        assert res["image"] == it["case_id"]
        assert c.label_info(it["case_id"])["class"] == it["record"]["label_name"]
    task = c.train_start("pet_lymphoma", {"max_iterations": 3, "batch_size": 2})
    status = c.wait_for_training(task.get("id"), timeout=600)
    assert status["status"] == "DONE", status
    info = c.info()
    after = info["models"]["pet_lymphoma"]["model_version"]
    assert after != before and info["train_stats"]["pet_lymphoma"]["latest"]["parent_sha256"].startswith(before)
    _, params = c.infer("pet_lymphoma", labelled[0]["case_id"])
    assert params["model_version"] == after
    remaining = {it["case_id"] for it in server.cases["pet_lymphoma"][3:]}
    assert c.next_sample("pet_lymphoma_uncertainty", {})["id"] in remaining
    assert c.next_sample("pet_lymphoma_random", {})["id"] in remaining
