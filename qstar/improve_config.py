"""Configuration of `qstar improve` (torch-free, so the CLI can describe it cheaply)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ImproveConfig:
    """One `qstar improve` run: each iteration searches the train split with the current models, keeps the
    trees, extracts records, trains policy (SFT, then step-DPO) and value model, and evaluates on the test split."""

    task: str = "game24"
    iterations: int = 2
    policy: str = "tiny-rules"  # the starting checkpoint: `tiny-rules` (rules only), `tiny` (shipped), or a folder
    start_value: str = ""  # value model before iteration 1: "" (Monte-Carlo rollouts), `tiny-value`, or a folder
    train_problems: int = 250  # train problems searched per iteration (a fresh seeded sample; more than the split: all)
    extra_task: str = ""  # another task whose train split adds problems (e.g. countdown for game24); "" for none
    extra_problems: int = 0  # problems of extra_task searched per iteration (never one of an evaluation problem)
    data_search: str = "sample"  # search that generates training data (the verifier may guide it)
    data_search_args: dict = field(default_factory=dict)  # its hyper-parameters, e.g. {"root_k": 32, "accept": 2}
    data_budget: int = 2000  # generated tokens per train problem
    rollouts: int = 2  # Monte-Carlo rollouts per scored step until a value model exists
    hindsight: bool = False  # also learn from legal plays relabelled with the target they reached (hurt so far)
    eval_search: str = "best-of-n"  # search evaluated on the test split beside greedy
    eval_search_args: dict = field(default_factory=dict)
    eval_budget: int = 2000
    eval_limit: int | None = None  # test problems evaluated (None: the whole split)
    sft_per_problem: int = 0  # most distinct verified solutions per problem in the SFT records (0: all)
    batch_size: int = 64  # problems searched at once (their model calls batched together)
    value_labels: str = "mc"  # step labels: `mc` (share of verified below) or `hard` (any verified below)
    value_records: int = 2000  # most value records per iteration (a seeded sample of all paths so far)
    dpo: bool = True  # step-DPO after SFT
    preference_margin: float = 0.3
    seed: int = 0
    # overrides of the trainers' configs (SFTConfig, DPOConfig, ValueConfig)
    sft: dict = field(default_factory=lambda: {"epochs": 20.0, "lr": 1e-3})
    dpo_train: dict = field(default_factory=lambda: {"epochs": 1.0, "lr": 1e-4, "beta": 0.1})
    value: dict = field(default_factory=lambda: {"epochs": 2.0, "lr": 1e-3})
