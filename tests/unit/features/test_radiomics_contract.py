"""The extract_radiomics contract: names, provenance, strict errors, no logging set-up at import."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from oncolabel.errors import GeometryError, InvalidInputError
from oncolabel.features import RadiomicsError, extract_radiomics, extract_radiomics_with_provenance
from oncolabel.phantoms.pannet import PannetPhantomConfig, case_seed, generate_pannet_case

PARAMS = {"setting": {"binWidth": 25, "label": 1, "resampledPixelSpacing": [1.0, 1.0, 1.0],
                      "interpolator": "sitkBSpline"},
          "imageType": {"Original": {}}, "featureClass": {"firstorder": ["Mean", "Entropy"], "shape": ["VoxelVolume"]}}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    c = generate_pannet_case(case_seed(5, 0), config=PannetPhantomConfig(centre="A"))
    root = tmp_path_factory.mktemp("rad")
    ip, lp = root / "ct.nii.gz", root / "mask.nii.gz"
    sitk.WriteImage(c.image, str(ip))
    sitk.WriteImage(c.label, str(lp))
    return ip, lp, c


def test_values_names_and_provenance(case, tmp_path):
    ip, lp, c = case
    res = extract_radiomics_with_provenance(ip, lp, PARAMS)
    assert set(res.values) == {"original_firstorder_Mean", "original_firstorder_Entropy", "original_shape_VoxelVolume"}
    assert all(isinstance(v, float) and np.isfinite(v) for v in res.values.values())
    img = sitk.GetArrayFromImage(c.image)
    # 1 mm resampling moves the mean a little; it stays an enhancing soft-tissue value
    assert 60 < res.values["original_firstorder_Mean"] < 320
    p = res.provenance
    assert p["notice"].startswith("research use only")
    assert p["software"]["pyradiomics"] and p["settings"]["binWidth"] == 25
    assert p["image"]["sha256"] and p["features"]["firstorder"] == ["Mean", "Entropy"]
    assert any(k.startswith("diagnostics_") for k in p["diagnostics"])
    # a YAML file and SimpleITK images give the same numbers
    yml = tmp_path / "p.yaml"
    yml.write_text(yaml.safe_dump(PARAMS))
    assert extract_radiomics(sitk.ReadImage(str(ip)), sitk.ReadImage(str(lp)), yml) == res.values
    assert img.shape == sitk.GetArrayFromImage(sitk.ReadImage(str(ip))).shape


def test_bad_inputs_raise(case, tmp_path):
    ip, lp, c = case
    empty = sitk.Image(c.label.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(c.label)
    with pytest.raises(InvalidInputError, match="no voxel with label 1"):
        extract_radiomics(ip, empty, PARAMS)
    shifted = sitk.Image(c.label)
    shifted.SetOrigin([o + 5.0 for o in c.label.GetOrigin()])
    with pytest.raises(GeometryError, match="origin"):
        extract_radiomics(ip, shifted, PARAMS)
    with pytest.raises(InvalidInputError, match="unknown radiomics parameter section"):
        extract_radiomics(ip, lp, {**PARAMS, "settings": {}})
    with pytest.raises(InvalidInputError, match="does not exist"):
        extract_radiomics(ip, lp, tmp_path / "missing.yaml")
    with pytest.raises(InvalidInputError, match="pyradiomics rejected"):
        extract_radiomics(ip, lp, {"setting": {"binWidth": "wide"}, "featureClass": {"firstorder": []}})


def test_a_failed_feature_is_an_error_not_nan(case, monkeypatch):
    from radiomics import firstorder

    def boom(self):
        raise ArithmeticError("simulated failure")

    monkeypatch.setattr(firstorder.RadiomicsFirstOrder, "getMeanFeatureValue", boom)
    ip, lp, _ = case
    with pytest.raises(RadiomicsError, match="simulated failure"):
        extract_radiomics(ip, lp, PARAMS)


def test_pyradiomics_logger_is_restored(case):
    logger = logging.getLogger("radiomics")
    before = (logger.level, list(logger.handlers))
    extract_radiomics(case[0], case[1], PARAMS)
    assert (logger.level, list(logger.handlers)) == before


def test_importing_features_does_not_import_pyradiomics():
    code = "import sys, oncolabel.features, oncolabel.scoring; print('radiomics' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
