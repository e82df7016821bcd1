"""Searches over whole trajectories: greedy, sample (pass@k), self-consistency and best-of-N."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from qstar.config import check_ranges, option
from qstar.search.base import Commit, Context, SearchRun, register_search
from qstar.search.steps import affordable, affordable_prefix, affordable_steps, best, expand, score_nodes
from qstar.types import Node, Problem, Tree


def trajectories(tree: Tree, ctx: Context, count: int | None, temperature: float, max_steps: int):
    """Roll out up to `count` trajectories from the root in waves (all the budget allows when None).

    Each step advances every unfinished trajectory of the wave with one batched request; a trajectory ends
    at a terminal (complete or illegal) step. Returns the last node of each trajectory. A single trajectory
    commits to each step as it comes.
    """
    leaves: list[Node] = []
    wave = 1 if temperature == 0 else 16
    while count is None or len(leaves) < count:
        size = wave if count is None else min(wave, count - len(leaves))
        alive = [tree.root] * size
        for _ in range(max_steps):
            room = affordable_steps(tree, ctx, len(alive))
            if room < len(alive):  # the budget cannot pay for every trajectory's next step
                leaves += alive[room:]
                alive = alive[:room]
            if not alive:
                break
            nodes = [c for (c,) in (yield from expand(tree, ctx, alive, 1, temperature))]
            if count == 1:  # one trajectory: each step is the answer's
                yield Commit(nodes[0])
            leaves += [n for n in nodes if n.terminal]
            alive = [n for n in nodes if not n.terminal]
        leaves += alive
        if count is None and ctx.budget is None:
            break
        if (count is None or len(leaves) < count) and not affordable(tree, ctx, ctx.step_tokens):
            break
    return [leaf for leaf in leaves if leaf is not tree.root]


@dataclass
class Trajectories:
    """Shared fields of the whole-trajectory searches: `n` trajectories, or all the budget allows when None."""

    n: int | None = option(None, "trajectories (None: as many as the budget affords; 8 without a budget)")
    temperature: float = option(1.0, "sampling temperature")
    max_steps: int = option(16, "most steps in a trajectory")

    def __post_init__(self) -> None:
        check_ranges(self, ("n", "max_steps"), ("temperature",))

    unbudgeted_n: ClassVar[int] = 8  # how many when neither `n` nor a budget is given

    def sample(self, problem: Problem, ctx: Context):
        """Yields the policy requests; returns the tree and the last node of every trajectory."""
        tree = Tree(problem)
        n = self.n if self.n is not None or ctx.budget is not None else self.unbudgeted_n
        leaves = yield from trajectories(tree, ctx, n, self.temperature, self.max_steps)
        return tree, leaves


@register_search("greedy", temperature=0.0, n=1)
@register_search("sample", temperature=1.0)
@dataclass
class Sample(Trajectories):
    """Sampled trajectories, solved if any of them is right: pass@n. The answer is a verified trajectory if there
    is one, so this is an oracle upper bound unless n = 1 (`greedy` is n = 1 at temperature 0)."""

    n: int | None = option(None, "trajectories (None: as many as the budget affords; one, pass@1, without a budget)")
    unbudgeted_n: ClassVar[int] = 1

    def run(self, problem: Problem, ctx: Context) -> SearchRun:
        tree, leaves = yield from self.sample(problem, ctx)
        tree.answer = next((leaf for leaf in leaves if leaf.reward == 1.0), leaves[-1] if leaves else None)
        return tree


@register_search("self-consistency")
@dataclass
class SelfConsistency(Trajectories):
    """Majority vote over the final answers of the sampled trajectories (Wang et al., 2022); no scorer."""

    def run(self, problem: Problem, ctx: Context) -> SearchRun:
        tree, leaves = yield from self.sample(problem, ctx)
        finished = [leaf for leaf in leaves if leaf.terminal and leaf.legal]
        keys = {leaf: ctx.task.answer_key(problem, leaf.texts()) for leaf in finished}
        votes = Counter(k for k in keys.values() if k is not None)
        if votes:
            winner = votes.most_common(1)[0][0]
            tree.answer = max((leaf for leaf in finished if keys[leaf] == winner), key=lambda n: n.step.logprob)
        else:
            tree.answer = leaves[-1] if leaves else None
        return tree


@register_search("best-of-n")
@dataclass
class BestOfN(Trajectories):
    """Sampled trajectories; the answer is the complete one the scorer values most."""

    def run(self, problem: Problem, ctx: Context) -> SearchRun:
        tree, leaves = yield from self.sample(problem, ctx)
        finished = [leaf for leaf in dict.fromkeys(leaves) if leaf.terminal and leaf.legal]
        yield from score_nodes(tree, ctx, affordable_prefix(tree, ctx, finished))
        tree.answer = best(finished) or (leaves[-1] if leaves else None)
        return tree
