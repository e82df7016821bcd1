"""Training data from search trees, in TRL's column formats, as pure functions over saved trees.

- SFT: `prompt`/`completion` from verified solutions (rejection sampling), deduplicated; optionally with
  hindsight relabelling of the legal plays that missed the target.
- Step-wise value / PRM: `prompt`/`completions`/`labels`, one record per root-to-terminal path, a label per
  step: `mc` (soft: the share of verified terminal descendants, a Monte-Carlo estimate from the tree's own
  trajectories) or `hard` (1 if any descendant is verified, as Math-Shepherd's hard estimation; a step with
  nothing explored below has no hard label).
- Step-level preferences: `prompt`/`chosen`/`rejected`, sibling steps under the same prefix whose values
  differ by at least `margin`.
- Shared states (a transposition table): with `hard` labels, a step whose state (`task.state_key`: countdown's
  numbers left) a verified solution passed through in any tree is solvable, so labelled 1 even where its own tree
  found nothing below it.
- Search targets (AlphaZero's policy improvement): `prompt`/`completion` pairs of one step, at every node where
  the search compared children, each child its labels rank best — the policy learns the choice the search made
  with the verifier's hindsight, not only the solutions it happened to finish.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Set

from qstar.tasks.base import Task
from qstar.types import Node, Tree

LABEL_KINDS = ("mc", "hard")  # step labels: the share of verified terminals below, or whether any is verified


def node_values(
    tree: Tree, kind: str = "mc", task: Task | None = None, proven: Set[Hashable] = frozenset()
) -> dict[Node, float]:
    """A value per non-root node from the terminals below it. A node with none below: `mc` takes its score (the
    scorer's estimate), `hard` leaves it out, since a learned value model's score is no verified completion (read
    as one, every step the search never expanded would count as solvable). With `hard`, a node whose state is in
    `proven` (`proven_states`) is 1 whatever was found below it."""
    if kind not in LABEL_KINDS:
        raise ValueError(f"label kind must be one of {LABEL_KINDS}, not {kind!r}")
    values: dict[Node, float] = {}
    shared = kind == "hard" and bool(proven) and task is not None

    def visit(node: Node) -> tuple[int, int]:  # (verified terminals, terminals) below and at node
        if node.terminal:
            counts = (int(node.reward == 1.0), 1)
        else:
            below = [visit(c) for c in node.children]
            counts = (sum(w for w, _ in below), sum(n for _, n in below))
        wins, total = counts
        if node.step is not None:
            if total:
                values[node] = (wins / total) if kind == "mc" else float(wins > 0)
            elif node.score is not None and kind == "mc":
                values[node] = node.score
            if shared and not wins and not node.terminal and task.state_key(tree.problem, node.texts()) in proven:
                values[node] = 1.0
        return counts

    visit(tree.root)
    return values


def proven_states(trees: Iterable[Tree], task: Task) -> set[Hashable]:
    """The states (`task.state_key`) of every prefix a verified solution passes through: each is solvable in
    whichever tree a search reaches it. Empty for a task without state keys."""
    state_key = getattr(task, "state_key", None)  # optional for a task written against the protocol alone
    proven: set[Hashable] = set()
    if state_key is None:
        return proven
    for tree in trees:
        for leaf in tree.solutions():
            steps = leaf.texts()
            proven.update(state_key(tree.problem, steps[:depth]) for depth in range(1, len(steps)))
    proven.discard(None)
    return proven


def sft_records(
    trees: Iterable[Tree],
    task: Task,
    hindsight: bool = False,
    per_problem: int = 0,
    held_out: Set[Hashable] = frozenset(),
) -> list[dict]:
    """One record per distinct verified solution (at most `per_problem` per prompt, the first found, when > 0);
    with `hindsight`, also every legal complete play as the solution of the problem it does solve
    (`task.relabel`: countdown sets the target to the number reached), unless that problem's `task.problem_key`
    is in `held_out` (an evaluation problem)."""
    seen, records = set(), []
    per_prompt: Counter = Counter()

    def add(problem, node: Node) -> None:
        prompt = task.render(problem, [])
        completion = "".join(text + task.separator for text in node.texts())
        if (prompt, completion) not in seen and not (per_problem and per_prompt[prompt] >= per_problem):
            seen.add((prompt, completion))
            per_prompt[prompt] += 1
            records.append({"prompt": prompt, "completion": completion})

    for tree in trees:
        for node in tree.solutions():
            add(tree.problem, node)
        if hindsight:
            for node in tree.nodes():
                if node.terminal and node.legal and node.reward != 1.0:
                    relabelled = task.relabel(tree.problem, node.texts())
                    if relabelled is not None and task.problem_key(relabelled) not in held_out:
                        add(relabelled, node)
    return records


def value_records(
    trees: Iterable[Tree], task: Task, kind: str = "mc", proven: Set[Hashable] = frozenset()
) -> list[dict]:
    """One record per root-to-terminal path, labelled step by step (`proven`: states labelled 1, `node_values`)."""
    records = []
    for tree in trees:
        values = node_values(tree, kind, task, proven)
        prompt = task.render(tree.problem, [])
        for leaf in (n for n in tree.nodes() if n.terminal):
            path = leaf.lineage()[1:]
            if all(n in values for n in path):
                records.append(
                    {"prompt": prompt, "completions": [n.step.text for n in path], "labels": [values[n] for n in path]}
                )
    return records


def preference_records(trees: Iterable[Tree], task: Task, margin: float = 0.3) -> list[dict]:
    """For each prefix with valued children: the best child step against the worst, if they differ by `margin`."""
    records = []
    for tree in trees:
        values = node_values(tree, "mc")
        for node in tree.nodes():
            kids = [c for c in node.children if c in values]
            if len(kids) < 2:
                continue
            hi = max(kids, key=lambda c: values[c])
            lo = min(kids, key=lambda c: values[c])
            if values[hi] - values[lo] >= margin:
                records.append(
                    {
                        "prompt": task.render(tree.problem, node.texts()),
                        "chosen": hi.step.text + task.separator,
                        "rejected": lo.step.text + task.separator,
                    }
                )
    return records


def search_target_records(
    trees: Iterable[Tree], task: Task, kind: str = "hard", proven: Set[Hashable] = frozenset()
) -> list[dict]:
    """One-step SFT records: at each node with two or more labelled children, every child whose label is the best
    among them and above 0 (with `hard` labels: every step from which the search verified a solution), as the
    completion of the prefix above it. Deduplicated; the root's records are the first steps that keep the problem
    solvable, the choice greedy decoding gets wrong most. `proven`: states labelled 1 (`node_values`). Only steps
    with a `hard` label compete: with `mc`, a step the search never expanded holds a value model's estimate, which
    must not outrank a step with verified completions below it."""
    seen, records = set(), []
    for tree in trees:
        explored = node_values(tree, "hard", task, proven)
        values = explored if kind == "hard" else node_values(tree, kind, task, proven)
        for node in tree.nodes():
            kids = [c for c in node.children if c in explored]
            best = max((values[c] for c in kids), default=0.0)
            if len(kids) < 2 or best <= 0:
                continue
            prompt = task.render(tree.problem, node.texts())
            for child in kids:
                record = (prompt, child.step.text + task.separator)
                if values[child] == best and record not in seen:
                    seen.add(record)
                    records.append({"prompt": record[0], "completion": record[1]})
    return records
