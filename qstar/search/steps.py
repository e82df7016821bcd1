"""The steps that grow a search tree, shared by every search: propose children, judge them by the task, score
them, pick the best. Every request is paid for from the tree's budget before it is made, at its worst case,
so a search never spends more generated tokens than it was given. Each generator here yields its requests;
use it with `yield from`.
"""

from __future__ import annotations

import math
from typing import cast

from qstar.search.base import Context, Propose, Score
from qstar.tasks.base import LegalSteps, Task
from qstar.types import Node, Problem, Scores, Step, Tree


def affordable(tree: Tree, ctx: Context, tokens: int) -> bool:
    """Whether the budget can pay for `tokens` more; a refusal is recorded on the tree (`out_of_budget`)."""
    ok = ctx.budget is None or tree.tokens + tokens <= ctx.budget
    tree.out_of_budget |= not ok
    return ok


def affordable_steps(tree: Tree, ctx: Context, wanted: int) -> int:
    """How many of `wanted` proposed steps the budget can pay for; fewer is recorded on the tree."""
    can = wanted if ctx.budget is None else min(wanted, max(0, (ctx.budget - tree.tokens) // ctx.step_tokens))
    tree.out_of_budget |= can < wanted
    return can


def extend(task: Task, problem: Problem, node: Node, step: Step) -> Node:
    """Add `step` under `node`, judged by the task: legal, terminal, and the verifier's reward when terminal.

    The reward is ground truth for evaluation and training data; searches choose by scorer values only.
    """
    before = node.texts()
    legal = task.check_step(problem, before, step.text).ok
    after = [*before, step.text]
    terminal = not legal or task.is_complete(problem, after)
    child = node.add_child(step, prior=float(step.logprob), legal=legal, terminal=terminal)
    if terminal:
        child.reward = 1.0 if legal and task.verify(problem, after) else 0.0
    return child


def expand(tree: Tree, ctx: Context, nodes: list[Node], n: int = 1, temperature: float = 0.0, distinct: bool = False):
    """Propose `n` steps under each node (`distinct`: without replacement, where the policy can; `ctx.legal`: only
    the task's legal next steps); returns, per node, the child each proposal leads to.

    A step text already under the node leads to the existing child, so repeats can be counted (votes) or
    dropped (`unique`). Yields one `Propose`; use with `yield from`. Callers check `affordable` first.
    """
    if not nodes:
        return []
    prompts = [ctx.task.render(tree.problem, node.texts()) for node in nodes]
    lister = cast(LegalSteps, ctx.task)
    allowed = [lister.legal_steps(tree.problem, node.texts()) for node in nodes] if ctx.legal else None
    proposals = yield Propose(prompts, n, temperature, distinct, allowed)
    tree.tokens += sum(step.tokens for steps in proposals for step in steps)
    tree.calls += len(proposals)
    children = []
    for node, steps in zip(nodes, proposals, strict=True):
        seen = {c.step.text: c for c in node.children}
        for step in steps:
            if step.text not in seen:
                seen[step.text] = extend(ctx.task, tree.problem, node, step)
        children.append([seen[step.text] for step in steps])
    return children


def unique(nodes: list[Node]) -> list[Node]:
    return list(dict.fromkeys(nodes))


def propose_cost(ctx: Context, nodes: list[Node], n: int = 1) -> int:
    return len(nodes) * n * ctx.step_tokens


def score_nodes(tree: Tree, ctx: Context, nodes: list[Node]):
    """Score the nodes' paths, store each value as `node.score`, return the values. Yields one `Score`."""
    if not nodes:
        return []
    scores: Scores = yield Score([node.texts() for node in nodes])
    tree.tokens += sum(scores.tokens)
    tree.calls += sum(scores.calls)
    for node, value in zip(nodes, scores.values, strict=True):
        node.score = value
    return scores.values


def affordable_prefix(tree: Tree, ctx: Context, nodes: list[Node]) -> list[Node]:
    """The longest run of `nodes` (most likely first) whose scoring the remaining budget can pay for."""
    ranked = sorted(nodes, key=lambda n: -n.step.logprob)
    if ctx.budget is None:
        return ranked
    left, chosen = ctx.budget - tree.tokens, []
    for node in ranked:
        left -= ctx.score_tokens(tree.problem, node.texts())
        if left < 0:
            tree.out_of_budget = True
            break
        chosen.append(node)
    return chosen


def softmax_priors(children: list[Node]) -> None:
    """Turn the children's step log-probabilities into a distribution (PUCT priors)."""
    if not children:
        return
    top = max(c.step.logprob for c in children)
    weights = [math.exp(c.step.logprob - top) for c in children]
    total = sum(weights)
    for child, w in zip(children, weights, strict=True):
        child.prior = w / total


def best(nodes: list[Node]) -> Node | None:
    """The highest-scored node, ties to the more likely path; never the root."""
    steps = [n for n in nodes if n.step is not None]
    return max(steps, key=lambda n: (n.score if n.score is not None else -1.0, n.step.logprob), default=None)


def common_ancestor(nodes: list[Node]) -> Node | None:
    """The deepest node on every one of the nodes' paths from the root (None for no nodes)."""
    paths = [node.lineage() for node in nodes]
    if not paths:
        return None
    shared = paths[0][0]
    for column in zip(*paths, strict=False):
        if any(n is not column[0] for n in column):
            break
        shared = column[0]
    return shared


def grow(tree: Tree, ctx: Context, frontier: list[Node], k: int, temperature: float, distinct: bool = False):
    """Expand every frontier node with `k` proposals (`distinct`: without replacement, where the policy can) and
    score the new children, the most likely first as far as the budget goes (the rest keep no score); None when
    the proposals themselves are unaffordable."""
    if not affordable(tree, ctx, propose_cost(ctx, frontier, k)):
        return None
    children = [unique(c) for c in (yield from expand(tree, ctx, frontier, k, temperature, distinct))]
    fresh = [c for cs in children for c in cs if c.score is None]
    yield from score_nodes(tree, ctx, affordable_prefix(tree, ctx, fresh))
    return children
