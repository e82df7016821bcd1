"""Any OpenAI-compatible server as a policy: vLLM, SGLang, llama.cpp (`llama_cpp.server` or `llama-server`).

One HTTP request per prefix (`n` samples in it), up to `concurrency` requests in flight, each stopped at the
step separator and asking for the sampled tokens' log-probs (never the prompt's). Servers that ignore `n`
(llama.cpp does) are sent the missing samples as parallel requests. Failed requests are retried with
exponential back-off; a prefix whose requests still fail is reported in a `BackendError` with the other
prefixes' steps, so a search loses only the problems whose calls failed.

Two endpoints:

- completions (default): `POST /v1/completions` with the whole prefix as the prompt, as the task rendered it.
- chat (`chat=True`): `POST /v1/chat/completions`; the prefix's question is the user's turn and the steps taken
  so far (see `qstar.types.Prefix`) an assistant message the model continues (`continue_final_message: true,
  add_generation_prompt: false`, which vLLM and SGLang honour). llama-cpp-python's server ignores both fields:
  it closes that assistant message and opens a new assistant turn, so the model sees its earlier steps as a
  finished reply. Prefer completions with llama.cpp.

With `legal_steps`, a prefix that comes with a list of allowed steps (the task's legal next steps) asks the server
to keep its samples to them, each step then its separator, in the field the server reads (`constraint`): vLLM's
`structured_outputs` regex, SGLang's `regex`, llama.cpp's GBNF `grammar`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import httpx

from qstar.errors import BackendError, QstarError
from qstar.policy.base import allowed_by_prefix, check_seeds, repeat
from qstar.seeds import derive_seed
from qstar.types import Step, split_prefix

BLANK_ROUNDS = 4  # a step that is only blank lines is continued at most this many times
CONSTRAINTS = ("vllm", "vllm-guided", "sglang", "llama.cpp")  # servers whose constrained decoding `constrain` writes
REGEX_SPECIAL = set("\\.^$*+?()[]{}|")


def regex_literal(text: str) -> str:
    """`text` as a regular expression that matches only it (special characters and line ends escaped)."""
    return "".join("\\" + c if c in REGEX_SPECIAL else {"\n": "\\n", "\t": "\\t"}.get(c, c) for c in text)


def gbnf_literal(text: str) -> str:
    """`text` as a GBNF string literal (llama.cpp's grammars)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def constrain(steps: list[str], separator: str, server: str) -> dict[str, Any]:
    """The request fields that keep a sample to one of `steps` followed by `separator` (so it stops at the
    separator as a free step does, not at end-of-sequence), in the form `server` reads."""
    if server == "llama.cpp":
        return {"grammar": f"root ::= ({' | '.join(map(gbnf_literal, steps))}) {gbnf_literal(separator)}"}
    regex = f"({'|'.join(map(regex_literal, steps))}){regex_literal(separator)}"
    if server == "vllm":
        return {"structured_outputs": {"regex": regex}}
    return {"guided_regex": regex} if server == "vllm-guided" else {"regex": regex}


class RequestFailed(Exception):
    """A request that failed for good (retries spent, or an error retrying cannot fix); one line of why."""


def api_root(base_url: str) -> str:
    """The server's root URL, whether given with or without a trailing `/v1`."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def server_message(response: httpx.Response) -> str:
    """The error message of a reply, on one line: OpenAI's `error.message`, FastAPI's `detail`, or the body."""
    try:
        data = response.json()
        error = data.get("error", data.get("detail", data)) if isinstance(data, dict) else data
        message = error.get("message", error) if isinstance(error, dict) else error
    except ValueError:
        message = response.text
    return " ".join(str(message).split())[:300] or response.reason_phrase


@dataclass
class Job:
    """Requests for samples `slots` of prefix `index`; `lead` is blank text already generated before them."""

    index: int
    slots: list[int]
    lead: str = ""
    tokens: int = 0
    logprob: float = 0.0
    rounds: int = 0


@dataclass
class OpenAIPolicy:
    """Step proposals from an OpenAI-compatible server.

    `base_url` defaults to `$OPENAI_BASE_URL`, `api_key` to `$OPENAI_API_KEY`, `model` to the first model
    the server lists. Each step is the text up to the first `separator` after non-blank text (a step that
    starts with blank lines is continued in a follow-up request, as the HF backend skips them), stripped.

    - `Step.logprob`: the sum of the log-probs the server reports for the choice's sampled tokens, the
      token that completed the separator included where the server reports it (llama.cpp does); 0.0 only
      when the server reports none.
    - `Step.tokens`: the number of those tokens, else the reply's `usage.completion_tokens` (shared among its
      choices); at least 1. At temperature 0 one greedy step is generated and repeated `n` times, the
      repeats costing no tokens (as in the HF backend).
    - `Step.done`: the model ended the solution (end-of-sequence) rather than the step. It is true when
      `finish_reason` is "stop" and the stop was not the separator: vLLM's `stop_reason` / SGLang's
      `matched_stop` is not a string, llama-server's `stop_type` is "eos", or (llama-cpp-python, which
      says none of these) the reported tokens past the text hold no separator. When the server says
      nothing that tells them apart, or stopped at `max_step_tokens` ("length"), it is False.
    """

    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    chat: bool = False
    separator: str = "\n"
    max_step_tokens: int = 128
    concurrency: int = 8  # requests in flight at once
    retries: int = 3  # retries of a failed request (connection error, timeout, 429, 5xx, malformed reply)
    backoff: float = 0.5  # seconds before the first retry, doubled for each next one
    timeout: float = 60.0  # seconds per request
    extra_body: dict[str, Any] = field(default_factory=dict)  # more request fields (e.g. top_p, top_k)
    legal_steps: bool = False  # keep a prefix's samples to the allowed steps a search hands over (see the module)
    constraint: str = "vllm"  # how the server is asked to: vllm, vllm-guided (before 0.12), sglang, llama.cpp
    _seed: int | None = field(default=None, repr=False)
    _calls: int = field(default=0, repr=False)
    _ignores_n: bool = field(default=False, repr=False)  # the server answered a request for n > 1 with one

    def __post_init__(self) -> None:
        if self.constraint not in CONSTRAINTS:
            raise QstarError(f"constraint must be one of {', '.join(CONSTRAINTS)}, not {self.constraint!r}")
        base = self.base_url or os.environ.get("OPENAI_BASE_URL")
        if not base:
            raise QstarError("no server URL: pass base_url or set OPENAI_BASE_URL")
        self.root = api_root(base)
        key = self.api_key if self.api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self.client = httpx.Client(headers=headers, timeout=self.timeout, limits=limits)

    @classmethod
    def from_spec(cls, spec: str | None = None, model: str | None = None, seed: int | None = None, **kwargs):
        """From a server URL (`http://host:port` or `.../v1`; None: `$OPENAI_BASE_URL`), seeded if `seed` is given."""
        policy = cls(base_url=spec, model=model, **kwargs)
        if seed is not None:
            policy.seed(seed)
        return policy

    def seed(self, seed: int) -> None:
        """Send seeds derived from `seed` with every request from here on (servers that honour them repeat)."""
        self._seed, self._calls = seed, 0

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> OpenAIPolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- proposing ---------------------------------------------------------------------------------------

    def propose(
        self,
        prefixes: list[str],
        n: int = 1,
        temperature: float = 0.0,
        seeds: list[int] | None = None,
        allowed: list[list[str] | None] | None = None,
    ) -> list[list[Step]]:
        """`n` steps after each prefix; raises `BackendError` naming the prefixes whose requests failed. With
        `seeds`, each prefix's requests carry seeds derived from its own (servers that honour them repeat); with
        `allowed` (one list a prefix, None for any step), they ask the server to keep to the prefix's list."""
        if not prefixes:
            return []
        check_seeds(prefixes, seeds)
        steps_of = allowed_by_prefix(prefixes, allowed)
        if self.model is None:
            try:
                self.model = self.first_model()
            except RequestFailed as error:
                raise BackendError(dict.fromkeys(range(len(prefixes)), str(error)), [None] * len(prefixes)) from None
        self._calls += 1
        draws = n if temperature > 0 else 1
        keys = [(str(p), split_prefix(p)[0]) for p in prefixes]
        # greedy: one request per distinct prefix; sampling: every occurrence draws its own
        owner = {key: i for i, key in reversed(list(enumerate(keys)))} if temperature == 0 else {}
        unique = [i for i, key in enumerate(keys) if temperature > 0 or owner[key] == i]
        drawn: dict[int, list[Step | None]] = {i: [None] * draws for i in unique}
        failed: dict[int, str] = {}
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            pending: dict[Future, Job] = {}

            def submit(job: Job) -> None:
                seed = seeds[job.index] if seeds is not None else None
                steps = steps_of.get(prefixes[job.index])
                pending[pool.submit(self.request, prefixes[job.index], job, temperature, seed, steps)] = job

            for i in unique:
                if self._ignores_n:
                    for slot in range(draws):
                        submit(Job(i, [slot]))
                else:
                    submit(Job(i, list(range(draws))))
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = pending.pop(future)
                    if job.index in failed:
                        continue
                    try:
                        choices = future.result()
                    except RequestFailed as error:
                        failed[job.index] = str(error)
                        continue
                    if len(job.slots) > 1 and len(choices) == 1:
                        self._ignores_n = True
                    for slot, (step, raw) in zip(job.slots, choices, strict=False):
                        blank = not step.text and not step.done and raw.endswith(self.separator)
                        if blank and job.rounds < BLANK_ROUNDS and job.tokens + step.tokens < self.max_step_tokens:
                            lead = job.lead + raw
                            tokens, logprob = job.tokens + step.tokens, job.logprob + step.logprob
                            submit(Job(job.index, [slot], lead, tokens, logprob, job.rounds + 1))
                        else:
                            drawn[job.index][slot] = Step(
                                step.text, job.logprob + step.logprob, step.done, job.tokens + step.tokens
                            )
                    for slot in job.slots[len(choices) :]:  # the server sent fewer choices than asked for
                        submit(Job(job.index, [slot], job.lead, job.tokens, job.logprob, job.rounds))
        results: list[list[Step] | None] = []
        for i, key in enumerate(keys):
            first = owner.get(key, i)
            if first in failed:
                failed.setdefault(i, failed[first])
                results.append(None)
                continue
            steps: list[Step] = drawn[first]  # type: ignore[assignment]
            results.append(steps if draws == n else steps + [repeat(steps[0])] * (n - 1))
        if failed:
            raise BackendError(dict(sorted(failed.items())), results)
        return results  # type: ignore[return-value]

    def request(
        self, prefix: str, job: Job, temperature: float, seed: int | None = None, allowed: list[str] | None = None
    ) -> list[tuple[Step, str]]:
        """One request for `len(job.slots)` samples after `prefix + job.lead`: (step, raw text) per choice; its
        seed from the prefix's `seed` when given, else from the policy's; kept to the `allowed` steps when given."""
        body: dict[str, Any] = {
            "model": self.model,
            "n": len(job.slots),
            "temperature": temperature,
            "max_tokens": self.max_step_tokens - job.tokens,
            "stop": [self.separator],
            **self.extra_body,
        }
        if allowed:
            body |= constrain(allowed, self.separator, self.constraint)
        if seed is not None:  # distinct per prefix, sample and round; the same on every retry
            body["seed"] = derive_seed(seed, job.slots[0], job.rounds) % 2**31
        elif self._seed is not None:  # distinct per call, prefix, sample and round; the same on every retry
            body["seed"] = hash((self._seed, self._calls, job.index, job.slots[0], job.rounds)) % 2**31
        if self.chat:
            question, steps = split_prefix(prefix)
            messages = [{"role": "user", "content": question}]
            if steps + job.lead:
                messages.append({"role": "assistant", "content": steps + job.lead})
                body |= {"continue_final_message": True, "add_generation_prompt": False}
            body |= {"messages": messages, "logprobs": True, "top_logprobs": 1}
            return self.kept(self.post("/v1/chat/completions", body, self.parse_chat), allowed)
        body |= {"prompt": prefix + job.lead, "logprobs": 1}
        return self.kept(self.post("/v1/completions", body, self.parse_completion), allowed)

    def kept(self, choices: list[tuple[Step, str]], allowed: list[str] | None) -> list[tuple[Step, str]]:
        """`choices`, checked to keep to `allowed` where given (a step cut at `max_step_tokens` to the start of one):
        a server that ignored the request's constraint (one that reads another field) is a one-line error, not a
        search of unconstrained steps."""
        strays = [step.text for step, _ in choices if allowed and not any(s.startswith(step.text) for s in allowed)]
        if strays:
            raise QstarError(
                f"the server wrote {strays[0]!r}, not one of the legal steps it was asked to keep to: does it read "
                f"{self.constraint!r} constraints? (set the openai policy's constraint: {', '.join(CONSTRAINTS)})"
            )
        return choices

    def post(self, path: str, body: dict[str, Any] | None, parse: Callable[[Any], Any]) -> Any:
        """POST `body` (GET when None) with retries; `parse(json)` raising counts as a malformed reply."""
        url = self.root + path
        why = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self.client.get(url) if body is None else self.client.post(url, json=body)
            except httpx.TimeoutException:
                why = f"no reply from {url} within {self.timeout:g}s"
                continue
            except httpx.RequestError as error:  # refused, reset, broken HTTP
                why = f"cannot reach {url}: {type(error).__name__}: {error}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                why = f"HTTP {response.status_code} from {url}: {server_message(response)}"
                continue
            if response.status_code >= 400:  # the request itself is wrong: retrying cannot help
                raise RequestFailed(f"HTTP {response.status_code} from {url}: {server_message(response)}")
            try:
                return parse(response.json())
            except (KeyError, TypeError, ValueError, IndexError) as error:
                why = f"malformed reply from {url}: {type(error).__name__}: {error}"
        raise RequestFailed(f"{why} (gave up after {self.retries + 1} attempts)")

    def first_model(self) -> str:
        """The first model the server lists (llama.cpp serves one; vLLM's first is its main model)."""
        return self.post("/v1/models", None, lambda data: str(data["data"][0]["id"]))

    def prompt_tokens(self, text: str) -> int | None:
        """How many tokens the server reads `text` as (`usage.prompt_tokens` of a one-token completion); None when
        the server reports no usage. Raises `RequestFailed` when the server cannot be asked."""
        self.model = self.model or self.first_model()
        body = {"model": self.model, "prompt": text, "max_tokens": 1, "temperature": 0.0}
        return self.post("/v1/completions", body, lambda data: (data.get("usage") or {}).get("prompt_tokens"))

    # -- replies -----------------------------------------------------------------------------------------

    def parse_completion(self, data: dict[str, Any]) -> list[tuple[Step, str]]:
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        out = []
        for choice in choices:
            lp = choice.get("logprobs") or {}
            tokens, logprobs = lp.get("tokens") or [], lp.get("token_logprobs") or []
            out.append(self.step(choice, str(choice["text"]), tokens, logprobs, data, len(choices)))
        return self.checked(out)

    def parse_chat(self, data: dict[str, Any]) -> list[tuple[Step, str]]:
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        out = []
        for choice in choices:
            content = (choice.get("logprobs") or {}).get("content") or []
            tokens, logprobs = [t["token"] for t in content], [t["logprob"] for t in content]
            text = choice["message"].get("content") or ""
            out.append(self.step(choice, str(text), tokens, logprobs, data, len(choices)))
        return self.checked(out)

    @staticmethod
    def checked(out: list[tuple[Step, str]]) -> list[tuple[Step, str]]:
        if not out:
            raise ValueError("the reply has no choices")
        return out

    def step(
        self, choice: dict, text: str, tokens: list[str], logprobs: list, data: dict, count: int
    ) -> tuple[Step, str]:
        """A choice as a step, and its raw text cut just after the separator (if it reached one)."""
        cut = text.find(self.separator)
        raw = text if cut < 0 else text[: cut + len(self.separator)]
        reason = choice.get("finish_reason")
        if cut >= 0 or reason != "stop":
            done = False
        elif "stop_reason" in choice:  # vLLM: None at end-of-sequence, the string for a stop string
            done = not isinstance(choice["stop_reason"], str)
        elif "matched_stop" in choice:  # SGLang: the end-of-sequence token's id, or the stop string
            done = not isinstance(choice["matched_stop"], str)
        elif "stop_type" in choice:  # llama-server
            done = choice["stop_type"] == "eos"
        elif tokens:  # llama-cpp-python reports the token that completed the stop string, not end-of-sequence
            spelled = "".join(map(str, tokens))
            tail = spelled[len(text) :] if spelled.startswith(text) else str(tokens[-1])
            done = self.separator not in tail
        else:
            done = False
        if cut < 0 and reason == "stop" and not done:
            raw = text + self.separator  # the server cut the separator off
        usage = (data.get("usage") or {}).get("completion_tokens") or 0
        used = len(tokens) if tokens else round(usage / count)
        logprob = float(sum(float(x) for x in logprobs if x is not None))
        return Step(text=raw.removesuffix(self.separator).strip(), logprob=logprob, done=done, tokens=max(used, 1)), raw
