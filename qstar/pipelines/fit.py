"""One checkpoint of a `qstar improve` iteration trained from the iteration's records: the policy (SFT or step-DPO,
full or LoRA, merged or not) or the value model, in this process or under the run's `launcher`; or both heads of a
shared-trunk network together. Each writes its checkpoint whole (a temporary folder renamed), so a stage whose
checkpoint exists is finished."""

from __future__ import annotations

import json
from pathlib import Path

from qstar.io import atomic_write, read_jsonl, replace_folder
from qstar.models import load_causal_lm, load_tokenizer, save_checkpoint, with_value_head
from qstar.pipelines.improve_config import ImproveConfig
from qstar.pipelines.launch import launch_training
from qstar.train.by_kind import train_kind
from qstar.train.policy_value import train_policy_value

RECORDS = {"sft": "sft.jsonl", "dpo": "preferences.jsonl", "value": "value.jsonl"}


def fit(
    kind: str, start: Path, out: Path, run: ImproveConfig, device: str, separator: str, merge: bool = False
) -> None:
    """Train `kind` (sft, dpo, value) from `start` on the records beside `out` (its iteration's folder) into the
    checkpoint `out`; the loss history goes to `KIND_history.json`. The value model reads each step at the task's
    `separator`. With `merge` (an iteration's final policy) and the run's `lora` and `merge`, `out` is the merged
    model, the adapters kept in `adapter/`."""
    cfg = getattr(run, kind)
    records = out.parent / RECORDS[kind]
    rows = read_jsonl(records)
    lora = run.lora_settings if run.lora and kind != "value" else None
    merged = merge and lora is not None and run.merge
    target = out.with_name("adapter") if merged else out
    if run.launcher and rows:
        work = target.with_name(target.name + ".launched")
        history = launch_training(run.launcher, kind, start, records, work, cfg, lora, separator)
    else:
        work = target.with_name(target.name + ".tmp")
        trained, tokenizer = train_kind(kind, start, rows, cfg, lora, separator, device)
        history = trained.history
        save_checkpoint(trained.model, tokenizer, work)
    if rows:
        atomic_write(out.parent / f"{kind}_history.json", json.dumps(history).encode())
    replace_folder(work, target)
    if merged:
        save_checkpoint(load_causal_lm(target), load_tokenizer(target), out)


def fit_shared(start: Path, out: Path, run: ImproveConfig, device: str, separator: str) -> None:
    """Train the policy and its value head together (`qstar.train.policy_value`) from `start` (a fresh head on a
    plain policy) on the SFT and value records beside `out` into the checkpoint `out`."""
    model = with_value_head(load_causal_lm(start), start).to(device)
    tokenizer = load_tokenizer(start)
    sft, values = read_jsonl(out.parent / RECORDS["sft"]), read_jsonl(out.parent / RECORDS["value"])
    trained = train_policy_value(model, tokenizer, sft, values, run.policy_value, separator)
    atomic_write(out.parent / "policy_value_history.json", json.dumps(trained.history).encode())
    save_checkpoint(trained.model, tokenizer, out)  # its folder appears whole, marking the stage done


def saved_base(start: Path, folder: Path) -> Path:
    """The model folder to train from: `start` itself, or for a `.gguf` start its weights saved once in `folder`
    (adapters name their base by folder)."""
    if start.suffix != ".gguf":
        return start
    base = folder.resolve()  # adapters name their base by this path
    if not base.exists():
        save_checkpoint(load_causal_lm(start), load_tokenizer(start), base)
    return base
