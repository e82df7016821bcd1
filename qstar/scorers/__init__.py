"""Scorers by name: `verifier` (step checker + verifier), `checker` (step checker only), `rollouts` (Monte-Carlo)."""

from __future__ import annotations

from qstar.policy.base import Policy
from qstar.scorers.base import Scorer, Scores
from qstar.scorers.ground_truth import CheckerScorer, VerifierScorer
from qstar.scorers.rollouts import RolloutScorer
from qstar.tasks.base import QstarError, Task

SCORERS = ("verifier", "checker", "rollouts")


def get_scorer(name: str, task: Task, policy: Policy, rollouts: int = 4) -> Scorer:
    if name == "verifier":
        return VerifierScorer(task)
    if name == "checker":
        return CheckerScorer(task)
    if name == "rollouts":
        return RolloutScorer(task, policy, k=rollouts)
    raise QstarError(f"unknown scorer {name!r}; choose from {', '.join(SCORERS)}")


__all__ = ["SCORERS", "CheckerScorer", "RolloutScorer", "Scorer", "Scores", "VerifierScorer", "get_scorer"]
