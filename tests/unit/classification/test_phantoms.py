"""Classification phantoms: determinism, the Bayes posterior, cohort files and the ceiling AUC."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.stats import norm

from oncolabel.errors import InvalidInputError
from oncolabel.phantoms import hn_response as hn
from oncolabel.phantoms import pet_lymphoma as pl
from oncolabel.phantoms import renal_mass as rm
from oncolabel.phantoms._ct import child_seed
from oncolabel.phantoms.io import read_classification_cohort, read_manifest, verify_cohort
from oncolabel.stats import roc_auc

GENERATORS = {"renal_mass": rm.generate_renal_mass_case, "pet_lymphoma": pl.generate_pet_lymphoma_case,
              "hn_response": hn.generate_hn_response_case}
MODULES = {"renal_mass": (rm, rm.RenalMassPhantomConfig()), "pet_lymphoma": (pl, pl.PetLymphomaPhantomConfig()),
           "hn_response": (hn, hn.HnResponsePhantomConfig())}


@pytest.mark.parametrize("task", sorted(GENERATORS))
def test_same_seed_same_case_other_seed_other_case(task):
    mod, _ = MODULES[task]
    a, b = (GENERATORS[task](mod.case_seed(7, 2)) for _ in range(2))
    c = GENERATORS[task](mod.case_seed(7, 3))
    assert a.traits == b.traits and a.posterior == b.posterior
    for name in a.images:
        assert np.array_equal(sitk.GetArrayViewFromImage(a.images[name]), sitk.GetArrayViewFromImage(b.images[name]))
    first = sorted(a.images)[0]
    assert not np.array_equal(sitk.GetArrayViewFromImage(a.images[first]), sitk.GetArrayViewFromImage(c.images[first]))
    assert 0.0 <= a.posterior <= 1.0 and a.label in (0, 1)


def _draws(task: str, n: int) -> list[dict]:
    mod, cfg = MODULES[task]
    return [mod._draw_traits(np.random.default_rng(child_seed(11, i)), cfg) for i in range(n)]


def test_renal_ceiling_is_high_but_not_perfect_and_size_is_not_informative():
    traits = _draws("renal_mass", 1500)
    y = [t["malignant"] for t in traits]
    full = [rm.posterior_malignant(t) for t in traits]
    image = [rm.posterior_malignant(t, clinical=False) for t in traits]
    assert 0.85 < roc_auc(y, image) <= roc_auc(y, full) + 0.01 < 0.97
    assert abs(roc_auc(y, [t["diameter_mm"] for t in traits]) - 0.5) < 0.05
    assert 0.5 < roc_auc(y, [t["age"] for t in traits]) < 0.7  # mildly informative


def _renal_bayes(enhancement_lik, age_lik, unenhanced: float, central: bool, log_het: float, male: bool) -> float:
    """P(malignant) by Bayes' rule written out; ``enhancement_lik(subtype)``, ``age_lik(mu, sd)`` give the terms
    that differ between the known-answer tests."""
    cfg = rm.RenalMassPhantomConfig()
    lik = []
    for s in rm.SUBTYPES:
        v = norm.pdf(unenhanced, *s.unenhanced) * (s.central_area if central else 1 - s.central_area)
        v *= norm.pdf(log_het, s.heterogeneity, rm.HETEROGENEITY_SD) * enhancement_lik(s)
        mu, sd, pm = cfg.age_male[int(s.malignant)]
        v *= age_lik(mu, sd) * (pm if male else 1 - pm)
        v *= s.weight * (cfg.malignant_fraction if s.malignant else 1 - cfg.malignant_fraction)
        lik.append((s.malignant, v))
    return sum(v for m, v in lik if m) / sum(v for _, v in lik)


def test_renal_posterior_is_bayes_rule():
    """Known answer: with one subtype per class the posterior is prior x likelihood ratio."""
    t = {"unenhanced_hu": 35.0, "enhancement_hu": {"corticomedullary": 100.0, "nephrographic": 70.0,
                                                  "excretory": 45.0},
         "central_area": True, "log_heterogeneity": 2.6, "age": 60.0, "sex": "M"}
    expected = _renal_bayes(lambda s: np.prod([norm.pdf(x, *ms) for x, ms in zip((100.0, 70.0, 45.0), s.enhancement)]),
                            lambda mu, sd: norm.pdf(60.0, mu, sd), 35.0, True, 2.6, True)
    assert rm.posterior_malignant(t) == pytest.approx(expected, rel=1e-9)


def test_renal_posterior_treats_clipped_draws_as_censored():
    """Known answer: an enhancement clipped to 0 HU enters as P(X <= 0), an age clipped to 95 as P(X >= 95)."""
    t = {"unenhanced_hu": 36.0, "enhancement_hu": {"corticomedullary": 0.0, "nephrographic": 40.0,
                                                  "excretory": 35.0},
         "central_area": False, "log_heterogeneity": 2.2, "age": 95.0, "sex": "F"}

    def enhancement(s):
        (m_cm, sd_cm), *rest = s.enhancement
        return norm.cdf(0.0, m_cm, sd_cm) * np.prod([norm.pdf(x, *ms) for x, ms in zip((40.0, 35.0), rest)])

    expected = _renal_bayes(enhancement, lambda mu, sd: norm.sf(95.0, mu, sd), 36.0, False, 2.2, False)
    assert rm.posterior_malignant(t) == pytest.approx(expected, rel=1e-9)


def test_renal_posterior_given_some_traits_marginalises_the_others():
    t = _draws("renal_mass", 1)[0]
    cfg = rm.RenalMassPhantomConfig()
    assert rm.posterior_malignant(t, clinical=False, use=()) == pytest.approx(cfg.malignant_fraction)
    lik = {m: sum(s.weight * norm.pdf(t["unenhanced_hu"], *s.unenhanced) for s in rm.SUBTYPES if s.malignant == m)
           for m in (True, False)}
    p = cfg.malignant_fraction
    expected = p * lik[True] / (p * lik[True] + (1 - p) * lik[False])
    assert rm.posterior_malignant(t, clinical=False, use=["unenhanced"]) == pytest.approx(expected, rel=1e-9)
    assert rm.posterior_malignant(t, use=rm.IMAGE_TRAITS) == rm.posterior_malignant(t)
    with pytest.raises(InvalidInputError, match="texture"):
        rm.posterior_malignant(t, use=["texture"])


def test_renal_texture_never_exceeds_the_trait_in_any_phase(monkeypatch):
    """Generator 1.0 scaled the texture by enhancement / corticomedullary enhancement: a mass enhancing late only
    (papillary RCC, 0 HU corticomedullary) got a texture tens of times the trait in the nephrographic phase."""
    assert rm.texture_scale({"corticomedullary": 0.0, "nephrographic": 45.0, "excretory": 30.0}) == pytest.approx(
        {"corticomedullary": 0.0, "nephrographic": 1.0, "excretory": 30.0 / 45.0})
    assert rm.texture_scale({"corticomedullary": 100.0, "nephrographic": 70.0, "excretory": 40.0}
                            )["corticomedullary"] == 1.0
    draw = rm._draw_traits

    def late_enhancing(rng, cfg):
        t = draw(rng, cfg)
        t.update(enhancement_hu={"corticomedullary": 0.0, "nephrographic": 45.0, "excretory": 30.0},
                 log_heterogeneity=math.log(10.0), central_area=False, diameter_mm=30.0)
        return t

    monkeypatch.setattr(rm, "_draw_traits", late_enhancing)
    case = rm.generate_renal_mass_case(rm.case_seed(5, 0))
    core = sitk.GetArrayViewFromImage(case.images["mask"]) > 0
    from scipy import ndimage

    core = ndimage.binary_erosion(core, iterations=2)
    sd = {p: float(sitk.GetArrayViewFromImage(case.images[p])[core].std()) for p in rm.PHASES}
    noise = case.meta["noise_sd_hu"]
    assert sd["nephrographic"] < math.hypot(noise, 10.0) * 1.5  # 1.0: about 450 HU
    assert sd["nephrographic"] > sd["unenhanced"]  # the texture is there


def test_pet_involvement_follows_the_study_table():
    traits = _draws("pet_lymphoma", 4000)
    for c, name in enumerate(pl.CLASSES):
        rows = [t for t in traits if t["class"] == name]
        for region, p in pl.REGIONS.items():
            freq = np.mean([t["involved"][region] for t in rows])
            # drawn until >= 1 region is involved: frequencies slightly above the table's
            assert p[c] - 0.04 <= freq <= p[c] * 1.12 + 0.04, (name, region, freq)
    y = [t["class"] == "lymphoma" for t in traits]
    ceiling = roc_auc(y, [pl.posterior_lymphoma(t["involved"], t["hilar_pattern"]) for t in traits])
    assert 0.9 < ceiling < 0.98


def test_pet_posterior_known_answers():
    none = {r: False for r in pl.REGIONS}
    assert pl.posterior_lymphoma({**none, "adrenal": True}, None) == 1.0  # never adrenal in sarcoidosis
    sarcoid_like = {**none, "mediastinal_nodes": True, "lung": True}
    assert pl.posterior_lymphoma(sarcoid_like, True) < 0.02
    assert pl.posterior_lymphoma(sarcoid_like, False) > pl.posterior_lymphoma(sarcoid_like, True)


def test_pet_image_is_suv_with_physiological_uptake_and_lesions():
    case = pl.generate_pet_lymphoma_case(pl.case_seed(5, 0))
    suv = sitk.GetArrayViewFromImage(case.images["image"])
    lesions = sitk.GetArrayViewFromImage(case.images["lesions"])
    assert case.images["image"].GetSpacing() == (4.0, 4.0, 4.0)
    assert 0 <= suv.min() and 5 < suv.max() < 100
    top = suv[-40:]  # the head: brain uptake
    assert top.max() > 5
    involved = [k for k, v in case.traits["involved"].items() if v]
    assert involved and lesions.any()
    codes = {list(pl.REGIONS).index(r) + 1 for r in involved}
    assert set(np.unique(lesions[lesions > 0]).tolist()) <= codes


def test_hn_label_is_the_median_split_and_followup_shrinks():
    traits = _draws("hn_response", 3000)
    assert abs(np.mean([t["good_response"] for t in traits]) - 0.5) < 0.03
    rates = np.array([t["shrinkage_rate"] for t in traits])
    good = np.array([t["good_response"] for t in traits])
    assert rates[good].min() >= np.median(rates) - 0.02 and rates[~good].max() <= np.median(rates) + 0.02
    t = traits[0]
    assert hn.posterior_response(t) == pytest.approx(norm.cdf(hn.response_mean(t) / hn.HnResponsePhantomConfig().noise_sd))
    case = hn.generate_hn_response_case(hn.case_seed(2, 1))
    tr = case.traits
    assert tr["volume_followup_ml"] < tr["volume_pre_ml"]
    assert tr["measured_shrinkage"] == pytest.approx(tr["shrinkage_rate"], abs=0.08)
    assert case.images["mask"].GetSize() == case.images["image"].GetSize()
    hu = sitk.GetArrayViewFromImage(case.images["image"])[sitk.GetArrayViewFromImage(case.images["mask"]) > 0]
    assert 0 < float(np.median(hu)) < 150


def test_cohort_files_manifest_and_ceiling(tmp_path):
    entries = rm.write_renal_mass_cohort(tmp_path / "rm", 6, 4)
    manifest = read_manifest(tmp_path / "rm")
    assert len(entries) == 6 and verify_cohort(tmp_path / "rm") == []
    s = manifest["summary"]
    y = [e["label"] for e in entries]
    assert s["ceiling_auc"] == pytest.approx(roc_auc(y, [e["posterior"] for e in entries]), abs=1e-4)
    assert "image_ceiling_auc" in s and manifest["notice"].startswith("research use only")
    items = read_classification_cohort(tmp_path / "rm")
    assert set(rm.PHASES) | {"mask"} <= set(items[0]) and items[0]["label"] in (0, 1)
    again = rm.write_renal_mass_cohort(tmp_path / "rm2", 3, 4)  # case i does not depend on n
    assert [e["files"]["corticomedullary"]["sha256"] for e in again] == \
        [e["files"]["corticomedullary"]["sha256"] for e in entries[:3]]


def test_config_validation():
    from oncolabel.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="diameter_mm"):
        rm.RenalMassPhantomConfig(diameter_mm=(10.0, 60.0))
    with pytest.raises(InvalidInputError, match="lymphoma_fraction"):
        pl.PetLymphomaPhantomConfig(lymphoma_fraction=1.0)
    with pytest.raises(InvalidInputError, match="seed"):
        hn.case_seed(-1, 0)
    assert math.isfinite(hn.MOMENTS["log_volume_ml"][1])
