"""Array conversions between server results and what Slicer shows (numpy only; no Slicer imports)."""

from __future__ import annotations

from typing import Dict, Iterable, Tuple

import numpy as np

from OncoLabelLib.errors import MissingInputError, ResultFormatError

__all__ = ["binary_mask", "display_window", "check_label_values", "segment_colors"]

#: fixed colours of known labels (RGB in [0, 1]); others take the palette below, in label order
KNOWN_COLORS: Dict[str, Tuple[float, float, float]] = {
    "metastasis": (0.90, 0.20, 0.20), "tumour": (0.95, 0.60, 0.10), "tumor": (0.95, 0.60, 0.10),
    "lymph_node": (0.30, 0.60, 0.95),
}
PALETTE: Tuple[Tuple[float, float, float], ...] = (
    (0.12, 0.47, 0.71), (0.17, 0.63, 0.17), (0.58, 0.40, 0.74), (0.55, 0.34, 0.29), (0.89, 0.47, 0.76),
    (0.50, 0.50, 0.50), (0.74, 0.74, 0.13), (0.09, 0.75, 0.81))


def binary_mask(array: np.ndarray) -> np.ndarray:
    """1 where ``array`` is non-zero, as uint8; refuses an empty mask."""
    mask = (np.asarray(array) != 0).astype(np.uint8)
    if not mask.any():
        raise MissingInputError("the selected segment is empty: draw the tumour first")
    return mask


def display_window(array: np.ndarray) -> Tuple[float, float]:
    """Window for a heat map: [0, 1] for probabilities, else the data range (never a zero-width window)."""
    finite = np.asarray(array, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def check_label_values(array: np.ndarray, label_values: Iterable[int], task: str = "segmentation") -> None:
    """Every non-zero value of a label image must be a label the server named."""
    found = set(int(v) for v in np.unique(array)) - {0}
    unknown = sorted(found - set(int(v) for v in label_values))
    if unknown:
        raise ResultFormatError(f"the {task} label image holds values {unknown} that the server did not name")


def segment_colors(label_names: Dict[str, int]) -> Dict[str, Tuple[float, float, float]]:
    """A colour per label name: fixed for known names, else a palette colour by label value."""
    colors = {}
    for name, value in sorted(label_names.items(), key=lambda kv: kv[1]):
        colors[name] = KNOWN_COLORS.get(name.lower(), PALETTE[(int(value) - 1) % len(PALETTE)])
    return colors
