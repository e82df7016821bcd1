"""Tasks by name (`get_task`): `countdown`, `game24` (countdown's preset), `gsm8k` and `math`; installed packages
add theirs through the `qstar.tasks` entry-point group, a user's file through `--plugin`."""

from qstar.tasks import gsm8k, math  # noqa: F401  (registers them)
from qstar.tasks.base import TASKS, BaseTask, StepCheck, Task, get_task, register_task
from qstar.tasks.countdown import Countdown

__all__ = ["TASKS", "BaseTask", "Countdown", "StepCheck", "Task", "get_task", "register_task"]
