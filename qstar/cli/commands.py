"""What each `qstar` command does with its parsed arguments (`cmd_*`, returning the JSON `--json` prints) and how
it shows the result otherwise (`print_*`). Models are imported here, inside the commands, never by the parser."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from qstar.cli.options import config_of, problem_fields
from qstar.config import from_dict
from qstar.errors import QstarError, blame
from qstar.tasks.base import load_problems


def workers_of(args: argparse.Namespace, replica):
    """The Ray workers the arguments ask for, or, when none, an empty context: search in this process."""
    if args.workers is None and args.ray is None:
        return contextlib.nullcontext()
    from qstar.pipelines.workers import Workers

    return Workers(replica, args.workers, args.ray, args.batch_size)


def replica_of(args: argparse.Namespace):
    """The task, policy and scorer the arguments name (`qstar.pipelines.replica.Replica`), checked before any model
    is loaded."""
    from qstar.pipelines.replica import Replica
    from qstar.policy import policy_name
    from qstar.scorers import default_scorer, scorer_options
    from qstar.tasks import TASKS

    problems = {"problems_file": args.problems} if getattr(args, "problems", None) else {}
    if problems and getattr(args, "split", None):
        raise QstarError("--split picks among the task's own problems: drop it with --problems FILE")
    if problems and "problems_file" not in TASKS.options(args.task):
        raise QstarError(f"the {args.task} task reads no problems file: drop --problems")
    replica = Replica(
        task=args.task,
        task_options={**args.task_args, **problems},
        policy=args.policy,
        policy_options={
            "seed": args.seed,
            "model": args.model,
            "chat": args.chat,
            "api_key": args.api_key,
            **args.policy_args,
        },
        plugins=tuple(args.plugin),
    )
    args.scorer = args.scorer or default_scorer(replica.load_task())
    scorer_options(args.scorer, **args.scorer_args)
    check_policy_flags(args, policy_name(args.policy)[0])
    return dataclasses.replace(replica, scorer=args.scorer, scorer_options=args.scorer_args)


def check_policy_flags(args: argparse.Namespace, backend: str) -> None:
    """Refuse --chat, --model or the API key given to a backend that takes no such option (it would be ignored)."""
    from qstar.policy import POLICIES

    takes = POLICIES.options(backend)
    key = "--policy-api-key" if args.command == "serve" else "--api-key"
    for name, flag in (("chat", "--chat/--no-chat"), ("model", "--model"), ("api_key", key)):
        if getattr(args, name) is not None and name not in takes:
            users = [other for other in POLICIES.names() if name in POLICIES.options(other)]
            which = f"the {' and '.join(users)} polic{'y' if len(users) == 1 else 'ies'}"
            raise QstarError(f"{flag} applies to {which}, not to {backend}: drop it")


def setup(args: argparse.Namespace, evaluation: bool = False):
    """The task, policy and scorer the arguments name, loaded in this process, and their `Replica`. For an
    `evaluation`, a scorer whose kind always reads the reference answer is refused before any model loads."""
    from qstar.pipelines.evaluate import check_no_leak
    from qstar.scorers import SCORERS, scorer_name

    replica = replica_of(args)
    kind = SCORERS.entry(scorer_name(args.scorer)).factory
    if evaluation and isinstance(getattr(kind, "uses_verifier", None), bool):  # else known once it is built
        check_no_leak(replica.load_task(), kind)
    return (*replica.load(), replica)


def cmd_solve(args: argparse.Namespace) -> dict:
    from qstar.search import get_search, run_search
    from qstar.tasks import get_task

    allowed = problem_fields(args.task)
    for name in problem_fields():
        if getattr(args, name, None) is not None and name not in allowed:
            raise QstarError(f"--{name.replace('_', '-')} is not an option of the {args.task} task")
    both = [f"--{name.replace('_', '-')}" for name in allowed if name != "answer" and getattr(args, name) is not None]
    if args.problem and both:
        raise QstarError(f"give the problem as text or with {' and '.join(both)}, not both")
    with blame(f"task {args.task!r}"):  # a plug-in task may raise reading its problem
        problem = get_task(args.task, **args.task_args).problem_from_args(vars(args))
    search = get_search(args.search, **args.search_args)
    task, policy, scorer, _ = setup(args)
    (tree,) = run_search(search, [problem], task, policy, scorer, budget=args.budget, seed=args.seed)
    if tree.starved:
        warn_unaffordable(args.budget, policy)
    steps = [s.text for s in tree.best_path()]
    checks = [task.check_step(problem, steps[:i], step) for i, step in enumerate(steps)]
    illegal = next(({"step": i, "reason": c.reason} for i, c in enumerate(checks, 1) if not c.ok), None)
    return {
        "solved": tree.solved if problem.answer is not None else None,
        "answer": task.final_answer(problem, steps) if steps else None,
        "steps": steps,
        "illegal": illegal,
        "tokens": tree.tokens,
        "calls": tree.calls,
        "error": tree.error,
        "unfinished": tree.unfinished,
        "budget": args.budget,
    }


def warn_unaffordable(budget: int | None, policy: Any) -> None:
    """Say why a search made no model call: its budget is below one request's worst case (a search pays for each
    request at its worst before making it)."""
    cap = getattr(policy, "max_step_tokens", None)
    cost = f" (a step may cost up to {cap} tokens)" if cap else ""
    print(f"qstar: warning: the budget of {budget} tokens affords no model call{cost}; raise --budget", file=sys.stderr)


def print_solve(result: dict, console: Console) -> None:
    illegal = result["illegal"] or {}
    for i, step in enumerate(result["steps"], 1):
        mark = f"  (illegal: {illegal['reason'] or 'the step checker refuses it'})" if i == illegal.get("step") else ""
        console.print(f"  step {i}: {step}{mark}", markup=False)
    answer = result["answer"] or "(none)"
    if result["solved"] is None:
        verdict = f"answer: {answer}"
    else:
        verdict = f"[green]solved[/]: {answer}" if result["solved"] else f"[red]not solved[/] (answer: {answer})"
    calls = result["calls"]
    console.print(f"{verdict}  ({result['tokens']} tokens, {calls} model call{'' if calls == 1 else 's'})")
    if result["unfinished"] and result["calls"]:  # no call at all: the warning before says why
        console.print(
            f"[yellow]unfinished[/]: the budget of {result['budget']} tokens ran out before the search had a complete "
            "answer; raise --budget",
            markup=True,
            soft_wrap=True,
        )


def cmd_eval(args: argparse.Namespace) -> dict:
    from qstar.io import check_writable, save_trees
    from qstar.pipelines.evaluate import evaluate
    from qstar.search import get_search

    search = get_search(args.search, **args.search_args)
    if args.save_trees:
        check_writable(args.save_trees)  # before the search, not after it
    task, policy, scorer, replica = setup(args, evaluation=True)
    split = args.split or task.eval_split
    problems = load_problems(task, split, args.limit)
    with workers_of(args, replica) as workers:
        result, runs = evaluate(
            task,
            problems,
            policy,
            search,
            scorer,
            args.budget,
            args.seeds,
            args.batch_size,
            show_progress=not args.json or sys.stderr.isatty(),  # --json in a terminal: the bar on stderr still
            workers=workers,
            seed=args.seed,
        )
    if result.calls_per_problem == 0 and not result.failed:
        warn_unaffordable(args.budget, policy)
    if args.save_trees:
        trees = [tree for run in runs for tree in run]
        seeds = [{"seed": args.seed + i} for i, run in enumerate(runs) for _ in run]
        task_args = {"task_args": args.task_args} if args.task_args else {}  # what `qstar records` renders them with
        save_trees(args.save_trees, trees, seeds, task=args.task, **task_args, search=args.search, budget=args.budget)
    where = args.problems or f"{args.task}/{split}"
    return {"task": args.task, "problems": where, "search": args.search, "budget": args.budget, **result.to_dict()}


def print_eval(result: dict, console: Console) -> None:
    title = f"qstar eval — {result['problems']}, search {result['search']} (tokens and calls per problem)"
    table = Table(title=title)
    failed = ("failed",) if result["failed"] else ()  # problems whose backend kept failing
    unfinished = ("cut short",) if result["unfinished"] else ()  # problems whose budget ran out before an answer
    columns = ("problems", "solved", "accuracy", "tokens", "calls", "legal steps", *unfinished, *failed, "seconds")
    for col in columns:
        table.add_column(col, justify="right")
    spread = f" ± {result['accuracy_std']:.1%}" if result["seeds"] > 1 else ""
    table.add_row(
        str(result["n"]),
        f"{result['solved']:g}",
        f"{result['accuracy']:.1%}{spread}",
        f"{result['tokens_per_problem']:.0f}",
        f"{result['calls_per_problem']:.1f}",
        f"{result['legal_step_rate']:.1%}" if result["calls_per_problem"] else "-",  # no step was generated
        *(f"{result['unfinished']:g}" for _ in unfinished),
        *(f"{result['failed']:g}" for _ in failed),
        f"{result['seconds']:.1f}",
    )
    console.print(table)
    if result["first_error"] and not all_failed([result]):  # all failed: the error line says why
        console.print(
            f"[red]failed[/]: {result['failed']:g} problem(s), the first: {result['first_error']}", markup=True
        )


def cmd_compare(args: argparse.Namespace) -> dict:
    from qstar.io import check_writable
    from qstar.pipelines import compare
    from qstar.search import get_search

    searches = [s.strip() for s in args.searches.split(",") if s.strip()]
    if not searches:
        raise QstarError("--searches names no search: give comma-separated names, e.g. greedy,best-of-n")
    twice = next((name for name in searches if searches.count(name) > 1), None)
    if twice:
        raise QstarError(f"--searches names {twice!r} twice")
    unknown = [name for name in args.search_args if name not in searches]
    if unknown:
        raise QstarError(f"--search-args names {unknown[0]!r}, which is not among --searches")
    for name in searches:
        get_search(name, **args.search_args.get(name, {}))  # unknown names and options fail here, before any work
    try:
        budgets = [int(b) for b in args.budgets.split(",")]
    except ValueError:
        raise QstarError(f"--budgets must be comma-separated whole numbers, got {args.budgets!r}") from None
    if any(b < 1 for b in budgets):
        raise QstarError("--budgets must be at least 1")
    check_writable(args.out, folder=True)
    task, policy, scorer, replica = setup(args, evaluation=True)
    problems = load_problems(task, args.split or task.eval_split, args.limit)
    configured = [(name, args.search_args.get(name, {})) for name in searches]
    with workers_of(args, replica) as workers:
        rows = compare.compare(
            task, problems, policy, scorer, configured, budgets, args.seeds, args.batch_size, workers, args.seed
        )
    where = args.problems or f"{args.task}/{args.split or task.eval_split}"
    context = {"task": args.task, "problems": where, "policy": args.policy, "scorer": args.scorer}
    rows = [{**context, **row} for row in rows]  # each row of compare.json says what it measured
    compare.write(rows, Path(args.out), f"{where}, {len(problems)} problems, scorer {args.scorer}")
    return {"rows": rows, "out": args.out}


def print_compare(result: dict, console: Console) -> None:
    from qstar.pipelines.compare import table

    console.print(table(result["rows"]))
    first = next((r for r in result["rows"] if r["first_error"]), None)
    if first and not all_failed(result["rows"]):  # all failed: the error line says why
        console.print(f"[red]failed[/]: {first['search']} at {first['budget']}: {first['first_error']}", markup=True)
    console.print(f"wrote {result['out']}/compare.md, compare.json, compare.png")


def cmd_pretrain(args: argparse.Namespace) -> dict:
    from qstar.pipelines.pretrain import pretrain
    from qstar.pipelines.pretrain_config import PretrainConfig

    return pretrain(config_of(args, PretrainConfig))["final"]


def cmd_improve(args: argparse.Namespace) -> dict:
    from qstar.pipelines.improve_config import ImproveConfig

    try:
        from qstar.pipelines.improve import Improve
    except ImportError as e:
        raise QstarError(
            f"qstar improve trains with TRL and PEFT: pip install -e '.[train]' ({e.name} is missing)"
        ) from None

    cfg = config_of(args, ImproveConfig)
    if args.workers is not None or args.ray is not None:
        from qstar.pipelines.workers import import_ray

        import_ray()  # before any work: a missing extra is a one-line error
    rows = Improve(cfg, args.run_dir, args.resume, workers=args.workers, ray=args.ray).run()
    return {"rows": rows, "run_dir": args.run_dir}


def cmd_train(args: argparse.Namespace) -> dict:
    try:
        from qstar.pipelines.train import CONFIGS, train
    except ImportError as e:
        raise QstarError(f"qstar train needs TRL and PEFT: pip install -e '.[train]' ({e.name} is missing)") from None
    from qstar.train.config import LoRAConfig

    cfg = config_of(args, CONFIGS[args.kind], table=args.kind)  # an improve config's [sft], [dpo] or [value]
    lora_flags = {key.split(".", 1)[1]: value for key, value in vars(args).items() if key.startswith("lora.")}
    lora = from_dict(LoRAConfig, lora_flags) if getattr(args, "lora", False) else None
    summary = train(  # which checks the separator, the output folder and the records before any model loads
        args.kind, args.model, args.records, args.output_dir, cfg, lora, args.separator
    )
    return {
        "kind": args.kind,
        "out": args.output_dir,
        "processes": summary["processes"],
        "steps": len(summary["history"]),
        "main_process": summary["main_process"],
    }


def print_train(result: dict, console: Console) -> None:
    if result["main_process"]:  # one line for the run, not one per launched process
        steps, processes = result["steps"], result["processes"]
        console.print(
            f"{result['kind']}: {steps} step{'s' * (steps != 1)} on {processes} process{'es' * (processes != 1)}, "
            f"saved to {result['out']}"
        )


def cmd_serve(args: argparse.Namespace) -> dict:
    from qstar.pipelines.serve import ServeConfig, serve

    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise QstarError(
            f"qstar serve needs the serve extra ({error.name} is missing): pip install 'qstar[serve]'"
        ) from error
    cfg = ServeConfig(
        model=args.model_id,
        search=args.search,
        search_args=args.search_args,
        budget=args.budget,
        api_key=args.serve_key or os.environ.get("QSTAR_API_KEY"),
        keep_trees=args.keep_trees,
        seed=args.seed,
        batch_size=args.batch_size,
        window=args.window,
    )
    task, policy, scorer, _ = setup(args)
    serve(task, policy, scorer, cfg, args.host, args.port, args.log_level)
    return {}


def cmd_records(args: argparse.Namespace) -> dict:
    from qstar.pipelines.label import label
    from qstar.tasks import get_task

    task = get_task(args.task, **args.task_args) if args.task else None
    if args.task_args and not args.task:
        raise QstarError("--task-args needs --task")
    if not 0 <= args.margin <= 1 or args.per_problem < 0:
        raise QstarError("--margin must be in [0, 1] and --per-problem 0 or more")
    settings = {"labels": args.labels, "shared_states": args.shared_states, "margin": args.margin}
    return label(args.trees, args.out, args.kind, task, per_problem=args.per_problem, **settings)


def cmd_view(args: argparse.Namespace) -> dict:
    from qstar.pipelines.view import view

    return view(args.trees, args.problem, args.output)


def print_view(result: dict, console: Console) -> None:
    groups = result["iterations"]  # an improve run's iterations, or the seeds of an eval's trees
    kind = "iteration" if all(g.startswith("iter-") for g in groups) else "run"
    console.print(
        f"wrote {result['output']}: {result['problems']} trees ({len(groups)} {kind}{'s' * (len(groups) > 1)}), "
        f"{result['nodes']} nodes, opening on {result['problem']}; open it in a browser",
        markup=False,
        soft_wrap=True,
    )


def cmd_list(args: argparse.Namespace) -> dict:
    from qstar.policy import POLICIES
    from qstar.scorers import SCORERS
    from qstar.search import SEARCHES
    from qstar.tasks import TASKS

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind, registry in (("tasks", TASKS), ("policies", POLICIES), ("scorers", SCORERS), ("searches", SEARCHES)):
        out[kind] = {}
        for name in registry.names():
            helps = registry.help(name)
            options = {
                key: {
                    "default": None if value is dataclasses.MISSING else value,
                    "required": value is dataclasses.MISSING,
                    "help": helps.get(key, ""),
                }
                for key, value in registry.options(name).items()
                if key not in ("task", "policy")  # given by the command, not options
            }
            out[kind][name] = {"description": registry.describe(name), "options": options}
    return out


def print_list(result: dict, console: Console) -> None:
    for kind, entries in result.items():
        console.print(f"[bold]{kind}[/]")
        for name, entry in entries.items():
            console.print(f"  [bold]{escape(name)}[/]  {escape(entry['description'])}".rstrip(), soft_wrap=True)
            for key, o in entry["options"].items():
                shown = f"{key} (required)" if o["required"] else f"{key}={o['default']!r}"
                console.print(f"    {shown}  {o['help']}".rstrip(), markup=False, soft_wrap=True)


def shortfall(command: str, result: dict) -> str | None:
    """Why a command that ran did none of its work, for exit code 1: a solve whose search ended on a backend error,
    an eval or compare in which every problem's search did (a partial failure is counted in the table, exit 0)."""
    if command == "solve" and result["error"]:
        return f"the search failed: {result['error']}"
    rows = {"eval": [result], "compare": result.get("rows", [])}.get(command)
    if rows and all_failed(rows):
        return f"every problem's search failed, the first: {rows[0]['first_error']}"
    return None


def all_failed(rows: list[dict]) -> bool:
    """Every problem's search ended on a backend error, in every row (`EvalResult.all_failed` of each)."""
    return all(row["n"] and row["failed"] >= row["n"] for row in rows)


COMMANDS = {
    "solve": (cmd_solve, print_solve),
    "eval": (cmd_eval, print_eval),
    "compare": (cmd_compare, print_compare),
    "improve": (
        cmd_improve,
        lambda r, c: c.print(f"metrics in {r['run_dir']}/metrics.jsonl, plots in {r['run_dir']}/improve.png"),
    ),
    "pretrain": (cmd_pretrain, lambda r, c: c.print(r)),
    "train": (
        cmd_train,
        print_train,
    ),
    "serve": (cmd_serve, lambda r, c: None),
    "records": (
        cmd_records,
        lambda r, c: c.print(
            f"{r['records']} {r['kind']} records from {r['trees']} {r['task']} trees ({r['solved']} solved) "
            f"in {r['out']}"
        ),
    ),
    "view": (cmd_view, print_view),
    "list": (cmd_list, print_list),
}
