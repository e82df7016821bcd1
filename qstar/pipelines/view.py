"""`qstar view`: search trees as one self-contained HTML page (data, script and styles inline, no network), with
the records an `improve` iteration made from each node; `qstar serve` draws a request's tree with `page`."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from qstar.errors import QstarError
from qstar.io import atomic_write, check_writable, read_jsonl, read_trees_file
from qstar.tasks.base import Task, get_task
from qstar.types import Node, Tree

TREES = "trees.jsonl.gz"
RECORDS = {"sft": "sft.jsonl", "value": "value.jsonl", "preferences": "preferences.jsonl"}
DEFAULT_OUTPUT = "tree.html"  # in the current folder: a run folder may be read-only or shared


def follow(node: Node | None, completion: str, separator: str) -> Node | None:
    """The node reached from `node` by the steps `completion` spells (each step's text then the separator)."""
    while completion and node is not None:
        node = next((c for c in node.children if completion.startswith(c.step.text + separator)), None)
        if node is not None:
            completion = completion[len(node.step.text) + len(separator) :]
    return node


def match_records(
    trees: list[Tree],
    task: Task,
    sft: Sequence[dict] = (),
    value: Sequence[dict] = (),
    preferences: Sequence[dict] = (),
) -> dict[Node, dict[str, Any]]:
    """What each node contributed to an iteration's records, keyed by node; the records carry no node ids, so a
    record is matched through the prompt the task renders for a node's prefix and the step texts below it (see
    `qstar.records`). Records replayed from trees not given here match nothing and are left out."""
    at: dict[str, Node] = {}  # the rendered prefix of every node
    relabelled: dict[str, Node] = {}  # hindsight: the prompt of the problem a legal complete play solves
    for tree in trees:
        for node in tree.nodes():
            at.setdefault(str(task.render(tree.problem, node.texts())), node)
            if (
                node.terminal
                and node.legal
                and node.reward != 1.0
                and (other := task.relabel(tree.problem, node.texts()))
            ):
                relabelled.setdefault(str(task.render(other, [])), tree.root)
    marks: dict[Node, dict[str, Any]] = {}

    def mark(node: Node, key: str, value: Any = None) -> None:
        """Count a record of kind `key` at `node`, or list its `value` there."""
        got = marks.setdefault(node, {})
        if value is None:
            got[key] = got.get(key, 0) + 1
        else:
            got.setdefault(key, []).append(value)

    sep = task.separator
    for row in sft:
        hindsight = row["prompt"] not in at
        start = relabelled.get(row["prompt"]) if hindsight else at[row["prompt"]]
        end = follow(start, row["completion"], sep)
        if end is not None and end is not start:  # a solution from the root, or one step below a deeper prefix
            mark(end, "hindsight" if hindsight else "sft" if start.parent is None and end.terminal else "target")
    for row in value:
        path, node = [], at.get(row["prompt"])
        for text in row["completions"]:
            node = next((c for c in node.children if c.step.text == text), None) if node else None
            path.append(node)
        if node is not None and node.terminal:  # the whole path is in these trees
            for node, label in zip(path, row["labels"], strict=True):
                mark(node, "labels", label)
    for row in preferences:
        parent = at.get(row["prompt"])
        chosen, rejected = follow(parent, row["chosen"], sep), follow(parent, row["rejected"], sep)
        if chosen is not None and rejected is not None:
            mark(parent, "pairs", (chosen, rejected))
            mark(chosen, "chosen")
            mark(rejected, "rejected")
    return marks


def num(x: float | None, digits: int = 4) -> float | None:
    """A float rounded for the page (the data is embedded, so every digit costs bytes)."""
    return None if x is None else round(x, digits)


def tree_data(tree: Tree, group: int, marks: dict[Node, dict[str, Any]]) -> dict[str, Any]:
    """A tree as flat rows in depth-first order, each naming its parent's row, so the page rebuilds it cheaply:
    [parent, text, logprob, tokens, done, prior, visits, value_sum, score, legal, terminal, reward]."""
    nodes = list(tree.nodes())
    index = {node: i for i, node in enumerate(nodes)}
    rows, recs = [], {}
    for i, node in enumerate(nodes):
        step = node.step
        rows.append(
            [
                index[node.parent] if node.parent is not None else -1,
                step.text if step else None,
                num(step.logprob, 3) if step else None,
                step.tokens if step else 0,
                int(step.done) if step else 0,
                num(node.prior, 3),
                node.visits,
                num(node.value_sum),
                num(node.score),
                int(node.legal),
                int(node.terminal),
                num(node.reward),
            ]
        )
        if node in marks:
            got = dict(marks[node])
            if "pairs" in got:
                got["pairs"] = [[index.get(a, -1), index.get(b, -1)] for a, b in got["pairs"]]
            recs[i] = got
    return {
        "id": tree.problem.id,
        "prompt": tree.problem.prompt,
        "solved": tree.solved,
        "tokens": tree.tokens,
        "calls": tree.calls,
        "error": tree.error,
        "unfinished": tree.unfinished,
        "answer": index.get(tree.answer) if tree.answer is not None else None,
        "group": group,
        "nodes": rows,
        "recs": recs,
    }


def selected(trees: list[Tree], groups: list[str], problem: str | None) -> int:
    """The tree the page opens on: the last one of `problem` (the latest iteration's), else the last group's first."""
    if problem is None:
        return groups.index(groups[-1])
    found = [i for i, tree in enumerate(trees) if tree.problem.id == problem]
    if not found:
        ids = list(dict.fromkeys(tree.problem.id for tree in trees))
        more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
        raise QstarError(f"no problem {problem!r} among the trees; they hold {', '.join(ids[:5])}{more}")
    return found[-1]


@cache
def template() -> str:
    """The page's HTML, styles and script, read once from the package (`view.html`)."""
    return files("qstar.pipelines").joinpath("view.html").read_text(encoding="utf-8")


def page(
    trees: list[Tree],
    records: dict | None = None,
    problem: str | None = None,
    title: str = "qstar trees",
    groups: list[str] | None = None,
) -> str:
    """The whole HTML page of `trees` (a problem list and one problem's tree), opening on `problem`; `records`
    are `match_records`' marks, `groups` each tree's iteration (the page shows one group at a time)."""
    if not trees:
        raise QstarError("no trees to show")
    groups = groups or [""] * len(trees)
    names = list(dict.fromkeys(groups))
    data = {
        "groups": names,
        "selected": selected(trees, groups, problem),
        "trees": [tree_data(t, names.index(g), records or {}) for t, g in zip(trees, groups, strict=True)],
    }
    # no "<" in the script's text, so no step text can close the script tag or open a comment in it
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")
    fill = {"__TITLE__": html.escape(title), "__DATA__": payload}
    return re.sub("__TITLE__|__DATA__", lambda m: fill[m[0]], template())


def trees_files(source: Path) -> list[tuple[str, Path]]:
    """(name, trees file) of each iteration TREES holds: a trees file, an iteration folder or an improve run."""
    if source.is_file():  # an iteration's trees are named by its folder, any other file by itself
        folder = source.resolve().parent.name
        return [(folder if source.name == TREES and folder.startswith("iter-") else source.name, source)]
    if (source / TREES).is_file():
        return [(source.name, source / TREES)]
    found = [p for p in source.glob(f"iter-*/{TREES}") if p.parent.name[5:].isdigit()]
    return [(p.parent.name, p) for p in sorted(found, key=lambda p: int(p.parent.name[5:]))]


def run_task(trees_file: Path) -> Task | None:
    """The task of the improve run a trees file belongs to (its `config.json`), or None outside a run."""
    config = trees_file.parent.parent / "config.json"
    try:
        settings = json.loads(config.read_text())
        return get_task(settings["task"], **settings.get("task_args", {}))
    except (OSError, ValueError, KeyError, TypeError):  # no run's config there, or a plug-in task not loaded here
        return None


def read_trees(path: Path, name: str) -> tuple[list[Tree], list[str]]:
    """The trees of a file and each one's group: `name`, with its seed where the file holds several seeds' runs
    (`qstar eval --seeds N --save-trees`); a one-line error when it is not a trees file."""
    lines, trees = read_trees_file(path)
    seeds = [line.get("seed") for line in lines]
    if len(set(seeds)) < 2:
        return trees, [name] * len(trees)
    return trees, [f"{name} seed {seed}" for seed in seeds]


def view(source: str | Path, problem: str | None = None, output: str | Path | None = None) -> dict[str, Any]:
    """Write the page of TREES (a trees file, an iteration folder or an improve run: every iteration, the last
    shown first, with each node's records) to `output` (default `tree.html` in the current folder); a summary."""
    source = Path(source)
    if not source.exists():
        raise QstarError(f"no such file or folder: {source}")
    check_writable(output or DEFAULT_OUTPUT)
    trees: list[Tree] = []
    groups: list[str] = []
    marks: dict[Node, dict[str, Any]] = {}
    for name, path in trees_files(source):
        got, named = read_trees(path, name)
        task = run_task(path)
        if task is not None:
            rows = {k: read_jsonl(path.parent / f) for k, f in RECORDS.items() if (path.parent / f).is_file()}
            marks.update(match_records(got, task, **rows))
        trees += got
        groups += named
    if not trees:
        raise QstarError(f"no trees in {source}: give a {TREES}, an iteration folder (iter-K) or an improve run folder")
    text = page(trees, marks, problem, title=f"qstar view {source}", groups=groups)
    out = Path(output or DEFAULT_OUTPUT)
    atomic_write(out, text.encode())
    first = selected(trees, groups, problem)
    return {
        "output": str(out),
        "iterations": list(dict.fromkeys(groups)),
        "problems": len(trees),
        "nodes": sum(1 for tree in trees for _ in tree.nodes()),
        "problem": trees[first].problem.id,
        "with_records": len(marks),  # nodes that made some record of an improve iteration
    }
