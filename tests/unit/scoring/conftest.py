"""Fixtures: small PanNET phantom files and a tiny frozen RDP model (untrained CNN, hand-set head)."""

from __future__ import annotations

from pathlib import Path

import pytest
import SimpleITK as sitk

from oncolabel.phantoms.pannet import PannetPhantomConfig, case_seed, generate_pannet_case


def write_case(root: Path, seed: int, index: int, centre: str = "A") -> tuple[Path, Path]:
    """Write one phantom case (image, mask) as NIfTI; returns the paths."""
    case = generate_pannet_case(case_seed(seed, index), config=PannetPhantomConfig(centre=centre))
    ip, mp = root / f"{case.case_id}.nii.gz", root / f"{case.case_id}_mask.nii.gz"
    sitk.WriteImage(case.image, str(ip))
    sitk.WriteImage(case.label, str(mp))
    return ip, mp


@pytest.fixture(scope="session")
def pannet_cases(tmp_path_factory) -> list[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("pannet_cases")
    return [write_case(root, 21, i, "A" if i % 2 else "B") for i in range(4)]


@pytest.fixture(scope="session")
def tiny_rdp_model(tmp_path_factory) -> Path:
    """An RDP model file with an untrained CNN and a two-feature head (contract tests, not accuracy)."""
    import torch

    from oncolabel.checkpoint import Checkpoint
    from oncolabel.scoring.rdp import RdpHead, RdpModel
    from oncolabel.tasks import get_task

    spec = get_task("pannet_ln")
    torch.manual_seed(0)
    net = spec.network.build()
    cnn = Checkpoint(task=spec.name, network=spec.network.to_dict(), preprocessing=spec.preprocessing.to_dict(),
                     state_dict=net.state_dict(), training={"iterations": 0})
    head = RdpHead(features=("rad:original_shape_Maximum3DDiameter", "rad:original_firstorder_Mean", "deep:logit"),
                   mean=(20.0, 150.0, 0.0), scale=(10.0, 30.0, 0.1), coef=(1.2, 0.4, 0.3), intercept=-1.2,
                   calib_intercept=0.1, calib_slope=0.9, threshold=0.3)
    path = tmp_path_factory.mktemp("rdp") / "tiny_rdp.pt"
    RdpModel.build(cnn, head, metrics={"note": "test fixture"}).save(path)
    return path
