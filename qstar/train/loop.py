"""The optimisation loop every qstar trainer shares, and tokenisation that works for any HF tokenizer."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import PreTrainedTokenizerBase


@dataclass
class TrainConfig:
    """Fields shared by every trainer's config."""

    epochs: float = 1.0  # passes over the records (fractions allowed)
    batch_size: int = 32
    lr: float = 1e-3  # peak learning rate: linear warm-up, cosine decay to 10%
    warmup: int = 20  # optimiser steps
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0


def encode(tokenizer: PreTrainedTokenizerBase, *pieces: str) -> tuple[list[int], list[int]]:
    """Token ids of the concatenated pieces (after BOS, if the tokenizer has one), and where each piece ends.

    Pieces are tokenised separately so every piece boundary is a token boundary, whatever the tokenizer.
    """
    ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ends = []
    for piece in pieces:
        ids += tokenizer(piece, add_special_tokens=False)["input_ids"]
        ends.append(len(ids))
    return ids, ends


def best_device() -> str:
    """`cuda` when a GPU is visible, else `cpu`: where `qstar improve` trains and searches."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def pad(rows: list[list[int]], value: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, ...]:
    """Right-padded ids and their attention mask (on `device`, the CPU by default)."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


def fit(
    model: torch.nn.Module,
    examples: list,
    loss_fn: Callable[[list], torch.Tensor],
    cfg: TrainConfig,
    name: str,
    quiet: bool = False,
) -> list[dict]:
    """Minimise `loss_fn(batch)` over shuffled batches of `examples`; returns the logged loss of every step."""
    if not examples:
        return []
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    steps = max(1, math.ceil(len(examples) * cfg.epochs / cfg.batch_size))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def schedule(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - cfg.warmup) / max(1, steps - cfg.warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    order: list = []
    history = []
    start = time.time()
    model.train()
    columns = [TextColumn(name), BarColumn(), TextColumn("{task.completed}/{task.total} loss {task.fields[loss]:.4f}")]
    with Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True), disable=quiet) as progress:
        bar = progress.add_task(name, total=steps, loss=float("nan"))
        for step in range(steps):
            if len(order) < cfg.batch_size:
                order += rng.sample(examples, len(examples))
            batch, order = order[: cfg.batch_size], order[cfg.batch_size :]
            loss = loss_fn(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            history.append({"step": step + 1, "loss": loss.item(), "seconds": time.time() - start})
            progress.update(bar, advance=1, loss=loss.item())
    model.eval()
    return history
