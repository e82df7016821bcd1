"""MATH-style problems from any JSONL file of problem/answer rows, answers compared with `math-verify`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qstar.errors import QstarError
from qstar.tasks.base import register_task
from qstar.tasks.stepwise import StepByStep
from qstar.types import Problem

EXAMPLES = [
    (
        "What is the value of $x$ if $2x + 3 = 11$?",
        ["Subtract 3 from both sides: $2x = 8$.", "Divide both sides by 2: $x = 4$.", "The answer is $4$."],
    ),
    (
        "Simplify $\\frac{6}{8} + \\frac{1}{4}$.",
        [
            "Reduce the first fraction: $\\frac{6}{8} = \\frac{3}{4}$.",
            "Add: $\\frac{3}{4} + \\frac{1}{4} = 1$.",
            "The answer is $1$.",
        ],
    ),
    (
        "A right triangle has legs 3 and 3. What is the length of its hypotenuse?",
        [
            "By Pythagoras the hypotenuse is $\\sqrt{3^2 + 3^2} = \\sqrt{18}$.",
            "$\\sqrt{18} = 3\\sqrt{2}$.",
            "The answer is $3\\sqrt{2}$.",
        ],
    ),
]


def as_latex(answer: str) -> str:
    """Wrap a bare answer in $...$ so math-verify reads it as one LaTeX expression ("(3, 4)" stays a pair)."""
    return answer if "$" in answer or "\\boxed" in answer else f"${answer}$"


@register_task("math")
@dataclass
class Math(StepByStep):
    """MATH-style answers (numbers, fractions, radicals, intervals, ...): needs `--problems FILE.jsonl` with
    `problem` and `answer` keys (`question` is accepted for `problem`)."""

    name = "math"
    instruction = (
        "Solve each problem step by step. Write one step per line, using LaTeX for mathematics, and end with "
        'a line "The answer is $<answer>$."'
    )

    def load(self, split: str) -> list[Problem]:
        raise QstarError("the math task reads its problems from a file: pass --problems FILE.jsonl")

    def from_row(self, row: dict[str, Any], pid: str) -> Problem:
        text = row.get("problem", row.get("question"))
        if not isinstance(text, str) or row.get("answer") is None:
            raise QstarError(f"problem {pid}: expected keys 'problem' and 'answer'")
        return Problem(pid, text.strip(), str(row["answer"]).strip())

    def evaluation_problems(self) -> list[Problem]:
        return []  # no built-in split: the problems are the files a user evaluates on

    def examples(self) -> list[tuple[str, list[str]]]:
        return EXAMPLES

    def equivalent(self, answer: str, reference: str) -> bool:
        from math_verify import parse, verify

        gold, given = parse(as_latex(reference)), parse(as_latex(answer))
        return bool(gold) and bool(given) and verify(gold, given)

    def normalize(self, answer: str) -> str:
        from math_verify import parse

        parsed = parse(as_latex(answer))
        return str(parsed[0]) if parsed else answer.strip()
