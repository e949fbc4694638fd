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
    assert json.loads(json.dumps(s))["preprocessing"]["spacing_mm"] == 1.25
