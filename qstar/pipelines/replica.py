"""What a process needs to search: a task, a policy and a scorer, named as the registries name them. A `Replica`
holds names, paths and options only, so it travels to worker processes and other machines, where each loads its
own copy of the models (`load`)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qstar.checkpoints import NAMED
from qstar.policy import POLICIES, Policy, load_policy
from qstar.registry import load_plugin
from qstar.scorers import SCORERS, Scorer, get_scorer
from qstar.tasks import Task, get_task


def absolute(spec: str, names: Collection[str] = ()) -> str:
    """A spec that names an existing file or folder, made absolute (a worker may start elsewhere); else as is. A
    registered name (`names`) or a shipped checkpoint's stays a name beside a folder that happens to share it."""
    if not spec or spec in names or spec in NAMED or not Path(spec).exists():
        return spec
    return str(Path(spec).resolve())


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
        object.__setattr__(self, "policy", absolute(self.policy, POLICIES))
        if self.scorer is not None:
            object.__setattr__(self, "scorer", absolute(self.scorer, SCORERS))
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
