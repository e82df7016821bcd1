"""Countdown: reach a target from a few numbers with + - * /, one operation per step (Game of 24 is a preset).

A step is a line in the Tree-of-Thoughts style, `13 - 9 = 4 (left: 4 10 4)`: two numbers that are left,
an operation, its exact result, and the numbers left afterwards. Integer rules as in Stream of Search:
no negative results, division only when exact. The `left:` list is checked as a multiset; the canonical
order (what the generator writes) keeps the untouched numbers in their order and appends the result.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from qstar.tasks.base import QstarError, StepCheck
from qstar.types import Prefix, Problem

OPS = "+-*/"
STEP_RE = re.compile(r"^\s*(\d+)\s*([-+*/])\s*(\d+)\s*=\s*(\d+)\s*\(left:\s*([\d ]*?)\s*\)\s*$")
DATA_DIR = Path(__file__).resolve().parents[1] / "data"  # ships inside the package (MIT, see its LICENSE)


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


def solve(numbers: list[int], target: int) -> list[list[str]]:
    """All solutions (as canonical step lists) by exhaustive search; for statistics and data checks only."""
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


def make_problem(pid: str, numbers: list[int], target: int, **meta) -> Problem:
    return Problem(
        id=pid,
        prompt=" ".join(map(str, numbers)),
        answer=str(target),
        meta={"numbers": list(numbers), "target": target, **meta},
    )


@dataclass
class Countdown:
    """The countdown task. `preset` picks the problems: `game24`, `countdown` or a JSONL file."""

    preset: str = "countdown"
    problems_file: str | None = None
    low: int = 1  # numbers are drawn from [low, high] (countdown generator)
    high: int = 99
    targets: tuple[int, int] = (10, 100)
    held_out_targets: int = 9  # targets never used in `train`, for `val_target`
    seed: int = 0
    sizes: dict[str, int] = field(default_factory=lambda: {"train": 20_000, "val": 1000, "val_target": 1000})

    separator = "\n"
    verifier_needs_reference = False  # the verifier checks the arithmetic and the target: no reference needed

    @property
    def name(self) -> str:
        return self.preset

    # ---- problems -------------------------------------------------------------------------------------

    def problems(self, split: str, limit: int | None = None) -> list[Problem]:
        if self.problems_file:
            problems = load_jsonl(Path(self.problems_file))
        elif self.preset == "game24":
            problems = self._game24(split)
        else:
            problems = self._generated(split, limit)
        return problems[:limit] if limit is not None else problems

    @cached_property
    def _game24_rows(self) -> list[tuple[int, list[int]]]:
        path = DATA_DIR / "game24" / "24.csv"
        with open(path, newline="") as f:
            return [(int(r["Rank"]), [int(x) for x in r["Puzzles"].split()]) for r in csv.DictReader(f)]

    def _game24(self, split: str) -> list[Problem]:
        """`test`: ranks 901-1000, the 100 games Tree-of-Thoughts reports on; `train`: all other ranks."""
        in_test = {"test": True, "train": False}.get(split)
        if in_test is None:
            raise QstarError(f"game24 has splits train and test, not {split!r}")
        return [
            make_problem(f"game24-{rank}", nums, 24, rank=rank)
            for rank, nums in self._game24_rows
            if (901 <= rank <= 1000) == in_test
        ]

    @cached_property
    def held_out(self) -> list[int]:
        lo, hi = self.targets
        return sorted(random.Random(f"countdown-held-out-{self.seed}").sample(range(lo, hi + 1), self.held_out_targets))

    def _generated(self, split: str, limit: int | None) -> list[Problem]:
        """Solvable problems from a seeded generator; `val_target` uses only the held-out targets."""
        if split not in self.sizes:
            raise QstarError(f"countdown has splits {', '.join(self.sizes)}, not {split!r}")
        lo, hi = self.targets
        targets = self.held_out if split == "val_target" else [t for t in range(lo, hi + 1) if t not in self.held_out]
        rng = random.Random(f"countdown-{split}-{self.seed}")
        n = min(self.sizes[split], limit if limit is not None else self.sizes[split])
        problems = []
        while len(problems) < n:
            numbers = [rng.randint(self.low, self.high) for _ in range(4)]
            target = rng.choice(targets)
            if is_solvable(numbers, target):
                problems.append(make_problem(f"countdown-{split}-{len(problems)}", numbers, target))
        return problems

    # ---- steps ----------------------------------------------------------------------------------------

    def render(self, problem: Problem, steps: list[str]) -> Prefix:
        head = f"Input: {problem.prompt} Target: {problem.meta['target']}\n"
        return Prefix(head, "".join(s + self.separator for s in steps))

    def left_after(self, problem: Problem, steps: list[str]) -> list[int] | None:
        """The numbers left after `steps`, or None if some step is illegal."""
        numbers = list(problem.meta["numbers"])
        for step in steps:
            verdict, numbers = check(numbers, step)
            if not verdict.ok:
                return None
        return numbers

    def check_step(self, problem: Problem, steps: list[str], step: str) -> StepCheck:
        numbers = self.left_after(problem, steps)
        if numbers is None:
            return StepCheck(False, "an earlier step is illegal")
        if len(numbers) < 2:
            return StepCheck(False, "the solution is already complete")
        return check(numbers, step)[0]

    def is_complete(self, problem: Problem, steps: list[str]) -> bool:
        return len(steps) >= self.max_steps(problem)

    def verify(self, problem: Problem, steps: list[str]) -> bool:
        left = self.left_after(problem, steps)
        return left == [problem.meta["target"]]

    def max_steps(self, problem: Problem) -> int:
        return len(problem.meta["numbers"]) - 1

    def answer_key(self, problem: Problem, steps: list[str]) -> str | None:
        left = self.left_after(problem, steps)
        return str(left[0]) if left is not None and len(left) == 1 else None

    def relabel(self, problem: Problem, steps: list[str]) -> Problem | None:
        """Hindsight: the problem this legal complete play solves (its target set to the number reached)."""
        left = self.left_after(problem, steps)
        if left is None or len(left) != 1:
            return None
        return make_problem(f"{problem.id}-to-{left[0]}", problem.meta["numbers"], left[0], hindsight=True)

    def final_answer(self, problem: Problem, steps: list[str]) -> str | None:
        """The full expression of a legal solution, e.g. `(10 - 4) * (13 - 9)`."""
        exprs = [(n, str(n)) for n in problem.meta["numbers"]]
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

    # ---- random legal play (pretraining data) ---------------------------------------------------------

    def random_numbers(self, rng: random.Random) -> tuple[list[int], int]:
        lo, hi = self.targets
        if self.preset == "game24":
            return [rng.randint(1, 13) for _ in range(4)], 24
        return [rng.randint(self.low, self.high) for _ in range(4)], rng.randint(lo, hi)


def wrap(expr: str) -> str:
    return f"({expr})" if " " in expr else expr


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


def parse_numbers(values: list[str] | str) -> list[int]:
    items = values.split() if isinstance(values, str) else values
    try:
        numbers = [int(x) for x in items]
    except ValueError:
        raise QstarError(f"numbers must be whole numbers, got {' '.join(map(str, items))!r}") from None
    if len(numbers) < 2 or any(n < 0 for n in numbers):
        raise QstarError(f"need at least two non-negative numbers, got {numbers}")
    return numbers


def load_jsonl(path: Path) -> list[Problem]:
    """Problems from a JSONL file of `{"numbers": [...], "target": N}` rows; errors name the line."""
    if not path.is_file():
        raise QstarError(f"problems file not found: {path}")
    problems = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                numbers = parse_numbers(row["numbers"])
                target = int(row["target"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                detail = f"missing key {e}" if isinstance(e, KeyError) else str(e)
                raise QstarError(
                    f'{path}:{lineno}: bad problem ({detail}); expected {{"numbers": [...], "target": N}}'
                ) from None
            problems.append(make_problem(str(row.get("id", f"{path.stem}-{lineno}")), numbers, target))
    if not problems:
        raise QstarError(f"{path}: no problems in file")
    return problems
