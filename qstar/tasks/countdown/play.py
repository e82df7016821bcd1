"""Random legal play: the rules-only pretraining data of the tiny policy."""

from __future__ import annotations

import random

from qstar.tasks.countdown.rules import legal_moves, move_step


def random_play(numbers: list[int], rng: random.Random, bound: int | None = None) -> list[str]:
    """A uniformly random legal solution attempt: random pair, random allowed op, until one number is left.

    With `bound`, ops whose result exceeds it are avoided while another op is possible, which keeps the
    arithmetic in the range puzzles actually use.
    """
    numbers = list(numbers)
    steps = []
    while len(numbers) > 1:
        moves = legal_moves(numbers)
        bounded = [m for m in moves if bound is None or m[3] <= bound]
        step, numbers = move_step(numbers, rng.choice(bounded or moves))
        steps.append(step)
    return steps


def random_numbers(preset: str, rng: random.Random, targets: tuple[int, int] = (10, 100)) -> tuple[list[int], int]:
    """Numbers and a target drawn like the preset's problems: Game of 24 (1-13, target 24) or countdown (1-99)."""
    if preset == "game24":
        return [rng.randint(1, 13) for _ in range(4)], 24
    return [rng.randint(1, 99) for _ in range(4)], rng.randint(*targets)
