"""DeepFeatures: trained with the generic Trainer on exactly the rows given; training and inference inputs match."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch

from oncolabel.errors import GeometryError, InvalidInputError
from oncolabel.features.deep import DeepFeatures
from oncolabel.tasks import get_task
from oncolabel.training import Trainer
from tests.unit.scoring.conftest import write_case


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    root = tmp_path_factory.mktemp("deep")
    paths = [write_case(root, 31, i) for i in range(6)]
    return pd.DataFrame({"image": [str(p[0]) for p in paths], "mask": [str(p[1]) for p in paths],
                         "rad:x": np.arange(6.0)}, index=[f"c{i}" for i in range(6)])


def test_fit_uses_the_generic_trainer_on_the_given_rows_only(frame, monkeypatch):
    seen = []
    real_fit = Trainer.fit

    def spy(self, items, val_items=None):
        seen.append([it["image"] for it in items])
        assert self.spec.kind == "classification"  # the classification adapter, no second training loop
        return real_fit(self, items, val_items)

    monkeypatch.setattr(Trainer, "fit", spy)
    train = frame.iloc[:4]
    d = DeepFeatures(iterations=2, batch_size=4).fit(train, [0, 1, 0, 1])
    assert seen == [train["image"].tolist()]
    out = d.transform(frame)
    n = get_task("pannet_ln").network.kwargs["channels"][-1]
    assert out.shape == (6, 1 + n) and "image" not in out and out.columns[-1] == f"deep:{n - 1}"
    assert list(d.get_feature_names_out()) == out.columns.tolist()
    assert np.isfinite(out.to_numpy(float)).all()
    # transform of the training rows (cached tensors) equals a fresh load
    fresh = DeepFeatures(iterations=2, batch_size=4)
    fresh.__dict__.update({k: v for k, v in d.__dict__.items() if k != "_cache"})
    np.testing.assert_allclose(fresh.transform(train).to_numpy(float), d.transform(train).to_numpy(float), atol=1e-6)


def test_cross_fitting_gives_training_rows_the_logit_of_a_cnn_that_did_not_see_them(frame, monkeypatch):
    seen = []
    real_fit = Trainer.fit

    def spy(self, items, val_items=None):
        seen.append({it["image"] for it in items})
        return real_fit(self, items, val_items)

    monkeypatch.setattr(Trainer, "fit", spy)
    y = [0, 1, 0, 1, 0, 1]
    d = DeepFeatures(output="logit", cross_fit=2, iterations=2, batch_size=4)
    z = d.fit_transform(frame, y)
    assert len(seen) == 2 and len(d.checkpoints_) == 2 and z.columns[-1] == "deep:logit"
    assert seen[0] | seen[1] == set(frame["image"]) and not seen[0] & seen[1]
    # each training row's value comes from the CNN trained on the other half
    from oncolabel.features.deep import deep_logits

    spec = get_task("pannet_ln")
    for k, model in enumerate(d.models_):
        rows = [i for i, img in enumerate(frame["image"]) if img not in seen[k]]
        items = [{"image": frame["image"].iloc[i], "mask": frame["mask"].iloc[i]} for i in rows]
        np.testing.assert_allclose(z["deep:logit"].iloc[rows], deep_logits(model, spec, items), atol=1e-5)
    # new rows get the mean of the two CNNs
    mean = np.mean([deep_logits(m, spec, [{"image": frame["image"].iloc[0], "mask": frame["mask"].iloc[0]}])
                    for m in d.models_])
    assert d.transform(frame.iloc[:1])["deep:logit"].iloc[0] == pytest.approx(mean, abs=1e-5)
    merged = d.checkpoint()
    from oncolabel.features.deep import models_from_checkpoint

    assert merged.training["n_models"] == 2 and len(models_from_checkpoint(merged)) == 2
    with pytest.raises(InvalidInputError, match="not comparable"):
        DeepFeatures(output="embedding", cross_fit=2).fit(frame, y)


def test_training_and_inference_preprocessing_are_identical(frame):
    """The adapter's training tensor (augmentation off) and the inference input of RdpModel are the same array."""
    from oncolabel.training import ClassificationAdapter

    spec = get_task("pannet_ln")
    item = {"image": frame["image"].iloc[0], "mask": frame["mask"].iloc[0], "label": 1}
    train_x = ClassificationAdapter(spec).tensor(item)
    infer_x = spec.preprocessing.prepare(sitk.ReadImage(item["image"]), sitk.ReadImage(item["mask"]))
    np.testing.assert_array_equal(train_x.numpy(), infer_x)
    assert train_x.shape == (spec.preprocessing.in_channels, spec.preprocessing.size, spec.preprocessing.size)
    assert train_x[-1].sum() > 0  # the mask channel holds the tumour
    aug = spec.preprocessing.augment(train_x, np.random.default_rng(0))
    assert aug.shape == train_x.shape and torch.all((aug >= 0) & (aug <= 1))


def test_bad_items(frame, tmp_path):
    spec = get_task("pannet_ln")
    with pytest.raises(InvalidInputError, match="'image' and 'mask'"):
        spec.preprocessing.load({"image": frame["image"].iloc[0]})
    m = sitk.ReadImage(frame["mask"].iloc[0])
    m.SetSpacing([s * 2 for s in m.GetSpacing()])
    bad = tmp_path / "bad_mask.nii.gz"
    sitk.WriteImage(m, str(bad))
    with pytest.raises(GeometryError):
        spec.preprocessing.load({"image": frame["image"].iloc[0], "mask": str(bad)})
    with pytest.raises(InvalidInputError, match="DataFrame"):
        DeepFeatures().fit(frame.to_numpy(), [0] * 6)
