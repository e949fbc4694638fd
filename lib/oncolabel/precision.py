"""Numerical precision of network passes: ``fp32`` or ``bf16`` (autocast), and ``auto``.

bfloat16 autocast keeps the weights and the loss in float32 and runs convolutions and matrix products in bfloat16.
On CPUs with AMX tiles (Intel Xeon 4th generation and later) or AVX-512 BF16 instructions (e.g. AMD Zen 4) and on
CUDA GPUs with bf16 support that is faster; elsewhere bf16 is emulated and slower, so ``auto`` picks it only where
the hardware has it. Measured for the bone-metastasis network (docs/bone_metastasis.md, "Speed"): inference 3.5x and
a training step 2.4x faster on one AMX core, the network pass 1.7x on two AMD EPYC (AVX-512 BF16) cores, metastasis
probabilities within 0.05 of float32 (mean difference 3e-5) and the same slice-wise and lesion-wise figures on
held-out phantoms.

Where the precision changes results it is recorded: predictors write it into their provenance, the trainer into
the checkpoint's training settings.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager

import torch

from oncolabel.errors import InvalidInputError

__all__ = ["PRECISIONS", "as_float32", "autocast", "native_bf16", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 convolutions natively: CUDA with bf16, or a CPU with AMX tiles or AVX-512
    BF16 instructions (measurements: the module docstring)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):  # no public probe in torch yet
            probe = getattr(torch.cpu, name, None)
            try:
                if probe is not None and probe():
                    return True
            except RuntimeError:
                continue
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where :func:`native_bf16`, else ``fp32``; ``fp32`` / ``bf16`` are kept as given.

    Raises:
        InvalidInputError: an unknown precision name.
    """
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(precision: str, device: torch.device) -> ContextManager[object]:
    """The context a network pass runs in: bf16 autocast for ``bf16``; for ``fp32`` none of its own (a caller's
    enclosing autocast, e.g. the trainer's during validation, stays in force)."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def as_float32(output: Any) -> Any:
    """A network's output (a tensor, or a tuple / list / dict of them) in float32, for the loss."""
    if isinstance(output, torch.Tensor):
        return output.float()
    if isinstance(output, (tuple, list)):
        return type(output)(as_float32(o) for o in output)
    if isinstance(output, dict):
        return {k: as_float32(v) for k, v in output.items()}
    return output
