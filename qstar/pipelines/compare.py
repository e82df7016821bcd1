"""`qstar compare`: several searches at several budgets over several seeds, as a table and a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from qstar.io import atomic_write, figure, save_png
from qstar.pipelines.evaluate import evaluate
from qstar.policy.base import Policy
from qstar.scorers.base import Scorer
from qstar.search import get_search
from qstar.tasks.base import Task
from qstar.types import Problem

if TYPE_CHECKING:
    from qstar.pipelines.workers import Workers


def compare(
    task: Task,
    problems: list[Problem],
    policy: Policy,
    scorer: Scorer,
    searches: list[tuple[str, dict]],
    budgets: list[int],
    seeds: int,
    batch_size: int = 64,
    workers: Workers | None = None,
    seed: int = 0,
) -> list[dict]:
    """One row per (search, budget): accuracy mean and spread over the seeds from `seed`, and the compute actually
    spent. `searches` are (name, hyper-parameters) pairs; `workers`, if given, run the searches (see `evaluate`)."""
    rows = []
    with Progress(console=Console(stderr=True)) as progress:
        bar = progress.add_task("compare", total=len(searches) * len(budgets))
        for name, options in searches:
            search = get_search(name, **options)
            for budget in budgets:
                result, _ = evaluate(
                    task, problems, policy, search, scorer, budget, seeds, batch_size, False, workers=workers, seed=seed
                )
                rows.append({"search": name, "search_args": options, "budget": budget, **result.to_dict()})
                progress.advance(bar)
    return rows


def table(rows: list[dict]) -> Table:
    t = Table(title="accuracy (mean ± std over seeds) at a budget of generated tokens per problem")
    failed = ("failed",) if any(r["failed"] for r in rows) else ()  # problems per seed whose backend kept failing
    unfinished = ("cut short",) if any(r["unfinished"] for r in rows) else ()  # the budget ran out before an answer
    for col in ("search", "budget", "accuracy", "tokens/problem", "calls/problem", *unfinished, *failed, "seconds"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(
            r["search"],
            str(r["budget"]),
            f"{r['accuracy']:.1%}" + (f" ± {r['accuracy_std']:.1%}" if r["seeds"] > 1 else ""),  # one seed: no spread
            f"{r['tokens_per_problem']:.0f}",
            f"{r['calls_per_problem']:.1f}",
            *(f"{r['unfinished']:g}" for _ in unfinished),
            *(f"{r['failed']:g}" for _ in failed),
            f"{r['seconds']:.1f}",
        )
    return t


def markdown(rows: list[dict], title: str) -> str:
    """The table as markdown under `title`; the cut-short and failed columns only where some row has them."""
    extra = [
        (key, head) for key, head in (("unfinished", "cut short"), ("failed", "failed")) if any(r[key] for r in rows)
    ]
    heads = ["search", "budget", "accuracy", "± std", "tokens/problem", "calls/problem", "legal steps"]
    heads += [head for _, head in extra]
    caption = f"qstar compare, {title}: accuracy (mean and std over seeds) at a budget of generated tokens per problem"
    lines = [caption, "", "| " + " | ".join(heads) + " |", "|---|" + "---:|" * (len(heads) - 1)]
    for r in rows:
        legal = f"{r['legal_step_rate']:.1%}" if r["calls_per_problem"] else "-"  # no step was generated
        cells = [r["search"], str(r["budget"]), f"{r['accuracy']:.1%}", f"{r['accuracy_std']:.1%}"]
        cells += [f"{r['tokens_per_problem']:.0f}", f"{r['calls_per_problem']:.1f}", legal]
        cells += [f"{r[key]:g}" for key, _ in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def tokens(row: dict) -> float:
    return row["tokens_per_problem"]


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Accuracy against tokens spent per problem, one line per search, the spread over seeds as error bars."""
    fig, ax = figure(figsize=(7, 4.5))
    for name in dict.fromkeys(r["search"] for r in rows):
        # a search that spent nothing at a budget has no place on a log axis (the table still shows it)
        mine = sorted((r for r in rows if r["search"] == name and r["tokens_per_problem"] > 0), key=tokens)
        ax.errorbar(
            [r["tokens_per_problem"] for r in mine],
            [r["accuracy"] for r in mine],
            yerr=[r["accuracy_std"] for r in mine],
            marker="o",
            capsize=3,
            label=name,
        )
    ax.set_xscale("log")
    ax.set_xlabel("generated tokens per problem")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_png(fig, path)


def write(rows: list[dict], out: Path, title: str) -> None:
    """compare.json (the rows), compare.md (the table under `title`) and compare.png (the plot) in `out`."""
    atomic_write(out / "compare.json", json.dumps(rows, indent=1).encode())
    atomic_write(out / "compare.md", markdown(rows, title).encode())
    plot(rows, out / "compare.png", title)
