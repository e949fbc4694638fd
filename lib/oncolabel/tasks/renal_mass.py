"""Small solid renal mass on four-phase CT: benign vs malignant (Inception-v3 per phase).

Study emulated: 159 patients, 168 solid renal masses <= 4 cm, unenhanced (UE), corticomedullary (CM), nephrographic
(NG) and excretory (EX) CT; one Inception-v3 per phase on lesion-centred images; the CM phase performed best
(accuracy 88%); AUCs compared between phases; a multivariable logistic regression of malignancy on the CNN output,
age, sex and size.

Inputs: for each phase, a lesion-centred CT region (the box a reader places around the mass, the mass at its centre),
the four over the same region. Phases on other grids than the corticomedullary phase's (other slice thickness, pixel
size, extent or axis order: as scanners store the phases of one examination) are brought onto it by their physical
coordinates (:func:`oncolabel.imaging.align_onto`; named in the result's warnings); a phase that does not cover that
region is refused. Nothing is registered: the phases are assumed to share the scanner's frame.

The network (:class:`oncolabel.networks.InceptionV3` with four branches, width 1/8: one independent Inception-v3 per
phase, trained from scratch) sees, per phase, the central slice and one neighbour each side (three channels) over the
central 64 mm, resampled to 128 x 128 pixels (0.5 mm), window -150..350 HU. Measured on 150 training / 50 validation
phantom cases (300 iterations): 96 px and torchvision's N(0, 0.1) initialisation left the narrow trunks near chance
(validation AUC 0.58-0.60); 128 px with He initialisation and no dropout reached 0.71 (``docs/classifiers.md``).

The reported probability is a logistic stacking fitted on out-of-fold predictions (calibrated) of the four phases'
margins and six measurements of the mass (:mod:`oncolabel.features.renal`, no contour needed: unenhanced attenuation,
enhancement per phase relative to the renal cortex, central deficit, cross-phase texture), quadratic in the
measurements (their squares and products: the benign/malignant boundary over four subtypes is curved), L2 penalty
``1 / 0.1``. Per-phase calibrated probabilities are reported too. With age, sex and size given, the multivariable
model is used. A case whose mass cannot be measured is scored by the stacking of the margins alone (the reason is
in the output). A missing phase is an error unless ``allow_missing`` is set: the stacking model fitted on exactly
the available phases is then used (documented fallback, recorded in the output).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import SimpleITK as sitk
import torch

from oncolabel.classification import ClassificationPostprocessing, ClassifierPreprocessing, Prepared
from oncolabel.errors import InvalidInputError, OncoLabelError
from oncolabel.features.renal import PHASES, RENAL_MEASUREMENT_NAMES, measure_renal_mass
from oncolabel.imaging import (align_onto, centred_grid, check_covers, check_hounsfield, map_to_image, region_centre,
                               resample_onto)
from oncolabel.io import read_image, require_3d, same_geometry
from oncolabel.tasks.base import NetworkSpec, TaskSpec, TrainingSpec, register_task
from oncolabel.transforms import AxisOrientation

#: short names accepted for phase files (``case_cm.nii.gz`` ...)
PHASE_ALIASES = {"unenhanced": ("unenhanced", "ue", "nc", "noncontrast", "native", "plain"),
                 "corticomedullary": ("corticomedullary", "cm", "arterial", "art"),
                 "nephrographic": ("nephrographic", "ng", "nephro", "portal", "pv", "venous"),
                 "excretory": ("excretory", "ex", "delayed", "urographic")}


def phase_in_words(text: str) -> str | None:
    """The phase a name or description refers to by its words (:data:`PHASE_ALIASES`; "non contrast" and
    "pre-contrast" count as one word), or None when it names none or several."""
    text = re.sub(r"\b(non|pre)[\s_\-]*contrast\b", "noncontrast", text.lower())
    words = set(re.split(r"[^a-z0-9]+", text))
    hits = {phase for phase, aliases in PHASE_ALIASES.items() if words & set(aliases)}
    return hits.pop() if len(hits) == 1 else None


def phase_of(path: str | Path) -> str | None:
    """The phase a file or folder name refers to (:func:`phase_in_words`), or None."""
    from oncolabel.io import case_id_of

    return phase_in_words(case_id_of(path))


def described_phase_of(path: str | Path) -> tuple[str | None, str | None]:
    """The phase a series' description names (:func:`phase_in_words`) and that description: for a folder holding
    one DICOM series its SeriesDescription (and ProtocolName), for an image file of a ``pacs-import`` folder the
    description its ``pacs_series.json`` records; ``(None, None)`` for anything else."""
    p = Path(path)
    if not p.is_dir():
        from oncolabel.pacs import FolderStore

        text = FolderStore.recorded_description(p)
        return (phase_in_words(text), text) if text else (None, None)
    import pydicom

    from oncolabel.io import dicom_series_files

    try:
        header = pydicom.dcmread(dicom_series_files(p)[0], stop_before_pixels=True)
    except (OncoLabelError, OSError, pydicom.errors.InvalidDicomError):
        return None, None
    text = " ".join(str(header.get(k, "") or "") for k in ("SeriesDescription", "ProtocolName")).strip()
    return phase_in_words(text), text or None


def resolve_phase_inputs(paths: Sequence[str | Path]) -> dict[str, Path]:
    """Phase -> input path from one folder of phase files / DICOM folders, or from up to four paths.

    Names are matched to phases by their words (``case_cm.nii.gz``, ``corticomedullary/``, ``UE.nrrd``), an input whose
    name says nothing by its series description (:func:`described_phase_of`: a DICOM folder's SeriesDescription,
    ``Arterial 1.0 B30f``, ``Non contrast``, or the one a ``pacs-import`` recorded); a folder holding a DICOMDIR (a CD
    export) stands for the folders of the series it lists; in a folder, entries naming no phase (a mask, notes) are
    ignored once any entry names one. Four paths given one by one, none of which says its phase, are taken in the order
    unenhanced, corticomedullary, nephrographic, excretory; a folder's entries never are (their listing order says
    nothing about the phases: four series folders named by UID were taken in UID order). Phases not found are absent
    from the result (the caller decides whether that is an error).

    Raises:
        InvalidInputError: a path does not exist, two inputs claim one phase, or unnamed inputs cannot be ordered.
    """
    from oncolabel.io import dicomdir_of, dicomdir_series_folders, image_suffix

    items = [Path(p) for p in paths]
    for p in items:
        if not p.exists():
            raise InvalidInputError(f"{p}: no such file or folder")
    folder = None
    if len(items) == 1 and items[0].is_dir() and phase_of(items[0]) is None and not described_phase_of(items[0])[1]:
        folder = items[0]
        if dicomdir_of(folder) is not None:  # a CD/DVD export: its series' folders, told by their descriptions
            items = dicomdir_series_folders(folder)
        else:
            items = sorted(c for c in folder.iterdir() if not c.name.startswith(".")
                           and ((c.is_file() and image_suffix(c)) or c.is_dir()))
        if not items:
            raise InvalidInputError(f"{folder}: holds no image files or DICOM folders for the four phases")
    described = {p: described_phase_of(p) if phase_of(p) is None else (None, None) for p in items}
    named = {p: phase_of(p) or described[p][0] for p in items}
    if folder is not None and any(named.values()):  # other files in the folder (a mask, notes) are ignored
        items = [p for p in items if named[p]]
        named = {p: named[p] for p in items}
    if not any(named.values()):
        if folder is not None:
            what = ", ".join(p.name + (f" (series {described[p][1]!r})" if described[p][1] else "") for p in items)
            raise InvalidInputError(f"cannot tell the phases of the entries of {folder}: {what}; name the files or "
                                    f"folders after their phase ({', '.join(PHASES)}, or UE/CM/NG/EX): their order "
                                    "in a folder says nothing about the phases")
        if len(items) != len(PHASES):
            raise InvalidInputError(f"cannot tell the phases of {[p.name for p in items]}: name the files after their "
                                    f"phase ({', '.join(PHASES)}, or UE/CM/NG/EX) or give exactly four in that order")
        return dict(zip(PHASES, items))
    unnamed = [p.name for p, ph in named.items() if ph is None]
    if unnamed:
        raise InvalidInputError(f"cannot tell the phase of {unnamed}; name every input after its phase "
                                f"({', '.join(PHASES)}, or UE/CM/NG/EX)")
    out: dict[str, Path] = {}
    for p, ph in named.items():
        if ph in out:
            a, b = (q.name + (f" (series {described[q][1]!r})" if described[q][1] else "") for q in (out[ph], p))
            raise InvalidInputError(f"two inputs for the {ph} phase: {a} and {b}"
                                    + ("; give the four phases one by one" if folder is not None else ""))
        out[ph] = p
    return out


@dataclass(frozen=True)
class RenalPhasesPreprocessing(ClassifierPreprocessing):
    """Four lesion-centred CT phases -> ``(4 * (2 context + 1), size, size)`` tensor, and back.

    The working grid is centred on the reference phase (:meth:`reference_phase`: the corticomedullary one when
    given); each phase is sampled onto it from its own grid by physical coordinates.

    Attributes:
        hu_low, hu_high: window (HU) mapped to [0, 1].
        size: working pixels per side (>= 75 for Inception-v3).
        fov_mm: side of the central square resampled to ``size`` pixels.
        context: neighbouring slices each side of the central slice (channels per phase: ``2 context + 1``).
    """

    hu_low: float = -150.0
    hu_high: float = 350.0
    size: int = 128
    fov_mm: float = 64.0
    context: int = 1

    inputs: ClassVar[tuple[str, ...]] = PHASES
    branch_names: ClassVar[tuple[str, ...]] = PHASES
    primary_input: ClassVar[str] = "corticomedullary"
    measurement_names: ClassVar[tuple[str, ...]] = RENAL_MEASUREMENT_NAMES

    @property
    def in_channels(self) -> int:
        return len(PHASES) * (2 * self.context + 1)

    def read(self, item: Mapping[str, Any]) -> dict[str, sitk.Image]:
        missing = [p for p in PHASES if not item.get(p)]
        if missing:
            raise InvalidInputError(f"renal-mass item lacks phase(s) {', '.join(missing)}")
        return {p: read_image(item[p]) for p in PHASES}

    def _grid(self, image: sitk.Image) -> sitk.Image:
        centre = region_centre(image)
        sp = self.fov_mm / self.size
        slice_mm = AxisOrientation.of_image(image).spacing_zyx(image)[0]
        return centred_grid(image, centre, (self.size, self.size, 2 * self.context + 1), (sp, sp, slice_mm))

    def prepare(self, images: Mapping[str, sitk.Image], *, allow_missing: bool = False) -> Prepared:
        unknown = sorted(set(images) - set(PHASES))
        if unknown:
            raise InvalidInputError(f"unknown phase name(s) {unknown}; expected {', '.join(PHASES)}")
        missing = tuple(p for p in PHASES if images.get(p) is None)
        if missing and not allow_missing:
            raise InvalidInputError(f"missing CT phase(s): {', '.join(missing)}; all four phases ({', '.join(PHASES)}) "
                                    "are required (or allow missing phases to use the model of the available ones)")
        if len(missing) == len(PHASES):
            raise InvalidInputError("no CT phase given")
        present = {p: require_3d(images[p], what=f"{p} phase", min_slices=1) for p in PHASES if p not in missing}
        for p, img in present.items():  # perirenal fat lies in every lesion-centred crop
            check_hounsfield(sitk.GetArrayViewFromImage(img), what=f"{p} phase")
        ref_name = self.reference_phase(present)
        other_grids = [p for p, img in present.items() if not same_geometry(present[ref_name], img)]
        for p in other_grids:
            check_covers(present[ref_name], present[p], what=f"the {p} phase", reference_what=f"{ref_name} phase")
        grid = self._grid(present[ref_name])
        k = 2 * self.context + 1
        x = torch.zeros((len(PHASES) * k, self.size, self.size), dtype=torch.float32)
        for i, p in enumerate(PHASES):
            if p in present:
                arr = resample_onto(present[p], grid, default=self.hu_low)
                x[i * k:(i + 1) * k] = torch.from_numpy((np.clip(arr, self.hu_low, self.hu_high) - self.hu_low)
                                                        / (self.hu_high - self.hu_low))
        return Prepared(tensor=x, images=dict(present), context={"grid": grid}, missing=missing,
                        warnings=(self._resampled_warning(present, other_grids, ref_name),) if other_grids else ())

    @staticmethod
    def reference_phase(present: Mapping[str, Any]) -> str:
        """The phase whose grid the others are brought onto: the corticomedullary phase (the study's best), else
        the first present in :data:`PHASES` order."""
        primary = RenalPhasesPreprocessing.primary_input
        return primary if present.get(primary) is not None else next(p for p in PHASES if present.get(p) is not None)

    @staticmethod
    def _resampled_warning(images: Mapping[str, sitk.Image], phases: Sequence[str], ref_name: str) -> str:
        centre = region_centre(images[ref_name])
        apart = ", ".join(f"{p} {np.linalg.norm(region_centre(images[p]) - centre):.1f} mm" for p in phases)
        return (f"{', '.join(phases)} phase{'s' if len(phases) > 1 else ''} on another grid than the {ref_name} "
                "phase: resampled onto it by physical coordinates (linear), not registered; the texture measurement "
                "assumes the phases aligned to well under 1.5 mm and the same noise in each (resampling smooths it); "
                f"regions' centres apart from the {ref_name} phase's: {apart} (crop every phase with one box)")

    def measure(self, images: Mapping[str, sitk.Image]) -> dict[str, float]:
        """The mass's four-phase measurements (:mod:`oncolabel.features.renal`: attenuation, enhancement relative to
        the renal cortex, central deficit, noise-referenced texture); all four phases are needed. Phases on other
        grids are first resampled onto the reference phase's (:func:`oncolabel.imaging.align_onto`)."""
        missing = [p for p in PHASES if images.get(p) is None]
        if missing:
            raise InvalidInputError(f"renal-mass measurements need all four phases; missing {', '.join(missing)}")
        ref_name = self.reference_phase(images)
        ref = images[ref_name]
        return measure_renal_mass({p: align_onto(ref, images[p], what=f"the {p} phase",
                                                 reference_what=f"{ref_name} phase") for p in PHASES})

    def heatmap(self, cam: np.ndarray, prepared: Prepared) -> dict[str, sitk.Image]:
        grid = prepared.context["grid"]
        vol = np.repeat(np.asarray(cam, dtype=np.float32)[None], grid.GetSize()[2], axis=0)
        return {p: map_to_image(vol, grid, img) for p, img in prepared.images.items()}

    def augment(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Random flips and 90-degree rotations (same for every phase), small Gaussian noise."""
        if rng.random() < 0.5:
            x = torch.flip(x, (-1,))
        if rng.random() < 0.5:
            x = torch.flip(x, (-2,))
        x = torch.rot90(x, int(rng.integers(4)), (-2, -1))
        return x + float(rng.uniform(0.0, 0.01)) * torch.randn_like(x)


PREPROCESSING = RenalPhasesPreprocessing()


@register_task("renal_mass")
def renal_mass_spec() -> TaskSpec:
    return TaskSpec(
        name="renal_mass",
        cli_name="renal-mass",
        kind="classification",
        description="Small solid renal mass, benign vs malignant, on four-phase CT (Inception-v3 per phase). "
                    "Research use only.",
        labels={"benign": 0, "malignant": 1},
        network=NetworkSpec("InceptionV3", {"spatial_dims": 2, "in_channels": PREPROCESSING.in_channels,
                                            "out_channels": 2, "width": 0.125, "branches": len(PHASES),
                                            "dropout": 0.0, "cam_layer": "Mixed_5d", "init": "kaiming"}),
        preprocessing=PREPROCESSING,
        training=TrainingSpec(max_iterations=500, batch_size=16, learning_rate=2e-3, weight_decay=1e-4,
                              validate_every=200, finetune_iterations=60, finetune_learning_rate=2e-4),
        postprocessing=ClassificationPostprocessing(head="stacking", covariates=("age", "sex_male", "size_mm"),
                                                    covariate_ranges=(("age", 0.0, 120.0), ("sex_male", 0.0, 1.0),
                                                                      ("size_mm", 1.0, 300.0)),
                                                    measurements=RENAL_MEASUREMENT_NAMES, quadratic_measurements=True,
                                                    measurement_c=0.1),
        default_model="renal_mass.pt",
    )
