"""Decoding restricted to given steps (a task's legal moves, as AlphaZero masks its policy to the legal moves).

A character-level tokenizer (the tiny model's) writes each step one way: every prompt's steps, as token ids, become
one trie stored as a transition table, so a batch of rows masks its logits and advances its states with a lookup
per token (`StepTrie`). A subword tokenizer (BPE) writes a step many ways, so a row is kept to its steps by its
text instead: a token may come next when it continues the row's text along some allowed step (`StepTexts`).
"""

from __future__ import annotations

import torch


class StepTrie:
    """The token tries of each prompt's allowed steps, each ended by one of `ends`, in one `[nodes, vocab]` table
    of next nodes (-1: the token may not come next). Node 0 is free: every token allowed, staying free — the state
    of a prompt with no list and of a row that has ended its step."""

    def __init__(self, steps: list[list[list[int]] | None], ends: list[int], vocab: int, device: torch.device):
        edges: dict[tuple[int, int], int] = {}
        roots, count = [], 1
        for prompt_steps in steps:
            if not prompt_steps:  # no list (or an empty one): the prompt decodes freely
                roots.append(0)
                continue
            root, count = count, count + 1
            roots.append(root)
            for ids in prompt_steps:
                node = root
                for token in ids:
                    if (node, token) not in edges:
                        edges[node, token], count = count, count + 1
                    node = edges[node, token]
                for end in ends:
                    edges[node, end] = 0
        self.table = torch.full((count, vocab), -1, dtype=torch.long)
        self.table[0] = 0
        if edges:
            (nodes, tokens), targets = zip(*edges, strict=True), list(edges.values())
            self.table[list(nodes), list(tokens)] = torch.tensor(targets)
        self.table = self.table.to(device)
        self.roots = torch.tensor(roots, dtype=torch.long, device=device)

    def mask(self, logits: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
        """`logits` `[rows, vocab]` with the tokens each row's node does not allow set to -inf."""
        return logits.masked_fill(self.table[nodes] < 0, -torch.inf)

    def advance(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Each row's node after its token (free after a token its node does not allow: a row that stopped)."""
        return self.table[nodes, tokens].clamp(min=0)


class StepTexts:
    """Which tokens may come next in a row that must write one of its allowed steps (each ended by its separator),
    for a tokenizer whose tokens are strings of any length: those whose text continues the row's text along some
    step, whole or in part. `token_texts[i]` is token i's text ("" for a token never allowed: special ones)."""

    def __init__(self, token_texts: list[str]):
        self.by_text: dict[str, list[int]] = {}
        for token, text in enumerate(token_texts):
            if text:
                self.by_text.setdefault(text, []).append(token)
        self.longest = max(map(len, self.by_text), default=0)

    def next_tokens(self, text: str, steps: list[str]) -> list[int] | None:
        """The tokens that may follow `text`; None when no step continues it (the row has ended its step, or has
        none to keep to): the row is free."""
        rests = {step[len(text) :] for step in steps if len(step) > len(text) and step.startswith(text)}
        heads = {rest[:n] for rest in rests for n in range(1, min(len(rest), self.longest) + 1)}
        tokens = [token for head in heads for token in self.by_text.get(head, ())]
        return tokens or None
