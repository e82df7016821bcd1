"""The `qstar` command: solve a problem, evaluate or compare searches, run the improvement loop, pretrain, list the
plug-ins. Every name (task, policy, scorer, search) is resolved through the registries, so `--plugin FILE.py`
and installed packages add choices without any change here."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from qstar.config import field_types, from_dict, help_of, read_config_file
from qstar.errors import QstarError
from qstar.registry import load_plugin


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def json_object(text: str) -> dict:
    """A JSON object of options (argparse type)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object of options")
    return value


def whole_number(text: str) -> int:
    """`text` as an int, or argparse's error."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    """A whole number of at least 1 (argparse type)."""
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def port_number(text: str) -> int:
    """A TCP port, 0-65535; 0 asks the system for a free one (argparse type)."""
    value = whole_number(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {value}")
    return value


def names(kind: str) -> str:
    from qstar.policy import POLICIES
    from qstar.scorers import SCORERS
    from qstar.search import SEARCHES
    from qstar.tasks import TASKS

    registry = {"task": TASKS, "policy": POLICIES, "scorer": SCORERS, "search": SEARCHES}[kind]
    return ", ".join(registry.names())


def add_plugin_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="FILE.py",
        help="import this Python file first, so the tasks, policies, scorers and searches it registers can be "
        "named (repeatable)",
    )


def add_model_args(p: argparse.ArgumentParser, key_flag: str = "--api-key") -> None:
    p.add_argument(
        "--policy",
        default="tiny",
        help=f"a backend ({names('policy')}), a shipped checkpoint (tiny: the improved one, default; tiny-rules), "
        "a model folder or .gguf file (Hugging Face), or an http(s):// URL of an OpenAI-compatible server "
        "(vLLM, SGLang, llama.cpp); `openai` takes the URL from $OPENAI_BASE_URL",
    )
    p.add_argument(
        "--policy-args", type=json_object, default={}, help="backend options as JSON, e.g. '{\"max_step_tokens\": 64}'"
    )
    p.add_argument(
        key_flag, dest="api_key", default=None, help="the policy server's API key (default: $OPENAI_API_KEY)"
    )
    p.add_argument("--model", default=None, help="model name on the server (default: $OPENAI_MODEL, else the first)")
    p.add_argument(
        "--chat",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="chat template (HF: default when the tokenizer has one) or /v1/chat/completions (server: default off)",
    )
    p.add_argument(
        "--scorer",
        default=None,
        help=f"what values a partial solution: {names('scorer')}; or a value / PRM model, a checkpoint name "
        "(tiny-value) or a folder, read as a PRM (default: verifier where it needs no reference answer, else checker)",
    )
    p.add_argument(
        "--scorer-args",
        type=json_object,
        default={},
        help='scorer options as JSON, e.g. \'{"k": 2}\' (rollouts), \'{"aggregate": "last"}\' (prm), '
        "'{\"samples\": 3}' (judge); `qstar list` shows every option",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed for sampling (default: 0)")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=64,
        help="problems kept in flight, their model calls batched (default: 64)",
    )
    add_plugin_arg(p)


def add_scale_args(p: argparse.ArgumentParser, what: str = "the searches") -> None:
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help=f"run {what} on N Ray workers, each loading its own copy of the models (a local Ray unless --ray "
        "names a cluster; with --ray, default: one per GPU of the cluster, else one per CPU); the trees and "
        "figures are those of the run without it",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        default=None,
        metavar="ADDRESS",
        help="join a running Ray cluster: `auto` (the one started on this machine by `ray start --head`, the "
        "default when the flag has no value) or HOST:PORT; needs the ray extra",
    )


def workers_of(args: argparse.Namespace, replica):
    """The Ray workers the arguments ask for, or, when none, an empty context: search in this process."""
    if args.workers is None and args.ray is None:
        return contextlib.nullcontext()
    from qstar.pipelines.workers import Workers

    return Workers(replica, args.workers, args.ray, args.batch_size)


def add_search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--search", default="greedy", help=f"search algorithm: {names('search')} (default: greedy)")
    p.add_argument(
        "--search-args",
        type=json_object,
        default={},
        help="its hyper-parameters as JSON, e.g. '{\"simulations\": 128}'",
    )


def add_problem_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="game24", help=f"the task: {names('task')} (default: game24)")
    p.add_argument(
        "--split",
        default=None,
        help="the split (game24, gsm8k: train|test; countdown: train|val|val_target; default: the task's "
        "evaluation split)",
    )
    p.add_argument(
        "--problems",
        default=None,
        help='JSONL problems file in the task\'s format: countdown {"numbers": [...], "target": N}; gsm8k '
        '{"question", "answer"}; math {"problem", "answer"} (required for math)',
    )
    p.add_argument("--limit", type=positive_int, default=None, help="use only the first N problems")


def add_config_args(p: argparse.ArgumentParser, cls: type, prefix: str = "", defaults: Any = None) -> None:
    """A flag per field of a config dataclass (nested configs as `--NAME-FIELD`), with the field's help and default.
    Flags left out keep no value (SUPPRESS), so a config file's settings stand unless a flag overrides them."""
    types = field_types(cls)
    defaults = cls() if defaults is None else defaults
    for f in dataclasses.fields(cls):
        kind, default = types[f.name], getattr(defaults, f.name)
        flag, dest = f"--{prefix}{f.name}".replace("_", "-"), f"{prefix.replace('-', '.')}{f.name}"
        if dataclasses.is_dataclass(kind):
            add_config_args(p, kind, f"{prefix}{f.name}-", default)
            continue
        shown = json.dumps(default) if isinstance(default, dict) else repr(default)
        text = help_of(f) if "default:" in help_of(f) else f"{help_of(f)} (default: {shown})"
        common: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": text.replace("%", "%%")}
        if kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif kind is dict:
            p.add_argument(flag, type=json_object, metavar="JSON", **common)
        else:
            scalar = next((t for t in (int, float, str) if t == kind or t in getattr(kind, "__args__", ())), str)
            p.add_argument(flag, type=scalar, metavar=scalar.__name__.upper(), **common)


def given_settings(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The config fields the command line set, nested (`sft.epochs` → {"sft": {"epochs": ...}})."""
    out: dict[str, Any] = {}
    for dest, value in vars(args).items():
        head, *rest = dest.split(".")
        if head in {f.name for f in dataclasses.fields(cls)}:
            slot = out
            for part in [head, *rest][:-1]:
                slot = slot.setdefault(part, {})
            slot[[head, *rest][-1]] = value
    return out


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over` laid on it, nested mappings merged key by key."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def problem_fields(task: str | None = None) -> dict[str, dict[str, Any]]:
    """The `qstar solve` options that describe a problem: `task`'s own, or every registered task's."""
    from qstar.tasks import TASKS

    fields: dict[str, dict[str, Any]] = {}
    for name in [task] if task else TASKS.names():
        fields.update(getattr(TASKS.entry(name).factory, "problem_args", {}))
    return fields


def build_parser() -> argparse.ArgumentParser:
    from qstar.pipelines.improve_config import ImproveConfig
    from qstar.pipelines.pretrain_config import PretrainConfig

    parser = Parser(prog="qstar", description="Deliberate reasoning with language models: search, verify, improve.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    solve = sub.add_parser("solve", help="solve one problem and show the steps")
    solve.add_argument("problem", nargs="?", default=None, help="the problem as text, e.g. '4 9 10 13 -> 24'")
    solve.add_argument("--task", default="countdown", help=f"the task: {names('task')} (default: countdown)")
    for name, spec in problem_fields().items():
        solve.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, **spec)
    add_search_args(solve)
    solve.add_argument("--budget", type=positive_int, default=None, help="most generated tokens the search may spend")
    solve.add_argument("--json", action="store_true", help="print one JSON object instead of a trace")
    add_model_args(solve)

    ev = sub.add_parser("eval", help="evaluate a search on a task's split: accuracy, compute, legality")
    add_problem_args(ev)
    add_search_args(ev)
    ev.add_argument("--budget", type=positive_int, default=None, help="most generated tokens per problem")
    ev.add_argument(
        "--seeds",
        type=positive_int,
        default=1,
        help="run S times, with seeds --seed to --seed + S - 1; report the mean and std (default: 1)",
    )
    ev.add_argument("--save-trees", default=None, help="write every search tree here (JSON lines, .gz to compress)")
    ev.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    add_model_args(ev)
    add_scale_args(ev)

    cmp = sub.add_parser("compare", help="compare searches at equal budgets: table (md, json) and plot (png)")
    add_problem_args(cmp)
    cmp.add_argument(
        "--searches",
        default="greedy,best-of-n,beam,mcts,astar",
        help="comma-separated search names (default: greedy,best-of-n,beam,mcts,astar)",
    )
    cmp.add_argument(
        "--search-args",
        type=json_object,
        default={},
        help='hyper-parameters per search as JSON, e.g. \'{"mcts": {"simulations": 128}, "beam": {"width": 3}}\'',
    )
    cmp.add_argument(
        "--budgets", default="500,2000,8000", help="comma-separated token budgets per problem (default: 500,2000,8000)"
    )
    cmp.add_argument(
        "--seeds", type=positive_int, default=3, help="seeds per (search, budget), from --seed on (default: 3)"
    )
    cmp.add_argument("--out", required=True, help="folder for compare.md, compare.json and compare.png")
    add_model_args(cmp)
    add_scale_args(cmp)

    imp = sub.add_parser(
        "improve",
        help="the self-improvement loop: search, train policy and value, evaluate, repeat",
        description="The self-improvement loop. Settings come from the defaults, then --config FILE, then the flags "
        "given; trainer settings are --sft-*, --dpo-* and --value-* (the SFT, step-DPO and value trainers).",
    )
    imp.add_argument("--run-dir", required=True, help="folder for every artifact of the run (trees, records, models)")
    imp.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last finished stage")
    imp.add_argument("--config", default=None, help="a TOML or JSON file of settings (e.g. configs/*.toml)")
    add_config_args(imp, ImproveConfig)
    add_scale_args(imp, "the data search and the evaluation")
    add_plugin_arg(imp)

    pre = sub.add_parser("pretrain", help="train the tiny policy from scratch on random legal play (rules only)")
    add_config_args(pre, PretrainConfig)
    add_plugin_arg(pre)

    trn = sub.add_parser(
        "train",
        help="one trainer (sft, dpo, value) on a records file; launch it with accelerate launch or torchrun",
        description="One of the loop's trainers on a records file in TRL's columns (sft.jsonl, preferences.jsonl, "
        "value.jsonl of an improve run), on any number of processes: `accelerate launch -m qstar train ...` or "
        "`torchrun --nproc_per_node N -m qstar train ...`. Only the main process writes the checkpoint.",
    )
    kinds = trn.add_subparsers(dest="kind", required=True, parser_class=Parser)
    from qstar.train.config import DPOConfig, LoRAConfig, SFTConfig, ValueConfig

    for kind, cls, what in (
        ("sft", SFTConfig, "SFT on prompt/completion records (loss on the completion)"),
        ("dpo", DPOConfig, "step-DPO on prompt/chosen/rejected records"),
        ("value", ValueConfig, "a value / PRM model on prompt/completions/labels records"),
    ):
        k = kinds.add_parser(kind, help=what)
        k.add_argument("--model", required=True, help="the starting model: a folder, a .gguf file or an adapter folder")
        k.add_argument("--records", required=True, help="the records file (JSON lines)")
        k.add_argument("--output-dir", required=True, help="where the trained checkpoint is written")
        k.add_argument("--separator", default="\n", help="what ends a step (value: where each step is read)")
        k.add_argument("--config", default=None, help="a TOML or JSON file of the trainer's settings (flags win)")
        add_config_args(k, cls)
        if kind != "value":
            k.add_argument("--lora", action="store_true", help="train LoRA adapters (continue an adapter folder's)")
            add_config_args(k, LoRAConfig, "lora-")
        add_plugin_arg(k)

    srv = sub.add_parser(
        "serve",
        help="an OpenAI-compatible endpoint whose replies are searches (streams each step as it is decided)",
        description="Serve /v1/chat/completions and /v1/completions: the last user message (or the prompt) is a "
        "problem of the task, searched with the server's search and budget (capped by the request's max_tokens). "
        "A request's `model` may be `<search>-<model id>`, and its body (the OpenAI client's extra_body) may set "
        "`search`, `search_args` and `budget` (up to --budget). Also GET /v1/models, /health, /metrics "
        "(Prometheus) and, with --keep-trees, /trees/{id}. Needs the serve extra: pip install 'qstar[serve]'.",
    )
    srv.add_argument("--task", default="countdown", help=f"the task: {names('task')} (default: countdown)")
    add_search_args(srv)
    srv.add_argument(
        "--budget",
        type=positive_int,
        default=2000,
        help="generated tokens a request may spend: the default and the cap (default: 2000)",
    )
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    srv.add_argument(
        "--port",
        type=port_number,
        default=8000,
        help="port to listen on, 0-65535; 0 takes a free one, which the banner names (default: 8000)",
    )
    srv.add_argument(
        "--api-key",
        dest="serve_key",
        metavar="KEY",
        default=None,
        help="clients must send `Authorization: Bearer KEY` (default: $QSTAR_API_KEY, else no key)",
    )
    srv.add_argument("--model-id", default="qstar", help="the model id clients name (default: qstar)")
    srv.add_argument(
        "--keep-trees",
        type=int,
        default=0,
        metavar="N",
        help="keep the last N requests' search trees, viewable at GET /trees/{id} (default: 0)",
    )
    srv.add_argument(
        "--window",
        type=float,
        default=0.01,
        help="seconds an idle server waits for more requests to batch with the first (default: 0.01)",
    )
    srv.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level; info logs every request (default: warning)",
    )
    add_model_args(srv, key_flag="--policy-api-key")
    srv.set_defaults(batch_size=256)  # a server's searches in flight: more than an eval's, requests come in bursts

    vw = sub.add_parser(
        "view",
        help="write a search-tree viewer: one self-contained HTML file",
        description="Draw search trees in a web page that needs no network: the problems (solved or not, tokens) "
        "and one problem's tree, each node's step, prior, visits, values, legality, the chosen path highlighted, "
        "and for an improve run the training records each node produced.",
    )
    vw.add_argument("trees", help="a trees.jsonl(.gz) file, an improve run folder or one of its iteration folders")
    vw.add_argument(
        "--problem", default=None, help="the problem id shown first (default: the first of the last iteration)"
    )
    vw.add_argument("-o", "--output", default=None, help="the HTML file to write (default: tree.html)")
    vw.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    add_plugin_arg(vw)

    lst = sub.add_parser("list", help="the tasks, policies, scorers and searches that can be named, and their options")
    lst.add_argument("--json", action="store_true", help="print one JSON object instead of a list")
    add_plugin_arg(lst)
    return parser


def replica_of(args: argparse.Namespace):
    """The task, policy and scorer the arguments name (`qstar.pipelines.replica.Replica`), checked before any model
    is loaded."""
    from qstar.pipelines.replica import Replica
    from qstar.policy import policy_name
    from qstar.scorers import default_scorer, scorer_name

    if getattr(args, "problems", None) and getattr(args, "split", None):
        raise QstarError("--split picks among the task's own problems: drop it with --problems FILE")
    replica = Replica(
        task=args.task,
        task_options={"problems_file": args.problems} if getattr(args, "problems", None) else {},
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
    scorer_name(args.scorer)
    policy_name(args.policy)
    return dataclasses.replace(replica, scorer=args.scorer, scorer_options=args.scorer_args)


def setup(args: argparse.Namespace):
    """The task, policy and scorer the arguments name, loaded in this process, and their `Replica`."""
    replica = replica_of(args)
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
    problem = get_task(args.task).problem_from_args(vars(args))
    search = get_search(args.search, **args.search_args)
    task, policy, scorer, _ = setup(args)
    (tree,) = run_search(search, [problem], task, policy, scorer, budget=args.budget, seed=args.seed)
    if tree.calls == 0 and not tree.error:
        warn_unaffordable(args.budget, policy)
    steps = [s.text for s in tree.best_path()]
    return {
        "solved": tree.solved if problem.answer is not None else None,
        "answer": task.final_answer(problem, steps) if steps else None,
        "steps": steps,
        "tokens": tree.tokens,
        "calls": tree.calls,
        "error": tree.error,
    }


def warn_unaffordable(budget: int | None, policy: Any) -> None:
    """Say why a search made no model call: its budget is below one request's worst case (a search pays for each
    request at its worst before making it)."""
    cap = getattr(policy, "max_step_tokens", None)
    cost = f" (a step may cost up to {cap} tokens)" if cap else ""
    print(f"qstar: warning: the budget of {budget} tokens affords no model call{cost}; raise --budget", file=sys.stderr)


def print_solve(result: dict, console: Console) -> None:
    for i, step in enumerate(result["steps"], 1):
        console.print(f"  step {i}: {step}", markup=False)
    if result["error"]:
        console.print(f"[red]failed[/]: {result['error']}", markup=True)
    answer = result["answer"] or "(none)"
    if result["solved"] is None:
        verdict = f"answer: {answer}"
    else:
        verdict = f"[green]solved[/]: {answer}" if result["solved"] else f"[red]not solved[/] (answer: {answer})"
    calls = result["calls"]
    console.print(f"{verdict}  ({result['tokens']} tokens, {calls} model call{'' if calls == 1 else 's'})")


def cmd_eval(args: argparse.Namespace) -> dict:
    from qstar.io import check_writable, save_trees
    from qstar.pipelines.evaluate import evaluate
    from qstar.search import get_search

    search = get_search(args.search, **args.search_args)
    if args.save_trees:
        check_writable(args.save_trees)  # before the search, not after it
    task, policy, scorer, replica = setup(args)
    split = args.split or task.eval_split
    problems = task.problems(split, limit=args.limit)
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
            show_progress=not args.json,
            workers=workers,
            seed=args.seed,
        )
    if result.calls_per_problem == 0 and not result.failed:
        warn_unaffordable(args.budget, policy)
    if args.save_trees:
        trees = [tree for run in runs for tree in run]
        save_trees(args.save_trees, trees, search=args.search, budget=args.budget)
    where = args.problems or f"{args.task}/{split}"
    return {"task": args.task, "problems": where, "search": args.search, "budget": args.budget, **result.to_dict()}


def print_eval(result: dict, console: Console) -> None:
    title = f"qstar eval — {result['problems']}, search {result['search']} (tokens and calls per problem)"
    table = Table(title=title)
    failed = ("failed",) if result["failed"] else ()  # problems whose backend kept failing
    for col in ("problems", "solved", "accuracy", "tokens", "calls", "legal steps", *failed, "seconds"):
        table.add_column(col, justify="right")
    spread = f" ± {result['accuracy_std']:.1%}" if result["seeds"] > 1 else ""
    table.add_row(
        str(result["n"]),
        f"{result['solved']:g}",
        f"{result['accuracy']:.1%}{spread}",
        f"{result['tokens_per_problem']:.0f}",
        f"{result['calls_per_problem']:.1f}",
        f"{result['legal_step_rate']:.1%}",
        *(f"{result['failed']:g}" for _ in failed),
        f"{result['seconds']:.1f}",
    )
    console.print(table)
    if result["first_error"]:
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
    task, policy, scorer, replica = setup(args)
    problems = task.problems(args.split or task.eval_split, limit=args.limit)
    configured = [(name, args.search_args.get(name, {})) for name in searches]
    with workers_of(args, replica) as workers:
        rows = compare.compare(
            task, problems, policy, scorer, configured, budgets, args.seeds, args.batch_size, workers, args.seed
        )
    where = args.problems or f"{args.task}/{args.split or task.eval_split}"
    compare.write(rows, Path(args.out), f"{where}, {len(problems)} problems, scorer {args.scorer}")
    return {"rows": rows, "out": args.out}


def print_compare(result: dict, console: Console) -> None:
    from qstar.pipelines.compare import table

    console.print(table(result["rows"]))
    console.print(f"wrote {result['out']}/compare.md, compare.json, compare.png")


def cmd_pretrain(args: argparse.Namespace) -> dict:
    from qstar.pipelines.pretrain import pretrain
    from qstar.pipelines.pretrain_config import PretrainConfig

    return pretrain(from_dict(PretrainConfig, given_settings(args, PretrainConfig)))["final"]


def cmd_improve(args: argparse.Namespace) -> dict:
    from qstar.pipelines.improve_config import ImproveConfig

    try:
        from qstar.pipelines.improve import Improve
    except ImportError as e:
        raise QstarError(
            f"qstar improve trains with TRL and PEFT: pip install -e '.[train]' ({e.name} is missing)"
        ) from None

    settings = read_config_file(args.config) if args.config else {}
    cfg = from_dict(ImproveConfig, merge(settings, given_settings(args, ImproveConfig)))
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
    from qstar.io import check_writable
    from qstar.train.config import LoRAConfig

    settings = read_config_file(args.config) if args.config else {}
    cfg = from_dict(CONFIGS[args.kind], merge(settings, given_settings(args, CONFIGS[args.kind])))
    lora_flags = {key.split(".", 1)[1]: value for key, value in vars(args).items() if key.startswith("lora.")}
    lora = from_dict(LoRAConfig, lora_flags) if getattr(args, "lora", False) else None
    check_writable(args.output_dir, folder=True)  # before the training, not after it
    summary = train(args.kind, args.model, args.records, args.output_dir, cfg, lora, args.separator)
    return {
        "kind": args.kind,
        "out": args.output_dir,
        "processes": summary["processes"],
        "steps": len(summary["history"]),
        "main_process": summary["main_process"],
    }


def print_train(result: dict, console: Console) -> None:
    if result["main_process"]:  # one line for the run, not one per launched process
        console.print(
            f"{result['kind']}: {result['steps']} steps on {result['processes']} process(es), saved to {result['out']}"
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


def cmd_view(args: argparse.Namespace) -> dict:
    from qstar.pipelines.view import view

    return view(args.trees, args.problem, args.output)


def print_view(result: dict, console: Console) -> None:
    console.print(
        f"wrote {result['output']}: {result['problems']} trees ({len(result['iterations'])} iteration(s)), "
        f"{result['nodes']} nodes, opening on {result['problem']}; open it in a browser",
        markup=False,
    )


def cmd_list(args: argparse.Namespace) -> dict:
    from qstar.policy import POLICIES
    from qstar.scorers import SCORERS
    from qstar.search import SEARCHES
    from qstar.tasks import TASKS

    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for kind, registry in (("tasks", TASKS), ("policies", POLICIES), ("scorers", SCORERS), ("searches", SEARCHES)):
        out[kind] = {}
        for name in registry.names():
            factory = registry.entry(name).factory
            helps = (
                {f.name: help_of(f) for f in dataclasses.fields(factory)} if dataclasses.is_dataclass(factory) else {}
            )
            out[kind][name] = {
                key: {"default": "(required)" if value is dataclasses.MISSING else value, "help": helps.get(key, "")}
                for key, value in registry.options(name).items()
                if key not in ("task", "policy")  # given by the command, not options
            }
    return out


def print_list(result: dict, console: Console) -> None:
    for kind, entries in result.items():
        console.print(f"[bold]{kind}[/]")
        for name, options in entries.items():
            console.print(f"  {name}", markup=False)
            for key, o in options.items():
                console.print(f"    {key}={o['default']!r}  {o['help']}".rstrip(), markup=False, soft_wrap=True)


COMMANDS = {
    "solve": (cmd_solve, print_solve),
    "eval": (cmd_eval, print_eval),
    "compare": (cmd_compare, print_compare),
    "improve": (cmd_improve, lambda r, c: c.print(f"metrics in {r['run_dir']}/metrics.jsonl, plots in improve.png")),
    "pretrain": (cmd_pretrain, lambda r, c: c.print(r)),
    "train": (
        cmd_train,
        print_train,
    ),
    "serve": (cmd_serve, lambda r, c: None),
    "view": (cmd_view, print_view),
    "list": (cmd_list, print_list),
}


def quiet_transformers() -> None:
    """Keep transformers' load reports and progress bars out of qstar's own output."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def load_plugins(argv: list[str]) -> None:
    """Import every `--plugin FILE.py` before the parser lists names (wherever the flag stands)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--plugin", action="append", default=[])
    known, _ = pre.parse_known_args(argv)
    for path in known.plugin:
        load_plugin(path)


def main(argv: list[str] | None = None) -> int:
    # transformers' GGUF loader draws a raw tqdm bar; tqdm reads this variable when it is imported
    os.environ.setdefault("TQDM_DISABLE", "1")
    argv = sys.argv[1:] if argv is None else argv
    try:
        load_plugins(argv)
        args = build_parser().parse_args(argv)
        if args.command != "list":
            quiet_transformers()
        run, show = COMMANDS[args.command]
        result = run(args)
    except QstarError as e:
        print(f"qstar: error: {e}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(result))
    else:
        show(result, Console())
    return 0


if __name__ == "__main__":
    sys.exit(main())
