"""Scoring models: :class:`GlmBoostClassifier` (R's ``mboost::glmboost``) and the RDP risk score.

* :class:`GlmBoostClassifier` - :mod:`oncolabel.scoring.glmboost`.
* :mod:`oncolabel.scoring.models` - the ten learners, the shared selection pipeline, fold-wise CV.
* :mod:`oncolabel.scoring.rdp` - the frozen RDP model (:class:`~oncolabel.scoring.rdp.RdpModel`), the 2 cm rule.
* :mod:`oncolabel.scoring.study` - the study end to end (:func:`~oncolabel.scoring.study.run_study`).

Research use only.
"""

from __future__ import annotations

from oncolabel.scoring.glmboost import GlmBoostClassifier

__all__ = ["GlmBoostClassifier"]
