"""Generation speed of a full-size case (run with ``pytest -m slow``)."""

from __future__ import annotations

import time

import pytest

from oncolabel.phantoms import BoneMetastasisPhantomConfig, generate_bone_metastasis_case


@pytest.mark.slow
def test_full_size_case_is_fast():
    cfg = BoneMetastasisPhantomConfig(thickness_mm=(2.5,), z_mm=(150.0, 150.0))
    start = time.perf_counter()
    case = generate_bone_metastasis_case(1, config=cfg)
    elapsed = time.perf_counter() - start
    assert case.image.GetSize() == (512, 512, 60)
    assert elapsed < 10.0  # ~1 s on one core; the budget is 5 s, with room for slow CI machines
