"""Can the tiny value model rank countdown first steps for targets it never trained on, when its labels are exact?
A diagnostic of issue #12's countdown target: the countdown recipe's value model picks a solvable first step on
28% of `val_target` (README), and its labels are noisy (a first step is 1 only where the data search verified a
solution below it). Here the exhaustive solver labels every legal first step of countdown train problems solvable
or dead (statistics only, never the data of a shipped model); each arm fine-tunes the value model (`--value`: the
shipped one, or a policy given a fresh value head) on those labels and measures its pick among every legal first
step on train problems it trained on, on `val_target` (the nine held-out targets), on `val` (other problems of the
train targets) and on the Game-of-24 test games. Beside each: the share a random legal first step would keep
solvable.

    python benchmarks/value_ceiling.py                  # every arm (~56 min on 2 cores)
    python benchmarks/value_ceiling.py --arms countdown --limit 100
    python benchmarks/value_ceiling.py --value tiny-rules --arms countdown   # a fresh head on the rules-only policy
    python benchmarks/value_ceiling.py --arms countdown-2 --keep runs/vc   # kept for first_steps.py --value-auc
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from first_step_ceiling import add_arms, chosen_arms, first_steps, value_pick  # the sibling benchmark (on sys.path)
from rich.console import Console
from rich.table import Table

from qstar.checkpoints import resolve
from qstar.models import is_plain_policy, save_checkpoint, value_model_from
from qstar.tasks import get_task
from qstar.tasks.countdown.rules import legal_moves, move_step
from qstar.tasks.countdown.solver import is_solvable
from qstar.train.config import ValueConfig
from qstar.train.value import train_value

COUNTDOWN, GAME24 = get_task("countdown"), get_task("game24")

# name: (countdown train problems, with Game of 24's train puzzles, epochs, two-step paths a problem (0: every first
# step alone), help)
ARMS = {
    "countdown": (2000, False, 2.0, 0, "every legal first step of 2,000 countdown train problems, 2 epochs"),
    "countdown+24": (2000, True, 2.0, 0, "the same and every Game-of-24 train puzzle's first steps, 2 epochs"),
    "countdown-6": (2000, False, 6.0, 0, "every legal first step of 2,000 countdown train problems, 6 epochs"),
    "countdown-2": (
        2000,
        False,
        2.0,
        10,
        "10 sampled legal two-step paths of each of 2,000 countdown train problems, both steps labelled, 2 epochs",
    ),
}


def records(problems: list, task) -> list[dict]:
    """One value record per legal first step: 1 where the numbers it leaves can still make the target, else 0."""
    return [
        {"prompt": task.render(problem, []), "completions": [step], "labels": [float(ok)]}
        for problem in problems
        for step, ok in first_steps(problem).items()
    ]


def two_step_records(problems: list, task, per_problem: int) -> list[dict]:
    """`per_problem` of each problem's legal two-step paths (a seeded sample), each step labelled 1 where the numbers
    it leaves can still make the target, else 0."""
    rng = random.Random(0)
    out = []
    for problem in problems:
        numbers, target = problem.meta["numbers"], problem.meta["target"]
        paths = []
        for first in legal_moves(numbers):
            step, left = move_step(numbers, first)
            alive = float(is_solvable(left, target))
            for second in legal_moves(left):
                step2, left2 = move_step(left, second)
                labels = [alive, float(is_solvable(left2, target))]
                paths.append({"prompt": task.render(problem, []), "completions": [step, step2], "labels": labels})
        out += rng.sample(paths, min(per_problem, len(paths)))
    return out


def random_pick(problems: list) -> float:
    """The expected share of problems a uniformly random legal first step keeps solvable."""
    shares = [sum(steps.values()) / len(steps) for steps in map(first_steps, problems)]
    return sum(shares) / len(shares)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--value",
        default="tiny-value",
        help="the value model every arm starts from (default: shipped); a policy gets a fresh value head",
    )
    parser.add_argument(
        "--limit", type=int, default=300, help="problems of train, val_target and val measured (default 300)"
    )
    parser.add_argument("--keep", help="save each arm's value model in KEEP/ARM (e.g. for first_steps.py --value-auc)")
    add_arms(parser, ARMS)
    args = parser.parse_args()
    arms = chosen_arms(parser, args.arms, ARMS)
    splits = {
        "train (in the records)": (COUNTDOWN, COUNTDOWN.problems("train")[: args.limit]),
        "val_target": (COUNTDOWN, COUNTDOWN.problems("val_target")[: args.limit]),
        "val": (COUNTDOWN, COUNTDOWN.problems("val")[: args.limit]),
        "game24 test": (GAME24, GAME24.problems("test")),
    }
    start = str(resolve(args.value))
    table = Table(
        title=f"the value model's pick among every legal first step, trained on exact labels (from {args.value})"
    )
    for col in ("arm", "records", "seconds", *splits):
        table.add_column(col, justify="left" if col == "arm" else "right")
    table.add_row("a random legal first step", "-", "-", *(f"{random_pick(p):.1%}" for _, p in splits.values()))

    def row(name: str, path: str, count: str, seconds: str) -> None:
        table.add_row(name, count, seconds, *(f"{value_pick(path, p, task):.1%}" for task, p in splits.values()))

    if is_plain_policy(start):
        table.add_row(f"start: {args.value} is a policy, its value head fresh", "-", "-", *("-" for _ in splits))
    else:
        row("start", start, "-", "-")
    for arm in arms:
        count, with_24, epochs, per_problem, _ = ARMS[arm]
        problems = COUNTDOWN.problems("train")[:count]
        data = two_step_records(problems, COUNTDOWN, per_problem) if per_problem else records(problems, COUNTDOWN)
        if with_24:
            data += records(GAME24.problems("train"), GAME24)
        torch.manual_seed(0)
        model, tokenizer = value_model_from(start)
        began = time.time()
        trained = train_value(model, tokenizer, data, ValueConfig(epochs=epochs, lr=1e-3, batch_size=128), quiet=True)
        seconds = f"{time.time() - began:.0f}"
        kept = nullcontext(str(Path(args.keep) / arm)) if args.keep else None
        with kept or tempfile.TemporaryDirectory(prefix="qstar-value-ceiling-") as folder:
            save_checkpoint(trained.model, tokenizer, folder)
            row(arm, folder, f"{len(data):,}", seconds)
    Console(width=160).print(table)


if __name__ == "__main__":
    from entry import run

    run(main)
