"""One trainer chosen by kind (sft, dpo or value) on records in TRL's columns: what `qstar train` runs and what an
improve iteration runs in its own process."""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedTokenizerBase

from qstar.models import load_tokenizer, value_model_from
from qstar.train.common import Trained, trainable
from qstar.train.config import LoRAConfig, TrainConfig
from qstar.train.dpo import train_dpo
from qstar.train.sft import train_sft
from qstar.train.value import train_value


def train_kind(
    kind: str,
    model: str | Path,
    rows: list[dict],
    cfg: TrainConfig,
    lora: LoRAConfig | None = None,
    separator: str = "\n",
    device: str | None = None,
    base: Path | None = None,
) -> tuple[Trained, PreTrainedTokenizerBase]:
    """Train `kind` from the checkpoint `model` on `rows`; the result and the tokenizer to save with it. The value
    model reads each step at `separator`; a policy trains whole, or with `lora` its new adapters (an adapter
    folder's own), naming `base` as their base model when given (a `.gguf` start's weights are saved there)."""
    if kind == "value":
        start, tokenizer = value_model_from(model)
        return train_value(start.to(device) if device else start, tokenizer, rows, cfg, separator), tokenizer
    start, peft = trainable(model, lora, device)
    if base is not None:
        start.name_or_path = start.config._name_or_path = str(base)
    tokenizer = load_tokenizer(model)
    return (train_sft if kind == "sft" else train_dpo)(start, tokenizer, rows, cfg, peft_config=peft), tokenizer
