"""Step-level beam searches: Tree-of-Thoughts BFS (`beam`) and diverse verifier tree search (`dvts`)."""

from __future__ import annotations

from dataclasses import dataclass

from qstar.search.base import (
    Context,
    SearchRun,
    affordable,
    affordable_prefix,
    best,
    evaluate,
    expand,
    propose_cost,
    register,
    unique,
)
from qstar.types import Node, Problem, Tree


def grow(tree: Tree, ctx: Context, frontier: list[Node], k: int, temperature: float):
    """Expand every frontier node with `k` proposals and score the new children, the most likely first as far
    as the budget goes (the rest keep no score); None when the proposals themselves are unaffordable."""
    if not affordable(tree, ctx, propose_cost(ctx, frontier, k)):
        return None
    children = [unique(c) for c in (yield from expand(tree, ctx, frontier, k, temperature))]
    fresh = [c for cs in children for c in cs if c.score is None]
    yield from evaluate(tree, ctx, affordable_prefix(tree, ctx, fresh))
    return children


@register("beam")
@dataclass
class Beam:
    """Tree-of-Thoughts BFS: propose `k` steps under each of the `width` best partial solutions, keep the best."""

    width: int = 5
    k: int = 5
    temperature: float = 1.0
    max_steps: int = 16

    def run(self, problem: Problem, ctx: Context) -> SearchRun:
        tree = Tree(problem)
        frontier, finished = [tree.root], []
        for _ in range(self.max_steps):
            children = yield from grow(tree, ctx, frontier, self.k, self.temperature)
            if children is None:
                break
            pool = unique([c for cs in children for c in cs])
            finished += [c for c in pool if c.terminal]
            open_ = sorted((c for c in pool if not c.terminal), key=lambda n: -(n.score or 0.0))
            frontier = open_[: self.width]
            if not frontier:
                break
        tree.answer = best(finished) or best(frontier)
        return tree


@register("dvts")
@dataclass
class DVTS:
    """Diverse verifier tree search: `subtrees` independent greedy beams (width 1, `k` proposals a step)."""

    subtrees: int = 4
    k: int = 4
    temperature: float = 1.0
    max_steps: int = 16

    def run(self, problem: Problem, ctx: Context) -> SearchRun:
        tree = Tree(problem)
        roots = yield from grow(tree, ctx, [tree.root], self.subtrees, self.temperature)
        heads = sorted(roots[0], key=lambda n: -(n.score or 0.0))[: self.subtrees] if roots else []
        for _ in range(self.max_steps):
            open_ = [h for h in heads if not h.terminal]
            if not open_:
                break
            children = yield from grow(tree, ctx, open_, self.k, self.temperature)
            if children is None:
                break
            picked = iter(best(cs) or head for head, cs in zip(open_, children, strict=True))
            heads = [h if h.terminal else next(picked) for h in heads]
        tree.answer = best([h for h in heads if h.terminal]) or best(heads)
        return tree
