from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from oncolabel.checkpoint import load_checkpoint
from oncolabel.errors import InvalidInputError
from oncolabel.inference import SegmentationPredictor
from oncolabel.precision import as_float32, autocast, native_bf16, resolve_precision
from oncolabel.tasks import get_task
from oncolabel.training import Trainer

from tests.conftest import toy_ct

CPU = torch.device("cpu")


def test_resolve_precision():
    assert resolve_precision("auto", CPU) == ("bf16" if native_bf16(CPU) else "fp32")
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(InvalidInputError, match="precision 'half'"):
        resolve_precision("half", CPU)


def test_autocast_bf16_and_fp32_leaves_an_enclosing_autocast_alone():
    lin, x = nn.Linear(4, 3), torch.rand(2, 4)
    with autocast("bf16", CPU):
        assert lin(x).dtype == torch.bfloat16
    with autocast("fp32", CPU):
        assert lin(x).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16), autocast("fp32", CPU):
        assert lin(x).dtype == torch.bfloat16  # the trainer's autocast stays in force during validation


def test_as_float32_walks_containers():
    t = torch.ones(2, dtype=torch.bfloat16)
    out = as_float32((t, [t], {"a": t}, 3))
    assert out[0].dtype == out[1][0].dtype == out[2]["a"].dtype == torch.float32 and out[3] == 3


def test_bf16_inference_matches_fp32_and_is_recorded(toy_checkpoint):
    image, _ = toy_ct(7)
    ck = load_checkpoint(toy_checkpoint)
    p32 = SegmentationPredictor(ck, precision="fp32")
    p16 = SegmentationPredictor(ck, precision="bf16")
    a, b = p32.predict_probability(image), p16.predict_probability(image)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
    assert float(np.abs(a - b).max()) < 0.1 and float(np.abs(a - b).mean()) < 0.01
    assert p32.predict(image).provenance["precision"] == "fp32"
    assert p16.predict(image).provenance["precision"] == "bf16"


def test_bf16_training_runs_validates_and_records_precision(toy_pair, tmp_path):
    from tests.conftest import write_toy_items

    ip, lp = toy_pair
    items = [{"image": str(ip), "label": str(lp)}]
    res = Trainer(get_task("bone_metastasis"), iterations=50, batch_size=4, validate_every=50, seed=1,
                  precision="bf16").fit(items, write_toy_items(tmp_path / "val", [5]))
    ck = res.checkpoint
    assert ck.training["precision"] == "bf16" and "val_dice" in ck.metrics
    assert all(v.dtype == torch.float32 for v in ck.state_dict.values() if v.is_floating_point())
    assert res.history[-1]["loss"] < res.history[0]["loss"]
