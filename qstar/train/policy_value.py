"""AlphaZero's two heads on one trunk: the policy (the LM head) and the value model (a two-class head read at each
step's separator) trained together. The loss is the SFT loss on the completion tokens of `prompt`/`completion`
records plus `value_weight` times the soft-label value loss at each step of `prompt`/`completions`/`labels`
records; the trunk both heads read learns from both, so the policy's first step is chosen with the features that
tell solvable steps from dead ones.

The model is any causal LM given a value head by `qstar.models.with_value_head`; its checkpoint loads as the
policy (`AutoModelForCausalLM`) and as the value model (`AutoModelForTokenClassification`).
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainingArguments

from qstar.models import pad, value_head_name
from qstar.train.common import Trained, run, training_arguments
from qstar.train.config import PolicyValueConfig
from qstar.train.sft import merged_rows, sft_row
from qstar.train.value import soft_label_loss, value_row


def passes(rows: list[dict], epochs: float, seed: int) -> list[dict]:
    """`epochs` passes over the rows, the fraction a seeded sample."""
    whole, part = divmod(epochs, 1.0)
    return rows * int(whole) + random.Random(seed).sample(rows, round(part * len(rows)))


def policy_value_dataset(
    tokenizer: PreTrainedTokenizerBase, sft: list[dict], values: list[dict], separator: str, cfg: PolicyValueConfig
) -> Dataset:
    """`cfg.epochs` passes over the SFT records and `cfg.value_epochs` over the value records, one row each:
    `input_ids`, the `completion_mask` of the policy's loss (none on a value record) and the `tags` / `labels` of
    the value loss (none on an SFT record). With `merge_prefixes` SFT records merge before the passes are made."""
    policy_rows = [sft_row(tokenizer, r) for r in sft]
    if cfg.merge_prefixes:
        policy_rows = merged_rows(policy_rows)
    value_rows = [value_row(tokenizer, r, separator) for r in values]  # tokenised once, however many passes
    rows = [{**row, "tags": [], "labels": []} for row in passes(policy_rows, cfg.epochs, cfg.seed)]
    rows += [
        {**row, "completion_mask": [0] * len(row["input_ids"])}
        for row in passes(value_rows, cfg.value_epochs, cfg.seed)
    ]
    return Dataset.from_list(rows)


class PolicyValueBatch:
    """Collates rows into padded ids, an attention mask, the LM's targets (-100 where no loss) and a float value
    label per position (-1 where no step ends)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        ids, mask = pad([r["input_ids"] for r in rows], self.pad_id)
        targets = torch.full(ids.shape, -100)
        values = torch.full(ids.shape, -1.0)
        for i, r in enumerate(rows):
            keep = torch.tensor(r["completion_mask"], dtype=torch.bool)
            targets[i, : len(keep)][keep] = ids[i, : len(keep)][keep]
            values[i, r["tags"]] = torch.tensor(r["labels"], dtype=torch.float)
        return {"input_ids": ids, "attention_mask": mask, "lm_labels": targets, "value_labels": values}


class PolicyValueTrainer(Trainer):
    """A `Trainer` whose loss is the policy's next-token loss on completions plus the weighted value loss, both
    read from one forward pass of the shared trunk."""

    def __init__(self, *args, value_weight: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.value_weight = value_weight
        self.head = value_head_name(self.model.config)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        targets, values = inputs.pop("lm_labels"), inputs.pop("value_labels")
        hidden = model.base_model(**inputs).last_hidden_state
        logits = model.get_output_embeddings()(hidden).float()
        policy = F.cross_entropy(logits[:, :-1].flatten(0, 1), targets[:, 1:].flatten(), ignore_index=-100)
        if not (targets[:, 1:] >= 0).any():  # a batch of value records only
            policy = logits.sum() * 0.0
        value = soft_label_loss(getattr(model, self.head)(hidden), values)
        loss = policy + self.value_weight * value
        return (loss, logits) if return_outputs else loss


def train_policy_value(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sft: list[dict],
    values: list[dict],
    cfg: PolicyValueConfig,
    separator: str = "\n",
    quiet: bool = False,
) -> Trained:
    """Train a causal LM with a value head (`with_value_head`) on SFT and value records together, `cfg.epochs`
    passes over the first and `cfg.value_epochs` over the second in one shuffled stream (the compute of SFT and
    value training apart); the model and the loss of every step."""
    dataset = policy_value_dataset(tokenizer, sft, values, separator, cfg)
    if not len(dataset):
        return Trained(model, [])
    trainer = PolicyValueTrainer(
        model=model,
        args=TrainingArguments(**{**training_arguments(cfg), "num_train_epochs": 1}),  # the passes are rows
        train_dataset=dataset,
        data_collator=PolicyValueBatch(tokenizer.pad_token_id or 0),
        value_weight=cfg.value_weight,
    )
    return run(trainer, "policy+value", quiet)
