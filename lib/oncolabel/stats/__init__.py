"""Statistics for OncoLabel studies: ROC/AUC, DeLong tests, diagnostic accuracy, calibration,
decision curves, survival, patient-level splits and reader studies.

Conventions shared by every function:

* inputs are array-likes (lists, numpy arrays, pandas Series);
* ``y_true`` is 0/1 with 1 = positive (case); a higher score means "more likely positive"; the
  direction of a score is never guessed;
* results are frozen dataclasses with named fields;
* bad input (NaN, a single class, mismatched lengths, non-binary labels) raises
  :class:`oncolabel.errors.InvalidInputError` (a ``ValueError``) naming the problem; no silent NaN.

Every result is for research use only (:data:`oncolabel.RESEARCH_USE_ONLY`).
"""

from __future__ import annotations

from oncolabel.stats.agreement import icc_1_1
from oncolabel.stats.calibration import CalibrationResult, ReliabilityCurve, brier_score, calibration, reliability_curve
from oncolabel.stats.decision import NetBenefitResult, net_benefit
from oncolabel.stats.diagnostic import (
    DiagnosticResult,
    ProportionCI,
    ThresholdResult,
    clopper_pearson_ci,
    diagnostic_metrics,
    proportion_ci,
    threshold_at_sensitivity,
    threshold_at_specificity,
    wilson_ci,
    youden_threshold,
)
from oncolabel.stats.reader import (
    McNemarResult,
    MrmcResult,
    PairedComparison,
    PooledEstimate,
    ReaderResult,
    ReaderStudyResult,
    mcnemar_test,
    obuchowski_rockette,
    reader_study,
)
from oncolabel.stats.roc import (
    DelongTestResult,
    RocAucResult,
    RocBand,
    RocCurve,
    UnpairedDelongResult,
    delong_covariance,
    delong_test,
    delong_test_unpaired,
    roc_auc,
    roc_auc_ci,
    roc_curve,
    roc_curve_band,
)
from oncolabel.stats.splits import PatientStratifiedKFold, check_patient_splits
from oncolabel.stats.survival import (
    CoxTerm,
    KaplanMeierResult,
    LogrankResult,
    cox_fit,
    kaplan_meier,
    logrank_test,
    number_at_risk,
)

__all__ = [
    # agreement
    "icc_1_1",
    # ROC / AUC
    "RocAucResult", "RocCurve", "RocBand", "DelongTestResult", "UnpairedDelongResult",
    "roc_auc", "roc_auc_ci", "roc_curve", "roc_curve_band", "delong_covariance", "delong_test",
    "delong_test_unpaired",
    # diagnostic accuracy
    "ProportionCI", "DiagnosticResult", "ThresholdResult", "wilson_ci", "clopper_pearson_ci",
    "proportion_ci", "diagnostic_metrics", "youden_threshold", "threshold_at_sensitivity",
    "threshold_at_specificity",
    # calibration and decision curves
    "CalibrationResult", "ReliabilityCurve", "brier_score", "calibration", "reliability_curve",
    "NetBenefitResult", "net_benefit",
    # survival
    "KaplanMeierResult", "LogrankResult", "CoxTerm", "kaplan_meier", "logrank_test", "cox_fit",
    "number_at_risk",
    # splits
    "PatientStratifiedKFold", "check_patient_splits",
    # reader studies
    "McNemarResult", "PairedComparison", "ReaderResult", "PooledEstimate", "MrmcResult",
    "ReaderStudyResult", "mcnemar_test", "obuchowski_rockette", "reader_study",
]
