"""What the trainers share: transformers' `TrainingArguments` from a qstar config, a rich progress bar, the loss
history, and the datasets they read (pre-tokenised by qstar, so piece boundaries are token boundaries)."""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from transformers import PreTrainedModel, PrinterCallback, ProgressCallback, TrainerCallback

from qstar.io import is_adapter
from qstar.models import load_causal_lm
from qstar.train.config import LoRAConfig, TrainConfig


@dataclass
class Trained:
    """What a trainer returns: the trained model (a `PeftModel` when adapters were trained) and the loss of every
    optimiser step."""

    model: PreTrainedModel
    history: list[dict]
    processes: int = 1  # processes that trained it together (accelerate launch / torchrun)
    main_process: bool = True  # the one that writes checkpoints


def trainable(path: str | Path, lora: LoRAConfig | None, device: str | None = None):
    """The causal LM at `path`, ready to train, and the PEFT config of new adapters to put on it: with `lora`, an
    adapter folder's own adapters train on, any other model gets new ones; without, all its weights train."""
    continuing = lora is not None and is_adapter(path)
    model = load_causal_lm(path, trainable=continuing)
    return (model.to(device) if device else model), (lora.peft() if lora is not None and not continuing else None)


SCRATCH: list[tempfile.TemporaryDirectory] = []  # alive until the process exits, which removes the folder


def scratch_folder() -> str:
    """The Trainers' `output_dir`, where nothing is saved: one temporary folder per process, not one per training
    run left behind in the system's temporary folder."""
    if not SCRATCH:
        SCRATCH.append(tempfile.TemporaryDirectory(prefix="qstar-train-"))
    return SCRATCH[0].name


def training_arguments(cfg: TrainConfig) -> dict[str, Any]:
    """The `TrainingArguments` (or TRL config) fields of `cfg`: AdamW with linear warm-up and cosine decay to 10%,
    bf16 on a GPU that supports it, fp32 on the CPU, a loss logged every step, nothing saved by the Trainer."""
    cuda = torch.cuda.is_available()
    return {
        "output_dir": scratch_folder(),
        "num_train_epochs": cfg.epochs,
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "learning_rate": cfg.lr,
        "warmup_steps": cfg.warmup,
        "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": {"min_lr_rate": 0.1},
        "weight_decay": cfg.weight_decay,
        "adam_beta2": cfg.adam_beta2,
        "max_grad_norm": cfg.max_grad_norm,
        "seed": cfg.seed,
        "train_sampling_strategy": cfg.sampling,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": cfg.report_to,
        "use_cpu": not cuda,
        "bf16": cuda and torch.cuda.is_bf16_supported(),
        "disable_tqdm": True,  # the rich bar below instead
        "remove_unused_columns": False,
        "ddp_find_unused_parameters": False,  # every trainable weight takes part in every step
    }


class RichProgress(TrainerCallback):
    """A rich progress bar with the last loss, on stderr, on the main process only."""

    def __init__(self, name: str, quiet: bool = False):
        self.name, self.quiet = name, quiet
        self.progress: Progress | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if args.warmup_steps >= state.max_steps:  # the linear warm-up starts at 0: the run barely moves the model
            print(
                f"qstar: warning: {self.name}: a warm-up of {args.warmup_steps} optimiser steps spans the whole run of "
                f"{state.max_steps}: the learning rate never reaches its peak (lower warmup, or train longer)",
                file=sys.stderr,
            )
        if self.quiet:
            return
        columns = [
            TextColumn(self.name),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} loss {task.fields[loss]}"),
        ]
        self.progress = Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True))
        self.progress.start()
        self.bar = self.progress.add_task(self.name, total=state.max_steps, loss="—")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is not None and logs and "loss" in logs:
            self.progress.update(self.bar, completed=state.global_step, loss=f"{logs['loss']:.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()


def run(trainer, name: str, quiet: bool) -> Trained:
    """Train with a rich progress bar in place of transformers' own bar and log printer."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(RichProgress(name, quiet))
    start = time.time()
    trainer.train()
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    processes, main = trainer.accelerator.num_processes, trainer.is_world_process_zero()
    return Trained(model, loss_history(trainer, start), processes, main)


def loss_history(trainer, start: float) -> list[dict]:
    """The logged loss of every optimiser step: `step`, `loss`, and the `seconds` since `start` at the end."""
    rows = [{"step": r["step"], "loss": r["loss"]} for r in trainer.state.log_history if "loss" in r]
    if rows:
        rows[-1]["seconds"] = time.time() - start
    return rows
