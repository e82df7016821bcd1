"""What a process needs to search: a task, a policy and a scorer, named as the registries name them. A `Replica`
holds names, paths and options only, so it travels to worker processes and other machines, where each loads its
own copy of the models (`load`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qstar.policy import Policy, load_policy
from qstar.registry import load_plugin
from qstar.scorers import SCORERS, Scorer, get_scorer
from qstar.tasks import Task, get_task


def absolute(spec: str) -> str:
    """A spec that names an existing file or folder, made absolute (a worker may start elsewhere); else as is."""
    return str(Path(spec).resolve()) if spec and Path(spec).exists() else spec


@dataclass(frozen=True)
class Replica:
    """A task, a policy and a scorer by name (or path) and options; `plugins` are the `--plugin` files that
    register any of them, imported first."""

    task: str
    policy: str
    scorer: str | None = None
    task_options: dict[str, Any] = field(default_factory=dict)
    policy_options: dict[str, Any] = field(default_factory=dict)
    scorer_options: dict[str, Any] = field(default_factory=dict)
    plugins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "plugins", tuple(absolute(p) for p in self.plugins))
        object.__setattr__(self, "policy", absolute(self.policy))
        if self.scorer is not None and self.scorer not in SCORERS:  # a name stays a name beside a folder of it
            object.__setattr__(self, "scorer", absolute(self.scorer))
        paths = {k: absolute(v) for k, v in self.task_options.items() if k.endswith("_file") and isinstance(v, str)}
        object.__setattr__(self, "task_options", {**self.task_options, **paths})

    def load_task(self) -> Task:
        for plugin in self.plugins:
            load_plugin(plugin)
        return get_task(self.task, **self.task_options)

    def load(self) -> tuple[Task, Policy, Scorer | None]:
        """This process's task, policy and scorer (the scorer built on the policy, e.g. for rollouts)."""
        task = self.load_task()
        policy = load_policy(self.policy, **self.policy_options)
        scorer = get_scorer(self.scorer, task, policy, **self.scorer_options) if self.scorer else None
        return task, policy, scorer
