"""Supervised fine-tuning on verified solutions (rejection sampling) with TRL's `SFTTrainer`: loss on the
completion only, optionally on PEFT LoRA adapters.

Records arrive tokenised by qstar (BOS, prompt, completion, each piece on token boundaries) so `SFTTrainer` trains
on exactly the sequences the policy sees when it searches: it would otherwise append EOS to every completion.
"""

from __future__ import annotations

from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import SFTConfig as TRLSFTConfig
from trl import SFTTrainer

from qstar.models import encode
from qstar.train.common import Trained, run, training_arguments
from qstar.train.config import SFTConfig


def sft_row(tokenizer: PreTrainedTokenizerBase, record: dict) -> dict:
    """`input_ids` of prompt + completion and the `completion_mask` that keeps the loss on the completion."""
    ids, (prompt_end, _) = encode(tokenizer, record["prompt"], record["completion"])
    return {"input_ids": ids, "completion_mask": [0] * prompt_end + [1] * (len(ids) - prompt_end)}


def merged_rows(rows: list[dict]) -> list[dict]:
    """Each row whose ids begin another row's trained inside that row: the longer row's `completion_mask` takes the
    shorter's on. A causal LM's logits at a position see only the tokens before it, so the loss terms are the same,
    each distinct one once, on fewer tokens (a search target below a node and the solution through it; a record
    twice). In sorted order a row that begins any other begins its successor, so one pass from the end merges."""
    merged: list[dict] = []
    successor: list[int] | None = None
    for row in sorted(rows, key=lambda r: r["input_ids"], reverse=True):
        ids, mask = row["input_ids"], row["completion_mask"]
        if successor is not None and successor[: len(ids)] == ids:
            into = merged[-1]["completion_mask"]
            into[: len(ids)] = [a | b for a, b in zip(into, mask, strict=False)]  # into is the longer
        else:
            merged.append({"input_ids": ids, "completion_mask": list(mask)})
        successor = ids
    return merged[::-1]


def sft_dataset(tokenizer: PreTrainedTokenizerBase, records: list[dict], merge_prefixes: bool = False) -> Dataset:
    rows = [sft_row(tokenizer, r) for r in records]
    return Dataset.from_list(merged_rows(rows) if merge_prefixes else rows)


def train_sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: list[dict],
    cfg: SFTConfig,
    quiet: bool = False,
    peft_config=None,
) -> Trained:
    """Fine-tune any causal LM on `records` (with `peft_config`, LoRA adapters on it); the trained model and the
    loss of every step."""
    if not records:
        return Trained(model, [])
    args = TRLSFTConfig(**training_arguments(cfg), completion_only_loss=True, max_length=None)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=sft_dataset(tokenizer, records, cfg.merge_prefixes),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    return run(trainer, "sft", quiet)
