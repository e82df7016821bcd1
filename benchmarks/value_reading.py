"""The value model read through the lean decoder with a prefix cache, against the transformers forward on whole
paths, inside the data search that `qstar improve` runs (the demo's: a DFS trying 32 first steps, two below each,
never stopping early), both in the same run.

    python benchmarks/value_reading.py                  # 250 train puzzles, shipped models (~4 minutes)
    python benchmarks/value_reading.py --limit 64       # a quick look
    python benchmarks/value_reading.py --scorer prm     # the same model as a PRM: every step of a path read
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

from qstar.policy import load_policy
from qstar.scorers.prm import PRMScorer
from qstar.scorers.value import ValueScorer
from qstar.search import get_search, run_search
from qstar.tasks import get_task

DATA_SEARCH = {"root_k": 32, "k": 2, "threshold": 0.0, "accept": 2.0}


class Clock:
    """Adds up the seconds a scorer spends in the method that reads its model."""

    def __init__(self, scorer, method: str):
        self.seconds, self.inner = 0.0, getattr(scorer, method)
        setattr(scorer, method, self)

    def __call__(self, prompts, paths):
        start = time.perf_counter()
        out = self.inner(prompts, paths)
        self.seconds += time.perf_counter() - start
        return out


def scorer_of(kind: str, task, path: str, cache_mb: int):
    """The value model as `--scorer value` (its reading at the last step, the verifier deciding illegal and
    complete paths) or as `--scorer prm` (its reading at every step, the weakest one the path's value), with its
    model-reading method clocked."""
    if kind == "prm":
        scorer = PRMScorer(task, path=path, prefix_cache_mb=cache_mb)
        return scorer, Clock(scorer, "read_steps")
    scorer = ValueScorer(task, path=path, prefix_cache_mb=cache_mb)
    return scorer, Clock(scorer, "read")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=250, help="train puzzles searched")
    parser.add_argument("--policy", default="tiny", help="the policy (a shipped name or a folder)")
    parser.add_argument("--value", default="tiny-value", help="the value model (a shipped name or a folder)")
    parser.add_argument("--budget", type=int, default=3000, help="tokens per puzzle")
    parser.add_argument(
        "--scorer", choices=("value", "prm"), default="value", help="read as a value model or as a PRM (every step)"
    )
    args = parser.parse_args()
    task = get_task("game24")
    problems = task.problems("train", args.limit)
    policy = load_policy(args.policy)
    rows = []
    for label, cache_mb in (("transformers, whole paths", 0), ("lean, prefix cache", 1024)):
        scorer, clock = scorer_of(args.scorer, task, args.value, cache_mb)
        policy.seed(0)
        start = time.perf_counter()
        trees = run_search(get_search("dfs", **DATA_SEARCH), problems, task, policy, scorer, args.budget, 256, seed=0)
        seconds = time.perf_counter() - start
        solved = sum(t.solved for t in trees)
        rows.append((label, seconds, clock.seconds, solved, sum(t.tokens for t in trees) / len(trees)))
    name, short = {"value": ("value model", "value"), "prm": ("PRM", "PRM")}[args.scorer]
    table = Table(title=f"{name} reading in the data search: {args.limit} train puzzles, budget {args.budget}")
    for col in (f"{name} read by", "search s", "ratio", f"{short} s", "ratio", "solved", "tokens/puzzle"):
        table.add_column(col, justify="right")
    (_, base_search, base_value, _, _) = rows[0]
    for label, seconds, value_s, solved, tokens in rows:
        speed = (f"{seconds:.1f}", f"{base_search / seconds:.2f}x", f"{value_s:.1f}", f"{base_value / value_s:.2f}x")
        table.add_row(label, *speed, str(solved), f"{tokens:,.0f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    from entry import run

    run(main)
