"""Search engine overhead and the equal-budget comparison of searches on Game of 24.

    python benchmarks/search.py                 # overhead table, then compare on the 100 test games (~30 min)
    python benchmarks/search.py --quick         # 20 games, 2 seeds, budgets 500,2000 (~3 min)
    python benchmarks/search.py --no-compare    # the overhead table only (~2 min)

Overhead: generated tokens/s inside each search (rollout scorer, tokens of rollouts included) relative to
the raw policy's tokens/s on a batch of 64 first-step prompts, measured in the same run. A ratio of 1.0
means the search engine costs nothing beyond the model calls it makes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from qstar.pipelines import compare
from qstar.policy import load_policy
from qstar.scorers import get_scorer
from qstar.search import SEARCHES, get_search, run_search
from qstar.tasks import get_task


def raw_rate(policy, prompts: list[str], repeats: int = 3) -> float:
    policy.propose(prompts, temperature=1.0)  # warm-up
    tokens, start = 0, time.perf_counter()
    for _ in range(repeats):
        tokens += sum(s.tokens for steps in policy.propose(prompts, temperature=1.0) for s in steps)
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small comparison instead of the full one")
    parser.add_argument("--budget", type=int, default=2000, help="tokens per problem for the overhead runs")
    parser.add_argument("--out", default="runs/bench-search", help="where the comparison files go")
    parser.add_argument("--no-compare", action="store_true", help="only the overhead table")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="each search's runs add up to at least this")
    args = parser.parse_args()
    console = Console(width=120)
    task, policy = get_task("game24"), load_policy("tiny")
    scorer = get_scorer("rollouts", task, policy)
    problems = task.problems("test")
    raw = raw_rate(policy, [task.render(p, []) for p in problems[:64]])

    table = Table(
        title=f"search throughput at budget {args.budget}, 64 games, rollout scorer (raw policy {raw:,.0f} tok/s)"
    )
    for col in ("search", "tokens/s", "ratio to raw", "solved", "tokens/problem"):
        table.add_column(col, justify="right")
    for name in SEARCHES:
        tokens, seconds, runs = 0, 0.0, 0
        while seconds < args.min_seconds:  # a short search (greedy: ~0.6 s) again, so one noisy run does not decide
            policy.seed(0)  # the same trees, the prefix cache emptied: the same work each time
            start = time.perf_counter()
            trees = run_search(get_search(name), problems[:64], task, policy, scorer, budget=args.budget)
            seconds += time.perf_counter() - start
            tokens, runs = tokens + sum(t.tokens for t in trees), runs + 1
        table.add_row(
            name,
            f"{tokens / seconds:,.0f}",
            f"{tokens / seconds / raw:.2f}",
            f"{sum(t.solved for t in trees)}/64",
            f"{tokens / runs / len(trees):.0f}",
        )
    console.print(table)
    if args.no_compare:
        return

    limit, seeds, budgets = (20, 2, [500, 2000]) if args.quick else (100, 3, [500, 2000, 8000])
    names = ["greedy", "best-of-n", "beam", "mcts", "astar"]
    rows = compare.compare(task, problems[:limit], policy, scorer, [(n, {}) for n in names], budgets, seeds)
    compare.write(rows, Path(args.out), f"game24/test, {limit} games, rollout scorer, {seeds} seeds")
    console.print(compare.table(rows))
    console.print(f"wrote {args.out}/compare.md, compare.json, compare.png")


if __name__ == "__main__":
    from entry import run

    run(main)
