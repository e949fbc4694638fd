"""The shipped sample cohort is intact, small, and what the current generator makes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from oncolabel.phantoms import BoneMetastasisPhantomConfig, case_seed, generate_bone_metastasis_case, read_manifest

ROOT = Path(__file__).resolve().parents[3] / "sample-data"
COHORT = ROOT / "bone-metastasis"

pytestmark = pytest.mark.skipif(not COHORT.is_dir(), reason="sample-data/bone-metastasis not in this checkout")


def test_checksums_and_size():
    total = 0
    for line in (ROOT / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        data = (ROOT / rel).read_bytes()
        total += len(data)
        assert hashlib.sha256(data).hexdigest() == digest, rel
    assert total < 10 * 2**20


def test_cases_with_and_without_metastases():
    recs = [json.loads(p.read_text()) for p in sorted((COHORT / "lesions").glob("*.json"))]
    assert sum(1 for r in recs if r["lesions"]) >= 2
    assert sum(1 for r in recs if not r["lesions"]) >= 1


def test_sample_matches_current_generator():
    """Fails when the generator changed without ``sample-data/regenerate.sh`` being run."""
    man = read_manifest(COHORT)
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in man["settings"].items()}
    cfg = BoneMetastasisPhantomConfig(**settings)
    entry = man["cases"][3]
    case = generate_bone_metastasis_case(case_seed(man["seed"], entry["index"]), config=cfg)
    for key, img in (("image", case.image), ("label", case.label)):
        shipped = sitk.ReadImage(str(COHORT / entry["files"][key]["path"]))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(shipped), sitk.GetArrayFromImage(img))
        assert shipped.GetOrigin() == pytest.approx(img.GetOrigin())
