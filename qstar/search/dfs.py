"""Tree-of-Thoughts DFS: go deep on the most promising step, prune below a value threshold, backtrack."""

from __future__ import annotations

from dataclasses import dataclass

from qstar.search.base import Context, SearchRun, best, register
from qstar.search.beam import grow
from qstar.types import Node, Problem, Tree


@register("dfs-wide", root_k=16, k=1, threshold=0.02, widen=True)
@register("dfs")
@dataclass
class DFS:
    """Expand `k` steps (`root_k` at the root), visit children by value, skip those under `threshold`; stop at
    an accepted solution."""

    k: int = 5
    root_k: int | None = None  # proposals for the first step (None: k); a wide root pays where the first step decides
    threshold: float = 0.3  # children valued below this are pruned
    accept: float = 1.0  # a terminal step valued at least this ends the search
    temperature: float = 1.0
    max_expansions: int = 64
    widen: bool = False  # once the first steps are explored, propose more of them (while new ones come)

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
            if node is tree.root:
                k = self.root_k if self.root_k is not None else self.k
                if node.children and ctx.budget is not None:  # widening: as many as the budget affords
                    k = min(k, (ctx.budget - tree.tokens) // ctx.step_tokens)
                    if k < 1:
                        break
            children = yield from grow(tree, ctx, [node], k, self.temperature)
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
