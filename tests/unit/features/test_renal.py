"""Four-phase renal-mass measurements: known answers on a drawn mass, agreement with the renal phantom's own traits,
refusals, and a mass implanted into a real CT's kidney."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from oncolabel.errors import GeometryError, InvalidInputError
from oncolabel.features.renal import (PHASES, RENAL_MEASUREMENT_NAMES, RenalMeasurementError, mass_radius,
                                      measure_renal_mass, renal_mass_measurements)

SPACING = (2.5, 0.7, 0.7)  # z, y, x in mm
RISE = {"corticomedullary": 100.0, "nephrographic": 70.0, "excretory": 40.0}
CORTEX_RISE = 140.0


def drawn_mass(*, radius_mm: float = 12.0, texture_sd: float = 12.0, noise_sd: float = 10.0, central: bool = False,
               seed: int = 0) -> dict[str, np.ndarray]:
    """A sphere of 35 HU unenhanced rising by RISE per phase, in fat, touching a slab of renal cortex (30 HU rising by
    CORTEX_RISE); a white enhancement texture of ``texture_sd`` HU at the peak phase, scaled by each phase's rise and
    shared by the phases; independent white noise of ``noise_sd`` per phase; optionally a non-enhancing centre."""
    rng = np.random.default_rng(seed)
    shape = (7, 96, 96)
    z, y, x = np.indices(shape, dtype=np.float64)
    zc, yc, xc = [(n - 1) / 2 for n in shape]
    rho = np.sqrt(((z - zc) * SPACING[0]) ** 2 + ((y - yc) * SPACING[1]) ** 2 + ((x - xc) * SPACING[2]) ** 2)
    mass = rho <= radius_mm
    centre = rho < 0.45 * radius_mm
    cortex = ((x - xc) * SPACING[2] > 0.3 * radius_mm) & ~mass
    texture = rng.standard_normal(shape)
    peak = max(RISE.values())
    out = {}
    for phase in PHASES:
        rise = RISE.get(phase, 0.0)
        img = np.full(shape, -100.0)
        img[cortex] = 30.0 + (CORTEX_RISE if phase == "corticomedullary" else 0.8 * CORTEX_RISE if rise else 0.0)
        lesion = 35.0 + rise + texture_sd * rise / peak * texture
        if central:
            lesion = np.where(centre, 35.0, lesion)
        img[mass] = lesion[mass]
        out[phase] = img + noise_sd * rng.standard_normal(shape)
    return out


def test_known_answers_on_a_drawn_mass():
    m = renal_mass_measurements(drawn_mass(), SPACING)
    assert set(RENAL_MEASUREMENT_NAMES) <= set(m)
    assert m["diameter_mm"] == pytest.approx(24.0, abs=1.5)
    assert m["unenhanced_hu"] == pytest.approx(35.0, abs=2.0)
    for phase, rise in RISE.items():
        assert m[f"enhancement_{phase}_hu"] == pytest.approx(rise, abs=3.0)
        assert m[f"relative_enhancement_{phase}"] == pytest.approx(rise / CORTEX_RISE, abs=0.03)
    assert m["cortex_enhancement_hu"] == pytest.approx(CORTEX_RISE, abs=3.0)
    assert m["noise_sd_hu"] == pytest.approx(10.0, rel=0.1)
    assert m["log_heterogeneity"] == pytest.approx(math.log(12.0), abs=0.1)
    assert abs(m["central_deficit"]) < 0.15


def test_the_texture_is_told_from_the_noise_and_the_centre_from_the_wall():
    """More noise does not raise the texture estimate (the noise is measured in the same voxels on the unenhanced
    phase); a smooth mass reads as no texture; a non-enhancing centre gives a deficit near 1 and leaves the wall's
    enhancement as it was."""
    quiet = renal_mass_measurements(drawn_mass(noise_sd=5.0, seed=1), SPACING)
    noisy = renal_mass_measurements(drawn_mass(noise_sd=20.0, seed=1), SPACING)
    assert noisy["log_heterogeneity"] == pytest.approx(quiet["log_heterogeneity"], abs=0.15)
    smooth = renal_mass_measurements(drawn_mass(texture_sd=0.0, noise_sd=15.0, seed=2), SPACING)
    assert smooth["log_heterogeneity"] < 1.0  # variance at most ~e^2 HU^2: noise, not texture
    central = renal_mass_measurements(drawn_mass(central=True, seed=3), SPACING)
    assert central["central_deficit"] > 0.8
    assert central["relative_enhancement_corticomedullary"] == pytest.approx(100.0 / CORTEX_RISE, abs=0.05)
    assert central["log_heterogeneity"] == pytest.approx(math.log(12.0), abs=0.15)


def test_refusals_name_the_problem():
    mass = drawn_mass()
    with pytest.raises(InvalidInputError, match="missing excretory"):
        renal_mass_measurements({k: v for k, v in mass.items() if k != "excretory"}, SPACING)
    with pytest.raises(InvalidInputError, match="one shape"):
        renal_mass_measurements({**mass, "excretory": mass["excretory"][:, :50]}, SPACING)
    with pytest.raises(RenalMeasurementError, match="too small"):
        renal_mass_measurements({k: v[:, 40:50, 40:50] for k, v in mass.items()}, SPACING)
    flat = {p: mass["unenhanced"] for p in PHASES}  # one phase four times: no enhancing cortex
    with pytest.raises(RenalMeasurementError, match="no renal cortex"):
        renal_mass_measurements(flat, SPACING)
    with pytest.raises(RenalMeasurementError, match="no edge"):
        renal_mass_measurements({p: np.zeros((5, 96, 96)) for p in PHASES}, SPACING)
    images = {p: sitk.GetImageFromArray(v.astype(np.float32)) for p, v in mass.items()}
    images["nephrographic"].SetOrigin((0.0, 5.0, 0.0))
    with pytest.raises(GeometryError, match="co-registered"):
        measure_renal_mass(images)


def test_measurements_agree_with_the_phantoms_traits():
    """20 renal phantoms (generator's own draws): the radius within 1.5 mm, the enhancement per phase and the
    unenhanced attenuation closely, the central area recognised, the texture correlated with its trait."""
    from oncolabel.phantoms.renal_mass import generate_renal_mass_case

    rows = []
    for i in range(20):
        case = generate_renal_mass_case(np.random.SeedSequence(8, spawn_key=(i,)))
        m = measure_renal_mass({p: case.images[p] for p in PHASES})
        rows.append((m, case.traits))
    d_err = [abs(m["diameter_mm"] - t["diameter_mm"]) for m, t in rows]
    assert max(d_err) < 3.0 and np.median(d_err) < 1.0

    def r(name: str, trait) -> float:
        return float(np.corrcoef([m[name] for m, _ in rows], [trait(t) for _, t in rows])[0, 1])

    assert r("unenhanced_hu", lambda t: t["unenhanced_hu"]) > 0.9
    for phase in PHASES[1:]:
        assert r(f"relative_enhancement_{phase}", lambda t, p=phase: t["enhancement_hu"][p]) > 0.95
    assert r("log_heterogeneity", lambda t: t["log_heterogeneity"]) > 0.5
    agree = [(m["central_deficit"] > 0.5) == t["central_area"] for m, t in rows]
    assert sum(agree) >= 18


def test_radius_search_is_bounded_by_the_region():
    mass = drawn_mass(radius_mm=6.0)
    assert mass_radius(mass, SPACING) == pytest.approx(6.0, abs=1.0)


def test_a_mass_implanted_into_a_real_kidney():
    """TotalSegmentator's real unenhanced CT (3 mm): the left kidney enhanced by a known rise in three synthetic
    contrast phases, a 24 mm mass implanted at the kidney's edge; the real surroundings (fat, bowel, spine, the real
    noise) around it. The diameter, attenuation and relative enhancement are read back; the real region without the
    mass, given as all four phases, is refused with the reason."""
    from scipy import ndimage

    from tests.conftest import realdata

    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(realdata("totalsegmentator", "example_ct.nii.gz"))))
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(realdata("totalsegmentator", "example_seg.nii.gz"))))
    kidney = seg == 3  # kidney_left (label_map_total_v2.json)
    zc, yc, xc = (int(round(c)) for c in ndimage.center_of_mass(kidney))
    lateral = np.flatnonzero(kidney[zc, yc])  # the mass sits on the kidney's edge in its central slice row
    xc = int(lateral.max())
    box = (slice(zc - 4, zc + 5), slice(yc - 11, yc + 12), slice(xc - 11, xc + 12))
    spacing = (3.0, 3.0, 3.0)
    z, y, x = np.indices(ct[box].shape, dtype=np.float64)
    rho = 3.0 * np.sqrt((z - 4) ** 2 + (y - 11) ** 2 + (x - 11) ** 2)
    mass = rho <= 12.0
    rng = np.random.default_rng(0)
    phases = {}
    for phase, kidney_rise, mass_rise in (("unenhanced", 0, 0), ("corticomedullary", 140, 90),
                                          ("nephrographic", 120, 60), ("excretory", 90, 40)):
        img = ct[box].astype(np.float64) + kidney_rise * kidney[box]
        img[mass] = 38.0 + mass_rise + 8.0 * rng.standard_normal(int(mass.sum()))
        phases[phase] = img
    m = renal_mass_measurements(phases, spacing)
    assert all(np.isfinite(m[k]) for k in RENAL_MEASUREMENT_NAMES)
    assert m["diameter_mm"] == pytest.approx(24.0, abs=3.0)
    assert m["unenhanced_hu"] == pytest.approx(38.0, abs=4.0)
    assert m["relative_enhancement_corticomedullary"] == pytest.approx(90.0 / 140.0, abs=0.1)
    assert m["relative_enhancement_excretory"] < m["relative_enhancement_corticomedullary"]  # washout
    with pytest.raises(RenalMeasurementError, match="renal cortex|too few voxels"):  # no mass there either
        renal_mass_measurements({p: ct[box].astype(np.float64) for p in PHASES}, spacing)


def test_phases_stored_with_other_axes_get_the_same_measurements():
    """The mass's radial edge and texture are measured in axial planes: phases stored as coronal slices (or with
    flipped axes) are measured along the patient's axes, not the file's."""
    from oncolabel.phantoms.renal_mass import generate_renal_mass_case

    case = generate_renal_mass_case(np.random.SeedSequence(8, spawn_key=(3,)))
    ref = measure_renal_mass({p: case.images[p] for p in PHASES})
    for order in ("SLP", "RAS"):
        got = measure_renal_mass({p: sitk.DICOMOrient(case.images[p], order) for p in PHASES})
        assert got == pytest.approx(ref, rel=1e-6, abs=1e-9), order
