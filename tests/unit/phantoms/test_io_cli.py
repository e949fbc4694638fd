"""Files on disk: layout, geometry, checksums, the CLI, and refusals of bad parameters."""

from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from oncolabel.cli import main
from oncolabel.errors import InvalidInputError
from oncolabel.phantoms import (
    BoneMetastasisPhantomConfig, generate_bone_metastasis_case, read_lesion_record, read_manifest, verify_cohort,
    write_bone_metastasis_cohort,
)
from oncolabel.provenance import file_sha256


def test_write_cohort_layout_and_manifest(tmp_path, small_config):
    paths = write_bone_metastasis_cohort(tmp_path, 3, 17, config=small_config)
    assert [p.name for p in paths] == [f"bm_s17_{i:04d}.nii.gz" for i in range(3)]
    man = read_manifest(tmp_path)
    assert man["seed"] == 17 and man["n"] == 3 and man["generator"]["version"]
    assert man["settings"]["matrix"] == 128 and "software" in man
    for entry in man["cases"]:
        for info in entry["files"].values():
            assert file_sha256(tmp_path / info["path"]) == info["sha256"]
    assert verify_cohort(tmp_path) == []
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    rec = json.loads((tmp_path / "lesions" / "bm_s17_0001.json").read_text())
    assert set(rec) >= {"case_id", "meta", "lesions", "hard_negatives"}
    assert read_lesion_record(tmp_path, "bm_s17_0001") == rec
    with pytest.raises(InvalidInputError, match="no lesion record for case 'bm_s17_0009'"):
        read_lesion_record(tmp_path, "bm_s17_0009")
    with pytest.raises(InvalidInputError, match="case id"):
        read_lesion_record(tmp_path, "../lesions/bm_s17_0001")
    (tmp_path / "lesions" / "bm_s17_0007.json").write_text("{not json")
    with pytest.raises(InvalidInputError, match="bm_s17_0007.json' is not valid JSON"):
        read_lesion_record(tmp_path, "bm_s17_0007")
    (tmp_path / "labels" / "bm_s17_0000.nii.gz").write_bytes(b"corrupt")
    assert verify_cohort(tmp_path) == ["labels/bm_s17_0000.nii.gz"]


def test_case_i_independent_of_n(tmp_path, small_config):
    write_bone_metastasis_cohort(tmp_path / "a", 2, 9, config=small_config)
    write_bone_metastasis_cohort(tmp_path / "b", 4, 9, config=small_config)
    for sub in ("images", "labels"):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "a" / sub / "bm_s9_0001.nii.gz")))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "b" / sub / "bm_s9_0001.nii.gz")))
        np.testing.assert_array_equal(a, b)


def test_geometry_identical_and_ras_consistent(tmp_path, small_config):
    case = generate_bone_metastasis_case(6, config=small_config)
    img, lab = case.image, case.label
    assert img.GetPixelID() == sitk.sitkInt16 and lab.GetPixelID() == sitk.sitkUInt8
    for f in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(img, f)() == getattr(lab, f)()
    assert img.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    sx, sy, sz = img.GetSpacing()
    assert 0.6 * 512 / 128 - 1e-6 <= sx == sy <= 0.9 * 512 / 128 + 1e-6 and sz == 5.0
    path = tmp_path / "x.nii.gz"
    sitk.WriteImage(img, str(path))
    aff = nib.load(str(path)).affine
    # RAS = diag(-1, -1, 1) @ LPS
    ox, oy, oz = img.GetOrigin()
    np.testing.assert_allclose(aff[:3, 3], [-ox, -oy, oz], atol=1e-3)
    np.testing.assert_allclose(np.diag(aff)[:3], [-sx, -sy, sz], atol=1e-5)
    back = sitk.ReadImage(str(path))
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-4)
    # anterior at row 0: the vertebral bodies lie posterior to the body centre
    meta = case.meta
    assert meta["size"] == list(img.GetSize()) and meta["origin"] == pytest.approx(list(img.GetOrigin()), abs=1e-3)


def test_cli_writes_layout(tmp_path, capsys):
    out = tmp_path / "cohort"
    rc = main(["phantoms", "bone-metastasis", "--n", "2", "--out", str(out), "--seed", "3", "--matrix", "96",
               "--thickness", "5", "--z-mm", "60", "--lesion-free-fraction", "0.5", "--write-tissue"])
    assert rc == 0
    assert "wrote 2 cases" in capsys.readouterr().out
    for sub in ("images", "labels", "lesions", "tissue"):
        assert len(list((out / sub).iterdir())) == 2
    man = read_manifest(out)
    assert man["settings"]["lesion_free_fraction"] == 0.5 and man["settings"]["z_mm"] == [60.0, 60.0]
    img = sitk.ReadImage(str(out / "images" / "bm_s3_0000.nii.gz"))
    assert img.GetSize()[:2] == (96, 96) and img.GetSize()[2] == 12


def test_a_folder_holding_another_cohort_is_refused(tmp_path, small_config, capsys):
    """A cohort written into a folder that holds another one replaced its manifest (the record of its cases and
    their checksums); the same cohort written again is allowed (deterministic: the same files)."""
    write_bone_metastasis_cohort(tmp_path, 2, 17, config=small_config)
    before = (tmp_path / "manifest.json").read_text()
    with pytest.raises(InvalidInputError, match=r"another cohort \(.*bone_metastasis, seed 17, 2 cases\)"):
        write_bone_metastasis_cohort(tmp_path, 2, 18, config=small_config)
    with pytest.raises(InvalidInputError, match="already holds another cohort"):
        write_bone_metastasis_cohort(tmp_path, 3, 17, config=small_config)
    assert (tmp_path / "manifest.json").read_text() == before
    assert not (tmp_path / "images" / "bm_s18_0000.nii.gz").exists()
    write_bone_metastasis_cohort(tmp_path, 2, 17, config=small_config)  # the same cohort again
    assert verify_cohort(tmp_path) == []
    renal = tmp_path / "renal"
    assert main(["phantoms", "renal-mass", "--n", "2", "--seed", "3", "--out", str(renal)]) == 0
    capsys.readouterr()
    assert main(["phantoms", "renal-mass", "--n", "2", "--seed", "4", "--out", str(renal)]) == 1
    assert "already holds another cohort" in capsys.readouterr().err
    assert read_manifest(renal)["seed"] == 3 and not (renal / "cases" / "rm_s4_0000").exists()


def test_cli_bad_parameter_exit_code(tmp_path, capsys):
    rc = main(["phantoms", "bone-metastasis", "--n", "1", "--out", str(tmp_path), "--seed", "-1"])
    assert rc == 1
    assert "seed" in capsys.readouterr().err


@pytest.mark.parametrize("changes", [
    {"matrix": 8}, {"thickness_mm": ()}, {"thickness_mm": (20.0,)}, {"z_mm": (100.0, 50.0)},
    {"z_regions": ("head",)}, {"lesion_free_fraction": 1.5}, {"max_lesions": -1}, {"noise_sd_hu": (-1.0, 5.0)},
    {"lesion_diameter_mm": (1.0, 40.0)}, {"lesion_type_weights": (0.0, 0.0, 0.0)}, {"spacing_mm": 0.1},
])
def test_bad_config_raises(changes):
    with pytest.raises(InvalidInputError):
        dataclasses.replace(BoneMetastasisPhantomConfig(), **changes)


@pytest.mark.parametrize("kwargs", [{"seed": -3}, {"seed": 1.5}, {"seed": True}, {"seed": 1, "case_id": "a/b"},
                                    {"seed": 1, "config": {"matrix": 64}}])
def test_bad_arguments_raise(kwargs):
    seed = kwargs.pop("seed")
    with pytest.raises(InvalidInputError):
        generate_bone_metastasis_case(seed, **kwargs)


def test_bad_cohort_arguments(tmp_path):
    with pytest.raises(InvalidInputError):
        write_bone_metastasis_cohort(tmp_path, 0, 1)
    with pytest.raises(InvalidInputError):
        write_bone_metastasis_cohort(tmp_path, 2, -1)
