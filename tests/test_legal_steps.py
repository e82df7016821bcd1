"""Proposals kept to the task's legal next steps: the token trie, the text mask of subword tokenizers, countdown's
list, the tiny and Hugging Face policies and a search."""

import pytest
import torch

from qstar.errors import QstarError
from qstar.policy import load_policy
from qstar.policy.hf import HFPolicy
from qstar.policy.legal import StepTexts, StepTrie
from qstar.policy.tiny import TinyPolicy
from qstar.scorers import get_scorer
from qstar.search import get_search, run_search
from qstar.tasks import get_task
from qstar.tasks.countdown.rules import legal_moves
from qstar.types import Problem


def test_the_trie_masks_each_row_to_its_prompts_steps_and_frees_it_after_an_end():
    # vocabulary 0-5, ends 5; prompt 0 allows [1 2] and [1 3], prompt 1 anything
    trie = StepTrie([[[1, 2], [1, 3]], None], ends=[5], vocab=6, device=torch.device("cpu"))
    nodes = trie.roots
    logits = torch.zeros(2, 6)
    masked = trie.mask(logits, nodes)
    assert torch.isinf(masked[0]).tolist() == [True, False, True, True, True, True]
    assert not torch.isinf(masked[1]).any()
    nodes = trie.advance(nodes, torch.tensor([1, 4]))
    assert torch.isinf(trie.mask(logits, nodes)[0]).tolist() == [True, True, False, False, True, True]
    nodes = trie.advance(nodes, torch.tensor([3, 0]))
    assert torch.isinf(trie.mask(logits, nodes)[0]).tolist() == [True] * 5 + [False]  # only the end
    nodes = trie.advance(nodes, torch.tensor([5, 0]))
    assert nodes.tolist() == [0, 0]  # ended: free


def test_step_texts_allow_every_token_that_continues_a_step_whole_or_in_part():
    # a BPE-like vocabulary: tokens of many lengths, one special ("") never allowed
    texts = StepTexts(["1", "13", "3", " -", " ", "-", " 9", "9", "=", " = 4", "\n", ")\n", "", "x"])
    steps = ["13 - 9 = 4\n", "1 + 3 = 4\n"]
    assert sorted(texts.next_tokens("", steps)) == [0, 1]  # "1", "13"
    assert sorted(texts.next_tokens("1", steps)) == [2, 4]  # "3" (toward the first), " " (the second)
    assert sorted(texts.next_tokens("13", steps)) == [3, 4]  # " -", " "
    assert sorted(texts.next_tokens("13 - 9", steps)) == [4, 9]  # " ", " = 4"
    assert texts.next_tokens("13 - 9 = 4", steps) == [10]
    assert texts.next_tokens("13 - 9 = 4\n", steps) is None  # the step is written: free
    assert texts.next_tokens("2", steps) is None  # nothing to keep to


@pytest.mark.parametrize("mode", ["greedy", "sampled", "distinct"])
def test_the_hf_policy_writes_only_the_allowed_steps(random_model, mode):
    """The Hugging Face backend, kept to a list by the row's text, writes steps of the list (without replacement,
    each step of a list shorter than `n` once); a prefix with no list decodes freely; the log-prob is the
    unrestricted model's, summed over the step's tokens."""
    model, tokenizer = random_model
    policy = HFPolicy(model, tokenizer, max_step_tokens=24, chat=False)
    allowed = [["1 + 2 = 3 (left: 3)", "2 - 1 = 1 (left: 1)", "2 * 1 = 2 (left: 2)"], None]
    prefixes = ["Input: 1 2 Target: 3\n", "Input: 5 7 Target: 2\n"]
    options = {"greedy": {}, "sampled": {"temperature": 1.0}, "distinct": {"temperature": 1.0, "distinct": True}}
    kept, free = policy.propose(prefixes, n=4, seeds=[1, 2], allowed=allowed, **options[mode])
    assert {s.text for s in kept} <= set(allowed[0])
    assert sorted(s.text for s in kept) == sorted(allowed[0]) if mode == "distinct" else len(kept) == 4
    generated = kept if mode != "greedy" else kept[:1]  # greedy's repeats cost nothing
    assert all(s.tokens == len(s.text) + 1 and s.logprob < 0 for s in generated)
    assert not {s.text for s in free} & set(allowed[0])
    prompt = policy.prepare(prefixes[0])[0]
    step = tokenizer(kept[0].text + "\n", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([prompt + step])).logits[0, len(prompt) - 1 : -1].log_softmax(-1)
    assert kept[0].logprob == pytest.approx(logits[range(len(step)), step].sum().item(), abs=1e-4)
    with pytest.raises(ValueError, match="one per prefix"):
        policy.propose(prefixes, allowed=allowed[:1])


@pytest.mark.slow  # a real 135M model on the CPU
def test_a_real_subword_model_kept_to_legal_steps_writes_only_legal_ones(smollm2_gguf):
    """SmolLM2-135M-Instruct (BPE, digits split) on countdown: free it writes prose; with `legal_steps` every step
    of a search is legal, greedy, sampled or without replacement."""
    task = get_task("countdown")
    problems = task.problems("val_target", limit=3)
    policy = load_policy(str(smollm2_gguf), legal_steps=True, max_step_tokens=40)
    for name in ("greedy", "best-of-n", "dfs-wide"):  # greedy, sampled, distinct
        trees = run_search(get_search(name), problems, task, policy, get_scorer("verifier", task), budget=400, seed=0)
        steps = [node for tree in trees for node in tree.nodes() if node.step is not None]
        assert steps and all(node.legal for node in steps)
    policy.legal_steps = False
    (free,) = policy.propose([task.render(problems[0], [])])[0:1]
    assert not task.check_step(problems[0], [], free[0].text).ok


def test_countdown_lists_its_legal_steps_each_passing_the_checker_and_none_once_played_out():
    task = get_task("countdown")
    problem = Problem("p", "4 4 10 13", meta={"numbers": [4, 4, 10, 13], "target": 24})
    steps = task.legal_steps(problem, [])
    assert len(steps) == len(set(steps)) < len(legal_moves([4, 4, 10, 13]))  # the two 4s give the same steps
    assert all(task.check_step(problem, [], s).ok for s in steps)
    assert "13 - 4 = 9 (left: 4 10 9)" in steps
    after = ["13 - 4 = 9 (left: 4 10 9)", "10 - 9 = 1 (left: 4 1)"]
    assert sorted(task.legal_steps(problem, after)) == sorted(
        ["4 + 1 = 5 (left: 5)", "4 - 1 = 3 (left: 3)", "4 * 1 = 4 (left: 4)", "4 / 1 = 4 (left: 4)"]
    )
    assert task.legal_steps(problem, [*after, "4 * 1 = 4 (left: 4)"]) is None
    assert task.legal_steps(problem, ["4 + 4 = 9 (left: 9 10 13)"]) is None  # after an illegal step


@pytest.mark.parametrize("mode", ["greedy", "sampled", "distinct"])
def test_the_tiny_policy_writes_only_the_allowed_steps(random_model, mode):
    """A random model writes anything; kept to a list it writes steps of the list, the steps their tokens and
    separator, and a prefix with no list decodes freely. Without replacement it writes every step of a list shorter
    than `n`, once each."""
    model, tokenizer = random_model
    policy = TinyPolicy(model, tokenizer, max_step_tokens=24)
    allowed = [["1 + 2 = 3 (left: 3)", "2 - 1 = 1 (left: 1)", "2 * 1 = 2 (left: 2)"], None]
    prefixes = ["Input: 1 2 Target: 3\n", "Input: 5 7 Target: 2\n"]
    options = {"greedy": {}, "sampled": {"temperature": 1.0}, "distinct": {"temperature": 1.0, "distinct": True}}
    n = 5 if mode != "greedy" else 1
    kept, free = policy.propose(prefixes, n=n, seeds=[1, 2], allowed=allowed, **options[mode])
    assert {s.text for s in kept} <= set(allowed[0])
    assert all(s.tokens == len(s.text) + 1 and s.logprob < 0 for s in kept)
    if mode == "distinct":
        assert sorted(s.text for s in kept) == sorted(allowed[0])
    else:
        assert len(kept) == n
    assert not {s.text for s in free} & set(allowed[0])
    with pytest.raises(ValueError, match="one per prefix"):
        policy.propose(prefixes, allowed=allowed[:1])


def test_a_search_with_legal_steps_takes_no_illegal_step_and_a_task_without_a_list_is_refused():
    """The shipped policy with `legal_steps`: `dfs-wide` on countdown problems proposes only legal steps (without
    it the same search writes illegal ones); gsm8k lists none, so asking for them is a one-line error."""
    task = get_task("countdown")
    problems = task.problems("val_target", limit=12)
    search = get_search("dfs-wide", threshold=0)

    def steps_of(policy):
        trees = run_search(search, problems, task, policy, get_scorer("verifier", task), budget=600, seed=0)
        return [node for tree in trees for node in tree.nodes() if node.step is not None]

    free, kept = steps_of(load_policy("tiny")), steps_of(load_policy("tiny", legal_steps=True))
    assert not all(node.legal for node in free) and kept and all(node.legal for node in kept)
    gsm8k = get_task("gsm8k")
    with pytest.raises(QstarError, match="gsm8k does not"):
        run_search(get_search("greedy"), gsm8k.problems("test", limit=1), gsm8k, load_policy("tiny", legal_steps=True))
