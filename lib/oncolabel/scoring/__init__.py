"""Scoring models: :class:`GlmBoostClassifier` (R's ``mboost::glmboost``) and the RDP risk score."""

from __future__ import annotations

from oncolabel.scoring.glmboost import GlmBoostClassifier

__all__ = ["GlmBoostClassifier"]
