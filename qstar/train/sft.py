"""Supervised fine-tuning on verified solutions (rejection sampling): loss on the completion only."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from qstar.models import encode, pad
from qstar.train.config import SFTConfig
from qstar.train.loop import fit_examples


def train_sft(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, records: list[dict], cfg: SFTConfig, quiet: bool = False
) -> list[dict]:
    """Fine-tune any causal LM in place on `records`; returns the loss history."""
    examples = []
    for r in records:
        ids, (prompt_end, _) = encode(tokenizer, r["prompt"], r["completion"])
        examples.append((ids, prompt_end))

    def loss_fn(batch: list) -> torch.Tensor:
        ids, mask = pad([ids for ids, _ in batch], tokenizer.pad_token_id or 0, model.device)
        labels = ids.masked_fill(mask == 0, -100)
        for i, (_, prompt_end) in enumerate(batch):
            labels[i, :prompt_end] = -100
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss

    return fit_examples(model, examples, loss_fn, cfg, "sft", quiet)
