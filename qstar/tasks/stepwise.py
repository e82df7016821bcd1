"""Word problems solved one line per step, ending with "The answer is X." (GSM8K, MATH-style answers).

The shared rules: a step is one non-empty line; a solution is complete once a step states the answer (or the
step limit is reached); the verifier compares the stated answer with the reference, so it needs the
reference — in evaluation only the final result is scored, and search is guided by the policy, a PRM or
a judge. Subclasses say how to load problems, how to write a reference answer, and when two answers agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from qstar.config import check_ranges, option
from qstar.errors import QstarError
from qstar.io import numbered_jsonl
from qstar.tasks.base import BaseTask, StepCheck, checked_limit
from qstar.types import Prefix, Problem

ANSWER = re.compile(r"the (?:final )?answer is[:\s]*(.+?)\s*\.?\s*$", re.IGNORECASE)


def stated_answer(step: str) -> str | None:
    """The X of a step "... the answer is X." (case-insensitive), or None."""
    m = ANSWER.search(step.strip())
    return m[1].strip() if m else None


@dataclass
class StepByStep(BaseTask):
    """Base of the word-problem tasks; `problems_file` replaces the built-in splits with a JSONL file."""

    problems_file: str | None = option(None, "a JSONL file of problems instead of the built-in splits")
    shots: int = option(3, "worked examples in the prompt")
    step_limit: int = option(12, "most steps in a solution")
    max_step_chars: int = option(400, "a longer step is illegal")

    instruction: ClassVar[str]

    def __post_init__(self) -> None:
        check_ranges(self, ("step_limit", "max_step_chars"), ("shots",))

    verifier_needs_reference: ClassVar[bool] = True  # the verifier compares with the reference answer
    problem_args: ClassVar[dict[str, dict[str, Any]]] = {
        "question": {"help": "word problems: the question to answer"},
        "answer": {"help": "word problems: the reference answer, to check the result"},
    }

    # ---- what subclasses provide ------------------------------------------------------------------------

    def load(self, split: str) -> list[Problem]:
        """The problems of a built-in split."""
        raise NotImplementedError

    def from_row(self, row: dict[str, Any], pid: str) -> Problem:
        """A problem from one JSONL row."""
        raise NotImplementedError

    def examples(self) -> list[tuple[str, list[str]]]:
        """Worked examples for the prompt: (question, steps ending with the answer step)."""
        raise NotImplementedError

    def equivalent(self, answer: str, reference: str) -> bool:
        raise NotImplementedError

    def normalize(self, answer: str) -> str:
        """A canonical form of an answer, for majority votes."""
        return answer.strip()

    # ---- the Task protocol ---------------------------------------------------------------------------------

    def problems(self, split: str, limit: int | None = None) -> list[Problem]:
        limit = checked_limit(limit)
        if self.problems_file:
            path = Path(self.problems_file)
            problems = []
            for i, (lineno, row) in enumerate(numbered_jsonl(path)):
                try:
                    problems.append(self.from_row(row, f"{path.stem}-{i}"))
                except QstarError as e:  # the line, as a problems file's other errors name it
                    raise QstarError(f"{path}:{lineno}: {e}") from None
        else:
            problems = self.load(split)
        return problems[:limit] if limit is not None else problems

    def problem_from_args(self, args: Mapping[str, Any]) -> Problem:
        text = args.get("question") or args.get("problem")
        if not text:
            raise QstarError(f"--question is required for {self.name} (or the question as text)")
        return self.parse_problem(text, args.get("answer"))

    def header(self) -> str:
        shots = [f"Question: {q}\nAnswer:\n" + "".join(s + "\n" for s in steps) for q, steps in self.examples()]
        return self.instruction + "\n\n" + "".join(s + "\n" for s in shots[: self.shots])

    def render(self, problem: Problem, steps: list[str]) -> Prefix:
        question = f"{self.header()}Question: {problem.prompt}\nAnswer:\n"
        return Prefix(question, "".join(s + self.separator for s in steps))

    def check_step(self, problem: Problem, steps: list[str], step: str) -> StepCheck:
        text = step.strip()
        if not text:
            return StepCheck(False, "empty step")
        if len(text) > self.max_step_chars:
            return StepCheck(False, f"step longer than {self.max_step_chars} characters")
        if text.startswith("Question:"):
            return StepCheck(False, "the step starts a new question")
        if steps and stated_answer(steps[-1]) is not None:
            return StepCheck(False, "the solution already stated its answer")
        return StepCheck(True)

    def is_complete(self, problem: Problem, steps: list[str]) -> bool:
        return bool(steps) and (stated_answer(steps[-1]) is not None or len(steps) >= self.step_limit)

    def verify(self, problem: Problem, steps: list[str]) -> bool:
        answer = self.final_answer(problem, steps)
        return answer is not None and problem.answer is not None and self.equivalent(answer, problem.answer)

    def max_steps(self, problem: Problem) -> int:
        return self.step_limit

    def answer_key(self, problem: Problem, steps: list[str]) -> str | None:
        answer = self.final_answer(problem, steps)
        return None if answer is None else self.normalize(answer)

    def final_answer(self, problem: Problem, steps: list[str]) -> str | None:
        return stated_answer(steps[-1]) if steps else None
