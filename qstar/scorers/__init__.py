"""Scorers by name: `verifier` (step checker + verifier), `checker` (step checker only), `rollouts`
(Monte-Carlo), `judge` (LLM-as-judge), `value` (the shipped tiny value model), or a local PRM folder
(token-classification checkpoint)."""

from __future__ import annotations

from pathlib import Path

from qstar.policy.base import Policy
from qstar.scorers.base import Scorer, Scores
from qstar.scorers.ground_truth import CheckerScorer, VerifierScorer
from qstar.scorers.rollouts import RolloutScorer
from qstar.tasks.base import QstarError, Task

SCORERS = ("verifier", "checker", "rollouts", "judge", "value")


def check_scorer_name(name: str) -> None:
    """Fail before any model loads when `name` is neither a scorer nor a PRM folder."""
    if name not in SCORERS and not Path(name).is_dir():
        raise QstarError(f"unknown scorer {name!r}; choose from {', '.join(SCORERS)}, or give a PRM folder")


def default_scorer(task: Task) -> str:
    """The verifier where it needs no reference answer (it may guide evaluation), else the step checker."""
    return "checker" if task.verifier_needs_reference else "verifier"


def get_scorer(
    name: str,
    task: Task,
    policy: Policy,
    rollouts: int = 4,
    aggregate: str = "min",
    judge_samples: int = 1,
    step_tag: str | None = None,
) -> Scorer:
    check_scorer_name(name)
    if name == "verifier":
        return VerifierScorer(task)
    if name == "checker":
        return CheckerScorer(task)
    if name == "rollouts":
        return RolloutScorer(task, policy, k=rollouts)
    if name == "value":  # the shipped tiny value model of `qstar improve`, with the verifier where it applies
        from qstar.checkpoints import DEFAULT_VALUE
        from qstar.scorers.value import ValueScorer

        return ValueScorer.from_pretrained(DEFAULT_VALUE, task)
    if name == "judge":
        from qstar.scorers.judge import JudgeScorer

        return JudgeScorer(task, policy, samples=judge_samples, temperature=0.7 if judge_samples > 1 else 0.0)
    from qstar.scorers.prm import PRMScorer

    return PRMScorer.from_pretrained(name, task, aggregate=aggregate, step_tag=step_tag)


__all__ = [
    "SCORERS",
    "CheckerScorer",
    "RolloutScorer",
    "Scorer",
    "Scores",
    "VerifierScorer",
    "check_scorer_name",
    "default_scorer",
    "get_scorer",
]
