"""Value / process reward model training: a token-classification head scores each step at its separator.

Labels are soft values in [0, 1] (`qstar.records.value_records`); the loss is the cross-entropy between
the two-class softmax at each step's last token and the label (soft-label CE), as in Math-Shepherd.
Works for the built-in tiny model and any `AutoModelForTokenClassification`.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from qstar.models import step_inputs, step_logits
from qstar.train.config import ValueConfig
from qstar.train.loop import fit_examples


def train_value(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: list[dict],
    cfg: ValueConfig,
    separator: str = "\n",
    quiet: bool = False,
) -> list[dict]:
    """Train in place; returns the loss history."""
    pad_id = tokenizer.pad_token_id or 0
    examples = []
    for r in records:
        ids, tags = step_inputs(tokenizer, r["prompt"], r["completions"], separator)
        examples.append((ids, tags, r["labels"]))

    def loss_fn(batch: list) -> torch.Tensor:
        logp = torch.log_softmax(step_logits(model, [ids for ids, _, _ in batch], pad_id), dim=-1)
        dev = logp.device
        rows = torch.tensor([i for i, (_, tags, _) in enumerate(batch) for _ in tags], device=dev)
        cols = torch.tensor([t for _, tags, _ in batch for t in tags], device=dev)
        target = torch.tensor([y for _, _, labels in batch for y in labels], dtype=torch.float, device=dev)
        picked = logp[rows, cols]
        return -(target * picked[:, 1] + (1 - target) * picked[:, 0]).mean()

    return fit_examples(model, examples, loss_fn, cfg, "value", quiet)
