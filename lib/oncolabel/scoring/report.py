"""One HTML report of an RDP-score study (built with :mod:`oncolabel.report`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from oncolabel import RESEARCH_USE_ONLY
from oncolabel.errors import InvalidInputError
from oncolabel.provenance import provenance
from oncolabel.report import PredictionTable, Report, ReportSettings, Section, SurvivalTable, Table, build_report
from oncolabel.report import write_report as _write

if TYPE_CHECKING:
    from oncolabel.scoring.study import Cohort, StudyResult

__all__ = ["study_report", "write_study_report"]

_SET_TITLES = {"training": "Training set (out-of-fold cross-validation)", "internal": "Internal validation",
               "external": "External validation"}


def _prefixed(section: Section, key: str, title: str) -> Section:
    tables = tuple(replace(t, key=f"{key}-{t.key}") for t in section.tables)
    return replace(section, key=f"{key}-{section.key}", title=f"{title}: {section.title}", tables=tables)


def _design_sections(result: StudyResult) -> list[Section]:
    rows = tuple((k, v["cohort"], v["n"], v["ln_positive"], v["size_le_2cm"], v["ceiling_auc"])
                 for k, v in result.cohorts.items())
    goal = tuple((k, result.auc[k]["combined"]["auc"], result.auc[k]["combined"]["ci_low"],
                  result.auc[k]["combined"]["ci_high"], v["ceiling_auc"],
                  None if v["ceiling_auc"] is None or result.auc[k]["combined"]["auc"] is None
                  else v["ceiling_auc"] - result.auc[k]["combined"]["auc"])
                 for k, v in result.cohorts.items())
    cohorts = Table("cohorts", "Analysed sets", ("set", "cohort", "patients", "LN+", "tumours <= 2 cm",
                                                 "ceiling AUC"), rows,
                    note="Ceiling AUC: AUC of the phantom generator's posterior P(LN+ | drawn traits); no model that "
                         "sees only the image can exceed it in expectation.")
    gap = Table("goal", "RDP score AUC against the ceiling", ("set", "AUC", "95% CI low", "95% CI high", "ceiling AUC",
                                                              "ceiling - AUC"), goal,
                note="Goal of the emulation: external AUC within 0.05 of the external ceiling.")
    sub = tuple((k, g, v["n"], v["ln_positive"], v.get("auc"), v.get("ci_low"), v.get("ci_high"), v.get("ceiling_auc"))
                for k, groups in result.subgroups.items() for g, v in groups.items())
    subgroups = Table("size_subgroups", "RDP score AUC by tumour size",
                      ("set", "size", "patients", "LN+", "AUC", "95% CI low", "95% CI high", "ceiling AUC"), sub)
    s = result.settings
    notes = (f"Training centre split {1 - s.internal_fraction:.0%} / {s.internal_fraction:.0%} (training / internal "
             f"validation, patient level, stratified); {s.n_folds}-fold patient-level CV on the training set; "
             f"seed {s.seed}.",
             "Selection inside every fold: perturbation stability (ICC(1,1) >= "
             f"{s.stability_threshold}), redundancy (|Spearman rho| >= {s.redundancy_threshold}), LASSO (at most "
             f"{s.max_features} features); deep features from a CNN trained in the fold.",
             f"Run time: {', '.join(f'{k} {v:.0f} s' for k, v in result.seconds.items())}.")
    return [Section("design", "Design and cohorts", tables=(cohorts, gap, subgroups), notes=notes)]


def _model_sections(result: StudyResult) -> list[Section]:
    comp = tuple((r["method"], r["features"], r["description"], r["cv_auc"], r["ci_low"], r["ci_high"])
                 for r in sorted(result.comparison, key=lambda r: -(r["cv_auc"] or 0.0)))
    head = result.model.head
    feats = tuple((f["feature"], f["coef_log_odds_per_sd"], f["cv_selection_frequency"]) for f in result.selected)
    n_rad = sum(1 for f in head.features if f.startswith("rad:"))
    tables = (Table("comparison", "Learners compared (same folds, same selection pipeline)",
                    ("learner", "features", "description", "CV AUC", "95% CI low", "95% CI high"), comp,
                    note="Out-of-fold AUC on the training set, DeLong interval. glmBoost is the study's chosen learner "
                         "(sparse, linear: every score decomposes into feature contributions)."),
              Table("rdp_features", "Features of the frozen RDP model",
                    ("feature", "log-odds per SD", "share of CV folds selecting it"), feats,
                    note=f"{n_rad} radiomics and {len(head.features) - n_rad} deep features."),
              Table("rdp_head", "Calibration and risk threshold",
                    ("calibration intercept a", "calibration slope b", "threshold", "threshold rule"),
                    ((head.calib_intercept, head.calib_slope, head.threshold, head.threshold_rule),),
                    note="score = expit(a + b lp); high risk when score >= threshold. <= 2 cm: low -> follow-up or "
                         "minimal enucleation, high -> standard resection; > 2 cm: low -> enucleation, high -> "
                         "standard resection."))
    dl = tuple((k, r["a"], r["b"], r["auc_a"], r["auc_b"], r["diff"], r["z"], r["p"])
               for k, rows in result.delong.items() for r in rows)
    delong = Table("delong_sources", "DeLong: combined vs radiomics-only vs deep-only glmBoost",
                   ("set", "model A", "model B", "AUC A", "AUC B", "A - B", "Z", "p"), dl)
    return [Section("model", "Model selection and the frozen RDP model", tables=tables + (delong,))]


def study_report(result: StudyResult, sets: Mapping[str, tuple[Cohort, Any]]) -> Report:
    """The :class:`~oncolabel.report.Report` of a study: design, learner comparison, frozen model, then for each set
    ROC (radiomics / deep / combined), DeLong, size subsets, calibration, decision curves and Kaplan-Meier of DFS by
    RDP risk group."""
    cfg = ReportSettings(n_boot=result.settings.n_boot, seed=result.settings.seed, time_unit="months")
    sections = _design_sections(result) + _model_sections(result)
    thr = result.model.head.threshold
    for key, (cohort, ids) in sets.items():
        clin = cohort.clinical.loc[ids]
        sc = result.scores[key]
        size_group = np.where(clin["size_cm"].to_numpy(float) <= 2.0, "<= 2 cm", "> 2 cm")
        preds = PredictionTable.from_arrays(clin["ln_metastasis"].to_numpy(int),
                                            {"RDP (combined)": sc["combined"].to_numpy(),
                                             "radiomics only": sc["radiomics"].to_numpy(),
                                             "deep only": sc["deep"].to_numpy()},
                                            patient_id=np.asarray(ids), subset=size_group)
        risk = np.where(sc["combined"].to_numpy() >= thr, "high RDP risk", "low RDP risk")
        surv = SurvivalTable.from_arrays(clin["dfs_months"].to_numpy(float), clin["dfs_event"].to_numpy(int), risk,
                                         patient_id=np.asarray(ids))
        try:
            rep = build_report(preds, surv, title=key, settings=cfg)
        except InvalidInputError as exc:  # a set too small for some statistic
            sections.append(Section(key, _SET_TITLES[key], notes=(f"Not analysed: {exc}",)))
            continue
        sections += [_prefixed(s, key, _SET_TITLES[key]) for s in rep.sections]
    prov = provenance(settings={"study": {k: (list(v) if isinstance(v, tuple) else v)
                                          for k, v in vars(result.settings).items()},
                                "report": cfg.as_dict()},
                      model={"version": result.model.version if result.model.checkpoint.sha256 else "unsaved",
                             "path": str(result.model_path) if result.model_path else None,
                             "head": result.model.head.to_dict()},
                      cohorts=result.cohorts)
    return Report(title="RDP score: lymph-node metastasis risk of non-functional PanNET", sections=tuple(sections),
                  provenance=prov, notice=RESEARCH_USE_ONLY)


def write_study_report(result: StudyResult, dest: str | Path, *, sets: Mapping[str, tuple[Cohort, Any]]) -> Path:
    """Write the study report as one self-contained HTML file."""
    return _write(study_report(result, sets), dest, "html")[0]

