"""Sampling in which each row draws from its own seed: a prompt's samples are the same in any batch, process or
worker (`torch.multinomial` draws every row from one shared generator, so a row's sample depends on the batch)."""

from __future__ import annotations

import torch


def seeded_uniforms(seeds: list[int], n: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """`n` rows of `width` uniform draws per seed, in seed order: row i*n + j is the j-th sample of seed i. A
    seed's rows are always drawn `width` long, so callers that need fewer slice columns, never rows."""
    draws = [torch.rand(n, width, generator=torch.Generator().manual_seed(s)) for s in seeds]
    return torch.cat(draws).to(device) if draws else torch.empty(0, width, device=device)


def inverse_cdf(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """The token each row's uniform draw picks from its distribution (never one of probability 0)."""
    cdf = probs.cumsum(-1)
    return (cdf < uniform[:, None] * cdf[:, -1:]).sum(-1)
