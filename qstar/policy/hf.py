"""Any Hugging Face causal LM as a policy: a local folder or a GGUF file, batched generation cut at the step
separator, per-step log-probs, and chat templates for instruct models.

The prompt a batch shares (a task's instructions and worked examples) is computed once: its KV cache is kept and
copied into each batch, whose rows hold the shared tokens, then their own left-padded tails. A step then costs its
own tail, not the whole prompt again; the outputs are the same (tested).
"""

from __future__ import annotations

import copy
import random
from pathlib import Path

import torch
from transformers import (
    DynamicCache,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from qstar.errors import QstarError
from qstar.io import policy_folder
from qstar.models import device_of, load_causal_lm, load_tokenizer
from qstar.policy.base import prefix_seeds, propose_batch
from qstar.policy.legal import StepTexts
from qstar.policy.sampling import beam_step, gumbels, inverse_cdf, seeded_uniforms
from qstar.types import Step, split_prefix

MIN_SHARED = 16  # the fewest shared prompt tokens worth a cache of their own


class StepEnd(StoppingCriteria):
    """Stops each row once its new text holds the separator after some non-blank text (a step is a line)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, start: int, separator: str):
        self.tokenizer, self.start, self.separator = tokenizer, start, separator

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        return torch.tensor([step_ended(text, self.separator) for text in texts], device=input_ids.device)


def step_ended(text: str, separator: str) -> bool:
    """Whether generated `text` holds a whole step: the separator after some non-blank text."""
    return separator in text.lstrip(separator)


class SeededSampling(LogitsProcessor):
    """Samples each row's next token from the row's own uniform draws (see `qstar.policy.sampling`) and leaves
    only it possible, so greedy decoding takes it: a row's samples depend on its seed, not on the batch."""

    def __init__(self, uniform: torch.Tensor, start: int, temperature: float):
        self.uniform, self.start, self.temperature = uniform, start, temperature

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        token = inverse_cdf(probs, self.uniform[:, input_ids.shape[1] - self.start])
        return torch.full_like(scores, float("-inf")).scatter_(1, token[:, None], 0.0)


class KeepToSteps(LogitsProcessor):
    """Masks each row's tokens to those that continue its text along one of its allowed steps (None: the row is
    free); a row that has written a whole step is free again, so the step ends at its separator."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, texts: StepTexts, start: int, steps: list[list[str] | None]):
        self.tokenizer, self.texts, self.start, self.steps = tokenizer, texts, start, steps

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return self.mask(written(self.tokenizer, input_ids[:, self.start :].tolist()), scores)

    def mask(self, texts: list[str], scores: torch.Tensor) -> torch.Tensor:
        """`scores` with each row's tokens that continue no step of its list (given its text so far) at -inf."""
        blocked = torch.zeros_like(scores, dtype=torch.bool)
        for row, (text, steps) in enumerate(zip(texts, self.steps, strict=True)):
            tokens = self.texts.next_tokens(text, steps) if steps else None
            if tokens is not None:
                blocked[row] = True
                blocked[row, tokens] = False
        return scores.masked_fill(blocked, -torch.inf)


def written(tokenizer: PreTrainedTokenizerBase, rows: list[list[int]]) -> list[str]:
    """Each row's generated text exactly as written (special tokens left out, spaces not cleaned up)."""
    return tokenizer.batch_decode(rows, skip_special_tokens=True, clean_up_tokenization_spaces=False)


class HFPolicy:
    """Batched step proposals from a transformers causal LM.

    With `chat` (default: when the tokenizer has a chat template) the prefix's question goes in the user's
    turn and the steps taken so far open the assistant's, so the model answers in the step format. With
    `legal_steps` searches hand it the task's legal next steps, and it writes only those.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        separator: str = "\n",
        max_step_tokens: int = 96,
        chat: bool | None = None,
        batch_size: int = 16,
        seed: int = 0,
        share_prefix: bool = True,
        legal_steps: bool = False,
    ):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.separator, self.max_step_tokens, self.batch_size = separator, max_step_tokens, batch_size
        self.context = getattr(model.config, "max_position_embeddings", None) or 2**31
        self.chat = tokenizer.chat_template is not None if chat is None else chat
        if self.chat and tokenizer.chat_template is None:
            raise QstarError("this tokenizer has no chat template; load the model without chat")
        eos = model.generation_config.eos_token_id if model.generation_config else None
        self.eos_ids = set([eos] if isinstance(eos, int) else (eos or [])) | {tokenizer.eos_token_id}
        self.share_prefix, self.legal_steps = share_prefix, legal_steps
        self.step_texts: StepTexts | None = None  # the vocabulary's token texts, made when first needed
        self.shared: tuple[tuple[int, ...], DynamicCache] | None = None  # the last shared prompt and its cache
        self.seed(seed)

    @classmethod
    def from_pretrained(cls, spec: str | Path, device: str | None = None, **kwargs) -> HFPolicy:
        """From a model folder, a `.gguf` file (dequantised by transformers; needs the `gguf` package) or a LoRA
        adapter folder (merged into its base)."""
        path = policy_folder(spec)
        dev = torch.device(device_of(device))
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
        model = load_causal_lm(path, dtype=dtype).to(dev)
        return cls(model, load_tokenizer(path), **kwargs)

    def seed(self, seed: int) -> None:
        """Reseed the stream that seeds prefixes sampled without a seed of their own."""
        self.stream = random.Random(seed)

    def text(self, prefix: str) -> str:
        """The model's input for a prefix: the prefix itself, or its chat rendering."""
        if not self.chat:
            return prefix
        question, steps = split_prefix(prefix)
        messages = [{"role": "user", "content": question}]
        if not steps:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        messages.append({"role": "assistant", "content": steps})
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
        return text if text.endswith(self.separator) else text + self.separator  # templates may trim the content

    def prepare(self, prefix: str) -> tuple[list[int], str]:
        """A prefix's token ids (its chat rendering's, with `chat`), and why it cannot be continued within the
        model's context ("" when it can)."""
        ids = self.tokenizer(self.text(prefix), add_special_tokens=not self.chat)["input_ids"]
        return ids, self.overflow(len(ids))

    def prompt_tokens(self, prefix: str) -> int:
        """How many tokens the model reads `prefix` as, its chat rendering's with `chat` (`usage.prompt_tokens`)."""
        return len(self.prepare(prefix)[0])

    @torch.inference_mode()
    def propose(
        self,
        prefixes: list[str],
        n: int = 1,
        temperature: float = 0.0,
        seeds: list[int] | None = None,
        distinct: bool = False,
        allowed: list[list[str] | None] | None = None,
    ) -> list[list[Step]]:
        """`n` next steps per prefix (see `qstar.policy.base` for the contract), `n` different ones with
        `distinct` (sampled without replacement). Log-probs are under the untempered, unrestricted model; a step
        ends at its first separator after non-blank text. With `allowed` (one list a prefix, None for any step) a
        prefix's steps are drawn from the model kept to its list (fewer than `n` different ones where it is
        shorter)."""

        def generate(prompts: list[list[int]], draws: int, row_seeds: list[int], lists: list[list[str] | None]):
            per_call = max(1, self.batch_size // draws)
            out: list[list[Step]] = []
            write = self._distinct if distinct and draws > 1 else self._generate
            for i in range(0, len(prompts), per_call):
                chunk = slice(i, i + per_call)
                out += write(prompts[chunk], draws, temperature, row_seeds[chunk], lists[chunk])
            return out

        seeds = prefix_seeds(prefixes, seeds, self.stream) if temperature > 0 else None
        return propose_batch(prefixes, n, temperature, self.prepare, generate, seeds, allowed)

    def overflow(self, length: int) -> str:
        """Why a prompt of `length` tokens cannot be continued within the model's context, or "" when it can."""
        if length + self.max_step_tokens <= self.context:
            return ""
        return f"prompt of {length} tokens + a {self.max_step_tokens}-token step exceeds the context of {self.context}"

    def _generate(
        self, prompts: list[list[int]], n: int, temperature: float, seeds: list[int], lists: list[list[str] | None]
    ) -> list[list[Step]]:
        """`n` steps per prompt: greedy at temperature 0, else sampled from each prompt's seed; each kept to its
        prompt's list of allowed steps, where it has one."""
        rows = [p for p in prompts for _ in range(n)]  # every sample a row of its own, as num_return_sequences does
        inputs = self.batch(rows)
        width = inputs["input_ids"].shape[1]
        sampling = LogitsProcessorList()
        keep = self.keeper(lists, n, width)
        if keep is not None:
            sampling.append(keep)
        if temperature > 0:
            uniform = seeded_uniforms(seeds, n, self.max_step_tokens, self.model.device)
            sampling.append(SeededSampling(uniform, width, temperature))
        config = GenerationConfig(
            max_new_tokens=self.max_step_tokens,
            do_sample=False,  # sampling is SeededSampling's: greedy takes the one token it leaves
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self.eos_ids),
            return_dict_in_generate=True,
            output_logits=True,
        )
        stop = StoppingCriteriaList([StepEnd(self.tokenizer, width, self.separator)])
        out = self.model.generate(**inputs, generation_config=config, stopping_criteria=stop, logits_processor=sampling)
        new = out.sequences[:, width:]
        logp = torch.stack(out.logits, dim=1).float().log_softmax(-1).gather(2, new[..., None]).squeeze(2)
        steps = [self._step(ids, lp) for ids, lp in zip(new.tolist(), logp.tolist(), strict=True)]
        return [steps[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _distinct(
        self, prompts: list[list[int]], n: int, temperature: float, seeds: list[int], lists: list[list[str] | None]
    ) -> list[list[Step]]:
        """`n` different steps per prompt, sampled without replacement by stochastic beam search (Kool et al.,
        2019), as the tiny policy's `generate_distinct`: each prompt keeps a beam of `n` token sequences ranked by
        Gumbel-perturbed tempered log-probabilities, each child's perturbation conditioned on its parent's, so the
        beam at the end is a sample of `n` distinct sequences, the first distributed as one ordinary sample. A
        prompt's Gumbels come from its own seed, a token's at a time, so its steps do not depend on the batch.
        (Two sequences that write the same text, as subword tokens can, are one step to a search.)"""
        dev = self.model.device
        inputs = self.batch(prompts)  # the prompts' shared tokens already in their cache, where they share some
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        cache = inputs.get("cache") or DynamicCache(config=self.model.config)
        done, position = cache.get_seq_length(), (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(ids[:, done:], attention_mask=mask, position_ids=position[:, done:], cache=cache)
        cache, size = out.cache, out.logits.shape[-1]
        cache.batch_repeat_interleave(n)
        logits = out.logits[:, -1].float().repeat_interleave(n, 0)
        mask, position = mask.repeat_interleave(n, 0), position[:, -1].repeat_interleave(n)
        streams = [torch.Generator().manual_seed(seed) for seed in seeds]
        beams, keep = len(prompts) * n, self.keeper(lists, n, 0)
        perturbed = torch.full((len(prompts), n), -torch.inf, device=dev)
        perturbed[:, 0] = 0.0  # one empty sequence a prompt to start from
        tempered = torch.zeros(beams, device=dev)
        running = torch.ones(beams, dtype=torch.bool, device=dev)
        sequences: list[list[int]] = [[] for _ in range(beams)]
        logprobs: list[list[float]] = [[] for _ in range(beams)]
        texts = [""] * beams
        for _ in range(self.max_step_tokens):
            logp = torch.log_softmax(logits, dim=-1)
            logq = torch.log_softmax((keep.mask(texts, logits) if keep is not None else logits) / temperature, dim=-1)
            noise = gumbels(torch.cat([torch.rand(n, size, generator=g) for g in streams]).to(dev))
            perturbed, tempered, parent, token, extends = beam_step(perturbed, tempered, logq, running, noise)
            moves = zip(parent.tolist(), token.tolist(), extends.tolist(), logp[parent, token].tolist(), strict=True)
            sequences, logprobs = map(
                list, zip(*[(sequences[b] + [t] * e, logprobs[b] + [lp] * e) for b, t, e, lp in moves], strict=True)
            )
            texts = written(self.tokenizer, sequences)
            over = [
                (bool(seq) and seq[-1] in self.eos_ids) or step_ended(text, self.separator)
                for seq, text in zip(sequences, texts, strict=True)
            ]
            running = running[parent] & extends & ~torch.tensor(over, device=dev) & (perturbed.view(-1) > -torch.inf)
            if not running.any():
                break
            cache.reorder_cache(parent)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            position = position + 1
            step = self.model(token[:, None], attention_mask=mask, position_ids=position[:, None], cache=cache)
            logits, cache = step.logits[:, -1].float(), step.cache
        order = perturbed.argsort(dim=1, descending=True)  # the beam's sample order: its first an ordinary sample
        reached = (perturbed > -torch.inf).tolist()  # a beam no sequence reached (fewer allowed steps than n): none
        return [
            [self._step(sequences[p * n + b], logprobs[p * n + b]) for b in order[p].tolist() if reached[p][b]]
            for p in range(len(prompts))
        ]

    def keeper(self, lists: list[list[str] | None], n: int, start: int) -> KeepToSteps | None:
        """The mask that keeps each prompt's `n` rows (generated from column `start`) to its allowed steps, each
        then the separator; None when no prompt has a list."""
        if not any(lists):
            return None
        ended = [[step + self.separator for step in steps] if steps else None for steps in lists]
        return KeepToSteps(self.tokenizer, self.vocabulary(), start, [steps for steps in ended for _ in range(n)])

    def vocabulary(self) -> StepTexts:
        """Every token's text as it reads after the separator (so a leading space is kept, as SentencePiece drops
        it at the start of a text); special tokens and those past the tokenizer's vocabulary are never allowed."""
        if self.step_texts is None:
            (anchor,) = self.tokenizer(self.separator, add_special_tokens=False)["input_ids"][-1:]
            plain = dict(skip_special_tokens=False, clean_up_tokenization_spaces=False)
            before = len(self.tokenizer.decode([anchor], **plain))
            special = set(self.tokenizer.all_special_ids)
            ids = range(len(self.tokenizer))
            texts = self.tokenizer.batch_decode([[anchor, i] for i in ids], **plain)
            vocab = [text[before:] if i not in special else "" for i, text in zip(ids, texts, strict=True)]
            size = self.model.get_output_embeddings().weight.shape[0]
            self.step_texts = StepTexts(vocab[:size] + [""] * (size - len(vocab)))  # as many as the logits
        return self.step_texts

    def batch(self, rows: list[list[int]]) -> dict:
        """`generate`'s inputs for `rows`: left-padded, or, when they share a prompt, the shared tokens, each row's
        left-padded tail, and the shared tokens' KV cache (computed once, kept for the next batches)."""
        shared = self.shared_prompt(rows)
        pad, device = self.tokenizer.pad_token_id, self.model.device
        if not shared:
            return self.tokenizer.pad({"input_ids": rows}, return_tensors="pt").to(device)
        tail = max(len(r) for r in rows) - shared
        ids = [r[:shared] + [pad] * (tail - len(r) + shared) + r[shared:] for r in rows]
        mask = [[1] * shared + [0] * (tail - len(r) + shared) + [1] * (len(r) - shared) for r in rows]
        cache = copy.deepcopy(self.shared[1])  # type: ignore[index]  (generate extends the copy, not the kept one)
        cache.batch_repeat_interleave(len(rows))
        return {
            "input_ids": torch.tensor(ids, device=device),
            "attention_mask": torch.tensor(mask, device=device),
            "cache": cache,
        }

    def shared_prompt(self, rows: list[list[int]]) -> int:
        """How many leading tokens the rows share with the kept cache (cut back to them), or, when that is under
        `MIN_SHARED`, all the rows share (their cache made and kept); 0 when under `MIN_SHARED` or sharing is off.
        Every row keeps at least one token of its own."""
        if not self.share_prefix:
            return 0
        first, most = rows[0], min(len(r) for r in rows) - 1
        common = 0
        while common < most and all(r[common] == first[common] for r in rows):
            common += 1
        kept, cache = self.shared or ((), None)
        reused = 0
        while reused < min(common, len(kept)) and kept[reused] == first[reused]:
            reused += 1
        if reused >= MIN_SHARED and cache is not None:
            if reused < len(kept):  # e.g. the worked examples of the last batch, without its own question
                cache.crop(reused - len(kept))  # a negative count: the tokens to drop from the end
                self.shared = (kept[:reused], cache)
            return reused
        if common < MIN_SHARED:
            return 0
        prompt = torch.tensor([first[:common]], device=self.model.device)
        cache = self.model(prompt, cache=DynamicCache(config=self.model.config), use_cache=True).cache
        self.shared = (tuple(first[:common]), cache)
        return common

    def _step(self, ids: list[int], logps: list[float]) -> Step:
        """Cut one generated row at its step's end: the separator after non-blank text, or end-of-sequence."""
        text, logprob, done = "", 0.0, False
        for count, (token, lp) in enumerate(zip(ids, logps, strict=True), 1):
            if token in self.eos_ids:
                return Step(text.strip(), logprob + lp, done=True, tokens=count)
            text = self.tokenizer.decode(ids[:count])  # whole, so multi-byte characters decode right
            logprob += lp
            body = text.lstrip(self.separator)
            if self.separator in body:
                return Step(body.split(self.separator, 1)[0].strip(), logprob, done, tokens=count)
        return Step(text.strip(), logprob, done, tokens=len(ids))
