"""The MONAI Label adapters of the score task, without the HTTP server (the integration test has that)."""

from __future__ import annotations

import shutil

import pytest

from oncolabel.config import ServerConfig
from oncolabel.errors import InvalidInputError, NotFoundError
from oncolabel.modelstore import ModelStore
from oncolabel.tasks import get_task

pytest.importorskip("monailabel")


@pytest.fixture
def parts(tmp_path, tiny_rdp_model, pannet_cases):
    from oncolabel.server import compat

    compat.apply()
    from oncolabel.server.datastore import OncoDatastore
    from oncolabel.server.scoring import SERVER_TASK_FACTORIES

    studies = tmp_path / "studies"
    studies.mkdir()
    for i, (image, _) in enumerate(pannet_cases):
        shutil.copy(image, studies / f"case{i}.nii.gz")
    spec = get_task("pannet_ln")
    store = ModelStore(tmp_path / "models", "pannet_ln", initial=tiny_rdp_model)
    objs = SERVER_TASK_FACTORIES["score"](spec, store, ServerConfig.from_conf(studies, {"tasks": "pannet_ln"}))
    return objs, store, OncoDatastore(str(studies)), studies


def test_infer_with_uploaded_or_datastore_label(parts, pannet_cases):
    import tempfile

    objs, _, ds, studies = parts
    infer = objs["infer"]
    image, mask = pannet_cases[0]
    with tempfile.NamedTemporaryFile(suffix=".nii.gz") as upload:  # where MONAI Label puts an uploaded label
        shutil.copy(mask, upload.name)
        label_path, out = infer({"image": str(studies / "case0.nii.gz"), "label": upload.name, "size_cm": "1.8"})
    with pytest.raises(InvalidInputError, match="must be uploaded"):
        infer({"image": str(studies / "case0.nii.gz"), "label": str(mask)})  # a server path in the params
    assert label_path is None and out["size_cm"] == 1.8 and out["notice"].startswith("research use only")
    assert out["model_version"] == infer.models.get().version and out["top_contributions"]
    with pytest.raises(NotFoundError, match="no 'final' label"):
        infer({"image": str(studies / "case0.nii.gz")})
    ds.save_label("case0", str(mask), "final", {"ln_metastasis": 1})
    _, out2 = infer({"image": str(studies / "case0.nii.gz")})
    assert out2["score"] == pytest.approx(out["score"]) and out2["size_source"].startswith("measured")
    with pytest.raises(InvalidInputError, match="size_cm"):
        infer({"image": str(studies / "case0.nii.gz"), "size_cm": "big"})
    assert infer.info()["notice"].startswith("research use only")


def test_train_refuses_cases_without_outcome_and_stores_nothing(parts, pannet_cases):
    objs, store, ds, _ = parts
    for i, (_, mask) in enumerate(pannet_cases):
        ds.save_label(f"case{i}", str(mask), "final", {"annotator": "r1"} if i else {"ln_metastasis": 1})
    store.current()
    before = store.history()
    with pytest.raises(InvalidInputError, match="ln_metastasis") as e:
        objs["train"]({}, ds)
    assert "without outcome" in str(e.value) and "case1" in str(e.value)
    assert store.history() == before
    cases, missing = objs["train"].outcome_cases(ds)
    assert [c[0] for c in cases] == ["case0"] and missing == ["case1", "case2", "case3"]
    ds.save_label("case2", str(pannet_cases[2][1]), "final", {"ln_metastasis": "maybe"})
    with pytest.raises(InvalidInputError, match="not 0 or 1"):
        objs["train"].outcome_cases(ds)
