"""Array transforms and their dictionary twins (MONAI style).

Array transforms take and return arrays; each has a ``...d`` twin applying it to chosen keys of a dict.
Random transforms draw their parameters (:meth:`randomize`) and delegate to a deterministic twin, so a
draw can be replayed. Volumes are ``(z, y, x)`` arrays, slices ``(..., y, x)``.

The preprocessing of each task is *composed* from these in one place (:mod:`oncolabel.tasks`); training,
inference and evaluation all call that one composition.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from oncolabel.errors import InvalidInputError

__all__ = [
    "IntensityWindow", "IntensityWindowd", "BodyBox", "crop_to_box", "InplaneZoom", "InplaneZoomd",
    "RandInplaneZoom", "RandInplaneZoomd", "SliceContext", "SliceContextd", "pad_to_multiple", "AxisOrientation",
]


class IntensityWindow:
    """Clip to ``[low, high]`` and scale linearly to ``[0, 1]`` (float32).

    ``y = (clip(x, low, high) - low) / (high - low)``; e.g. a CT window in Hounsfield units.
    """

    def __init__(self, low: float, high: float) -> None:
        if not high > low:
            raise InvalidInputError(f"intensity window ({low}, {high}): high must exceed low")
        self.low, self.high = float(low), float(high)

    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        if isinstance(x, torch.Tensor):
            return ((x.float().clamp(self.low, self.high) - self.low) / (self.high - self.low))
        x = np.asarray(x, dtype=np.float32)
        return (np.clip(x, self.low, self.high) - self.low) / np.float32(self.high - self.low)


class _Dictionary:
    """Apply an array transform to ``keys`` of a mapping (returns a shallow copy)."""

    def __init__(self, keys: Sequence[Hashable] | Hashable, transform: Any) -> None:
        self.keys = list(keys) if isinstance(keys, (list, tuple)) else [keys]
        self.transform = transform

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        for k in self.keys:
            if k not in out:
                raise KeyError(f"key {k!r} not in data (keys: {list(out)})")
            out[k] = self.transform(out[k])
        return out


class IntensityWindowd(_Dictionary):
    """Dictionary twin of :class:`IntensityWindow`."""

    def __init__(self, keys: Sequence[Hashable] | Hashable, low: float, high: float) -> None:
        super().__init__(keys, IntensityWindow(low, high))


@dataclass(frozen=True)
class AxisOrientation:
    """How the ``(z, y, x)`` array of an image maps onto LPS-ordered axes: a permutation and flips, no interpolation.

    The canonical array is the one of an image with the identity direction (SimpleITK's LPS: columns run to the
    patient's left, rows to posterior, slices to superior), the orientation of every phantom and so of everything
    a model learnt. A CT stored otherwise (e.g. a NIfTI from a converter that keeps RAS axes: direction
    ``diag(-1, -1, 1)``, the spine at the top of the array) is turned into it before the network sees it and the
    result is turned back, so the output stays on the input's exact grid. An oblique direction (gantry tilt) is
    mapped onto its closest axes, as ``SimpleITK.DICOMOrient`` does. (:func:`oncolabel.imaging.to_lps` is the
    image-level twin: a reoriented copy of a whole image; this works on array views and maps results back.)

    Attributes:
        axes: canonical numpy axis ``k`` is original numpy axis ``axes[k]``.
        flips: canonical axis ``k`` runs opposite to the original one (applied after the permutation).
    """

    axes: tuple[int, int, int] = (0, 1, 2)
    flips: tuple[bool, bool, bool] = (False, False, False)

    @classmethod
    def from_direction(cls, direction: Sequence[float]) -> "AxisOrientation":
        """From a SimpleITK 3D direction (row-major 3 x 3; column ``a`` = physical direction of index axis ``a``)."""
        d = np.asarray(direction, dtype=float).reshape(3, 3)
        if not np.all(np.isfinite(d)) or abs(np.linalg.det(d)) < 1e-6:
            raise InvalidInputError(f"image direction {np.round(d, 3).tolist()} is not a valid orientation matrix")
        # physical axis of each index axis (x, y, z): the assignment that keeps most of the directions' length
        phys = max(itertools.permutations(range(3)), key=lambda p: sum(abs(d[p[a], a]) for a in range(3)))
        axes, flips = [0, 0, 0], [False, False, False]
        for a, p in enumerate(phys):  # numpy axis of index axis a is 2 - a; of physical axis p, 2 - p
            axes[2 - p], flips[2 - p] = 2 - a, bool(d[p, a] < 0)
        return cls(tuple(axes), tuple(flips))  # type: ignore[arg-type]

    @classmethod
    def of_image(cls, image: Any) -> "AxisOrientation":
        """:meth:`from_direction` of a SimpleITK image's direction."""
        return cls.from_direction(image.GetDirection())

    @property
    def is_identity(self) -> bool:
        return self.axes == (0, 1, 2) and not any(self.flips)

    def spacing_zyx(self, image: Any) -> tuple[float, float, float]:
        """A SimpleITK image's voxel size on the canonical axes, ``(z, y, x)`` mm (its arrays seen through
        :meth:`to_canonical`)."""
        return self.shape(image.GetSpacing()[::-1])  # type: ignore[return-value]

    def _flip_index(self) -> tuple[slice, ...]:
        return tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)

    def to_canonical(self, x: np.ndarray) -> np.ndarray:
        """``x`` (original order) on the canonical axes: a view, no copy."""
        if x.ndim != 3:
            raise InvalidInputError(f"orientation needs a (z, y, x) volume, got shape {x.shape}")
        return x if self.is_identity else x.transpose(self.axes)[self._flip_index()]

    def from_canonical(self, x: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_canonical` (a view, no copy)."""
        if x.ndim != 3:
            raise InvalidInputError(f"orientation needs a (z, y, x) volume, got shape {x.shape}")
        return x if self.is_identity else x[self._flip_index()].transpose(np.argsort(self.axes))

    def direction(self, direction: Sequence[float]) -> tuple[float, ...]:
        """The canonical image's direction (row-major 3 x 3) for the original ``direction``: the identity for any
        axis-aligned image; an oblique one keeps its tilt, with its axes in LPS order."""
        d = np.asarray(direction, dtype=float).reshape(3, 3)
        cols = [d[:, 2 - self.axes[2 - a]] * (-1.0 if self.flips[2 - a] else 1.0) for a in range(3)]
        return tuple(np.column_stack(cols).ravel().tolist())

    def shape(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """The canonical array's shape (or spacing, ``(z, y, x)``) for an original ``shape``."""
        return tuple(shape[a] for a in self.axes)  # type: ignore[return-value]


@dataclass(frozen=True)
class BodyBox:
    """In-plane bounding box of the patient's body, the same for every slice.

    The body is the largest connected region above ``threshold`` HU in the maximum projection along z
    (table and air excluded); the box is grown by ``margin`` voxels and clipped to the image.

    Attributes:
        y0, y1, x0, x1: half-open index bounds.
    """

    y0: int
    y1: int
    x0: int
    x1: int

    @classmethod
    def from_volume(cls, hu: np.ndarray, *, threshold: float = -300.0, margin: int = 4) -> "BodyBox":
        if hu.ndim != 3:
            raise InvalidInputError(f"body box needs a (z, y, x) volume, got shape {hu.shape}")
        proj = (hu > threshold).mean(axis=0) > 0.05
        proj = ndimage.binary_opening(proj, iterations=2)
        lab, n = ndimage.label(proj)
        ny, nx = hu.shape[1:]
        if n == 0:
            return cls(0, ny, 0, nx)
        sizes = ndimage.sum(proj, lab, index=np.arange(1, n + 1))
        ys, xs = np.nonzero(lab == int(np.argmax(sizes)) + 1)
        return cls(max(0, int(ys.min()) - margin), min(ny, int(ys.max()) + 1 + margin),
                   max(0, int(xs.min()) - margin), min(nx, int(xs.max()) + 1 + margin))

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0


def crop_to_box(x: np.ndarray | torch.Tensor, box: BodyBox) -> np.ndarray | torch.Tensor:
    """Crop the last two axes of ``x`` to ``box``."""
    return x[..., box.y0:box.y1, box.x0:box.x1]


def pad_to_multiple(x: torch.Tensor, multiple: int, value: float = 0.0) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the last two axes (at the end) to a multiple of ``multiple``; return the padded tensor and the pads."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), value=value)
    return x, (ph, pw)


class InplaneZoom:
    """Resize the last two axes to ``size`` (bilinear for images, nearest for labels).

    Input ``(..., y, x)`` numpy or torch; output torch float32 (images) or uint8 (labels).
    """

    def __init__(self, size: tuple[int, int], *, mode: str = "bilinear") -> None:
        if mode not in ("bilinear", "nearest"):
            raise InvalidInputError(f"zoom mode {mode!r}: use 'bilinear' or 'nearest'")
        self.size = (int(size[0]), int(size[1]))
        self.mode = mode

    def __call__(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x)
        lead = t.shape[:-2]
        if tuple(t.shape[-2:]) == self.size:
            return t.float() if self.mode == "bilinear" else t.to(torch.uint8)
        flat = t.reshape(-1, 1, *t.shape[-2:]).float()
        if self.mode == "bilinear":
            out = F.interpolate(flat, size=self.size, mode="bilinear", align_corners=False, antialias=False)
            return out.reshape(*lead, *self.size)
        out = F.interpolate(flat, size=self.size, mode="nearest-exact")
        return out.reshape(*lead, *self.size).to(torch.uint8)


class InplaneZoomd(_Dictionary):
    """Dictionary twin of :class:`InplaneZoom` (one mode per key)."""

    def __init__(self, keys: Sequence[Hashable], size: tuple[int, int], modes: Sequence[str]) -> None:
        super().__init__(keys, None)
        self.zooms = {k: InplaneZoom(size, mode=m) for k, m in zip(self.keys, modes)}

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        for k in self.keys:
            out[k] = self.zooms[k](out[k])
        return out


class RandInplaneZoom:
    """Random in-plane zoom by a factor drawn uniformly from ``factor_range`` (probability ``prob``).

    :meth:`randomize` draws the factor; the work is done by a deterministic :class:`InplaneZoom`.
    """

    def __init__(self, factor_range: tuple[float, float], *, prob: float = 1.0, mode: str = "bilinear") -> None:
        self.factor_range, self.prob, self.mode = factor_range, prob, mode
        self.factor = 1.0

    def randomize(self, rng: np.random.Generator) -> float:
        self.factor = float(rng.uniform(*self.factor_range)) if rng.random() < self.prob else 1.0
        return self.factor

    def __call__(self, x: np.ndarray | torch.Tensor, *, randomize: bool = True,
                 rng: np.random.Generator | None = None) -> torch.Tensor:
        if randomize:
            self.randomize(rng if rng is not None else np.random.default_rng())
        h, w = x.shape[-2:]
        size = (max(8, round(h * self.factor)), max(8, round(w * self.factor)))
        return InplaneZoom(size, mode=self.mode)(x)


class RandInplaneZoomd:
    """Dictionary twin of :class:`RandInplaneZoom`: one draw, applied to every key (image and label agree)."""

    def __init__(self, keys: Sequence[Hashable], factor_range: tuple[float, float], modes: Sequence[str],
                 *, prob: float = 1.0) -> None:
        self.keys = list(keys)
        self.zooms = [RandInplaneZoom(factor_range, prob=prob, mode=m) for m in modes]

    def __call__(self, data: Mapping[Hashable, Any], rng: np.random.Generator) -> dict[Hashable, Any]:
        factor = self.zooms[0].randomize(rng)
        out = dict(data)
        for k, z in zip(self.keys, self.zooms):
            z.factor = factor
            out[k] = z(out[k], randomize=False)
        return out


class SliceContext:
    """2.5D input: stack ``k`` neighbouring slices on each side as channels.

    ``(z, y, x)`` -> ``(z, 2k+1, y, x)``; slices beyond the volume repeat the edge slice.
    With ``k = 0`` this is plain 2D input ``(z, 1, y, x)``.
    """

    def __init__(self, k: int) -> None:
        if k < 0:
            raise InvalidInputError(f"slice context k={k}: must be >= 0")
        self.k = int(k)

    def indices(self, n_slices: int, z: int) -> list[int]:
        """Slice indices forming the channels of slice ``z``."""
        return [min(max(z + d, 0), n_slices - 1) for d in range(-self.k, self.k + 1)]

    def __call__(self, vol: torch.Tensor) -> torch.Tensor:
        if vol.ndim != 3:
            raise InvalidInputError(f"slice context needs a (z, y, x) volume, got shape {tuple(vol.shape)}")
        if self.k == 0:
            return vol.unsqueeze(1)
        n = vol.shape[0]
        idx = torch.tensor([self.indices(n, z) for z in range(n)], dtype=torch.long)
        return vol[idx]


class SliceContextd(_Dictionary):
    """Dictionary twin of :class:`SliceContext`."""

    def __init__(self, keys: Sequence[Hashable] | Hashable, k: int) -> None:
        super().__init__(keys, SliceContext(k))
