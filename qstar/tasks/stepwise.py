"""Word problems solved one line per step, ending with "The answer is X." (GSM8K, MATH-style answers).

The shared rules: a step is one non-empty line; a solution is complete once a step states the answer (or the
step limit is reached); the verifier compares the stated answer with the reference, so it needs the
reference — in evaluation only the final result is scored, and search is guided by the policy, a PRM or
a judge. Subclasses say how to load problems, how to write a reference answer, and when two answers agree.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from qstar.tasks.base import QstarError, StepCheck
from qstar.types import Prefix, Problem

ANSWER = re.compile(r"the (?:final )?answer is[:\s]*(.+?)\s*\.?\s*$", re.IGNORECASE)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file (gzipped when it ends in .gz); a bad line is reported by its number."""
    if not path.is_file():
        raise QstarError(f"problems file not found: {path}")
    rows = []
    with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise QstarError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise QstarError(f"{path}:{lineno}: expected a JSON object")
            rows.append(row)
    return rows


def stated_answer(step: str) -> str | None:
    """The X of a step "... the answer is X." (case-insensitive), or None."""
    m = ANSWER.search(step.strip())
    return m[1].strip() if m else None


@dataclass
class StepByStep:
    """Base of the word-problem tasks; `problems_file` replaces the built-in splits with a JSONL file."""

    problems_file: str | None = None
    shots: int = 3  # worked examples in the prompt
    step_limit: int = 12
    max_step_chars: int = 400

    name: ClassVar[str]
    instruction: ClassVar[str]
    separator = "\n"
    verifier_needs_reference = True  # the verifier compares with the reference answer

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
        if self.problems_file:
            path = Path(self.problems_file)
            problems = [self.from_row(row, f"{path.stem}-{i}") for i, row in enumerate(read_jsonl(path))]
        else:
            problems = self.load(split)
        return problems[:limit] if limit is not None else problems

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

    def relabel(self, problem: Problem, steps: list[str]) -> Problem | None:
        return None  # a word problem cannot be rewritten to fit the answer reached

    def final_answer(self, problem: Problem, steps: list[str]) -> str | None:
        return stated_answer(steps[-1]) if steps else None
