"""Calibration heads, Inception-v3, Grad-CAM, the predictor contract and the one preprocessing per task."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from oncolabel.checkpoint import load_checkpoint
from oncolabel.classification import (ClassifierPredictor, LogisticHead, binary_entropy, compose_platt,
                                      fit_logistic, fit_temperature, select_head)
from oncolabel.errors import CheckpointError, GeometryError, InvalidInputError
from oncolabel.explain import grad_cam
from oncolabel.io import read_image
from oncolabel.networks import NETWORKS, CNNClassifier, InceptionV3
from oncolabel.stats import calibration
from oncolabel.tasks import get_task
from oncolabel.training import BranchCrossEntropy, ClassificationAdapter


def test_temperature_scaling_recovers_the_temperature():
    rng = np.random.default_rng(0)
    m = rng.normal(0, 4, 4000)
    y = (rng.random(m.size) < 1 / (1 + np.exp(-m / 2.0))).astype(int)  # true probabilities: sigmoid(m / 2)
    head = fit_temperature(m, y)
    assert head.info["temperature"] == pytest.approx(2.0, rel=0.1)
    cal = calibration(y, head.predict({"margin": m}))
    assert abs(cal.slope - 1) < 0.1 and abs(cal.intercept) < 0.1


def test_platt_stacking_compose_and_serialisation():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=500), rng.normal(size=500)
    y = (rng.random(500) < 1 / (1 + np.exp(-(1.5 * a + 0.5 * b - 0.3)))).astype(int)
    stack = fit_logistic({"margin_a": a, "margin_b": b}, y, ("margin_a", "margin_b"), method="stacking")
    assert stack.coef[0] > stack.coef[1] > 0
    again = LogisticHead.from_dict(stack.to_dict())
    np.testing.assert_allclose(again.predict({"margin_a": a, "margin_b": b}), stack.predict({"margin_a": a,
                                                                                             "margin_b": b}))
    platt = fit_logistic({"margin": 3 * a + 1}, y, ("margin",), method="platt")
    raw = fit_logistic({"margin_a": a}, y, ("margin_a",), method="platt")
    composed = compose_platt(raw, platt.__class__(("margin",), np.array([2.0]), 0.5, np.zeros(1), np.ones(1), "platt"))
    np.testing.assert_allclose(composed.logit({"margin_a": a}), 2.0 * raw.logit({"margin_a": a}) + 0.5)
    with pytest.raises(CheckpointError):
        LogisticHead.from_dict({"inputs": ["x"]})
    with pytest.raises(InvalidInputError, match="both classes"):
        fit_temperature(a, np.zeros(500))
    assert binary_entropy([0.5, 1.0])[0] == pytest.approx(1.0) and binary_entropy([1.0])[0] < 1e-9


def test_compose_with_a_stacking_head_keeps_its_other_inputs():
    rng = np.random.default_rng(2)
    f, m = rng.normal(size=(400, 3)), rng.normal(size=400)
    y = (rng.random(400) < 1 / (1 + np.exp(-(f[:, 0] - f[:, 1] + 0.8 * m)))).astype(int)
    inner = fit_logistic({"features": f}, y, ("features",), method="deep_features", c=0.5)
    outer = fit_logistic({"margin": inner.logit({"features": f}), "necrosis": m}, y, ("margin", "necrosis"),
                         method="stacking")
    composed = compose_platt(inner, outer)
    assert composed.inputs == ("features", "necrosis") and composed.method == "deep_features"
    np.testing.assert_allclose(composed.predict({"features": f, "necrosis": m}),
                               outer.predict({"margin": inner.logit({"features": f}), "necrosis": m}))
    again = LogisticHead.from_dict(composed.info["outer"])  # kept for refitting the inner head (fine-tuning)
    np.testing.assert_allclose(again.coef, outer.coef)
    with pytest.raises(InvalidInputError, match="'margin'"):
        compose_platt(inner, LogisticHead(("necrosis",), np.ones(1), 0.0, np.zeros(1), np.ones(1), "platt"))


def test_measurements_need_a_stacking_head_and_a_preprocessing_that_makes_them():
    import dataclasses

    from oncolabel.classification import ClassificationPostprocessing, measure_items

    with pytest.raises(InvalidInputError, match="'temperature' cannot use them"):
        ClassificationPostprocessing(head="temperature", measurements=("log_volume_ml",))
    with pytest.raises(InvalidInputError, match="'stacking' head only"):
        ClassificationPostprocessing(head="deep_features", measurements=("a",), quadratic_measurements=True)
    with pytest.raises(InvalidInputError, match="measurement_c"):
        ClassificationPostprocessing(head="stacking", measurements=("a",), measurement_c=0.0)
    spec = get_task("pet_lymphoma")
    spec = dataclasses.replace(spec, postprocessing=ClassificationPostprocessing(head="deep_features",
                                                                                 measurements=("necrosis",)))
    with pytest.raises(InvalidInputError, match="does not make"):
        measure_items(spec, [{"image": "x.nii.gz", "label": 0}])


def test_measure_items_reads_each_case_once_and_keeps_the_network_input(toy_cohorts):
    from oncolabel.classification import CachedPreprocessing, measure_items

    spec = get_task("renal_mass")
    items = [{**{p: it[p] for p in spec.preprocessing.inputs}, "label": it["label"]}
             for it in toy_cohorts["renal_mass"][:3]]
    reads = []

    class Counting(type(spec.preprocessing)):
        def read(self, item):
            reads.append(item["corticomedullary"])
            return super().read(item)

    import dataclasses

    counting = Counting(**{f.name: getattr(spec.preprocessing, f.name)
                           for f in dataclasses.fields(spec.preprocessing)})
    keep = CachedPreprocessing(counting)
    values = measure_items(dataclasses.replace(spec, preprocessing=counting), items, keep=keep)
    assert set(values) == set(spec.postprocessing.measurements) and len(reads) == 3
    for item in items:  # the cached inputs are what loading gives, and loading reads nothing more
        torch.testing.assert_close(keep.load(item), spec.preprocessing.load(item), rtol=0, atol=0)
    assert len(reads) == 3


def test_quadratic_head_learns_a_curved_boundary_round_trips_and_is_not_composed():
    rng = np.random.default_rng(3)
    a, b, m = rng.normal(size=(3, 1500))
    y = (rng.random(a.size) < 1 / (1 + np.exp(-(2.0 * a * a - 2.0 + 0.7 * m - b * a)))).astype(int)
    data = {"a": a, "b": b, "margin": m}
    linear = fit_logistic(data, y, ("margin", "a", "b"), method="stacking")
    quad = fit_logistic(data, y, ("margin", "a", "b"), method="stacking", quadratic=("a", "b"), c=1.0)
    assert quad.coef.size == 3 + 3 and quad.quadratic == ("a", "b")  # a^2, ab, b^2 after the three inputs
    from oncolabel.stats import roc_auc

    assert roc_auc(y, quad.predict(data)) > roc_auc(y, linear.predict(data)) + 0.15
    # the design is what a hand-made expansion gives: a^2 term positive, ab negative, b^2 near 0
    k = {name: i for i, name in enumerate(("a2", "ab", "b2"), start=3)}
    assert quad.coef[k["a2"]] > 0.5 and quad.coef[k["ab"]] < -0.2 and abs(quad.coef[k["b2"]]) < 0.2
    again = LogisticHead.from_dict(quad.to_dict())
    np.testing.assert_allclose(again.predict(data), quad.predict(data))
    assert LogisticHead.from_dict(linear.to_dict()).quadratic == ()  # older heads have no quadratic terms
    with pytest.raises(InvalidInputError, match="among the head's inputs"):
        fit_logistic(data, y, ("margin", "a"), method="stacking", quadratic=("b",))
    platt = fit_logistic({"margin": m}, y, ("margin",), method="platt")
    with pytest.raises(InvalidInputError, match="quadratic"):
        compose_platt(quad, platt)
    # the extrapolation warning still names the (linear) input, not a product term
    far = {"a": np.array([40.0]), "b": np.array([0.0]), "margin": np.array([0.0])}
    assert [w.split(" = ")[0] for w in quad.extrapolation(far)] == ["a"]


def test_renal_heads_stack_the_mass_measurements_quadratically_and_fall_back_without_them(toy_models, toy_cohorts):
    from oncolabel.features.renal import RENAL_MEASUREMENT_NAMES

    predictor = ClassifierPredictor(toy_models["renal_mass"], task="renal_mass")
    first = predictor.heads[0]
    assert first.method == "multivariable" and first.quadratic == RENAL_MEASUREMENT_NAMES
    stacked = next(h for h in predictor.heads if h.method == "stacking")
    assert set(RENAL_MEASUREMENT_NAMES) <= set(stacked.inputs) and stacked.info["C"] == pytest.approx(0.1)
    images = predictor.preprocessing.read(toy_cohorts["renal_mass"][1])
    res = predictor.predict(images, heatmaps=False)
    assert res.head["inputs"] == list(stacked.inputs) and res.measurement_error is None
    measured = res.to_json()["measurements"]
    assert set(RENAL_MEASUREMENT_NAMES) | {"diameter_mm", "noise_sd_hu"} <= set(measured)
    truth = toy_cohorts["renal_mass"][1]["record"]["traits"]["diameter_mm"]
    assert measured["diameter_mm"] == pytest.approx(truth, abs=2.0)
    flat = {p: sitk.Image(img) for p, img in images.items()}  # no contrast: the cortex reference is missing
    for p in ("corticomedullary", "nephrographic", "excretory"):
        flat[p] = sitk.Image(images["unenhanced"])
    fallback = predictor.predict(flat, heatmaps=False)
    assert not set(RENAL_MEASUREMENT_NAMES) & set(fallback.head["inputs"])
    assert "cortex" in fallback.to_json()["measurement_error"]


def test_labels_update_the_renal_measurement_heads_with_the_served_head_as_prior(toy_models, toy_cohorts):
    """An active-learning round's labels move the measurement coefficients (the margins' stay), towards the labels
    and more with more of them; the multivariable heads (covariates) and the margin-only heads are left alone; too
    few labels of a class change nothing."""
    from oncolabel.classification import checkpoint_heads, checkpoint_model, update_measurement_heads

    spec = get_task("renal_mass")
    ckpt = load_checkpoint(toy_models["renal_mass"])
    heads, model = checkpoint_heads(ckpt), checkpoint_model(ckpt)
    raw = toy_cohorts["renal_mass"]
    items = [{**{k: it[k] for k in spec.preprocessing.inputs}, "label": 1 - it["label"]} for it in raw]  # flipped
    assert update_measurement_heads(heads, model, spec, items) == heads  # default: 10 per class needed
    new = update_measurement_heads(heads, model, spec, items, min_per_class=2)
    changed = [k for k, (a, b) in enumerate(zip(heads, new)) if not np.array_equal(a.coef, b.coef)]
    assert changed and all(new[k].method == "stacking" and "updated_on" in new[k].info for k in changed)
    assert all(not set(spec.postprocessing.covariates) & set(heads[k].inputs) for k in changed)
    k = changed[0]
    margins = [j for j, name in enumerate(heads[k].inputs) if name.startswith("margin")]
    np.testing.assert_array_equal(new[k].coef[margins], heads[k].coef[margins])
    x = torch.stack([spec.preprocessing.load(it) for it in items])
    from oncolabel.classification import network_outputs

    scores = dict(network_outputs(model, x, spec.preprocessing.branch_names))
    measured = [spec.preprocessing.measure(spec.preprocessing.read(it)) for it in items]
    scores.update({m: np.array([d[m] for d in measured]) for m in spec.preprocessing.measurement_names})
    y = np.array([it["label"] for it in items])

    def log_loss(h):
        p = np.clip(h.predict(scores), 1e-9, 1 - 1e-9)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    twice = update_measurement_heads(heads, model, spec, items + items, min_per_class=2)
    assert log_loss(twice[k]) < log_loss(new[k]) < log_loss(heads[k])
    again = LogisticHead.from_dict(new[k].to_dict())
    np.testing.assert_allclose(again.predict(scores), new[k].predict(scores))


def test_hn_heads_stack_the_measurements_and_fall_back_without_them(toy_models, toy_cohorts):
    from oncolabel.features.tumour import MEASUREMENT_NAMES

    predictor = ClassifierPredictor(toy_models["hn_response"], task="hn_response")
    assert predictor.heads[0].inputs == ("features", *MEASUREMENT_NAMES) and predictor.needs_measurements()
    images = predictor.preprocessing.read(toy_cohorts["hn_response"][2])
    res = predictor.predict(images, heatmaps=False)
    assert res.head["inputs"] == ["features", *MEASUREMENT_NAMES] and res.measurement_error is None
    assert set(MEASUREMENT_NAMES) <= set(res.to_json()["measurements"])
    expected = predictor.heads[0].predict({"features": predictor.scores(predictor.preprocessing.prepare(images))
                                           ["features"], **{k: [res.measurements[k]] for k in MEASUREMENT_NAMES}})
    assert res.probabilities["good_response"] == pytest.approx(float(expected[0]))
    ct = sitk.GetArrayFromImage(images["image"])  # the tumour in air: no tissue to measure the noise in
    ct[sitk.GetArrayViewFromImage(images["mask"]) == 0] = -1000
    air = sitk.GetImageFromArray(ct)
    air.CopyInformation(images["image"])
    fallback = predictor.predict({"image": air, "mask": images["mask"]}, heatmaps=False)
    assert fallback.head["inputs"] == ["features"] and "noise reference" in fallback.to_json()["measurement_error"]
    assert "measurements" not in fallback.to_json()
    assert "warnings" not in res.to_json()
    prepared = predictor.preprocessing.prepare(images)
    huge = {**res.measurements, "log_volume_ml": res.measurements["log_volume_ml"] + 50 * predictor.heads[0].scale[-4]}
    far = predictor.predict_prepared(prepared, heatmaps=False, measurements=huge)
    assert len(far.warnings) == 1 and far.warnings[0].startswith("log_volume_ml") and "extrapolates" in far.warnings[0]
    assert far.to_json()["warnings"] == list(far.warnings)


def test_fine_tuning_refits_the_feature_regression_and_keeps_the_measurement_stacking(toy_models, toy_cohorts):
    from oncolabel.classification import checkpoint_heads, checkpoint_model, network_outputs, refit_feature_heads
    from oncolabel.features.tumour import MEASUREMENT_NAMES

    spec = get_task("hn_response")
    ckpt = load_checkpoint(toy_models["hn_response"])
    heads = checkpoint_heads(ckpt)
    items = [{"image": it["image"], "mask": it["mask"], "label": it["label"]} for it in toy_cohorts["hn_response"]]
    model = checkpoint_model(ckpt)
    torch.manual_seed(0)
    with torch.no_grad():  # a "fine-tuned" network: other features
        for prm in model.parameters():
            prm.add_(0.05 * torch.randn_like(prm))
    new = refit_feature_heads(heads, model, spec, items)
    assert [h.inputs for h in new] == [h.inputs for h in heads]
    assert new[0].inputs == ("features", *MEASUREMENT_NAMES)
    outer = LogisticHead.from_dict(heads[0].info["outer"])
    np.testing.assert_allclose(LogisticHead.from_dict(new[0].info["outer"]).coef, outer.coef)
    x = torch.stack([spec.preprocessing.load(it) for it in items])
    feats = network_outputs(model, x, features=True)["features"]
    meas = {k: np.array([spec.preprocessing.measure(spec.preprocessing.read(it))[k] for it in items])
            for k in MEASUREMENT_NAMES}
    refit = fit_logistic({"features": feats}, [it["label"] for it in items], ("features",), method="deep_features",
                         c=float(heads[0].info["C"]))
    np.testing.assert_allclose(new[0].predict({"features": feats, **meas}),
                               outer.predict({"margin": refit.logit({"features": feats}), **meas}), rtol=1e-6)
    assert new[-1] is heads[-1]  # the temperature fallback is not a feature head
    assert refit_feature_heads(heads, model, spec, items[:1]) == heads  # one class only: nothing refitted


def test_select_head_prefers_the_most_inputs_available():
    mk = lambda *names: LogisticHead(tuple(names), np.ones(len(names)), 0.0, np.zeros(len(names)),  # noqa: E731
                                     np.ones(len(names)), "stacking")
    heads = [mk("a", "b", "age"), mk("a", "b"), mk("a"), mk("b")]
    assert select_head(heads, {"a", "b"}).inputs == ("a", "b")
    assert select_head(heads, {"a", "b", "age"}).inputs == ("a", "b", "age")
    assert select_head(heads, {"b", "age"}).inputs == ("b",)
    with pytest.raises(InvalidInputError, match="no calibrated model"):
        select_head(heads, {"c"})


def test_inception_v3_shapes_widths_and_the_published_size():
    net = InceptionV3(in_channels=12, out_channels=2, width=0.125, branches=4).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 12, 80, 80))
        feats = net.features(torch.rand(2, 12, 80, 80))
    assert out.shape == (2, 4, 2) and feats.shape == (2, net.n_features) and net.n_features == 4 * 256
    with pytest.raises(ValueError, match="75"):
        net(torch.rand(1, 12, 64, 64))
    with pytest.raises(ValueError, match="multiple of 1/8"):
        InceptionV3(width=0.3)
    with pytest.raises(ValueError, match="split evenly"):
        InceptionV3(in_channels=10, branches=4)
    assert NETWORKS["InceptionV3"] is InceptionV3


def test_inception_feature_fusion_adds_a_fused_classifier_last():
    torch.manual_seed(0)
    net = InceptionV3(in_channels=6, out_channels=2, width=0.125, branches=2, fusion="features").eval()
    plain = InceptionV3(in_channels=6, out_channels=2, width=0.125, branches=2).eval()
    x = torch.rand(3, 6, 80, 80)
    with torch.no_grad():
        out, feats = net(x), net.features(x)
    assert net.fused_output and not plain.fused_output and out.shape == (3, 3, 2)
    with torch.no_grad():  # branch rows: each trunk's own classifier; last row: linear in all branches' features
        np.testing.assert_allclose(out[:, 0], net.trunks[0](x[:, :3]), atol=1e-5)
        np.testing.assert_allclose(out[:, 2], net.fusion_head(feats), atol=1e-5)
    assert set(plain.state_dict()) < set(net.state_dict())  # the plain network's parameters are unchanged
    from oncolabel.classification import _FusedOutput

    cam = grad_cam(_FusedOutput(net), x[:1], layer=net.cam_target(1))  # the fused decision, seen in trunk 1
    assert cam.shape == (80, 80) and 0.0 <= cam.min() and cam.max() <= 1.0 and not net.training
    with pytest.raises(ValueError, match="branches >= 2"):
        InceptionV3(in_channels=3, fusion="features")
    with pytest.raises(ValueError, match="fusion="):
        InceptionV3(in_channels=6, branches=2, fusion="logits")


def test_fused_network_outputs_heads_and_validation_logits():
    from oncolabel.classification import CVResult, fit_heads, network_outputs
    from oncolabel.training import fused_logits

    torch.manual_seed(1)
    net = InceptionV3(in_channels=6, out_channels=2, width=0.125, branches=2, fusion="features")
    x = torch.rand(4, 6, 80, 80)
    s = network_outputs(net, x, ("a", "b"))
    assert set(s) == {"margin", "margin_a", "margin_b", "margin_fused"}
    np.testing.assert_array_equal(s["margin"], s["margin_fused"])
    with torch.no_grad():
        logits = net.eval()(x)
    assert torch.equal(fused_logits(logits, net), logits[:, -1])
    assert torch.equal(fused_logits(logits), logits.mean(dim=1))
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    scores = {k: rng.normal(size=60) + y for k in ("margin_unenhanced", "margin_corticomedullary",
                                                   "margin_nephrographic", "margin_excretory", "margin_fused")}
    cv = CVResult(y=y, groups=np.arange(60), fold=np.arange(60) % 3, scores=scores, fold_auc=[], seconds=0.0)
    import dataclasses

    from oncolabel.classification import ClassificationPostprocessing

    renal = get_task("renal_mass")  # its heads without the mass measurements (tested elsewhere)
    renal = dataclasses.replace(renal, postprocessing=ClassificationPostprocessing(
        head="stacking", covariates=renal.postprocessing.covariates))
    heads = fit_heads(renal, cv, covariates={"age": rng.normal(60, 10, 60),
                                                               "sex_male": rng.integers(0, 2, 60).astype(float),
                                                               "size_mm": rng.uniform(12, 40, 60)})
    full = set(scores)
    assert select_head([h for h in heads if h.method != "multivariable"], full).inputs[0] == "margin_fused"
    assert "margin_fused" in heads[0].inputs and heads[0].method == "multivariable"
    fallback = select_head(heads, full - {"margin_fused", "margin_excretory"})  # a phase missing: branch stacking
    assert fallback.inputs == ("margin_unenhanced", "margin_corticomedullary", "margin_nephrographic")


@pytest.mark.slow
def test_full_width_inception_is_torchvisions():
    import torchvision

    ours = InceptionV3(in_channels=3, out_channels=2)
    theirs = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True, num_classes=2)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == 21789666


def test_branch_loss_trains_each_branch_on_its_own():
    loss = BranchCrossEntropy()
    y = torch.tensor([0, 1])
    logits = torch.tensor([[[2.0, -2.0], [0.0, 0.0]], [[-1.0, 1.0], [0.0, 0.0]]])
    per = [torch.nn.functional.cross_entropy(logits[:, k], y) for k in range(2)]
    assert loss(logits, y) == pytest.approx(float(sum(per) / 2), rel=1e-6)
    assert loss(logits[:, 0], y) == pytest.approx(float(per[0]), rel=1e-6)


@pytest.mark.parametrize("net, shape, branch", [
    (CNNClassifier(spatial_dims=2, in_channels=1, channels=(8, 16)), (1, 1, 40, 36), None),
    (CNNClassifier(spatial_dims=3, in_channels=2, channels=(8, 16)), (1, 2, 16, 20, 16), None),
    (InceptionV3(in_channels=6, width=0.125, branches=2, cam_layer="Mixed_5d"), (1, 6, 80, 80), 1),
])
def test_grad_cam_shape_range_and_no_side_effects(net, shape, branch):
    torch.manual_seed(0)
    x = torch.rand(*shape)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cam = grad_cam(net, x, branch=branch)
    assert cam.shape == shape[2:] and cam.dtype == np.float32 and 0.0 <= cam.min() and cam.max() <= 1.0
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(InvalidInputError):
        grad_cam(net, torch.rand(2, *shape[1:]))


@pytest.mark.parametrize("task", ["renal_mass", "pet_lymphoma", "hn_response"])
def test_training_and_inference_preprocessing_are_identical(task, toy_cohorts):
    spec = get_task(task)
    item = toy_cohorts[task][0]
    train_input = ClassificationAdapter(spec).tensor({**{k: item[k] for k in spec.preprocessing.inputs},
                                                      "label": item["label"]})
    infer_input = spec.preprocessing.prepare(spec.preprocessing.read(item)).tensor
    assert torch.equal(train_input, infer_input)
    net = spec.network.build().eval()
    with torch.no_grad():
        out = net(infer_input[None])
    assert out.shape[-1] == 2


@pytest.mark.parametrize("task", ["renal_mass", "pet_lymphoma", "hn_response"])
@pytest.mark.parametrize("code", ["RAS", "PIL"])
def test_preprocessing_does_not_depend_on_how_the_file_stores_its_axes(task, code, toy_cohorts):
    """The same physical images stored with other axis orders (RAS as NIfTI converters write them, or permuted)
    give the same network input: the working grids follow the patient's axes, not the file's."""
    spec = get_task(task)
    images = spec.preprocessing.read(toy_cohorts[task][0])
    turned = {k: sitk.DICOMOrient(v, code) for k, v in images.items()}
    first = next(iter(images))
    assert not np.allclose(turned[first].GetDirection(), images[first].GetDirection())
    np.testing.assert_allclose(spec.preprocessing.prepare(turned).tensor.numpy(),
                               spec.preprocessing.prepare(images).tensor.numpy(), atol=1e-4)


@pytest.mark.parametrize("task", ["renal_mass", "pet_lymphoma", "hn_response"])
def test_predictor_contract(task, toy_models, toy_cohorts):
    spec = get_task(task)
    predictor = ClassifierPredictor(toy_models[task], task=task)
    item = toy_cohorts[task][1]
    images = spec.preprocessing.read(item)
    res = predictor.predict(images)
    assert set(res.probabilities) == set(spec.labels) and sum(res.probabilities.values()) == pytest.approx(1.0)
    assert res.prediction == max(res.probabilities, key=res.probabilities.get)
    for name, heat in res.heatmaps.items():  # heat maps on the input's own grid
        ref = images[name]
        assert heat.GetSize() == ref.GetSize() and heat.GetSpacing() == pytest.approx(ref.GetSpacing())
        assert heat.GetOrigin() == pytest.approx(ref.GetOrigin())
        arr = sitk.GetArrayViewFromImage(heat)
        assert 0.0 <= arr.min() and arr.max() <= 1.0 + 1e-6
    payload = res.to_json()
    assert payload["notice"].startswith("research use only") and payload["model_version"] == predictor.version
    assert payload["calibrated"] and payload["provenance"]["model_sha256"]
    u = predictor.uncertainty(images)
    assert 0.0 <= u["entropy"] <= 1.0 and u["uncertainty"] == u["entropy"]
    assert load_checkpoint(toy_models[task]).training["heads"]


def test_renal_missing_phase_and_covariates(toy_models, toy_cohorts):
    spec = get_task("renal_mass")
    predictor = ClassifierPredictor(toy_models["renal_mass"], task="renal_mass")
    images = spec.preprocessing.read(toy_cohorts["renal_mass"][0])
    with pytest.raises(InvalidInputError, match="missing CT phase.*excretory"):
        predictor.predict({**images, "excretory": None})
    res = predictor.predict({**images, "excretory": None}, allow_missing=True)
    assert res.missing_inputs == ("excretory",) and "margin_excretory" not in res.head["inputs"]
    assert len(res.head["inputs"]) == 3 and "excretory" not in res.heatmaps
    full = predictor.predict(images, covariates={"age": 61, "sex_male": 1, "size_mm": 25}, heatmaps=False)
    assert full.head["method"] == "multivariable" and set(full.branch_probabilities) == set(spec.preprocessing.inputs)
    with pytest.raises(InvalidInputError, match="unknown covariate"):
        predictor.predict(images, covariates={"weight": 80})
    moved = sitk.Image(images["excretory"])
    moved.SetOrigin(np.add(moved.GetOrigin(), (35.0, 0.0, 0.0)).tolist())  # half the box: another region
    with pytest.raises(GeometryError, match=r"the excretory phase covers about \d+% of the corticomedullary"):
        predictor.predict({**images, "excretory": moved})


def test_renal_phases_on_other_grids_are_resampled_onto_the_corticomedullary_grid(toy_models, toy_cohorts):
    """Scanners store the phases of one examination on their own grids (slice thickness, pixels, extent, axis
    order): they are brought onto the corticomedullary grid by physical coordinates, and the result says so."""
    spec = get_task("renal_mass")
    predictor = ClassifierPredictor(toy_models["renal_mass"], task="renal_mass")
    images = spec.preprocessing.read(toy_cohorts["renal_mass"][0])
    base = predictor.predict(images, heatmaps=False)
    assert not base.warnings
    turned = {**images, "nephrographic": sitk.DICOMOrient(images["nephrographic"], "RAS"),
              "excretory": sitk.DICOMOrient(images["excretory"], "PIL")}  # the same voxels: the same answer
    res = predictor.predict(turned)
    assert res.probabilities == pytest.approx(base.probabilities, abs=1e-6)
    assert res.measurements == pytest.approx(base.measurements, rel=1e-6)
    assert res.warnings[0].startswith("nephrographic, excretory phases on another grid than the corticomedullary")
    assert res.heatmaps["excretory"].GetDirection() == turned["excretory"].GetDirection()
    ng = images["nephrographic"]  # finer pixels over a wider box, resampled the way a scanner would reconstruct
    sp, size = np.array(ng.GetSpacing()), np.array(ng.GetSize())
    fine = sitk.Image([int(size[0] * 1.5) + 10, int(size[1] * 1.5) + 10, int(size[2]) + 2], sitk.sitkFloat32)
    fine.SetSpacing((sp[0] / 1.5, sp[1] / 1.5, sp[2]))
    fine.SetDirection(ng.GetDirection())
    fine.SetOrigin((np.array(ng.GetOrigin()) - (5 * sp[0] / 1.5, 5 * sp[1] / 1.5, sp[2])).tolist())
    fine = sitk.Resample(ng, fine, sitk.Transform(), sitk.sitkBSpline, -1000.0, sitk.sitkFloat32)
    res = predictor.predict({**images, "nephrographic": fine}, heatmaps=False)
    assert res.warnings[0].startswith("nephrographic phase on another grid")
    assert res.measurements["unenhanced_hu"] == base.measurements["unenhanced_hu"]
    assert res.measurements["enhancement_nephrographic_hu"] == pytest.approx(
        base.measurements["enhancement_nephrographic_hu"], abs=3.0)
    assert res.probabilities["malignant"] == pytest.approx(base.probabilities["malignant"], abs=0.1)


def test_renal_fused_network_end_to_end(toy_cohorts, tmp_path):
    """A renal spec with the fused classifier: heads stack it with the phases, Grad-CAM covers it, a missing phase
    falls back to the phases' own classifiers."""
    import dataclasses

    from oncolabel.checkpoint import save_checkpoint
    from oncolabel.classification import fit_classifier
    from oncolabel.tasks.base import NetworkSpec

    from tests.unit.classification.conftest import single_thread

    base = get_task("renal_mass")
    spec = dataclasses.replace(base, network=NetworkSpec(base.network.name, {**base.network.kwargs,
                                                                             "fusion": "features"}))
    raw = toy_cohorts["renal_mass"]
    items = [{**{k: it[k] for k in spec.preprocessing.inputs}, "label": it["label"]} for it in raw]
    with single_thread():
        fit = fit_classifier(spec, items, n_splits=2, iterations=2, batch_size=4)
        predictor = ClassifierPredictor(save_checkpoint(fit.checkpoint, tmp_path / "fused.pt"), task=spec)
        images = spec.preprocessing.read(raw[0])
        full = predictor.predict(images)
        partial = predictor.predict({**images, "nephrographic": None}, allow_missing=True)
    assert "margin_fused" in fit.cv.scores and "cv_auc_margin_fused" in fit.metrics
    assert full.head["inputs"][0] == "margin_fused" and len(full.head["inputs"]) == 5 + 6  # + the measurements
    heat = sitk.GetArrayViewFromImage(full.heatmaps["corticomedullary"])
    assert np.isfinite(heat).all() and heat.max() <= 1.0 + 1e-6 and not predictor.model.training
    assert "margin_fused" not in partial.head["inputs"] and len(partial.head["inputs"]) == 3


def test_predictor_refuses_other_tasks_and_bare_checkpoints(toy_models, tmp_path):
    from oncolabel.checkpoint import save_checkpoint

    with pytest.raises(CheckpointError):
        ClassifierPredictor(toy_models["pet_lymphoma"], task="hn_response")
    with pytest.raises(InvalidInputError, match="not classification"):
        ClassifierPredictor(toy_models["pet_lymphoma"], task="bone_metastasis")
    ck = load_checkpoint(toy_models["pet_lymphoma"])
    ck.training.pop("heads")
    with pytest.raises(CheckpointError, match="heads"):
        ClassifierPredictor(save_checkpoint(ck, tmp_path / "bare.pt"), task="pet_lymphoma")


def test_hn_empty_mask_is_refused(toy_cohorts):
    spec = get_task("hn_response")
    images = spec.preprocessing.read(toy_cohorts["hn_response"][0])
    empty = sitk.Image(images["mask"]) * 0
    with pytest.raises(InvalidInputError, match="empty"):
        spec.preprocessing.prepare({"image": images["image"], "mask": empty})
    assert read_image(toy_cohorts["hn_response"][0]["mask"]).GetSize() == images["image"].GetSize()


def test_region_table_fisher_known_answers():
    from scipy.stats import fisher_exact

    from oncolabel.tasks.pet_lymphoma import REGION_NAMES, region_table

    none = {r: False for r in REGION_NAMES}
    recs = ([{"class": "sarcoidosis", "involved": {**none, "mediastinal_nodes": True}}] * 13
            + [{"class": "sarcoidosis", "involved": none}] * 1
            + [{"class": "lymphoma", "involved": {**none, "mediastinal_nodes": True}}] * 5
            + [{"class": "lymphoma", "involved": {**none, "cervical_nodes": True}}] * 10)
    table = region_table(recs)
    rows = {r[0]: r for r in table.rows}
    med = rows["mediastinal_nodes"]
    assert med[1:5] == (13, 92.9, 5, 33.3)
    assert med[5] == pytest.approx(round(fisher_exact([[13, 1], [5, 10]])[1], 4))
    assert med[5] == pytest.approx(0.0017, abs=1e-4)  # two-sided Fisher exact, R: fisher.test(matrix(c(13,5,1,10),2))
    assert rows["adrenal"][5] == 1.0 and table.columns[1].startswith("sarcoidosis n (of 14)")
    with pytest.raises(InvalidInputError, match="both classes"):
        region_table(recs[:14])
