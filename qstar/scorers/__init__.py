"""Scorers by name (`get_scorer`): `verifier` (step checker + verifier), `checker` (step checker only), `rollouts`
(Monte-Carlo), `judge` (LLM-as-judge), `value` (a value model with the verifier), `prm` (a token-classification
PRM); any other spec is a model (`tiny-value`, a folder) read as a PRM. Installed packages add theirs through
the `qstar.scorers` entry-point group, a user's file through `--plugin`."""

from __future__ import annotations

from typing import Any

from qstar.checkpoints import resolve
from qstar.errors import QstarError, expect
from qstar.policy.base import Policy
from qstar.scorers import judge, prm, rollouts, value  # noqa: F401  (registers them)
from qstar.scorers.base import SCORERS, Scorer, Scores, default_scorer, register_scorer
from qstar.scorers.ground_truth import CheckerScorer, VerifierScorer
from qstar.scorers.rollouts import RolloutScorer
from qstar.tasks.base import Task


def scorer_name(spec: str) -> str:
    """The registered scorer a spec names: itself, or `prm` for a model (a checkpoint name or folder); checked
    before any model loads."""
    if spec in SCORERS:
        return spec
    if resolve(spec).is_dir():
        prm.prm_folder(spec)  # a folder that holds no model fails here, before the policy loads
        return "prm"
    raise QstarError(f"unknown scorer {spec!r}; choose from {', '.join(SCORERS.names())}, or give a PRM folder")


def scorer_options(spec: str, **options: Any) -> tuple[str, dict[str, Any]]:
    """The registered scorer `spec` names and its options (a model folder is `prm`'s `path`), both checked before any
    model loads."""
    name = scorer_name(spec)
    if name != spec:
        options = {"path": spec, **options}
    SCORERS.check(name, ("task", "policy"), **options)
    return name, options


def get_scorer(spec: str, task: Task, policy: Policy | None = None, **options: Any) -> Scorer:
    """The scorer `spec` names, for `task` (and `policy`, for scorers that call one), with `options`."""
    expect(task, "check_step", "task", "qstar.get_task(name)")
    name, options = scorer_options(spec, **options)
    return SCORERS.build(name, context={"task": task, "policy": policy}, **options)


__all__ = [
    "SCORERS",
    "CheckerScorer",
    "RolloutScorer",
    "Scorer",
    "Scores",
    "VerifierScorer",
    "default_scorer",
    "get_scorer",
    "register_scorer",
    "scorer_name",
    "scorer_options",
]
