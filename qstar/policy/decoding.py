"""A lean KV-cached forward pass over a Llama model's own weights, for fast small-model decoding on CPU.

The stock forward spends most of its time in Python per layer when the model is tiny; this one fuses the
projections, keeps a preallocated cache and does a dozen tensor ops per layer. Its logits equal the HF
model's (tests/test_policy.py checks this), so a checkpoint trained and saved with transformers is used as is. The
head is the causal LM's `lm_head` or a token-classification model's `score` (a value model read the same way).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM, LlamaForTokenClassification

from qstar.policy.prefix_cache import PrefixCache, prefix_hashes


@dataclass
class Prefill:
    """Left-padded sequences run through the model: their last-position logits and everything decoding goes on
    with (the cache, which slots are real tokens, rotary positions, each row's padding and prefix hashes)."""

    logits: torch.Tensor  # [batch, vocab or labels]
    cache: tuple[torch.Tensor, torch.Tensor]
    valid: torch.Tensor  # [batch, width] True on a row's own tokens
    positions: torch.Tensor  # [batch, width]
    lefts: list[int]
    hashes: list[list[int]]
    computed: int  # tokens run through the model; the rest (and the padding) came from the prefix cache


class LlamaDecoder:
    """Prefill and one-token decode steps with a static `[layers, batch, heads, length, head_dim]` KV cache."""

    def __init__(self, model: LlamaForCausalLM | LlamaForTokenClassification):
        cfg = model.config
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        positions = torch.arange(cfg.max_position_embeddings, device=model.device)[None]
        cos, sin = model.model.rotary_emb(model.model.embed_tokens.weight[:1], positions)
        half = self.head_dim // 2
        # rotary embedding as one complex product: each (j, j + half) pair of a query/key head becomes a complex
        # number, its rows interleaved in the projection (queries and keys alike, so attention scores are unchanged)
        self.rotation = torch.complex(cos[0, :, :half], sin[0, :, :half])  # [position, head_dim/2]
        self.pairs = torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).flatten()
        self.embed = model.model.embed_tokens.weight
        self.final_norm = model.model.norm.weight
        head = model.lm_head if hasattr(model, "lm_head") else model.score
        self.head, self.head_bias = head.weight, head.bias
        self.layers = [
            (
                layer.input_layernorm.weight,
                torch.cat(
                    [
                        self.interleaved(layer.self_attn.q_proj.weight),
                        self.interleaved(layer.self_attn.k_proj.weight),
                        layer.self_attn.v_proj.weight,
                    ]
                ),
                layer.self_attn.o_proj.weight,
                layer.post_attention_layernorm.weight,
                torch.cat([layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight]),
                layer.mlp.down_proj.weight,
            )
            for layer in model.model.layers
        ]
        if cfg.attention_bias or getattr(cfg, "mlp_bias", False) or cfg.hidden_act != "silu":
            raise ValueError("LlamaDecoder supports bias-free SiLU Llama models only")

    def interleaved(self, weight: torch.Tensor) -> torch.Tensor:
        """A query/key projection with each head's rows (j, j + head_dim/2) made neighbours (complex pairs)."""
        heads = weight.shape[0] // self.head_dim
        return weight.view(heads, self.head_dim, -1)[:, self.pairs].reshape(weight.shape)

    def rotate(self, x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        """`[batch, new, heads, head_dim]` rotated by `[batch, new, head_dim/2]` complex factors."""
        pairs = torch.view_as_complex(x.unflatten(-1, (-1, 2)))
        return torch.view_as_real(pairs * rotation[:, :, None]).flatten(-2)

    def new_cache(self, batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (len(self.layers), batch, self.kv_heads, length, self.head_dim)
        like = {"dtype": self.embed.dtype, "device": self.embed.device}
        return torch.zeros(shape, **like), torch.zeros(shape, **like)  # slots not yet written are read, masked

    @torch.inference_mode()
    def forward(
        self,
        ids: torch.Tensor,  # [batch, new]
        positions: torch.Tensor,  # [batch, new] rotary positions
        cache: tuple[torch.Tensor, torch.Tensor],
        start: int,  # cache slot of ids[:, 0]
        mask: torch.Tensor,  # [batch, 1, new, slots] True where a query may attend; slots >= start + new
    ) -> torch.Tensor:
        """Run `ids` through the model, writing their keys/values at `start` and attending to the first `slots`
        of the cache; returns last-position logits."""
        keys, values = cache
        b, t = ids.shape
        end = start + t
        x = F.embedding(ids, self.embed)
        rotation = self.rotation[positions]
        q_size, kv_size = self.heads * self.head_dim, self.kv_heads * self.head_dim
        # slots attended: in decoding the whole cache (contiguous: its batched matmuls run faster than on a slice)
        span = mask.shape[-1]
        bias = self.attention_bias(mask, b, t, span)
        for i, (ln1, qkv_w, o_w, ln2, gate_up_w, down_w) in enumerate(self.layers):
            h = F.rms_norm(x, (x.shape[-1],), ln1, self.eps)
            q, k, v = F.linear(h, qkv_w).split([q_size, kv_size, kv_size], dim=-1)
            q = self.rotate(q.view(b, t, self.heads, self.head_dim), rotation).transpose(1, 2)
            k = self.rotate(k.view(b, t, self.kv_heads, self.head_dim), rotation).transpose(1, 2)
            v = v.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
            keys[i, :, :, start:end] = k
            values[i, :, :, start:end] = v
            attn = self.attend(q, keys[i, :, :, :span], values[i, :, :, :span], bias)
            x = x + F.linear(attn.reshape(b, self.heads, t, self.head_dim).transpose(1, 2).reshape(b, t, q_size), o_w)
            h = F.rms_norm(x, (x.shape[-1],), ln2, self.eps)
            gate, up = F.linear(h, gate_up_w).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, down_w)
        x = F.rms_norm(x[:, -1], (x.shape[-1],), self.final_norm, self.eps)
        return F.linear(x, self.head, self.head_bias)

    def attention_bias(self, mask: torch.Tensor, b: int, t: int, slots: int) -> torch.Tensor:
        """`mask` as the additive `[batch * kv_heads, group * new, slots]` bias `attend` adds to its scores."""
        group = self.heads // self.kv_heads
        bias = torch.zeros(mask.shape, dtype=self.embed.dtype, device=self.embed.device).masked_fill_(~mask, -torch.inf)
        return bias[:, :, None].expand(b, self.kv_heads, group, t, slots).reshape(b * self.kv_heads, group * t, slots)

    def attend(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Attention of `[batch, heads, new, head_dim]` queries over `[batch, kv_heads, slots, head_dim]` keys and
        values as two batched matmuls, a query group sharing its key/value head; `[batch * kv_heads, group * new,
        head_dim]` out. On the CPU this runs a decode step's attention (one query a row) ~1.5x faster than
        `scaled_dot_product_attention`, whose flash kernel is built for long query blocks (README, Benchmarks)."""
        b, d = q.shape[0], q.shape[-1]
        q = q.reshape(b * self.kv_heads, -1, d)  # a kv head's group of query heads, their positions one after another
        k, v = keys.flatten(0, 1), values.flatten(0, 1)
        scores = torch.bmm(q, k.transpose(1, 2)).mul_(d**-0.5).add_(bias)
        return torch.bmm(torch.softmax(scores, dim=-1), v)

    def prefill(self, sequences: list[tuple[int, ...]], prefixes: PrefixCache, pad_id: int, length: int) -> Prefill:
        """Run distinct token sequences, left-padded, into a new cache of `length` slots, computing only what their
        longest cached prefixes in `prefixes` do not hold: rows mostly cached and rows mostly not run as two groups
        (`row_groups`), each from the first slot one of its rows must compute."""
        width = max(map(len, sequences))
        lefts = [width - len(seq) for seq in sequences]
        hashes = [prefix_hashes(seq) for seq in sequences]
        hits = [prefixes.longest(seq, h, len(seq) - 1) for seq, h in zip(sequences, hashes, strict=True)]
        first = [left + hit[0] for left, hit in zip(lefts, hits, strict=True)]  # first slot each row must compute
        ids = torch.full((len(sequences), width), pad_id)
        valid = torch.zeros((len(sequences), width), dtype=torch.bool)
        for row, seq in enumerate(sequences):
            ids[row, lefts[row] :] = torch.tensor(seq)
            valid[row, lefts[row] :] = True
        dev = self.embed.device
        ids, valid = ids.to(dev), valid.to(dev)
        positions = (valid.cumsum(1) - 1).clamp(min=0)
        causal = torch.ones(width, width, dtype=torch.bool, device=dev).tril()
        mask = (causal & (valid[:, None, :] | torch.eye(width, dtype=torch.bool, device=dev)))[:, None]
        cache = self.new_cache(len(sequences), length)
        for row, (cached, keys, values) in enumerate(hits):
            if cached:
                cache[0][:, row, :, lefts[row] : lefts[row] + cached] = keys
                cache[1][:, row, :, lefts[row] : lefts[row] + cached] = values
        groups = row_groups(first, width)
        logits = torch.empty(len(sequences), self.head.shape[0], dtype=self.embed.dtype, device=dev)
        for rows, start in groups:
            whole = len(rows) == len(sequences)
            index = slice(None) if whole else torch.tensor(rows, device=dev)
            part = cache if whole else (cache[0][:, index, :, :width], cache[1][:, index, :, :width])
            logits[index] = self.forward(
                ids[index, start:], positions[index, start:], part, start, mask[index, :, start:]
            )
            if not whole:  # the group ran on a copy of its rows' cache
                cache[0][:, index, :, :width], cache[1][:, index, :, :width] = part
        computed = sum(len(rows) * (width - start) for rows, start in groups)
        return Prefill(logits, cache, valid, positions, lefts, hashes, computed)


def row_groups(first: list[int], width: int) -> list[tuple[list[int], int]]:
    """Rows split into at most two groups `(rows, first slot the group computes)`, the split (rows ordered by the
    first slot each must compute) that computes the fewest tokens in all; one group unless that saves a third."""
    order = sorted(range(len(first)), key=first.__getitem__, reverse=True)
    slots = [first[row] for row in order]
    alone = len(slots) * (width - slots[-1])
    cost, cut = min(
        ((k * (width - slots[k - 1]) + (len(slots) - k) * (width - slots[-1]), k) for k in range(1, len(slots))),
        default=(alone, 0),
    )
    if cost > alone * 2 / 3:
        return [(list(range(len(first))), slots[-1])]
    return [(sorted(order[:cut]), slots[cut - 1]), (sorted(order[cut:]), slots[-1])]
