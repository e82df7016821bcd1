"""A learned value / process reward model as a Scorer, combined with the task's ground truth where it applies."""

from __future__ import annotations

from dataclasses import dataclass

from qstar.config import option
from qstar.scorers.base import register_scorer
from qstar.scorers.context import over_context, score_within_context
from qstar.scorers.ground_truth import VerifierScorer
from qstar.scorers.prm import prm_folder, warn_if_trained_elsewhere
from qstar.tasks.base import Task
from qstar.types import Problem, Scores


@register_scorer("value")
@dataclass
class ValueScorer:
    """The value model's reading at each path's last step; with `ground_truth`, an illegal step scores 0 and a
    complete solution its verdict (allowed in evaluation only where the verifier needs no reference answer)."""

    task: Task
    path: str = option(
        "tiny-value", "the value model: `tiny-value` (shipped), a folder, or a shared-trunk policy's folder"
    )
    ground_truth: bool = option(True, "the verifier decides illegal and complete paths")
    batch_size: int = option(256, "paths per forward pass")
    device: str | None = option(None, "auto (None: cuda when visible, else cpu), cpu, cuda or cuda:N")
    prefix_cache_mb: int = option(
        1024,
        "a Llama value model keeps the keys and values of the paths it read, so a child computes only its own "
        "step (0: the transformers forward on whole paths; the same values)",
    )

    def __post_init__(self) -> None:
        from qstar.models import device_of, value_model_from  # torch loads late
        from qstar.scorers.value_reader import CachedValueReader

        folder = prm_folder(self.path, "value model")
        warn_if_trained_elsewhere(folder, self.task.separator)
        model, self.tokenizer = value_model_from(folder)
        self.model = model.to(device_of(self.device)).eval()
        self.ground = VerifierScorer(self.task) if self.ground_truth else None
        self.reader = CachedValueReader.of(self.model, self.tokenizer, self.task.separator, 1, self.prefix_cache_mb)

    @property
    def uses_verifier(self) -> bool:
        return self.ground_truth

    def values(self, problems: list[Problem], paths: list[list[str]]) -> list[float]:
        """The model's own values, no ground truth: its reading at each path's last step."""
        return self.read([self.task.render(p, []) for p in problems], paths)

    def read(self, prompts: list[str], paths: list[list[str]]) -> list[float]:
        """The model's reading at the last step of each rendered prompt's path."""
        from qstar.models import step_probabilities

        if self.reader is not None:
            return self.reader.read(prompts, paths, self.batch_size)
        readings = step_probabilities(
            self.model, self.tokenizer, prompts, paths, self.task.separator, 1, self.batch_size
        )
        return [steps[-1] for steps in readings]

    def score(self, problems: list[Problem], paths: list[list[str]], seeds: list[int] | None = None) -> Scores:
        prompts = [self.task.render(p, []) for p in problems]
        failed = over_context(self.model, self.tokenizer, prompts, paths, self.task.separator, "value model")
        return score_within_context(failed, len(paths), lambda kept: self.scored(problems, prompts, paths, kept))

    def scored(self, problems: list[Problem], prompts: list[str], paths: list[list[str]], kept: list[int]) -> Scores:
        """The scores of the paths at indices `kept`."""
        problems, prompts, paths = ([items[i] for i in kept] for items in (problems, prompts, paths))
        values = self.read(prompts, paths)
        if self.ground is not None:
            truth = [self.ground.value(p, path) for p, path in zip(problems, paths, strict=True)]
            values = [v if t == self.ground.partial else t for v, t in zip(values, truth, strict=True)]
        return Scores(values, calls=[1] * len(paths))

    def max_tokens(self, problem: Problem, path: list[str]) -> int:
        return 0
