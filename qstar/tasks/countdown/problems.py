"""Countdown problems: the Game-of-24 puzzles that ship in the package, seeded generated splits, files, free text."""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

from qstar.errors import QstarError
from qstar.io import numbered_jsonl
from qstar.tasks.countdown.solver import is_solvable
from qstar.types import Problem

DATA_DIR = Path(__file__).resolve().parents[2] / "data"  # ships inside the package (MIT, see its LICENSE)
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w])")  # signs, decimals: to refuse
TARGET_MARK = re.compile(r"->|=>|→|=|\btarget\b|\bmake\b|\breach\b|\bget\b", re.IGNORECASE)


def make_problem(pid: str, numbers: list[int], target: int, **meta) -> Problem:
    return Problem(
        id=pid,
        prompt=" ".join(map(str, numbers)),
        answer=str(target),
        meta={"numbers": list(numbers), "target": target, **meta},
    )


def whole(x: object) -> int | None:
    """`x` as a whole number (an int, or its digits as text, a sign allowed), else None: 4.5 and true are not."""
    if isinstance(x, int) and not isinstance(x, bool):
        return x
    if isinstance(x, str) and re.fullmatch(r"\s*-?\d+\s*", x):
        return int(x)
    return None


def parse_numbers(values: list[str] | str) -> list[int]:
    items = values.split() if isinstance(values, str) else values
    numbers = [whole(x) for x in items]
    if None in numbers:
        bad = items[numbers.index(None)]
        raise QstarError(f"numbers must be whole numbers, not {bad!r} (in {' '.join(map(str, items))})")
    if any(n < 0 for n in numbers):
        raise QstarError(f"numbers must be whole numbers >= 0, got {min(numbers)}")
    if len(numbers) < 2:
        raise QstarError(f"need at least two numbers, got {numbers}")
    return numbers


def parse_target(value: object) -> int:
    try:
        target = int(str(value))
    except ValueError:
        raise QstarError(f"the target must be a whole number, got {value!r}") from None
    if target < 0:
        raise QstarError(f"the target must be a whole number >= 0, got {target}")
    return target


def whole_numbers(text: str) -> list[str]:
    """The numbers written in `text`, each a whole number >= 0: a sign, a decimal point or an exponent is an error,
    not a number read in parts (`4.5` is not 4 and 5, `-3` not 3)."""
    found = NUMBER.findall(text)
    for number in found:
        if not number.isdigit():
            raise QstarError(f"{number!r} is not a whole number: the numbers and the target are whole numbers >= 0")
    mixed = [word for word in NUMBER.sub(" ", text).split() if any(c.isdigit() for c in word)]
    if mixed:
        raise QstarError(
            f"{mixed[0]!r} is not a number: write the numbers and the target in digits, e.g. 4 9 10 13 -> 24"
        )
    return found


def parse_text(text: str, default_target: int | None) -> tuple[list[int], int]:
    """Numbers and target from free text: `4 9 10 13 -> 24`, `use 4 9 10 13 to make 24`, `4 9 10 13` (Game of
    24: the target is 24). Between the numbers only commas, brackets and `and` may stand, after them only `to`
    before the target: a word there (`nine`, `x`) is an error, not a number left out."""
    mark = TARGET_MARK.search(text)
    before, after = (text[: mark.start()], text[mark.end() :]) if mark else (text, "")
    found = whole_numbers(before)
    if found:
        spans = [m.span() for m in NUMBER.finditer(before)]
        inner = before[spans[0][0] : spans[-1][1]]  # the text from the first number to the last
        tail = before[spans[-1][1] :]  # from the last number to the target (`to` make 24), or to the end
        for where, stray, hint in (
            ("between", re.sub(r"\band\b", " ", NUMBER.sub(" ", inner)), "write them as digits, e.g. 4 9 10 13"),
            ("after", re.sub(r"\bto\b", " ", tail) if mark else tail, "write the problem as '4 9 10 13 -> 24'"),
        ):
            if stray.strip(" \t\n,;.:!?&[]()"):
                word = stray.replace(",", " ").split()[0]
                raise QstarError(f"{word!r} {where} the numbers of {text.strip()!r}: {hint}")
    if not found:
        where = "before the target " if mark else ""
        raise QstarError(f"no numbers {where}in {text.strip()!r}; write them as '4 9 10 13 -> 24'")
    numbers = parse_numbers(found)
    target = whole_numbers(after)
    if mark is None or not target:
        if default_target is None:
            raise QstarError(f"no target in {text.strip()!r}; write it as '4 9 10 13 -> 24'")
        return numbers, default_target
    again = TARGET_MARK.search(after)
    if again and whole_numbers(after[again.end() :]):
        raise QstarError(f"more than one target in {text.strip()!r}; write one, e.g. '4 9 10 13 -> 24'")
    return numbers, parse_target(target[0])


def load_file(path: Path, game: Callable[[list[int], int], tuple[list[int], int]] | None = None) -> list[Problem]:
    """Problems from a JSONL file of `{"numbers": [...], "target": N}` rows, each checked by `game` when given (the
    Game of 24: four numbers, target 24); errors name the line."""
    problems = []
    for lineno, row in numbered_jsonl(path):
        try:
            numbers = parse_numbers(row["numbers"])
            target = parse_target(row["target"])
            if game is not None:
                numbers, target = game(numbers, target)
        except (KeyError, TypeError, ValueError, QstarError) as e:
            detail = f"missing key {e}" if isinstance(e, KeyError) else str(e)
            raise QstarError(
                f'{path}:{lineno}: bad problem ({detail}); expected {{"numbers": [...], "target": N}}'
            ) from None
        problems.append(make_problem(str(row.get("id", f"{path.stem}-{lineno}")), numbers, target))
    if not problems:
        raise QstarError(f"{path}: no problems in file")
    return problems


@cache
def game24_rows() -> tuple[tuple[int, tuple[int, ...]], ...]:
    with open(DATA_DIR / "game24" / "24.csv", newline="") as f:
        return tuple((int(r["Rank"]), tuple(int(x) for x in r["Puzzles"].split())) for r in csv.DictReader(f))


def game24(split: str) -> list[Problem]:
    """`test`: ranks 901-1000, the 100 games Tree-of-Thoughts reports on; `train`: all other ranks."""
    in_test = {"test": True, "train": False}.get(split)
    if in_test is None:
        raise QstarError(f"game24 has splits train and test, not {split!r}")
    return [
        make_problem(f"game24-{rank}", list(nums), 24, rank=rank)
        for rank, nums in game24_rows()
        if (901 <= rank <= 1000) == in_test
    ]


def held_out_targets(targets: tuple[int, int], count: int, seed: int) -> list[int]:
    """The targets `val_target` uses and `train` never does."""
    lo, hi = targets
    return sorted(random.Random(f"countdown-held-out-{seed}").sample(range(lo, hi + 1), count))


def generated(
    split: str,
    size: int,
    targets: list[int],
    low: int = 1,
    high: int = 99,
    seed: int = 0,
) -> list[Problem]:
    """`size` solvable problems of four numbers in [low, high] and a target from `targets`, seeded by split."""
    rng = random.Random(f"countdown-{split}-{seed}")
    problems = []
    while len(problems) < size:
        numbers = [rng.randint(low, high) for _ in range(4)]
        target = rng.choice(targets)
        if is_solvable(numbers, target):
            problems.append(make_problem(f"countdown-{split}-{len(problems)}", numbers, target))
    return problems
