"""Scorers from the task's own ground truth: the step checker (process) and the verifier (outcome)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from qstar.config import option
from qstar.scorers.base import register_scorer
from qstar.tasks.base import Task
from qstar.types import Problem, Scores


def legal(task: Task, problem: Problem, path: list[str]) -> bool:
    return all(task.check_step(problem, path[:i], step).ok for i, step in enumerate(path))


@register_scorer("checker")
@dataclass
class CheckerScorer:
    """Process ground truth: 0 if any step is illegal, else 1. Needs no reference answer."""

    task: Task
    uses_verifier: ClassVar[bool] = False

    def score(self, problems: list[Problem], paths: list[list[str]], seeds: list[int] | None = None) -> Scores:
        return Scores([float(legal(self.task, p, path)) for p, path in zip(problems, paths, strict=True)])

    def max_tokens(self, problem: Problem, path: list[str]) -> int:
        return 0


@register_scorer("verifier")
@dataclass
class VerifierScorer:
    """The step checker, plus the verifier on complete solutions; a legal partial solution scores `partial`."""

    task: Task
    partial: float = option(0.5, help="the score of a legal partial solution (a complete one scores 0 or 1)")
    uses_verifier: ClassVar[bool] = True

    def value(self, problem: Problem, path: list[str]) -> float:
        if not legal(self.task, problem, path):
            return 0.0
        if self.task.is_complete(problem, path):
            return float(self.task.verify(problem, path))
        return self.partial

    def score(self, problems: list[Problem], paths: list[list[str]], seeds: list[int] | None = None) -> Scores:
        return Scores([self.value(p, path) for p, path in zip(problems, paths, strict=True)])

    def max_tokens(self, problem: Problem, path: list[str]) -> int:
        return 0
