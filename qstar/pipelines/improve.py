"""`qstar improve`: the Q* loop. Each iteration: search the train split with the current policy and value
model → save the trees → extract records → train the policy (SFT, step-DPO) and the value model, or both heads
of one shared-trunk network (`qstar.pipelines.fit`) → evaluate greedy and search on the test split → append to
metrics.jsonl and redraw the plots (`qstar.pipelines.improve_report`).

Every stage writes its output atomically (files through a temporary name, checkpoints through a temporary
folder), and a stage whose output exists is finished: `--resume` continues from the first unfinished stage.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import random
import time
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from qstar.checkpoints import resolve
from qstar.config import from_dict
from qstar.errors import QstarError
from qstar.io import atomic_write, load_trees, save_trees, write_jsonl
from qstar.models import check_adapters, device_of
from qstar.pipelines.evaluate import EvalResult, evaluate
from qstar.pipelines.fit import fit, fit_shared, saved_base
from qstar.pipelines.improve_config import ImproveConfig
from qstar.pipelines.improve_report import plot, table
from qstar.pipelines.launch import launch_command
from qstar.pipelines.replica import Replica
from qstar.policy import Policy, load_policy
from qstar.policy.served import check_hook, check_same_tokenizer, reload_server
from qstar.records import (
    preference_records,
    proven_states,
    search_target_records,
    sft_records,
    value_records,
)
from qstar.scorers import Scorer
from qstar.search import get_search
from qstar.tasks import get_task
from qstar.tasks.base import load_problems

if TYPE_CHECKING:
    from qstar.pipelines.workers import Workers

console = Console(stderr=True)


def changed_settings(saved: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """The settings (`sft.epochs` for a nested one) in which `given` differs from a run's `saved` ones, each with
    both values; the iteration count is not among them (a resume may raise it)."""
    changed = []
    for key, value in given.items():
        was = saved.get(key)
        if key == "iterations" or was == value:
            continue
        if isinstance(value, dict) and isinstance(was, dict):
            changed += [f"{key}.{k} (run: {was.get(k)!r}, here: {v!r})" for k, v in value.items() if was.get(k) != v]
        else:
            changed.append(f"{key} (run: {was!r}, here: {value!r})")
    return changed


class Improve:
    """The stages of one run, each skipped when its output already exists."""

    def __init__(
        self,
        cfg: ImproveConfig,
        run_dir: str | Path,
        resume: bool = False,
        device: str | None = None,
        workers: int | None = None,
        ray: str | None = None,
    ):
        """`workers` / `ray`: search and evaluate on Ray workers (`qstar.pipelines.workers`); not settings of the
        run, since the trees and figures are the same without them."""
        self.cfg, self.dir = cfg, Path(run_dir)
        self.scale = (workers, ray) if workers is not None or ray is not None else None
        self.device = device_of(device)  # CUDA when visible, else the CPU; not a setting of the run
        self.task = get_task(cfg.task, **cfg.task_args)
        self.extra_task = get_task(cfg.extra_task) if cfg.extra_task else None
        self.served: tuple[int, str | None] | None = None  # the iteration the server serves, and its model name
        check_hook(cfg.reload)
        if not (cfg.served or resume or resolve(cfg.policy).exists()):  # a plug-in backend's name, a typo
            raise QstarError(
                f"policy {cfg.policy!r} has no weights to train: give a shipped checkpoint (tiny-rules, tiny), a "
                "model folder or .gguf file, or a server's URL with train_model"
            )
        if cfg.launcher:
            launch_command(cfg.launcher)
        if cfg.lora:
            check_adapters(self.policy_path(0), cfg.lora_settings.peft())
        if cfg.served:
            check_same_tokenizer(load_policy(cfg.policy, **cfg.server_args), self.policy_path(0))
        saved = self.dir / "config.json"
        if resume and not saved.exists():  # a run writes its settings before any stage: nothing was started here
            raise QstarError(f"no run to resume in {self.dir} (it holds no config.json): drop --resume to start one")
        self.lock = lock_run_folder(self.dir)
        if saved.exists():
            if not resume:
                raise QstarError(
                    f"{self.dir} holds a run already: pass --resume to continue it, or pick another --run-dir"
                )
            before = json.loads(saved.read_text())
            if before.get("task") != cfg.task:
                raise QstarError(f"{self.dir} holds a run of the {before.get('task')} task, not {cfg.task}")
            saved_cfg = asdict(from_dict(ImproveConfig, before))  # a setting added since: its default
            changed = changed_settings(saved_cfg, asdict(cfg))
            if changed:
                raise QstarError(
                    f"{saved} differs from this command's settings in {'; '.join(changed[:3])}: resume with the "
                    "run's settings (only --iterations may change)"
                )
            if cfg.iterations < saved_cfg["iterations"]:
                raise QstarError(
                    f"--iterations {cfg.iterations} is below the run's {saved_cfg['iterations']}: a resume may raise "
                    "it, not lower it"
                )
            if saved_cfg["iterations"] == cfg.iterations:
                return
        try:
            atomic_write(saved, json.dumps(asdict(cfg), indent=1).encode())
        except OSError as e:
            raise QstarError(f"cannot write the run folder {self.dir}: {e.strerror or e}") from None

    @cached_property
    def test(self) -> list:
        """The evaluation problems: the task's evaluation split (game24's test games, countdown's held-out targets)."""
        return load_problems(self.task, self.task.eval_split, self.cfg.eval_limit)

    @cached_property
    def train(self) -> list:
        """The task's train split, or the `problems` file (never one of its evaluation problems). Made on first use
        only: countdown's train split takes a minute, and a resumed run may not need it."""
        if not self.cfg.problems:
            return load_problems(self.task, "train")
        problems = load_problems(
            get_task(self.cfg.task, **{**self.cfg.task_args, "problems_file": self.cfg.problems}), "train"
        )
        kept = [p for p in problems if self.task.problem_key(p) not in self.held_out]
        if len(kept) < len(problems):
            console.print(
                f"{len(problems) - len(kept)} problems of {self.cfg.problems} are evaluation problems: left out"
            )
        return kept

    @cached_property
    def extra(self) -> list:
        """The extra task's train problems, never one that is an evaluation problem of this task or of the extra
        task (countdown's train split may hold a game24 test game: same numbers, target 24)."""
        if self.extra_task is None or self.cfg.extra_problems <= 0:
            return []
        pool = load_problems(self.extra_task, "train", self.cfg.extra_problems * self.cfg.iterations)
        return [p for p in pool if self.task.problem_key(p) not in self.held_out]

    @cached_property
    def held_out(self) -> set:
        """The keys (`Task.problem_key`) of every problem an evaluation of this run's tasks uses, built once:
        what training must never see."""
        problems = self.task.evaluation_problems()
        if self.extra_task is not None:
            problems += self.extra_task.evaluation_problems()
        return {self.task.problem_key(p) for p in problems}

    # ---- paths and models ---------------------------------------------------------------------------------

    def it(self, k: int) -> Path:
        return self.dir / f"iter-{k}"

    def policy_path(self, k: int) -> Path:
        """Iteration k's policy weights; before iteration 1 the starting policy's (a server's: `train_model`)."""
        return self.it(k) / "policy" if k > 0 else resolve(self.cfg.train_model or self.cfg.policy)

    def replica(self, k: int, evaluation: bool = False) -> Replica:
        """Iteration k's policy and scorer by name and options: the server when it serves these weights (the start,
        or each iteration's after a reload), else a local policy on the weights; as scorer, rollouts (none with
        `rollouts = 0`: the verifier alone) until a value model exists (or `start_value`), then the latest one with
        the ground truth. In evaluation, where the task's verifier reads the reference answer (word problems),
        neither uses it: the step checker before a value model exists, the value model alone after."""
        seed = self.cfg.seed + k
        if self.cfg.served and (k == 0 or self.cfg.reload):
            policy, options = self.cfg.policy, {**self.cfg.server_args, "seed": seed, "model": self.served_model(k)}
        else:
            policy, options = str(self.policy_path(k)), {"device": self.device, "seed": seed}
        if self.cfg.legal_steps:
            options["legal_steps"] = True
        path = self.value_path(k)
        blind = evaluation and self.task.verifier_needs_reference
        if path is not None:
            scorer = "value"
            scorer_options = {"path": str(path), "device": self.device, "ground_truth": not blind}
        elif blind:
            scorer, scorer_options = "checker", {}
        elif self.cfg.rollouts == 0:  # unlabelled partial steps score 0, as unexplored ones do
            scorer, scorer_options = "verifier", {"partial": 0.0}
        else:
            scorer, scorer_options = "rollouts", {"k": self.cfg.rollouts}
        return Replica(
            self.cfg.task,
            policy,
            scorer,
            task_options=self.cfg.task_args,
            policy_options=options,
            scorer_options=scorer_options,
        )

    def models(self, k: int, evaluation: bool = False) -> tuple[Policy, Scorer | None]:
        """Iteration k's policy and scorer (`replica`), loaded in this process."""
        _, policy, scorer = self.replica(k, evaluation).load()
        return policy, scorer

    def workers(self, k: int, evaluation: bool = False) -> Workers | contextlib.nullcontext:
        """Ray workers holding iteration k's models when the run has `workers` or `ray`, else nothing to enter."""
        if self.scale is None:
            return contextlib.nullcontext()
        from qstar.pipelines.workers import Workers

        count, address = self.scale
        return Workers(self.replica(k, evaluation), count, address, self.cfg.batch_size)

    def served_model(self, k: int) -> str | None:
        """The server's model name for iteration k's weights, reloading them once per iteration and run (a resumed
        run reloads, so a restarted server serves the right weights); None: the server's default model."""
        if k == 0:
            return None
        if self.served is None or self.served[0] != k:
            run = hashlib.sha1(str(self.dir.resolve()).encode()).hexdigest()[:8]
            name = reload_server(
                load_policy(self.cfg.policy, **self.cfg.server_args),
                self.cfg.reload,
                self.it(k) / "policy",
                f"qstar-{run}-iter-{k}",
            )
            self.served = (k, name)
        return self.served[1]

    def value_path(self, k: int) -> Path | None:
        """Iteration k's value model (its policy with `shared_trunk`); before iteration 1 the `start_value` one, if
        any."""
        if k > 0:
            return self.it(k) / ("policy" if self.cfg.shared_trunk else "value")
        return resolve(self.cfg.start_value) if self.cfg.start_value else None

    # ---- stages -------------------------------------------------------------------------------------------

    def search(self, k: int) -> None:
        """Trees of the current models on a seeded sample of train problems."""
        out = self.it(k) / "trees.jsonl.gz"
        if out.exists():
            return
        rng = random.Random(self.cfg.seed * 1000 + k)
        problems = rng.sample(self.train, min(self.cfg.train_problems, len(self.train)))
        problems += rng.sample(self.extra, min(self.cfg.extra_problems, len(self.extra)))
        policy, scorer = self.models(k - 1)
        console.print(f"iteration {k}: searching {len(problems)} train problems ({self.cfg.data_search})")
        search = get_search(self.cfg.data_search, **self.cfg.data_search_args)
        with self.workers(k - 1) as workers:
            result, (trees,) = evaluate(
                self.task,
                problems,
                policy,
                search,
                scorer,
                self.cfg.data_budget,
                batch_size=self.cfg.batch_size,
                training_data=True,  # the verifier may guide a data search, even one that reads the reference
                workers=workers,
                seed=self.cfg.seed,
            )
        check_searched(result, "data")
        save_trees(out, trees)
        console.print(
            f"  solved {result.solved:g}/{len(problems)} train problems, {result.tokens_per_problem:.0f} tokens each"
        )

    def records(self, k: int) -> None:
        """SFT, value and preference records from every iteration's trees so far (a replay of all the data)."""
        names = ("value.jsonl", "preferences.jsonl", "sft.jsonl")  # sft last: its presence marks the stage done
        if (self.it(k) / names[-1]).exists():
            return
        trees = load_trees(self.it(k) / "trees.jsonl.gz")
        by_iteration = [load_trees(self.it(j) / "trees.jsonl.gz") for j in range(1, k)]
        earlier = [t for ts in by_iteration for t in ts]
        leaked = [t.problem.id for t in earlier + trees if self.task.problem_key(t.problem) in self.held_out]
        if leaked:  # the searches never get such a problem; records must never hold one either
            raise QstarError(f"evaluation problems among the training trees: {', '.join(leaked[:5])}")
        proven = proven_states(earlier + trees, self.task) if self.cfg.shared_states else set()
        values = value_records(earlier + trees, self.task, self.cfg.value_labels, proven)
        if len(values) > self.cfg.max_value_records:  # one record per path grows fast: train on a seeded sample
            values = random.Random(self.cfg.seed * 1000 + k).sample(values, self.cfg.max_value_records)
        if values and not any(label > 0 for r in values for label in r["labels"]):
            console.print(f"  iteration {k}: no path reached a solution, so no value records (the value model is kept)")
            values = []  # labels all 0 would teach the value model that every step is dead
        write_jsonl(self.it(k) / "value.jsonl", values)
        write_jsonl(self.it(k) / "preferences.jsonl", preference_records(trees, self.task, self.cfg.preference_margin))
        cfg = self.cfg
        window = cfg.sft_replay - 1 if cfg.sft_replay else len(by_iteration)  # earlier iterations SFT replays
        replayed = [t for ts in by_iteration[len(by_iteration) - window :] for t in ts] + trees
        sft = sft_records(replayed, self.task, cfg.hindsight, cfg.sft_per_problem, self.held_out)
        if cfg.search_targets:
            sft += search_target_records(replayed, self.task, cfg.value_labels, proven)
        write_jsonl(self.it(k) / "sft.jsonl", sft)

    def train_policy(self, k: int) -> None:
        """SFT from the previous policy, then step-DPO against the post-SFT model. With DPO on, the SFT-only
        model is kept as `policy-sft/` (a stage of its own, and the SFT-only arm of benchmarks/improve.py).
        With `lora`, both train adapters (the previous iteration's, or new ones on the starting model) and the
        policy folders hold adapters, or, with `merge`, a merged checkpoint (its adapters kept in `adapter/`)."""
        out = self.it(k) / "policy"
        if out.exists():
            return
        if self.cfg.shared_trunk:
            return fit_shared(self.training_start(k), out, self.cfg, self.device, self.task.separator)
        place = (self.cfg, self.device, self.task.separator)
        sft_out = self.it(k) / "policy-sft" if self.cfg.step_dpo else out
        if not sft_out.exists():
            fit("sft", self.training_start(k), sft_out, *place, merge=not self.cfg.step_dpo)
        if self.cfg.step_dpo:
            fit("dpo", sft_out, out, *place, merge=True)  # the reference: the model before DPO

    def training_start(self, k: int) -> Path:
        """The policy iteration k trains from; a `.gguf` start is saved once as a model folder (`base/`)."""
        return saved_base(self.policy_path(k - 1), self.dir / "base")

    def train_value(self, k: int) -> None:
        """The value model trains on from the previous one, else from the policy's weights (adapters merged)
        with a fresh two-class head."""
        out = self.it(k) / "value"
        if not out.exists() and not self.cfg.shared_trunk:  # a shared trunk's value head trained with the policy
            start = self.value_path(k - 1) or self.it(k) / "policy"
            fit("value", start, out, self.cfg, self.device, self.task.separator)

    def evaluate_models(self, k: int) -> dict:
        """Greedy and search accuracy on the evaluation split with iteration k's models."""
        out = self.it(k) / "eval.json"
        if out.exists():
            return json.loads(out.read_text())
        replica = self.replica(k, evaluation=True)
        _, policy, scorer = replica.load()
        size = self.cfg.batch_size
        with self.workers(k, evaluation=True) as workers:
            greedy, _ = evaluate(self.task, self.test, policy, get_search("greedy"), batch_size=size, workers=workers)
            check_searched(greedy, "greedy evaluation")
            search, _ = evaluate(
                self.task,
                self.test,
                policy,
                get_search(self.cfg.eval_search, **self.cfg.eval_search_args),
                scorer,
                self.cfg.eval_budget,
                batch_size=size,
                workers=workers,
                seed=self.cfg.seed,
            )
        check_searched(search, "evaluation")
        row = {
            "iteration": k,
            "greedy_accuracy": greedy.accuracy,
            "greedy_legal_step_rate": greedy.legal_step_rate,
            "search": self.cfg.eval_search,
            "search_accuracy": search.accuracy,
            "search_tokens_per_problem": search.tokens_per_problem,
            "scorer": replica.scorer,
        }
        atomic_write(out, json.dumps(row).encode())
        return row

    # ---- the loop -----------------------------------------------------------------------------------------

    def run(self) -> list[dict]:
        rows = [self.evaluate_models(0)]
        self.report(rows)
        for k in range(1, self.cfg.iterations + 1):
            (self.it(k)).mkdir(parents=True, exist_ok=True)
            for stage in (self.search, self.records, self.train_policy, self.train_value, self.evaluate_models):
                start = time.time()
                stage(k)
                self.timed(k, stage.__name__, time.time() - start)
            rows.append(self.evaluate_models(k))
            self.report(rows)
        return rows

    def timed(self, k: int, stage: str, seconds: float) -> None:
        """Print a stage's seconds and keep them in `iter-k/timings.json` (the first time the stage ran to its end:
        a resumed run keeps the seconds of the stages it skips)."""
        path = self.it(k) / "timings.json"
        timings = json.loads(path.read_text()) if path.exists() else {}
        if stage in timings:
            console.print(f"  iteration {k}: {stage} done in an earlier run ({timings[stage]:.0f} s)", style="dim")
            return
        console.print(f"  iteration {k}: {stage} {seconds:.0f} s", style="dim")
        atomic_write(path, json.dumps({**timings, stage: round(seconds, 2)}).encode())

    def report(self, rows: list[dict]) -> None:
        """Rewrite metrics.jsonl from the finished evaluations (never appended twice) and redraw the plots."""
        write_jsonl(self.dir / "metrics.jsonl", rows)
        plot(rows, self.dir, self.cfg.eval_budget)
        console.print(table(rows))


def check_searched(result: EvalResult, what: str) -> None:
    """Stop the run where every search of a stage ended on a backend error (a server down): the stage writes
    nothing, so `--resume` runs it again. Searches that failed among others are said and count as unsolved."""
    if result.all_failed:
        raise QstarError(f"every {what} search failed, the first: {result.first_error} (then --resume the run)")
    if result.failed:
        console.print(f"  {result.failed:g} of {result.n} {what} searches failed, the first: {result.first_error}")


def lock_run_folder(folder: Path):
    """An exclusive lock on the run folder for as long as the returned file stays open (the process lives): a second
    process on the same run, which would interleave its stages' files with this one's, is a one-line error."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / ".lock", "w")  # noqa: SIM115 - held open for the run
    except OSError as e:
        raise QstarError(f"cannot write the run folder {folder}: {e.strerror or e}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise QstarError(f"{folder} is in use by another qstar improve process (wait for it, or stop it)") from None
    return lock
