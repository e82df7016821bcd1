"""A search driver on its own thread for a server: requests join a `Batcher` whenever they arrive, so requests
in flight together share model calls (continuous batching), and each request hears of its steps as they are
decided and of its tree when it is done."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from qstar.policy.base import Policy
from qstar.scorers.base import Scorer
from qstar.search.base import Search
from qstar.search.runner import Batcher, Job
from qstar.tasks.base import Task
from qstar.types import Problem, Step, Tree


@dataclass(eq=False)
class Ticket:
    """One submitted search: what it runs and where its news goes (called on the engine's thread)."""

    problem: Problem
    search: Search
    budget: int | None
    seed: int | None
    on_commit: Callable[[list[Step]], None]
    on_tree: Callable[[Tree], None]
    job: Job | None = field(default=None, repr=False)
    cancelled: bool = False
    prompt_tokens: int = 0  # the problem's prompt as the policy reads it, counted when the search starts


class Engine:
    """Runs every submitted search on one thread. A request that arrives while the engine is idle waits up to
    `window` seconds for others to share its first model calls; later arrivals join at the next step.
    `batch_size` searches are in flight at most, the rest queue in arrival order."""

    def __init__(
        self,
        task: Task,
        policy: Policy,
        scorer: Scorer | None,
        seed: int = 0,
        batch_size: int = 256,
        window: float = 0.01,
    ) -> None:
        self.batcher = Batcher(task, policy, scorer, seed)
        self.batch_size, self.window = batch_size, window
        self.inbox: queue.SimpleQueue[Ticket | None] = queue.SimpleQueue()
        self.waiting: list[Ticket] = []  # submitted, not yet in the batcher (it is full)
        self.thread = threading.Thread(target=self.loop, name="qstar-engine", daemon=True)

    @property
    def policy_calls(self) -> int:
        return self.batcher.policy_calls

    @property
    def scorer_calls(self) -> int:
        return self.batcher.scorer_calls

    @property
    def in_flight(self) -> int:
        return len(self.batcher) + len(self.waiting)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.inbox.put(None)
        self.thread.join(timeout=10)

    def submit(self, ticket: Ticket) -> Ticket:
        """Queue a search (thread-safe); its callbacks run on the engine's thread."""
        self.inbox.put(ticket)
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """Stop a search whose client went away (thread-safe): it leaves before the next step."""
        ticket.cancelled = True
        self.inbox.put(ticket)

    def loop(self) -> None:
        while True:
            if not self.batcher and not self.waiting:
                first = self.inbox.get()  # idle: sleep until a request comes
                if first is None:
                    return
                self.inbox.put(first)
                time.sleep(self.window)  # let the requests arriving with it share its calls
            if not self.take_inbox():
                return
            self.admit()
            if self.batcher:
                self.step()

    def take_inbox(self) -> bool:
        """Move what arrived into `waiting` and drop what was cancelled; False when asked to stop."""
        while True:
            try:
                ticket = self.inbox.get_nowait()
            except queue.Empty:
                return True
            if ticket is None:
                return False
            if not ticket.cancelled:
                self.waiting.append(ticket)
            elif ticket.job is not None:
                self.batcher.cancel(ticket.job)
            elif ticket in self.waiting:
                self.waiting.remove(ticket)

    def admit(self) -> None:
        while self.waiting and len(self.batcher) < self.batch_size:
            ticket = self.waiting.pop(0)
            ticket.prompt_tokens = self.count_prompt(ticket.problem)
            try:
                ticket.job = self.batcher.add(
                    ticket.problem, ticket.search, ticket.budget, ticket.on_tree, ticket.on_commit, ticket.seed
                )
            except Exception as error:  # a search that fails on this problem fails its request only
                ticket.on_tree(Tree(ticket.problem, error=f"{type(error).__name__}: {error}"))

    def count_prompt(self, problem: Problem) -> int:
        """The tokens of the problem's prompt as the policy reads them (a server: one 1-token request); 0 when the
        policy cannot tell. A count that fails never fails the request."""
        try:
            count = getattr(self.batcher.policy, "prompt_tokens", None)
            return (count(self.batcher.task.render(problem, [])) if count else None) or 0
        except Exception:
            return 0

    def step(self) -> None:
        try:
            self.batcher.step()
        except Exception as error:  # not a backend error (those end their own jobs): fail this round's jobs
            for job in list(self.batcher.jobs):
                self.batcher.give_up(job, f"{type(error).__name__}: {error}")
