"""GSM8K: grade-school word problems (OpenAI, MIT); the reference answer follows `####`, compared as a number."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from qstar.errors import QstarError
from qstar.io import read_jsonl
from qstar.tasks.base import register_task
from qstar.tasks.stepwise import StepByStep
from qstar.types import Problem

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
CALCULATOR = re.compile(r"<<[^>]*>>")
SPLITS = ("train", "test")


def number(text: str) -> Fraction | None:
    """The last number written in `text` ("$1,234.50" → 1234.5), exactly, or None."""
    found = NUMBER.findall(text)
    return Fraction(found[-1].replace(",", "")) if found else None


def solution_steps(answer: str) -> tuple[list[str], str]:
    """A GSM8K answer field as (steps, reference): one step per line, calculator notes removed, the number
    after `####` as the reference and a last step stating it."""
    if "####" not in answer:
        raise QstarError(f"a GSM8K answer must end with '#### <number>', got {answer[-60:]!r}")
    work, reference = answer.rsplit("####", 1)
    reference = reference.strip().replace(",", "")
    steps = [CALCULATOR.sub("", line).strip() for line in work.strip().splitlines() if line.strip()]
    return [*steps, f"The answer is {reference}."], reference


@cache
def load_split(split: str) -> tuple[Problem, ...]:
    path = Path(str(resources.files("qstar") / "data" / "gsm8k" / f"{split}.jsonl.gz"))
    return tuple(problem_from_row(row, f"gsm8k-{split}-{i:04d}") for i, row in enumerate(read_jsonl(path)))


def problem_from_row(row: dict[str, Any], pid: str) -> Problem:
    """`{"question": ..., "answer": "... #### 18"}` (GSM8K's own format) or a plain number as the answer."""
    if not isinstance(row.get("question"), str) or "answer" not in row:
        raise QstarError(f"problem {pid}: expected keys 'question' and 'answer'")
    answer = str(row["answer"])
    steps, reference = solution_steps(answer) if "####" in answer else ([], answer.strip())
    if number(reference) is None:
        raise QstarError(f"problem {pid}: the answer {reference!r} is not a number")
    return Problem(pid, row["question"].strip(), reference, {"solution": steps})


@register_task("gsm8k")
@dataclass
class GSM8K(StepByStep):
    """GSM8K's `train` (7,473) and `test` (1,319) splits, or a JSONL file of question/answer rows."""

    name = "gsm8k"
    instruction = (
        "Solve each math word problem step by step. Write one step per line and end with a line "
        '"The answer is <number>."'
    )

    def load(self, split: str) -> list[Problem]:
        if split not in SPLITS:
            raise QstarError(f"unknown gsm8k split {split!r}; choose from {', '.join(SPLITS)}")
        return list(load_split(split))

    def from_row(self, row: dict[str, Any], pid: str) -> Problem:
        return problem_from_row(row, pid)

    def parse_problem(self, text: str, answer: str | None = None) -> Problem:
        if answer is not None and number(str(answer)) is None:  # as a problems file's answer is checked
            raise QstarError(f"the answer {answer!r} is not a number: a GSM8K answer is one, e.g. --answer 18")
        return super().parse_problem(text, answer)

    def examples(self) -> list[tuple[str, list[str]]]:
        return [(p.prompt, p.meta["solution"]) for p in load_split("train")[: self.shots]]

    def equivalent(self, answer: str, reference: str) -> bool:
        a, r = number(answer), number(reference)
        return a is not None and a == r

    def normalize(self, answer: str) -> str:
        value = number(answer)
        return answer.strip() if value is None else str(value)
