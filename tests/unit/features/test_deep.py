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
