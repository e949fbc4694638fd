"""OncoLabel: oncologic-imaging AI platform.

A plain Python library: importing it needs neither MONAI Label, 3D Slicer nor a GPU.
Every result it produces is for research use only.
"""

from __future__ import annotations

__version__ = "0.1.0"

RESEARCH_USE_ONLY = "research use only: not for clinical diagnosis or treatment decisions"

__all__ = ["__version__", "RESEARCH_USE_ONLY"]
