"""extract_radiomics reproduces pyradiomics' own baseline values (brain1, lung1; four configurations).

The settings come from the baseline CSVs themselves (row ``diagnostics_Configuration_Settings`` and
``diagnostics_Configuration_EnabledImageTypes``); every feature class with a baseline for that configuration is
extracted in one call (the recorded settings are identical across classes; checked) and each value must agree
within 1e-3 relative. Data: ../shared/realdata/pyradiomics (never copied into the repository).
"""

from __future__ import annotations

import ast
import csv

import pytest
import SimpleITK as sitk

from oncolabel.features import extract_radiomics
from tests.conftest import realdata

CLASSES = ("firstorder", "glcm", "gldm", "glrlm", "glszm", "ngtdm", "shape")
CONFIGS = ("", "_normalization", "_resampling", "_resegmentation")
REL_TOL = 1e-3


@pytest.fixture(scope="module")
def baseline():
    root = realdata("pyradiomics", "baseline")
    tables = {}
    for cls in CLASSES:
        with open(root / f"baseline_{cls}.csv", newline="") as fh:
            rows = list(csv.reader(fh))
        tables[cls] = {r[0]: dict(zip(rows[0][1:], r[1:])) for r in rows[1:]}
    return tables


@pytest.fixture(scope="module")
def images():
    root = realdata("pyradiomics")
    return {case: (sitk.ReadImage(str(root / f"{case}_image.nrrd")), sitk.ReadImage(str(root / f"{case}_label.nrrd")))
            for case in ("brain1", "lung1")}


@pytest.mark.parametrize("case", ["brain1", "lung1"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c or "plain")
def test_reproduces_pyradiomics_baseline(baseline, images, case, config):
    from radiomics import getFeatureClasses

    col = case + config
    present = [cls for cls in CLASSES if col in next(iter(baseline[cls].values()))]
    settings = {cls: ast.literal_eval(baseline[cls]["diagnostics_Configuration_Settings"][col]) for cls in present}
    types = {cls: ast.literal_eval(baseline[cls]["diagnostics_Configuration_EnabledImageTypes"][col]) for cls in present}
    first = present[0]
    assert all(settings[c] == settings[first] and types[c] == types[first] for c in present)
    expected, feature_class = {}, {}
    for cls in present:
        deprecated = getFeatureClasses()[cls].getFeatureNames()
        names = [k for k in baseline[cls] if k.startswith(f"original_{cls}_")]
        feature_class[cls] = [k.split("_", 2)[2] for k in names if not deprecated[k.split("_", 2)[2]]]
        expected.update({k: float(baseline[cls][k][col]) for k in names if not deprecated[k.split("_", 2)[2]]})
    params = {"setting": settings[first], "imageType": types[first], "featureClass": feature_class}
    values = extract_radiomics(*images[case], params)
    assert not [k for k in values if k.startswith("diagnostics_")]
    assert set(expected) <= set(values)
    bad = {k: (values[k], v) for k, v in expected.items() if abs(values[k] - v) > REL_TOL * max(abs(v), 1e-12)}
    assert not bad, f"{len(bad)} of {len(expected)} features differ: {list(bad.items())[:5]}"
