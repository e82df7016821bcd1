"""Run one search over many problems with their model calls batched together."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from qstar.errors import BackendError
from qstar.policy.base import Policy
from qstar.scorers.base import Scorer
from qstar.search.base import Context, Propose, Score, Search, SearchRun
from qstar.tasks.base import Task
from qstar.types import Problem, Tree


def run_search(
    search: Search,
    problems: Iterable[Problem],
    task: Task,
    policy: Policy,
    scorer: Scorer | None = None,
    budget: int | None = None,
    batch_size: int = 64,
    on_tree: Callable[[Tree], None] | None = None,
) -> list[Tree]:
    """Keep up to `batch_size` problems in flight; each round sends all their pending requests as few calls:
    one policy call per (n, temperature) and one scorer call. A problem whose model call fails for good (a
    `BackendError`) ends with an empty tree whose `error` says why; the others go on."""
    problems = list(problems)
    ctx = Context(
        task=task,
        budget=budget,
        step_tokens=policy.max_step_tokens,
        score_tokens=scorer.max_tokens if scorer is not None else Context.score_tokens,
    )
    trees: list[Tree | None] = [None] * len(problems)
    waiting: dict[int, tuple[SearchRun, Propose | Score]] = {}
    queue = iter(range(len(problems)))

    def advance(i: int, run: SearchRun, reply) -> None:
        try:
            waiting[i] = (run, run.send(reply))
        except StopIteration as stop:
            trees[i] = stop.value
            waiting.pop(i, None)
            if on_tree:
                on_tree(stop.value)

    def give_up(i: int, run: SearchRun, error: str) -> None:
        """A model call for this problem failed for good: its result is an empty tree that says why."""
        run.close()
        waiting.pop(i)
        trees[i] = Tree(problems[i], error=error)
        if on_tree:
            on_tree(trees[i])

    def refill() -> None:
        while len(waiting) < batch_size and (i := next(queue, None)) is not None:
            advance(i, search.run(problems[i], ctx), None)

    refill()
    while waiting:
        groups: dict[tuple, list[int]] = {}
        for i, (_, request) in waiting.items():
            key = ("propose", request.n, request.temperature) if isinstance(request, Propose) else ("score",)
            groups.setdefault(key, []).append(i)
        for key, members in groups.items():
            failed: dict[int, str] = {}
            try:
                if key[0] == "propose":
                    prefixes = [p for i in members for p in waiting[i][1].prefixes]
                    replies = policy.propose(prefixes, n=key[1], temperature=key[2])
                else:
                    if scorer is None:
                        raise ValueError(f"{type(search).__name__} needs a scorer")
                    pairs = [(problems[i], path) for i in members for path in waiting[i][1].paths]
                    replies = scorer.score([p for p, _ in pairs], [path for _, path in pairs])
            except BackendError as error:
                replies, failed = error.results, error.failed
            offset = 0
            for i in members:
                run, request = waiting[i]
                count = len(request.prefixes if isinstance(request, Propose) else request.paths)
                errors = [failed[j] for j in range(offset, offset + count) if j in failed]
                if errors:
                    give_up(i, run, errors[0])
                else:
                    advance(i, run, replies[offset : offset + count])
                offset += count
        refill()
    return trees  # type: ignore[return-value]
