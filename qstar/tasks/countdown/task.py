"""The countdown task: reach a target from a few numbers with + - * /, one operation per step (Game of 24 is a
preset). The rules are in `rules`, the problems in `problems`."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from qstar.config import option
from qstar.errors import QstarError
from qstar.registry import option_defaults
from qstar.tasks.base import StepCheck, checked_limit, register_task
from qstar.tasks.countdown import problems as source
from qstar.tasks.countdown.rules import check, expression, legal_moves, move_step
from qstar.types import Prefix, Problem

GENERATOR = ("low", "high", "targets", "held_out_targets", "seed", "sizes")  # options of the generated problems


def check_generator(low: int, high: int, targets: tuple[int, int], held_out: int, sizes: Mapping[str, int]) -> None:
    """The generator's options in range, as one-line errors before any problem is drawn."""
    if not 0 <= low <= high:
        raise QstarError(f"generated numbers are drawn from [low, high]: need 0 <= low <= high, not {low} and {high}")
    if len(targets) != 2 or not 0 <= targets[0] <= targets[1]:
        raise QstarError(f"targets is a range [lowest, highest] of whole numbers >= 0, not {list(targets)}")
    span = targets[1] - targets[0] + 1
    if not 0 <= held_out < span:
        raise QstarError(f"held_out_targets must be 0 to {span - 1} (the targets range holds {span}), not {held_out}")
    bad = next((name for name, size in sizes.items() if size < 0), None)
    if bad is not None:
        raise QstarError(f"sizes: the {bad} split's size must be 0 or more, not {sizes[bad]}")


@register_task("game24", preset="game24")
@register_task("countdown")
@dataclass
class Countdown:
    """Reach the target from the numbers, one operation (+ - * /) a step. `preset` picks the problems: `game24`
    or `countdown`; `problems_file` a JSONL file."""

    preset: str = option("countdown", "which problems: game24 (the 1,362 puzzles) or countdown (generated)")
    problems_file: str | None = option(None, 'a JSONL file of {"numbers": [...], "target": N} rows instead')
    low: int = option(1, "generated numbers are drawn from [low, high]")
    high: int = option(99, "generated numbers are drawn from [low, high]")
    targets: tuple[int, int] = option((10, 100), "generated targets are drawn from this range")
    held_out_targets: int = option(9, "targets never used in `train`, kept for `val_target`")
    seed: int = option(0, "seed of the generator and of the held-out targets")
    sizes: dict[str, int] = option({"train": 20_000, "val": 1000, "val_target": 1000}, "problems per generated split")

    separator: ClassVar[str] = "\n"
    verifier_needs_reference: ClassVar[bool] = False  # the verifier checks the arithmetic and the target
    problem_args: ClassVar[dict[str, dict[str, Any]]] = {
        "numbers": {"nargs": "+", "help": "countdown: the numbers to combine, e.g. 4 9 10 13"},
        "target": {"help": "countdown: the number to reach (game24: 24)"},
    }

    def __post_init__(self) -> None:
        if self.preset not in ("game24", "countdown"):
            raise QstarError(f"countdown presets are game24 and countdown, not {self.preset!r}")
        check_generator(self.low, self.high, self.targets, self.held_out_targets, self.sizes)
        if self.preset == "game24":  # its puzzles are fixed: a generator option would be ignored
            defaults = option_defaults(Countdown)
            changed = [name for name in GENERATOR if getattr(self, name) != defaults[name]]
            if changed:
                raise QstarError(f"{changed[0]} sets countdown's generated problems; game24 plays its fixed puzzles")

    @property
    def name(self) -> str:
        return self.preset

    @property
    def eval_split(self) -> str:
        """Game of 24: the 100 Tree-of-Thoughts test games; countdown: the held-out targets."""
        return "test" if self.preset == "game24" else "val_target"

    # ---- problems -------------------------------------------------------------------------------------

    def problems(self, split: str, limit: int | None = None) -> list[Problem]:
        limit = checked_limit(limit)
        if self.problems_file:
            problems = source.load_file(Path(self.problems_file), self.game)
        elif self.preset == "game24":
            problems = source.game24(split)
        else:
            problems = self.generated(split, limit)
        return problems[:limit] if limit is not None else problems

    @cached_property
    def held_out(self) -> list[int]:
        """The targets of `val_target`, never those of `train`."""
        return source.held_out_targets(self.targets, self.held_out_targets, self.seed)

    def generated(self, split: str, limit: int | None) -> list[Problem]:
        """Solvable problems from a seeded generator; `val_target` uses only the held-out targets."""
        if split not in self.sizes:
            raise QstarError(f"countdown has splits {', '.join(self.sizes)}, not {split!r}")
        lo, hi = self.targets
        targets = self.held_out if split == "val_target" else [t for t in range(lo, hi + 1) if t not in self.held_out]
        size = min(self.sizes[split], limit if limit is not None else self.sizes[split])
        return source.generated(split, size, targets, self.low, self.high, self.seed)

    def evaluation_problems(self) -> list[Problem]:
        """Both presets share one domain: the 100 test games and countdown's held-out targets stay unseen."""
        countdown = replace(self, preset="countdown", problems_file=None)
        return source.game24("test") + countdown.generated("val_target", None)

    def problem_key(self, problem: Problem) -> Hashable:
        """The same game whatever its id and number order: the numbers as a multiset, and the target."""
        return tuple(sorted(problem.meta["numbers"])), problem.meta["target"]

    def parse_problem(self, text: str, answer: str | None = None) -> Problem:
        numbers, target = source.parse_text(text, 24 if self.preset == "game24" else None)
        return self.given(numbers, target)

    def problem_from_args(self, args: Mapping[str, Any]) -> Problem:
        if args.get("problem"):
            return self.parse_problem(args["problem"])
        if not args.get("numbers"):
            raise QstarError(f"--numbers is required for {self.name} (or the problem as text: '4 9 10 13 -> 24')")
        if args.get("target") is None and self.preset != "game24":
            raise QstarError("--target is required for countdown")
        target = 24 if args.get("target") is None else source.parse_target(args["target"])
        return self.given(source.parse_numbers(args["numbers"]), target)

    def given(self, numbers: list[int], target: int) -> Problem:
        """A user's problem, checked (`game`), its id the problem itself (`4 9 10 13 -> 24`): the same problem
        given as text or by options is the same problem, and two different ones never share an id."""
        numbers, target = self.game(numbers, target)
        return source.make_problem(f"{' '.join(map(str, numbers))} -> {target}", numbers, target)

    def game(self, numbers: list[int], target: int) -> tuple[list[int], int]:
        """A user's numbers and target, checked: the Game of 24 is played with four numbers to 24 (countdown takes
        two or more, to any target)."""
        if self.preset == "game24" and len(numbers) != 4:
            shown = " ".join(map(str, numbers))
            raise QstarError(
                f"the Game of 24 takes four numbers, got {len(numbers)} ({shown}); --task countdown takes any"
            )
        if self.preset == "game24" and target != 24:
            raise QstarError(f"the Game of 24's target is 24, not {target}; --task countdown takes any")
        return numbers, target

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

    def state_key(self, problem: Problem, steps: list[str]) -> Hashable | None:
        """The numbers left (a multiset) and the target: all that decides how the play can go on."""
        left = self.left_after(problem, steps)
        return None if left is None else (tuple(sorted(left)), problem.meta["target"])

    def legal_steps(self, problem: Problem, steps: list[str]) -> list[str] | None:
        """Every legal next step in the canonical format (the move generator: rules, not a solver); None after an
        illegal or the last step."""
        numbers = self.left_after(problem, steps)
        if numbers is None or len(numbers) < 2:
            return None
        return list(dict.fromkeys(move_step(numbers, move)[0] for move in legal_moves(numbers)))

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
        return self.left_after(problem, steps) == [problem.meta["target"]]

    def max_steps(self, problem: Problem) -> int:
        return len(problem.meta["numbers"]) - 1

    def answer_key(self, problem: Problem, steps: list[str]) -> str | None:
        left = self.left_after(problem, steps)
        return str(left[0]) if left is not None and len(left) == 1 else None

    def relabel(self, problem: Problem, steps: list[str]) -> Problem | None:
        """Hindsight: the problem this legal complete play solves (its target set to the number reached); None where
        that number is one of `val_target`'s held-out targets, which training never sees."""
        left = self.left_after(problem, steps)
        if left is None or len(left) != 1 or left[0] in self.held_out:
            return None
        return source.make_problem(f"{problem.id}-to-{left[0]}", problem.meta["numbers"], left[0], hindsight=True)

    def final_answer(self, problem: Problem, steps: list[str]) -> str | None:
        """The full expression of a legal play that used every number, e.g. `(10 - 4) * (13 - 9)`; None when a step
        is illegal (a wrong result or numbers left), whatever the operations it names would build."""
        if self.left_after(problem, steps) is None:
            return None
        return expression(problem.meta["numbers"], steps)
