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

__all__ = ["Cohort", "StudySettings", "StudyResult", "load_cohort", "run_study", "platt"]

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

    def frame(self) -> pd.DataFrame:
        return self.clinical[["image", "mask"]].copy()


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
    if len(set(y.tolist())) < 2:
        return None
    return float(roc_auc_ci(y, cohort.posterior.loc[ids].to_numpy()).auc)


def platt(scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt recalibration ``P(y=1) = expit(a + b s)`` by unpenalised maximum likelihood; returns ``(a, b)``."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=np.inf, max_iter=1000).fit(np.asarray(scores, float)[:, None], np.asarray(y, int))
    return float(lr.intercept_[0]), float(lr.coef_[0, 0])


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


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
    """Patient-level stratified hold-out: ``round(10 * fraction)`` of ten stratified folds are internal."""
    ids = cohort.clinical.index
    y = cohort.clinical["ln_metastasis"].to_numpy(int)
    k = int(round(10 * settings.internal_fraction))
    folds = list(PatientStratifiedKFold(10, random_state=settings.seed).split(None, y, groups=np.asarray(ids)))
    internal = np.concatenate([te for _, te in folds[:k]])
    mask = np.zeros(len(ids), bool)
    mask[internal] = True
    return ids[~mask], ids[mask]


def _features(cohorts: Mapping[str, tuple[Cohort, pd.Index, bool]], settings: StudySettings,
              log: Callable[[str], None]) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Radiomics tables of every analysed set (perturbed replicate where asked) joined to the path columns."""
    from oncolabel.tasks import get_task

    params = get_task("pannet_ln").preprocessing.radiomics()
    out, prov = {}, {}
    for name, (cohort, ids, perturb) in cohorts.items():
        t = time.perf_counter()
        cases = [(cid, cohort.clinical.at[cid, "image"], cohort.clinical.at[cid, "mask"]) for cid in ids]
        table, prov = radiomics_table(cases, params, perturb=perturb, n_jobs=settings.n_jobs, seed=settings.seed)
        out[name] = pd.concat([cohort.clinical.loc[ids, ["image", "mask"]], table], axis=1)
        log(f"radiomics {name}: {len(ids)} cases{' (+ perturbed replicate)' if perturb else ''} in "
            f"{time.perf_counter() - t:.0f} s")
    return out, prov


def _models(settings: StudySettings) -> dict[str, Any]:
    kw = {"seed": settings.seed, "max_features": settings.max_features,
          "stability_threshold": settings.stability_threshold, "redundancy_threshold": settings.redundancy_threshold}
    models = {m: model_pipeline(m, features="combined", **kw) for m in settings.methods}
    for fs in ("radiomics", "deep"):
        models[f"{CHOSEN}:{fs}"] = model_pipeline(CHOSEN, features=fs, **kw)
    return models


def _auc_row(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    r = roc_auc_ci(y, s)
    return {"auc": r.auc, "ci_low": r.ci_low, "ci_high": r.ci_high, "n_pos": r.n_pos, "n_neg": r.n_neg}


def run_study(train_dir: str | Path, external_dir: str | Path, *, settings: StudySettings | None = None,
              report: str | Path | None = None, export_model: str | Path | None = None,
              progress: Callable[[str], None] | None = None) -> StudyResult:
    """Run the whole study; write the HTML report and the frozen model when asked.

    Parameters
    ----------
    train_dir : training centre cohort (split into training and internal validation).
    external_dir : external validation centre.
    settings : :class:`StudySettings`.
    report : path of the one HTML report.
    export_model : path of the frozen RDP model file (``.pt``; a JSON model card is written next to it).
    progress : called with one line per step.
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
    X, rad_prov = _features(sets, cfg, log)
    secs["radiomics"] = time.perf_counter() - t
    y = {k: sets[k][0].clinical.loc[sets[k][1], "ln_metastasis"].to_numpy(int) for k in sets}
    for k, v in y.items():
        if np.unique(v).size < 2 or min(v.sum(), (1 - v).sum()) < cfg.n_folds:
            raise InvalidInputError(f"the {k} set has {int(v.sum())} LN+ and {int((1 - v).sum())} LN- patients; "
                                    f"each class needs at least {cfg.n_folds}")

    # 3. ten learners (+ radiomics-only / deep-only glmBoost) under one patient-level CV
    stage = DeepFeatures(iterations=cfg.cnn_iterations, seed=cfg.seed)
    models = _models(cfg)
    t = time.perf_counter()
    cv = cross_validate_models(X["training"], y["training"], np.asarray(train_ids), feature_stage=stage,
                               models=models, cv=PatientStratifiedKFold(cfg.n_folds, random_state=cfg.seed),
                               progress=log)
    secs["cross_validation"] = time.perf_counter() - t

    # 4. refit the chosen learner and the single-source variants on the whole training set; freeze
    t = time.perf_counter()
    final_stage = DeepFeatures(iterations=cfg.cnn_iterations, seed=cfg.seed).fit(X["training"], y["training"])
    Z = {k: final_stage.transform(X[k]) for k in sets}  # noqa: N806
    finals = {fs: models[CHOSEN if fs == "combined" else f"{CHOSEN}:{fs}"] for fs in FEATURE_SETS}
    fitted = {fs: clone(m).fit(Z["training"], y["training"]) for fs, m in finals.items()}
    secs["final_fit"] = time.perf_counter() - t
    oof_key = {"combined": CHOSEN, "radiomics": f"{CHOSEN}:radiomics", "deep": f"{CHOSEN}:deep"}
    calib = {fs: platt(cv.oof[oof_key[fs]], y["training"]) for fs in FEATURE_SETS}
    scores: dict[str, pd.DataFrame] = {}
    for k in sets:
        cols = {}
        for fs in FEATURE_SETS:
            lp = cv.oof[oof_key[fs]] if k == "training" else fitted[fs].decision_function(Z[k])
            cols[fs] = _expit(calib[fs][0] + calib[fs][1] * np.asarray(lp))
        scores[k] = pd.DataFrame(cols, index=sets[k][1])
    thr = youden_threshold(y["training"], scores["training"]["combined"].to_numpy()).threshold
    threshold = float(np.clip(thr, 1e-6, 1 - 1e-6))
    head = RdpHead.from_pipeline(fitted["combined"], calib_intercept=calib["combined"][0],
                                 calib_slope=calib["combined"][1], threshold=threshold)

    # 5. evaluation
    cohorts_info: dict[str, dict[str, Any]] = {}
    auc: dict[str, dict[str, dict[str, float]]] = {}
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
            r = delong_test(yy, sc[fa].to_numpy(), sc[fb].to_numpy())
            delong[k].append({"a": fa, "b": fb, "auc_a": r.auc_a, "auc_b": r.auc_b, "diff": r.diff,
                              "z": r.statistic, "p": r.p_value})
        subgroups[k] = {}
        for label, sel in (("<= 2 cm", size <= 2.0), ("> 2 cm", size > 2.0)):
            ok = sel.sum() >= 4 and 2 <= yy[sel].sum() <= sel.sum() - 2
            subgroups[k][label] = {"n": int(sel.sum()), "ln_positive": int(yy[sel].sum()),
                                   "ceiling_auc": _ceiling(cohort, ids[sel]) if sel.any() else None,
                                   **(_auc_row(yy[sel], sc["combined"].to_numpy()[sel]) if ok else
                                      {"auc": None, "note": "too few patients of one class"})}
    comparison = []
    for name in models:
        r = roc_auc_ci(y["training"], cv.oof[name])
        comparison.append({"method": name, "description": METHODS.get(name.split(":")[0], ""),
                           "features": name.split(":")[1] if ":" in name else "combined", "cv_auc": r.auc,
                           "ci_low": r.ci_low, "ci_high": r.ci_high})
    freq = selection_frequency(cv.fitted[CHOSEN])
    selected = [{"feature": f, "coef_log_odds_per_sd": c, "cv_selection_frequency": freq.get(f, 0.0)}
                for f, c in zip(head.features, head.coef)]
    secs["total"] = time.perf_counter() - t_start
    secs.update({f"cv_{k}": v for k, v in cv.seconds.items()})
    metrics = {"auc_training_cv": auc["training"]["combined"]["auc"], "auc_internal": auc["internal"]["combined"]["auc"],
               "auc_external": auc["external"]["combined"]["auc"],
               "ceiling_auc_external": cohorts_info["external"]["ceiling_auc"],
               "threshold": threshold, "n_training": int(y["training"].size)}
    model = RdpModel.build(final_stage.checkpoint_, head, metrics=metrics,
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


def export_rdp_model(result: StudyResult, dest: str | Path, *, train_dir: str | Path,
                     external_dir: str | Path) -> Path:
    """Write the frozen model (atomically) and its JSON model card (``<dest>.json`` with the stem)."""
    from oncolabel.io import atomic_path

    dest = Path(dest)
    if image_suffix(dest) or dest.suffix != ".pt":
        raise InvalidInputError(f"{dest}: the RDP model file must end in .pt")
    result.model.save(dest)
    cfg = result.settings
    command = (f"oncolabel score pannet-ln-study --train {train_dir} --external {external_dir} "
               f"--seed {cfg.seed} --folds {cfg.n_folds} --out REPORT.html --export-model {dest.name}")
    card = {
        "model": "pannet_ln RDP score (radiomics + deep features + glmBoost)", "notice": RESEARCH_USE_ONLY,
        "file": dest.name, "sha256": result.model.checkpoint.sha256, "version": result.model.version,
        "reproduce": command, "settings": _settings_dict(cfg), "cohorts": result.cohorts,
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

