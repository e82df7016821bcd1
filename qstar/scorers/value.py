"""A learned value / process reward model as a Scorer, combined with the task's ground truth where it applies."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from qstar.scorers.base import Scores
from qstar.scorers.ground_truth import VerifierScorer
from qstar.tasks.base import Task
from qstar.train.value import step_inputs, step_logits, value_model_from
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

    @torch.inference_mode()
    def values(self, problems: list[Problem], paths: list[list[str]]) -> list[float]:
        """The model's own values, no ground truth."""
        out: list[float] = []
        for i in range(0, len(paths), self.batch_size):
            chunk = list(zip(problems[i : i + self.batch_size], paths[i : i + self.batch_size], strict=True))
            inputs = [
                step_inputs(self.tokenizer, self.task.render(p, []), path, self.task.separator) for p, path in chunk
            ]
            logits = step_logits(self.model, [ids for ids, _ in inputs], self.tokenizer.pad_token_id or 0)
            last = torch.tensor([tags[-1] for _, tags in inputs], device=logits.device)
            rows = torch.arange(len(inputs), device=logits.device)
            out += torch.softmax(logits[rows, last], dim=-1)[:, 1].tolist()
        return out

    def score(self, problems: list[Problem], paths: list[list[str]]) -> Scores:
        values = self.values(problems, paths)
        if self.ground is not None:
            truth = [self.ground.value(p, path) for p, path in zip(problems, paths, strict=True)]
            values = [v if t == self.ground.partial else t for v, t in zip(values, truth, strict=True)]
        return Scores(values, calls=[1] * len(paths))

    def max_tokens(self, problem: Problem, path: list[str]) -> int:
        return 0
