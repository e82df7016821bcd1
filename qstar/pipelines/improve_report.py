"""What `qstar improve` shows of a run after each iteration: the accuracy table on the terminal and `improve.png`
(accuracy per iteration, and search accuracy against tokens spent)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from qstar.io import figure, save_png


def table(rows: list[dict]) -> Table:
    t = Table(title="qstar improve: accuracy on the test split per iteration")
    for col in ("iteration", "greedy", "legal steps", "search", "search tokens", "scorer"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(
            str(r["iteration"]),
            f"{r['greedy_accuracy']:.1%}",
            f"{r['greedy_legal_step_rate']:.1%}",
            f"{r['search_accuracy']:.1%}",
            f"{r['search_tokens_per_problem']:.0f}",
            r["scorer"],
        )
    return t


def plot(rows: list[dict], out: Path, budget: int) -> None:
    its = [r["iteration"] for r in rows]
    fig, (a, b) = figure(ncols=2, figsize=(11, 4))
    a.plot(its, [r["greedy_accuracy"] for r in rows], marker="o", label="greedy")
    a.plot(its, [r["search_accuracy"] for r in rows], marker="o", label=f"{rows[0]['search']} search")
    a.set(xlabel="iteration", ylabel="test accuracy", ylim=(-0.02, 1.02), title="accuracy per iteration")
    a.set_xticks(its)
    for r in rows:
        b.scatter(r["search_tokens_per_problem"], r["search_accuracy"], label=f"iteration {r['iteration']}")
    most = max([budget, *(r["search_tokens_per_problem"] for r in rows)])
    b.set(
        xlabel="generated tokens per problem",
        ylabel="search accuracy",
        xlim=(0, most * 1.05),
        ylim=(-0.02, 1.02),
        title=f"accuracy vs tokens (budget {budget})",
    )
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    save_png(fig, out / "improve.png")
