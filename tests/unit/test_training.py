from __future__ import annotations

import threading

import pytest

from oncolabel.checkpoint import load_checkpoint
from oncolabel.errors import InvalidInputError
from oncolabel.inference import default_checkpoint_path
from oncolabel.tasks import get_task
from oncolabel.training import Trainer, TrainingCancelled
from tests.conftest import write_toy_items


def test_training_reduces_loss_and_records_metadata(toy_pair, tmp_path):
    ip, lp = toy_pair
    items = [{"image": str(ip), "label": str(lp)}]
    records = []
    res = Trainer(get_task("bone_metastasis"), iterations=50, batch_size=4, validate_every=50, seed=1,
                  progress=records.append).fit(items, write_toy_items(tmp_path / "val", [5]))
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert "val_score" in res.history[-1] and records
    ck = res.checkpoint
    assert ck.training["iterations"] == 50 and ck.parent_sha256 is None and "val_dice" in ck.metrics
    # the training images' voxel sizes (toy CT: 1.5 mm pixels, 3 mm slices), for the predictor's warnings
    assert ck.training["input_spacing_mm"] == {"inplane": [1.5, 1.5], "slice": [3.0, 3.0]}


def test_a_fine_tuned_model_records_the_spacing_its_parent_saw_too(tmp_path):
    """The union of the new images' range and the parent's (recorded, or the task's assumption for a checkpoint that
    records none, as the shipped model): the network has seen both."""
    import dataclasses

    import SimpleITK as sitk

    from tests.conftest import toy_ct

    image, label = toy_ct(0, spacing=(0.5, 0.5, 7.0))
    sitk.WriteImage(image, str(tmp_path / "c.nii.gz"))
    sitk.WriteImage(label, str(tmp_path / "l.nii.gz"))
    items = [{"image": str(tmp_path / "c.nii.gz"), "label": str(tmp_path / "l.nii.gz")}]
    shipped = load_checkpoint(default_checkpoint_path(get_task("bone_metastasis")))
    assert "input_spacing_mm" not in shipped.training  # written before the trainer recorded it
    ck = Trainer(get_task("bone_metastasis"), iterations=2, batch_size=2, init=shipped, seed=0).fit(items).checkpoint
    assert ck.training["input_spacing_mm"] == {"inplane": [0.5, 0.9], "slice": [1.0, 7.0]}
    spec = dataclasses.replace(get_task("bone_metastasis"), assumed_input_spacing_mm=None)
    ck = Trainer(spec, iterations=2, batch_size=2, init=shipped, seed=0).fit(items).checkpoint
    assert ck.training["input_spacing_mm"] == {"inplane": [0.5, 0.5], "slice": [7.0, 7.0]}


def test_warm_start_records_parent_and_is_seeded(toy_pair, toy_checkpoint):
    ip, lp = toy_pair
    items = [{"image": str(ip), "label": str(lp)}]
    parent = load_checkpoint(toy_checkpoint)
    runs = [Trainer(get_task("bone_metastasis"), iterations=3, batch_size=2, init=parent, seed=5).fit(items)
            for _ in range(2)]
    assert runs[0].checkpoint.parent_sha256 == parent.sha256
    a, b = (r.checkpoint.state_dict for r in runs)
    assert all((a[k] == b[k]).all() for k in a)


def test_a_probability_map_is_not_taken_for_a_training_label(tmp_path, toy_pair):
    import SimpleITK as sitk

    ip, lp = toy_pair
    prob = sitk.Cast(sitk.ReadImage(str(lp)), sitk.sitkFloat32) * 0.9 + 0.05
    sitk.WriteImage(prob, str(tmp_path / "prob.nii.gz"))
    with pytest.raises(InvalidInputError, match="prob.nii.gz holds fractional values"):
        Trainer(get_task("bone_metastasis"), iterations=1, batch_size=2).fit([{"image": str(ip),
                                                                              "label": str(tmp_path / "prob.nii.gz")}])


def test_validation_cases_that_are_training_cases_are_refused(tmp_path):
    """The same folder given as --data and --val (or overlapping cohorts, or one case id in both) would choose the
    checkpoint on cases it learnt from: refused before any training."""
    train = write_toy_items(tmp_path / "a", [0, 1])
    spec = get_task("bone_metastasis")
    with pytest.raises(InvalidInputError, match=r"1 validation input\(s\) are also training inputs \(file .*c1\.nii"):
        Trainer(spec, iterations=1, batch_size=2).fit(train, [train[1], *write_toy_items(tmp_path / "b", [2])])
    linked = tmp_path / "b" / "link.nii.gz"
    linked.symlink_to(train[0]["image"])  # another path to the same file
    with pytest.raises(InvalidInputError, match="also training inputs"):
        Trainer(spec, iterations=1, batch_size=2).fit(train, [{"image": str(linked), "label": train[0]["label"]}])
    tagged = [{**it, "patient_id": f"P{k}"} for k, it in enumerate(train)]
    other = [{**write_toy_items(tmp_path / "c", [3])[0], "patient_id": "P1"}]  # another scan of patient P1
    with pytest.raises(InvalidInputError, match="patient_id P1"):
        Trainer(spec, iterations=1, batch_size=2).fit(tagged, other)


def test_cohorts_imported_from_a_pacs_are_split_by_patient(tmp_path, capsys):
    """``oncolabel train --data A --val B`` on folders from ``pacs-import`` (their pacs_series.json records each
    series' patient): another series of a training patient in the validation cohort is refused before training."""
    import json
    import shutil

    from oncolabel.cli import main

    for name, seeds, patients in (("a", [0, 1], ["P1", "P7"]), ("b", [2], ["P7"])):
        items = write_toy_items(tmp_path / name / "flat", seeds)
        for sub in ("images", "labels"):
            (tmp_path / name / sub).mkdir()
        records = {}
        for item, patient, seed in zip(items, patients, seeds):
            case = f"1.2.3.{seed}"  # images named by series UID, as pacs-import names them
            shutil.copy(item["image"], tmp_path / name / "images" / f"{case}.nii.gz")
            shutil.copy(item["label"], tmp_path / name / "labels" / f"{case}.nii.gz")
            records[case] = {"patient_id": patient, "study_uid": "1.2", "series_uid": case}
        (tmp_path / name / "pacs_series.json").write_text(json.dumps(records))
    args = ["train", "bone-metastasis", "--data", str(tmp_path / "a"), "--val", str(tmp_path / "b"),
            "--iterations", "1", "--out", str(tmp_path / "m.pt")]
    assert main(args) == 1
    assert "patient_id P7" in capsys.readouterr().err and not (tmp_path / "m.pt").exists()


def test_a_partly_annotated_pacs_import_trains_on_its_labelled_series(tmp_path, capsys):
    """A pacs-import folder (images at its root, labels/ for the annotated series): an image without a label is an
    error naming it, ``--labelled-only`` trains on the labelled ones and counts the rest; a folder without labels/
    says so (its CT images were read as their own labels: "label ... holds negative values")."""
    import json
    import shutil

    from oncolabel.checkpoint import load_checkpoint
    from oncolabel.cli import main

    items = write_toy_items(tmp_path / "flat", [0, 1, 2])
    cohort = tmp_path / "imported"
    (cohort / "labels").mkdir(parents=True)
    for i, item in enumerate(items):
        shutil.copy(item["image"], cohort / f"1.2.3.{i}.nii.gz")
        if i < 2:
            shutil.copy(item["label"], cohort / "labels" / f"1.2.3.{i}.nii.gz")
    args = ["train", "bone-metastasis", "--data", str(cohort), "--iterations", "1", "--batch-size", "2",
            "--out", str(tmp_path / "m.pt")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "no label for 1.2.3.2 (--labelled-only" in err and not (tmp_path / "m.pt").exists()
    assert main([*args, "--labelled-only"]) == 0
    assert "1 of 3 images have no label and are not used" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "m.pt").training["n_train"] == 2
    assert json.loads((tmp_path / "m.json").read_text())["training"]["n_train"] == 2
    shutil.rmtree(cohort / "labels")
    assert main([*args, "--labelled-only"]) == 1
    assert "no labels/ folder" in capsys.readouterr().err


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


def test_classification_adapter_learns_a_toy_task():
    """The generic loop trains a classifier through the classification adapter (toy 2D task: bright blob or not)."""
    import dataclasses

    import numpy as np
    import torch

    from oncolabel.tasks.base import NetworkSpec, TaskSpec, TrainingSpec
    from oncolabel.training import ClassificationAdapter

    @dataclasses.dataclass(frozen=True)
    class ToyPrep:
        def load(self, item):
            rng = np.random.default_rng(item["seed"])
            x = rng.normal(0, 1, (1, 24, 24)).astype(np.float32)
            if item["label"]:
                x[:, 8:16, 8:16] += 2.0
            return torch.from_numpy(x)

        def to_dict(self):
            return {"class": "ToyPrep"}

    spec = TaskSpec(name="toy", cli_name="toy", kind="classification", description="toy", labels={"no": 0, "yes": 1},
                    network=NetworkSpec("CNNClassifier", {"spatial_dims": 2, "in_channels": 1, "out_channels": 2,
                                                          "channels": (8, 16)}),
                    preprocessing=ToyPrep(), training=TrainingSpec(max_iterations=60, batch_size=16, validate_every=60))
    items = [{"seed": i, "label": i % 2} for i in range(40)]
    res = Trainer(spec, seed=0).fit(items[:30], items[30:])
    assert res.checkpoint.metrics["val_auc"] > 0.9
    with pytest.raises(InvalidInputError, match="two classes"):
        next(ClassificationAdapter(spec).batches([{"seed": 0, "label": 1}], 4, np.random.default_rng(0)))


def test_negative_patches_are_centred_on_bone(tmp_path):
    """Lesion-free patches land on bone (where the PPV-costing mimics are) at the requested rate."""
    import numpy as np
    import SimpleITK as sitk

    from oncolabel.training import SliceSampler, SegmentationAdapter
    from tests.conftest import toy_ct

    spec = get_task("bone_metastasis")
    image, label = toy_ct(3, shape=(6, 320, 320), spacing=(1.25, 1.25, 3.0), lesion=False)
    sitk.WriteImage(image, str(tmp_path / "i.nii.gz"))
    sitk.WriteImage(label, str(tmp_path / "l.nii.gz"))
    vols = SegmentationAdapter(spec).volumes([{"image": str(tmp_path / "i.nii.gz"), "label": str(tmp_path / "l.nii.gz")}])
    level = (500.0 - spec.preprocessing.hu_low) / (spec.preprocessing.hu_high - spec.preprocessing.hu_low)

    def bone_share(fraction: float) -> float:
        sampler = SliceSampler(spec.preprocessing, vols, patch=48, augment=False, bone_fraction=fraction)
        rng = np.random.default_rng(0)
        hits = [bool((sampler.sample(rng)[0][1] > level).any()) for _ in range(200)]
        return float(np.mean(hits))

    assert bone_share(1.0) == 1.0
    assert bone_share(0.0) < 0.3


def test_precise_batchnorm_averages_many_batches_and_keeps_weights(toy_pair):
    """recalibrate: running stats = cumulative average over n batches; weights and momentum untouched."""
    import numpy as np
    import torch

    from oncolabel.tasks.base import build_network
    from oncolabel.training import SegmentationAdapter

    spec = get_task("bone_metastasis")
    ip, lp = toy_pair
    items = [{"image": str(ip), "label": str(lp)}]
    model = build_network(spec.network.name, spec.network.kwargs)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    SegmentationAdapter(spec).recalibrate(model, items, np.random.default_rng(0), torch.device("cpu"),
                                          n_batches=3, batch_size=2)
    assert all(int(m.num_batches_tracked) == 3 and m.momentum == 0.1 for m in bns)
    assert any(not torch.allclose(m.running_mean, torch.zeros_like(m.running_mean)) for m in bns)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in weights.items())


def test_soft_labels_train_towards_the_given_probabilities():
    """Soft labels: cross-entropy against (1 - q, q); 0/1 soft labels are the hard labels; batches stay class-balanced
    by the hard label and carry the soft targets; bad values are refused."""
    import numpy as np
    import torch

    from oncolabel.tasks.base import NetworkSpec, TaskSpec
    from oncolabel.training import BranchCrossEntropy, ClassificationAdapter

    loss = BranchCrossEntropy()
    logits = torch.tensor([[0.5, -0.5], [-1.0, 2.0], [0.0, 0.0]])
    q = torch.tensor([0.2, 0.9, 0.5])
    logp = torch.log_softmax(logits, dim=1)
    expected = -((1 - q) * logp[:, 0] + q * logp[:, 1]).mean()
    assert loss(logits, q) == pytest.approx(float(expected), rel=1e-6)
    hard = torch.tensor([0, 1, 1])
    assert loss(logits, hard.float()) == pytest.approx(float(loss(logits, hard)), rel=1e-6)
    branches = torch.stack([logits, -logits], dim=1)  # (batch, 2 branches, classes)
    assert loss(branches, q) == pytest.approx(float((loss(logits, q) + loss(-logits, q)) / 2), rel=1e-6)

    class Prep:
        def load(self, item):
            return torch.full((1, 4, 4), float(item["seed"]))

        def to_dict(self):
            return {"class": "Prep"}

    spec = TaskSpec(name="toy", cli_name="toy", kind="classification", description="toy", labels={"no": 0, "yes": 1},
                    network=NetworkSpec("CNNClassifier", {"spatial_dims": 2, "in_channels": 1}), preprocessing=Prep())
    adapter = ClassificationAdapter(spec)
    items = [{"seed": i, "label": int(i >= 4), "soft_label": 0.1 * i} for i in range(8)]
    x, y = next(adapter.batches(items, 64, np.random.default_rng(0)))
    assert y.dtype == torch.float32 and 20 < int((y >= 0.4).sum()) < 44  # balanced by the hard label
    assert torch.allclose(y, 0.1 * x[:, 0, 0, 0])  # each item's own soft label
    _, y = next(adapter.batches([{k: v for k, v in it.items() if k != "soft_label"} for it in items], 8,
                                np.random.default_rng(0)))
    assert y.dtype == torch.long  # no soft labels: unchanged
    assert adapter._key(items[0]) == adapter._key({"seed": 0, "label": 1})  # targets are not inputs
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        next(adapter.batches([{**items[0], "soft_label": 1.5}, items[5]], 4, np.random.default_rng(0)))


def test_warm_start_from_other_preprocessing_needs_consent_and_is_recorded(toy_pair, toy_checkpoint):
    import dataclasses

    ip, lp = toy_pair
    items = [{"image": str(ip), "label": str(lp)}]
    spec = get_task("bone_metastasis")
    parent = load_checkpoint(toy_checkpoint)
    other = dataclasses.replace(parent, preprocessing={**parent.preprocessing,
                                                       "spacing_mm": spec.preprocessing.spacing_mm * 1.5})
    with pytest.raises(InvalidInputError, match="other preprocessing"):
        Trainer(spec, iterations=2, batch_size=2, init=other, seed=0).fit(items)
    ck = Trainer(spec, iterations=2, batch_size=2, init=other, seed=0, init_other_preprocessing=True).fit(items).checkpoint
    assert ck.training["init_preprocessing"]["spacing_mm"] == other.preprocessing["spacing_mm"]
    assert ck.preprocessing["spacing_mm"] == spec.preprocessing.spacing_mm  # the child is the spec's
    same = Trainer(spec, iterations=2, batch_size=2, init=parent, seed=0).fit(items).checkpoint
    assert "init_preprocessing" not in same.training


def test_lesion_size_weights_favour_small_cross_sections():
    import numpy as np

    from oncolabel.training import lesion_size_weights

    t = np.zeros((2, 64, 64), np.uint8)
    t[0, 2:4, 2:4] = 1  # 4 px: capped at max_weight - 1
    t[0, 20:29, 20:29] = 1  # 81 px: (324 / 81) ** 0.5 - 1 = 1
    t[1, 10:50, 10:50] = 1  # 1600 px >= reference: no extra weight
    w = lesion_size_weights(t, reference_px=324.0)
    assert w[0, 2, 2] == pytest.approx(7.0) and w[0, 24, 24] == pytest.approx(1.0)
    assert not w[1].any() and not w[0][t[0] == 0].any()  # background and large lesions: none
    assert lesion_size_weights(t, reference_px=324.0, max_weight=3.0)[0, 2, 2] == pytest.approx(2.0)


def test_size_weighted_loss_adds_weight_to_small_lesions_only():
    import torch
    from monai.losses import DiceCELoss

    from oncolabel.tasks.base import spec_variant
    from oncolabel.training import LesionSizeWeightedDiceCE, SegmentationAdapter

    spec = get_task("bone_metastasis")
    assert isinstance(SegmentationAdapter(spec).loss(), LesionSizeWeightedDiceCE)  # the task's default (weight 1)
    plain = SegmentationAdapter(spec_variant(spec, training={"lesion_size_weight": 0.0})).loss()
    assert type(plain) is DiceCELoss
    loss = LesionSizeWeightedDiceCE(1.0, reference_px=324.0)
    x = torch.randn(2, 2, 32, 32, generator=torch.Generator().manual_seed(0))
    background = torch.zeros(2, 1, 32, 32, dtype=torch.long)
    torch.testing.assert_close(loss(x, background), plain(x, background))  # no lesion: the plain loss
    small = background.clone()
    small[0, 0, 5:7, 5:7] = 1

    def grad_on_lesion(fn):
        xi = x.clone().requires_grad_(True)
        fn(xi, small).backward()
        return xi.grad[0, :, 5:7, 5:7].abs().sum().item()

    assert grad_on_lesion(loss) > 2 * grad_on_lesion(plain)
    with pytest.raises(InvalidInputError, match="lesion size weighting"):
        LesionSizeWeightedDiceCE(-1.0, reference_px=324.0)


def test_find_lesions_gives_each_component_its_slices_and_points():
    import numpy as np

    from oncolabel.training import find_lesions

    lab = np.zeros((12, 64, 64), np.uint8)
    lab[2:7, 10:20, 10:20] = 1
    lab[4:6, 10:13, 10:13] = 1  # inside the first: still one lesion
    lab[9, 50:53, 40:42] = 1
    big, small = sorted(find_lesions(lab), key=lambda les: -les.z.size)
    assert big.z.tolist() == [2, 3, 4, 5, 6] and big.area.tolist() == [100.0] * 5
    assert small.z.tolist() == [9] and small.area.tolist() == [6.0]
    for les in (big, small):
        for z, pts in zip(les.z, les.points):
            assert lab[z, pts[:, 0], pts[:, 1]].all()
    assert find_lesions(np.zeros((3, 8, 8), np.uint8)) == []
    # small cross-sections are favoured, up to the cap, and the weights are probabilities
    les = find_lesions(np.pad(np.ones((3, 4, 4), np.uint8), 1))[0]
    assert les.slice_weights(64.0).tolist() == pytest.approx([1 / 3] * 3)


def test_lesion_balanced_sampling_reaches_small_lesions(tmp_path):
    """A one-slice lesion beside a seven-slice one: half the lesion-balanced samples show it (1/8 without), and
    every lesion-balanced patch holds its lesion through zoom and flip (the lesion sits off-centre)."""
    import numpy as np
    import SimpleITK as sitk

    from oncolabel.tasks.base import spec_variant
    from oncolabel.training import SegmentationAdapter, SliceSampler
    from tests.conftest import toy_ct

    image, _ = toy_ct(3, shape=(10, 320, 320), spacing=(1.25, 1.25, 3.0), lesion=False)
    lab = np.zeros((10, 320, 320), np.uint8)
    lab[1:8, 150:190, 150:190] = 1
    lab[9, 40:43, 40:43] = 1
    label = sitk.GetImageFromArray(lab)
    label.CopyInformation(image)
    sitk.WriteImage(image, str(tmp_path / "i.nii.gz"))
    sitk.WriteImage(label, str(tmp_path / "l.nii.gz"))
    spec = spec_variant(get_task("bone_metastasis"), training={"lesion_sampling_fraction": 1.0})
    item = {"image": str(tmp_path / "i.nii.gz"), "label": str(tmp_path / "l.nii.gz")}
    vols = SegmentationAdapter(spec).volumes([item])
    assert len(vols[0].lesions) == 2

    def patch_areas(lesion_fraction: float, n: int) -> np.ndarray:
        sampler = SliceSampler(spec.preprocessing, vols, patch=96, positive_fraction=1.0,
                               lesion_fraction=lesion_fraction)
        rng = np.random.default_rng(1)
        return np.array([int(sampler.sample(rng)[1].sum()) for _ in range(n)])

    # the small lesion shows <= ~90 pixels at the largest zoom; the large one >= 256 (the patch holds 16 pixels
    # around a lesion pixel)
    balanced = patch_areas(1.0, 200)
    assert (balanced > 0).all()  # centred on the drawn lesion, after zoom and flip
    assert 0.4 < np.mean(balanced < 170) < 0.6
    uniform = patch_areas(0.0, 120)  # 80 % centred on any lesion pixel, 20 % anywhere
    assert np.mean((uniform > 0) & (uniform < 170)) < 0.25
    with pytest.raises(InvalidInputError, match="lesion_fraction"):
        SliceSampler(spec.preprocessing, vols, lesion_fraction=1.5)


def test_validation_counts_axial_slices_whichever_way_the_files_store_them(tmp_path, toy_checkpoint):
    """The trainer's validation (which picks the checkpoint) counts slices as `oncolabel evaluate` does: a case stored
    as sagittal slices scores the same as the same case stored axially."""
    import SimpleITK as sitk

    from oncolabel.inference import build_model
    from oncolabel.training import SegmentationAdapter
    from tests.conftest import toy_ct

    spec = get_task("bone_metastasis")
    model = build_model(load_checkpoint(toy_checkpoint), spec)
    image, label = toy_ct(3)
    scores = []
    for order in ("LPS", "SAR"):
        ip, lp = tmp_path / f"{order}.nii.gz", tmp_path / f"{order}_label.nii.gz"
        sitk.WriteImage(sitk.DICOMOrient(image, order), str(ip))
        sitk.WriteImage(sitk.DICOMOrient(label, order), str(lp))
        scores.append(SegmentationAdapter(spec).validate(model, [{"image": str(ip), "label": str(lp)}], "cpu"))
    assert scores[0] == scores[1] and scores[0]["slice_sensitivity"] > 0


def test_a_label_cropped_to_its_lesions_trains_as_the_full_label(toy_pair, tmp_path):
    """A training label stored cropped to its segments (a 3D Slicer .seg.nrrd) is placed on the CT's grid: the
    working-grid label equals the full label's; one between the CT's voxels is refused naming the file."""
    import numpy as np
    import SimpleITK as sitk
    import torch

    from oncolabel.errors import GeometryError
    from oncolabel.training import load_volume

    ip, lp = toy_pair
    prep = get_task("bone_metastasis").preprocessing
    _, _, full = load_volume({"image": str(ip), "label": str(lp)}, prep)
    label = sitk.ReadImage(str(lp))
    zs, ys, xs = np.nonzero(sitk.GetArrayViewFromImage(label))
    crop = sitk.RegionOfInterest(label, [int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1, int(np.ptp(zs)) + 1],
                                 [int(xs.min()), int(ys.min()), int(zs.min())])
    sitk.WriteImage(crop, str(tmp_path / "lesions.seg.nrrd"))
    _, _, placed = load_volume({"image": str(ip), "label": str(tmp_path / "lesions.seg.nrrd")}, prep)
    assert crop.GetSize() != label.GetSize() and full.sum() > 0 and torch.equal(placed, full)
    crop.SetOrigin(np.add(crop.GetOrigin(), (0.0, 0.0, 0.3 * crop.GetSpacing()[2])).tolist())
    sitk.WriteImage(crop, str(tmp_path / "off.nrrd"))
    with pytest.raises(GeometryError, match=r"off\.nrrd origin .* between the image's voxels"):
        load_volume({"image": str(ip), "label": str(tmp_path / "off.nrrd")}, prep)
