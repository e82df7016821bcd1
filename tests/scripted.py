"""A scripted stand-in for the policy, for unit tests of search logic only: deterministic given its seed,
instant, and with a known step distribution. The real tiny policy runs the same searches end to end in
tests/test_search.py (compare, batching) and in the CLI tests."""

from __future__ import annotations

import math
import random
import re

from qstar.tasks.countdown import Countdown, legal_moves, move_step
from qstar.types import Problem, Step

HEAD = re.compile(r"Input: ([\d ]+) Target: (\d+)\n")


class ScriptedPolicy:
    """Proposes legal next steps uniformly, distinct while there are enough, and with probability `junk` a
    malformed step instead."""

    max_step_tokens = 40

    def __init__(self, seed: int = 0, junk: float = 0.0):
        self.rng = random.Random(seed)
        self.junk = junk
        self.task = Countdown()

    def seed(self, seed: int) -> None:
        self.rng.seed(seed)

    def moves(self, prefix: str) -> list[str]:
        m = HEAD.match(prefix)
        numbers = [int(x) for x in m[1].split()]
        problem = Problem("s", m[1], meta={"numbers": numbers, "target": int(m[2])})
        left = self.task.left_after(problem, prefix[m.end() :].splitlines())
        if left is None or len(left) < 2:
            return ["(no move)"]
        return sorted({move_step(left, move)[0] for move in legal_moves(left)})

    def propose(self, prefixes: list[str], n: int = 1, temperature: float = 0.0) -> list[list[Step]]:
        out = []
        for prefix in prefixes:
            moves = self.moves(prefix)
            logprob = -math.log(len(moves))
            if temperature == 0:
                picks = [moves[0]] * n
            else:
                picks = self.rng.sample(moves, min(n, len(moves))) + self.rng.choices(moves, k=max(0, n - len(moves)))
                picks = ["junk step" if self.rng.random() < self.junk else p for p in picks]
            out.append([Step(text, logprob, tokens=len(text) + 1) for text in picks])
        return out
