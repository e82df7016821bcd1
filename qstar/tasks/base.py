"""The Task protocol: what a search needs to know about a domain, and nothing about models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from qstar.types import Problem


class QstarError(ValueError):
    """Bad input from the user (a malformed problem, an unknown name): reported as one line, exit code 2."""


@dataclass(frozen=True)
class StepCheck:
    """The step checker's verdict on one step: `ok`, and why not when it is not."""

    ok: bool
    reason: str = ""


class Task(Protocol):
    """A domain: gives problems, renders prompts for partial solutions, checks steps and verifies answers."""

    name: str
    separator: str  # ends every step; the policy stops generating at it
    verifier_needs_reference: bool  # True: the verifier reads the reference answer, so it may not guide eval

    def problems(self, split: str, limit: int | None = None) -> list[Problem]: ...

    def render(self, problem: Problem, steps: list[str]) -> str:
        """The policy's prompt for `problem` with `steps` already taken."""
        ...

    def check_step(self, problem: Problem, steps: list[str], step: str) -> StepCheck:
        """Process ground truth: may `step` follow the (legal) `steps`?"""
        ...

    def is_complete(self, problem: Problem, steps: list[str]) -> bool:
        """No further step can follow `steps`."""
        ...

    def verify(self, problem: Problem, steps: list[str]) -> bool:
        """Outcome ground truth: is this complete solution correct?"""
        ...

    def max_steps(self, problem: Problem) -> int:
        """The most steps a solution can have."""
        ...

    def answer_key(self, problem: Problem, steps: list[str]) -> str | None:
        """What a complete solution answers, for majority votes (countdown: the number reached)."""
        ...

    def relabel(self, problem: Problem, steps: list[str]) -> Problem | None:
        """Hindsight relabelling: a problem that this complete play solves, or None where the task has none."""
        ...

    def final_answer(self, problem: Problem, steps: list[str]) -> str | None:
        """The answer a solution states (for countdown, the full expression), or None."""
        ...
