"""Tree-of-Thoughts DFS: go deep on the most promising step, prune below a value threshold, backtrack."""

from __future__ import annotations

from dataclasses import dataclass

from qstar.config import check_ranges, option
from qstar.search.base import Context, SearchRun, register_search
from qstar.search.steps import affordable_steps, best, grow
from qstar.types import Node, Problem, Tree


@register_search("dfs-wide", root_k=16, k=2, threshold=0.02, widen=True, distinct=True)
@register_search("dfs")
@dataclass
class DFS:
    """Depth-first search: expand `k` steps (`root_k` at the root), visit children by value, skip those under
    `threshold`; stop at an accepted solution."""

    k: int = option(5, "proposals under each expanded node")
    root_k: int | None = option(None, "proposals for the first step (None: k); a wide root pays where it decides")
    threshold: float = option(0.3, "children valued below this are pruned")
    accept: float = option(1.0, "a terminal step valued at least this ends the search (above 1: explore on)")
    temperature: float = option(1.0, "sampling temperature of the proposals")
    distinct: bool = option(
        False,
        "a node's proposals sampled without replacement, k different steps (tiny and HF backends; a server's are "
        "samples, repeats possible)",
    )
    max_expansions: int = option(64, "most nodes expanded")
    widen: bool = option(False, "once the first steps are explored, propose more of them (while new ones come)")

    def __post_init__(self) -> None:
        check_ranges(self, ("k", "root_k", "max_expansions"), ("temperature",))

    def run(self, problem: Problem, ctx: Context) -> SearchRun:
        tree = Tree(problem)
        stack: list[Node] = [tree.root]
        finished: list[Node] = []
        seen: set[Node] = set()  # children already pushed or finished: a widened root repeats some of them
        for _ in range(self.max_expansions):
            if not stack:
                break
            node = stack.pop()
            k = self.k
            if node is tree.root:  # the first steps (and, widening, more of them): as many as the budget affords
                k = affordable_steps(tree, ctx, self.root_k if self.root_k is not None else self.k)
                if k < 1:
                    break
            children = yield from grow(tree, ctx, [node], k, self.temperature, self.distinct)
            if children is None:
                break
            fresh = (c for c in children[0] if c not in seen)
            ranked = sorted(fresh, key=lambda n: n.score or 0.0)  # best last: popped first
            seen.update(ranked)
            finished += [c for c in ranked if c.terminal]
            if any(c.terminal and (c.score or 0.0) >= self.accept for c in ranked):
                break
            if self.widen and node is tree.root and ranked:  # back to the root once these are explored
                stack.append(node)
            stack += [c for c in ranked if not c.terminal and (c.score or 0.0) >= self.threshold]
        tree.answer = best(finished) or best(stack)
        return tree
