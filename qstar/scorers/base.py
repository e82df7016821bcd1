"""The Scorer protocol: values in [0, 1] for many partial solutions at once, with the compute they cost."""

from __future__ import annotations

from typing import Protocol

from qstar.registry import Registry
from qstar.tasks.base import Task
from qstar.types import Problem, Scores


class Scorer(Protocol):
    """Scores partial solutions (`paths` of step texts) of `problems`, pairwise, in one batch. A scorer that
    samples (rollouts, a judge) draws each path's samples from its seed in `seeds` when given (one per path), so a
    path's value does not depend on the batch it was scored in; the others ignore them."""

    uses_verifier: bool  # reads the task's verifier: refused in eval where that needs the reference answer

    def score(self, problems: list[Problem], paths: list[list[str]], seeds: list[int] | None = None) -> Scores: ...

    def max_tokens(self, problem: Problem, path: list[str]) -> int:
        """The most generated tokens scoring this path can cost (searches keep within their budget with it)."""
        ...


SCORERS: Registry[Scorer] = Registry("scorer", "qstar.scorers", Scorer)
register_scorer = SCORERS.register


def default_scorer(task: Task) -> str:
    """The verifier where it needs no reference answer (it may guide evaluation), else the step checker."""
    return "checker" if task.verifier_needs_reference else "verifier"


__all__ = ["SCORERS", "Scorer", "Scores", "default_scorer", "register_scorer"]
