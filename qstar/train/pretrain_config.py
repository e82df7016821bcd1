"""Configuration of `qstar pretrain` (kept apart from the trainer so the CLI can describe it without torch)."""

from dataclasses import dataclass

from qstar.checkpoints import TINY_RULES


@dataclass
class PretrainConfig:
    """Hyper-parameters of rules-only pretraining; the defaults reproduce the shipped `tiny-rules` checkpoint."""

    output_dir: str = str(TINY_RULES)
    steps: int = 2500  # optimiser steps (about 30 minutes on 2 cores)
    batch_size: int = 64  # sequences per step
    lr: float = 2e-3  # peak learning rate (linear warm-up, cosine decay to 10%)
    warmup: int = 200
    weight_decay: float = 0.01
    bound: int = 100  # random play avoids results above this while another legal move exists
    game24_share: float = 0.5  # share of problems drawn like Game of 24 (1-13, target 24); the rest like countdown
    hidden: int = 192
    layers: int = 4
    heads: int = 4
    mlp: int = 512
    seed: int = 0
    eval_every: int = 500  # measure the legal-step rate every this many steps
    eval_problems: int = 200
