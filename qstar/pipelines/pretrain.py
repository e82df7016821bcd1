"""`qstar pretrain`: teach the tiny model the rules (step format, legality, arithmetic) from random legal play.

Problems are drawn in the style of both presets (Game of 24 and countdown) and played out by uniformly
random legal moves whose results stay within `bound`; the target is drawn independently of the play, so
the model learns the rules of the game but not how to win it. Loss is on the steps only, not the prompt.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict

import torch
from rich.console import Console

from qstar.io import atomic_write, check_checkpoint_folder
from qstar.models import device_of, encode, pad, save_checkpoint
from qstar.pipelines.evaluate import summarize
from qstar.pipelines.pretrain_config import PretrainConfig
from qstar.policy.tiny import TinyPolicy, new_tiny_model
from qstar.search import get_search, run_search
from qstar.tasks.countdown import Countdown, random_numbers, random_play
from qstar.train.loop import fit
from qstar.types import Problem


def sample_game(rng: random.Random, cfg: PretrainConfig) -> tuple[Problem, list[str]]:
    """A random problem of either preset and one random legal play of it."""
    preset = "game24" if rng.random() < cfg.game24_share else "countdown"
    numbers, target = random_numbers(preset, rng)
    problem = Problem(id="", prompt=" ".join(map(str, numbers)), meta={"numbers": numbers, "target": target})
    return problem, random_play(numbers, rng, cfg.bound)


def make_batch(tokenizer, rng: random.Random, cfg: PretrainConfig, task: Countdown):
    """Right-padded input ids, attention mask and labels (prompt and padding masked with -100)."""
    rows = []
    for _ in range(cfg.batch_size):
        problem, steps = sample_game(rng, cfg)
        rows.append(encode(tokenizer, task.render(problem, []), "".join(s + task.separator for s in steps)))
    ids, attention = pad([seq for seq, _ in rows], tokenizer.pad_token_id)
    labels = ids.masked_fill(attention == 0, -100)
    for i, (_, (prompt_end, _)) in enumerate(rows):
        labels[i, :prompt_end] = -100
    return ids, attention, labels


def legal_step_rate(policy: TinyPolicy, problems: list[Problem], task: Countdown) -> float:
    """Share of legal steps when the policy plays each problem out greedily, stopping at an illegal step."""
    trees = run_search(get_search("greedy"), problems, task, policy)
    return summarize([trees], 0.0).legal_step_rate


def pretrain(cfg: PretrainConfig) -> dict:
    """Train from scratch, save to `cfg.output_dir` (HF format) and return the final metrics."""
    out = check_checkpoint_folder(cfg.output_dir)  # before the training, not after it
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model, tokenizer = new_tiny_model(cfg.hidden, cfg.layers, cfg.heads, cfg.mlp)  # initialised on the CPU, seeded
    model.to(device_of(cfg.device))
    task = Countdown()
    eval_rng = random.Random(f"eval-{cfg.seed}")
    eval_problems = [sample_game(eval_rng, cfg)[0] for _ in range(cfg.eval_problems)]
    console = Console(stderr=True)

    def loss_fn(batch) -> torch.Tensor:
        ids, attention, labels = (t.to(model.device) for t in batch)
        return model(input_ids=ids, attention_mask=attention, labels=labels).loss

    def evaluate_now(step: int) -> dict:
        if step % cfg.eval_every and step != cfg.steps:
            return {}
        rate = legal_step_rate(TinyPolicy(model, tokenizer), eval_problems, task)
        console.print(f"step {step}: legal steps {rate:.1%}")
        return {"legal_step_rate": rate}

    next_batch = lambda: make_batch(tokenizer, rng, cfg, task)  # noqa: E731  (fresh random games every step)
    history = fit(model, next_batch, cfg.steps, loss_fn, cfg.optimiser(), "pretrain", on_step=evaluate_now)

    save_checkpoint(model, tokenizer, out)
    stride = max(1, cfg.steps // 100)
    kept = [r for i, r in enumerate(history) if i % stride == 0 or "legal_step_rate" in r]  # every evaluation
    metrics = {"config": asdict(cfg), "final": history[-1], "history": kept}
    atomic_write(out / "qstar_pretrain.json", json.dumps(metrics, indent=1).encode())
    return metrics
