"""Result tables and summaries, as plain data (:func:`OncoLabelLib.mrml.table_node` makes Slicer table nodes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple

from OncoLabelLib.protocol import ClassificationResult, ScoreResult, SegmentationResult

__all__ = ["Column", "Table", "classification_table", "score_table", "lesion_table", "table_for", "summary"]

STRING, DOUBLE, INT = "string", "double", "int"


@dataclass(frozen=True)
class Column:
    """A table column: its title and value type (``string``, ``double`` or ``int``)."""

    name: str
    kind: str = STRING


@dataclass(frozen=True)
class Table:
    """A titled table; ``rows`` hold one value per column."""

    title: str
    columns: Tuple[Column, ...]
    rows: Tuple[Tuple[Any, ...], ...]

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"table {self.title!r}: row {row!r} has {len(row)} values for "
                                 f"{len(self.columns)} columns")

    def column(self, name: str) -> List[Any]:
        index = [c.name for c in self.columns].index(name)
        return [row[index] for row in self.rows]


def _table(title: str, columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> Table:
    return Table(title, tuple(columns), tuple(tuple(r) for r in rows))


def classification_table(result: ClassificationResult) -> Table:
    """Class probabilities, most probable first, with the predicted class marked."""
    return _table(f"{result.task} probabilities (model {result.model_version})",
                  [Column("Class"), Column("Probability", DOUBLE), Column("Predicted")],
                  [(name, round(p, 4), "yes" if name == result.prediction else "") for name, p in result.ranked])


def score_table(result: ScoreResult) -> Table:
    """Feature contributions, largest magnitude first."""
    return _table(f"{result.task} top features (model {result.model_version})",
                  [Column("Feature"), Column("Contribution", DOUBLE), Column("Value", DOUBLE)],
                  [(f.name, round(f.contribution, 4), f.value if f.value is not None else float("nan"))
                   for f in result.top_features])


def lesion_table(result: SegmentationResult) -> Table:
    """One row per lesion the server found (largest first)."""
    rows = []
    for les in result.lesions:
        slices = les.get("slices") or (None, None)
        rows.append((int(les.get("id", len(rows) + 1)), float(les.get("volume_ml", float("nan"))),
                     float(les.get("diameter_mm", float("nan"))), int(slices[0]) if slices[0] is not None else -1,
                     int(slices[1]) if slices[1] is not None else -1))
    return _table(f"{result.task} lesions (model {result.model_version})",
                  [Column("Lesion", INT), Column("Volume (ml)", DOUBLE), Column("Diameter (mm)", DOUBLE),
                   Column("First slice", INT), Column("Last slice", INT)], rows)


def table_for(result: Any) -> Table:
    """The table that goes with a result object."""
    if isinstance(result, ClassificationResult):
        return classification_table(result)
    if isinstance(result, ScoreResult):
        return score_table(result)
    if isinstance(result, SegmentationResult):
        return lesion_table(result)
    raise TypeError(f"no table for {type(result).__name__}")


def summary(result: Any) -> List[Tuple[str, str]]:
    """(label, text) lines shown above the table; the research-use notice is always last."""
    lines: List[Tuple[str, str]] = []
    if isinstance(result, ScoreResult):
        lines += [("Score", f"{result.score:.3f}"), ("Risk group", result.risk_group)]
        if result.size_cm is not None:
            lines += [("Tumour size", f"{result.size_cm:.1f} cm ({result.size_group or 'size group not reported'})")]
        lines += [("Recommendation", result.recommendation)]
        lines += [("Warning", w) for w in result.warnings]
    elif isinstance(result, ClassificationResult):
        lines += [("Prediction", f"{result.prediction} ({result.probabilities[result.prediction]:.0%})")]
        lines += [("Warning", w) for w in result.warnings]
        if result.measurement_error:
            lines += [("Measurements", f"not made ({result.measurement_error}); the model without them was used")]
        elif result.measurements:
            lines += [("Measurements", ", ".join(f"{k} {v:.3g}" for k, v in result.measurements.items()))]
    elif isinstance(result, SegmentationResult):
        total = f"{result.total_volume_ml:.2f} ml" if result.total_volume_ml is not None else "not reported"
        lines += [("Lesions", f"{len(result.lesions)} ({total})")]
        lines += [("Warning", w) for w in result.warnings]
    lines += [("Model", f"{result.task} {result.model_version}"), ("Notice", result.notice)]
    return lines
