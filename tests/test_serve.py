"""qstar serve: the batching engine's pure logic, then a real server (`qstar serve` in a subprocess on 127.0.0.1)
called with the real `openai` package: answers, streaming, batching, errors, cancellation."""

import asyncio
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest

from qstar.pipelines.engine import Engine, Ticket
from qstar.scorers import get_scorer
from qstar.search import get_search, run_search
from qstar.search.runner import Batcher
from qstar.tasks import get_task
from tests.servers import Faults, FaultServer

KEY = "test-key"


def test_greedy_and_beam_commit_steps_the_answer_extends(shipped_policy):
    task = get_task("game24")
    problems = task.problems("test", 6)
    for name in ("greedy", "beam"):
        search = get_search(name, **({"width": 2} if name == "beam" else {}))
        batcher = Batcher(task, shipped_policy, get_scorer("verifier", task, shipped_policy), seed=0)
        events: dict[int, list] = {i: [] for i in range(len(problems))}
        for i, problem in enumerate(problems):
            batcher.add(
                problem,
                search,
                2000,
                on_tree=lambda tree, log=events[i]: log.append(("tree", tree)),
                on_commit=lambda steps, log=events[i]: log.append(("steps", [s.text for s in steps])),
            )
        while batcher:
            batcher.step()
        for i in range(len(problems)):
            kinds = [kind for kind, _ in events[i]]
            assert kinds[-1] == "tree" and kinds.count("tree") == 1
            committed = [value for kind, value in events[i] if kind == "steps"]
            answer = [s.text for s in events[i][-1][1].best_path()]
            lengths = [len(c) for c in committed]
            assert lengths == sorted(set(lengths)), "each commit decides more steps"
            for c in committed:
                assert answer[: len(c)] == c, "the answer extends every committed path"
            if name == "greedy":
                assert lengths == list(range(1, len(answer) + 1)), "greedy commits every step as it comes"
        if name == "beam":
            assert any(events[i][0][0] == "steps" for i in events), "narrow beams commit before they end"


def same_tree(a, b) -> bool:
    """Two saved trees (`Tree.to_dict`) alike: the same steps and structure, the same numbers to 1e-5."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_tree(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_tree(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-5, abs=1e-6)
    return a == b


def test_the_engine_batches_requests_in_flight_together_and_gives_the_trees_of_run_search(shipped_policy):
    task = get_task("countdown")
    problems = task.problems("val", 12)
    search, scorer = get_search("mcts"), get_scorer("verifier", task, shipped_policy)
    alone = run_search(search, problems, task, shipped_policy, scorer, budget=1000, seed=0)
    engine = Engine(task, shipped_policy, scorer, seed=0, window=0.05)
    trees, done = {}, threading.Event()

    def finished(i):
        def on_tree(tree):
            trees[i] = tree
            if len(trees) == len(problems):
                done.set()

        return on_tree

    engine.start()
    for i, problem in enumerate(problems):
        engine.submit(Ticket(problem, search, 1000, None, lambda steps: None, finished(i)))
    assert done.wait(60)
    engine.stop()
    # the same trees; a log-probability may differ in its last digits, a batch of other rows rounding otherwise
    assert [same_tree(trees[i].to_dict(), t.to_dict()) for i, t in enumerate(alone)] == [True] * len(problems)
    assert engine.policy_calls < sum(t.calls for t in alone) / 4  # the calls of many problems shared


def test_a_cancelled_ticket_leaves_and_its_tree_never_comes(shipped_policy):
    task = get_task("countdown")
    (problem,) = task.problems("val", 1)
    engine = Engine(task, shipped_policy, None, seed=0)
    got = []
    ticket = Ticket(problem, get_search("sample"), 10**6, None, lambda steps: None, got.append)
    engine.start()
    engine.submit(ticket)
    time.sleep(0.5)
    engine.cancel(ticket)
    deadline = time.time() + 10
    while engine.in_flight and time.time() < deadline:
        time.sleep(0.05)
    engine.stop()
    assert engine.in_flight == 0 and got == []


class Server:
    """`qstar serve --port 0 ARGS` on 127.0.0.1, stopped on exit: the port is the one its banner names, and it
    waits until /health answers there."""

    def __init__(self, *args: str):
        command = [sys.executable, "-m", "qstar", "serve", "--port", "0", *args]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def __enter__(self) -> "Server":
        self.said = []  # stderr up to its banner
        while not self.said or not self.said[-1].startswith("qstar serve: http://"):
            self.said.append(self.process.stderr.readline())
            if not self.said[-1]:
                raise AssertionError(f"qstar serve exited before its banner: {''.join(self.said)}")
        banner = self.said[-1]
        self.url = banner.split()[2].removesuffix("/v1")
        self.port = int(self.url.rsplit(":", 1)[1])
        assert self.port > 0, banner
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"qstar serve exited: {self.process.stderr.read()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("qstar serve did not answer /health within 90 s")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(10)

    def metric(self, name: str) -> float:
        text = httpx.get(self.url + "/metrics").text
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.split("{")[0].split(" ")[0] == name)


@pytest.fixture(scope="module")
def server():
    with Server("--search", "mcts", "--budget", "50000", "--api-key", KEY, "--keep-trees", "500") as s:
        yield s


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


def ask(client, text: str, **kwargs):
    kwargs = {"model": "qstar", "max_tokens": 2000, **kwargs}
    return client.chat.completions.create(messages=[{"role": "user", "content": text}], **kwargs)


def test_the_tiny_policy_solves_a_game_with_a_verified_expression(client, evaluate_expression, shipped_policy):
    reply = ask(client, "4 9 10 13 -> 24")
    content = reply.choices[0].message.content
    *steps, answer = content.splitlines()
    assert len(steps) == 3 and answer.startswith("Answer: ")
    value, used = evaluate_expression(answer.removeprefix("Answer: "))
    assert value == 24 and sorted(used) == [4, 9, 10, 13]
    extra = reply.model_extra["qstar"]
    assert extra["verified"] is True and extra["search"] == "mcts"
    assert reply.usage.completion_tokens == extra["tokens"] > sum(len(s) for s in steps)  # the whole search's tokens
    task = get_task("game24")
    prompt = task.render(task.parse_problem("4 9 10 13 -> 24"), [])
    ids = shipped_policy.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert reply.usage.prompt_tokens == len(ids) + 1  # the prompt once, as the model reads it after its BOS
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.choices[0].finish_reason == "stop"


def test_completions_and_search_prefixed_models(client):
    reply = client.completions.create(model="best-of-n-qstar", prompt="3 3 8 8 -> 24", max_tokens=800)
    assert reply.model_extra["qstar"]["search"] == "best-of-n" and reply.usage.completion_tokens <= 800
    assert reply.choices[0].text.splitlines()[-1].startswith("Answer: ")
    ids = [m.id for m in client.models.list().data]
    assert "qstar" in ids and "mcts-qstar" in ids and "dfs-wide-qstar" in ids


def test_a_stream_sends_the_steps_one_by_one_then_the_answer_and_matches_the_whole_reply(client):
    for model in ("qstar", "greedy-qstar", "beam-qstar"):
        whole = ask(client, "1 2 3 4 -> 24", model=model).choices[0].message.content
        pieces, usage, extra = [], None, None
        stream = ask(client, "1 2 3 4 -> 24", model=model, stream=True, stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                extra = (chunk.model_extra or {}).get("qstar", extra)
                if choice.delta.content:
                    pieces.append(choice.delta.content)
        assert "".join(pieces) == whole  # seeded: the same search as the whole reply
        *steps, answer = pieces
        assert all(p.endswith("\n") and p.count("\n") == 1 for p in steps) and answer.startswith("Answer: ")
        assert usage.completion_tokens == extra["tokens"] > 0 and usage.prompt_tokens > 0


def test_requests_at_once_all_succeed_and_share_model_calls(server):
    task = get_task("countdown")
    problems = task.problems("val", 200)
    before = server.metric("qstar_policy_calls_total")

    async def main():
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=300)
        texts = [f"{p.prompt} -> {p.meta['target']}" for p in problems]
        return await asyncio.gather(
            *(
                client.chat.completions.create(
                    model="qstar", messages=[{"role": "user", "content": t}], max_tokens=1000
                )
                for t in texts
            )
        )

    replies = asyncio.run(main())
    calls = server.metric("qstar_policy_calls_total") - before
    searched = sum(r.model_extra["qstar"]["calls"] for r in replies)
    assert len(replies) == 200 and all(r.choices[0].message.content for r in replies)
    assert sum(r.model_extra["qstar"]["verified"] for r in replies) >= 40
    assert calls < 200 < searched  # fewer batched policy calls than requests, let alone than their searches' calls


def test_wrong_or_missing_key_is_401_and_health_needs_none(server):
    for key in ("wrong", None):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        reply = httpx.post(server.url + "/v1/chat/completions", json={"messages": []}, headers=headers)
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        ask(bad, "4 9 10 13 -> 24")
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("text", "kwargs", "status", "says"),
    [
        ("make me a sandwich", {}, 400, "not a countdown problem"),
        ("4 9 10 13 -> 24", {"extra_body": {"budget": 60000}}, 400, "over this server's cap"),
        ("4 9 10 13 -> 24", {"extra_body": {"search": "no-such-search"}}, 400, "bad search"),
        ("4 9 10 13 -> 24", {"extra_body": {"search_args": {"k": "many"}}}, 400, "bad search"),
        ("4 9 10 13 -> 24", {"extra_body": {"search": "mcts", "search_args": {"simulations": -2}}}, 400, "at least 1"),
        ("4 9 10 13 -> 24", {"n": 2}, 400, "`n` must be 1"),
        ("4 9 10 13 -> 24", {"extra_body": {"stream": "yes"}}, 400, "`stream` must be true or false"),
        ("4 9 10 13 -> 24", {"max_tokens": 0}, 400, "`max_tokens` must be a positive integer"),
        ("4 9 10 13 -> 24", {"extra_body": {"budget": None, "max_tokens": "lots"}}, 400, "`max_tokens` must be"),
        ("4 9 10 13 -> 24", {"model": "gpt-4"}, 404, "does not exist"),
        ("4 9 10 13 -> 24", {"max_tokens": 5}, 400, "a budget of 5 tokens affords no model call of search mcts"),
    ],
)
def test_refusals_are_openai_errors_that_say_why(client, text, kwargs, status, says):
    with pytest.raises(openai.APIStatusError) as caught:
        ask(client, text, **kwargs)
    assert caught.value.status_code == status and says in caught.value.body["message"]


def test_a_budget_that_pays_for_no_model_call_is_refused_in_a_stream_too(client):
    """Not an empty answer: the stream's event is the error a whole reply would be (the SDK raises it)."""
    with pytest.raises(openai.APIError, match="a budget of 5 tokens affords no model call"):
        for _ in ask(client, "4 9 10 13 -> 24", max_tokens=5, stream=True):
            pass


def assert_cancelled(server, cancelled: float, tokens: float) -> None:
    """Within 20 s the server counts one more cancelled search, holds none in flight, and counted none of its
    tokens (it never finished)."""
    deadline = time.time() + 20
    while server.metric("qstar_cancelled_total") == cancelled and time.time() < deadline:
        time.sleep(0.1)
    assert server.metric("qstar_cancelled_total") == cancelled + 1
    while server.metric("qstar_in_flight") and time.time() < deadline:
        time.sleep(0.1)
    assert server.metric("qstar_in_flight") == 0
    assert server.metric("qstar_generated_tokens_total") == tokens


def test_a_client_that_disconnects_mid_stream_cancels_its_search(server):
    cancelled, tokens = server.metric("qstar_cancelled_total"), server.metric("qstar_generated_tokens_total")
    body = {
        "model": "sample-qstar",  # samples until 50,000 tokens are spent: seconds of work
        "messages": [{"role": "user", "content": "1 1 1 1 -> 97"}],
        "stream": True,
    }
    with httpx.stream(
        "POST", server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
    ) as reply:
        assert next(reply.iter_lines()).startswith("data: ")  # the stream began: the search runs
    assert_cancelled(server, cancelled, tokens)


def test_a_client_that_gives_up_on_a_whole_reply_cancels_its_search(server):
    cancelled, tokens = server.metric("qstar_cancelled_total"), server.metric("qstar_generated_tokens_total")
    body = {"model": "sample-qstar", "messages": [{"role": "user", "content": "1 1 1 1 -> 97"}]}  # seconds of work
    with pytest.raises(httpx.ReadTimeout):  # the client stops waiting and closes its connection
        httpx.post(
            server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=0.5
        )
    assert_cancelled(server, cancelled, tokens)


def test_a_kept_tree_is_a_page(client, server):
    """The reply's URL opens in a browser (no header: its signature); without it the key is asked for."""
    reply = ask(client, "4 9 10 13 -> 24")
    url = reply.model_extra["qstar"]["tree"]
    page = httpx.get(server.url + url)
    assert page.status_code == 200 and "<html" in page.text.lower() and "4 9 10 13" in page.text
    path, _, token = url.partition("?token=")
    assert httpx.get(server.url + path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert httpx.get(server.url + path).status_code == 401
    assert httpx.get(server.url + path + "?token=" + token[::-1]).status_code == 401
    other = ask(client, "1 2 3 4 -> 10").model_extra["qstar"]["tree"].partition("?token=")[0]
    assert httpx.get(server.url + other + "?token=" + token).status_code == 401  # a signature opens its own tree
    missing = httpx.get(server.url + "/trees/nope", headers={"Authorization": f"Bearer {KEY}"})
    assert missing.status_code == 404


def test_a_backend_failure_is_502_with_the_reason_and_a_backends_prompt_count_is_its_own():
    with FaultServer(Faults(fail_marker="Target: 99", status=500)) as backend:
        args = ("--policy", backend.url, "--model", "fake-model", "--policy-args", '{"retries": 1, "timeout": 5}')
        with Server(*args) as server:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
            reply = ask(client, "4 9 10 13 -> 24")
            assert reply.choices[0].message.content  # the backend answers this one
            assert reply.usage.prompt_tokens == 10  # what the backend says the prompt is (the fault server: 10)
            with pytest.raises(openai.APIStatusError) as caught:
                ask(client, "4 9 10 13 -> 99")
            assert caught.value.status_code == 502 and "injected failure" in caught.value.body["message"]


def test_listening_beyond_this_machine_without_a_key_warns_and_bad_options_fail_first(qstar):
    with Server("--host", "0.0.0.0", "--policy", "tiny-rules") as server:
        assert "warning: listening on 0.0.0.0 with no --api-key" in server.said[0]
    done = qstar("serve", "--search", "mcts", "--search-args", '{"nope": 1}', timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "nope" in done.stderr


def test_a_port_in_use_or_out_of_range_is_one_line_before_the_banner(qstar, server):
    taken = qstar("serve", "--port", str(server.port), "--policy", "tiny-rules", timeout=60)
    assert taken.returncode == 2 and taken.stderr.count("\n") == 1, taken.stderr
    assert f"cannot listen on 127.0.0.1:{server.port}" in taken.stderr and "http://" not in taken.stderr
    wrong = qstar("serve", "--port", "99999", timeout=60)
    assert wrong.returncode == 2 and "a port is 0-65535, got 99999" in wrong.stderr
