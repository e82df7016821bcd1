"""The OpenAI-compatible backend against real servers: llama.cpp serving SmolLM2 (a real model, which ignores
`n`), and a local HTTP server that fails on demand (retries, time-outs, broken replies, a server gone)."""

from __future__ import annotations

import importlib.util
import re

import pytest

from qstar.errors import BackendError, QstarError
from qstar.pipelines.evaluate import evaluate
from qstar.policy import load_policy
from qstar.policy.openai import OpenAIPolicy, constrain
from qstar.scorers import VerifierScorer
from qstar.search import get_search, run_search
from qstar.tasks import get_task
from qstar.types import Prefix, Problem
from tests.servers import Faults, FaultServer, LlamaServer

QUESTION = "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\nAnswer:\n"


@pytest.fixture
def gsm8k():
    return get_task("gsm8k")


def fast(url: str, **kwargs) -> OpenAIPolicy:
    """A policy for the fault server: tiny back-off and time-out so faults cost milliseconds."""
    return OpenAIPolicy(url, **{"model": "fake-model", "retries": 2, "backoff": 0.01, "timeout": 2.0, **kwargs})


# ---- a real llama.cpp server ---------------------------------------------------------------------------------

needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python[server] is not installed"
)


@pytest.fixture(scope="module")
def llama(smollm2_gguf):
    with LlamaServer(smollm2_gguf, threads=1) as server:  # one thread: the machine is shared
        yield server


@needs_llama
@pytest.mark.slow
def test_llama_gives_n_steps_with_logprobs(llama):
    policy = load_policy(llama.url + "/v1", seed=0)
    assert isinstance(policy, OpenAIPolicy) and not policy.chat
    policy.max_step_tokens = 16
    prefixes = [QUESTION, QUESTION + "Step 1: He starts with 3 apples.\n"]
    steps = policy.propose(prefixes, n=3, temperature=0.8)
    assert [len(s) for s in steps] == [3, 3]  # llama.cpp ignores n: the missing samples were asked for apart
    assert policy._ignores_n
    for step in (s for row in steps for s in row):
        assert "\n" not in step.text
        assert isinstance(step.logprob, float) and step.logprob < 0
        assert 0 < step.tokens <= policy.max_step_tokens


@needs_llama
@pytest.mark.slow
def test_llama_greedy_and_seeded_sampling_repeat(llama):
    policy = OpenAIPolicy(llama.url, max_step_tokens=16)
    first, second = (policy.propose([QUESTION, QUESTION], n=2) for _ in range(2))
    assert first == second
    assert first[0][0].text == first[0][1].text and first[0][1].tokens == 0  # greedy repeats cost nothing
    policy.seed(7)
    sampled = policy.propose([QUESTION], n=2, temperature=1.0)
    policy.seed(7)
    assert policy.propose([QUESTION], n=2, temperature=1.0) == sampled


@needs_llama
@pytest.mark.slow
def test_llama_chat_continues_the_steps(llama):
    policy = OpenAIPolicy(llama.url + "/v1/", chat=True, max_step_tokens=16)
    prefixes = [Prefix(QUESTION), Prefix(QUESTION, "Step 1: He starts with 3 apples.\n")]
    steps = policy.propose(prefixes, n=2, temperature=0.7)
    assert [len(s) for s in steps] == [2, 2]
    assert all(s.logprob < 0 and s.tokens > 0 and "\n" not in s.text for row in steps for s in row)


@needs_llama
@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "params", "budget"),
    [("best-of-n", {"n": 2, "temperature": 0.7}, 64), ("beam", {"width": 1, "k": 2, "max_steps": 2}, 64)],
)
def test_llama_searches_gsm8k_within_budget(llama, gsm8k, name, params, budget):
    task = gsm8k
    task.shots = 0  # a short prompt: the model is tiny and the machine small
    problems = task.problems("test", limit=5)
    policy = OpenAIPolicy(llama.url, max_step_tokens=16)
    policy.seed(0)
    trees = run_search(get_search(name, **params), problems, task, policy, VerifierScorer(task), budget=budget)
    assert [t.problem.id for t in trees] == [p.id for p in problems]
    for tree in trees:
        assert tree.error is None
        assert 0 < tree.tokens <= budget and tree.calls > 0
        assert tree.answer is not None
        terminal = [n for n in tree.nodes() if n.terminal]
        assert all(n.reward in (0.0, 1.0) for n in terminal)  # the verifier judged every finished solution


# ---- a misbehaving server ------------------------------------------------------------------------------------


@needs_llama
@pytest.mark.slow
def test_llama_kept_to_the_legal_steps_by_a_grammar_writes_only_them(llama):
    """With `legal_steps`, llama.cpp's grammar keeps SmolLM2 (which, free, writes prose on countdown) to the legal
    steps, greedy and sampled, each ended at the separator as a free step is; a search takes no illegal step."""
    task = get_task("countdown")
    problems = task.problems("val_target", limit=2)
    policy = OpenAIPolicy(llama.url, max_step_tokens=40, legal_steps=True, constraint="llama.cpp")
    prefixes = [task.render(p, []) for p in problems]
    allowed = [task.legal_steps(p, []) for p in problems]
    for temperature in (0.0, 1.0):
        proposed = policy.propose(prefixes, n=2, temperature=temperature, allowed=allowed)
        for steps, legal in zip(proposed, allowed, strict=True):
            assert all(s.text in legal and not s.done and s.logprob < 0 for s in steps) and steps[0].tokens > 0
    trees = run_search(get_search("greedy"), problems, task, policy, VerifierScorer(task), budget=300)
    assert all(node.legal for tree in trees for node in tree.nodes() if node.step is not None)


def test_server_errors_are_retried_until_it_recovers():
    with FaultServer(Faults(errors_first=2)) as server:
        steps = fast(server.url).propose([QUESTION])
    assert steps[0][0].text == "The answer is 42." and steps[0][0].logprob == pytest.approx(-2.0)
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_prefix_that_keeps_failing_is_named_and_the_others_kept(status):
    with FaultServer(Faults(fail_marker="BAD", status=status)) as server, pytest.raises(BackendError) as caught:
        fast(server.url).propose(["first\n", "BAD second\n", "third\n"], n=2, temperature=1.0)
    error = caught.value
    assert list(error.failed) == [1]
    assert f"HTTP {status}" in error.failed[1] and "injected failure number" in error.failed[1]
    assert "gave up after 3 attempts" in error.failed[1] and "\n" not in error.failed[1]
    assert error.results[1] is None
    assert [len(r) for r in (error.results[0], error.results[2])] == [2, 2]
    assert sum("BAD" in r["prompt"] for r in server.requests) == 3  # one request and two retries


def test_client_errors_fail_at_once_with_the_servers_message():
    with FaultServer(Faults(fail_marker="BAD", status=400)) as server, pytest.raises(BackendError) as caught:
        fast(server.url).propose(["BAD"])
    assert "HTTP 400" in caught.value.failed[0] and "injected failure" in caught.value.failed[0]
    assert len(server.requests) == 1


def test_a_slow_reply_times_out_and_is_retried():
    with FaultServer(Faults(slow_first=1, delay=1.0)) as server:
        assert fast(server.url, timeout=0.3).propose([QUESTION])[0][0].text == "The answer is 42."
    with FaultServer(Faults(slow_first=9, delay=1.0)) as server, pytest.raises(BackendError) as caught:
        fast(server.url, timeout=0.3, retries=1).propose([QUESTION])
    assert "no reply" in caught.value.failed[0] and "within 0.3s" in caught.value.failed[0]


def test_malformed_replies_are_retried_then_reported():
    with FaultServer(Faults(malformed_first=1)) as server:
        assert fast(server.url).propose([QUESTION])[0][0].text == "The answer is 42."
    with FaultServer(Faults(malformed_first=99)) as server, pytest.raises(BackendError) as caught:
        fast(server.url).propose([QUESTION])
    assert "malformed reply" in caught.value.failed[0]


def test_a_dead_server_is_reported():
    with FaultServer() as server:
        url = server.url
    for model in ("fake-model", None):  # None: the failure is in asking the server which model it serves
        with pytest.raises(BackendError) as caught:
            fast(url, model=model).propose(["a", "b"])
        assert set(caught.value.failed) == {0, 1} and "cannot reach" in caught.value.failed[0]


def test_missing_samples_blank_lines_and_what_is_sent():
    faults = Faults(replies=["\n", "Step one.\n"], reply="The answer is 42.")
    with FaultServer(faults) as server:
        policy = OpenAIPolicy(server.url + "/v1", api_key="sk-test", max_step_tokens=50, concurrency=1)
        policy.seed(3)
        steps = policy.propose([QUESTION], n=3, temperature=1.0)
        assert policy.model == "fake-model"  # the first model the server lists
        # a blank first line is not a step: the request is continued after it
        assert steps[0][0].text == "Step one." and not steps[0][0].done and steps[0][0].tokens == 4
        assert [s.text for s in steps[0][1:]] == ["The answer is 42."] * 2 and steps[0][1].done
        first, blank = server.requests[0], server.requests[1]
        assert first["n"] == 3 and first["logprobs"] == 1 and first["stop"] == ["\n"] and first["max_tokens"] == 50
        assert blank["prompt"] == QUESTION + "\n" and blank["max_tokens"] == 49
        assert len({r["seed"] for r in server.requests}) == 4
        assert server.headers[0]["Authorization"] == "Bearer sk-test"
        policy.propose([QUESTION], n=3, temperature=1.0)  # the server ignores n: now asked one at a time
        assert [r["n"] for r in server.requests[4:]] == [1, 1, 1]


def test_chat_requests_continue_the_assistants_steps():
    with FaultServer() as server:
        policy = fast(server.url, chat=True)
        steps = policy.propose([Prefix("Q?"), Prefix("Q?", "Step 1.\n")])
    assert [s[0].text for s in steps] == ["The answer is 42."] * 2 and steps[0][0].logprob < 0
    fresh, going = sorted(server.requests, key=lambda r: len(r["messages"]))  # sent concurrently: any order
    assert fresh["messages"] == [{"role": "user", "content": "Q?"}] and "continue_final_message" not in fresh
    assert going["messages"][-1] == {"role": "assistant", "content": "Step 1.\n"}
    assert going["continue_final_message"] and not going["add_generation_prompt"] and going["logprobs"] is True


def test_end_of_sequence_is_told_from_the_separator():
    policy = fast("http://127.0.0.1:9")
    reply = {"usage": {"completion_tokens": 4}}
    vllm_eos = {"text": "x", "finish_reason": "stop", "stop_reason": None}
    vllm_sep = {"text": "x", "finish_reason": "stop", "stop_reason": "\n"}
    sglang_eos = {"text": "x", "finish_reason": "stop", "matched_stop": 2}
    length = {"text": "x y", "finish_reason": "length"}
    assert policy.step(vllm_eos, "x", [], [], reply, 1)[0].done
    assert not policy.step(vllm_sep, "x", [], [], reply, 1)[0].done
    assert policy.step(sglang_eos, "x", [], [], reply, 2)[0].tokens == 2  # usage shared among the choices
    assert not policy.step(length, "x y", [], [], reply, 1)[0].done
    assert policy.step(vllm_eos, "a\nb", [], [], reply, 1)[0].text == "a"  # a server that did not cut


def test_evaluation_goes_on_when_some_problems_fail_for_good(gsm8k):
    task = gsm8k
    problems = [Problem(f"p{i}", f"What is 40 + 2?{' BAD' if i % 3 == 0 else ''}", "42") for i in range(7)]
    with FaultServer(Faults(fail_marker="BAD")) as server:
        result, runs = evaluate(task, problems, fast(server.url), get_search("greedy"), show_progress=False)
    failed = {t.problem.id for t in runs[0] if t.error}
    assert failed == {"p0", "p3", "p6"} and result.failed == 3
    assert all("HTTP 500" in t.error for t in runs[0] if t.error)
    assert result.solved == 4 and all(t.solved for t in runs[0] if not t.error)


def test_evaluation_finishes_when_the_server_goes_away(gsm8k):
    task = gsm8k
    problems = [Problem(f"p{i}", f"What is 40 + 2? ({i})", "42") for i in range(8)]
    with FaultServer(Faults(stop_after=3)) as server:
        policy = fast(server.url, concurrency=1)
        result, runs = evaluate(task, problems, policy, get_search("greedy"), batch_size=1, show_progress=False)
    assert result.n == 8 and 0 < result.failed < 8 and result.solved == 8 - result.failed
    assert all("cannot reach" in t.error for t in runs[0] if t.error)


def test_server_url_model_and_key_from_the_environment(monkeypatch):
    with FaultServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
        monkeypatch.setenv("OPENAI_MODEL", "served-model")
        policy = load_policy("openai")
        policy.propose([QUESTION])
        assert server.requests[-1]["model"] == "served-model"
        assert server.headers[-1]["Authorization"] == "Bearer sk-env"
        load_policy("openai", model="flag-model", api_key="sk-flag").propose([QUESTION])
        assert server.requests[-1]["model"] == "flag-model"
        assert server.headers[-1]["Authorization"] == "Bearer sk-flag"


def test_legal_steps_are_asked_in_the_servers_form_and_a_server_that_ignores_them_is_one_line():
    steps = ["1 + 2 = 3 (left: 3)", "2 * 1 = 2 (left: 2)"]
    regex = constrain(steps, "\n", "vllm")["structured_outputs"]["regex"]
    texts = [steps[0] + "\n", steps[1] + "\n", "1 + 2 = 3 (left: 4)\n", steps[0], "1 + 2 = 3 (left: 3)x\n"]
    assert [bool(re.fullmatch(regex, text)) for text in texts] == [True, True, False, False, False]
    assert constrain(steps, "\n", "vllm-guided") == {"guided_regex": regex}
    assert constrain(steps, "\n", "sglang") == {"regex": regex}
    grammar = constrain(['say "hi"'], "\n", "llama.cpp")["grammar"]
    assert grammar == 'root ::= ("say \\"hi\\"") "\\n"'
    with FaultServer(Faults(reply="1 + 2 = 3 (left: 3)\n")) as server:
        policy = fast(server.url, legal_steps=True)
        (kept,), (free,) = policy.propose([QUESTION, "Q?"], allowed=[steps, None])
        assert kept.text == steps[0] and free.text == steps[0]
        asked = {r["prompt"]: r for r in server.requests}
        assert asked[QUESTION]["structured_outputs"] == {"regex": regex} and "structured_outputs" not in asked["Q?"]
    with FaultServer() as server, pytest.raises(QstarError, match="does it read 'vllm' constraints"):
        fast(server.url, legal_steps=True).propose([QUESTION], allowed=[steps])  # it answers prose
    with pytest.raises(QstarError, match="constraint must be one of"):
        fast("http://127.0.0.1:9", constraint="outlines")
