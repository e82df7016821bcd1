"""Direct preference optimisation on step-level pairs (Rafailov et al., 2023; step-DPO: Lai et al., 2024) with
TRL's `DPOTrainer`: the reference is the model before training, its log-probabilities computed once up front (with
LoRA adapters: the base model, adapters off, so no second copy is held).

A step ends at the task's separator, not at end-of-sequence. TRL's `DPOTrainer` appends EOS to every chosen and
rejected completion (trl 1.16, `_prepare_dataset`), which would teach the policy to end the whole solution after
one step; `StepDPOTrainer` takes the pairs tokenised by qstar instead, each step ending at its separator.
"""

from __future__ import annotations

from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import DPOConfig as TRLDPOConfig
from trl import DPOTrainer

from qstar.models import encode
from qstar.train.common import Trained, run, training_arguments
from qstar.train.config import DPOConfig


class StepDPOTrainer(DPOTrainer):
    """`DPOTrainer` on pairs already tokenised (`prompt_ids`, `chosen_ids`, `rejected_ids`): no EOS appended."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset


def pairs(rows: list[dict]):
    yield from rows


def dpo_dataset(tokenizer: PreTrainedTokenizerBase, records: list[dict]) -> Dataset:
    """Each pair's prompt ids (after BOS) and its chosen and rejected steps' ids, on token boundaries. Written to
    the datasets cache (not held in memory) so that every process of a distributed run finds the same cache file
    for the reference log-probabilities TRL computes once."""
    rows = []
    for r in records:
        chosen, (end, _) = encode(tokenizer, r["prompt"], r["chosen"])
        rejected, _ = encode(tokenizer, r["prompt"], r["rejected"])
        rows.append({"prompt_ids": chosen[:end], "chosen_ids": chosen[end:], "rejected_ids": rejected[end:]})
    return Dataset.from_generator(pairs, gen_kwargs={"rows": rows})


def train_dpo(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: list[dict],
    cfg: DPOConfig,
    quiet: bool = False,
    peft_config=None,
) -> Trained:
    """Train `model` to prefer each chosen step over its rejected sibling; the trained model and its loss history.
    `cfg.sft_weight` adds the chosen step's NLL (RPO)."""
    if not records:
        return Trained(model, [])
    losses = ["sigmoid", "sft"] if cfg.sft_weight else ["sigmoid"]
    args = TRLDPOConfig(
        **training_arguments(cfg),
        beta=cfg.beta,
        loss_type=losses,
        loss_weights=[1.0, cfg.sft_weight] if cfg.sft_weight else None,
        precompute_ref_log_probs=True,
        max_length=None,
    )
    trainer = StepDPOTrainer(
        model=model,
        args=args,
        train_dataset=dpo_dataset(tokenizer, records),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    return run(trainer, "dpo", quiet)
