"""The tiny policy: tokenizer, checkpoints, the lean decoder, batched step proposals."""

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from qstar.errors import BackendError
from qstar.policy import load_policy
from qstar.policy.decoding import LlamaDecoder, row_groups
from qstar.policy.prefix_cache import PrefixCache, prefix_hashes
from qstar.policy.tiny import TinyPolicy, new_tiny_model
from qstar.policy.tokenizer import CHARS, char_tokenizer

TOKENIZER = char_tokenizer()
PREFIXES = [
    "Input: 4 9 10 13 Target: 24\n",
    "Input: 1 2 3 Target: 6\n3 - 2 = 1 (left: 1 1)\n",
    "Input: 97 5 Target: 10\n",
]


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from(CHARS), max_size=80))
def test_tokenizer_round_trip_is_one_token_per_character(text):
    ids = TOKENIZER(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert TOKENIZER.decode(ids) == text


def test_save_and_load_give_identical_logits(tmp_path, random_model):
    model, tokenizer = random_model
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    again, tok2 = LlamaForCausalLM.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)
    ids = torch.tensor([tokenizer("Input: 4 9 10 13 Target: 24\n")["input_ids"]])
    assert tok2("Input: 4 9")["input_ids"] == tokenizer("Input: 4 9")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)


def test_lean_decoder_matches_the_hf_forward(random_model):
    """Batched, left-padded prefill through the lean decoder gives the HF model's last-position logits."""
    model, tokenizer = random_model
    policy = TinyPolicy(model, tokenizer)
    encoded = [policy.prepare(p)[0] for p in PREFIXES]
    width = max(map(len, encoded))
    ids = torch.zeros(len(encoded), width, dtype=torch.long)
    valid = torch.zeros(len(encoded), width, dtype=torch.bool)
    for i, seq in enumerate(encoded):
        ids[i, width - len(seq) :], valid[i, width - len(seq) :] = torch.tensor(seq), True
    mask = (torch.ones(width, width, dtype=torch.bool).tril() & (valid[:, None] | torch.eye(width, dtype=torch.bool)))[
        :, None
    ]
    logits = policy.decoder.forward(
        ids, (valid.cumsum(1) - 1).clamp(min=0), policy.decoder.new_cache(3, width), 0, mask
    )
    with torch.no_grad():
        for i, seq in enumerate(encoded):
            torch.testing.assert_close(logits[i], model(torch.tensor([seq])).logits[0, -1], atol=1e-5, rtol=1e-5)


def test_row_groups_split_mostly_cached_rows_from_the_rest():
    """Rows that must compute from slot 8 or 9 of 10 run apart from those computing from 0 (2 x 2 + 2 x 10 tokens
    instead of 4 x 10); rows whose first slots are close run as one group."""
    assert row_groups([9, 0, 8, 0], width=10) == [([0, 2], 8), ([1, 3], 0)]
    assert row_groups([3, 2, 4, 3], width=10) == [([0, 1, 2, 3], 2)]
    assert row_groups([5], width=10) == [([0], 5)]


@pytest.mark.parametrize("head_dim", [32, 128])  # 128: wider than the batch, so a row group's cache copy spans
def test_prefill_of_cached_and_uncached_rows_computes_the_new_tokens_and_gives_hf_logits(random_model, head_dim):
    """A batch mixing rows whose prefix is cached (all but their last two tokens) with one that is not: the cached
    rows compute two tokens each, the other its whole prompt, and every row's logits equal the HF model's."""
    torch.manual_seed(0)
    model, tokenizer = random_model if head_dim == 32 else new_tiny_model(hidden=128, layers=2, heads=1, mlp=128)
    policy = TinyPolicy(model, tokenizer)
    cache, pad = PrefixCache(64 << 20), tokenizer.pad_token_id
    cached = [tuple(policy.prepare(p + "5 + 5 = 10 (left: 10)\n")[0]) for p in PREFIXES]
    before = policy.decoder.prefill([seq[:-2] for seq in cached], cache, pad, max(map(len, cached)))
    for row, seq in enumerate(cached):
        span = slice(before.lefts[row], before.lefts[row] + len(seq) - 2)
        keys, values = before.cache[0][:, row, :, span].clone(), before.cache[1][:, row, :, span].clone()
        cache.add(seq[:-2], before.hashes[row][-1], keys, values)
    fresh = tuple(policy.prepare(PREFIXES[0] + "4 * 9 = 36 (left: 10 13 36)\n")[0])
    run = policy.decoder.prefill([*cached, fresh], cache, pad, 80)
    assert run.computed == 2 * len(cached) + len(fresh)
    with torch.no_grad():
        for row, seq in enumerate([*cached, fresh]):
            torch.testing.assert_close(run.logits[row], model(torch.tensor([seq])).logits[0, -1], atol=1e-5, rtol=1e-5)


def test_lean_decoder_with_grouped_query_heads_matches_the_hf_forward():
    """Eight query heads sharing two key/value heads (as SmolLM2's 9 share 3): prefill and a decode step over the
    whole cache, its unwritten slots masked, give the HF model's logits."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=8,
        num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    decoder = LlamaDecoder(model)
    sequences = [tuple(torch.randint(1, 50, (n,)).tolist()) for n in (5, 9, 12)]
    run = decoder.prefill(sequences, PrefixCache(0), 0, 20)
    tokens = torch.tensor([[7], [8], [9]])
    mask = torch.cat([run.valid, torch.ones(3, 1, dtype=torch.bool), torch.zeros(3, 7, dtype=torch.bool)], dim=1)
    after = decoder.forward(tokens, run.positions[:, -1:] + 1, run.cache, 12, mask[:, None, None])
    with torch.no_grad():
        for row, seq in enumerate(sequences):
            torch.testing.assert_close(run.logits[row], model(torch.tensor([seq])).logits[0, -1], atol=1e-5, rtol=1e-5)
            longer = torch.tensor([[*seq, 7 + row]])
            torch.testing.assert_close(after[row], model(longer).logits[0, -1], atol=1e-5, rtol=1e-5)


def test_greedy_proposals_match_hf_generate(random_model):
    """Our KV-cached loop and transformers' own generate produce the same greedy tokens."""
    model, tokenizer = random_model
    policy = TinyPolicy(model, tokenizer, max_step_tokens=12)
    for prefix in PREFIXES:
        (step,) = policy.propose([prefix])[0]
        ids = torch.tensor([policy.prepare(prefix)[0]])
        out = model.generate(
            ids,
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=[policy.separator_id, tokenizer.eos_token_id],
            pad_token_id=0,
        )
        generated = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        assert generated.split("\n")[0] == step.text
        assert step.tokens == out.shape[1] - ids.shape[1]


def test_batching_does_not_change_greedy_steps(shipped_policy):
    alone = [shipped_policy.propose([p])[0][0] for p in PREFIXES]
    together = [s[0] for s in shipped_policy.propose(PREFIXES)]
    assert [s.text for s in alone] == [s.text for s in together]
    for a, b in zip(alone, together, strict=True):
        assert abs(a.logprob - b.logprob) < 1e-4


def test_generation_stops_at_the_separator(shipped_policy):
    """Every proposal is one line: the separator ends it and is counted but not returned."""
    out = shipped_policy.propose(PREFIXES, n=8, temperature=1.0)
    assert [len(r) for r in out] == [8, 8, 8]
    for steps in out:
        for step in steps:
            assert "\n" not in step.text
            assert step.tokens == len(step.text) + 1  # the separator
            assert step.logprob < 0


def test_sampling_is_seeded(shipped_policy):
    shipped_policy.seed(3)
    a = [s.text for s in shipped_policy.propose(PREFIXES, n=4, temperature=1.0)[0]]
    shipped_policy.seed(3)
    b = [s.text for s in shipped_policy.propose(PREFIXES, n=4, temperature=1.0)[0]]
    assert a == b


def test_a_seeded_prefix_samples_the_same_steps_in_any_batch(shipped_policy, random_model):
    """With `seeds`, a prefix's samples depend on its seed alone: the same steps alone or among other prefixes, on
    the tiny and the HF backends; another seed draws other steps."""
    from qstar.policy.hf import HFPolicy

    model, tokenizer = random_model
    for policy in (shipped_policy, HFPolicy(model, tokenizer, max_step_tokens=12)):
        policy.seed(0)
        batch = policy.propose(PREFIXES, n=4, temperature=1.0, seeds=[11, 12, 13])
        policy.seed(1)
        alone = [
            policy.propose([p], n=4, temperature=1.0, seeds=[s])[0] for p, s in zip(PREFIXES, [11, 12, 13], strict=True)
        ]
        assert [[s.text for s in row] for row in alone] == [[s.text for s in row] for row in batch]
        other = policy.propose(PREFIXES, n=4, temperature=1.0, seeds=[21, 22, 23])
        assert [[s.text for s in row] for row in other] != [[s.text for s in row] for row in batch]
        with pytest.raises(ValueError, match="one per prefix"):
            policy.propose(PREFIXES, n=1, temperature=1.0, seeds=[1])


@pytest.mark.parametrize(("backend", "count", "most"), [("tiny", 4000, 0.035), ("hf", 2000, 0.05)])
def test_distinct_steps_are_different_seeded_and_the_first_is_an_ordinary_sample(shipped_policy, backend, count, most):
    """Without replacement (stochastic beam search) a prefix's n steps are n different ones, the same for its
    seed in any batch, each with the log-prob an ordinary sample of it has, and the first of them is distributed as
    an ordinary sample: over `count` seeds the first of two distinct steps and an ordinary sample have the same step
    frequencies, within sampling noise. The tiny backend and the shipped weights on the Hugging Face one."""
    from qstar.policy.hf import HFPolicy

    policy = shipped_policy
    if backend == "hf":
        policy = HFPolicy(policy.model, policy.tokenizer, max_step_tokens=40, batch_size=1024, chat=False)
    prefix = PREFIXES[0]
    (ordinary,) = policy.propose([prefix], n=32, temperature=1.0, seeds=[5])
    (distinct,) = policy.propose([prefix], n=32, temperature=1.0, seeds=[5], distinct=True)
    assert len({s.text for s in distinct}) == 32 > len({s.text for s in ordinary})
    batch = policy.propose([PREFIXES[1], prefix], n=32, temperature=1.0, seeds=[9, 5], distinct=True)
    assert [s.text for s in batch[1]] == [s.text for s in distinct]
    assert all(s.tokens - len(s.text) in (0, 1) for s in distinct)  # one token a character, and the separator
    sampled = {s.text: s.logprob for s in ordinary}
    common = [s for s in distinct if s.text in sampled]
    assert common and all(s.logprob == pytest.approx(sampled[s.text], abs=1e-4) for s in common)
    rows = policy.propose([prefix] * count, n=2, temperature=1.0, seeds=list(range(count)), distinct=True)
    firsts = Counter(row[0].text for row in rows)
    rows = policy.propose([prefix] * count, n=1, temperature=1.0, seeds=list(range(count, 2 * count)))
    samples = Counter(row[0].text for row in rows)
    gap = sum(abs(firsts[t] - samples[t]) for t in firsts | samples) / 2 / count
    assert gap < most, gap  # total variation; two ordinary samples differ by ~0.015, the second distinct by ~0.05
    if backend == "tiny":
        with pytest.raises(ValueError, match="distinct steps exceed"):
            policy.propose([prefix], n=200, temperature=1.0, seeds=[1], distinct=True)


def test_truncated_gumbels_keep_the_parents_value_as_their_maximum_and_the_order_of_the_perturbed():
    from qstar.policy.sampling import gumbels, truncated_gumbels

    generator = torch.Generator().manual_seed(0)
    children = torch.log_softmax(torch.randn(64, 10, generator=generator), dim=-1) - 3.0
    children[:, 7] = -torch.inf  # a token of probability 0 is never drawn
    noise = gumbels(torch.rand(64, 10, generator=generator))
    parent = torch.randn(64, generator=generator)
    values = truncated_gumbels(parent, children, noise)
    assert torch.allclose(values.max(dim=1).values, parent, atol=1e-5)
    assert torch.isneginf(values[:, 7]).all()
    finite = [i for i in range(10) if i != 7]
    assert torch.equal(values[:, finite].argsort(dim=1), (children + noise)[:, finite].argsort(dim=1))


def test_the_backend_contract_greedy_repeats_and_failing_items(shipped_policy):
    """As on every backend: a greedy step is generated once and repeated at no cost; each occurrence of a prefix
    samples on its own above temperature 0; a prompt the context cannot hold fails alone (BackendError)."""
    (steps,) = shipped_policy.propose(PREFIXES[:1], n=4)
    assert len({s.text for s in steps}) == 1 and steps[0].tokens > 0 and [s.tokens for s in steps[1:]] == [0] * 3
    shipped_policy.seed(0)
    same = shipped_policy.propose(PREFIXES[:1] * 8, n=1, temperature=1.0)
    assert len({row[0].text for row in same}) > 1  # eight occurrences, eight draws
    too_long = PREFIXES[0] + "1 + 1 = 2 (left: 2)\n" * 20
    with pytest.raises(BackendError) as caught:
        shipped_policy.propose([PREFIXES[0], too_long, PREFIXES[2]])
    assert list(caught.value.failed) == [1] and "does not fit the model's context" in caught.value.failed[1]
    results = caught.value.results
    assert results[1] is None and [r[0].text for r in (results[0], results[2])] == [
        row[0].text for row in shipped_policy.propose([PREFIXES[0], PREFIXES[2]])
    ]


def test_the_hf_backend_computes_a_shared_prompt_once_with_the_same_steps(random_model):
    """The HF backend keeps the KV cache of the prompt a batch shares and gives the steps it gives without it."""
    from qstar.policy.hf import MIN_SHARED, HFPolicy

    model, tokenizer = random_model
    header = "Solve: reach the target with + - * /.\n"
    prefixes = [header + p for p in PREFIXES]
    runs = {}
    for share in (False, True):
        policy = HFPolicy(model, tokenizer, max_step_tokens=12, share_prefix=share)
        singles = [policy.propose([p])[0] for p in prefixes]  # one row a call: the kept cache is cut to the header
        greedy = policy.propose(prefixes)
        policy.seed(5)
        sampled = policy.propose(prefixes[:2], n=3, temperature=1.0)
        runs[share] = [s for row in singles + greedy + sampled for s in row]
        kept = policy.shared
    common = len(tokenizer(header + "Input: ")["input_ids"])  # BOS, the header, and what the games share after it
    assert len(kept[0]) == common and common >= MIN_SHARED
    assert [s.text for s in runs[True]] == [s.text for s in runs[False]]
    assert [s.tokens for s in runs[True]] == [s.tokens for s in runs[False]]
    assert all(abs(a.logprob - b.logprob) < 1e-4 for a, b in zip(runs[True], runs[False], strict=True))


def test_prefix_cache_gives_the_same_steps_and_computes_only_the_new_tokens(monkeypatch):
    """A search's next prompt is its last prompt plus the step just proposed: with the prefix cache its prefill is
    the separator alone, and greedy and seeded sampled steps equal those computed from scratch."""
    runs, prefill = {}, {}
    for megabytes in (0, 512):
        policy = load_policy("tiny", prefix_cache_mb=megabytes)
        widths = []
        forward = policy.decoder.forward
        monkeypatch.setattr(
            policy.decoder, "forward", lambda ids, *a, f=forward, w=widths: w.append(ids.shape[1]) or f(ids, *a)
        )
        prompts, steps = list(PREFIXES), []
        for _ in range(3):  # three greedy steps along each game
            calls, longest = len(widths), max(map(len, prompts)) + 1  # + BOS
            row = [r[0] for r in policy.propose(prompts)]
            prefill[megabytes] = (widths[calls], longest)
            steps += row
            prompts = [p + s.text + "\n" for p, s in zip(prompts, row, strict=True)]
        policy.seed(7)
        first = policy.propose(PREFIXES[:2], n=3, temperature=1.0)
        steps += [s for r in first for s in r]
        extended = [p + s.text + "\n" for p, r in zip(PREFIXES[:2], first, strict=True) for s in r]
        steps += [s for r in policy.propose(extended, n=2, temperature=1.0) for s in r]
        runs[megabytes] = steps
    assert prefill[0][0] == prefill[0][1] and prefill[512][0] == 1  # with the cache: the separator alone
    assert [s.text for s in runs[512]] == [s.text for s in runs[0]]
    assert [s.tokens for s in runs[512]] == [s.tokens for s in runs[0]]
    assert all(abs(a.logprob - b.logprob) < 1e-4 for a, b in zip(runs[512], runs[0], strict=True))


def test_prefix_cache_finds_the_longest_prefix_and_evicts_the_least_recently_used():
    def entry(ids):
        kv = torch.full((1, 1, len(ids), 2), float(len(ids)))
        return tuple(ids), prefix_hashes(ids)[-1], kv, kv.clone()

    cache = PrefixCache(max_bytes=2 * 4 * 2 * 10)  # keys and values of ten tokens in all
    cache.add(*entry([1, 2, 3]))
    cache.add(*entry([1, 2, 3, 4, 5]))
    asked = [1, 2, 3, 4, 5, 6]
    length, keys, _ = cache.longest(asked, prefix_hashes(asked), limit=5)
    assert length == 5 and keys.shape[2] == 5
    length, keys, _ = cache.longest([1, 2, 3, 4, 5], prefix_hashes([1, 2, 3, 4, 5]), limit=4)  # cut to the limit
    assert length == 4 and keys.shape[2] == 4 and keys[0, 0, 0, 0] == 5
    cache.longest([1, 2, 3], prefix_hashes([1, 2, 3]), limit=2)  # [1, 2, 3] used last
    cache.add(*entry([7, 8, 9]))  # over ten tokens: the least recently used, [1..5], goes
    assert len(cache) == 2 and cache.longest(asked, prefix_hashes(asked), limit=5)[0] == 3
    ids, _, kv, _ = entry([4, 4])
    cache.add(ids, prefix_hashes([9, 9])[-1], kv, kv)  # a key whose tokens differ is never served
    assert cache.longest([9, 9, 1], prefix_hashes([9, 9, 1]), limit=2) == (0, None, None)
