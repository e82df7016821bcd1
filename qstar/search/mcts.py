"""MCTS with PUCT selection as in AlphaZero: policy priors, scorer values, backed-up means, visit counts."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from qstar.config import check_ranges, option
from qstar.search.base import Context, SearchRun, register_search
from qstar.search.steps import (
    affordable,
    affordable_prefix,
    best,
    expand,
    propose_cost,
    score_nodes,
    softmax_priors,
    unique,
)
from qstar.types import Node, Problem, Tree


def puct(parent: Node, child: Node, c: float) -> float:
    """Q + U: the child's mean value (its scorer value before any visit) plus the prior-weighted bonus."""
    q = child.value if child.visits else (child.score or 0.0)
    return q + c * child.prior * math.sqrt(parent.visits) / (1 + child.visits)


@register_search("mcts")
@dataclass
class MCTS:
    """Monte Carlo tree search: each simulation walks down by PUCT to a leaf, expands it with `k` proposals (a
    fixed number of children), scores them, and backs the leaf's value up the path. Terminal leaves back up
    their scored value."""

    simulations: int | None = option(
        None, "walks from the root, each expanding one leaf (default: until the budget is spent; 64 without one)"
    )
    k: int = option(4, "proposals under each expanded leaf (its children, fixed)")
    c_puct: float = option(1.0, "weight of the prior-guided exploration bonus in PUCT")
    temperature: float = option(1.0, "sampling temperature of the proposals")
    stop_on_solution: bool = option(True, "end once a terminal path scores 1 (the verifier accepted it)")

    def __post_init__(self) -> None:
        check_ranges(self, ("simulations", "k"), ("temperature", "c_puct"))

    def run(self, problem: Problem, ctx: Context) -> SearchRun:
        tree = Tree(problem)
        tree.root.score = 0.0
        limit = self.simulations or (None if ctx.budget else 64)
        idle = 0  # walks in a row that ended at a terminal leaf: past the tree's size, nothing is left to expand
        for walk in itertools.count():
            if (limit is not None and walk >= limit) or (idle and idle > sum(1 for _ in tree.nodes())):
                break
            path = [tree.root]
            while path[-1].children and not path[-1].terminal:
                parent = path[-1]
                path.append(max(parent.children, key=lambda ch, p=parent: puct(p, ch, self.c_puct)))
            leaf = path[-1]
            idle = idle + 1 if leaf.terminal else 0
            if not leaf.terminal:
                if not affordable(tree, ctx, propose_cost(ctx, [leaf], self.k)):
                    break
                (children,) = yield from expand(tree, ctx, [leaf], self.k, self.temperature)
                children = unique(children)
                softmax_priors(children)
                yield from score_nodes(tree, ctx, affordable_prefix(tree, ctx, children))
            value = leaf.score or 0.0
            for node in path:
                node.visits += 1
                node.value_sum += value
            solved = [n for n in leaf.children if n.terminal and n.score == 1.0]
            if self.stop_on_solution and (solved or (leaf.terminal and value == 1.0)):
                break
        terminals = [n for n in tree.nodes() if n.terminal]
        tree.answer = best(terminals) or most_visited_leaf(tree.root)
        return tree


def most_visited_leaf(node: Node) -> Node:
    while node.children:
        node = max(node.children, key=lambda n: n.visits)
    return node
