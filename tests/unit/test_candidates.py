"""Candidate components: features, the false-positive filter, growth into adjacent slices, and their use by the
predictor, the checkpoint, fine-tuning and the ``fit-filter`` command."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk

from oncolabel.candidates import (COMPONENT_FEATURES, ComponentFilter, candidate_mask, component_features,
                                  component_table, fit_component_filter, grow_along_z)
from oncolabel.checkpoint import load_checkpoint, save_checkpoint
from oncolabel.errors import CheckpointError, InvalidInputError
from oncolabel.lesions import label_components

F = {name: k for k, name in enumerate(COMPONENT_FEATURES)}


def _scene():
    """Bone (250 HU) in soft tissue (40 HU): a lytic block (30 HU) and a small dense island (1300 HU)."""
    hu = np.full((12, 40, 40), 40.0, np.float32)
    hu[:, 5:35, 5:35] = 250.0
    prob = np.zeros_like(hu)
    labels = np.zeros(hu.shape, np.int32)
    hu[3:9, 10:20, 10:20] = 30.0
    labels[3:9, 10:20, 10:20], prob[3:9, 10:20, 10:20] = 1, 0.8
    prob[5, 15, 15] = 0.99
    hu[5:7, 26:29, 26:29] = 1300.0
    labels[5:7, 26:29, 26:29], prob[5:7, 26:29, 26:29] = 2, 0.5
    return prob, hu, labels


def test_component_features_measure_size_attenuation_surroundings_and_shape():
    prob, hu, labels = _scene()
    spacing = (2.0, 1.0, 1.0)
    X = component_features(prob, hu, labels, spacing)
    assert X.shape == (2, len(COMPONENT_FEATURES)) and np.isfinite(X).all()
    lytic, island = X
    assert lytic[F["log_volume_mm3"]] == pytest.approx(np.log(6 * 10 * 10 * 2.0))
    assert lytic[F["prob_max"]] == pytest.approx(0.99) and island[F["prob_mean"]] == pytest.approx(0.5)
    assert lytic[F["hu_mean"]] == pytest.approx(30.0) and island[F["hu_mean"]] == pytest.approx(1300.0)
    assert lytic[F["ring_hu_mean"]] == pytest.approx(250.0) and lytic[F["contrast_to_ring"]] == pytest.approx(-220.0)
    assert lytic[F["ring_bone_fraction"]] == 1.0 and lytic[F["frac_soft"]] == 1.0
    assert island[F["frac_very_dense"]] == 1.0 and island[F["frac_hu_over_1000"]] == 1.0
    assert lytic[F["n_slices"]] == 6 and lytic[F["z_extent_mm"]] == pytest.approx(12.0)
    assert island[F["n_slices"]] == 2
    truth = np.zeros(labels.shape, bool)
    truth[8, 19, 19] = True  # one voxel of the lytic block: it counts as true, the island as a false positive
    Xt, y = component_table(prob, hu, labels, truth, spacing)
    np.testing.assert_array_equal(Xt, X)
    assert y.tolist() == [1, 0]


def test_component_features_reject_mismatched_or_non_consecutive_input():
    prob, hu, labels = _scene()
    with pytest.raises(InvalidInputError, match="same 3D shape"):
        component_features(prob[:-1], hu, labels, (1, 1, 1))
    labels[labels == 1] = 3  # labels 2 and 3: 1 missing
    with pytest.raises(InvalidInputError, match="not consecutive"):
        component_features(prob, hu, labels, (1, 1, 1))
    assert component_features(prob, hu, np.zeros_like(labels), (1, 1, 1)).shape == (0, len(COMPONENT_FEATURES))


def _tables(rng, n_cases=40):
    """Per-case (X, y): true components have higher feature 0 and 4 than false ones (overlapping)."""
    out = []
    for _ in range(n_cases):
        y = rng.integers(0, 2, size=int(rng.integers(1, 6)))
        X = rng.normal(size=(len(y), len(COMPONENT_FEATURES)))
        X[:, 0] += 1.5 * y
        X[:, 4] -= 1.0 * y
        out.append((X, y))
    return out


def test_component_filter_equals_a_standardised_scikit_learn_logistic_regression_and_round_trips():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    tables = _tables(np.random.default_rng(0))
    X, y = np.vstack([t[0] for t in tables]), np.concatenate([t[1] for t in tables])
    flt = ComponentFilter(C=0.3, threshold=0.4).fit(X, y)
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=5000)).fit(X, y)
    np.testing.assert_allclose(flt.predict_proba(X), ref.predict_proba(X), atol=1e-6)
    back = ComponentFilter.from_dict(flt.to_dict())
    np.testing.assert_array_equal(back.predict_proba(X), flt.predict_proba(X))
    assert (back.keep(X) == (flt.predict_proba(X)[:, 1] >= 0.4)).all() and back.keep(X[:0]).shape == (0,)


def test_component_filter_errors():
    X = np.zeros((4, len(COMPONENT_FEATURES)))
    with pytest.raises(InvalidInputError, match="not fitted"):
        ComponentFilter().predict_proba(X)
    with pytest.raises(InvalidInputError, match="both true and false"):
        ComponentFilter().fit(X, np.ones(4))
    with pytest.raises(InvalidInputError, match=r"\(n, "):
        ComponentFilter().fit(X[:, :3], [0, 1, 0, 1])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        ComponentFilter().fit(bad, [0, 1, 0, 1])
    d = ComponentFilter().fit(np.eye(4, len(COMPONENT_FEATURES)), [0, 1, 0, 1]).to_dict()
    with pytest.raises(CheckpointError, match="another feature list"):
        ComponentFilter.from_dict({**d, "features": d["features"][:-1]})
    with pytest.raises(CheckpointError, match="kind"):
        ComponentFilter.from_dict({**d, "kind": "forest"})


def test_fit_component_filter_reports_a_case_grouped_cross_validated_auc():
    rng = np.random.default_rng(1)
    flt, report = fit_component_filter(_tables(rng), threshold=0.3, folds=5, seed=0)
    assert report["folds"] == 5 and report["n_cases"] == 40
    assert 0.75 < report["cv_auc"] < 1.0  # informative but overlapping features: good, not perfect
    assert report["cv_kept_true"] > report["cv_kept_false"]
    noise = [(rng.normal(size=X.shape), y) for X, y in _tables(rng)]
    assert fit_component_filter(noise)[1]["cv_auc"] < 0.7  # nothing to learn: no optimistic AUC
    with pytest.raises(InvalidInputError, match="no mix"):
        fit_component_filter([(np.zeros((2, len(COMPONENT_FEATURES))), np.zeros(2, int))])


def test_grow_along_z_adds_the_lesion_ends_inside_the_footprint_only():
    hu = np.full((9, 20, 20), 250.0, np.float32)  # cancellous bone
    hu[2:7, 5:12, 5:12] = 30.0  # a lytic lesion on slices 2..6
    hu[2, 5:8, 5:12] = 250.0  # its first slice is smaller
    mask = np.zeros(hu.shape, bool)
    mask[3:6, 5:12, 5:12] = True  # the network found slices 3..5
    mask[3:6, 15:18, 15:18] = True  # another component in bone (its HU range is bone: it grows through bone)
    grown = grow_along_z(mask, hu, steps=1)
    assert grown[mask].all()
    np.testing.assert_array_equal(grown[2, 5:12, 5:12], hu[2, 5:12, 5:12] == 30.0)
    assert grown[6, 5:12, 5:12].all() and not grown[1].any() and not grown[7].any()
    assert not grown[:, 12:15].any() and not grown[:, :, 12:15].any()  # never outside the footprints
    assert grown[2:7, 15:18, 15:18].all()
    assert (grow_along_z(mask, hu, steps=0) == mask).all() and not grow_along_z(mask & False, hu).any()
    with pytest.raises(InvalidInputError, match="differ in shape"):
        grow_along_z(mask, hu[:-1])


def _filter_dict(intercept: float = 0.0) -> dict:
    """A fitted filter's record; ``intercept`` +-50 with zero weights: keeps every / no component."""
    tables = _tables(np.random.default_rng(2), 10)
    X, y = np.vstack([t[0] for t in tables]), np.concatenate([t[1] for t in tables])
    d = {**ComponentFilter(threshold=0.5).fit(X, y).to_dict(), "fitted_on_model": "abc"}
    if intercept:
        d.update(coef=[0.0] * len(COMPONENT_FEATURES), intercept=intercept)
    return d


def test_checkpoint_keeps_the_filter_and_fine_tuning_inherits_it(toy_pair, toy_checkpoint, tmp_path):
    from oncolabel.tasks import get_task
    from oncolabel.training import Trainer

    ck = load_checkpoint(toy_checkpoint)
    assert ck.component_filter is None
    stored = _filter_dict()
    path = save_checkpoint(dataclasses.replace(ck, component_filter=stored, path=None, sha256=None), tmp_path / "f.pt")
    loaded = load_checkpoint(path)
    assert loaded.component_filter == stored and loaded.sha256 != ck.sha256
    ip, lp = toy_pair
    child = Trainer(get_task("bone_metastasis"), iterations=1, batch_size=2, init=loaded, seed=0).fit(
        [{"image": str(ip), "label": str(lp)}]).checkpoint
    assert child.component_filter == stored and child.parent_sha256 == loaded.sha256


def test_predictor_applies_the_checkpoint_filter_and_the_growth_as_the_spec_says(toy_checkpoint, tmp_path):
    from tests.conftest import toy_ct
    from oncolabel.inference import SegmentationPredictor
    from oncolabel.tasks import get_task

    image, _ = toy_ct(3)
    ck = load_checkpoint(toy_checkpoint)
    spec = get_task("bone_metastasis")
    loose = dataclasses.replace(spec, postprocessing=dataclasses.replace(
        spec.postprocessing, threshold=0.2, seed_threshold=0.0, min_lesion_mm3=1.0))
    plain = SegmentationPredictor(ck, task=loose)
    prob = plain.predict_probability(image)
    base = plain.postprocess(prob, image)
    assert base.any() and (base == plain.candidates(prob, image)).all()
    for intercept, expect_kept in ((50.0, True), (-50.0, False)):  # a filter keeping everything / nothing
        path = save_checkpoint(dataclasses.replace(ck, component_filter=_filter_dict(intercept), path=None,
                                                   sha256=None), tmp_path / f"f{intercept}.pt")
        pred = SegmentationPredictor(path, task=loose)
        out = pred.postprocess(prob, image)
        assert (out == base).all() if expect_kept else not out.any()
        assert pred.provenance()["component_filter"]["applied"] is True
        off = SegmentationPredictor(path, task=dataclasses.replace(loose, postprocessing=dataclasses.replace(
            loose.postprocessing, component_filter=False)))
        assert (off.postprocess(prob, image) == base).all()
    # growth: the result is the candidates grown with the CT's own HU
    grown_spec = dataclasses.replace(loose, postprocessing=dataclasses.replace(loose.postprocessing, grow_slices=1))
    hu = sitk.GetArrayFromImage(image)
    assert (SegmentationPredictor(ck, task=grown_spec).postprocess(prob, image)
            == grow_along_z(base, hu, steps=1)).all()
    # the component table labels each candidate by whether it touches the truth
    truth = np.zeros(base.shape, bool)
    X, y = plain.component_table(image, truth)
    assert X.shape == (label_components(base)[1], len(COMPONENT_FEATURES)) and not y.any()
    X, y = plain.component_table(image, base)
    assert y.all()


def test_candidate_mask_is_the_threshold_hysteresis_and_size_rule():
    prob = np.zeros((4, 16, 16), np.float32)
    prob[1:3, 2:6, 2:6], prob[1:3, 9:13, 9:13], prob[2, 3, 3] = 0.6, 0.7, 0.95
    prob[0, 14, 14] = 0.99  # one voxel
    assert candidate_mask(prob, threshold=0.5, seed_threshold=0.9, min_voxels=2).sum() == 32
    assert candidate_mask(prob, threshold=0.5, seed_threshold=0.0, min_voxels=2).sum() == 64
    assert candidate_mask(prob, threshold=0.5, seed_threshold=0.0, min_voxels=1).sum() == 65


def test_out_of_fold_scores_never_use_the_scored_case():
    """Case 0 carries a feature that predicts its own labels perfectly and is constant in every other case: a
    filter that had seen case 0 would score it perfectly; out of fold it cannot."""
    from oncolabel.candidates import out_of_fold_scores
    from oncolabel.stats import roc_auc

    rng = np.random.default_rng(3)
    tables = _tables(rng, 30)
    y0 = np.array([0, 1] * 6)
    X0 = rng.normal(size=(12, len(COMPONENT_FEATURES)))
    X0[:, 7] = 100.0 * y0
    tables[0] = (X0, y0)
    oof = out_of_fold_scores(tables, folds=5, seed=0)
    assert oof.shape == (sum(len(t[1]) for t in tables),) and np.isfinite(oof).all()
    leaky = ComponentFilter().fit(np.vstack([t[0] for t in tables]), np.concatenate([t[1] for t in tables]))
    assert roc_auc(y0, leaky.predict_proba(X0)[:, 1]) == 1.0
    assert roc_auc(y0, oof[:12]) < 0.9
    assert np.isnan(out_of_fold_scores(tables[:1])).all()  # one case: nothing to fold


def test_the_filter_cross_validation_keeps_a_patient_on_one_side():
    """Cases of one patient (e.g. two series from a PACS import) never sit on both sides of a fold: with every case
    of one patient there is nothing to validate on, and the AUC says so instead of scoring leaked cases."""
    from oncolabel.candidates import out_of_fold_scores

    rng = np.random.default_rng(0)
    tables = _tables(rng)
    per_case = out_of_fold_scores(tables, folds=5, seed=0)
    assert np.array_equal(out_of_fold_scores(tables, folds=5, seed=0, patients=[None] * len(tables)), per_case,
                          equal_nan=True)  # no ids: each case its own patient, the same folds as before
    assert np.isnan(out_of_fold_scores(tables, folds=5, seed=0, patients=["P1"] * len(tables))).all()
    report = fit_component_filter(tables, patients=["P1"] * len(tables))[1]
    assert report["cv_auc"] is None and report["folds"] == 1
    with pytest.raises(InvalidInputError, match="patient ids for"):
        out_of_fold_scores(tables, patients=["P1"])
