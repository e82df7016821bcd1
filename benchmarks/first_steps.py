"""Where the first step fails, per evaluation split: does greedy's first step keep the problem solvable, does the legal
first step the policy finds likeliest, does any of `k` sampled first steps, and does the value model's pick among
those samples? With `--trees`, instead: how true
are the first-step labels an improve run learns from (`hard`: 1 where the search verified a solution below)?
The exhaustive solver decides solvability (statistics only: it never guides a search or enters training data).

    python benchmarks/first_steps.py                      # the shipped models on game24 test and countdown val_target
    python benchmarks/first_steps.py --policy runs/cd/iter-1/policy --value runs/cd/iter-1/value --limit 1000
    python benchmarks/first_steps.py --trees runs/demo/iter-*/trees.jsonl.gz   # the labels of a run's data searches
    python benchmarks/first_steps.py --trees runs/demo/iter-*/trees.jsonl.gz --shared-states   # with shared states
    python benchmarks/first_steps.py --failures eval.jsonl.gz   # where a search failed (`qstar eval --save-trees`)
    python benchmarks/first_steps.py --value-auc eval.jsonl.gz --value DIR   # how well the value model tells them
"""

from __future__ import annotations

import argparse
import bisect

import torch
from rich.console import Console
from rich.table import Table

from qstar.io import load_trees
from qstar.models import encode, pad
from qstar.policy import load_policy
from qstar.records import node_values, proven_states
from qstar.scorers import get_scorer
from qstar.tasks import get_task
from qstar.tasks.countdown.rules import legal_moves, move_step
from qstar.tasks.countdown.solver import is_solvable


def completion_logps(model, tokenizer, pieces: list[tuple[str, str]]) -> list[float]:
    """log p(completion | prompt) under a causal LM for each (prompt, completion), in one padded batch."""
    rows = [encode(tokenizer, prompt, completion) for prompt, completion in pieces]
    ids, attention = pad([ids for ids, _ in rows], tokenizer.pad_token_id)
    with torch.no_grad():
        logp = model(input_ids=ids.to(model.device), attention_mask=attention.to(model.device)).logits
    logp = logp.float().log_softmax(-1).cpu()
    return [
        logp[i, start - 1 : end - 1].gather(-1, ids[i, start:end, None]).sum().item()
        for i, (_, (start, end)) in enumerate(rows)
    ]


def likeliest_legal_first_step(policy, task, problem) -> tuple[str, list[int]]:
    """The legal first step (canonical text) to which the policy gives the highest probability, step and separator
    included, and the numbers it leaves: what decoding the most likely step, not token by token, would write."""
    steps = [move_step(problem.meta["numbers"], move) for move in legal_moves(problem.meta["numbers"])]
    prompt = task.render(problem, [])
    totals = completion_logps(policy.model, policy.tokenizer, [(prompt, step + task.separator) for step, _ in steps])
    return steps[max(range(len(steps)), key=totals.__getitem__)]


def solvable(task, problem, *steps) -> bool:
    """Whether the numbers left after `steps` can still make the target."""
    left = task.left_after(problem, [step.text for step in steps])
    return left is not None and is_solvable(left, problem.meta["target"])


def label_table(paths: list[str], shared: bool = False) -> Table:
    """Per trees file: the problems the search solved, and its first steps by label against the truth; `shared`:
    with the states proven in it and the files before it (`shared_states`, as an improve run's iterations)."""
    title = "first-step labels (hard" + (", shared states" if shared else "") + ") of data searches against the truth"
    table = Table(title=title)
    cols = ("trees", "problems", "solved", "first steps", "solvable", "labelled 1", "of them solvable", "recall")
    for col in cols:
        table.add_column(col, justify="left" if col == "trees" else "right")
    task = get_task("countdown")  # Game of 24's rules too: the numbers and the target are the problem's
    proven: set = set()  # the states proven in this file and those before it
    for path in paths:
        trees = load_trees(path)
        if shared:
            proven |= proven_states(trees, task)
        steps = solvable_steps = positive = true_positive = 0
        for tree in trees:
            labels = node_values(tree, "hard", task, proven)
            for child in tree.root.children:  # one the search never explored below has no label: not a 1
                truth, label = solvable(task, tree.problem, child.step), labels.get(child, 0.0) > 0
                steps, solvable_steps = steps + 1, solvable_steps + truth
                positive, true_positive = positive + label, true_positive + (truth and label)
        table.add_row(
            path,
            str(len(trees)),
            str(sum(bool(t.solutions()) for t in trees)),
            str(steps),
            str(solvable_steps),
            str(positive),
            f"{true_positive / max(positive, 1):.1%}",
            f"{true_positive / max(solvable_steps, 1):.1%}",
        )
    return table


def failure_table(paths: list[str]) -> Table:
    """Per trees file of an evaluation search: how each unsolved problem failed, at the first step or below it."""
    kinds = ("no solvable first step", "solvable, none expanded", "their second steps all dead")
    table = Table(title="where the search failed (the exhaustive solver judges each step)")
    for col in ("trees", "problems", "solved", *kinds, "a solvable second step unfinished"):
        table.add_column(col, justify="left" if col == "trees" else "right")
    task = get_task("countdown")
    for path in paths:
        trees = load_trees(path)
        unsolved = [tree for tree in trees if not tree.solutions()]
        counts = [0] * 4
        for tree in unsolved:
            good = [c for c in tree.root.children if solvable(task, tree.problem, c.step)]
            expanded = [c for c in good if c.children]
            alive = any(solvable(task, tree.problem, c.step, g.step) for c in expanded for g in c.children)
            counts[0 if not good else 1 if not expanded else 3 if alive else 2] += 1
        table.add_row(path, str(len(trees)), str(len(trees) - len(unsolved)), *map(str, counts))
    return table


def auc(positive: list[float], negative: list[float]) -> float:
    """The chance that a random positive outscores a random negative (ties count half)."""
    if not positive or not negative:
        return float("nan")
    negative = sorted(negative)
    wins = sum(bisect.bisect_left(negative, v) + bisect.bisect_right(negative, v) for v in positive) / 2
    return wins / (len(positive) * len(negative))


def value_auc_table(paths: list[str], value_spec: str) -> Table:
    """Per trees file of an evaluation search and depth: the legal unfinished states it reached, how many can still
    make the target, and how well the value model's reading tells those from the dead ones (AUC; 0.5: not at all)."""
    task = get_task("countdown")
    value = get_scorer("value", task, path=value_spec, ground_truth=False)
    table = Table(title=f"the value model ({value_spec}) on the states a search reached: solvable against dead")
    for col in ("trees", "depth", "states", "solvable", "AUC"):
        table.add_column(col, justify="left" if col == "trees" else "right")
    for path in paths:
        found = [
            (tree.problem, node)
            for tree in load_trees(path)
            for node in tree.root.walk()
            if node.step is not None and node.legal and not node.terminal
        ]
        readings = value.values([problem for problem, _ in found], [node.texts() for _, node in found])
        by_depth: dict[int, tuple[list[float], list[float]]] = {}
        for (problem, node), reading in zip(found, readings, strict=True):
            steps = node.path()
            good, dead = by_depth.setdefault(len(steps), ([], []))
            (good if solvable(task, problem, *steps) else dead).append(reading)
        for depth, (good, dead) in sorted(by_depth.items()):
            table.add_row(path, str(depth), str(len(good) + len(dead)), str(len(good)), f"{auc(good, dead):.3f}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="tiny", help="the policy (default: the shipped one)")
    parser.add_argument("--value", default="tiny-value", help="the value model (default: the shipped one)")
    parser.add_argument("--k", type=int, default=16, help="sampled first steps per problem (dfs-wide's root_k)")
    parser.add_argument("--limit", type=int, default=None, help="problems per split (default: all)")
    parser.add_argument("--trees", nargs="+", help="trees files of data searches: measure their first-step labels")
    parser.add_argument(
        "--shared-states", action="store_true", help="with --trees: label by the states proven so far (shared_states)"
    )
    parser.add_argument("--failures", nargs="+", help="trees files of evaluation searches: where they failed")
    parser.add_argument(
        "--value-auc", nargs="+", help="trees files of evaluation searches: how well --value judges their states"
    )
    args = parser.parse_args()
    if args.value_auc:
        return Console(width=160).print(value_auc_table(args.value_auc, args.value))
    if args.failures:
        return Console(width=180).print(failure_table(args.failures))
    if args.trees:
        return Console(width=160).print(label_table(args.trees, args.shared_states))
    policy = load_policy(args.policy, seed=0)
    table = Table(title=f"first steps that keep the problem solvable ({args.policy}, {args.k} samples, {args.value})")
    columns = ("split", "problems", "greedy's", "the likeliest legal one", "any of the samples", "the value's pick")
    for col in columns:
        table.add_column(col, justify="left" if col == "split" else "right")
    for name, split in (("game24", "test"), ("countdown", "val_target")):
        task = get_task(name)
        value = get_scorer(args.value, task, policy)
        problems = task.problems(split, args.limit)
        prompts = [task.render(p, []) for p in problems]

        greedy = [solvable(task, p, steps[0]) for p, steps in zip(problems, policy.propose(prompts), strict=True)]
        likeliest = [is_solvable(likeliest_legal_first_step(policy, task, p)[1], p.meta["target"]) for p in problems]
        samples = policy.propose(prompts, n=args.k, temperature=1.0, seeds=list(range(len(prompts))))
        flat = [(p, s) for p, steps in zip(problems, samples, strict=True) for s in steps]
        scores = value.score([p for p, _ in flat], [[s.text] for _, s in flat]).values
        any_, picked = [], []
        for i, (problem, steps) in enumerate(zip(problems, samples, strict=True)):
            mine = scores[i * args.k : (i + 1) * args.k]
            any_.append(any(solvable(task, problem, s) for s in steps))
            picked.append(solvable(task, problem, steps[max(range(args.k), key=lambda j, mine=mine: mine[j])]))
        n = len(problems)
        table.add_row(
            f"{name} {split}",
            str(n),
            f"{sum(greedy) / n:.1%}",
            f"{sum(likeliest) / n:.1%}",
            f"{sum(any_) / n:.1%}",
            f"{sum(picked) / n:.1%}",
        )
    Console(width=140).print(table)


if __name__ == "__main__":
    from entry import run

    run(main)
