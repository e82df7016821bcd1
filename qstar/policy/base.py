"""The Policy protocol, the backend contract every policy keeps, and the registry of backends.

The contract: `propose(prefixes, n, temperature, seeds)` returns `n` steps for each prefix, in order. At
temperature 0 one step is generated per prefix and repeated `n` times, the repeats costing 0 tokens; above 0 every
occurrence of a prefix gets `n` samples of its own. With `seeds` (one per prefix) a prefix's samples depend on its
seed alone, not on what else shares the call, so a problem searched in any batch, process or worker gets the same
steps; without, they come from the policy's own stream (`seed()`). A prefix the backend cannot serve (a prompt
longer than the context, a request that keeps failing) fails alone: `BackendError` names it and carries the other
prefixes' steps. A backend that can also sample a prefix's `n` steps without replacement (`n` different steps)
takes `distinct`; a search asking it of one that cannot gets ordinary samples, repeats merged. One that can keep a
prefix's steps to a list (the task's legal next steps) takes `allowed` and says so with a true `legal_steps`.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from typing import Protocol, TypeVar

from qstar.errors import BackendError
from qstar.registry import Registry
from qstar.types import Step

Item = TypeVar("Item")


class Policy(Protocol):
    """Proposes steps. `prefixes` are rendered prompts; returns `n` steps for each, in order."""

    max_step_tokens: int  # no step is longer than this many generated tokens (searches budget with it)

    def seed(self, seed: int) -> None:
        """Make sampling reproducible from here on."""
        ...

    def propose(
        self, prefixes: list[str], n: int = 1, temperature: float = 0.0, seeds: list[int] | None = None
    ) -> list[list[Step]]:
        """`n` steps after each prefix (sampled from its seed, when given); may raise `BackendError` naming the
        prefixes that failed."""
        ...


POLICIES: Registry[Policy] = Registry("policy", "qstar.policies", Policy)
register_policy = POLICIES.register


def repeat(step: Step) -> Step:
    """A copy of a greedy step that was not generated again: it costs no tokens."""
    return Step(step.text, step.logprob, step.done, tokens=0)


def propose_batch(
    prefixes: list[str],
    n: int,
    temperature: float,
    prepare: Callable[[str], tuple[Item, str]],
    generate: Callable[[list[Item], int, list[int], list[list[str] | None]], list[list[Step]]],
    seeds: list[int] | None = None,
    allowed: list[list[str] | None] | None = None,
) -> list[list[Step]]:
    """The contract above for a backend that generates a whole batch at once: `prepare(prefix)` gives the
    backend's input (e.g. token ids) and why it cannot serve it ("" when it can); `generate(items, draws, seeds,
    lists)` gives `draws` steps per item, sampled from the item's seed (greedy when temperature is 0), each kept to
    its list of allowed steps where it has one (`allowed`, one list a prefix, None for any step)."""
    steps_of = allowed_by_prefix(prefixes, allowed)
    prepared = {p: prepare(p) for p in dict.fromkeys(prefixes)}
    failed = {i: prepared[p][1] for i, p in enumerate(prefixes) if prepared[p][1]}
    fitting = [i for i in range(len(prefixes)) if i not in failed]
    results: list[list[Step] | None] = [None] * len(prefixes)
    if not fitting:
        pass
    elif temperature == 0:
        distinct = list(dict.fromkeys(prefixes[i] for i in fitting))
        items, lists = [prepared[p][0] for p in distinct], [steps_of.get(p) for p in distinct]
        generated = dict(zip(distinct, generate(items, 1, [], lists), strict=True))
        for i in fitting:
            (step,) = generated[prefixes[i]]
            results[i] = [step] + [repeat(step)] * (n - 1)
    else:
        items, lists = [prepared[prefixes[i]][0] for i in fitting], [steps_of.get(prefixes[i]) for i in fitting]
        sampled = generate(items, n, [seeds[i] for i in fitting] if seeds else [], lists)
        for i, steps in zip(fitting, sampled, strict=True):
            results[i] = steps
    if failed:  # only those problems end, with the reason; the rest of the batch goes on
        raise BackendError(failed, results)
    return results  # type: ignore[return-value]


def prefix_seeds(prefixes: list[str], seeds: list[int] | None, stream: random.Random) -> list[int]:
    """The seed of each prefix: its own, when given (checked: one per prefix), else the next of the policy's
    stream."""
    if seeds is None:
        return [stream.getrandbits(63) for _ in prefixes]
    check_seeds(prefixes, seeds)
    return list(seeds)


def check_seeds(prefixes: list[str], seeds: list[int] | None) -> None:
    """`seeds`, when given, must be one per prefix."""
    if seeds is not None and len(seeds) != len(prefixes):
        raise ValueError(f"{len(seeds)} seeds for {len(prefixes)} prefixes: give one per prefix")


def allowed_by_prefix(prefixes: list[str], allowed: list[list[str] | None] | None) -> dict[str, list[str] | None]:
    """Each prefix's allowed steps, when given (checked: one list per prefix, None for a prefix that is free)."""
    if allowed is None:
        return {}
    if len(allowed) != len(prefixes):
        raise ValueError(f"{len(allowed)} lists of allowed steps for {len(prefixes)} prefixes: give one per prefix")
    return dict(zip(prefixes, allowed, strict=True))


def takes_seeds(method: Callable) -> bool:
    """Whether a policy's `propose` or a scorer's `score` accepts `seeds` (plug-ins written before it may not)."""
    return takes(method, "seeds")


def takes(method: Callable, keyword: str) -> bool:
    """Whether `method` accepts the keyword argument `keyword`."""
    params = inspect.signature(method).parameters
    return keyword in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
