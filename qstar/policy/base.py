"""The Policy protocol: propose the next reasoning step for many partial solutions at once."""

from __future__ import annotations

from typing import Protocol

from qstar.types import Step


class BackendError(RuntimeError):
    """Some items of a batched model call failed for good (retries spent): `failed` maps an item's index in the
    batch to why; `results` holds the other items' replies (None where failed). The search driver ends the
    failed items' problems with the error recorded and carries on with the rest."""

    def __init__(self, failed: dict[int, str], results: list):
        self.failed, self.results = failed, results
        first = next(iter(failed.values()), "")
        super().__init__(f"{len(failed)} of {len(results)} requests failed; first: {first}")


class Policy(Protocol):
    """Proposes steps. `prefixes` are rendered prompts; returns `n` steps for each, in order."""

    max_step_tokens: int  # no step is longer than this many generated tokens (searches budget with it)

    def seed(self, seed: int) -> None:
        """Make sampling reproducible from here on."""
        ...

    def propose(self, prefixes: list[str], n: int = 1, temperature: float = 0.0) -> list[list[Step]]:
        """`n` steps after each prefix; may raise `BackendError` naming the prefixes that failed."""
        ...
