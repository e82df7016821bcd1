"""What policies, scorers and trainers share about Hugging Face models: the device, tokenising pieces so their
boundaries are token boundaries, padding, and reading a value / PRM model at each step's tag."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase


def best_device() -> str:
    """`cuda` when a GPU is visible, else `cpu`: where qstar loads models, searches and trains by default."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def encode(tokenizer: PreTrainedTokenizerBase, *pieces: str) -> tuple[list[int], list[int]]:
    """Token ids of the concatenated pieces (after BOS, if the tokenizer has one), and where each piece ends.

    Pieces are tokenised separately so every piece boundary is a token boundary, whatever the tokenizer.
    """
    ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ends = []
    for piece in pieces:
        ids += tokenizer(piece, add_special_tokens=False)["input_ids"]
        ends.append(len(ids))
    return ids, ends


def pad(rows: list[list[int]], value: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, ...]:
    """Right-padded ids and their attention mask (on `device`, the CPU by default)."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


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


def save_checkpoint(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path) -> None:
    """Write to a temporary folder, then rename: a folder named `path` is always a whole checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(path)
