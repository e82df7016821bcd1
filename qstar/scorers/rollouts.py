"""Monte-Carlo rollout values (Math-Shepherd): the share of `k` policy completions the verifier accepts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from qstar.config import option
from qstar.errors import BackendError
from qstar.policy.base import Policy, takes_seeds
from qstar.scorers.base import register_scorer
from qstar.scorers.ground_truth import VerifierScorer
from qstar.seeds import derive_seed
from qstar.tasks.base import Task
from qstar.types import Problem, Scores


@register_scorer("rollouts")
@dataclass
class RolloutScorer:
    """Complete each legal partial path `k` times with the policy; its value is the share that verify.

    Illegal paths score 0 and complete ones their verdict, without rollouts. All rollouts of a batch
    advance together, one batched policy call per step; their tokens are charged to the paths scored. A path
    whose rollout the backend fails for good is reported in a `BackendError`; the other paths keep their values.
    """

    task: Task
    policy: Policy
    k: int = option(4, "completions per path")
    temperature: float = option(1.0, "sampling temperature of the completions")
    uses_verifier: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self.ground = VerifierScorer(self.task)  # illegal and complete paths need no rollouts

    def score(self, problems: list[Problem], paths: list[list[str]], seeds: list[int] | None = None) -> Scores:
        """Each rollout's steps are seeded from its path's seed, its number and its depth, when `seeds` are given."""
        ground = self.ground
        values = [ground.value(p, path) for p, path in zip(problems, paths, strict=True)]
        tokens, calls, wins = [0] * len(paths), [0] * len(paths), [0] * len(paths)
        failed: dict[int, str] = {}
        pending = [i for i, (p, path) in enumerate(zip(problems, paths, strict=True)) if values[i] == ground.partial]
        states = [(i, r, paths[i]) for i in pending for r in range(self.k)]
        seeded = seeds is not None and takes_seeds(self.policy.propose)
        while states:
            prefixes = [self.task.render(problems[i], path) for i, _, path in states]
            step_seeds = {"seeds": [derive_seed(seeds[i], r, len(path)) for i, r, path in states]} if seeded else {}
            try:
                proposals = self.policy.propose(prefixes, n=1, temperature=self.temperature, **step_seeds)
            except BackendError as error:
                proposals = error.results
                for j, reason in error.failed.items():
                    failed.setdefault(states[j][0], reason)
            nxt = []
            for (i, r, path), steps in zip(states, proposals, strict=True):
                if i in failed:
                    continue  # this path's value is unknown: its other rollouts stop too
                (step,) = steps
                tokens[i] += step.tokens
                calls[i] += 1
                after = [*path, step.text]
                if not self.task.check_step(problems[i], path, step.text).ok:
                    continue  # an illegal step ends the rollout as a failure
                if self.task.is_complete(problems[i], after):
                    wins[i] += self.task.verify(problems[i], after)
                elif len(after) < self.task.max_steps(problems[i]):
                    nxt.append((i, r, after))
            states = nxt
        for i in pending:
            values[i] = wins[i] / self.k
        scores = Scores(values, tokens, calls)
        if failed:
            raise BackendError(failed, scores)  # type: ignore[arg-type]
        return scores

    def max_tokens(self, problem: Problem, path: list[str]) -> int:
        """Rollouts run only from legal partial paths: up to `k` completions of the remaining steps."""
        if self.ground.value(problem, path) != self.ground.partial:
            return 0
        remaining = max(0, self.task.max_steps(problem) - len(path))
        return self.k * remaining * self.policy.max_step_tokens
