"""The optimisation loop of rules-only pretraining (`qstar pretrain`): fresh random games every step, which no
records file holds. It stays a plain loop so that the shipped `tiny-rules` checkpoint reproduces bit for bit;
every trainer of the improvement loop (SFT, step-DPO, value) is a TRL / transformers Trainer."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from qstar.train.config import TrainConfig


def fit(
    model: torch.nn.Module,
    next_batch: Callable[[], Any],
    steps: int,
    loss_fn: Callable[[Any], torch.Tensor],
    cfg: TrainConfig,
    name: str,
    quiet: bool = False,
    on_step: Callable[[int], dict] | None = None,
) -> list[dict]:
    """Minimise `loss_fn(next_batch())` for `steps` AdamW steps (linear warm-up, cosine decay to 10% of `cfg.lr`);
    returns the logged loss of every step, with what `on_step(step)` adds (e.g. an evaluation)."""
    torch.manual_seed(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, cfg.adam_beta2))

    def schedule(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - cfg.warmup) / max(1, steps - cfg.warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    history = []
    start = time.time()
    columns = [TextColumn(name), BarColumn(), TextColumn("{task.completed}/{task.total} loss {task.fields[loss]:.4f}")]
    with Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True), disable=quiet) as progress:
        bar = progress.add_task(name, total=steps, loss=float("nan"))
        for step in range(steps):
            model.train()
            loss = loss_fn(next_batch())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            record = {"step": step + 1, "loss": loss.item(), "seconds": time.time() - start}
            if on_step is not None:
                record.update(on_step(step + 1))
            history.append(record)
            progress.update(bar, advance=1, loss=loss.item())
    model.eval()
    return history
