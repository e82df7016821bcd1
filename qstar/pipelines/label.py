"""`qstar records`: training records from saved search trees, outside the loop — the step-labelled data an
iteration of `qstar improve` writes (value / PRM labels, verified solutions, search targets, step preference pairs),
from any trees `qstar eval --save-trees` or a run saved, for `qstar train` or a user's own trainer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qstar.errors import QstarError
from qstar.io import check_writable, read_trees_file, write_jsonl
from qstar.records import (
    LABEL_KINDS,
    preference_records,
    proven_states,
    search_target_records,
    sft_records,
    value_records,
)
from qstar.tasks.base import Task, get_task
from qstar.types import Tree

KINDS = {
    "value": "prompt, completions, labels: every root-to-leaf path, each step labelled (qstar train value)",
    "sft": "prompt, completion: each distinct verified solution (qstar train sft)",
    "targets": "prompt, completion: each step the labels rank best among its explored siblings (qstar train sft)",
    "preferences": "prompt, chosen, rejected: the best step against the worst below a prefix (qstar train dpo)",
}


def trees_task(lines: list[dict], path: Path) -> Task | None:
    """The task the trees were searched on: the `task` `qstar eval --save-trees` writes on each tree, else the
    `config.json` of the improve run whose iteration folder holds them; None when neither says."""
    named = {(line["task"], json.dumps(line.get("task_args", {}), sort_keys=True)) for line in lines if "task" in line}
    if len(named) > 1:
        raise QstarError(f"{path} holds trees of several tasks: give --task")
    if named:
        name, options = named.pop()
        return get_task(name, **json.loads(options))
    from qstar.pipelines.view import run_task

    return run_task(path)


def label(
    paths: list[str | Path],
    out: str | Path,
    kind: str = "value",
    task: Task | None = None,
    labels: str = "mc",
    shared_states: bool = False,
    margin: float = 0.3,
    per_problem: int = 0,
) -> dict[str, Any]:
    """Write `kind` records (`KINDS`) of the trees in `paths` to `out` (JSONL, atomically); what was written. The
    task renders the prompts: `task`, else the one the trees say. Trees of an evaluation problem are refused (the
    leak guard: what trains a model never holds one)."""
    if kind not in KINDS:
        raise QstarError(f"unknown record kind {kind!r}; choose from {', '.join(KINDS)}")
    if labels not in LABEL_KINDS:
        raise QstarError(f"--labels must be {' or '.join(LABEL_KINDS)}, not {labels!r}")
    check_writable(out)
    trees: list[Tree] = []
    given = task is not None
    for path in map(Path, paths):
        lines, got = read_trees_file(path)
        said = trees_task(lines, path)
        if task is not None and said is not None and said.name != task.name:
            fix = "drop --task" if given else "give the trees of one task"
            raise QstarError(f"{path} holds trees searched on the {said.name} task, not {task.name}: {fix}")
        task = task or said
        trees += got
    if task is None:
        raise QstarError("the trees do not say their task (trees saved before qstar eval wrote it): give --task")
    held_out = {task.problem_key(p) for p in task.evaluation_problems()}
    leaked = [t.problem.id for t in trees if task.problem_key(t.problem) in held_out]
    if leaked:
        raise QstarError(
            f"{len(leaked)} of the trees are of {task.name}'s evaluation problems ({', '.join(leaked[:3])}): training "
            "on them leaks the test; search the train split (qstar eval --split train --save-trees FILE)"
        )
    proven = proven_states(trees, task) if shared_states else set()
    try:
        if kind == "value":
            rows = value_records(trees, task, labels, proven)
        elif kind == "sft":
            rows = sft_records(trees, task, per_problem=per_problem)
        elif kind == "targets":
            rows = search_target_records(trees, task, labels, proven)
        else:
            rows = preference_records(trees, task, margin)
    except (KeyError, TypeError, ValueError) as e:  # a problem the task cannot render: trees of another task
        raise QstarError(
            f"the {task.name} task cannot render these trees' problems ({type(e).__name__}: {e})"
        ) from None
    write_jsonl(out, rows)
    return {
        "kind": kind,
        "records": len(rows),
        "trees": len(trees),
        "solved": sum(t.solved for t in trees),
        "task": task.name,
        "out": str(out),
    }
