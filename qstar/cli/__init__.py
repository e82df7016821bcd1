"""The `qstar` command: solve a problem, evaluate or compare searches, run the improvement loop, pretrain, list the
plug-ins. Every name (task, policy, scorer, search) is resolved through the registries, so `--plugin FILE.py`
and installed packages add choices without any change here."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

from rich.console import Console

from qstar.cli.commands import COMMANDS, shortfall
from qstar.cli.parser import build_parser
from qstar.errors import QstarError
from qstar.registry import load_plugin


def quiet_transformers() -> None:
    """Keep transformers' load reports and progress bars out of qstar's own output: through its environment
    variables, read when it is imported, so a command that loads no model does not import it for this."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # imported before `main` ran (the Python API, a test)
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


def command_first(argv: list[str]) -> list[str]:
    """`--plugin FILE.py` given before the command (`qstar --plugin x.py list`) moved after it, where the command's
    parser reads it."""
    lead = 0
    while lead < len(argv) and argv[lead].startswith("--plugin"):
        lead += 1 if "=" in argv[lead] else 2
    return [*argv[lead:], *argv[:lead]]


def main(argv: list[str] | None = None) -> int:
    # transformers' GGUF loader draws a raw tqdm bar; tqdm reads this variable when it is imported
    os.environ.setdefault("TQDM_DISABLE", "1")
    argv = command_first(sys.argv[1:] if argv is None else argv)
    try:
        load_plugins(argv)
        args = build_parser().parse_args(argv)
        quiet_transformers()
        run, show = COMMANDS[args.command]
        result = run(args)
    except QstarError as e:
        if os.environ.get("QSTAR_TRACEBACK"):  # where a plug-in's exception came from
            traceback.print_exc()
        print(f"qstar: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: a line, not a traceback; what a run finished is on disk already
        resume = "; run it again with --resume to continue" if argv[:1] == ["improve"] else ""
        print(f"qstar: interrupted{resume}", file=sys.stderr)
        return 130
    if getattr(args, "json", False):
        print(json.dumps(result))
    else:
        show(result, Console())
    why = shortfall(args.command, result)
    if why:
        print(f"qstar: error: {why}", file=sys.stderr)
        return 1
    return 0
