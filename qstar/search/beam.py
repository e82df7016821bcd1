"""Step-level beam searches: Tree-of-Thoughts BFS (`beam`) and diverse verifier tree search (`dvts`)."""

from __future__ import annotations

from dataclasses import dataclass

from qstar.config import check_ranges, option
from qstar.search.base import Commit, Context, SearchRun, register_search
from qstar.search.steps import best, common_ancestor, grow, unique
from qstar.types import Problem, Tree


@register_search("beam")
@dataclass
class Beam:
    """Tree-of-Thoughts BFS: propose `k` steps under each of the `width` best partial solutions, keep the best."""

    width: int = option(5, "partial solutions kept at each depth")
    k: int = option(5, "proposals under each kept partial solution")
    temperature: float = option(1.0, "sampling temperature of the proposals")
    max_steps: int = option(16, "most steps deep")

    def __post_init__(self) -> None:
        check_ranges(self, ("width", "k", "max_steps"), ("temperature",))

    def run(self, problem: Problem, ctx: Context) -> SearchRun:
        tree = Tree(problem)
        frontier, finished = [tree.root], []
        decided = tree.root  # the answer is below it: every kept or finished path passes through it
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
            shared = common_ancestor(frontier + finished)
            if shared is not decided:
                decided = shared
                yield Commit(decided)
        tree.answer = best(finished) or best(frontier)
        return tree


@register_search("dvts")
@dataclass
class DVTS:
    """Diverse verifier tree search: `subtrees` independent greedy beams (width 1, `k` proposals a step)."""

    subtrees: int = option(4, "independent beams, one from each of the best first steps")
    k: int = option(4, "proposals at each step of a beam")
    temperature: float = option(1.0, "sampling temperature of the proposals")
    max_steps: int = option(16, "most steps deep")

    def __post_init__(self) -> None:
        check_ranges(self, ("subtrees", "k", "max_steps"), ("temperature",))

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
