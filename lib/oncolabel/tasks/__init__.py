"""Clinical task specs (one per task) and their registry."""

from __future__ import annotations

from oncolabel.tasks import bone_metastasis as _bone_metastasis  # noqa: F401  (registers the task)
from oncolabel.tasks import pannet_ln as _pannet_ln  # noqa: F401  (registers the task)
from oncolabel.tasks.base import NetworkSpec, TaskSpec, TrainingSpec, get_task, register_task, task_names
from oncolabel.tasks import renal_mass as _renal_mass  # noqa: F401,E402  (registers the task)
from oncolabel.tasks import pet_lymphoma as _pet_lymphoma  # noqa: F401,E402  (registers the task)
from oncolabel.tasks import hn_response as _hn_response  # noqa: F401,E402  (registers the task)

__all__ = ["NetworkSpec", "TaskSpec", "TrainingSpec", "get_task", "register_task", "task_names"]
