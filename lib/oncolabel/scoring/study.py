"""The RDP-score study end to end: cohorts -> features -> ten learners under one CV -> frozen model -> report.

:func:`run_study` reproduces the design of the emulated study on two cohorts (phantom or real, in the layout
``images/``, ``labels/``, ``clinical.csv``):

1. the training centre is split into a training set and an internal validation set (patient level, stratified);
2. radiomics (with a perturbed replicate of each training case, for the stability filter) are extracted once;
3. ten learners are compared under one patient-level ``n_folds`` cross-validation of the training set; each fold
   trains its own deep-feature CNN and runs the whole selection inside the fold;
4. the chosen learner (glmBoost, as in the study) is refitted on the whole training set, recalibrated (Platt, on
   its out-of-fold log-odds), given a risk threshold (Youden's J on the out-of-fold calibrated scores) and frozen;
5. it is evaluated on the training set (out-of-fold), the internal and the external validation sets: AUC with
   CI, DeLong radiomics-only vs deep-only vs combined, AUC for tumours <= 2 cm and > 2 cm, calibration, decision
   curves, Kaplan-Meier of disease-free survival by risk group with the log-rank test; against each cohort's
   ceiling AUC when the cohort is a phantom (``lesions/<id>.json`` hold the generator's posterior).

Everything statistical comes from :mod:`oncolabel.stats`; the HTML comes from :mod:`oncolabel.report`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import clone

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.errors import InvalidInputError
from oncolabel.features.deep import DeepFeatures
from oncolabel.features.table import radiomics_table
from oncolabel.io import image_suffix
from oncolabel.provenance import package_versions, provenance
from oncolabel.scoring.models import (FEATURE_SETS, METHODS, cross_validate_models, model_pipeline,
                                      selection_frequency)
from oncolabel.scoring.rdp import RdpHead, RdpModel
from oncolabel.stats import PatientStratifiedKFold, delong_test, roc_auc_ci, youden_threshold

__all__ = ["Cohort", "RdpFit", "StudySettings", "StudyResult", "fit_rdp", "load_cohort", "run_study", "platt"]

CHOSEN = "glmboost"


@dataclass(frozen=True)
class StudySettings:
    """Settings of :func:`run_study` (all recorded in the report and the model card).

    Attributes
    ----------
    internal_fraction : share of the training centre held out for internal validation (tenths).
    n_folds : cross-validation folds on the training set.
    seed : seed of splits, CNN training and learners.
    n_jobs : processes for radiomics extraction.
    cnn_iterations : CNN training iterations (default: the task's).
    deep_cross_fit : inner folds of the deep-feature CNN (``K`` CNNs, out-of-fold logit for the training rows;
        see :mod:`oncolabel.features.deep`).
    max_features : most features the LASSO step passes on.
    stability_threshold, redundancy_threshold : ICC and ``|rho|`` cut-offs of the selection steps.
    methods : learners compared.
    n_boot : bootstrap replicates of the report's intervals and bands.
    """

    internal_fraction: float = 0.3
    n_folds: int = 5
    seed: int = 0
    n_jobs: int = 2
    cnn_iterations: int | None = None
    max_features: int = 20
    stability_threshold: float = 0.75
    redundancy_threshold: float = 0.9
    methods: tuple[str, ...] = tuple(METHODS)
    n_boot: int = 1000
    deep_cross_fit: int = 3

    def __post_init__(self) -> None:
        if not 0.1 <= self.internal_fraction <= 0.5:
            raise InvalidInputError(f"internal_fraction must be in [0.1, 0.5], got {self.internal_fraction!r}")
        if not 2 <= self.n_folds <= 20:
            raise InvalidInputError(f"n_folds must be in 2..20, got {self.n_folds!r}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or CHOSEN not in self.methods:
            raise InvalidInputError(f"methods must be a subset of {list(METHODS)} containing {CHOSEN!r}; got {unknown}")


@dataclass
class Cohort:
    """One cohort: clinical table indexed by case id, image and mask paths, optional generator posterior."""

    name: str
    folder: Path
    clinical: pd.DataFrame
    posterior: pd.Series | None = None
    ceiling_auc: float | None = None


def _find_image(folder: Path, cid: str) -> Path:
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        p = folder / f"{cid}{suffix}"
        if p.is_file():
            return p
    raise InvalidInputError(f"no image file for case {cid!r} in {folder}")


def load_cohort(folder: str | Path, name: str | None = None) -> Cohort:
    """Read a cohort folder: ``clinical.csv`` (id, size_cm, ln_metastasis, dfs_months, dfs_event, ...),
    ``images/<id>.*`` and ``labels/<id>.*``; ``lesions/<id>.json`` with the phantom's ``posterior_ln`` if present.

    Raises
    ------
    InvalidInputError
        Missing table, columns, outcome values, or images.
    """
    root = Path(folder)
    table = root / "clinical.csv"
    if not table.is_file():
        raise InvalidInputError(f"{root}: no clinical.csv (one row per patient with the outcome ln_metastasis)")
    clin = pd.read_csv(table, dtype={"id": str})
    need = ["id", "size_cm", "ln_metastasis", "dfs_months", "dfs_event"]
    missing = [c for c in need if c not in clin.columns]
    if missing:
        raise InvalidInputError(f"{table}: missing column(s) {missing}")
    if clin["ln_metastasis"].isna().any():
        raise InvalidInputError(f"{table}: ln_metastasis is missing for {int(clin['ln_metastasis'].isna().sum())} "
                                "patient(s); every training and validation case needs the outcome")
    bad = sorted(set(clin["ln_metastasis"].tolist()) - {0, 1})
    if bad:
        raise InvalidInputError(f"{table}: ln_metastasis must be 0 or 1, found {bad[:5]}")
    if clin["id"].duplicated().any():
        raise InvalidInputError(f"{table}: duplicated patient id(s) {clin['id'][clin['id'].duplicated()].tolist()[:5]}")
    clin = clin.set_index("id")
    clin["image"] = [str(_find_image(root / "images", cid)) for cid in clin.index]
    clin["mask"] = [str(_find_image(root / "labels", cid)) for cid in clin.index]
    post = None
    if (root / "lesions").is_dir():
        vals = {}
        for cid in clin.index:
            p = root / "lesions" / f"{cid}.json"
            if p.is_file():
                meta = json.loads(p.read_text()).get("meta", {})
                if "posterior_ln" in meta:
                    vals[cid] = float(meta["posterior_ln"])
        post = pd.Series(vals) if len(vals) == len(clin) else None
    cohort = Cohort(name or root.name, root, clin, post)
    cohort.ceiling_auc = _ceiling(cohort, clin.index)
    return cohort


def _ceiling(cohort: Cohort, ids: Any) -> float | None:
    if cohort.posterior is None:
        return None
    y = cohort.clinical.loc[ids, "ln_metastasis"].to_numpy(int)
    if min(int(y.sum()), int(y.size - y.sum())) < 2:
        return None
    return float(roc_auc_ci(y, cohort.posterior.loc[ids].to_numpy()).auc)


def platt(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt recalibration ``P(y=1) = expit(a + b s)`` by unpenalised maximum likelihood; returns ``(a, b)``."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=np.inf, max_iter=1000).fit(np.asarray(scores, float)[:, None], np.asarray(y, int))
    return float(lr.intercept_[0]), float(lr.coef_[0, 0])


@dataclass
class StudyResult:
    """Numbers and objects of a study run (the report renders them)."""

    settings: StudySettings
    cohorts: dict[str, dict[str, Any]]
    comparison: list[dict[str, Any]]
    auc: dict[str, dict[str, dict[str, float]]]
    delong: dict[str, list[dict[str, Any]]]
    subgroups: dict[str, dict[str, dict[str, Any]]]
    model: RdpModel
    scores: dict[str, pd.DataFrame]
    selected: list[dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=dict)
    report_path: Path | None = None
    model_path: Path | None = None

    def summary(self) -> dict[str, Any]:
        """The headline numbers (JSON-serialisable)."""
        return {"notice": RESEARCH_USE_ONLY, "cohorts": self.cohorts,
                "auc_combined": {k: v["combined"] for k, v in self.auc.items()},
                "comparison": self.comparison, "seconds": self.seconds,
                "model_version": self.model.version if self.model.checkpoint.sha256 else None}


def _split_internal(cohort: Cohort, settings: StudySettings) -> tuple[pd.Index, pd.Index]:
    """Patient-level stratified hold-out: ``fraction`` of ``K`` stratified folds (``K = 10``, fewer when a class
    has fewer than 10 patients) form the internal validation set."""
    ids = cohort.clinical.index
    y = cohort.clinical["ln_metastasis"].to_numpy(int)
    n_folds = int(min(10, np.bincount(y, minlength=2).min()))
    if n_folds < 3:
        raise InvalidInputError(f"{cohort.name}: too few patients of one class ({np.bincount(y, minlength=2).tolist()}) "
                                "to hold out an internal validation set")
    k = max(1, int(round(n_folds * settings.internal_fraction)))
    folds = list(PatientStratifiedKFold(n_folds, random_state=settings.seed).split(None, y, groups=np.asarray(ids)))
    internal = np.concatenate([te for _, te in folds[:k]])
    mask = np.zeros(len(ids), bool)
    mask[internal] = True
    return ids[~mask], ids[mask]


def _cache_key(params: Mapping[str, Any], cases: list[tuple[str, str, str]], perturb: bool, seed: int) -> str:
    """Content key of a radiomics table: parameters, case ids, file hashes, perturbation and seed."""
    import hashlib

    from oncolabel.provenance import file_sha256

    h = hashlib.sha256(json.dumps([params, perturb, seed, package_versions(("pyradiomics",))], sort_keys=True,
                                  default=str).encode())
    for cid, img, msk in cases:
        h.update(f"{cid}:{file_sha256(img)}:{file_sha256(msk)};".encode())
    return h.hexdigest()[:20]


def _features(cohorts: Mapping[str, tuple[Cohort, pd.Index, bool]], settings: StudySettings,
              log: Callable[[str], None], cache: Path | None = None) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Radiomics tables of every analysed set (perturbed replicate where asked) joined to the path columns.

    With ``cache`` a table is read from / written to ``cache/radiomics-<content key>.csv`` (the key covers the
    parameters, the files' hashes, the perturbation and the seed), so a re-run skips extraction.
    """
    from oncolabel.io import atomic_path
    from oncolabel.tasks import get_task

    params = get_task("pannet_ln").preprocessing.radiomics()
    out, prov = {}, {"cache": str(cache) if cache else None}
    for name, (cohort, ids, perturb) in cohorts.items():
        t = time.perf_counter()
        cases = [(cid, cohort.clinical.at[cid, "image"], cohort.clinical.at[cid, "mask"]) for cid in ids]
        path = cache / f"radiomics-{_cache_key(params, cases, perturb, settings.seed)}.csv" if cache else None
        if path is not None and path.is_file() and path.with_suffix(".json").is_file():
            table = pd.read_csv(path, index_col=0)
            table.index = table.index.astype(str)
            prov.update(json.loads(path.with_suffix(".json").read_text()))
            out[name] = pd.concat([cohort.clinical.loc[ids, ["image", "mask"]], table.loc[list(ids)]], axis=1)
            log(f"radiomics {name}: {len(ids)} cases from cache {path.name}")
            continue
        table, p = radiomics_table(cases, params, perturb=perturb, n_jobs=settings.n_jobs, seed=settings.seed)
        prov.update(p)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                table.to_csv(tmp)
            with atomic_path(path.with_suffix(".json")) as tmp:
                tmp.write_text(json.dumps(p, default=str))
        out[name] = pd.concat([cohort.clinical.loc[ids, ["image", "mask"]], table], axis=1)
        log(f"radiomics {name}: {len(ids)} cases{' (+ perturbed replicate)' if perturb else ''} in "
            f"{time.perf_counter() - t:.0f} s")
    return out, prov


def _auc_row(y: np.ndarray, s: np.ndarray) -> dict[str, Any]:
    """AUC with DeLong CI, or ``auc: None`` with the reason when the set is too small."""
    try:
        r = roc_auc_ci(y, s)
    except InvalidInputError as exc:
        return {"auc": None, "ci_low": None, "ci_high": None, "note": str(exc)}
    return {"auc": r.auc, "ci_low": r.ci_low, "ci_high": r.ci_high, "n_pos": r.n_pos, "n_neg": r.n_neg}


@dataclass
class RdpFit:
    """A fitted RDP model and what was learned on the way (see :func:`fit_rdp`)."""

    model: RdpModel
    cv: Any
    stage: DeepFeatures
    fitted: dict[str, Any]
    calib: dict[str, tuple[float, float]]
    oof_scores: pd.DataFrame
    threshold: float
    models: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)

    def calibrated_scores(self, Z: pd.DataFrame) -> pd.DataFrame:  # noqa: N803
        """Calibrated scores of every fitted feature set for deep-feature-stage output ``Z``."""
        return pd.DataFrame({fs: expit(a + b * np.asarray(self.fitted[fs].decision_function(Z)))
                             for fs, (a, b) in self.calib.items()}, index=Z.index)


def fit_rdp(X: pd.DataFrame, y: Any, groups: Any, settings: StudySettings, *,  # noqa: N803
            methods: tuple[str, ...] = (CHOSEN,), feature_sets: tuple[str, ...] = tuple(FEATURE_SETS),
            progress: Callable[[str], None] | None = None) -> RdpFit:
    """Cross-validate, refit, recalibrate and freeze the RDP model on one training set.

    ``X`` holds the ``image``/``mask`` path columns and the radiomics (``rad:``; ``radp:`` replicates for the
    stability filter); ``y`` the 0/1 outcome; ``groups`` the patient ids. The glmBoost pipelines of
    ``feature_sets`` and the ``methods`` (on combined features) are cross-validated on the same patient-level
    folds (each fold trains its own CNN). The chosen combined glmBoost is then refitted on all rows,
    recalibrated by Platt scaling of its out-of-fold log-odds and given the Youden threshold of its out-of-fold
    calibrated scores.
    """
    log = progress or (lambda _msg: None)
    yy = np.asarray(y).astype(int)
    kw = {"seed": settings.seed, "max_features": settings.max_features,
          "stability_threshold": settings.stability_threshold, "redundancy_threshold": settings.redundancy_threshold}
    names = {"combined": CHOSEN, "radiomics": f"{CHOSEN}:radiomics", "deep": f"{CHOSEN}:deep"}
    models = {m: model_pipeline(m, features="combined", **kw) for m in methods}
    models.update({names[fs]: model_pipeline(CHOSEN, features=fs, **kw) for fs in feature_sets})
    secs: dict[str, float] = {}
    t = time.perf_counter()
    stage = DeepFeatures(output="logit", cross_fit=settings.deep_cross_fit, iterations=settings.cnn_iterations,
                         seed=settings.seed)
    cv = cross_validate_models(X, yy, groups, feature_stage=stage, models=models,
                               cv=PatientStratifiedKFold(settings.n_folds, random_state=settings.seed), progress=log)
    secs["cross_validation"] = time.perf_counter() - t
    t = time.perf_counter()
    stage = clone(stage)
    z = stage.fit_transform(X, yy)
    fitted = {fs: clone(models[names[fs]]).fit(z, yy) for fs in feature_sets}
    secs["final_fit"] = time.perf_counter() - t
    calib = {fs: platt(cv.oof[names[fs]], yy) for fs in feature_sets}
    oof = pd.DataFrame({fs: expit(calib[fs][0] + calib[fs][1] * cv.oof[names[fs]]) for fs in feature_sets})
    threshold = float(np.clip(youden_threshold(yy, oof["combined"].to_numpy()).threshold, 1e-6, 1 - 1e-6))
    head = RdpHead.from_pipeline(fitted["combined"], calib_intercept=calib["combined"][0],
                                 calib_slope=calib["combined"][1], threshold=threshold)
    model = RdpModel.build(stage.checkpoint(), head,
                           metrics={"auc_training_cv": float(roc_auc_ci(yy, oof["combined"].to_numpy()).auc),
                                    "n_training": int(yy.size), "threshold": threshold},
                           training={"study_settings": _settings_dict(settings)})
    log(f"RDP model fitted: {len(head.features)} features, threshold {threshold:.3f}")
    return RdpFit(model=model, cv=cv, stage=stage, fitted=fitted, calib=calib, oof_scores=oof, threshold=threshold,
                  models=models, seconds=secs)


def _evaluate(sets: Mapping[str, tuple[Cohort, pd.Index, bool]], y: Mapping[str, np.ndarray],
              scores: Mapping[str, pd.DataFrame]) -> tuple[dict, dict, dict, dict]:
    """Per analysed set: cohort summary with ceiling AUC, AUC of each feature set, DeLong between feature sets,
    and the combined score's AUC for tumours <= 2 cm and > 2 cm."""
    cohorts_info: dict[str, dict[str, Any]] = {}
    auc: dict[str, dict[str, dict[str, Any]]] = {}
    delong: dict[str, list[dict[str, Any]]] = {}
    subgroups: dict[str, dict[str, dict[str, Any]]] = {}
    for k, (cohort, ids, _) in sets.items():
        yy, sc = y[k], scores[k]
        size = cohort.clinical.loc[ids, "size_cm"].to_numpy(float)
        cohorts_info[k] = {"cohort": cohort.name, "n": int(yy.size), "ln_positive": int(yy.sum()),
                           "size_le_2cm": int((size <= 2.0).sum()), "ceiling_auc": _ceiling(cohort, ids)}
        auc[k] = {fs: _auc_row(yy, sc[fs].to_numpy()) for fs in FEATURE_SETS}
        delong[k] = []
        for fa, fb in (("combined", "radiomics"), ("combined", "deep"), ("radiomics", "deep")):
            try:
                r = delong_test(yy, sc[fa].to_numpy(), sc[fb].to_numpy())
            except InvalidInputError as exc:
                delong[k].append({"a": fa, "b": fb, "auc_a": None, "auc_b": None, "diff": None, "z": None,
                                  "p": None, "note": str(exc)})
                continue
            delong[k].append({"a": fa, "b": fb, "auc_a": r.auc_a, "auc_b": r.auc_b, "diff": r.diff,
                              "z": r.statistic, "p": r.p_value})
        subgroups[k] = {}
        for label, sel in (("<= 2 cm", size <= 2.0), ("> 2 cm", size > 2.0)):
            subgroups[k][label] = {"n": int(sel.sum()), "ln_positive": int(yy[sel].sum()),
                                   "ceiling_auc": _ceiling(cohort, ids[sel]) if sel.any() else None,
                                   **(_auc_row(yy[sel], sc["combined"].to_numpy()[sel]) if sel.any() else
                                      {"auc": None, "note": "no patient"})}
    return cohorts_info, auc, delong, subgroups


def run_study(train_dir: str | Path, external_dir: str | Path, *, settings: StudySettings | None = None,
              report: str | Path | None = None, export_model: str | Path | None = None,
              progress: Callable[[str], None] | None = None, cache: str | Path | None = None) -> StudyResult:
    """Run the whole study; write the HTML report and the frozen model when asked.

    Parameters
    ----------
    train_dir : training centre cohort (split into training and internal validation).
    external_dir : external validation centre.
    settings : :class:`StudySettings`.
    report : path of the one HTML report.
    export_model : path of the frozen RDP model file (``.pt``; a JSON model card is written next to it).
    progress : called with one line per step.
    cache : folder for radiomics tables (re-runs skip extraction; see :func:`_features`).
    """
    cfg = settings or StudySettings()
    log = progress or (lambda _msg: None)
    t_start = time.perf_counter()
    secs: dict[str, float] = {}
    a, b = load_cohort(train_dir), load_cohort(external_dir, name=Path(external_dir).name)
    train_ids, internal_ids = _split_internal(a, cfg)
    sets = {"training": (a, train_ids, True), "internal": (a, internal_ids, False),
            "external": (b, b.clinical.index, False)}
    t = time.perf_counter()
    X, rad_prov = _features(sets, cfg, log, Path(cache) if cache else None)
    secs["radiomics"] = time.perf_counter() - t
    y = {k: sets[k][0].clinical.loc[sets[k][1], "ln_metastasis"].to_numpy(int) for k in sets}
    for k, v in y.items():
        if np.unique(v).size < 2 or min(v.sum(), (1 - v).sum()) < cfg.n_folds:
            raise InvalidInputError(f"the {k} set has {int(v.sum())} LN+ and {int((1 - v).sum())} LN- patients; "
                                    f"each class needs at least {cfg.n_folds}")

    # 3-4. ten learners (+ radiomics-only / deep-only glmBoost) under one patient-level CV; refit, calibrate, freeze
    fit = fit_rdp(X["training"], y["training"], np.asarray(train_ids), cfg, methods=cfg.methods, progress=log)
    secs.update(fit.seconds)
    Z = {k: fit.stage.transform(X[k]) for k in ("internal", "external")}  # noqa: N806
    scores = {"training": fit.oof_scores.set_axis(train_ids)}
    scores.update({k: fit.calibrated_scores(Z[k]) for k in ("internal", "external")})
    cv, head, threshold = fit.cv, fit.model.head, fit.threshold
    models = fit.models

    # 5. evaluation
    cohorts_info, auc, delong, subgroups = _evaluate(sets, y, scores)
    comparison = []
    for name in models:
        comparison.append({"method": name, "description": METHODS.get(name.split(":")[0], ""),
                           "features": name.split(":")[1] if ":" in name else "combined",
                           **{("cv_" + k if k == "auc" else k): v
                              for k, v in _auc_row(y["training"], cv.oof[name]).items()}})
    freq = selection_frequency(cv.fitted[CHOSEN])
    selected = [{"feature": f, "coef_log_odds_per_sd": c, "cv_selection_frequency": freq.get(f, 0.0)}
                for f, c in zip(head.features, head.coef)]
    secs["total"] = time.perf_counter() - t_start
    secs.update({f"cv_{k}": v for k, v in cv.seconds.items()})
    metrics = {"auc_training_cv": auc["training"]["combined"]["auc"], "auc_internal": auc["internal"]["combined"]["auc"],
               "auc_external": auc["external"]["combined"]["auc"],
               "ceiling_auc_external": cohorts_info["external"]["ceiling_auc"],
               "threshold": threshold, "n_training": int(y["training"].size)}
    model = RdpModel.build(fit.stage.checkpoint(), head, metrics=metrics,
                           training={"study_settings": _settings_dict(cfg), "radiomics": rad_prov,
                                     "cohorts": cohorts_info})
    result = StudyResult(settings=cfg, cohorts=cohorts_info, comparison=comparison, auc=auc, delong=delong,
                         subgroups=subgroups, model=model, scores=scores, selected=selected, seconds=secs)
    if export_model is not None:
        result.model_path = export_rdp_model(result, export_model, train_dir=train_dir, external_dir=external_dir)
        log(f"model written to {result.model_path} (version {model.version})")
    if report is not None:
        from oncolabel.scoring.report import write_study_report

        result.report_path = write_study_report(result, report, sets={k: (v[0], v[1]) for k, v in sets.items()})
        log(f"report written to {result.report_path}")
    return result


def _settings_dict(cfg: StudySettings) -> dict[str, Any]:
    d = asdict(cfg)
    d["methods"] = list(cfg.methods)
    return d


def _generation_command(folder: str | Path) -> str | None:
    """The ``oncolabel phantoms pannet`` command that wrote a phantom cohort (None for other data)."""
    from oncolabel.phantoms import read_manifest
    from oncolabel.phantoms.pannet import GENERATOR

    try:
        m = read_manifest(folder)
    except InvalidInputError:
        return None
    if m.get("generator", {}).get("name") != GENERATOR:
        return None
    return (f"oncolabel phantoms pannet --n {m['n']} --centre {m['settings']['centre']} --seed {m['seed']} "
            f"--out {folder}  # generator {m['generator']['version']}")


def export_rdp_model(result: StudyResult, dest: str | Path, *, train_dir: str | Path,
                     external_dir: str | Path) -> Path:
    """Write the frozen model (atomically) and its JSON model card (``<dest>.json`` with the stem)."""
    from oncolabel.io import atomic_path

    dest = Path(dest)
    if image_suffix(dest) or dest.suffix != ".pt":
        raise InvalidInputError(f"{dest}: the RDP model file must end in .pt")
    result.model.save(dest)
    cfg = result.settings
    command = [_generation_command(train_dir), _generation_command(external_dir),
               f"oncolabel score pannet-ln-study --train {train_dir} --external {external_dir} --seed {cfg.seed} "
               f"--folds {cfg.n_folds} --out REPORT.html --export-model {dest.name}"]
    card = {
        "model": "pannet_ln RDP score (radiomics + deep features + glmBoost)", "notice": RESEARCH_USE_ONLY,
        "file": dest.name, "sha256": result.model.checkpoint.sha256, "version": result.model.version,
        "reproduce": [c for c in command if c], "settings": _settings_dict(cfg), "cohorts": result.cohorts,
        "auc": {k: v["combined"] for k, v in result.auc.items()},
        "subgroups": result.subgroups, "comparison_cv_auc": {r["method"]: r["cv_auc"] for r in result.comparison},
        "features": result.selected, "threshold": result.model.head.threshold,
        "threshold_rule": result.model.head.threshold_rule,
        "calibration": {"intercept": result.model.head.calib_intercept, "slope": result.model.head.calib_slope},
        "software": package_versions(("torch", "monai", "numpy", "scikit-learn", "pyradiomics", "xgboost")),
        "provenance": provenance(settings=_settings_dict(cfg)),
        "seconds": result.seconds,
    }
    with atomic_path(dest.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(card, indent=2, default=str))
    return dest

