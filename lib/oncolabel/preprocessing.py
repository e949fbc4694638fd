"""Task preprocessing, composed once from :mod:`oncolabel.transforms`.

:class:`CTSlicePreprocessing` is the single definition of how a CT volume becomes network input for slice-wise
(2D / 2.5D) segmentation, and how network output goes back onto the CT's grid. Training
(:class:`oncolabel.training.SliceSampler`), inference (:class:`oncolabel.inference.SegmentationPredictor`) and
evaluation all call it; ``tests/unit/test_transforms_preprocessing.py`` proves training and inference inputs identical.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import SimpleITK as sitk
import torch

from oncolabel.errors import InvalidInputError
from oncolabel.imaging import check_hounsfield
from oncolabel.io import require_3d
from oncolabel.transforms import AxisOrientation, BodyBox, InplaneZoom, IntensityWindow, SliceContext, crop_to_box

__all__ = ["CTSlicePreprocessing", "PreparedVolume"]


@dataclass
class PreparedVolume:
    """A CT volume on the network's working grid, plus what is needed to map results back.

    Attributes:
        image: ``(z, h, w)`` float32 tensor, windowed, cropped to the body box and resized.
        box: body box on the canonical (LPS-ordered) grid.
        original_shape: ``(z, y, x)`` of the original array.
        orientation: how the original array maps onto the canonical axes (identity for an LPS image).
    """

    image: torch.Tensor
    box: BodyBox
    original_shape: tuple[int, int, int]
    orientation: AxisOrientation = field(default_factory=AxisOrientation)

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.image.shape[-2:])  # type: ignore[return-value]


@dataclass(frozen=True)
class CTSlicePreprocessing:
    """CT -> slice-wise network input, and back.

    Steps (forward): the volume's axes turned into the canonical LPS order (:class:`AxisOrientation`: a
    permutation and flips, so that anatomy always lies the way the network learnt it, whatever the file's
    direction matrix); HU window ``[hu_low, hu_high]`` -> ``[0, 1]``; crop to the body box (largest region above
    ``body_threshold_hu``); resize in-plane to ``spacing_mm`` pixels (slices keep their native thickness and
    position, so results map back one slice to one slice); stack ``context`` neighbouring slices each side as
    channels. Backward: probabilities are resized to the box, placed into a zero background, and turned back onto
    the original array's axes.

    Attributes:
        hu_low, hu_high: intensity window (HU).
        spacing_mm: in-plane working pixel size.
        context: neighbouring slices each side (0 = 2D, 1 = 2.5D with three channels).
        body_threshold_hu: HU threshold of the body box.
        min_hu_range: a volume whose 1st-99th percentile span is below this is not a CT (HU) image.
        max_low_percentile_hu: a volume whose 1st percentile lies above this holds no air or fat: not a CT (HU)
            image (MR and PET start at 0; so do CT values stored without the rescale intercept).
    """

    hu_low: float = -250.0
    hu_high: float = 1250.0
    spacing_mm: float = 1.25
    context: int = 1
    body_threshold_hu: float = -300.0
    min_hu_range: float = 300.0
    max_low_percentile_hu: float = -50.0

    @property
    def in_channels(self) -> int:
        return 2 * self.context + 1

    def to_dict(self) -> dict[str, float | int | str]:
        return {"class": type(self).__name__, **asdict(self)}

    # --- forward ------------------------------------------------------------------------------------------
    def check_ct(self, hu: np.ndarray) -> None:
        """Raise :class:`InvalidInputError` unless ``hu`` looks like a CT in Hounsfield units."""
        if hu.ndim != 3:
            raise InvalidInputError(f"expected a 3D (z, y, x) CT volume, got an array of shape {hu.shape}")
        # a torso CT holds air or fat (MR, PET and raw stored values do not) and a wide range of values
        lo, hi = check_hounsfield(hu, what="CT", max_low_percentile_hu=self.max_low_percentile_hu)
        if hi - lo < self.min_hu_range or hi < 0:
            raise InvalidInputError(
                f"intensities span {lo:.0f}..{hi:.0f} (1st-99th percentile): not a CT in Hounsfield units "
                "(expected air near -1000 HU and soft tissue/bone above 0 HU)")

    def window_value(self, hu: float) -> float:
        """The network-input value of ``hu`` HU (the window maps ``hu_low..hu_high`` to 0..1, clipped)."""
        return float(min(max((hu - self.hu_low) / (self.hu_high - self.hu_low), 0.0), 1.0))

    def working_size(self, box: BodyBox, spacing_yx: tuple[float, float]) -> tuple[int, int]:
        h, w = box.shape
        return (max(16, round(h * spacing_yx[0] / self.spacing_mm)),
                max(16, round(w * spacing_yx[1] / self.spacing_mm)))

    def prepare(self, hu: np.ndarray, spacing_yx: tuple[float, float], *, check: bool = True) -> PreparedVolume:
        """Window, crop and resize a ``(z, y, x)`` HU volume, already on the canonical axes (see
        :meth:`prepare_image`), with in-plane spacing ``(sy, sx)`` mm.

        ``hu`` may be any real dtype and read-only (e.g. a view of an int16 CT): only the body box is copied and
        converted to float32, and ``hu`` is never written.
        """
        if check:
            self.check_ct(hu)
        box = BodyBox.from_volume(hu, threshold=self.body_threshold_hu)
        crop = np.array(crop_to_box(hu, box), dtype=np.float32, order="C", copy=True)
        img = IntensityWindow(self.hu_low, self.hu_high)(torch.from_numpy(crop))
        img = InplaneZoom(self.working_size(box, spacing_yx), mode="bilinear")(img)
        return PreparedVolume(image=img.contiguous(), box=box, original_shape=tuple(hu.shape))

    def prepare_image(self, image: sitk.Image) -> PreparedVolume:
        """:meth:`prepare` of a 3D SimpleITK CT: its read-only array view on the canonical axes and its in-plane
        spacing (training and inference both come through here)."""
        require_3d(image, what="CT image")
        orientation = AxisOrientation.of_image(image)
        view = sitk.GetArrayViewFromImage(image)  # read-only; prepare copies only the body box
        _, sy, sx = orientation.spacing_zyx(image)
        prepared = self.prepare(orientation.to_canonical(view), (sy, sx))
        return replace(prepared, original_shape=tuple(view.shape), orientation=orientation)

    def prepare_label(self, label: np.ndarray, prepared: PreparedVolume) -> torch.Tensor:
        """The label (original array order) on the working grid of ``prepared`` (nearest neighbour), ``(z, h, w)``
        uint8."""
        if tuple(label.shape) != prepared.original_shape:
            raise InvalidInputError(f"label shape {label.shape} differs from image shape {prepared.original_shape}")
        lab = crop_to_box(prepared.orientation.to_canonical(np.asarray(label)), prepared.box)
        lab = torch.from_numpy(np.ascontiguousarray(lab).astype(np.uint8))
        return InplaneZoom(prepared.size, mode="nearest")(lab)

    def slices(self, prepared: PreparedVolume | torch.Tensor, z: torch.Tensor | list[int] | None = None) -> torch.Tensor:
        """Network input ``(b, channels, h, w)`` for slices ``z`` (all slices when None)."""
        vol = prepared.image if isinstance(prepared, PreparedVolume) else prepared
        ctx = SliceContext(self.context)
        n = vol.shape[0]
        zs = range(n) if z is None else [int(i) for i in z]
        idx = torch.tensor([ctx.indices(n, i) for i in zs], dtype=torch.long)
        return vol[idx]

    # --- backward -----------------------------------------------------------------------------------------
    def restore(self, prob: torch.Tensor, prepared: PreparedVolume) -> np.ndarray:
        """Map ``(z, h, w)`` working-grid probabilities back to the original ``(z, y, x)`` grid (float32)."""
        box, orientation = prepared.box, prepared.orientation
        out = np.zeros(orientation.shape(prepared.original_shape), dtype=np.float32)
        out[:, box.y0:box.y1, box.x0:box.x1] = InplaneZoom(box.shape, mode="bilinear")(prob).numpy()
        return np.ascontiguousarray(orientation.from_canonical(out))
