"""Tasks by name: `countdown`, `game24` (countdown's preset), or either with a JSONL problems file."""

from qstar.tasks.base import QstarError, StepCheck, Task
from qstar.tasks.countdown import Countdown

TASKS = ("countdown", "game24")


def get_task(name: str, problems_file: str | None = None) -> Task:
    if name not in TASKS:
        raise QstarError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return Countdown(preset=name, problems_file=problems_file)


__all__ = ["TASKS", "Countdown", "QstarError", "StepCheck", "Task", "get_task"]
