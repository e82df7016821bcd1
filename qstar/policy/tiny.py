"""The built-in tiny policy: a small Llama-architecture causal LM over characters, trained by qstar itself."""

from __future__ import annotations

import random
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from qstar.checkpoints import DEFAULT_POLICY
from qstar.models import device_of, load_causal_lm, load_tokenizer
from qstar.policy.base import prefix_seeds, propose_batch
from qstar.policy.decoding import LlamaDecoder
from qstar.policy.legal import StepTrie
from qstar.policy.prefix_cache import PrefixCache, prefix_hashes
from qstar.policy.sampling import beam_step, gumbels, inverse_cdf, seeded_uniforms
from qstar.policy.tokenizer import char_tokenizer
from qstar.types import Step


def new_tiny_model(hidden: int = 192, layers: int = 4, heads: int = 4, mlp: int = 512, context: int = 256):
    """A freshly initialised tiny model and its tokenizer."""
    tokenizer = char_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=context,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config), tokenizer


class TinyPolicy:
    """Batched step proposals from a small causal LM, stopping at the step separator, with a KV cache."""

    def __init__(
        self,
        model: LlamaForCausalLM,
        tokenizer: PreTrainedTokenizerBase,
        separator: str = "\n",
        max_step_tokens: int = 40,
        seed: int = 0,
        prefix_cache_mb: int = 512,
        legal_steps: bool = False,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.decoder = LlamaDecoder(model)
        (self.separator_id,) = tokenizer.convert_tokens_to_ids([separator])
        self.id_to_text = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.special_ids = set(tokenizer.all_special_ids)
        self.max_step_tokens = max_step_tokens
        self.context = model.config.max_position_embeddings
        self.device = model.device  # proposals run where the model's weights are (CPU or CUDA)
        self.stream = random.Random(seed)  # seeds of prefixes sampled without one of their own
        self.prefixes = PrefixCache(prefix_cache_mb << 20)  # a search's next prompt extends its last: reuse its keys
        self.legal_steps = legal_steps  # searches hand it the task's legal next steps, and it writes only those

    @classmethod
    def from_pretrained(cls, path: str | Path = DEFAULT_POLICY, device: str | None = None, **kwargs) -> TinyPolicy:
        """Load a checkpoint; `device` None keeps the CPU (a search's small batches), `auto` picks CUDA when visible."""
        model = load_causal_lm(path)  # a LoRA adapter folder comes merged into its base
        if device is not None:
            model = model.to(device_of(device))
        return cls(model, load_tokenizer(path), **kwargs)

    def seed(self, seed: int) -> None:
        """Reseed sampling and empty the prefix cache, so what follows depends on nothing run before."""
        self.stream.seed(seed)
        self.prefixes.clear()

    def prepare(self, prefix: str) -> tuple[list[int], str]:
        """A prefix's token ids after BOS, and why it cannot be continued ("" when it can)."""
        ids = [self.tokenizer.bos_token_id, *self.tokenizer(prefix, add_special_tokens=False)["input_ids"]]
        too_long = (
            f"prompt of {len(ids)} tokens does not fit the model's context of {self.context} (the tiny model reads "
            "short prompts such as countdown's: give a longer task a model with a longer context)"
        )
        return ids, too_long if len(ids) >= self.context else ""

    def prompt_tokens(self, prefix: str) -> int:
        """How many tokens the model reads `prefix` as, BOS included (a served reply's `usage.prompt_tokens`)."""
        return len(self.prepare(prefix)[0])

    def propose(
        self,
        prefixes: list[str],
        n: int = 1,
        temperature: float = 0.0,
        seeds: list[int] | None = None,
        distinct: bool = False,
        allowed: list[list[str] | None] | None = None,
    ) -> list[list[Step]]:
        """`n` next steps for each prefix (see `qstar.policy.base` for the contract); greedy at temperature 0, `n`
        different ones with `distinct` (sampled without replacement). With `allowed` (one list a prefix, None for
        any step) a prefix's steps are drawn from the model restricted to its list (fewer than `n` different ones
        where the list is shorter). Log-probs are under the untempered, unrestricted model."""
        seeds = prefix_seeds(prefixes, seeds, self.stream) if temperature > 0 else None

        def generate(prompts, k, row_seeds, lists):
            trie = self.trie(lists) if any(lists) else None
            return self.generate(prompts, k, temperature, row_seeds, distinct, trie)

        return propose_batch(prefixes, n, temperature, self.prepare, generate, seeds, allowed)

    def trie(self, lists: list[list[str] | None]) -> StepTrie:
        """The allowed steps of each prompt as one token trie, each step ended by the separator (a step's only end:
        the policy is trained on steps so ended, never on end-of-sequence)."""
        ids = [self.tokenizer(steps, add_special_tokens=False)["input_ids"] if steps else None for steps in lists]
        return StepTrie(ids, [self.separator_id], self.decoder.head.shape[0], self.device)

    @torch.inference_mode()
    def generate(
        self,
        prompts: list[list[int]],
        n: int,
        temperature: float,
        seeds: list[int] | None = None,
        distinct: bool = False,
        trie: StepTrie | None = None,
    ) -> list[list[Step]]:
        """`n` steps after each prompt (token ids, each shorter than the context); identical prompts share one
        prefill, a prompt's longest cached prefix is not computed again, and each prompt's `n` samples draw from
        its own seed (`seeds`, one per prompt; needed above temperature 0), whatever else is in the batch. With
        `trie` (roots in prompt order) each prompt writes only the steps it allows."""
        if distinct and n > 1 and temperature > 0:
            return self.generate_distinct(prompts, n, temperature, seeds, trie)
        width, steps, by_sample, (keys, values), logits, next_pos, key_mask = self.start(prompts, n)
        dev = self.device
        count = len(next_pos)  # rows: n samples of each prompt
        generated = torch.full((count, steps), -1, device=dev)  # by sample, filled as rows are dropped
        logprob = torch.zeros(count, device=dev)
        sample_of_row = torch.arange(count, device=dev)  # cache rows are compacted as samples finish
        row_tokens = generated.clone()  # by current row: no boolean indexing in the loop
        row_logprob = logprob.clone()
        running = torch.ones(count, dtype=torch.bool, device=dev)
        node = trie.roots.repeat_interleave(n) if trie is not None else None  # each row's place in its trie
        uniform = None
        if temperature > 0:
            if seeds is None:
                raise ValueError("sampling needs one seed per prompt")
            uniform = seeded_uniforms(seeds, n, self.max_step_tokens, dev)[:, :steps]
        remember = self.prefixes.max_bytes > 0
        for t in range(steps):
            logp = torch.log_softmax(logits.float(), dim=-1)
            if node is not None:
                logits = trie.mask(logits.float(), node)  # type: ignore[union-attr]
            if temperature > 0:
                plain = temperature == 1 and node is None
                probs = logp.exp() if plain else torch.softmax(logits.float() / temperature, dim=-1)
                token = inverse_cdf(probs, uniform[:, t])  # type: ignore[index]
            else:
                token = logits.argmax(dim=-1)
            if node is not None:
                node = trie.advance(node, token)  # type: ignore[union-attr]
            row_tokens[:, t] = token.masked_fill(~running, -1)
            row_logprob += logp.gather(1, token[:, None]).squeeze(1).masked_fill(~running, 0.0)
            running &= (token != self.separator_id) & (token != self.tokenizer.eos_token_id)
            alive = int(running.sum())
            if alive == 0 or t == steps - 1:
                break
            if alive <= len(running) // 2:  # drop finished rows once they are half the batch
                done, keep = (~running).nonzero().squeeze(1), running.nonzero().squeeze(1)
                generated[sample_of_row[done]] = row_tokens[done]
                logprob[sample_of_row[done]] = row_logprob[done]
                if remember:
                    self.remember(
                        keys, values, done.tolist(), sample_of_row[done].tolist(), row_tokens[done], by_sample
                    )
                sample_of_row, running, token = sample_of_row[keep], running[keep], token[keep]
                next_pos, row_tokens, row_logprob = next_pos[keep], row_tokens[keep], row_logprob[keep]
                keys, values, key_mask = keys[:, keep], values[:, keep], key_mask[keep]
                uniform = uniform[keep] if uniform is not None else None
                node = node[keep] if node is not None else None
            key_mask[:, width + t] = True  # the slot this step's token is written to
            mask = key_mask[:, None, None]  # every slot, the unwritten ones masked: the cache is attended whole
            logits = self.decoder.forward(token[:, None], next_pos[:, None], (keys, values), width + t, mask)
            next_pos = next_pos + 1
        generated[sample_of_row] = row_tokens
        logprob[sample_of_row] = row_logprob
        if remember:
            self.remember(keys, values, range(len(sample_of_row)), sample_of_row.tolist(), row_tokens, by_sample)
        sequences = [[t for t in seq if t >= 0] for seq in generated.tolist()]
        proposals = [self._step(seq, lp) for seq, lp in zip(sequences, logprob.tolist(), strict=True)]
        return [proposals[i * n : (i + 1) * n] for i in range(len(prompts))]

    def start(self, prompts: list[list[int]], n: int):
        """Prefill the distinct prompts once and give each of their `n` rows its cache, last logits, next position
        and key mask: `(width, steps, by_sample, cache, logits, next_pos, key_mask)`, `width` the padded prompts'
        slots, `steps` the slots left for generating, `by_sample` each row's prompt ids, padding and prefix hashes."""
        slot = {p: i for i, p in enumerate(dict.fromkeys(map(tuple, prompts)))}
        encoded = list(slot)
        width = max(map(len, encoded))
        length = min(width + self.max_step_tokens, self.context)
        run = self.decoder.prefill(encoded, self.prefixes, self.tokenizer.pad_token_id, length)
        dev = self.device
        # each prefix's cache and last logits are shared by its n samples (and by its repeats)
        prompt_of = [slot[tuple(p)] for p in prompts for _ in range(n)]
        rows = torch.tensor(prompt_of, device=dev)
        cache = run.cache if len(rows) == len(encoded) else (run.cache[0][:, rows], run.cache[1][:, rows])
        steps = length - width
        key_mask = torch.cat([run.valid[rows], torch.zeros(len(rows), steps, dtype=torch.bool, device=dev)], dim=1)
        by_sample = [(encoded[i], run.lefts[i], run.hashes[i]) for i in prompt_of]
        return width, steps, by_sample, cache, run.logits[rows], run.positions[rows, -1] + 1, key_mask

    @torch.inference_mode()
    def generate_distinct(
        self,
        prompts: list[list[int]],
        n: int,
        temperature: float,
        seeds: list[int] | None,
        trie: StepTrie | None = None,
    ) -> list[list[Step]]:
        """`n` different steps after each prompt, sampled without replacement from the tempered model by stochastic
        beam search (Kool et al., 2019): each prompt keeps a beam of `n` sequences ranked by Gumbel-perturbed
        log-probabilities, every child's perturbation conditioned on its parent's, so the beam's top-`n` at the end
        is a sample of `n` distinct steps; the first is distributed as one ordinary sample. Each prompt's Gumbels
        come from its own seed. A search that samples a node's first steps 32 times gets ~10 distinct ones from a
        confident policy; this gets 32, as many tokens generated. With `trie`, fewer where a prompt allows fewer."""
        if seeds is None:
            raise ValueError("sampling needs one seed per prompt")
        vocab = self.decoder.head.shape[0]
        if n > vocab:
            raise ValueError(f"{n} distinct steps exceed the {vocab} first tokens a step can start with")
        width, steps, by_sample, (keys, values), logits, next_pos, key_mask = self.start(prompts, n)
        dev = self.device
        beams = len(prompts) * n
        beam_index = torch.arange(beams, device=dev)
        noise = gumbels(seeded_uniforms(seeds, n, self.max_step_tokens * vocab, dev)[:, : steps * vocab])
        noise = noise.view(len(prompts), n, steps, vocab)
        perturbed = torch.full((len(prompts), n), -torch.inf, device=dev)
        perturbed[:, 0] = 0.0  # one empty sequence a prompt to start from
        tempered = torch.zeros(beams, device=dev)  # log-probability under the tempered model
        logprob = torch.zeros(beams, device=dev)  # under the model itself
        tokens = torch.full((beams, steps), -1, device=dev)
        running = torch.ones(beams, dtype=torch.bool, device=dev)
        node = trie.roots.repeat_interleave(n) if trie is not None else None
        ends = torch.tensor([self.separator_id, self.tokenizer.eos_token_id], device=dev)
        for t in range(steps):
            logp = torch.log_softmax(logits.float(), dim=-1)
            if node is not None:
                logits = trie.mask(logits.float(), node)  # type: ignore[union-attr]
            plain = temperature == 1 and node is None
            logq = logp if plain else torch.log_softmax(logits.float() / temperature, dim=-1)
            perturbed, tempered, parent, token, extends = beam_step(
                perturbed, tempered, logq, running, noise[:, :, t].reshape(beams, vocab)
            )
            logprob = logprob[parent] + torch.where(extends, logp[parent, token], 0.0)
            tokens = tokens[parent]
            tokens[:, t] = torch.where(extends, token, -1)
            if node is not None:
                node = torch.where(extends, trie.advance(node[parent], token), node[parent])  # type: ignore[union-attr]
            moved = (parent != beam_index).nonzero().squeeze(1)
            if t > 0 and len(moved):  # a beam that took another's place continues from its steps' keys and values
                fresh = slice(width, width + t)  # the prompt's are the same in all of a prompt's beams
                keys[:, moved, :, fresh] = keys[:, parent[moved], :, fresh]
                values[:, moved, :, fresh] = values[:, parent[moved], :, fresh]
            running = running[parent] & extends & ~torch.isin(token, ends) & (perturbed.view(-1) > -torch.inf)
            if not running.any() or t == steps - 1:
                break
            key_mask[:, width + t] = True
            mask = key_mask[:, None, None]
            logits = self.decoder.forward(token[:, None], next_pos[:, None], (keys, values), width + t, mask)
            next_pos = next_pos + 1
        if self.prefixes.max_bytes > 0:
            self.remember(keys, values, range(beams), list(range(beams)), tokens, by_sample)
        order = perturbed.argsort(dim=1, descending=True)  # the beam's sample order: its first is an ordinary sample
        sampled = (perturbed > -torch.inf).tolist()  # a beam no sequence reached (fewer allowed steps than n): none
        sequences, logprobs = tokens.tolist(), logprob.tolist()
        return [
            [
                self._step([x for x in sequences[p * n + b] if x >= 0], logprobs[p * n + b])
                for b in order[p].tolist()
                if sampled[p][b]
            ]
            for p in range(len(prompts))
        ]

    def remember(self, keys, values, rows, samples: list[int], tokens: torch.Tensor, by_sample: list) -> None:
        """Keep finished samples' prompt + step in the prefix cache, up to the separator (sampled, never fed): a
        search's next prompt starts with exactly these tokens. `rows` index `keys`/`values` and `tokens`, `samples`
        index `by_sample` (each sample's prompt ids, left padding and prefix hashes)."""
        for row, sample, generated in zip(rows, samples, tokens.tolist(), strict=True):
            fed = [t for t in generated if t >= 0]
            if not fed or fed.pop() != self.separator_id:
                continue  # a finished solution or a cut-off step: no search extends it
            prompt, left, hashes = by_sample[sample]
            key = prefix_hashes(fed, hashes[-1])[-1] if fed else hashes[-1]
            if self.prefixes.touch(key):
                continue
            end = left + len(prompt) + len(fed)
            kept = keys[:, row, :, left:end].clone(), values[:, row, :, left:end].clone()
            self.prefixes.add((*prompt, *fed), key, *kept)

    def _step(self, tokens: list[int], logprob: float) -> Step:
        ended_by_eos = tokens[-1] == self.tokenizer.eos_token_id
        body = tokens[:-1] if tokens[-1] in (self.separator_id, self.tokenizer.eos_token_id) else tokens
        text = "".join(self.id_to_text[t] for t in body if t not in self.special_ids)
        return Step(text=text, logprob=logprob, done=ended_by_eos, tokens=len(tokens))
