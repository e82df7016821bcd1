"""`qstar train`: one trainer on a records file, outside the loop — the stage `qstar improve` runs, made to be
launched on several processes or GPUs (`accelerate launch` or `torchrun`); only the main process writes."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch.distributed as dist

from qstar.errors import QstarError
from qstar.io import atomic_write, check_checkpoint_folder, model_folder, numbered_jsonl
from qstar.models import check_adapters, save_checkpoint
from qstar.train.by_kind import train_kind
from qstar.train.config import DPOConfig, LoRAConfig, SFTConfig, TrainConfig, ValueConfig

CONFIGS: dict[str, type[TrainConfig]] = {"sft": SFTConfig, "dpo": DPOConfig, "value": ValueConfig}
COLUMNS = {
    "sft": ("prompt", "completion"),
    "dpo": ("prompt", "chosen", "rejected"),
    "value": ("prompt", "completions", "labels"),
}


def finish_processes() -> None:
    """Under a launcher: wait until the main process has written, then close the process group, so no process
    exits while the others still use it (gloo aborts a process whose threads outlive it)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def check_separator(kind: str, separator: str) -> None:
    """A value model reads each step where its separator ends it: an empty one is refused."""
    if kind == "value" and not separator:
        raise QstarError("the value model reads each step where its separator ends it: give a non-empty --separator")


def read_records(kind: str, path: str | Path, separator: str = "\n") -> list[dict]:
    """The records of a file in TRL's columns for `kind`, each row checked: a row the trainer would misread (a
    column missing or of the wrong type; for a value model, labels not one in [0, 1] per step, or a step holding the
    `separator`, which a search reads as two steps) is a one-line error naming its line."""
    rows, columns = [], ", ".join(COLUMNS[kind])
    for line, row in numbered_jsonl(path):
        where = f"{path}:{line}"
        missing = [c for c in COLUMNS[kind] if c not in row]
        if missing:
            raise QstarError(f"{where}: {kind} records need the columns {columns} ({missing[0]} is missing)")
        texts = [row["prompt"], *(row[c] for c in COLUMNS[kind][1:] if kind != "value")]
        if not all(isinstance(t, str) for t in texts):
            raise QstarError(f"{where}: {', '.join(COLUMNS[kind][: len(texts)])} must be text")
        if kind == "value":
            check_value_row(where, row["completions"], row["labels"], separator)
        rows.append(row)
    if not rows:
        raise QstarError(f"{path}: {kind} records need the columns {columns} (the file is empty)")
    return rows


def check_value_row(where: str, steps: Any, labels: Any, separator: str) -> None:
    """One value record's steps and labels, as `read_records` checks them."""
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise QstarError(f"{where}: completions must be a non-empty list of steps (text)")
    numbers = isinstance(labels, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in labels)
    if not numbers or len(labels) != len(steps):
        raise QstarError(f"{where}: labels must be a list of numbers, one per step ({len(steps)} here)")
    if not all(0 <= v <= 1 for v in labels):
        raise QstarError(f"{where}: labels must be in [0, 1] (a step's chance of reaching a verified answer)")
    split = next((i for i, s in enumerate(steps, 1) if separator in s), None)
    if split is not None:
        raise QstarError(f"{where}: step {split} holds the separator {separator!r}, so a search would read it as two")


def train(
    kind: str,
    model: str | Path,
    records: str | Path,
    out: str | Path,
    cfg: TrainConfig,
    lora: LoRAConfig | None = None,
    separator: str = "\n",
) -> dict:
    """Train `model` (a folder, `.gguf` file or adapter folder) on a records file in TRL's columns for `kind`
    (sft, dpo or value) and save the result to `out`; returns what was done (also in `out/qstar_train.json`) and
    whether this process is the main one (the one that wrote). With LoRA on a `.gguf` start, the dequantised
    weights are saved as `out/base/`, the base the adapters name."""
    check_separator(kind, separator)
    out = check_checkpoint_folder(out)
    model = model_folder(str(model))  # a shipped checkpoint's name, a folder, a .gguf file or an adapter folder
    rows = read_records(kind, records, separator)
    if lora is not None and kind != "value":
        check_adapters(model, lora.peft())  # one line, before any weight loads
    # adapters name their base by folder: those on a GGUF start name its weights, saved beside them
    base = out / "base" if kind != "value" and lora is not None and model.suffix == ".gguf" else None
    trained, tokenizer = train_kind(kind, model, rows, cfg, lora, separator, base=base)
    summary = {
        "kind": kind,
        "model": str(model),
        "records": len(rows),
        "processes": trained.processes,
        "config": asdict(cfg),
        **({"separator": separator} if kind == "value" else {}),  # where the value model reads each step
        "history": trained.history,
    }
    if trained.main_process:
        save_checkpoint(trained.model, tokenizer, out)
        if base is not None:
            save_checkpoint(trained.model.unload(), tokenizer, base)
        atomic_write(out / "qstar_train.json", json.dumps(summary, indent=1).encode())
    finish_processes()
    return {**summary, "main_process": trained.main_process}
