"""Configuration of `qstar improve` (torch-free, so the CLI can describe it cheaply)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ImproveConfig:
    """One `qstar improve` run: each iteration searches the train split with the current models, keeps the
    trees, extracts records, trains policy (SFT, then step-DPO) and value model, and evaluates on the test split."""

    task: str = "game24"
    iterations: int = 2
    policy: str = "tiny"  # the starting policy checkpoint
    train_problems: int = 400  # train problems searched per iteration (a fresh seeded sample each time)
    data_search: str = "sample"  # search that generates training data (the verifier may guide it)
    data_budget: int = 3000  # generated tokens per train problem
    rollouts: int = 2  # Monte-Carlo rollouts per scored step until a value model exists
    hindsight: bool = False  # also learn from legal plays relabelled with the target they reached (hurt so far)
    eval_search: str = "best-of-n"  # search evaluated on the test split beside greedy
    eval_budget: int = 2000
    eval_limit: int | None = None  # test problems evaluated (None: the whole split)
    value_records: int = 4000  # most value records per iteration (a seeded sample of all paths so far)
    dpo: bool = True  # step-DPO after SFT
    preference_margin: float = 0.3
    seed: int = 0
    # overrides of the trainers' configs (SFTConfig, DPOConfig, ValueConfig)
    sft: dict = field(default_factory=lambda: {"epochs": 20.0, "lr": 1e-3})
    dpo_train: dict = field(default_factory=lambda: {"epochs": 1.0, "lr": 1e-4, "beta": 0.1})
    value: dict = field(default_factory=lambda: {"epochs": 2.0, "lr": 1e-3})
