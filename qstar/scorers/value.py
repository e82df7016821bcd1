"""A learned value / process reward model as a Scorer, combined with the task's ground truth where it applies."""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from qstar.scorers.base import Scores
from qstar.scorers.ground_truth import VerifierScorer
from qstar.tasks.base import Task
from qstar.train.value import step_probabilities, value_model_from
from qstar.types import Problem


class ValueScorer:
    """The model's value of each path's last step; with `ground_truth`, an illegal step scores 0 and a complete
    solution its verdict (allowed in evaluation only where the verifier needs no reference answer)."""

    def __init__(
        self,
        task: Task,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        ground_truth: bool = True,
        batch_size: int = 256,
    ):
        self.task, self.model, self.tokenizer = task, model.eval(), tokenizer
        self.ground = VerifierScorer(task) if ground_truth else None
        self.uses_verifier = ground_truth
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, path: str | Path, task: Task, device: str | None = None, **kwargs) -> ValueScorer:
        model, tokenizer = value_model_from(path)
        return cls(task, model.to(device) if device is not None else model, tokenizer, **kwargs)

    def values(self, problems: list[Problem], paths: list[list[str]]) -> list[float]:
        """The model's own values, no ground truth: its reading at each path's last step."""
        prompts = [self.task.render(p, []) for p in problems]
        readings = step_probabilities(
            self.model, self.tokenizer, prompts, paths, self.task.separator, 1, self.batch_size
        )
        return [steps[-1] for steps in readings]

    def score(self, problems: list[Problem], paths: list[list[str]]) -> Scores:
        values = self.values(problems, paths)
        if self.ground is not None:
            truth = [self.ground.value(p, path) for p, path in zip(problems, paths, strict=True)]
            values = [v if t == self.ground.partial else t for v, t in zip(values, truth, strict=True)]
        return Scores(values, calls=[1] * len(paths))

    def max_tokens(self, problem: Problem, path: list[str]) -> int:
        return 0
