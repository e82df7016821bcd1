"""Tasks by name: `countdown`, `game24` (countdown's preset), `gsm8k` and `math`; each takes a JSONL problems file."""

from qstar.tasks.base import QstarError, StepCheck, Task
from qstar.tasks.countdown import Countdown

TASKS = ("countdown", "game24", "gsm8k", "math")


def get_task(name: str, problems_file: str | None = None) -> Task:
    if name in ("countdown", "game24"):
        return Countdown(preset=name, problems_file=problems_file)
    if name == "gsm8k":
        from qstar.tasks.gsm8k import GSM8K

        return GSM8K(problems_file=problems_file)
    if name == "math":
        from qstar.tasks.math import Math

        return Math(problems_file=problems_file)
    raise QstarError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")


__all__ = ["TASKS", "Countdown", "QstarError", "StepCheck", "Task", "get_task"]
