"""Sarcoidosis vs malignant lymphoma on whole-body FDG-PET maximum-intensity projections (2-view CNN).

Study emulated: 56 sarcoidosis and 62 lymphoma patients; frontal and lateral MIP images; a CNN; 5-fold
cross-validation (accuracy 0.890, sensitivity 0.898, specificity 0.907, AUC 0.963); Grad-CAM; a table of
FDG-avid regions per disease compared with Fisher's exact test.

Input: a PET volume in SUVbw (a DICOM series, SUV from its headers, or a NIfTI/NRRD that declares SUVbw; see
:func:`oncolabel.pet.read_suv`). The network input is one image holding the frontal MIP (left, 480 mm wide) and the
lateral MIP (right, 288 mm wide) side by side, 6 mm pixels (max-pooled from the PET grid, so small hot lesions keep
their peak), 864 mm from the top of the field of view down, SUV 0..12 mapped to [0, 1]. Network:
:class:`oncolabel.networks.CNNClassifier` (2D). Grad-CAM of the two views is back-projected along the projection rays
(geometric mean of the views) onto the PET grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from oncolabel.classification import ClassificationPostprocessing, ClassifierPreprocessing, Prepared
from oncolabel.errors import InvalidInputError
from oncolabel.imaging import backproject, mip
from oncolabel.io import require_3d
from oncolabel.tasks.base import NetworkSpec, TaskSpec, TrainingSpec, register_task

if TYPE_CHECKING:
    from oncolabel.report import Table

REGION_NAMES = ("salivary_glands", "cervical_nodes", "axillary_nodes", "lung", "mediastinal_nodes",
                "abdominal_nodes", "inguinal_nodes", "liver", "spleen", "adrenal", "skin")


@dataclass(frozen=True)
class PetMipPreprocessing(ClassifierPreprocessing):
    """SUV volume -> frontal | lateral MIP image ``(1, rows, frontal_cols + lateral_cols)``, and back.

    Attributes:
        pixel_mm: working pixel size.
        height_mm: craniocaudal extent kept from the top of the volume (shorter volumes are padded below).
        frontal_width_mm, lateral_width_mm: widths kept around the centre of each view.
        suv_max: SUV mapped to 1 (values above are clipped).
    """

    pixel_mm: float = 6.0
    height_mm: float = 864.0
    frontal_width_mm: float = 480.0
    lateral_width_mm: float = 288.0
    suv_max: float = 12.0

    inputs: ClassVar[tuple[str, ...]] = ("image",)
    branch_names: ClassVar[tuple[str, ...]] = ()
    primary_input: ClassVar[str] = "image"

    @property
    def rows(self) -> int:
        return int(round(self.height_mm / self.pixel_mm))

    @property
    def view_cols(self) -> tuple[int, int]:
        return int(round(self.frontal_width_mm / self.pixel_mm)), int(round(self.lateral_width_mm / self.pixel_mm))

    def read(self, item: Mapping[str, Any]) -> dict[str, sitk.Image]:
        from oncolabel.pet import read_suv

        if not item.get("image"):
            raise InvalidInputError("pet-lymphoma item lacks its PET 'image'")
        image, _ = read_suv(item["image"], suv_scale=item.get("suv_scale"))
        return {"image": image}

    def _view(self, arr: np.ndarray, spacing: tuple[float, float], cols: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """Max-pool a projection to the working pixel, keep the top ``rows`` and the central ``cols``."""
        h = max(1, int(round(arr.shape[0] * spacing[0] / self.pixel_mm)))
        w = max(1, int(round(arr.shape[1] * spacing[1] / self.pixel_mm)))
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None, None]
        pooled = F.adaptive_max_pool2d(t, (h, w))[0, 0]
        out = torch.zeros((self.rows, cols), dtype=torch.float32)
        c0 = (w - cols) // 2  # offset of the canvas in the pooled view (negative: view narrower than the canvas)
        src_c = slice(max(0, c0), max(0, c0) + min(cols, w - max(0, c0)))
        dst_c0 = max(0, -c0)
        n_r = min(self.rows, h)
        out[:n_r, dst_c0:dst_c0 + (src_c.stop - src_c.start)] = pooled[:n_r, src_c]
        return out, {"pooled": (h, w), "c0": c0, "n_rows": n_r, "native": arr.shape}

    def prepare(self, images: Mapping[str, sitk.Image], *, allow_missing: bool = False) -> Prepared:
        image = images.get("image")
        if image is None:
            raise InvalidInputError("no PET image given")
        require_3d(image, what="PET image", min_slices=8)
        views, ctx = [], {}
        for name, cols in zip(("frontal", "lateral"), self.view_cols):
            proj = mip(image, name)
            if not np.isfinite(proj.array).all():
                raise InvalidInputError("the PET image holds NaN or infinite values")
            t, info = self._view(proj.array, proj.spacing, cols)
            views.append(t)
            ctx[name] = info
        x = torch.cat(views, dim=1).clamp(0.0, self.suv_max) / self.suv_max
        peak = float(sitk.GetArrayViewFromImage(image).max())
        if peak > 200.0:
            raise InvalidInputError(f"PET maximum {peak:.0f} is not a plausible SUV (expected < 200): the values are "
                                    "probably Bq/ml or counts; give the right SUV scale factor")
        return Prepared(tensor=x[None], images={"image": image}, context=ctx)

    def heatmap(self, cam: np.ndarray, prepared: Prepared) -> dict[str, sitk.Image]:
        maps, start = {}, 0
        for name, cols in zip(("frontal", "lateral"), self.view_cols):
            info = prepared.context[name]
            part = torch.from_numpy(np.ascontiguousarray(cam[:, start:start + cols], dtype=np.float32))
            start += cols
            h, w = info["pooled"]
            pooled = torch.zeros((h, w), dtype=torch.float32)
            c0 = info["c0"]
            src0, dst0 = max(0, -c0), max(0, c0)
            n_c = min(cols - src0, w - dst0)
            pooled[:info["n_rows"], dst0:dst0 + n_c] = part[:info["n_rows"], src0:src0 + n_c]
            native = F.interpolate(pooled[None, None], size=tuple(info["native"]), mode="bilinear",
                                   align_corners=False)[0, 0]
            maps[name] = native.numpy()
        return {"image": backproject(maps, prepared.images["image"])}

    def augment(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Small shifts (body position), uptake scaling (dose, uptake time) and noise."""
        dy, dx = int(rng.integers(-4, 5)), int(rng.integers(-3, 4))
        x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
        if dy > 0:
            x[..., :dy, :] = 0
        elif dy < 0:
            x[..., dy:, :] = 0
        return (x * float(rng.uniform(0.9, 1.1)) + float(rng.uniform(0, 0.01)) * torch.randn_like(x)).clamp(0, 1)


def region_table(records: Sequence[Mapping[str, Any]], *, classes: tuple[str, str] = ("sarcoidosis", "lymphoma"),
                 regions: Sequence[str] = REGION_NAMES) -> Table:
    """Regional FDG uptake per disease with Fisher's exact test (the structure of the study's Table 1).

    Args:
        records: one per patient, ``{"class": name, "involved": {region: bool}}`` (reader or phantom annotations).

    Returns:
        a report :class:`~oncolabel.report.Table`: region, n and % per class, two-sided Fisher exact p value.
    """
    from scipy.stats import fisher_exact

    from oncolabel.report import Table

    by_class = {c: [r for r in records if r.get("class") == c] for c in classes}
    unknown = sorted({str(r.get("class")) for r in records} - set(classes))
    if unknown:
        raise InvalidInputError(f"unknown class(es) {unknown} in the region records (expected {classes})")
    if not all(by_class.values()):
        raise InvalidInputError(f"the region table needs patients of both classes {classes}")
    rows = []
    for region in regions:
        counts = []
        for c in classes:
            try:
                counts.append(sum(bool(r["involved"][region]) for r in by_class[c]))
            except KeyError as exc:
                raise InvalidInputError(f"a {c} record lacks region {exc}") from exc
        n0, n1 = len(by_class[classes[0]]), len(by_class[classes[1]])
        _, p = fisher_exact([[counts[0], n0 - counts[0]], [counts[1], n1 - counts[1]]])
        rows.append((region, counts[0], round(100.0 * counts[0] / n0, 1), counts[1], round(100.0 * counts[1] / n1, 1),
                     round(float(p), 4)))
    n0, n1 = (len(by_class[c]) for c in classes)
    return Table(key="region_uptake", title="FDG-avid regions per disease (Fisher's exact test)",
                 columns=("region", f"{classes[0]} n (of {n0})", f"{classes[0]} %", f"{classes[1]} n (of {n1})",
                          f"{classes[1]} %", "p (Fisher)"),
                 rows=tuple(rows), note="Two-sided Fisher's exact test per region; research use only.")


PREPROCESSING = PetMipPreprocessing()


@register_task("pet_lymphoma")
def pet_lymphoma_spec() -> TaskSpec:
    return TaskSpec(
        name="pet_lymphoma",
        cli_name="pet-lymphoma",
        kind="classification",
        description="Sarcoidosis vs malignant lymphoma on whole-body FDG-PET (frontal + lateral MIPs, CNN). "
                    "Research use only.",
        labels={"sarcoidosis": 0, "lymphoma": 1},
        network=NetworkSpec("CNNClassifier", {"spatial_dims": 2, "in_channels": 1, "out_channels": 2,
                                              "channels": (16, 32, 48, 64), "dropout": 0.3}),
        preprocessing=PREPROCESSING,
        training=TrainingSpec(max_iterations=500, batch_size=16, learning_rate=2e-3, weight_decay=1e-4,
                              validate_every=250, finetune_iterations=60, finetune_learning_rate=5e-4),
        postprocessing=ClassificationPostprocessing(head="temperature"),
        default_model="pet_lymphoma.pt",
    )
