"""The real server with only the pannet_ln task: RDP score from an uploaded CT + tumour mask (shipped model)."""

from __future__ import annotations

import json

import pytest
import requests
import SimpleITK as sitk

from oncolabel.phantoms.pannet import PannetPhantomConfig, case_seed, generate_pannet_case
from oncolabel.server.process import ServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from oncolabel.inference import default_checkpoint_path
    from oncolabel.tasks import get_task

    try:
        default_checkpoint_path(get_task("pannet_ln"))
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"shipped pannet_ln model unavailable: {exc}")
    root = tmp_path_factory.mktemp("pannet_srv")
    studies = root / "studies"
    studies.mkdir()
    files = {}
    for i, centre in enumerate("AB"):
        case = generate_pannet_case(case_seed(77, i), config=PannetPhantomConfig(centre=centre))
        ip, lp = root / f"ct{i}.nii.gz", root / f"mask{i}.nii.gz"
        sitk.WriteImage(case.image, str(ip))
        sitk.WriteImage(case.label, str(lp))
        files[i] = (ip, lp)
    with ServerProcess(studies, conf={"tasks": "pannet_ln"}) as srv:
        srv.files = files
        yield srv


def _infer(server, image, label=None, params=None):
    files = {"file": (image.name, image.read_bytes())}
    if label is not None:
        files["label"] = (label.name, label.read_bytes())
    return requests.post(f"{server.url}/infer/pannet_ln", params={"output": "json"},
                         data={"params": json.dumps(params or {})}, files=files, timeout=300)


def test_info_lists_only_the_score_task(server):
    info = server.client.info()
    assert list(info["models"]) == ["pannet_ln"]
    m = info["models"]["pannet_ln"]
    assert m["notice"].startswith("research use only") and len(m["model_version"]) == 12


def test_upload_image_and_label_returns_the_score(server):
    image, label = server.files[0]
    r = _infer(server, image, label, {"size_cm": 1.5})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["task"] == "pannet_ln" and out["notice"].startswith("research use only")
    assert 0.0 <= out["score"] <= 1.0 and out["risk_group"] in ("low", "high")
    assert out["size_cm"] == 1.5 and out["size_group"] == "<= 2 cm" and "research use only" in out["recommendation"]
    assert out["top_contributions"] and {"feature", "contribution_log_odds"} <= set(out["top_contributions"][0])
    assert out["model_version"] == server.client.info()["models"]["pannet_ln"]["model_version"]
    r2 = _infer(server, *server.files[1])
    assert r2.status_code == 200 and r2.json()["size_source"].startswith("measured")


def test_bad_uploads_are_4xx_with_a_message(server):
    image0, label0 = server.files[0]
    _, label1 = server.files[1]
    for args, status, text in (((image0, label1), 400, "differs from the image"),
                               ((image0, None), 404, "no 'final' label"),
                               ((image0, label0, {"size_cm": "-3"}), 400, "size_cm")):
        r = _infer(server, *args)
        assert r.status_code == status and text in r.json()["detail"], r.text
