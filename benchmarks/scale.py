"""The same evaluation in one process and on 1 and 2 Ray workers: problems per second, the speed-up, what Ray
costs (start-up, and per problem the transfer and scheduling), and whether the figures are the same; then a
projection to 8 and 64 workers from what was measured.

    python benchmarks/scale.py                       # 200 countdown problems, MCTS at 2,000 tokens (~2 min)
    python benchmarks/scale.py --problems 400 --search best-of-n

One worker computes with one thread (Ray gives each a CPU); `qstar eval` itself uses every core's threads. What
Ray costs per problem is measured with a budget of 1 token, which no search can spend (every problem ends at
once): the time per problem on the workers minus that in this process is the shipping and scheduling alone.
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from qstar.pipelines.evaluate import evaluate
from qstar.pipelines.replica import Replica
from qstar.pipelines.workers import Workers
from qstar.search import get_search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=200, help="countdown val problems")
    parser.add_argument("--search", default="mcts", help="the search (its default hyper-parameters)")
    parser.add_argument("--budget", type=int, default=2000, help="tokens per problem")
    parser.add_argument("--project", type=int, default=100_000, help="problems in the projection")
    args = parser.parse_args()
    console = Console(width=120)
    replica = Replica("countdown", "tiny", "verifier")
    task, policy, scorer = replica.load()
    problems = task.problems("val", limit=args.problems)
    search = get_search(args.search)

    def run(workers: Workers | None = None, budget: int = args.budget) -> tuple[float, dict]:
        start = time.perf_counter()
        result, _ = evaluate(task, problems, policy, search, scorer, budget, show_progress=False, workers=workers)
        return time.perf_counter() - start, {k: v for k, v in result.to_dict().items() if k != "seconds"}

    threads = torch.get_num_threads()
    rows = []  # (setting, workers, start-up s, search s, figures, seconds of the budget-1 run)
    seconds, base = run()
    rows.append((f"this process, {threads} threads", 0, 0.0, seconds, base, run(budget=1)[0]))
    torch.set_num_threads(1)
    seconds, figures = run()
    rows.append(("this process, 1 thread", 0, 0.0, seconds, figures, run(budget=1)[0]))
    torch.set_num_threads(threads)
    for count in (1, 2):
        start = time.perf_counter()
        with Workers(replica, count) as workers:
            startup = time.perf_counter() - start
            seconds, figures = run(workers)
            empty = run(workers, budget=1)[0]
        rows.append((f"{count} Ray worker{'s' * (count > 1)}", count, startup, seconds, figures, empty))

    n = len(problems)
    table = Table(title=f"{args.search} at {args.budget} tokens on {n} countdown problems (2 CPU cores)")
    for col in ("setting", "start-up s", "search s", "problems/s", "speed-up", "overhead / problem", "same figures"):
        table.add_column(col, justify="right")
    for setting, count, startup, seconds, figures, empty in rows:
        overhead = f"{(empty - rows[0][5]) / n * 1000:.2f} ms" if count else "—"
        table.add_row(
            setting,
            f"{startup:.1f}" if count else "—",
            f"{seconds:.1f}",
            f"{n / seconds:.1f}",
            f"{rows[0][3] / seconds:.2f}x",
            overhead,
            "yes" if figures == base else "NO",
        )
    console.print(table)

    per_problem = rows[2][3] / n  # one worker's seconds per problem, on its one CPU
    startup = rows[-1][2]
    overhead = max(0.0, rows[-1][5] - rows[0][5]) / n * 2  # a worker's extra seconds per problem it ships
    projection = Table(
        title=f"projection (not measured): {args.project:,} problems, one CPU or GPU per worker, from the figures "
        f"above ({per_problem * 1000:.1f} ms a problem on one worker, {overhead * 1000:.2f} ms overhead, "
        f"{startup:.1f} s start-up)"
    )
    for col in ("workers", "hours", "problems/s", "speed-up over 1 worker"):
        projection.add_column(col, justify="right")
    single = args.project * (per_problem + overhead) + startup
    for count in (1, 8, 64):
        wall = args.project * (per_problem + overhead) / count + startup
        projection.add_row(str(count), f"{wall / 3600:.2f}", f"{args.project / wall:.1f}", f"{single / wall:.1f}x")
    console.print(projection)


if __name__ == "__main__":
    from entry import run

    run(main)
