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


def gumbels(uniform: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel draws from uniform ones (clamped away from 0 and 1)."""
    return -torch.log(-torch.log(uniform.clamp(1e-12, 1 - 1e-7)))


def truncated_gumbels(parent: torch.Tensor, children: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Each child's perturbed log-probability, conditioned on the largest among its siblings being the parent's.

    `parent`: `[rows]` the parents' perturbed values; `children`: `[rows, vocab]` the children's log-probabilities
    (the parent's plus the token's); `noise`: standard Gumbels of their shape. Stochastic beam search (Kool et al.,
    2019, appendix B): the top-`n` of these over a beam are `n` sequences sampled without replacement."""
    perturbed = children + noise
    top = perturbed.max(dim=-1, keepdim=True).values
    gap = perturbed - top  # <= 0, one 0 a row
    log1mexp = torch.where(gap > -0.6931, torch.log(-torch.expm1(gap)), torch.log1p(-torch.exp(gap)))
    v = parent[:, None] - perturbed + log1mexp
    value = parent[:, None] - v.clamp(min=0) - torch.log1p(torch.exp(-v.abs()))
    return value.masked_fill(torch.isneginf(children) | torch.isneginf(parent)[:, None], -torch.inf)
