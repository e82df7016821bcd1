"""The `qstar` command: solve a problem, evaluate or compare searches, run the improvement loop, pretrain."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from rich.console import Console
from rich.table import Table

from qstar.tasks.base import QstarError


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def searches_help() -> str:
    from qstar.search import SEARCHES

    return f"search algorithm: {', '.join(SEARCHES)} (default: greedy)"


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--policy",
        default="tiny",
        help="`tiny` (the shipped checkpoint, default), a model folder or .gguf file (Hugging Face backend), or "
        "an http(s):// base URL of an OpenAI-compatible server (vLLM, SGLang, llama.cpp) with --model; "
        "`openai` takes the URL from $OPENAI_BASE_URL",
    )
    p.add_argument("--api-key", default=None, help="the server's API key (default: $OPENAI_API_KEY)")
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
        help="verifier, checker, rollouts, judge (LLM-as-judge with the policy), value (the shipped tiny value "
        "model), or a local PRM folder "
        "(default: verifier where it needs no reference answer, else checker)",
    )
    p.add_argument("--aggregate", default="min", help="PRM step rewards to a path value: min (default), last, prod")
    p.add_argument(
        "--step-tag",
        default=None,
        help='what follows each step for a PRM folder (default: the task\'s separator; Math-Shepherd " ки", '
        'Qwen2.5-Math-PRM "<extra_0>")',
    )
    p.add_argument("--judge-samples", type=int, default=1, help="judgements averaged per path for --scorer judge")
    p.add_argument("--rollouts", type=int, default=4, help="completions per path for --scorer rollouts")
    p.add_argument("--seed", type=int, default=0, help="random seed for sampling")
    p.add_argument("--batch-size", type=int, default=64, help="problems kept in flight, their model calls batched")


def add_problem_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="game24", help="game24 (default), countdown, gsm8k or math")
    p.add_argument(
        "--split", default="test", help="game24, gsm8k: train|test; countdown: train|val|val_target (default: test)"
    )
    p.add_argument(
        "--problems",
        default=None,
        help='JSONL problems file: countdown {"numbers": [...], "target": N}; gsm8k {"question", "answer"}; '
        'math {"problem", "answer"} (required for math)',
    )
    p.add_argument("--limit", type=int, default=None, help="use only the first N problems")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="qstar", description="Deliberate reasoning with language models: search, verify, improve.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    solve = sub.add_parser("solve", help="solve one problem and show the steps")
    solve.add_argument("--task", default="countdown", help="countdown (default), game24, gsm8k or math")
    solve.add_argument("--numbers", nargs="+", default=None, help="countdown: the numbers to combine, e.g. 4 9 10 13")
    solve.add_argument("--target", default=None, help="countdown: the number to reach (game24: 24)")
    solve.add_argument("--question", default=None, help="gsm8k, math: the question to answer")
    solve.add_argument("--answer", default=None, help="gsm8k, math: the reference answer, to check the result")
    solve.add_argument("--search", default="greedy", help=searches_help())
    solve.add_argument("--budget", type=int, default=None, help="most generated tokens the search may spend")
    solve.add_argument("--json", action="store_true", help="print one JSON object instead of a trace")
    add_model_args(solve)

    ev = sub.add_parser("eval", help="evaluate a search on a task's split: accuracy, compute, legality")
    add_problem_args(ev)
    ev.add_argument("--search", default="greedy", help=searches_help())
    ev.add_argument("--budget", type=int, default=None, help="most generated tokens per problem")
    ev.add_argument("--seeds", type=int, default=1, help="repeat with seeds 0..S-1; report mean and std")
    ev.add_argument("--save-trees", default=None, help="write every search tree here (JSON lines, .gz to compress)")
    ev.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    add_model_args(ev)

    cmp = sub.add_parser("compare", help="compare searches at equal budgets: table (md, json) and plot (png)")
    add_problem_args(cmp)
    cmp.add_argument("--searches", default="greedy,best-of-n,beam,mcts,astar", help="comma-separated search names")
    cmp.add_argument("--budgets", default="500,2000,8000", help="comma-separated token budgets per problem")
    cmp.add_argument("--seeds", type=int, default=3, help="seeds per (search, budget)")
    cmp.add_argument("--out", required=True, help="folder for compare.md, compare.json and compare.png")
    add_model_args(cmp)

    imp = sub.add_parser("improve", help="the self-improvement loop: search, train policy and value, evaluate, repeat")
    imp.add_argument("--run-dir", required=True, help="folder for every artifact of the run (trees, records, models)")
    imp.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last finished stage")
    from qstar.improve_config import ImproveConfig

    for f in fields(ImproveConfig):
        if isinstance(f.default, bool):
            imp.add_argument(f"--{f.name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=f.default)
        elif f.name.endswith("_search_args"):
            help_ = 'that search\'s hyper-parameters as JSON, e.g. \'{"root_k": 32, "accept": 2}\' (default: {})'
            imp.add_argument(f"--{f.name.replace('_', '-')}", type=search_args, default={}, help=help_)
        elif f.default_factory is MISSING:  # the trainer overrides keep their defaults (see --sft-epochs)
            kind = int if f.name == "eval_limit" else type(f.default)
            imp.add_argument(
                f"--{f.name.replace('_', '-')}", type=kind, default=f.default, help=f"(default: {f.default})"
            )
    imp.add_argument("--sft-epochs", type=float, default=None, help="override SFT epochs")
    imp.add_argument("--value-epochs", type=float, default=None, help="override value-model epochs")

    from qstar.train.pretrain_config import PretrainConfig

    pre = sub.add_parser("pretrain", help="train the tiny policy from scratch on random legal play (rules only)")
    for f in fields(PretrainConfig):
        pre.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default, help=f"(default: {f.default})"
        )
    return parser


def search_args(text: str) -> dict:
    """A JSON object of search hyper-parameters (argparse type)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object of hyper-parameters")
    return value


def positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise QstarError(f"{flag} must be at least 1")


def setup(args: argparse.Namespace, task_name: str, problems_file: str | None = None):
    """The task, policy and scorer the arguments name, checked before any model is loaded."""
    from qstar.policy import load_policy
    from qstar.scorers import check_scorer_name, default_scorer, get_scorer
    from qstar.tasks import get_task

    task = get_task(task_name, problems_file)
    args.scorer = args.scorer or default_scorer(task)
    check_scorer_name(args.scorer)
    for flag in ("budget", "seeds", "limit", "batch_size", "rollouts", "judge_samples"):
        positive(getattr(args, flag, None), "--" + flag.replace("_", "-"))
    policy = load_policy(args.policy, seed=args.seed, model=args.model, chat=args.chat, api_key=args.api_key)
    return (
        task,
        policy,
        get_scorer(args.scorer, task, policy, args.rollouts, args.aggregate, args.judge_samples, args.step_tag),
    )


def solve_problem(args: argparse.Namespace):
    """The one problem `qstar solve` was given: numbers and a target (countdown), or a question."""
    from qstar.tasks import get_task
    from qstar.tasks.countdown import make_problem, parse_numbers
    from qstar.types import Problem

    get_task(args.task)  # an unknown task fails first
    if args.task in ("countdown", "game24"):
        if not args.numbers:
            raise QstarError(f"--numbers is required for {args.task}")
        if args.target is None and args.task != "game24":
            raise QstarError("--target is required for countdown")
        try:
            target = 24 if args.target is None else int(args.target)
        except ValueError:
            raise QstarError(f"--target must be a whole number, got {args.target!r}") from None
        return make_problem("cli", parse_numbers(args.numbers), target)
    if not args.question:
        raise QstarError(f"--question is required for {args.task}")
    return Problem("cli", args.question.strip(), args.answer)


def cmd_solve(args: argparse.Namespace) -> dict:
    from qstar.search import get_search, run_search

    problem = solve_problem(args)
    search = get_search(args.search)
    task, policy, scorer = setup(args, args.task)
    (tree,) = run_search(search, [problem], task, policy, scorer, budget=args.budget)
    steps = [s.text for s in tree.best_path()]
    answer = task.final_answer(problem, steps) if steps else None
    return {
        "solved": tree.solved if problem.answer is not None else None,
        "expression": answer if tree.solved and args.task in ("countdown", "game24") else None,
        "answer": answer,
        "steps": steps,
        "tokens": tree.tokens,
        "calls": tree.calls,
        "error": tree.error,
    }


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
    console.print(f"{verdict}  ({result['tokens']} tokens, {result['calls']} model calls)")


def cmd_eval(args: argparse.Namespace) -> dict:
    from qstar.evaluate import evaluate
    from qstar.io import save_trees
    from qstar.search import get_search

    search = get_search(args.search)
    task, policy, scorer = setup(args, args.task, args.problems)
    problems = task.problems(args.split, limit=args.limit)
    result, runs = evaluate(
        task, problems, policy, search, scorer, args.budget, args.seeds, args.batch_size, show_progress=not args.json
    )
    if args.save_trees:
        trees = [tree for run in runs for tree in run]
        save_trees(args.save_trees, trees, search=args.search, budget=args.budget)
    where = args.problems or f"{args.task}/{args.split}"
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


def cmd_compare(args: argparse.Namespace) -> dict:
    from qstar import compare
    from qstar.search import get_search

    names = [s.strip() for s in args.searches.split(",") if s.strip()]
    for name in names:
        get_search(name)  # an unknown name fails here, before any work
    try:
        budgets = [int(b) for b in args.budgets.split(",")]
    except ValueError:
        raise QstarError(f"--budgets must be comma-separated whole numbers, got {args.budgets!r}") from None
    for b in budgets:
        positive(b, "--budgets")
    task, policy, scorer = setup(args, args.task, args.problems)
    problems = task.problems(args.split, limit=args.limit)
    rows = compare.compare(task, problems, policy, scorer, names, budgets, args.seeds, args.batch_size)
    where = args.problems or f"{args.task}/{args.split}"
    compare.write(rows, Path(args.out), f"{where}, {len(problems)} problems, scorer {args.scorer}")
    return {"rows": rows, "out": args.out}


def print_compare(result: dict, console: Console) -> None:
    from qstar.compare import table

    console.print(table(result["rows"]))
    console.print(f"wrote {result['out']}/compare.md, compare.json, compare.png")


def cmd_pretrain(args: argparse.Namespace) -> dict:
    from qstar.train.pretrain import pretrain
    from qstar.train.pretrain_config import PretrainConfig

    cfg = PretrainConfig(**{f.name: getattr(args, f.name) for f in fields(PretrainConfig)})
    return pretrain(cfg)["final"]


def cmd_improve(args: argparse.Namespace) -> dict:
    from qstar.improve import Improve
    from qstar.improve_config import ImproveConfig
    from qstar.search import get_search

    names = {f.name for f in fields(ImproveConfig) if f.default_factory is MISSING or f.name.endswith("_search_args")}
    cfg = ImproveConfig(**{name: getattr(args, name) for name in names})
    if args.sft_epochs is not None:
        cfg.sft["epochs"] = args.sft_epochs
    if args.value_epochs is not None:
        cfg.value["epochs"] = args.value_epochs
    get_search(cfg.data_search, **cfg.data_search_args), get_search(cfg.eval_search, **cfg.eval_search_args)
    for flag in ("iterations", "train_problems", "data_budget", "eval_budget", "rollouts"):
        positive(getattr(cfg, flag), "--" + flag.replace("_", "-"))
    return {"rows": Improve(cfg, args.run_dir, args.resume).run(), "run_dir": args.run_dir}


COMMANDS = {
    "solve": (cmd_solve, print_solve),
    "eval": (cmd_eval, print_eval),
    "compare": (cmd_compare, print_compare),
    "improve": (cmd_improve, lambda r, c: c.print(f"metrics in {r['run_dir']}/metrics.jsonl, plots in improve.png")),
    "pretrain": (cmd_pretrain, lambda r, c: c.print(r)),
}


def quiet_transformers() -> None:
    """Keep transformers' load reports and progress bars out of qstar's own output."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    # transformers' GGUF loader draws a raw tqdm bar; tqdm reads this variable when it is imported
    os.environ.setdefault("TQDM_DISABLE", "1")
    args = build_parser().parse_args(argv)
    if args.command in ("solve", "eval", "compare", "improve", "pretrain"):
        quiet_transformers()
    run, show = COMMANDS[args.command]
    try:
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
