"""The Policy protocol: propose the next reasoning step for many partial solutions at once."""

from __future__ import annotations

from typing import Protocol

from qstar.types import Step


class Policy(Protocol):
    """Proposes steps. `prefixes` are rendered prompts; returns `n` steps for each, in order."""

    max_step_tokens: int  # no step is longer than this many generated tokens (searches budget with it)

    def seed(self, seed: int) -> None:
        """Make sampling reproducible from here on."""
        ...

    def propose(self, prefixes: list[str], n: int = 1, temperature: float = 0.0) -> list[list[Step]]: ...
