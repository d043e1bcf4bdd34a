"""Every registry in one place, for `vistage list` and params checking: the tasks, the shared
components, and each task's own keywords (Task.keyword_registries), listed under the registry's
name in lower case (`vistage list question_encoders`).

Importing this module imports the component modules, and so torch: keep it off the
`vistage --help` path.
"""

import importlib

from .augment import AUGMENTATIONS
from .data.sources import SOURCES
from .export import FORMATS
from .head_solve import HEADS
from .losses import LOSSES
from .models import MODELS
from .optim import OPTIMIZERS, SCHEDULERS
from .tasks import TASKS, create_task


def _task_registries() -> dict:
    found = {}
    for name in TASKS.own_names():
        for module, attr in create_task(name).keyword_registries.values():
            found[attr.lower()] = getattr(importlib.import_module(module), attr)
    return found


# keyword in `vistage list KIND` -> registry
ALL = {
    "tasks": TASKS,
    "models": MODELS,
    "optimizers": OPTIMIZERS,
    "schedulers": SCHEDULERS,
    "losses": LOSSES,
    "heads": HEADS,
    "augmentations": AUGMENTATIONS,
    "sources": SOURCES,
    "export_formats": FORMATS,
    **_task_registries(),
}
