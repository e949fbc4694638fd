from __future__ import annotations

import threading

import pytest

from oncolabel.checkpoint import load_checkpoint
from oncolabel.errors import InvalidInputError
from oncolabel.tasks import get_task
from oncolabel.training import Trainer, TrainingCancelled


def test_training_reduces_loss_and_records_metadata(toy_pair):
    ip, lp = toy_pair
    items = [{"image": str(ip), "label": str(lp)}]
    records = []
    res = Trainer(get_task("bone_metastasis"), iterations=50, batch_size=4, validate_every=50, seed=1,
                  progress=records.append).fit(items, items)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert "val_score" in res.history[-1] and records
    ck = res.checkpoint
    assert ck.training["iterations"] == 50 and ck.parent_sha256 is None and "val_dice" in ck.metrics


def test_warm_start_records_parent_and_is_seeded(toy_pair, toy_checkpoint):
    ip, lp = toy_pair
    items = [{"image": str(ip), "label": str(lp)}]
    parent = load_checkpoint(toy_checkpoint)
    runs = [Trainer(get_task("bone_metastasis"), iterations=3, batch_size=2, init=parent, seed=5).fit(items)
            for _ in range(2)]
    assert runs[0].checkpoint.parent_sha256 == parent.sha256
    a, b = (r.checkpoint.state_dict for r in runs)
    assert all((a[k] == b[k]).all() for k in a)


def test_cancel_and_bad_input(toy_pair):
    ip, lp = toy_pair
    stop = threading.Event()
    stop.set()
    with pytest.raises(TrainingCancelled):
        Trainer(get_task("bone_metastasis"), iterations=5, stop_event=stop).fit([{"image": str(ip), "label": str(lp)}])
    with pytest.raises(InvalidInputError, match="no training items"):
        Trainer(get_task("bone_metastasis"), iterations=5).fit([])
    with pytest.raises(InvalidInputError, match="iterations"):
        Trainer(get_task("bone_metastasis"), iterations=0)
