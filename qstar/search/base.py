"""What every search shares: the requests it yields, what it knows besides its problem, and the registry.

A search is a generator: it yields `Propose` and `Score` requests and receives the policy's steps or the
scorer's values, so one driver (`qstar.search.runner`) keeps many problems in flight and batches their
model calls together. A search that decides its answer step by step (greedy, beam) also yields `Commit`s.
The steps that grow a tree within its budget are in `qstar.search.steps`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol

from qstar.registry import Registry
from qstar.tasks.base import Task
from qstar.types import Node, Problem, Tree


@dataclass
class Propose:
    """Ask the policy for `n` next steps after each prefix."""

    prefixes: list[str]
    n: int = 1
    temperature: float = 0.0
    distinct: bool = False  # the n steps of a prefix sampled without replacement, where the policy can
    allowed: list[list[str] | None] | None = None  # each prefix's legal next steps, where proposals keep to them


@dataclass
class Score:
    """Ask the scorer for the value of each path (lists of step texts) of this tree's problem."""

    paths: list[list[str]]


@dataclass
class Commit:
    """No model call: the search has decided that its answer extends the path to `node` (a server streams it)."""

    node: Node


SearchRun = Generator[Propose | Score | Commit, Any, Tree]


@dataclass
class Context:
    """What a search may know besides its problem: the task, its budget and what requests can cost."""

    task: Task
    budget: int | None = None  # most generated tokens for this problem; None: the search's own limits only
    step_tokens: int = 48  # most tokens one proposed step can cost (the policy's cap)
    score_tokens: Callable[[Problem, list[str]], int] = lambda problem, path: 0  # the scorer's worst case
    legal: bool = False  # proposals keep to the task's legal next steps (a task that lists them, a policy that can)


class Search(Protocol):
    """A search algorithm; its dataclass fields are its hyper-parameters."""

    def run(self, problem: Problem, ctx: Context) -> SearchRun: ...


SEARCHES: Registry[Search] = Registry("search", "qstar.searches", Search)
register_search = SEARCHES.register


def get_search(name: str, **options: Any) -> Search:
    """The search registered as `name` with `options` (its hyper-parameters); unknown ones are a one-line error."""
    return SEARCHES.build(name, **options)
