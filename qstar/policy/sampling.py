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


def beam_step(
    perturbed: torch.Tensor, tempered: torch.Tensor, logq: torch.Tensor, running: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One token of stochastic beam search over each prompt's `n` beams (rows `p * n` to `p * n + n - 1`).

    `perturbed`: `[prompts, n]` the beams' perturbed values; `tempered`: `[beams]` their tempered log-probabilities;
    `logq`: `[beams, vocab]` the next token's tempered log-probabilities; `running`: `[beams]` the beams still
    writing (a finished one is its own only child); `noise`: `[beams, vocab]` standard Gumbels. Returns the new
    beams' perturbed values and tempered log-probabilities, each new beam's parent (a beam index) and token, and
    whether it extended its parent by the token (False: a finished beam kept)."""
    prompts, n = perturbed.shape
    vocab = logq.shape[-1]
    children = (tempered[:, None] + logq).masked_fill(~running[:, None], -torch.inf)
    extended = truncated_gumbels(perturbed.view(-1), children, noise)
    stay = perturbed.view(-1).masked_fill(running, -torch.inf)
    candidates = torch.cat([extended, stay[:, None]], dim=1).view(prompts, n * (vocab + 1))
    best, index = candidates.topk(n, dim=1)
    first_beam = torch.arange(prompts, device=index.device)[:, None] * n
    parent = (index // (vocab + 1) + first_beam).view(-1)
    token = (index % (vocab + 1)).view(-1)
    extends = token < vocab
    token = token.clamp(max=vocab - 1)
    tempered = tempered[parent] + torch.where(extends, logq[parent, token], 0.0)
    return best, tempered, parent, token, extends
