from __future__ import annotations

import pytest

from oncolabel.config import ServerConfig
from oncolabel.errors import InvalidInputError, UnknownTaskError
from oncolabel.tasks import get_task


def test_conf_parsing(tmp_path):
    cfg = ServerConfig.from_conf(tmp_path, {"device": "cpu", "model.bone-metastasis": "/x.pt", "seed": "3"})
    assert cfg.models["bone_metastasis"].name == "x.pt" and cfg.seed == 3
    assert cfg.models_dir == tmp_path / ".oncolabel" / "models"
    with pytest.raises(InvalidInputError, match="did you mean 'device'"):
        ServerConfig.from_conf(tmp_path, {"devise": "cpu"})
    with pytest.raises(InvalidInputError, match="seed"):
        ServerConfig.from_conf(tmp_path, {"seed": "x"})


def test_unknown_task_suggests():
    with pytest.raises(UnknownTaskError, match="did you mean 'bone-metastasis'"):
        get_task("bone-metastatis")


def test_spec_settings_are_json_ready():
    import json

    s = get_task("bone_metastasis").settings()
    assert json.loads(json.dumps(s))["preprocessing"]["spacing_mm"] == 0.8


@pytest.mark.parametrize("name", ["bone_metastasis", "hn_response", "pannet_ln", "pet_lymphoma", "renal_mass"])
def test_shipped_model_matches_its_task_spec(name):
    """A change to a task's preprocessing must come with a retrained shipped model: the CLI and the server refuse a
    checkpoint whose preprocessing differs from the spec, so a stale model would break the task for every user."""
    from oncolabel.checkpoint import load_checkpoint
    from oncolabel.inference import build_model, default_checkpoint_path

    spec = get_task(name)
    path = default_checkpoint_path(spec)
    if name == "pannet_ln":  # cross-fitted CNNs + the RDP head: its own loader, same preprocessing check
        from oncolabel.scoring.rdp import RdpModel

        assert RdpModel.load(path).cnns
        return
    ckpt = load_checkpoint(path, task=spec.name)
    model = build_model(ckpt, spec)  # raises CheckpointError on a preprocessing or weight mismatch
    assert not model.training and ckpt.network["name"] == spec.network.name


def test_spec_variant_replaces_only_what_it_is_given():
    from oncolabel.tasks.base import spec_variant

    spec = get_task("hn_response")
    v = spec_variant(spec, preprocessing={"context_mm": 10.0}, network={"pooling": "mask"},
                     training={"max_iterations": 7})
    assert v.preprocessing.context_mm == 10.0 and v.preprocessing.hu_low == spec.preprocessing.hu_low
    assert v.network.kwargs == {**spec.network.kwargs, "pooling": "mask"} and v.network.name == spec.network.name
    assert v.training.max_iterations == 7 and v.training.batch_size == spec.training.batch_size
    assert spec_variant(spec) == spec and get_task("hn_response") == spec  # the registered spec is unchanged
