"""Exhaustive countdown solving, for statistics, data checks and generating solvable problems; no search uses it."""

from __future__ import annotations

from qstar.tasks.countdown.rules import OPS, apply, format_step


def solve(numbers: list[int], target: int) -> list[list[str]]:
    """All solutions (as canonical step lists) by exhaustive search."""
    if len(numbers) == 1:
        return [[]] if numbers[0] == target else []
    solutions = []
    for i in range(len(numbers)):
        for j in range(len(numbers)):
            if i == j:
                continue
            a, b = numbers[i], numbers[j]
            for op in OPS:
                if op in "+*" and i > j:  # commutative: one order is enough
                    continue
                result = apply(a, op, b)
                if result is None:
                    continue
                left = [x for k, x in enumerate(numbers) if k not in (i, j)] + [result]
                step = format_step(a, op, b, left)
                solutions += [[step, *rest] for rest in solve(left, target)]
    return solutions


def is_solvable(numbers: list[int], target: int) -> bool:
    """Can the integer rules make `target` from all of `numbers`? Depth-first, stops at the first way."""
    if len(numbers) == 1:
        return numbers[0] == target
    for i in range(len(numbers)):
        for j in range(i + 1, len(numbers)):
            a, b = max(numbers[i], numbers[j]), min(numbers[i], numbers[j])
            rest = numbers[:i] + numbers[i + 1 : j] + numbers[j + 1 :]
            results = {a + b, a * b, a - b} | ({a // b} if b and a % b == 0 else set()) | ({0} if a == 0 else set())
            if any(is_solvable([*rest, r], target) for r in results):
                return True
    return False
