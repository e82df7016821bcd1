"""Configuration of `qstar pretrain` (torch-free, so the command line can describe it without loading torch)."""

from __future__ import annotations

from dataclasses import dataclass

from qstar.config import check, check_ranges, option
from qstar.train.config import TrainConfig


@dataclass
class PretrainConfig:
    """Rules-only pretraining of the tiny model; the defaults reproduce the shipped `tiny-rules` checkpoint."""

    output_dir: str = option(
        "runs/pretrain",
        "where the checkpoint is written (Hugging Face format; the shipped tiny-rules is qstar/checkpoints/tiny-rules"
        " of the source tree, never the default)",
    )
    steps: int = option(2500, "optimiser steps (about 30 minutes on 2 cores)")
    batch_size: int = option(64, "games per step, drawn afresh every step")
    lr: float = option(2e-3, "peak learning rate (linear warm-up, cosine decay to 10%)")
    warmup: int = option(200, "optimiser steps of linear warm-up")
    weight_decay: float = option(0.01, "AdamW weight decay")
    bound: int = option(100, "random play avoids results above this while another legal move exists")
    game24_share: float = option(0.5, "share of games drawn like Game of 24 (1-13, target 24); the rest countdown")
    hidden: int = option(192, "hidden size of the tiny Llama")
    layers: int = option(4, "transformer layers")
    heads: int = option(4, "attention heads")
    mlp: int = option(512, "MLP width")
    eval_every: int = option(500, "measure the legal-step rate every this many steps")
    eval_problems: int = option(200, "held-out random games of that measurement")
    seed: int = option(0, "seed of the initial weights and of the games")
    device: str = option("auto", "where to train: auto (CUDA when visible, else the CPU), cpu, cuda or cuda:N")

    def __post_init__(self) -> None:
        check_ranges(self, ("steps", "eval_every"))
        check(0 <= self.game24_share <= 1, f"game24_share must be between 0 and 1, not {self.game24_share}")
        check(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            f"device must be auto, cpu, cuda or cuda:N, not {self.device!r}",
        )

    def optimiser(self) -> TrainConfig:
        """The shared loop's settings for this run (AdamW with beta2 0.98)."""
        return TrainConfig(
            batch_size=self.batch_size,
            lr=self.lr,
            warmup=self.warmup,
            weight_decay=self.weight_decay,
            adam_beta2=0.98,
            seed=self.seed,
        )
