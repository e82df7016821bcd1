"""The pieces the `qstar` parser is built from: argparse types, the flags several commands share, and config
dataclasses as flags (a flag per field, its help and default), merged over a config file's settings."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any, TypeVar

from qstar.config import field_types, from_dict, help_of, read_config_file

C = TypeVar("C")


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


def add_model_args(p: argparse.ArgumentParser, key_flag: str = "--api-key", batched: bool = True) -> None:
    """The policy, scorer and seed flags; with `batched`, --batch-size (problems in flight: not for one problem)."""
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
    if batched:
        p.add_argument(
            "--batch-size",
            type=positive_int,
            default=64,
            help="problems kept in flight, their model calls batched (default: %(default)s)",
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


def add_search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--search", default="greedy", help=f"search algorithm: {names('search')} (default: greedy)")
    p.add_argument(
        "--search-args",
        type=json_object,
        default={},
        help="its hyper-parameters as JSON, e.g. '{\"simulations\": 128}'",
    )


def add_task_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--task", default=default, help=f"the task: {names('task')} (default: {default})")
    p.add_argument(
        "--task-args",
        type=json_object,
        default={},
        help="its options as JSON, e.g. '{\"shots\": 0}' (gsm8k); `qstar list` shows every option",
    )


def add_problem_args(p: argparse.ArgumentParser) -> None:
    add_task_args(p, "game24")
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
    p.add_argument("--limit", type=positive_int, default=None, help="use only the first N problems (default: all)")


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


def config_of(args: argparse.Namespace, cls: type[C], table: str | None = None) -> C:
    """The config the command asks for: its defaults, then the `--config` file's settings (where the command takes
    one; with `table`, a file holding a table of that name, such as an improve config's `[value]`, gives that
    table), then the flags given."""
    settings = read_config_file(args.config) if getattr(args, "config", None) else {}
    if table is not None and isinstance(settings.get(table), dict):
        settings = settings[table]
    return from_dict(cls, merge(settings, given_settings(args, cls)))


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
