from __future__ import annotations

import json
import threading

import pytest
import torch

from oncolabel.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from oncolabel.errors import CheckpointError, ModelNotFoundError
from oncolabel.inference import SegmentationPredictor
from oncolabel.modelstore import ModelStore
from oncolabel.tasks import get_task


def _ckpt(seed=0):
    spec = get_task("bone_metastasis")
    torch.manual_seed(seed)
    return Checkpoint(task=spec.name, network=spec.network.to_dict(), preprocessing=spec.preprocessing.to_dict(),
                      state_dict=spec.network.build().state_dict())


def test_save_load_roundtrip_and_hash(tmp_path):
    c = _ckpt()
    p = save_checkpoint(c, tmp_path / "m.pt")
    back = load_checkpoint(p, task="bone_metastasis")
    assert back.sha256 == c.sha256 and len(back.version) == 12
    assert all(torch.equal(back.state_dict[k], v) for k, v in c.state_dict.items())


def test_load_errors(tmp_path):
    with pytest.raises(ModelNotFoundError):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an OncoLabel checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    p = save_checkpoint(_ckpt(), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="renal"):
        load_checkpoint(p, task="renal_mass")


def test_predictor_refuses_other_preprocessing(tmp_path):
    c = _ckpt()
    c.preprocessing = {**c.preprocessing, "spacing_mm": 2.0}
    p = save_checkpoint(c, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="preprocessing"):
        SegmentationPredictor(p)


def test_modelstore_versions_and_atomic_publish(tmp_path):
    init = save_checkpoint(_ckpt(0), tmp_path / "init.pt")
    store = ModelStore(tmp_path / "models", "bone_metastasis", initial=init)
    first = load_checkpoint(store.current())
    key = store.stat_key()
    new = _ckpt(1)
    new.parent_sha256 = first.sha256
    store.publish(new)
    assert store.stat_key() != key
    hist = store.history()
    assert [h["version"] for h in hist] == [1, 2] and hist[1]["parent_sha256"] == first.sha256
    files = sorted(p.name for p in (store.dir / "versions").iterdir())
    assert len(files) == 2 and load_checkpoint(store.current()).sha256 == new.sha256
    # the served file is always a complete checkpoint while publications happen concurrently
    errors = []

    def reader():
        for _ in range(20):
            try:
                load_checkpoint(store.current())
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    for s in range(2, 5):
        store.publish(_ckpt(s))
    t.join()
    assert not errors and len(store.history()) == 5
    assert json.loads(store.history_path.read_text())[-1]["version"] == 5


def test_modelstore_without_initial(tmp_path):
    with pytest.raises(ModelNotFoundError):
        ModelStore(tmp_path, "bone_metastasis").current()


def test_preprocessing_added_later_counts_as_its_default():
    """An option added to a preprocessing class (default = old behaviour) keeps older checkpoints usable; a changed
    value or a setting the class no longer has is still a mismatch."""
    from dataclasses import asdict, dataclass

    from oncolabel.checkpoint import Checkpoint

    @dataclass(frozen=True)
    class Prep:
        window: float = 200.0
        ring_mm: float = 0.0  # the option added later

        def to_dict(self):
            return {"class": "Prep", **asdict(self)}

    old = Checkpoint(task="t", network={}, preprocessing={"class": "Prep", "window": 200.0}, state_dict={})
    assert old.preprocessing_matches(Prep())
    assert not old.preprocessing_matches(Prep(ring_mm=10.0))
    assert not old.preprocessing_matches(Prep(window=100.0))
    gone = Checkpoint(task="t", network={}, preprocessing={"class": "Prep", "window": 200.0, "zoom": 2}, state_dict={})
    assert not gone.preprocessing_matches(Prep())
