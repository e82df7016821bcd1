"""`qstar train`: one trainer on a records file, outside the loop — the stage `qstar improve` runs, made to be
launched on several processes or GPUs (`accelerate launch` or `torchrun`); only the main process writes."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch.distributed as dist

from qstar.errors import QstarError
from qstar.io import atomic_write, check_checkpoint_folder, model_folder, read_jsonl
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
    rows = read_jsonl(records)
    missing = [c for c in COLUMNS[kind] if rows and c not in rows[0]]
    if not rows or missing:
        raise QstarError(
            f"{records}: {kind} records need the columns {', '.join(COLUMNS[kind])}"
            + (f" ({missing[0]} is missing)" if missing else " (the file is empty)")
        )
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
