"""Value / process reward model training: a token-classification head scores each step at its separator.

Labels are soft values in [0, 1] (`qstar.records.value_records`); the loss is the cross-entropy between the
two-class softmax at each step's last token and the label (soft-label CE), as in Math-Shepherd. TRL has no PRM
trainer any more, so `ValueTrainer` is a `transformers.Trainer` with that loss: it gets the Trainer's features
(mixed precision, gradient accumulation, `accelerate launch`). Works for the tiny model and any
`AutoModelForTokenClassification`.
"""

from __future__ import annotations

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainingArguments

from qstar.models import pad, step_inputs
from qstar.train.common import Trained, run, training_arguments
from qstar.train.config import ValueConfig


class StepLabels:
    """Collates `input_ids`, `tags` (each step's last token) and `labels` into padded ids, an attention mask and a
    float label per position (-1 where no step ends)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        ids, mask = pad([r["input_ids"] for r in rows], self.pad_id)
        labels = torch.full(ids.shape, -1.0)
        for i, r in enumerate(rows):
            labels[i, r["tags"]] = torch.tensor(r["labels"], dtype=torch.float)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class ValueTrainer(Trainer):
    """A `Trainer` whose loss is the soft-label cross-entropy at every step tag."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = soft_label_loss(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss


def soft_label_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy between the two-class softmax and the soft label at every position with a label (>= 0);
    0, still connected to the graph, where the batch has none."""
    at = labels >= 0
    if not at.any():
        return logits.sum() * 0.0
    logp = torch.log_softmax(logits.float(), dim=-1)[at]
    target = labels[at]
    return -(target * logp[:, 1] + (1 - target) * logp[:, 0]).mean()


def value_row(tokenizer: PreTrainedTokenizerBase, record: dict, separator: str) -> dict:
    """`input_ids` of prompt + steps, the `tags` where each step ends and the `labels` read there."""
    ids, tags = step_inputs(tokenizer, record["prompt"], record["completions"], separator)
    return {"input_ids": ids, "tags": tags, "labels": record["labels"]}


def value_dataset(tokenizer: PreTrainedTokenizerBase, records: list[dict], separator: str) -> Dataset:
    return Dataset.from_list([value_row(tokenizer, r, separator) for r in records])


def train_value(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: list[dict],
    cfg: ValueConfig,
    separator: str = "\n",
    quiet: bool = False,
) -> Trained:
    """Train a token-classification model on `prompt`/`completions`/`labels` records; the model and its losses."""
    if not records:
        return Trained(model, [])
    trainer = ValueTrainer(
        model=model,
        args=TrainingArguments(**training_arguments(cfg)),
        train_dataset=value_dataset(tokenizer, records, separator),
        data_collator=StepLabels(tokenizer.pad_token_id or 0),
    )
    return run(trainer, "value", quiet)
