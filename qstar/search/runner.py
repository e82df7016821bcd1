"""Run one search over many problems with their model calls batched together."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from qstar.errors import BackendError
from qstar.policy.base import Policy, takes_seeds
from qstar.scorers.base import Scorer
from qstar.search.base import Context, Propose, Score, Search, SearchRun
from qstar.seeds import derive_seed
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
    seed: int | None = None,
) -> list[Tree]:
    """Keep up to `batch_size` problems in flight; each round sends all their pending requests as few calls:
    one policy call per (n, temperature) and one scorer call. A problem whose model call fails for good (a
    `BackendError`) ends with an empty tree whose `error` says why; the others go on.

    With `seed`, every prefix and path a problem sends is seeded from the seed, the problem's id and the
    request's number within the problem, so a problem's tree does not depend on the other problems, the batch
    size or the order (runs sharded over workers give the trees of one run); without, the policy's own stream
    draws the samples."""
    problems = list(problems)
    seeded = seed is not None and takes_seeds(policy.propose)
    scorer_seeded = seed is not None and scorer is not None and takes_seeds(scorer.score)
    requests = [0] * len(problems)  # requests each problem has sent so far

    def seeds_of(members: list[int], count: Callable[[int], int]) -> list[int]:
        """One seed per prefix or path of the members' requests, in order."""
        return [derive_seed(seed, problems[i].id, requests[i], j) for i in members for j in range(count(i))]

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
                    if seeded:
                        seeds = seeds_of(members, lambda i: len(waiting[i][1].prefixes))
                        replies = policy.propose(prefixes, n=key[1], temperature=key[2], seeds=seeds)
                    else:
                        replies = policy.propose(prefixes, n=key[1], temperature=key[2])
                else:
                    if scorer is None:
                        raise ValueError(f"{type(search).__name__} needs a scorer")
                    pairs = [(problems[i], path) for i in members for path in waiting[i][1].paths]
                    args = [p for p, _ in pairs], [path for _, path in pairs]
                    if scorer_seeded:
                        replies = scorer.score(*args, seeds=seeds_of(members, lambda i: len(waiting[i][1].paths)))
                    else:
                        replies = scorer.score(*args)
            except BackendError as error:
                replies, failed = error.results, error.failed
            offset = 0
            for i in members:
                requests[i] += 1
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
