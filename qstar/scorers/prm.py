"""A process reward model from a local Hugging Face token-classification checkpoint.

Each step is followed by a step tag (Math-Shepherd writes " ки", Qwen2.5-Math-PRM "<extra_0>", qstar's own
value models the task's separator); the model's probability of the positive class at each tag is that
step's reward, and a path's value aggregates them: `min` (the weakest step), `last` or `prod`.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from qstar.checkpoints import resolve
from qstar.config import option
from qstar.errors import QstarError
from qstar.scorers.base import register_scorer
from qstar.scorers.context import over_context, score_within_context
from qstar.tasks.base import Task
from qstar.types import Problem, Scores

AGGREGATES = {"min": min, "last": lambda rewards: rewards[-1], "prod": math.prod}


def prm_folder(spec: str, what: str = "PRM checkpoint") -> Path:
    """The folder of a scorer's model (`what`: a PRM checkpoint, a value model) a spec names, a shipped checkpoint's
    name resolved, checked before it loads: it holds a model, and not a policy, whose head would be random."""
    from qstar.models import is_plain_policy  # torch loads late

    folder = resolve(spec)
    if not (folder / "config.json").is_file():
        raise QstarError(f"no {what} at {folder} (expected a folder with config.json)")
    if is_plain_policy(folder):  # its head would be random, its rewards noise
        raise QstarError(f"{folder} is a policy without a value head: give a PRM, a value model or a shared-trunk one")
    return folder


def warn_if_trained_elsewhere(folder: Path, tag: str) -> None:
    """Warn when `qstar train value` had the model at `folder` read each step at another tag than `tag` (its
    `qstar_train.json` says where): its readings at `tag` are not what it learnt."""
    summary = folder / "qstar_train.json"
    try:
        trained = json.loads(summary.read_text()).get("separator") if summary.is_file() else None
    except (OSError, ValueError, AttributeError):
        return
    if trained is not None and trained != tag:
        print(
            f"qstar: warning: {folder} was trained reading each step at {trained!r}, and is read here at {tag!r} "
            "(the task's separator, or the PRM's step_tag)",
            file=sys.stderr,
        )


@register_scorer("prm")
@dataclass
class PRMScorer:
    """Step rewards from a token-classification PRM, aggregated over the path. Needs no reference answer."""

    task: Task
    path: str = option("tiny-value", "the PRM: a checkpoint name or a folder")
    aggregate: str = option("min", "step rewards to a path value: min, last or prod")
    step_tag: str | None = option(None, "what follows each step (default: the task's separator; Math-Shepherd ' ки')")
    positive_label: int = option(1, "the class whose probability is the reward")
    batch_size: int = option(32, "paths per forward pass")
    device: str | None = option(None, "auto (None: cuda when visible, else cpu), cpu, cuda or cuda:N")
    prefix_cache_mb: int = option(
        1024,
        "a Llama PRM keeps the keys and values of the paths it read, so a step computes only its own tokens "
        "(0: the transformers forward on whole paths; the same rewards)",
    )
    uses_verifier: ClassVar[bool] = False

    def __post_init__(self) -> None:
        from transformers import AutoModelForTokenClassification, AutoTokenizer  # loaded with a model, not on import

        from qstar.models import device_of
        from qstar.scorers.value_reader import CachedValueReader

        if self.aggregate not in AGGREGATES:
            raise QstarError(f"unknown aggregation {self.aggregate!r}; choose from {', '.join(AGGREGATES)}")
        folder = prm_folder(self.path)
        model = AutoModelForTokenClassification.from_pretrained(folder)
        self.model = model.to(device_of(self.device)).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.tag = self.task.separator if self.step_tag is None else self.step_tag
        warn_if_trained_elsewhere(folder, self.tag)
        self.reader = CachedValueReader.of(
            self.model, self.tokenizer, self.tag, self.positive_label, self.prefix_cache_mb
        )

    def step_rewards(self, problems: list[Problem], paths: list[list[str]]) -> list[list[float]]:
        """The positive-class probability at each step's tag (at the prompt's end for an empty path)."""
        return self.read_steps([self.task.render(p, []) for p in problems], paths)

    def read_steps(self, prompts: list[str], paths: list[list[str]]) -> list[list[float]]:
        """`step_rewards` of the paths after rendered prompts."""
        from qstar.models import step_probabilities

        if self.reader is not None:
            return self.reader.read_steps(prompts, paths, self.batch_size)
        return step_probabilities(
            self.model, self.tokenizer, prompts, paths, self.tag, self.positive_label, self.batch_size
        )

    def score(self, problems: list[Problem], paths: list[list[str]], seeds: list[int] | None = None) -> Scores:
        prompts = [self.task.render(p, []) for p in problems]
        failed = over_context(self.model, self.tokenizer, prompts, paths, self.tag, "PRM")
        return score_within_context(failed, len(paths), lambda kept: self.scored(prompts, paths, kept))

    def scored(self, prompts: list[str], paths: list[list[str]], kept: list[int]) -> Scores:
        """The scores of the paths at indices `kept`."""
        rewards = self.read_steps([prompts[i] for i in kept], [paths[i] for i in kept])
        return Scores([AGGREGATES[self.aggregate](r) for r in rewards], calls=[1] * len(kept))

    def max_tokens(self, problem: Problem, path: list[str]) -> int:
        return 0
