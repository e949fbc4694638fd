"""Bone (spinal) metastasis segmentation on CT with DeepLabV3+.

Study emulated: DeepLabV3+ segmentation of spinal bone metastases on CT, evaluated slice-wise
(5,991 metastasis slices, 88,799 negative slices; sensitivity 0.78, PPV 0.68), with an AI-assisted
reading study. Labels: 0 background, 1 metastasis.

Design choices (measured, see docs/bone_metastasis.md): slice-wise 2.5D input (the slice and one neighbour
each side as channels), 0.8 mm in-plane working pixels (1.25 mm before: on 300 held-out phantoms the finer pixels
found more slices and lesions, docs/bone_metastasis.md), HU window -250..1750 (keeps lytic lesions, which are
darker than cancellous bone, and blastic lesions, which are brighter, inside the window, and does not clip the
1000-1500 HU of bone islands, a mimic of blastic metastases: with a 1250 HU ceiling they were one of the
main sources of false positives).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from oncolabel.errors import InvalidInputError
from oncolabel.preprocessing import CTSlicePreprocessing
from oncolabel.tasks.base import NetworkSpec, TaskSpec, TrainingSpec, register_task


@dataclass(frozen=True)
class SegmentationPostprocessing:
    """Network output -> label.

    ``flip_average`` (off by default): the probability is the mean of the network's pass and a pass on the
    left-right mirrored slices (test-time augmentation; training flips too). Measured with the previous model: on the
    validation phantoms slice sensitivity 0.754 -> 0.797 at the same PPV (0.777 -> 0.782), but on the test phantoms
    0.733 -> 0.725 with PPV 0.607 -> 0.628 (Dice 0.705 -> 0.716), for 1.6 times the inference time: not worth it by
    default. Then:
    threshold; keep the 3D components that reach ``seed_threshold`` somewhere (hysteresis; not applied when it is not
    above ``threshold``); drop components smaller than ``min_lesion_mm3``. Then (:mod:`oncolabel.candidates`):
    ``component_filter`` - when the checkpoint holds a fitted false-positive filter, drop the components it scores
    below its threshold; ``grow_slices`` - extend each component by that many slices above and below where the HU
    lies within the component's ``grow_quantiles`` (0: off). Threshold 0.4 and the filter (threshold 0.15, in the
    shipped checkpoint) were chosen on 300 held-out phantoms; growth trades PPV for slice sensitivity at about equal
    slice F1 there, so it is off (docs/bone_metastasis.md).

    ``bone_roi_margin_mm`` (35 mm; ``None``: the whole body box): the network runs, for each group of slices, only on
    the in-plane box of the bone in those slices (above ``bone_roi_hu``) grown by this margin, probability 0 elsewhere
    (metastases of this task lie in bone): 1.3-1.4 times faster. Not the same function (the network sees less
    context), so it was chosen like the rest, on the 300 held-out phantoms with the filter refitted on its own
    outputs and a rule fixed before the run (slice F1 at least the whole box's, lesions >= 10 mm within 0.01):
    slice F1 0.758 vs 0.746 (sensitivity 0.778 vs 0.787, PPV 0.738 vs 0.710), lesions >= 10 mm 0.927 vs 0.935,
    0.52 vs 0.65 false positives per scan (docs/bone_metastasis.md; ``bench/bone_metastasis_roi.py``).
    The box is taken over consecutive groups of ``bone_roi_slices`` slices counted from the first slice (32, the
    group every figure was measured with), not over each forward batch: the network's image-level pooling sees the
    whole box, so a box that followed the batch would make a slice's probability depend on the batch size.
    """

    threshold: float = 0.4
    min_lesion_mm3: float = 100.0
    seed_threshold: float = 0.9
    flip_average: bool = False
    component_filter: bool = True
    grow_slices: int = 0
    grow_quantiles: tuple[float, float] = (25.0, 75.0)
    bone_roi_hu: float = 200.0
    bone_roi_margin_mm: float | None = 35.0
    bone_roi_slices: int = 32

    def __post_init__(self) -> None:
        if int(self.bone_roi_slices) < 1:
            raise InvalidInputError(f"bone_roi_slices {self.bone_roi_slices!r}: use a positive number of slices")

    def to_dict(self) -> dict[str, float | bool]:
        return asdict(self)


PREPROCESSING = CTSlicePreprocessing(hu_low=-250.0, hu_high=1750.0, spacing_mm=0.8, context=1)


def phantom_input_spacing() -> dict[str, tuple[float, float]]:
    """In-plane pixel and slice spacing range (mm) of the phantom generator's default cohorts, on which every
    shipped bone-metastasis model was trained (its checkpoints predate the trainer's own record)."""
    from oncolabel.phantoms.bone_metastasis import BoneMetastasisPhantomConfig

    cfg = BoneMetastasisPhantomConfig()
    return {"inplane": (cfg.fov_mm[0] / cfg.matrix, cfg.fov_mm[1] / cfg.matrix),
            "slice": (float(min(cfg.thickness_mm)), float(max(cfg.thickness_mm)))}


@register_task("bone_metastasis")
def bone_metastasis_spec() -> TaskSpec:
    return TaskSpec(
        name="bone_metastasis",
        cli_name="bone-metastasis",
        kind="segmentation",
        description="Bone (spinal) metastasis segmentation on CT (DeepLabV3+, 2.5D). Research use only.",
        labels={"background": 0, "metastasis": 1},
        network=NetworkSpec("DeepLabV3Plus", {"spatial_dims": 2, "in_channels": PREPROCESSING.in_channels,
                                              "out_channels": 2, "channels": (16, 32, 64, 96),
                                              "output_stride": 8, "dropout": 0.1}),
        preprocessing=PREPROCESSING,
        training=TrainingSpec(max_iterations=3000, batch_size=16, learning_rate=2e-3, validate_every=500,
                              finetune_iterations=120, finetune_learning_rate=5e-4, lesion_size_weight=1.0),
        postprocessing=SegmentationPostprocessing(),
        default_model="bone_metastasis.pt",
        assumed_input_spacing_mm=phantom_input_spacing(),
    )
