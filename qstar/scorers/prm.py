"""A process reward model from a local Hugging Face token-classification checkpoint.

Each step is followed by a step tag (Math-Shepherd writes " ки", Qwen2.5-Math-PRM "<extra_0>", qstar's own
value models the task's separator); the model's probability of the positive class at each tag is that
step's reward, and a path's value aggregates them: `min` (the weakest step), `last` or `prod`.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from qstar.scorers.base import Scores
from qstar.tasks.base import QstarError, Task
from qstar.train.value import step_probabilities
from qstar.types import Problem

AGGREGATES = {"min": min, "last": lambda rewards: rewards[-1], "prod": math.prod}


class PRMScorer:
    """Step rewards from a token-classification PRM, aggregated over the path. Needs no reference answer."""

    uses_verifier = False

    def __init__(
        self,
        task: Task,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        step_tag: str | None = None,
        aggregate: str = "min",
        positive_label: int = 1,
        batch_size: int = 32,
    ):
        if aggregate not in AGGREGATES:
            raise QstarError(f"unknown aggregation {aggregate!r}; choose from {', '.join(AGGREGATES)}")
        self.task, self.model, self.tokenizer = task, model.eval(), tokenizer
        self.step_tag = task.separator if step_tag is None else step_tag
        self.aggregate, self.positive, self.batch_size = AGGREGATES[aggregate], positive_label, batch_size

    @classmethod
    def from_pretrained(cls, path: str | Path, task: Task, **kwargs) -> PRMScorer:
        if not (Path(path) / "config.json").is_file():
            raise QstarError(f"no PRM checkpoint at {path} (expected a folder with config.json)")
        model = AutoModelForTokenClassification.from_pretrained(path)
        if torch.cuda.is_available():
            model = model.to("cuda")
        return cls(task, model, AutoTokenizer.from_pretrained(path), **kwargs)

    def step_rewards(self, problems: list[Problem], paths: list[list[str]]) -> list[list[float]]:
        """The positive-class probability at each step's tag (at the prompt's end for an empty path)."""
        prompts = [self.task.render(p, []) for p in problems]
        return step_probabilities(
            self.model, self.tokenizer, prompts, paths, self.step_tag, self.positive, self.batch_size
        )

    def score(self, problems: list[Problem], paths: list[list[str]]) -> Scores:
        values = [self.aggregate(r) for r in self.step_rewards(problems, paths)]
        return Scores(values, calls=[1] * len(paths))

    def max_tokens(self, problem: Problem, path: list[str]) -> int:
        return 0
