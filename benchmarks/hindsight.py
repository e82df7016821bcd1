"""Does hindsight teach countdown's targets? Each arm fine-tunes the policy (TRL's SFT) on random legal plays, each
relabelled with the number it reaches as its target (countdown's targets 10-100, never one of `val_target`'s nine
held-out targets, never an evaluation or `val` problem): problems of every target, solved by construction, with
no solver and no search. Then greedy on countdown `val_target` and on the Game-of-24 test games, against the start.

    python benchmarks/hindsight.py                       # the shipped policy, 12,800 and 38,400 plays (~20 min)
    python benchmarks/hindsight.py --plays 1000 --limit 100   # a quick look
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from first_step_ceiling import greedy  # the sibling benchmark (this folder is on sys.path when run as a script)
from rich.console import Console
from rich.table import Table

from qstar.checkpoints import resolve
from qstar.models import load_causal_lm, load_tokenizer
from qstar.policy.tiny import TinyPolicy
from qstar.tasks import get_task
from qstar.tasks.countdown import make_problem, random_play
from qstar.train.config import SFTConfig
from qstar.train.sft import train_sft

COUNTDOWN, GAME24 = get_task("countdown"), get_task("game24")


def plays(count: int, game24_share: float, seed: int) -> list[dict]:
    """`count` SFT records: four numbers (1-13 for a `game24_share` of them, else 1-99), one random legal play that
    keeps its results within 100, and as its problem the numbers and the number it reached, where that is a training
    target of countdown (10-100, not held out) and the problem no evaluation or `val` one."""
    rng = random.Random(seed)
    lo, hi = COUNTDOWN.targets
    banned = {COUNTDOWN.problem_key(p) for p in COUNTDOWN.evaluation_problems() + COUNTDOWN.problems("val")}
    records = []
    while len(records) < count:
        numbers = [rng.randint(1, 13 if rng.random() < game24_share else 99) for _ in range(4)]
        steps = random_play(numbers, rng, bound=100)
        problem = COUNTDOWN.relabel(make_problem("", numbers, 0), steps)  # None on a held-out target
        if problem is None or not lo <= problem.meta["target"] <= hi or COUNTDOWN.problem_key(problem) in banned:
            continue
        completion = "".join(step + COUNTDOWN.separator for step in steps)
        records.append({"prompt": COUNTDOWN.render(problem, []), "completion": completion})
    return records


def ratio(now: float, then: float) -> str:
    return f"{now / then:.2f}x" if then else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="tiny", help="the policy every arm starts from (default: the shipped one)")
    parser.add_argument("--plays", default="12800,38400", help="relabelled plays an arm trains on (comma-separated)")
    parser.add_argument("--epochs", type=float, default=1.0, help="passes over an arm's plays")
    parser.add_argument("--lr", type=float, default=5e-4, help="peak learning rate of the fine-tuning")
    parser.add_argument("--game24-share", type=float, default=0.3, help="share of plays on numbers 1-13")
    parser.add_argument("--limit", type=int, default=1000, help="countdown val_target problems measured")
    args = parser.parse_args()
    counts = [int(c) for c in args.plays.split(",") if c.strip()]
    val_target, test = COUNTDOWN.problems("val_target", args.limit), GAME24.problems("test")
    start = resolve(args.policy)
    title = f"greedy after SFT on random legal plays relabelled with the target they reach (from {args.policy})"
    table = Table(title=title)
    cols = ("plays", "seconds", "val_target: greedy", "vs start", "first step", "game24 test: greedy", "vs start")
    for col in cols:
        table.add_column(col, justify="right")

    def row(name: str, policy: TinyPolicy, seconds: str, base: tuple[float, float] | None) -> tuple[float, float]:
        (countdown, alive), (game24, _) = greedy(policy, val_target, COUNTDOWN), greedy(policy, test, GAME24)
        then = base or (countdown, game24)  # the start is its own baseline
        table.add_row(
            name, seconds, f"{countdown:.1%}", ratio(countdown, then[0]), f"{alive:.1%}",
            f"{game24:.0%}", ratio(game24, then[1]),
        )  # fmt: skip
        return countdown, game24

    base = row("start", TinyPolicy.from_pretrained(start), "-", None)
    for count in counts:
        torch.manual_seed(0)
        model, tokenizer = load_causal_lm(start), load_tokenizer(start)
        data = plays(count, args.game24_share, seed=0)
        began = time.time()
        cfg = SFTConfig(epochs=args.epochs, lr=args.lr, batch_size=64, warmup=50)
        trained = train_sft(model, tokenizer, data, cfg, quiet=True)
        row(f"{count:,}", TinyPolicy(trained.model, tokenizer), f"{time.time() - began:.0f}", base)
    Console(width=160).print(table)


if __name__ == "__main__":
    from entry import run

    run(main)
