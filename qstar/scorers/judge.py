"""LLM-as-judge: the Tree-of-Thoughts value prompt (sure / likely / impossible) asked of a policy model."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from qstar.config import option
from qstar.errors import BackendError
from qstar.policy.base import Policy, takes_seeds
from qstar.scorers.base import register_scorer
from qstar.tasks.base import Task
from qstar.types import Prefix, Problem, Scores

VERDICTS = {"sure": 1.0, "likely": 0.5, "impossible": 0.0}
VERDICT = re.compile(r"\b(sure|likely|impossible)\b", re.IGNORECASE)
PROMPT = (
    "Judge whether a partial solution is on track to answer the question correctly.\n"
    "Reply with one word: sure (it is correct so far and will succeed), likely (plausible, not certain) or "
    "impossible (it contains a mistake or cannot succeed).\n\n"
    "Question: {question}\n"
    "Partial solution:\n{steps}\n"
    "Judgement:"
)


def verdict(text: str) -> float | None:
    """The value of a judgement's first verdict word, or None when it names none."""
    m = VERDICT.search(text)
    return VERDICTS[m[1].lower()] if m else None


@register_scorer("judge")
@dataclass
class JudgeScorer:
    """Asks `policy` for `samples` judgements of each path and averages their values (sure 1, likely 0.5,
    impossible 0); a reply without a verdict word carries no information and counts 0.5. Needs no reference.
    Tokens the judge generates are charged to the search."""

    task: Task
    policy: Policy
    samples: int = option(1, "judgements averaged per path")
    temperature: float | None = option(
        None, "sampling temperature of the judgements (default: 0 for one, 0.7 for more)"
    )
    uses_verifier: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.temperature is None:
            self.temperature = 0.7 if self.samples > 1 else 0.0

    def prompt(self, problem: Problem, path: list[str]) -> Prefix:
        steps = "\n".join(path) if path else "(no steps yet)"
        return Prefix(PROMPT.format(question=problem.prompt, steps=steps))

    def score(self, problems: list[Problem], paths: list[list[str]], seeds: list[int] | None = None) -> Scores:
        prompts = [self.prompt(p, path) for p, path in zip(problems, paths, strict=True)]
        failed: dict[int, str] = {}
        try:
            seeded = {"seeds": seeds} if seeds is not None and takes_seeds(self.policy.propose) else {}
            replies = self.policy.propose(prompts, n=self.samples, temperature=self.temperature, **seeded)
        except BackendError as error:
            failed, replies = error.failed, [r or [] for r in error.results]
        values, tokens = [], []
        for steps in replies:
            found = [v for v in (verdict(s.text) for s in steps) if v is not None]
            values.append(sum(found) / len(found) if found else 0.5)
            tokens.append(sum(s.tokens for s in steps))
        scores = Scores(values, tokens, [self.samples] * len(values))
        if failed:
            raise BackendError(failed, scores)  # type: ignore[arg-type]
        return scores

    def max_tokens(self, problem: Problem, path: list[str]) -> int:
        return self.samples * self.policy.max_step_tokens
