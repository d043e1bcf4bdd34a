"""Tasks: what one kind of problem supplies to the six stages and the training engine.

`TASKS` maps the `task:` keyword of params.yaml to its Task (the builder's name is the keyword,
as everywhere). The stages and the engine (training.py) never ask which task runs: they call
`create_task(params.task)` and the Task's hooks (base.py lists them).

Adding a third task (multi-label, regression, segmentation): a folder beside classify/ and vqa/
with a Task subclass (base.py: its data stages, its TaskTraining, predict, evaluate, report
sections and the settings it does not read), and one builder below.

Importing this package is cheap (no torch): each Task imports its heavy parts when a stage asks.
"""

from ..registry import Registry
from .base import EvaluatePaths, PredictPaths, Task, TaskTraining

__all__ = ["TASKS", "EvaluatePaths", "PredictPaths", "Task", "TaskTraining", "create_task"]

TASKS = Registry("task")


@TASKS.register(help="one class per image (image folders, CSV, CIFAR batches, digits)")
def classify() -> Task:
    from .classify import ClassifyTask

    return ClassifyTask()


@TASKS.register(help="answer questions about images (easy-VQA, DAQUAR-style CSV, VizWiz/VQA JSON; settings under vqa:)")
def vqa() -> Task:
    from .vqa import VqaTask

    return VqaTask()


def create_task(name: str, where: str = "params.yaml") -> Task:
    """The Task of the `task:` keyword; an unknown one is the usual one-line error with the choices."""
    TASKS.check(name, "task", where)
    return TASKS.get(name, "task")()
