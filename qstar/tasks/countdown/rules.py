"""Countdown's rules: one operation per step, written `13 - 9 = 4 (left: 4 10 4)`.

Integer rules as in Stream of Search: no negative results, division only when exact. The `left:` list is
checked as a multiset; the canonical order (what the generator writes) keeps the untouched numbers in their
order and appends the result.
"""

from __future__ import annotations

import re
from collections import Counter

from qstar.tasks.base import StepCheck

OPS = "+-*/"
STEP_RE = re.compile(r"^\s*(\d+)\s*([-+*/])\s*(\d+)\s*=\s*(\d+)\s*\(left:\s*([\d ]*?)\s*\)\s*$")


def apply(a: int, op: str, b: int) -> int | None:
    """`a op b` under the integer rules, or None when the rules forbid it."""
    if op == "+":
        return a + b
    if op == "*":
        return a * b
    if op == "-":
        return a - b if a >= b else None
    if op == "/":
        return a // b if b != 0 and a % b == 0 else None
    raise ValueError(f"unknown operation {op!r}")


def format_step(a: int, op: str, b: int, left: list[int]) -> str:
    return f"{a} {op} {b} = {apply(a, op, b)} (left: {' '.join(map(str, left))})"


def remove_one(numbers: list[int], value: int) -> list[int] | None:
    """`numbers` without one occurrence of `value`, or None if it is absent."""
    if value not in numbers:
        return None
    rest = list(numbers)
    rest.remove(value)
    return rest


def check(numbers: list[int], step: str) -> tuple[StepCheck, list[int]]:
    """Check one step against the numbers left; return the verdict and the numbers left after it."""
    m = STEP_RE.match(step)
    if not m:
        return StepCheck(False, "format: expected `a op b = c (left: ...)`"), numbers
    a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
    left = [int(x) for x in m[5].split()]
    rest = remove_one(numbers, a)
    rest = remove_one(rest, b) if rest is not None else None
    if rest is None:
        return StepCheck(False, f"operands: {a} and {b} are not both left in {numbers}"), numbers
    result = apply(a, op, b)
    if result is None:
        return StepCheck(False, f"rules: {a} {op} {b} is not allowed"), numbers
    if result != c:
        return StepCheck(False, f"arithmetic: {a} {op} {b} = {result}, not {c}"), numbers
    after = [*rest, result]
    if Counter(left) != Counter(after):
        return StepCheck(False, f"left: expected {sorted(after)}, got {left}"), numbers
    return StepCheck(True), after


def legal_moves(numbers: list[int]) -> list[tuple[int, int, str, int]]:
    """Every allowed `(i, j, op, result)`: numbers[i] op numbers[j], larger operand first for + and *."""
    moves = []
    for i, a in enumerate(numbers):
        for j, b in enumerate(numbers):
            if i == j:
                continue
            for op in OPS:
                result = apply(a, op, b)
                if result is not None and not (op in "+*" and a < b):
                    moves.append((i, j, op, result))
    return moves


def move_step(numbers: list[int], move: tuple[int, int, str, int]) -> tuple[str, list[int]]:
    """The canonical step text of a move and the numbers left after it."""
    i, j, op, result = move
    left = [x for k, x in enumerate(numbers) if k not in (i, j)] + [result]
    return format_step(numbers[i], op, numbers[j], left), left


def expression(numbers: list[int], steps: list[str]) -> str | None:
    """The full expression a legal solution builds, e.g. `(10 - 4) * (13 - 9)`, or None."""
    exprs = [(n, str(n)) for n in numbers]
    for step in steps:
        m = STEP_RE.match(step)
        if not m:
            return None
        a, op, b = int(m[1]), m[2], int(m[3])
        ia = next((i for i, (v, _) in enumerate(exprs) if v == a), None)
        if ia is None:
            return None
        ea = exprs.pop(ia)[1]
        ib = next((i for i, (v, _) in enumerate(exprs) if v == b), None)
        if ib is None or apply(a, op, b) is None:
            return None
        eb = exprs.pop(ib)[1]
        exprs.append((apply(a, op, b), f"{wrap(ea)} {op} {wrap(eb)}"))
    return exprs[0][1] if len(exprs) == 1 else None


def wrap(expr: str) -> str:
    return f"({expr})" if " " in expr else expr
