"""A* / Q* best-first search: expand the open node with the highest f = g + λ·h (Wang et al., 2024, "Q*")."""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

from qstar.config import check_ranges, option
from qstar.errors import QstarError
from qstar.search.base import Context, SearchRun, register_search
from qstar.search.steps import best, grow
from qstar.types import Node, Problem, Tree

AGGREGATIONS = ("min", "last", "prod", "logprob")


def g(node: Node, aggregation: str) -> float:
    """The path's accumulated utility: min / last / product of step scores, or the sum of step log-probs."""
    path = []
    while node.step is not None:
        path.append(node)
        node = node.parent
    if aggregation == "logprob":
        return sum(n.step.logprob for n in path)
    scores = [n.score if n.score is not None else 0.0 for n in path]
    if aggregation == "min":
        return min(scores, default=1.0)
    if aggregation == "last":
        return scores[0] if scores else 1.0
    return math.prod(scores)


@register_search("astar")
@dataclass
class AStar:
    """A* search: pop the best open node by f = g + λ·h (h: the scorer's value of the node), expand `k` children.

    The first terminal node popped is the answer, as in Q*; illegal steps and terminal steps scored 0 (a
    wrong final answer) never enter the open list.
    """

    k: int = option(4, "proposals under each expanded node")
    lam: float = option(1.0, "weight λ of the heuristic h (the scorer's value) in f = g + λ·h")
    aggregation: str = option("min", "g of a path from its steps: min, last, prod (of scores) or logprob")
    temperature: float = option(1.0, "sampling temperature of the proposals")
    max_expansions: int | None = option(
        None, "most nodes expanded (default: until the budget is spent; 64 without one)"
    )

    def __post_init__(self) -> None:
        check_ranges(self, ("k", "max_expansions"), ("temperature",))
        if self.aggregation not in AGGREGATIONS:
            raise QstarError(f"aggregation must be one of {AGGREGATIONS}, not {self.aggregation!r}")

    def f(self, node: Node) -> float:
        return g(node, self.aggregation) + self.lam * (node.score or 0.0)

    def run(self, problem: Problem, ctx: Context) -> SearchRun:
        tree = Tree(problem)
        tie = itertools.count()
        open_: list[tuple[float, int, Node]] = [(0.0, next(tie), tree.root)]
        limit = self.max_expansions or (None if ctx.budget else 64)
        for expansion in itertools.count():
            if not open_ or (limit is not None and expansion >= limit):
                break
            _, _, node = heapq.heappop(open_)
            if node.terminal:
                tree.answer = node
                return tree
            children = yield from grow(tree, ctx, [node], self.k, self.temperature)
            if children is None:
                break
            for child in children[0]:
                if child.legal and (child.score or not child.terminal):
                    heapq.heappush(open_, (-self.f(child), next(tie), child))
        terminals = [n for n in tree.nodes() if n.terminal]
        tree.answer = best(terminals) or best([n for _, _, n in open_])
        return tree
