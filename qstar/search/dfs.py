"""Tree-of-Thoughts DFS: go deep on the most promising step, prune below a value threshold, backtrack."""

from __future__ import annotations

from dataclasses import dataclass

from qstar.search.base import Context, SearchRun, best, register
from qstar.search.beam import grow
from qstar.types import Node, Problem, Tree


@register("dfs")
@dataclass
class DFS:
    """Expand `k` steps, visit children by value, skip those under `threshold`; stop at an accepted solution."""

    k: int = 5
    threshold: float = 0.3  # children valued below this are pruned
    accept: float = 1.0  # a terminal step valued at least this ends the search
    temperature: float = 1.0
    max_expansions: int = 64

    def run(self, problem: Problem, ctx: Context) -> SearchRun:
        tree = Tree(problem)
        stack: list[Node] = [tree.root]
        finished: list[Node] = []
        for _ in range(self.max_expansions):
            if not stack:
                break
            node = stack.pop()
            children = yield from grow(tree, ctx, [node], self.k, self.temperature)
            if children is None:
                break
            ranked = sorted(children[0], key=lambda n: n.score or 0.0)  # best last: popped first
            finished += [c for c in ranked if c.terminal]
            if any(c.terminal and (c.score or 0.0) >= self.accept for c in ranked):
                break
            stack += [c for c in ranked if not c.terminal and (c.score or 0.0) >= self.threshold]
        tree.answer = best(finished) or best(stack)
        return tree
