"""The self-improvement benchmark: `qstar improve` (from the rules-only checkpoint by default), then its
ablations, one table. The recipes of the shipped checkpoints are config files in configs/.

    python benchmarks/improve.py                       # improve_config.py's defaults on 2 cores, then the ablations
    python benchmarks/improve.py --config configs/tiny-improved-1-gpu.toml --run-dir runs/g    # first leg (CUDA)
    python benchmarks/improve.py --config configs/tiny-improved-2-gpu.toml --run-dir runs/g2   # second
    python benchmarks/improve.py --config configs/tiny-improved-3-cpu.toml --run-dir runs/d1   # third (2 cores)
    python benchmarks/improve.py --config configs/tiny-improved-4-cpu.toml --run-dir runs/d2   # fourth (2 cores)
    python benchmarks/improve.py --run-dir runs/X --resume
    python benchmarks/improve.py --ablation            # four arms, 3 seeds each (~2 hours on 2 cores)
    python benchmarks/improve.py --ablation --jobs 3   # three runs at once (a machine with 6+ cores or a GPU)
    python benchmarks/improve.py --ablation --arms shared    # one arm

Rows, all measured in this run on the same test problems:
  - iteration 0 (the starting policy; rules-only by default) and each iteration: greedy and search accuracy;
  - SFT only against SFT + step-DPO: the last iteration's `policy-sft/` against its `policy/`;
  - value-guided against rollout-guided search at equal token budget, with the last iteration's policy;
  - the last policy on countdown `val_target` (targets never seen in training).
Ratios are accuracies over iteration 0's, measured in the same run; the targets of issue #4 are printed
beside the figures and are not changed by anything here.

`--ablation` instead runs the config (default: the demo's) in four arms at the same search budget and
iterations, each with 3 seeds (the problem samples, sampling and every trainer's seed): the policy trained toward
the search's own choices (`search_targets`, AlphaZero's policy improvement, no DPO), SFT on verified solutions
with light step-DPO (the earlier recipe), the search targets on a shared trunk (`shared_trunk`: policy and
value one network, both heads trained together), and the search targets with two Monte-Carlo rollouts a step
before the first value model (`rollouts`; the demo's `rollouts = 0` lets the verifier alone score then, so the
data search spends its tokens on its own expansions); `--arms` picks some. A table of the last iteration's greedy and
search accuracy per seed, mean +- standard deviation, and each arm's seconds (the compute each spent).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from qstar.config import from_dict, read_config_file
from qstar.io import write_jsonl
from qstar.pipelines.evaluate import evaluate
from qstar.pipelines.improve import Improve
from qstar.pipelines.improve_config import ImproveConfig
from qstar.policy import load_policy
from qstar.scorers import RolloutScorer, get_scorer
from qstar.search import get_search
from qstar.tasks import get_task

TARGETS = {"game24": (0.60, 0.95), "countdown": (0.50, 0.80)}  # (greedy, search) from issue #4


def pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def ratio(x: float | None, base: float | None) -> str:
    if x is None or base is None:
        return "—"
    return f"{x / base:.2f}x" if base > 0 else f"+{x - base:.1%} (baseline 0)"


ARMS = {  # the ablation's arms: a short name (its runs' folders), its title, and settings laid over the config
    "targets": ("search targets, no DPO", {"search_targets": True, "step_dpo": False}),
    "dpo": ("SFT + light step-DPO", {"search_targets": False, "step_dpo": True}),
    "shared": ("shared trunk, search targets", {"search_targets": True, "step_dpo": False, "shared_trunk": True}),
    "rollouts": ("search targets, two rollouts", {"search_targets": True, "step_dpo": False, "rollouts": 2}),
}
TRAINERS = ("sft", "dpo", "value", "policy_value")  # every trainer's seed follows the run's


def improve_run(settings: dict, run_dir: str, threads: int | None) -> tuple[list[dict], float]:
    """One `qstar improve` run (resumed if its folder holds one): its metrics rows and the seconds of its stages."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    cfg = from_dict(ImproveConfig, settings)
    rows = Improve(cfg, run_dir, resume=(Path(run_dir) / "config.json").exists()).run()
    timings = [json.loads(p.read_text()) for p in sorted(Path(run_dir).glob("iter-*/timings.json"))]
    return rows, sum(sum(t.values()) for t in timings)


def exit_with_parent(parent: int) -> None:
    """In a pool worker: end this process once the benchmark that started it is gone (killed, it leaves its
    workers running, each still writing its run folder)."""
    import os
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def ablation(settings: dict, run_dir: Path, arms: list[str], seeds: int, jobs: int, console: Console) -> None:
    """The arms with `seeds` seeds each, `jobs` runs at once (each in its own process)."""
    import os
    import statistics
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    runs = {}
    for arm in arms:
        for seed in range(seeds):
            seeded = {"seed": seed, **{k: {**settings.get(k, {}), "seed": seed} for k in TRAINERS}}
            runs[(arm, seed)] = ({**settings, **ARMS[arm][1], **seeded}, str(run_dir / f"{arm}-seed{seed}"))
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    pool = ProcessPoolExecutor(
        jobs, mp_context=get_context("spawn"), initializer=exit_with_parent, initargs=(os.getpid(),)
    )
    with pool:
        futures = {key: pool.submit(improve_run, *run, threads) for key, run in runs.items()}
        results = {key: future.result() for key, future in futures.items()}
    saved = {f"{ARMS[a][0]} / seed {s}": r for (a, s), r in results.items()}
    (run_dir / "ablation.json").write_text(json.dumps(saved))

    def spread(values: list[float], fmt=pct) -> str:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{fmt(statistics.mean(values))} +- {fmt(std)}"

    table = Table(title=f"policy improvement ablation: the last iteration, {seeds} seeds, {jobs} run(s) at once")
    for col in ("arm", "greedy by seed", "greedy", "search by seed", "search", "search tokens", "seconds"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for arm in arms:
        last = [results[(arm, s)][0][-1] for s in range(seeds)]
        greedy = [r["greedy_accuracy"] for r in last]
        search = [r["search_accuracy"] for r in last]
        table.add_row(
            ARMS[arm][0],
            " / ".join(pct(g) for g in greedy),
            spread(greedy),
            " / ".join(pct(x) for x in search),
            spread(search),
            f"{statistics.mean(r['search_tokens_per_problem'] for r in last):.0f}",
            spread([results[(arm, s)][1] for s in range(seeds)], lambda x: f"{x:.0f}"),
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config",
        default=None,
        help="a qstar improve config file (default: improve_config.py's defaults; configs/demo.toml is the demo's)",
    )
    parser.add_argument(
        "--run-dir",
        default=None,
        help="default runs/bench-improve-CONFIG (the config file's name, `defaults` without one); with --ablation "
        "runs/ablation",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir where it stopped")
    parser.add_argument("--iterations", type=int, default=None, help="override the config's iterations")
    parser.add_argument("--policy", default=None, help="override the config's starting policy")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", help="set a config field")
    parser.add_argument("--compare-searches", default="best-of-n,beam,mcts,dfs-wide", help="for value vs rollouts")
    parser.add_argument("--countdown-limit", type=int, default=200, help="val_target problems for the last policy")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="search targets vs SFT + DPO vs shared trunk vs two rollouts, --seeds seeds each",
    )
    parser.add_argument("--arms", default=",".join(ARMS), help=f"the ablation's arms, of {', '.join(ARMS)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per arm of --ablation")
    parser.add_argument("--jobs", type=int, default=1, help="runs of --ablation at once, each in its own process")
    args = parser.parse_args()
    if args.ablation and args.config is None:
        args.config = "configs/demo.toml"

    settings = read_config_file(args.config) if args.config else {}
    if args.iterations is not None:
        settings["iterations"] = args.iterations
    if args.policy is not None:
        settings["policy"] = args.policy
    for item in args.set:
        name, _, value = item.partition("=")
        settings[name] = json.loads(value)
    cfg = from_dict(ImproveConfig, settings)
    run_dir = Path(args.run_dir or f"runs/bench-improve-{Path(args.config).stem if args.config else 'defaults'}")
    console = Console(width=150)
    if args.ablation:
        arms = [a.strip() for a in args.arms.split(",")]
        if unknown := [a for a in arms if a not in ARMS]:
            parser.error(f"unknown arm {unknown[0]!r}; the arms are {', '.join(ARMS)}")
        ablation(settings, Path(args.run_dir or "runs/ablation"), arms, args.seeds, args.jobs, console)
        return
    start = time.time()
    run = Improve(cfg, run_dir, resume=args.resume)
    rows = run.run()
    seconds = {"improve": time.time() - start}
    last, task, budget = cfg.iterations, run.task, cfg.eval_budget
    test, size = run.test, cfg.batch_size

    def measure(policy_path: Path, search: str, scorer=None, problems=test, on=task) -> dict:
        policy = load_policy(str(policy_path), device=run.device, seed=cfg.seed)
        if callable(scorer):
            scorer = scorer(policy)
        hyper = cfg.eval_search_args if search == cfg.eval_search else {}
        result, _ = evaluate(on, problems, policy, get_search(search, **hyper), scorer, budget, batch_size=size)
        return {"accuracy": result.accuracy, "tokens": result.tokens_per_problem}

    value_path = run.it(last) / "value"
    value = get_scorer("value", task, path=str(value_path), device=run.device)
    ablations: dict = {}
    t = time.time()
    sft_only = run.it(last) / "policy-sft"
    if sft_only.exists():
        ablations["sft_only"] = {
            "greedy": measure(sft_only, "greedy"),
            "search": measure(sft_only, cfg.eval_search, value),
        }
    ablations["sft_dpo"] = {"greedy": measure(run.policy_path(last), "greedy")}
    ablations["sft_dpo"]["search"] = measure(run.policy_path(last), cfg.eval_search, value)
    ablations["scorers"] = {}
    k = cfg.rollouts or 2  # a run without rollouts (rollouts = 0) is compared with two a step
    for name in args.compare_searches.split(","):
        ablations["scorers"][name] = {
            "value": measure(run.policy_path(last), name, value),
            "rollouts": measure(run.policy_path(last), name, lambda p: RolloutScorer(task, p, k=k)),
        }
    countdown = get_task("countdown")
    held = countdown.problems("val_target", limit=args.countdown_limit)
    cd_value = get_scorer("value", countdown, path=str(value_path), device=run.device)
    ablations["countdown"] = {
        "baseline_greedy": measure(run.policy_path(0), "greedy", problems=held, on=countdown),
        "greedy": measure(run.policy_path(last), "greedy", problems=held, on=countdown),
        "search": measure(run.policy_path(last), cfg.eval_search, cd_value, problems=held, on=countdown),
        "n": len(held),
    }
    seconds["ablations"] = time.time() - t
    (run_dir / "benchmark.json").write_text(json.dumps({"rows": rows, "ablations": ablations, "seconds": seconds}))
    write_jsonl(run_dir / "benchmark_rows.jsonl", rows)

    base_g, base_s = rows[0]["greedy_accuracy"], rows[0]["search_accuracy"]
    goal_g, goal_s = TARGETS["game24" if cfg.task == "game24" else "countdown"]
    where = f"{len(test)} test problems, {cfg.eval_search} at {budget} tokens"
    table = Table(title=f"qstar improve on {cfg.task} ({where})")
    for col in ("row", "greedy", "x base", "search", "x base", "search tokens"):
        table.add_column(col, justify="right")
    for r in rows:
        name = f"iteration 0 ({cfg.policy})" if r["iteration"] == 0 else f"iteration {r['iteration']}"
        g, s = r["greedy_accuracy"], r["search_accuracy"]
        table.add_row(name, pct(g), ratio(g, base_g), pct(s), ratio(s, base_s), f"{r['search_tokens_per_problem']:.0f}")
    final = f"iteration {last}: SFT + DPO" if cfg.step_dpo else f"iteration {last}: SFT only (no DPO)"
    for key, label in (("sft_only", f"iteration {last}: SFT only"), ("sft_dpo", final)):
        if key in ablations:
            g, s = ablations[key]["greedy"]["accuracy"], ablations[key]["search"]
            table.add_row(label, pct(g), ratio(g, base_g), pct(s["accuracy"]), ratio(s["accuracy"], base_s))
    table.add_row("target", f"≥ {goal_g:.0%}", "", f"≥ {goal_s:.0%}", "", f"≤ {budget}")
    console.print(table)

    cmp = Table(title=f"value- vs rollout-guided search at {budget} tokens, iteration {last}'s policy")
    for col in ("search", "value model", "tokens", "rollouts", "tokens", "value / rollouts"):
        cmp.add_column(col, justify="right")
    for name, r in ablations["scorers"].items():
        v, ro = r["value"], r["rollouts"]
        cmp.add_row(
            name, pct(v["accuracy"]), f"{v['tokens']:.0f}", pct(ro["accuracy"]), f"{ro['tokens']:.0f}",
            ratio(v["accuracy"], ro["accuracy"]),
        )  # fmt: skip
    console.print(cmp)

    cd = ablations["countdown"]
    cdt = Table(title=f"countdown val_target ({cd['n']} problems, targets never trained on)")
    for col in ("policy", "greedy", "search", "target greedy / search"):
        cdt.add_column(col, justify="right")
    goal = TARGETS["countdown"]
    cdt.add_row(f"iteration 0 ({cfg.policy})", pct(cd["baseline_greedy"]["accuracy"]), "", "")
    cdt.add_row(
        f"iteration {last}",
        pct(cd["greedy"]["accuracy"]),
        f"{cd['search']['accuracy']:.1%} ({cd['search']['tokens']:.0f} tokens)",
        f"≥ {goal[0]:.0%} / ≥ {goal[1]:.0%}",
    )
    console.print(cdt)
    console.print(f"improve {seconds['improve']:.0f} s, ablations {seconds['ablations']:.0f} s, device {run.device}")


if __name__ == "__main__":
    from entry import run

    run(main)
