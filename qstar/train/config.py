"""The trainers' configs, torch-free so the command line can describe them cheaply. Every field has its help."""

from __future__ import annotations

from dataclasses import dataclass

from qstar.config import check, check_ranges, option

SAMPLINGS = ("random", "group_by_length")  # transformers' train_sampling_strategy values qstar's trainers take


@dataclass
class TrainConfig:
    """Fields shared by every trainer's config."""

    epochs: float = option(1.0, "passes over the records (fractions allowed)")
    batch_size: int = option(
        32, "records per batch on each device (an optimiser step: batch_size * devices * gradient_accumulation_steps)"
    )
    lr: float = option(1e-3, "peak learning rate: linear warm-up, cosine decay to 10%")
    warmup: int = option(20, "optimiser steps of linear warm-up")
    weight_decay: float = option(0.01, "AdamW weight decay")
    adam_beta2: float = option(0.999, "AdamW's second-moment decay")
    max_grad_norm: float = option(1.0, "gradients clipped to this norm")
    gradient_accumulation_steps: int = option(1, "batches whose gradients add up to one optimiser step")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass (less memory, slower)")
    report_to: str = option("none", "where transformers reports metrics: none, tensorboard, wandb, ...")
    sampling: str = option(
        "random",
        "the order of records: random, or group_by_length (batches of records of similar length, so less padding:"
        " faster where lengths vary, as one-step search targets beside whole solutions do)",
    )
    seed: int = option(0, "seed of the record order")

    def __post_init__(self) -> None:
        check(self.epochs > 0, f"epochs must be positive, not {self.epochs}")
        check(self.lr > 0, f"lr must be positive, not {self.lr}")
        check_ranges(self, ("batch_size", "gradient_accumulation_steps"), ("warmup",))
        check(self.sampling in SAMPLINGS, f"sampling must be one of {', '.join(SAMPLINGS)}, not {self.sampling!r}")


@dataclass
class LoRAConfig:
    """PEFT LoRA adapters for the policy (SFT and step-DPO train the adapters only)."""

    r: int = option(16, "rank of the adapters")
    alpha: int = option(32, "scale of the adapters (lora_alpha)")
    dropout: float = option(0.0, "dropout on the adapters' input")
    targets: str = option("all-linear", "modules that get adapters: all-linear, or comma-separated names")

    def __post_init__(self) -> None:
        check(self.r >= 1, f"the LoRA rank must be at least 1, not {self.r}")

    def peft(self, task_type: str = "CAUSAL_LM"):
        """The `peft.LoraConfig` of these settings."""
        from peft import LoraConfig

        targets = self.targets if self.targets == "all-linear" else [t.strip() for t in self.targets.split(",")]
        return LoraConfig(
            r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=targets, task_type=task_type
        )


def merge_prefixes_option():
    """The `merge_prefixes` field of the trainers that take SFT records."""
    return option(
        False,
        "train an SFT record whose tokens begin another's inside that one (its completion added to the other's loss):"
        " the same loss terms, each distinct one once, on fewer tokens and steps; search targets share most of"
        " theirs with the solutions through them",
    )


@dataclass
class SFTConfig(TrainConfig):
    """SFT on `prompt`/`completion` records (loss on the completion only)."""

    lr: float = option(5e-4, "peak learning rate: linear warm-up, cosine decay to 10%")
    merge_prefixes: bool = merge_prefixes_option()


@dataclass
class DPOConfig(TrainConfig):
    """DPO on `prompt`/`chosen`/`rejected` records, against a frozen reference (the model before training)."""

    lr: float = option(2e-4, "peak learning rate: linear warm-up, cosine decay to 10%")
    beta: float = option(0.1, "strength of the implicit KL penalty to the reference")
    sft_weight: float = option(0.0, "add this times the chosen completion's NLL (RPO-style); 0 for plain DPO")
    sampling: str = option("random", "the order of pairs: random (a pair has no one length to group by)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(
            self.sampling == "random",
            f"DPO's pairs have no one length to group by: sampling random, not {self.sampling!r}",
        )


@dataclass
class ValueConfig(TrainConfig):
    """Value-model training on `prompt`/`completions`/`labels` records (soft-label cross-entropy at each step)."""

    epochs: float = option(2.0, "passes over the records (fractions allowed)")


@dataclass
class PolicyValueConfig(TrainConfig):
    """One trunk, two heads (`qstar.train.policy_value`): SFT records train the LM head, value records the value
    head, and both the trunk they share."""

    epochs: float = option(1.0, "passes over the SFT records (fractions allowed)")
    lr: float = option(1e-3, "peak learning rate: linear warm-up, cosine decay to 10%")
    value_epochs: float = option(1.0, "passes over the value records, spread over the same optimiser steps")
    value_weight: float = option(1.0, "weight of the value loss beside the policy's")
    merge_prefixes: bool = merge_prefixes_option()

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.value_epochs >= 0, f"value_epochs must be 0 or more, not {self.value_epochs}")
        check(self.value_weight >= 0, f"value_weight must be 0 or more, not {self.value_weight}")
