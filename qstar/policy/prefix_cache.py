"""Keys and values of token sequences a policy has already run, found again by a new prompt's longest cached prefix.

A search's next prompt is the prompt it expanded plus the step just generated, and the policy computed that step's
keys and values while generating it: kept here, the next call computes only the separator and what the task adds.
Entries are whole sequences (prompt + generated step), least recently used first out when over the byte limit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch


def entry_bytes(keys: torch.Tensor) -> int:
    """Memory of an entry: its keys and its values (the same shape)."""
    return 2 * keys.numel() * keys.element_size()


def prefix_hashes(ids: Sequence[int], seed: int = 0) -> list[int]:
    """`hash(ids[:k])` for k = 1..len(ids), chained so that a sequence and its extensions share the first ones."""
    hashes, h = [], seed
    for token in ids:
        h = hash((h, token))
        hashes.append(h)
    return hashes


class PrefixCache:
    """An LRU map from token sequences to their `[layers, kv_heads, length, head_dim]` keys and values."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.entries: OrderedDict[int, tuple[tuple[int, ...], torch.Tensor, torch.Tensor]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0

    def longest(
        self, ids: Sequence[int], hashes: list[int], limit: int
    ) -> tuple[int, torch.Tensor | None, torch.Tensor | None]:
        """The longest cached prefix of `ids`, cut to at most `limit` tokens: `(length, keys, values)`, or
        `(0, None, None)` when none is cached. `hashes` are `prefix_hashes(ids)`."""
        if self.max_bytes > 0:
            for length in range(len(ids), 0, -1):
                entry = self.entries.get(hashes[length - 1])
                if entry is not None and entry[0] == tuple(ids[:length]):
                    self.entries.move_to_end(hashes[length - 1])
                    used = min(length, limit)
                    return used, entry[1][:, :, :used], entry[2][:, :, :used]
        return 0, None, None

    def touch(self, key: int) -> bool:
        """Whether `key` is cached, marking it recently used."""
        if key in self.entries:
            self.entries.move_to_end(key)
            return True
        return False

    def add(self, ids: tuple[int, ...], key: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Keep `ids`' keys and values (contiguous copies the caller no longer writes) under `key = hash chain`."""
        size = entry_bytes(keys)
        if size > self.max_bytes:
            return
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= entry_bytes(old[1])
        self.entries[key] = (ids, keys, values)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, k, _) = self.entries.popitem(last=False)
            self.bytes -= entry_bytes(k)
