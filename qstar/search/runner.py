"""Run searches over many problems with their model calls batched together."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from qstar.errors import BackendError, QstarError, blame, expect
from qstar.policy.base import Policy, takes, takes_seeds
from qstar.scorers.base import Scorer
from qstar.search.base import Commit, Context, Propose, Score, Search, SearchRun
from qstar.seeds import derive_seed
from qstar.tasks.base import Task
from qstar.types import Problem, Scores, Step, Tree


@dataclass(eq=False)
class Job:
    """One problem's search in flight: its generator, the request it waits on, and where its results go."""

    problem: Problem
    run: SearchRun
    on_tree: Callable[[Tree], None] | None = None
    on_commit: Callable[[list[Step]], None] | None = None  # the steps decided so far, each time more are
    seed: int | None = None
    request: Propose | Score | None = None
    sent: int = 0  # model requests sent so far: they number the seeds


class Batcher:
    """Many searches in flight, their waiting requests sent together by `step`: one policy call per (n,
    temperature) and one scorer call. Jobs join (`add`) and leave (`cancel`) between steps, so a server batches
    requests that arrive while others run.

    With `seed`, every prefix and path a job sends is seeded from the seed (or the job's own), its problem's id
    and the request's number within the job, so a tree does not depend on the other jobs, the batch size or the
    order; without, the policy's own stream draws the samples."""

    def __init__(self, task: Task, policy: Policy, scorer: Scorer | None = None, seed: int | None = None) -> None:
        self.task, self.policy, self.scorer, self.seed = task, policy, scorer, seed
        self.seeded = seed is not None and takes_seeds(policy.propose)
        self.distinct = takes(policy.propose, "distinct")  # else a request for distinct steps gets ordinary ones
        self.legal = bool(getattr(policy, "legal_steps", False))  # proposals keep to the task's legal next steps
        if self.legal and not hasattr(task, "legal_steps"):
            raise QstarError(f"the policy's legal_steps needs a task that lists its legal steps; {task.name} does not")
        self.scorer_seeded = seed is not None and scorer is not None and takes_seeds(scorer.score)
        self.jobs: list[Job] = []  # in the order they joined: the order of their prefixes in a call
        self.policy_calls = self.scorer_calls = 0

    def __len__(self) -> int:
        return len(self.jobs)

    def add(
        self,
        problem: Problem,
        search: Search,
        budget: int | None = None,
        on_tree: Callable[[Tree], None] | None = None,
        on_commit: Callable[[list[Step]], None] | None = None,
        seed: int | None = None,
    ) -> Job:
        """Start `search` on `problem` (seeded by `seed` instead of the batcher's where given; needs a seeded
        batcher); `on_tree` gets its tree when it ends (at once if it needs no model)."""
        ctx = Context(
            task=self.task,
            budget=budget,
            step_tokens=self.policy.max_step_tokens,
            score_tokens=self.scorer.max_tokens if self.scorer is not None else Context.score_tokens,
            legal=self.legal,
        )
        name = type(search).__name__
        with blame(f"search {name}"):
            run = search.run(problem, ctx)
        if not hasattr(run, "send"):
            raise QstarError(f"search {name}'s run must be a generator that yields requests, not {type(run).__name__}")
        job = Job(problem, run, on_tree, on_commit, self.seed if seed is None else seed)
        self.jobs.append(job)
        try:
            self.advance(job, None)
        except Exception:
            if job in self.jobs:  # not ended already
                self.jobs.remove(job)
            raise
        return job

    def cancel(self, job: Job) -> None:
        """Stop a job's search (its client went away); its callbacks are not called."""
        if job in self.jobs:
            job.run.close()
            self.jobs.remove(job)

    def advance(self, job: Job, reply) -> None:
        """Send the job's search its reply and keep the request it yields next (the task's judgement of each step
        runs inside it, so a task's or a search's exception is reported naming the problem)."""
        try:
            with blame(f"the search on problem {job.problem.id!r}"):
                request = job.run.send(reply)
                while isinstance(request, Commit):
                    if job.on_commit:
                        job.on_commit(request.node.path())
                    request = job.run.send(None)
        except StopIteration as stop:
            self.finish(job, stop.value)
            return
        if not isinstance(request, Propose | Score):
            raise QstarError(f"a search yields Propose or Score requests, not {type(request).__name__}")
        job.request = request

    def finish(self, job: Job, tree: Tree) -> None:
        if not isinstance(tree, Tree):
            raise QstarError(f"the search on problem {job.problem.id!r} returned {type(tree).__name__}, not a Tree")
        self.jobs.remove(job)
        if job.on_tree:
            job.on_tree(tree)

    def give_up(self, job: Job, error: str) -> None:
        """A model call for this job failed for good: its result is an empty tree that says why."""
        job.run.close()
        self.finish(job, Tree(job.problem, error=error))

    def seeds(self, members: list[Job], count: Callable[[Job], int]) -> list[int]:
        """One seed per prefix or path of the members' requests, in order."""
        return [derive_seed(job.seed, job.problem.id, job.sent, j) for job in members for j in range(count(job))]

    def step(self) -> None:
        """Send every waiting request, grouped into as few model calls as their kinds allow, and hand back the
        replies. A `BackendError` ends the jobs whose items failed; the others go on."""
        groups: dict[tuple, list[Job]] = {}
        for job in self.jobs:
            request = job.request
            if isinstance(request, Propose):
                key = ("propose", request.n, request.temperature, request.distinct and self.distinct)
            else:
                key = ("score",)
            groups.setdefault(key, []).append(job)
        for key, members in groups.items():
            failed: dict[int, str] = {}
            try:
                replies = self.propose(members, *key[1:]) if key[0] == "propose" else self.score(members)
            except BackendError as error:
                replies, failed = error.results, error.failed
            offset = 0
            for job in members:
                job.sent += 1
                request = job.request
                count = len(request.prefixes if isinstance(request, Propose) else request.paths)
                errors = [failed[j] for j in range(offset, offset + count) if j in failed]
                if errors:
                    self.give_up(job, errors[0])
                else:
                    self.advance(job, replies[offset : offset + count])
                offset += count

    def propose(self, members: list[Job], n: int, temperature: float, distinct: bool):
        self.policy_calls += 1
        prefixes = [p for job in members for p in job.request.prefixes]
        options: dict = {"distinct": True} if distinct else {}
        if self.legal:  # every job's context lists them
            options["allowed"] = [steps for job in members for steps in job.request.allowed or []]
        if self.seeded:
            options["seeds"] = self.seeds(members, lambda job: len(job.request.prefixes))
        name = f"policy {type(self.policy).__name__}"
        with blame(name):
            proposals = self.policy.propose(prefixes, n=n, temperature=temperature, **options)
        check_proposals(name, proposals, len(prefixes))
        return proposals

    def score(self, members: list[Job]):
        if self.scorer is None:
            raise QstarError("a search here asks for scores but no scorer was given")
        self.scorer_calls += 1
        problems = [job.problem for job in members for _ in job.request.paths]
        paths = [path for job in members for path in job.request.paths]
        seeds = {"seeds": self.seeds(members, lambda job: len(job.request.paths))} if self.scorer_seeded else {}
        name = f"scorer {type(self.scorer).__name__}"
        with blame(name):
            scores = self.scorer.score(problems, paths, **seeds)
        if not isinstance(scores, Scores) or not len(scores) == len(scores.tokens) == len(scores.calls) == len(paths):
            got = f"{len(scores)} values" if isinstance(scores, Scores) else type(scores).__name__
            raise QstarError(
                f"{name}'s score must return Scores with one value for each of the {len(paths)} paths, got {got}"
            )
        return scores


def check_proposals(name: str, proposals: object, prefixes: int) -> None:
    """A policy's reply is one list of `Step`s per prefix: anything else is a one-line error naming what came."""
    if not isinstance(proposals, list) or len(proposals) != prefixes:
        got = f"{len(proposals)} lists" if isinstance(proposals, list) else type(proposals).__name__
        raise QstarError(
            f"{name}'s propose must return one list of Steps for each of the {prefixes} prefixes, got {got}"
        )
    for row in proposals:
        wrong = row if not isinstance(row, list) else next((s for s in row if not isinstance(s, Step)), None)
        if wrong is not None:
            raise QstarError(f"{name}'s propose must return lists of Steps, got {type(wrong).__name__} {wrong!r:.60}")


def problem_list(problems: Iterable[Problem]) -> list[Problem]:
    """`problems` as a list, checked: Problems only (a lone Problem, or a string, is a one-line error)."""
    if isinstance(problems, Problem | str):
        raise QstarError(f"problems must be a list of Problems, not one {type(problems).__name__}: give [problem]")
    problems = list(problems)
    strays = sorted({type(p).__name__ for p in problems if not isinstance(p, Problem)})
    if strays:
        raise QstarError(f"problems must be a list of Problems, got {', '.join(strays)} among them")
    return problems


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
    """Keep up to `batch_size` problems in flight (a `Batcher`) until every one has its tree, in their order. A
    problem whose model call fails for good (a `BackendError`) ends with an empty tree whose `error` says why."""
    expect(search, "run", "search", "qstar.get_search(name)")
    expect(task, "check_step", "task", "qstar.get_task(name)")
    expect(policy, "propose", "policy", "qstar.load_policy(name)")
    problems = problem_list(problems)
    batcher = Batcher(task, policy, scorer, seed)
    trees: list[Tree | None] = [None] * len(problems)
    queue = iter(range(len(problems)))

    def done(i: int, tree: Tree) -> None:
        trees[i] = tree
        if on_tree:
            on_tree(tree)

    def refill() -> None:
        while len(batcher) < batch_size and (i := next(queue, None)) is not None:
            batcher.add(problems[i], search, budget, on_tree=lambda tree, i=i: done(i, tree))

    refill()
    while batcher:
        batcher.step()
        refill()
    return trees  # type: ignore[return-value]
