"""Direct preference optimisation on step-level pairs (Rafailov et al., 2023; step-DPO: Lai et al., 2024)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from qstar.models import encode, pad
from qstar.train.config import DPOConfig
from qstar.train.loop import fit_examples


def completion_logprobs(model: PreTrainedModel, rows: list[tuple[list[int], int]], pad_id: int) -> torch.Tensor:
    """Sum of log-probabilities of each row's tokens after its prompt end, and their count."""
    ids, mask = pad([r for r, _ in rows], pad_id, model.device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target = ids[:, 1:]
    logp = torch.log_softmax(logits, dim=-1).gather(2, target[..., None]).squeeze(2)
    keep = mask[:, 1:].clone()
    for i, (_, prompt_end) in enumerate(rows):
        keep[i, : prompt_end - 1] = 0
    return (logp * keep).sum(1), keep.sum(1)


def train_dpo(
    model: PreTrainedModel,
    reference: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: list[dict],
    cfg: DPOConfig,
    quiet: bool = False,
) -> list[dict]:
    """Train `model` in place to prefer each chosen step over its rejected sibling; returns the loss history."""
    pad_id = tokenizer.pad_token_id or 0
    examples = []
    for r in records:
        chosen, (end, _) = encode(tokenizer, r["prompt"], r["chosen"])
        rejected, _ = encode(tokenizer, r["prompt"], r["rejected"])
        examples.append(((chosen, end), (rejected, end)))
    with torch.no_grad():  # the reference's log-probabilities, once
        ref = {}
        for i in range(0, len(examples), 64):
            chunk = examples[i : i + 64]
            c, _ = completion_logprobs(reference, [e[0] for e in chunk], pad_id)
            r, _ = completion_logprobs(reference, [e[1] for e in chunk], pad_id)
            for j, e in enumerate(chunk):
                ref[id(e)] = (c[j].item(), r[j].item())

    def loss_fn(batch: list) -> torch.Tensor:
        logp, counts = completion_logprobs(model, [e[0] for e in batch] + [e[1] for e in batch], pad_id)
        chosen, rejected = logp[: len(batch)], logp[len(batch) :]
        ref_c = torch.tensor([ref[id(e)][0] for e in batch], device=chosen.device)
        ref_r = torch.tensor([ref[id(e)][1] for e in batch], device=chosen.device)
        margin = cfg.beta * ((chosen - ref_c) - (rejected - ref_r))
        loss = -F.logsigmoid(margin).mean()
        if cfg.sft_weight:
            loss = loss - cfg.sft_weight * (chosen / counts[: len(batch)]).mean()
        return loss

    return fit_examples(model, examples, loss_fn, cfg, "dpo", quiet)
