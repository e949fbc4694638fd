"""The real server with only the pannet_ln task: RDP score from an uploaded CT + tumour mask (shipped model)."""

from __future__ import annotations

import pytest
import SimpleITK as sitk

from oncolabel.client import ServerRequestError, TrainingFailedError
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
    """One request through the shared client (``oncolabel.client``): the mask goes up as the ``label`` part."""
    _, out = server.client.infer("pannet_ln", file=str(image), label_file=None if label is None else str(label),
                                 params=params)
    return out


def test_info_lists_only_the_score_task(server):
    info = server.client.info()
    assert list(info["models"]) == ["pannet_ln"]
    m = info["models"]["pannet_ln"]
    assert m["notice"].startswith("research use only") and len(m["model_version"]) == 12


def test_upload_image_and_label_returns_the_score(server):
    image, label = server.files[0]
    out = _infer(server, image, label, {"size_cm": 1.5})
    assert out["task"] == "pannet_ln" and out["notice"].startswith("research use only")
    assert 0.0 <= out["score"] <= 1.0 and out["risk_group"] in ("low", "high")
    assert out["size_cm"] == 1.5 and out["size_group"] == "<= 2 cm" and "research use only" in out["recommendation"]
    assert out["top_contributions"] and {"feature", "contribution_log_odds"} <= set(out["top_contributions"][0])
    assert out["model_version"] == server.client.info()["models"]["pannet_ln"]["model_version"]
    assert _infer(server, *server.files[1])["size_source"].startswith("measured")


def test_bad_uploads_are_4xx_with_a_message(server):
    image0, label0 = server.files[0]
    _, label1 = server.files[1]
    for args, status, text in (((image0, label1), 400, "differs from the image"),
                               ((image0, None), 404, "no 'final' label"),
                               ((image0, label0, {"size_cm": "-3"}), 400, "size_cm")):
        with pytest.raises(ServerRequestError) as err:
            _infer(server, *args)
        assert err.value.status == status and text in str(err.value.detail), err.value


@pytest.fixture(scope="module")
def train_server(tmp_path_factory):
    """A server whose datastore holds 20 PanNET phantoms (8 LN+, 12 LN-), not yet labelled."""
    root = tmp_path_factory.mktemp("pannet_train")
    studies, masks = root / "studies", root / "masks"
    studies.mkdir()
    masks.mkdir()
    outcomes: dict[str, int] = {}
    want = {1: 8, 0: 12}
    i = 0
    while any(want.values()):
        case = generate_pannet_case(case_seed(91, i), config=PannetPhantomConfig(centre="A"))
        i += 1
        y = int(case.meta["traits"]["ln_metastasis"])
        if want[y] == 0:
            continue
        want[y] -= 1
        cid = f"pn{len(outcomes):02d}"
        sitk.WriteImage(case.image, str(studies / f"{cid}.nii.gz"))
        sitk.WriteImage(case.label, str(masks / f"{cid}.nii.gz"))
        outcomes[cid] = y
    with ServerProcess(studies, conf={"tasks": "pannet_ln"}) as srv:
        srv.masks, srv.outcomes = masks, outcomes
        yield srv


def test_train_refits_from_labelled_outcomes_and_serves_the_new_model(train_server):
    """Radiologists' tumour masks + outcomes -> POST /train/pannet_ln -> a new published model serves the next infer."""
    c = train_server.client
    before = c.info()["models"]["pannet_ln"]["model_version"]
    ids = sorted(train_server.outcomes)
    # too few labelled cases: a clear refusal
    c.save_label(ids[0], str(train_server.masks / f"{ids[0]}.nii.gz"), params={"ln_metastasis": 1})
    task = c.train_start("pannet_ln", {"cnn_iterations": 4, "n_folds": 2})
    with pytest.raises(TrainingFailedError):
        c.wait_for_training(task.get("id"), timeout=300)
    assert c.info()["models"]["pannet_ln"]["model_version"] == before
    for cid in ids:
        c.save_label(cid, str(train_server.masks / f"{cid}.nii.gz"),
                     params={"ln_metastasis": train_server.outcomes[cid]})
    task = c.train_start("pannet_ln", {"cnn_iterations": 4, "n_folds": 2})
    c.wait_for_training(task.get("id"), timeout=900)
    after = c.info()["models"]["pannet_ln"]["model_version"]
    assert after != before
    _, out = c.infer("pannet_ln", ids[3])
    assert out["model_version"] == after and 0.0 <= out["score"] <= 1.0
    assert out["notice"].startswith("research use only")
