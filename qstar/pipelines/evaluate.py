"""Evaluate a search with a policy and scorer on a task's problems: accuracy, compute spent, step legality."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from qstar.errors import QstarError, expect
from qstar.policy.base import Policy
from qstar.scorers.base import Scorer
from qstar.search import Search, run_search
from qstar.search.runner import problem_list
from qstar.tasks.base import Task
from qstar.types import Problem, Tree

if TYPE_CHECKING:
    from qstar.pipelines.workers import Workers


@dataclass
class EvalResult:
    """What `qstar eval` reports, averaged over seeds; `legal_step_rate` is the share of generated steps
    the step checker accepts."""

    n: int
    solved: float
    accuracy: float
    accuracy_std: float
    tokens_per_problem: float
    calls_per_problem: float
    legal_step_rate: float
    seconds: float
    seeds: int = 1
    failed: float = 0.0  # problems per seed whose search ended on a backend error (counted as unsolved)
    first_error: str | None = None  # why the first of them failed
    unfinished: float = 0.0  # problems per seed whose budget ran out before the search had a complete answer

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def all_failed(self) -> bool:
        """Every problem's search ended on a backend error: nothing was measured."""
        return self.n > 0 and self.failed >= self.n


def summarize(runs: list[list[Tree]], seconds: float) -> EvalResult:
    """Mean over runs (one per seed) of accuracy and compute; the spread is the std of accuracy."""
    accuracies = [sum(t.solved for t in trees) / max(len(trees), 1) for trees in runs]
    trees = [t for run in runs for t in run]
    steps = [node for tree in trees for node in tree.nodes() if node.step is not None]
    n = len(runs[0]) if runs else 0
    total = max(len(trees), 1)
    return EvalResult(
        n=n,
        solved=sum(t.solved for t in trees) / max(len(runs), 1),
        accuracy=statistics.fmean(accuracies) if accuracies else 0.0,
        accuracy_std=statistics.pstdev(accuracies) if len(accuracies) > 1 else 0.0,
        tokens_per_problem=sum(t.tokens for t in trees) / total,
        calls_per_problem=sum(t.calls for t in trees) / total,
        legal_step_rate=sum(node.legal for node in steps) / max(len(steps), 1),
        seconds=seconds,
        seeds=len(runs),
        failed=sum(t.error is not None for t in trees) / max(len(runs), 1),
        first_error=next((t.error for t in trees if t.error is not None), None),
        unfinished=sum(t.unfinished for t in trees) / max(len(runs), 1),
    )


def check_no_leak(task: Task, scorer: Scorer | None) -> None:
    """Refuse a scorer that reads the reference answer when evaluating: that would be grading with the key."""
    if scorer is not None and scorer.uses_verifier and task.verifier_needs_reference:
        raise QstarError(
            f"the {task.name} verifier needs the reference answer, so it may guide search only when generating "
            "training data, not in evaluation; choose a scorer that does not use it (checker, judge, prm, or value "
            "with ground_truth false)"
        )


def evaluate(
    task: Task,
    problems: list[Problem],
    policy: Policy,
    search: Search,
    scorer: Scorer | None = None,
    budget: int | None = None,
    seeds: int = 1,
    batch_size: int = 64,
    show_progress: bool = True,
    training_data: bool = False,
    workers: Workers | None = None,
    seed: int = 0,
) -> tuple[EvalResult, list[list[Tree]]]:
    """Run `search` on every problem (batched) once per seed (`seed`, `seed` + 1, ...) and summarise; the progress
    bar goes to stderr.
    Searching for `training_data` may use a verifier that reads the reference answer; an evaluation may not.
    With `workers` the problems are searched by their replicas of the models (the same trees; see
    `qstar.pipelines.workers`); `policy` and `scorer` are then this process's copies, used for the checks."""
    if seeds < 1 or batch_size < 1:
        raise QstarError(f"seeds and batch_size must be at least 1, not {seeds} and {batch_size}")
    expect(search, "run", "search", "qstar.get_search(name)")
    problems = problem_list(problems)
    if not training_data:
        check_no_leak(task, scorer)
    start = time.time()
    label = "search" if training_data else "eval"  # a data search is not an evaluation
    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("solved {task.fields[solved]}")]
    runs = []
    with Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True), disable=not show_progress) as progress:
        bar = progress.add_task(label, total=len(problems) * seeds, solved=0)
        solved = 0

        def on_tree(tree: Tree) -> None:
            nonlocal solved
            solved += tree.solved
            progress.update(bar, advance=1, solved=solved)

        for each in range(seed, seed + seeds):
            if workers is not None:
                runs.append(workers.search(search, problems, budget, each, on_tree))
                continue
            policy.seed(each)
            runs.append(run_search(search, problems, task, policy, scorer, budget, batch_size, on_tree, seed=each))
    return summarize(runs, time.time() - start), runs
