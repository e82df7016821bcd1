"""A Llama value model read with a prefix cache: a search scores a node's children after the node itself, and a
child's tokens extend its parent's, so each path computes only the tokens no path before it ran."""

from __future__ import annotations

import functools

import torch
from transformers import LlamaForTokenClassification, PreTrainedModel, PreTrainedTokenizerBase

from qstar.policy.decoding import LlamaDecoder, Prefill
from qstar.policy.prefix_cache import PrefixCache, prefix_hashes


class CachedValueReader:
    """The probability of class `positive` at the end of prompt + steps (each step followed by `separator`), as
    `qstar.models.step_probabilities` reads it at a path's last step, in batches over the lean decoder."""

    def __init__(
        self,
        model: LlamaForTokenClassification,
        tokenizer: PreTrainedTokenizerBase,
        separator: str,
        positive: int = 1,
        cache_mb: int = 1024,
    ):
        self.decoder = LlamaDecoder(model)
        self.tokenizer, self.separator, self.positive = tokenizer, separator, positive
        self.pad_id = tokenizer.pad_token_id or 0
        self.prefixes = PrefixCache(cache_mb << 20)
        self.bos = () if tokenizer.bos_token_id is None else (tokenizer.bos_token_id,)
        self.piece = functools.lru_cache(maxsize=1 << 16)(
            lambda text: tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
        )  # a search's paths repeat its prompts and steps: each piece is tokenised once
        self.computed = self.asked = 0  # tokens run through the model, tokens of the paths read

    @classmethod
    def of(
        cls, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, separator: str, positive: int, cache_mb: int
    ) -> CachedValueReader | None:
        """The reader for a scorer's model, or None where the scorer reads whole paths through the transformers
        forward: a cache of 0 MB, or an architecture the lean decoder does not run."""
        return cls(model, tokenizer, separator, positive, cache_mb) if cache_mb > 0 and cls.supports(model) else None

    @classmethod
    def supports(cls, model: PreTrainedModel) -> bool:
        """Whether the lean decoder runs this model (a bias-free SiLU Llama token classifier)."""
        if not isinstance(model, LlamaForTokenClassification):
            return False
        cfg = model.config
        return not (cfg.attention_bias or getattr(cfg, "mlp_bias", False)) and cfg.hidden_act == "silu"

    @torch.inference_mode()
    def read(self, prompts: list[str], paths: list[list[str]], batch_size: int = 256) -> list[float]:
        """Each path's reading at its last step (at the prompt's end for an empty path). Paths run in batches of
        like uncached lengths, since a batch computes from the first slot any of its rows lacks."""
        prompt_ends: dict[tuple[int, ...], int] = {}
        rows = []
        for prompt, path in zip(prompts, paths, strict=True):
            head = self.bos + self.piece(prompt)  # pieces tokenised apart, as `qstar.models.encode` does
            rows.append(head + sum((self.piece(step + self.separator) for step in path), ()))
            prompt_ends[rows[-1]] = len(head)
        # a prompt that no cached prefix covers runs once on its own, not once in each of its paths
        unseen = {seq[: prompt_ends[seq]] for seq in prompt_ends if self.cached_length(seq) < prompt_ends[seq]}
        self.run_batches(sorted(unseen, key=len), batch_size)
        uncached = {seq: len(seq) - self.cached_length(seq) for seq in prompt_ends}
        reading = self.run_batches(sorted(uncached, key=uncached.__getitem__), batch_size)
        return [reading[seq] for seq in rows]

    def read_steps(self, prompts: list[str], paths: list[list[str]], batch_size: int = 256) -> list[list[float]]:
        """Each path's reading at every step (a PRM's step rewards; at the prompt's end for an empty path), as
        `step_probabilities` reads them: its prefixes, read shortest first, so each computes its own step only."""

        def depths(path: list[str]) -> range:
            return range(1, len(path) + 1) if path else range(1)

        wanted = dict.fromkeys(
            (q, tuple(path[:d])) for q, path in zip(prompts, paths, strict=True) for d in depths(path)
        )
        reading: dict[tuple[str, tuple[str, ...]], float] = {}
        for depth in sorted({len(steps) for _, steps in wanted}):
            level = [key for key in wanted if len(key[1]) == depth]
            values = self.read([q for q, _ in level], [list(steps) for _, steps in level], batch_size)
            reading.update(zip(level, values, strict=True))
        return [[reading[q, tuple(path[:d])] for d in depths(path)] for q, path in zip(prompts, paths, strict=True)]

    def run_batches(self, order: list[tuple[int, ...]], batch_size: int) -> dict[tuple[int, ...], float]:
        """Read sequences in batches of `batch_size` in the order given, caching each one (its extensions follow)."""
        reading: dict[tuple[int, ...], float] = {}
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            width = max(map(len, batch))
            run = self.decoder.prefill(batch, self.prefixes, self.pad_id, width)
            self.asked += sum(map(len, batch))
            self.computed += run.computed
            probs = torch.softmax(run.logits.float(), dim=-1)[:, self.positive].tolist()
            reading.update(zip(batch, probs, strict=True))
            for row, seq in enumerate(batch):
                self.keep(run, row, seq, len(seq))
        return reading

    def cached_length(self, seq: tuple[int, ...]) -> int:
        return self.prefixes.longest(seq, prefix_hashes(seq), len(seq) - 1)[0]

    def keep(self, run: Prefill, row: int, seq: tuple[int, ...], length: int) -> None:
        """Cache the keys and values of `seq[:length]` from row `row` of a prefill, unless already cached."""
        key = run.hashes[row][length - 1]
        if not self.prefixes.touch(key):
            keys, values = run.cache
            span = slice(run.lefts[row], run.lefts[row] + length)
            self.prefixes.add(seq[:length], key, keys[:, row, :, span].clone(), values[:, row, :, span].clone())
