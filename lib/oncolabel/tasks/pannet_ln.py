"""Lymph-node metastasis risk of non-functional pancreatic NET from contrast CT: the RDP score.

Study emulated: 320 patients from two centres; 11 radiomics and 9 deep-learning features from pancreatic-phase CT;
ten machine-learning methods compared, glmBoost chosen; AUC 0.89 (training), 0.87 (internal validation), 0.91
(external validation), consistent for tumours <= 2 cm and > 2 cm; the score also stratified disease-free survival.
Clinical use proposed: tumours <= 2 cm - low score: follow-up or minimal enucleation, high score: standard
resection; tumours > 2 cm - low score: enucleation, high score: standard resection. Research use only.

Inputs: the CT and a tumour mask (label 1) on the CT's grid; optionally the tumour size. Output: a score
(:mod:`oncolabel.scoring.rdp`), not an image. The task's deep features come from a :class:`CNNClassifier` trained
with the generic trainer's ``classification`` adapter on :class:`PannetPreprocessing` inputs; its radiomics
settings are ``resources/pannet_ln_radiomics.yaml``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import SimpleITK as sitk
import torch

from oncolabel.errors import InvalidInputError
from oncolabel.imaging import check_hounsfield, to_lps
from oncolabel.io import check_label_values, mask_on_grid, read_image, require_3d
from oncolabel.tasks.base import NetworkSpec, TaskSpec, TrainingSpec, register_task

RADIOMICS_PARAMS = "pannet_ln_radiomics.yaml"


def radiomics_params_path(name: str = RADIOMICS_PARAMS) -> Path:
    """Path of a radiomics parameter file shipped in ``oncolabel/tasks/resources``."""
    return Path(str(resources.files("oncolabel.tasks").joinpath("resources", name)))


def tumour_voxels(mask: sitk.Image, *, label: int = 1, what: str = "mask") -> np.ndarray:
    """Boolean array of the tumour voxels; raises when there are none."""
    values = sitk.GetArrayViewFromImage(mask)
    arr = values == label
    if not arr.any():
        others = np.unique(values[values != 0])
        if others.size:  # e.g. a mask exported with 255 for the tumour
            raise InvalidInputError(f"{what} has no voxel with label {label} (the tumour's label) but holds label(s) "
                                    f"{others[:5].tolist()}: relabel the tumour {label}")
        raise InvalidInputError(f"{what} is empty: no voxel has label {label}; draw the tumour first")
    return np.asarray(arr)


def read_case(image: str | Path | sitk.Image, mask: str | Path | sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """The CT and its tumour mask, checked: 3D, Hounsfield units, mask non-empty and on the image's grid (a mask on a
    part of it, e.g. a Slicer ``.seg.nrrd``, is placed into it: :func:`oncolabel.io.mask_on_grid`).

    Raises
    ------
    ImageReadError, GeometryError, InvalidInputError
    """
    img = image if isinstance(image, sitk.Image) else read_image(image)
    msk = mask if isinstance(mask, sitk.Image) else read_image(mask)
    require_3d(img, what="image", min_slices=1)
    check_hounsfield(sitk.GetArrayViewFromImage(img), what="CT")  # peripancreatic fat lies in every crop
    msk = mask_on_grid(img, msk, what="tumour mask")
    check_label_values(sitk.GetArrayViewFromImage(msk), what="the tumour mask")
    tumour_voxels(msk)
    return img, msk


@dataclass(frozen=True)
class PannetPreprocessing:
    """The one preprocessing of the task's CNN input (training and inference), plus the radiomics settings.

    The CNN sees a ``crop_mm`` square around the tumour, resampled to ``pixel_mm`` pixels on axial planes at
    ``slice_offsets_mm`` from the tumour's largest axial cross-section (tri-linear), windowed to
    ``[hu_low, hu_high]`` -> [0, 1], plus the tumour mask of the central plane as the last channel. The
    context around the tumour (vessels, peripancreatic nodes) is what radiomics inside the mask cannot see.

    Attributes
    ----------
    crop_mm, pixel_mm : field of view and pixel size of the CNN input.
    slice_offsets_mm : axial planes sampled relative to the largest cross-section.
    hu_low, hu_high : intensity window (pancreatic phase: fat to arterial contrast).
    radiomics_params : resource name of the pyradiomics parameter file.
    """

    crop_mm: float = 96.0
    pixel_mm: float = 1.5
    slice_offsets_mm: tuple[float, ...] = (-6.0, 0.0, 6.0)
    hu_low: float = -150.0
    hu_high: float = 350.0
    radiomics_params: str = RADIOMICS_PARAMS

    @property
    def size(self) -> int:
        return int(round(self.crop_mm / self.pixel_mm))

    @property
    def in_channels(self) -> int:
        return len(self.slice_offsets_mm) + 1

    def radiomics(self) -> dict[str, Any]:
        """The pyradiomics parameter mapping."""
        from oncolabel.features.radiomics import load_params

        return load_params(radiomics_params_path(self.radiomics_params))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["slice_offsets_mm"] = list(self.slice_offsets_mm)
        d["radiomics"] = self.radiomics()
        return d

    def centre(self, mask: sitk.Image) -> tuple[float, float, float]:
        """Physical (x, y, z) the crop is centred on: in-plane centroid of the tumour, z of its largest axial slice
        (on the mask's axes in LPS order, so whichever way the file stores them)."""
        lps = to_lps(mask, allow_oblique=True)
        vox = tumour_voxels(lps)
        area = vox.sum(axis=(1, 2))
        k = int(np.argmax(area))
        ys, xs = np.nonzero(vox[k])
        p = lps.TransformContinuousIndexToPhysicalPoint((float(xs.mean()), float(ys.mean()), float(k)))
        return float(p[0]), float(p[1]), float(p[2])

    def prepare(self, image: sitk.Image, mask: sitk.Image) -> np.ndarray:
        """CNN input ``(in_channels, size, size)`` float32 for a checked image/mask pair."""
        cx, cy, cz = self.centre(mask)
        n = self.size
        half = (n - 1) / 2.0 * self.pixel_mm
        planes = []
        for dz in self.slice_offsets_mm:
            ref = sitk.Image([n, n, 1], sitk.sitkFloat32)
            ref.SetSpacing((self.pixel_mm, self.pixel_mm, 1.0))
            ref.SetOrigin((cx - half, cy - half, cz + dz))
            planes.append(sitk.GetArrayFromImage(sitk.Resample(image, ref, sitk.Transform(), sitk.sitkLinear,
                                                               self.hu_low, sitk.sitkFloat32))[0])
            if dz == 0.0:
                m = sitk.Resample(mask, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
                centre_mask = (sitk.GetArrayFromImage(m)[0] == 1).astype(np.float32)
        x = np.clip((np.stack(planes) - self.hu_low) / (self.hu_high - self.hu_low), 0.0, 1.0).astype(np.float32)
        return np.concatenate([x, centre_mask[None]], axis=0)

    def load(self, item: Mapping[str, Any]) -> torch.Tensor:
        """Tensor input of one item ``{"image": path, "mask": path}`` (the classification adapter's hook)."""
        try:
            image, mask = item["image"], item["mask"]
        except KeyError as exc:
            raise InvalidInputError(f"a pannet_ln item needs 'image' and 'mask', got keys {sorted(item)}") from exc
        img, msk = read_case(image, mask)
        return torch.from_numpy(self.prepare(img, msk))

    def augment(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Training augmentation: left-right flip, shift of up to 4 pixels, intensity scale/offset, noise."""
        if rng.random() < 0.5:
            x = torch.flip(x, (-1,))
        dy, dx = (int(v) for v in rng.integers(-4, 5, size=2))
        x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
        img = x[:-1] * float(rng.uniform(0.93, 1.07)) + float(rng.uniform(-0.03, 0.03))
        img = img + float(rng.uniform(0.0, 0.03)) * torch.randn_like(img)
        return torch.cat([img.clamp(0.0, 1.0), x[-1:]], dim=0)


PREPROCESSING = PannetPreprocessing()


@register_task("pannet_ln")
def pannet_ln_spec() -> TaskSpec:
    return TaskSpec(
        name="pannet_ln",
        cli_name="pannet-ln",
        kind="score",
        description="Lymph-node metastasis risk of non-functional pancreatic NET from contrast CT and a tumour mask "
                    "(RDP score: radiomics + deep features + glmBoost). Research use only.",
        labels={"ln_negative": 0, "ln_positive": 1},
        network=NetworkSpec("CNNClassifier", {"spatial_dims": 2, "in_channels": PREPROCESSING.in_channels,
                                              "out_channels": 2, "channels": (16, 32, 64), "dropout": 0.3}),
        preprocessing=PREPROCESSING,
        training=TrainingSpec(max_iterations=200, batch_size=16, learning_rate=2e-3, weight_decay=1e-3,
                              validate_every=100, finetune_iterations=100, finetune_learning_rate=5e-4, seed=0),
        default_model="pannet_ln.pt",
    )


__all__ = ["PannetPreprocessing", "PREPROCESSING", "pannet_ln_spec", "radiomics_params_path", "read_case",
           "tumour_voxels", "RADIOMICS_PARAMS"]
