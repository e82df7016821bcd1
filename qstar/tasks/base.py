"""The Task protocol: what a search needs to know about a domain, and nothing about models.

A task owns everything particular to its domain: its problems and splits (and which split evaluates), how
a problem is told apart from another (the leak guard), how a problem is read from free text or command-line
options, the step format, the step checker and the verifier. `BaseTask` gives the defaults a small task needs.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from qstar.errors import QstarError, blame
from qstar.registry import Registry
from qstar.types import Prefix, Problem


@dataclass(frozen=True)
class StepCheck:
    """The step checker's verdict on one step: `ok`, and why not when it is not."""

    ok: bool
    reason: str = ""


class Task(Protocol):
    """A domain: gives problems, renders prompts for partial solutions, checks steps and verifies answers."""

    name: str
    separator: str  # ends every step; the policy stops generating at it
    verifier_needs_reference: bool  # True: the verifier reads the reference answer, so it may not guide eval
    eval_split: str  # the split `qstar improve` evaluates on
    problem_args: ClassVar[dict[str, dict[str, Any]]]  # `qstar solve` options that describe one problem

    def problems(self, split: str, limit: int | None = None) -> list[Problem]: ...

    def evaluation_problems(self) -> list[Problem]:
        """Every problem an evaluation of this domain uses: training data never holds one (the leak guard)."""
        ...

    def problem_key(self, problem: Problem) -> Hashable:
        """What makes two problems the same whatever their ids (countdown: the numbers as a multiset, the target)."""
        ...

    def parse_problem(self, text: str, answer: str | None = None) -> Problem:
        """A problem from free text (`qstar solve "4 9 10 13 -> 24"`, a server's message)."""
        ...

    def problem_from_args(self, args: Mapping[str, Any]) -> Problem:
        """A problem from `qstar solve`'s options: the free text `problem`, `answer`, and this task's `problem_args`."""
        ...

    def render(self, problem: Problem, steps: list[str]) -> str:
        """The policy's prompt for `problem` with `steps` already taken."""
        ...

    def check_step(self, problem: Problem, steps: list[str], step: str) -> StepCheck:
        """Process ground truth: may `step` follow the (legal) `steps`?"""
        ...

    def is_complete(self, problem: Problem, steps: list[str]) -> bool:
        """No further step can follow `steps`."""
        ...

    def verify(self, problem: Problem, steps: list[str]) -> bool:
        """Outcome ground truth: is this complete solution correct?"""
        ...

    def max_steps(self, problem: Problem) -> int:
        """The most steps a solution can have."""
        ...

    def answer_key(self, problem: Problem, steps: list[str]) -> str | None:
        """What a complete solution answers, for majority votes (countdown: the number reached)."""
        ...

    def relabel(self, problem: Problem, steps: list[str]) -> Problem | None:
        """Hindsight relabelling: a problem that this complete play solves, or None where the task has none."""
        ...

    def state_key(self, problem: Problem, steps: list[str]) -> Hashable | None:
        """What is left to solve after `steps`, where two partial solutions with one key have the same completions
        (countdown: the numbers left and the target), or None where the task cannot tell (a transposition table's
        key: a state one search proved solvable is solvable in every tree that reaches it)."""
        ...

    def final_answer(self, problem: Problem, steps: list[str]) -> str | None:
        """The answer a solution states (for countdown, the full expression), or None."""
        ...


class LegalSteps(Protocol):
    """A task that can also list every legal next step (countdown's move generator): a policy that keeps to the
    list (the tiny policy's `legal_steps`) never writes an illegal one."""

    def legal_steps(self, problem: Problem, steps: list[str]) -> list[str] | None:
        """Every legal step after the (legal) `steps`, or None where there is none to list (the play is over)."""
        ...


TASKS: Registry[Task] = Registry("task", "qstar.tasks", Task)
register_task = TASKS.register


def get_task(name: str, **options: Any) -> Task:
    """The task registered as `name`, made with `options` (e.g. `problems_file`)."""
    return TASKS.build(name, **options)


def checked_limit(limit: int | None) -> int | None:
    """A `problems(split, limit)` limit: None (all) or a count; a negative one is refused, not read from the end."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise QstarError(f"limit must be a whole number of problems, at least 0 (None: all), not {limit!r}")
    return limit


def load_problems(task: Task, split: str, limit: int | None = None) -> list[Problem]:
    """`task.problems(split, limit)`, checked: at least one `Problem`, no two with the same id (trees and records
    are keyed by it). A task's exception, or a reply of another shape, is a one-line error naming the task."""
    with blame(f"the problems of task {task.name!r}"):
        problems = task.problems(split, limit=limit)
    kinds = {type(p).__name__ for p in problems if not isinstance(p, Problem)} if isinstance(problems, list) else None
    if kinds is None or kinds:
        got = type(problems).__name__ if kinds is None else f"a list holding {', '.join(sorted(kinds))}"
        raise QstarError(f"the problems of task {task.name!r} must be a list of Problems, got {got}")
    if not problems:
        raise QstarError(f"task {task.name!r} has no problems in its {split!r} split")
    twice = next((i for i, n in Counter(p.id for p in problems).items() if n > 1), None)
    if twice is not None:
        raise QstarError(f"task {task.name!r} gives two problems the id {twice!r}; ids must tell problems apart")
    return problems


class BaseTask:
    """Defaults for a task written by subclassing: one step per line, a prompt of the question then the steps,
    problems told apart by their text and answer, free text taken as the question. Override what differs."""

    name: ClassVar[str] = "task"
    separator: ClassVar[str] = "\n"
    verifier_needs_reference: ClassVar[bool] = False
    eval_split: ClassVar[str] = "test"
    problem_args: ClassVar[dict[str, dict[str, Any]]] = {}

    def evaluation_problems(self) -> list[Problem]:
        return self.problems(self.eval_split)

    def problem_key(self, problem: Problem) -> Hashable:
        return " ".join(problem.prompt.lower().split()), problem.answer

    def parse_problem(self, text: str, answer: str | None = None) -> Problem:
        """The question as written; its id a digest of the question, so two different ones never share an id."""
        if not text.strip():
            raise QstarError(f"an empty problem for {self.name}")
        digest = hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:12]
        return Problem(f"text-{digest}", text.strip(), answer)

    def problem_from_args(self, args: Mapping[str, Any]) -> Problem:
        if not args.get("problem"):
            raise QstarError(f"give the {self.name} problem as text, e.g. qstar solve --task {self.name} '...'")
        return self.parse_problem(args["problem"], args.get("answer"))

    def render(self, problem: Problem, steps: list[str]) -> Prefix:
        return Prefix(f"{problem.prompt}\n", "".join(s + self.separator for s in steps))

    def answer_key(self, problem: Problem, steps: list[str]) -> str | None:
        return self.final_answer(problem, steps)

    def relabel(self, problem: Problem, steps: list[str]) -> Problem | None:
        return None

    def state_key(self, problem: Problem, steps: list[str]) -> Hashable | None:
        return None

    def final_answer(self, problem: Problem, steps: list[str]) -> str | None:
        return steps[-1] if steps else None
