"""How far can training on the right first steps take the policy's greedy first step? A diagnostic of issue #12's
greedy target: each arm fine-tunes the policy on exact first-step labels of Game-of-24 puzzles (the exhaustive
solver decides which first steps keep a puzzle solvable: statistics only, never the data of a shipped model) and
measures greedy on the 100 test games (ranks 901-1,000 by difficulty) and on train puzzles of their difficulty
(ranks 801-900 and 1,001-1,100): the odd ranks left out of every arm's records, the even ones in them; and the
legal first step the policy finds likeliest as a whole (`first_steps.py`), in case decoding is what fails. Beside it,
the value model's pick among every legal first step, the same question asked of a discriminative model.

    python benchmarks/first_step_ceiling.py                          # the shipped models, every arm (~28 min)
    python benchmarks/first_step_ceiling.py --policy runs/x/policy --arms sft-all
"""

from __future__ import annotations

import argparse
import itertools
import random
import time

import torch
from first_steps import likeliest_legal_first_step, solvable  # the sibling benchmark (this folder is on sys.path)
from rich.console import Console
from rich.table import Table

from qstar.checkpoints import resolve
from qstar.models import load_causal_lm, load_tokenizer
from qstar.policy.tiny import TinyPolicy
from qstar.scorers.value import ValueScorer
from qstar.search import get_search, run_search
from qstar.tasks import get_task
from qstar.tasks.countdown.problems import make_problem
from qstar.tasks.countdown.rules import legal_moves, move_step
from qstar.tasks.countdown.solver import is_solvable
from qstar.train.config import DPOConfig, SFTConfig
from qstar.train.dpo import train_dpo
from qstar.train.sft import train_sft

TASK = get_task("game24")

# name: (puzzles, records, epochs, help)
ARMS = {
    "sft-all": ("train", "all", 3.0, "SFT on every solvable first step of the train puzzles but unseen ones, 3 epochs"),
    "sft-all-8": ("train", "all", 8.0, "the same, 8 epochs"),
    "sft-one": ("train", "one", 3.0, "SFT on one solvable first step a train puzzle (the first legal one), 3 epochs"),
    "sft-wide": ("wide", "all", 1.0, "SFT on every solvable first step of 12,000 target-24 puzzles of 1-25, 1 epoch"),
    "sft-wide-3": ("wide", "all", 3.0, "the same, 3 epochs"),
    "dpo": ("train", "pairs", 2.0, "step-DPO + NLL (sft_weight 1): up to 4 solvable first steps, each vs a dead one"),
}


def first_steps(problem) -> dict[str, bool]:
    """Every legal first step's text and whether the numbers it leaves can still make the target."""
    numbers, target = problem.meta["numbers"], problem.meta["target"]
    out = {}
    for move in legal_moves(numbers):
        step, left = move_step(numbers, move)
        out[step] = is_solvable(left, target)
    return out


def near_test(problems: list) -> tuple[list, list]:
    """Train puzzles of the test games' difficulty (ranks 801-900, 1,001-1,100): odd ranks (held out), even ones."""
    near = [p for p in problems if 800 < p.meta["rank"] <= 1100]
    return [p for p in near if p.meta["rank"] % 2], [p for p in near if not p.meta["rank"] % 2]


def puzzles(kind: str, test: list, unseen: list) -> list:
    """The train split, or (`wide`) 12,000 seeded target-24 puzzles of numbers 1-25; never a test or unseen one."""
    held = {tuple(sorted(p.meta["numbers"])) for p in test + unseen}
    if kind == "train":
        return [p for p in TASK.problems("train") if tuple(sorted(p.meta["numbers"])) not in held]
    sets = [s for s in itertools.combinations_with_replacement(range(1, 26), 4) if s not in held]
    random.Random(0).shuffle(sets)
    return [make_problem(f"wide-{i}", list(s), 24) for i, s in enumerate(sets[:12000])]


def records(problems: list, kind: str) -> list[dict]:
    """SFT records (every, or the first, solvable first step) or DPO pairs (up to 4 solvable against a dead one)."""
    rows = []
    for problem in problems:
        steps = first_steps(problem)
        good, dead = [s for s, ok in steps.items() if ok], [s for s, ok in steps.items() if not ok]
        prompt, sep = TASK.render(problem, []), TASK.separator
        if kind == "pairs":
            rng = random.Random(problem.id)
            pick = [g for g in good[:4] if dead]
            rows += [{"prompt": prompt, "chosen": g + sep, "rejected": rng.choice(dead) + sep} for g in pick]
        else:
            rows += [{"prompt": prompt, "completion": g + sep} for g in (good[:1] if kind == "one" else good)]
    return rows


def greedy(policy: TinyPolicy, problems: list, task=TASK) -> tuple[float, float]:
    """Greedy's accuracy and the share of its first steps that keep the puzzle solvable."""
    trees = run_search(get_search("greedy"), problems, task, policy)
    alive = sum(bool(path) and solvable(task, t.problem, path[0]) for t in trees for path in [t.best_path()])
    return sum(t.solved for t in trees) / len(trees), alive / len(trees)


def likeliest(policy: TinyPolicy, problems: list) -> float:
    """The share of problems whose legal first step the policy finds likeliest as a whole keeps them solvable."""
    return sum(is_solvable(likeliest_legal_first_step(policy, TASK, p)[1], 24) for p in problems) / len(problems)


def value_pick(path: str, problems: list, task=TASK) -> float:
    """The share of problems where the value model's best-scored legal first step keeps the puzzle solvable."""
    labelled = [first_steps(problem) for problem in problems]
    flat = [(problem, text) for problem, steps in zip(problems, labelled, strict=True) for text in steps]
    scores = iter(ValueScorer(task, path=path, ground_truth=False).values([p for p, _ in flat], [[t] for _, t in flat]))
    hits = 0
    for steps in labelled:
        mine = {text: next(scores) for text in steps}
        hits += steps[max(mine, key=mine.__getitem__)]
    return hits / len(problems)


def add_arms(parser: argparse.ArgumentParser, arms: dict[str, tuple]) -> None:
    """`--arms`: some of `arms` (name: settings ending in its help), every one by default."""
    help = "; ".join(f"{name}: {spec[-1]}" for name, spec in arms.items())
    parser.add_argument("--arms", default=",".join(arms), help=f"{help} (comma-separated)")


def chosen_arms(parser: argparse.ArgumentParser, value: str, arms: dict[str, tuple]) -> list[str]:
    """The arms `--arms` names, in its order; an unknown one is the parser's error."""
    chosen = [a.strip() for a in value.split(",") if a.strip()]
    unknown = [a for a in chosen if a not in arms]
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}: choose from {', '.join(arms)}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="tiny", help="the policy every arm starts from (default: the shipped one)")
    parser.add_argument("--value", default="tiny-value", help="the value model (default: the shipped one)")
    add_arms(parser, ARMS)
    args = parser.parse_args()
    arms = chosen_arms(parser, args.arms, ARMS)
    test = TASK.problems("test")
    unseen, seen = near_test(TASK.problems("train"))
    start = resolve(args.policy)
    table = Table(title=f"greedy's first step after training on exact first-step labels (from {args.policy})")
    cols = ("arm", "records", "seconds", "test: greedy", "first step", "vs start", "likeliest")
    cols += ("unseen: first step", "likeliest", "seen: first step", "likeliest")
    for col in cols:
        table.add_column(col, justify="left" if col == "arm" else "right")

    def row(name: str, policy: TinyPolicy, count: str, seconds: str, base: float | None) -> float:
        solved, alive = greedy(policy, test)
        table.add_row(
            name, count, seconds, f"{solved:.0%}", f"{alive:.0%}",
            f"{alive / base:.2f}x" if base else "1.00x", f"{likeliest(policy, test):.0%}",
            f"{greedy(policy, unseen)[1]:.0%}", f"{likeliest(policy, unseen):.0%}",
            f"{greedy(policy, seen)[1]:.0%}", f"{likeliest(policy, seen):.0%}",
        )  # fmt: skip
        return alive

    base = row("start", TinyPolicy.from_pretrained(start), "-", "-", None)
    for arm in arms:
        kind, form, epochs, _ = ARMS[arm]
        torch.manual_seed(0)
        model, tokenizer = load_causal_lm(start), load_tokenizer(start)
        data = records(puzzles(kind, test, unseen), form)
        began = time.time()
        if form == "pairs":
            cfg = DPOConfig(epochs=epochs, lr=1e-4, batch_size=64, beta=0.1, sft_weight=1.0)
            trained = train_dpo(model, tokenizer, data, cfg, quiet=True)
        else:
            trained = train_sft(model, tokenizer, data, SFTConfig(epochs=epochs, lr=5e-4, batch_size=64), quiet=True)
        row(arm, TinyPolicy(trained.model, tokenizer), f"{len(data):,}", f"{time.time() - began:.0f}", base)
    Console(width=160).print(table)
    picks = [value_pick(str(resolve(args.value)), problems) for problems in (test, unseen, seen)]
    print(f"{args.value}'s pick among every legal first step keeps the puzzle solvable: test {picks[0]:.0%}, "
          f"unseen {picks[1]:.0%}, seen {picks[2]:.0%}")  # fmt: skip


if __name__ == "__main__":
    from entry import run

    run(main)
