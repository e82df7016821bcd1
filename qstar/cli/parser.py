"""`build_parser`: every `qstar` command and its flags. Torch-free, so `--help` and a wrong flag answer at once."""

from __future__ import annotations

import argparse

from qstar.cli.options import (
    Parser,
    add_config_args,
    add_model_args,
    add_plugin_arg,
    add_problem_args,
    add_scale_args,
    add_search_args,
    add_task_args,
    json_object,
    port_number,
    positive_int,
    problem_fields,
)


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    from qstar.pipelines.improve_config import ImproveConfig
    from qstar.pipelines.pretrain_config import PretrainConfig

    parser = Parser(prog="qstar", description="Deliberate reasoning with language models: search, verify, improve.")
    parser.add_argument("--version", action="version", version=f"qstar {version('qstar')}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    solve = sub.add_parser("solve", help="solve one problem and show the steps")
    solve.add_argument("problem", nargs="?", default=None, help="the problem as text, e.g. '4 9 10 13 -> 24'")
    add_task_args(solve, "countdown")
    for name, spec in problem_fields().items():
        solve.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, **spec)
    add_search_args(solve)
    solve.add_argument(
        "--budget",
        type=positive_int,
        default=None,
        help="most generated tokens the search may spend (default: no limit but the search's own)",
    )
    solve.add_argument("--json", action="store_true", help="print one JSON object instead of a trace")
    add_model_args(solve, batched=False)

    ev = sub.add_parser("eval", help="evaluate a search on a task's split: accuracy, compute, legality")
    add_problem_args(ev)
    add_search_args(ev)
    ev.add_argument(
        "--budget",
        type=positive_int,
        default=None,
        help="most generated tokens per problem (default: no limit but the search's own)",
    )
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
        "given; trainer settings are --sft-*, --dpo-*, --value-* and --policy-value-* (the SFT, step-DPO, value and "
        "shared-trunk trainers).",
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
        "`torchrun --nproc_per_node N -m qstar train ...`. Only the main process writes the checkpoint. The defaults "
        "are the trainers' own; an improve iteration trains with its config's sft, dpo and value settings (`qstar "
        "improve --help`: for the tiny model on a few hundred puzzles, e.g. SFT 20 epochs at 1e-3), so pass those "
        "(`--config FILE` of an improve run reads its table for the trainer) to repeat an iteration's stage.",
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
        k.add_argument(
            "--separator", default="\n", help="what ends a step (value: where each step is read; default: a newline)"
        )
        k.add_argument(
            "--config",
            default=None,
            help=f"a TOML or JSON file of the trainer's settings, or an improve config (its [{kind}] table; flags win)",
        )
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
    add_task_args(srv, "countdown")
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

    from qstar.pipelines.label import KINDS

    rec = sub.add_parser(
        "records",
        help="training records from saved search trees: step labels for a value model or PRM, solutions, pairs",
        description="Write the records an iteration of `qstar improve` writes, from any saved trees (`qstar eval "
        "--save-trees FILE`, an improve run's iter-K/trees.jsonl.gz), as JSONL for `qstar train` or your own "
        "trainer. Kinds: " + "; ".join(f"{k}: {v}" for k, v in KINDS.items()) + ".",
    )
    rec.add_argument("trees", nargs="+", help="trees files (trees.jsonl or .jsonl.gz); their records go in one file")
    rec.add_argument("--kind", choices=list(KINDS), default="value", help="which records (default: value)")
    rec.add_argument("--out", required=True, help="the JSONL file to write")
    rec.add_argument(
        "--task",
        default=None,
        help="the task that renders the prompts (default: the one the trees say: qstar eval writes it on each "
        "tree, an improve run in its config.json)",
    )
    rec.add_argument("--task-args", type=json_object, default={}, help="the task's options as JSON, with --task")
    rec.add_argument(
        "--labels",
        choices=["mc", "hard"],
        default="mc",
        help="value and targets: mc, the share of verified completions below a step (a step with none below takes "
        "its search score); hard, 1 when any completion below verifies, unlabelled when none was explored "
        "(default: mc)",
    )
    rec.add_argument(
        "--shared-states",
        action="store_true",
        help="hard labels: 1 also where a step reaches a state a verified solution of any of the trees passed through",
    )
    rec.add_argument(
        "--margin",
        type=float,
        default=0.3,
        help="preferences: the least difference of mc values between the chosen and the rejected step (default: 0.3)",
    )
    rec.add_argument(
        "--per-problem",
        type=int,
        default=0,
        metavar="N",
        help="sft: at most N solutions a problem, the first found (default: 0, every distinct one)",
    )
    rec.add_argument("--json", action="store_true", help="print one JSON object instead of a line")
    add_plugin_arg(rec)

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
