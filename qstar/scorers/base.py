"""The Scorer protocol: values in [0, 1] for many partial solutions at once, with the compute they cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from qstar.types import Problem


@dataclass
class Scores:
    """Values of a batch of paths, and the generated tokens and model calls spent on each."""

    values: list[float]
    tokens: list[int] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tokens = self.tokens or [0] * len(self.values)
        self.calls = self.calls or [0] * len(self.values)

    def __getitem__(self, s: slice) -> Scores:
        return Scores(self.values[s], self.tokens[s], self.calls[s])


class Scorer(Protocol):
    """Scores partial solutions (`paths` of step texts) of `problems`, pairwise, in one batch."""

    uses_verifier: bool  # reads the task's verifier: refused in eval where that needs the reference answer

    def score(self, problems: list[Problem], paths: list[list[str]]) -> Scores: ...

    def max_tokens(self, problem: Problem, path: list[str]) -> int:
        """The most generated tokens scoring this path can cost (searches keep within their budget with it)."""
        ...
