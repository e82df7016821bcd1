"""Value / process reward model training: a token-classification head scores each step at its separator.

Labels are soft values in [0, 1] (`qstar.records.value_records`); the loss is the cross-entropy between
the two-class softmax at each step's last token and the label (soft-label CE), as in Math-Shepherd.
Works for the built-in tiny model and any `AutoModelForTokenClassification`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from qstar.train.loop import TrainConfig, encode, fit, pad


@dataclass
class ValueConfig(TrainConfig):
    """Value-model training on `prompt`/`completions`/`labels` records."""

    lr: float = 1e-3
    epochs: float = 2.0


def value_model_from(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A value model from a checkpoint: a policy (causal LM) gets a fresh two-class head, a value model loads whole."""
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=2)
    return model, AutoTokenizer.from_pretrained(path)


def step_inputs(tokenizer: PreTrainedTokenizerBase, prompt: str, steps: list[str], separator: str):
    """Token ids of prompt + steps, and the position of each step's last token (where its value is read)."""
    ids, ends = encode(tokenizer, prompt, *(s + separator for s in steps))
    return ids, [end - 1 for end in ends[1:]] or [ends[0] - 1]


def step_logits(model: PreTrainedModel, rows: list[list[int]], pad_id: int) -> torch.Tensor:
    ids, mask = pad(rows, pad_id, model.device)
    return model(input_ids=ids, attention_mask=mask).logits.float()


@torch.inference_mode()
def step_probabilities(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    paths: list[list[str]],
    tag: str,
    positive: int = 1,
    batch_size: int = 32,
) -> list[list[float]]:
    """Per path, the model's probability of class `positive` at each step's tag (at the prompt's end for an
    empty path): the value / PRM model's reading of every step, in batches."""
    out: list[list[float]] = []
    pad_id = tokenizer.pad_token_id or 0
    for i in range(0, len(paths), batch_size):
        inputs = [
            step_inputs(tokenizer, q, path, tag)
            for q, path in zip(prompts[i : i + batch_size], paths[i : i + batch_size], strict=True)
        ]
        probs = torch.softmax(step_logits(model, [ids for ids, _ in inputs], pad_id), dim=-1)
        out += [probs[row, tags, positive].tolist() for row, (_, tags) in enumerate(inputs)]
    return out


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

    return fit(model, examples, loss_fn, cfg, "value", quiet)
