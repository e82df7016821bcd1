"""The OpenAI wire format of `qstar serve`, as pure functions: a request body read into what to search, a finished
search written as a completion or as stream chunks, errors as OpenAI's `error` objects."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from qstar.errors import QstarError
from qstar.search.base import SEARCHES, Search, get_search
from qstar.tasks.base import Task
from qstar.types import Problem, Tree


class APIError(Exception):
    """A request the server refuses: the HTTP status and OpenAI's error fields."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": None, "code": self.code}}


@dataclass(frozen=True)
class Caps:
    """What the server runs unless a request asks for less (or, within these, for something else)."""

    model: str  # the served model's id; `<search>-<model>` picks another search
    search: str
    search_args: dict[str, Any]
    budget: int  # generated tokens a request may spend at most, and by default


@dataclass
class Order:
    """What one request asks the server to search."""

    problem: Problem
    search_name: str
    search: Search
    budget: int
    seed: int | None
    stream: bool
    include_usage: bool


def problem_text(body: dict[str, Any], chat: bool) -> str:
    """The last user message of a chat, or a completion's prompt."""
    if not chat:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise APIError(400, "`prompt` must be one string (the problem)", code="invalid_prompt")
        return prompt
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "`messages` must be a non-empty list", code="invalid_messages")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise APIError(400, "no user message: the last user message is the problem", code="invalid_messages")
    content = users[-1].get("content")
    if isinstance(content, list):  # content parts: the text ones, joined
        content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if not isinstance(content, str):
        raise APIError(400, "the user message's content must be text", code="invalid_messages")
    return content


def search_of(model: str | None, caps: Caps) -> str:
    """The search a `model` field names: the served id runs the server's search, `<search>-<id>` another."""
    if model in (None, "", caps.model):
        return caps.search
    name, sep, rest = (model or "").rpartition("-" + caps.model)
    if sep and not rest and name in SEARCHES.names():
        return name
    raise APIError(404, f"the model {model!r} does not exist here; GET /v1/models lists them", code="model_not_found")


def read_order(body: dict[str, Any], task: Task, caps: Caps, chat: bool) -> Order:
    """Check a request body against the task and the caps; every refusal is a 400 (404 for an unknown model)."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    if body.get("n") not in (None, 1):
        raise APIError(400, "`n` must be 1: a search returns one answer", code="invalid_n")
    name = body.get("search") or search_of(body.get("model"), caps)
    args = body.get("search_args")
    if args is None:
        args = caps.search_args if name == caps.search else {}
    if not isinstance(args, dict):
        raise APIError(400, "`search_args` must be a JSON object")
    try:
        search = get_search(name, **args)
    except (QstarError, TypeError, ValueError) as error:
        raise APIError(400, f"bad search: {error}", code="invalid_search") from error
    budget = body.get("budget")
    budget = caps.budget if budget is None else budget
    limit = body.get("max_completion_tokens")
    limit = body.get("max_tokens") if limit is None else limit
    for field_, value in (("budget", budget), ("max_tokens", limit)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise APIError(400, f"`{field_}` must be a positive integer", code="invalid_value")
    if budget > caps.budget:
        raise APIError(400, f"`budget` {budget} is over this server's cap of {caps.budget} tokens", code="over_cap")
    if limit is not None:
        budget = min(budget, limit)
    try:
        problem = task.parse_problem(problem_text(body, chat))
    except QstarError as error:
        raise APIError(400, f"not a {task.name} problem: {error}", code="invalid_problem") from error
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise APIError(400, "`seed` must be an integer", code="invalid_value")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise APIError(400, "`stream` must be true or false", code="invalid_value")
    options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
    return Order(problem, name, search, budget, seed, bool(stream), bool(options.get("include_usage")))


def refusal(tree: Tree, order: Order) -> APIError | None:
    """Why a finished search has no answer to give: its backend kept failing (502, with the backend's reason), or
    its budget paid for no model call (400: an empty answer would not say why); None when it has one."""
    if tree.error:
        return APIError(502, f"the search failed: {tree.error}", kind="api_error", code="backend_error")
    if tree.starved:
        return APIError(
            400,
            f"a budget of {order.budget} tokens affords no model call of search {order.search_name} (each request is "
            "paid for at its worst case before it is made): raise max_tokens or budget",
            code="budget_too_small",
        )
    return None


def answer_text(task: Task, tree: Tree) -> str:
    """The line that ends a reply: the answer the chosen steps state."""
    steps = [s.text for s in tree.best_path()]
    answer = task.final_answer(tree.problem, steps) if steps else None
    return f"Answer: {answer}" if answer is not None else "Answer: (none)"


def finish_reason(tree: Tree) -> str:
    """`stop` when the chosen path is a complete solution, `length` when the budget ran out first."""
    return "stop" if tree.answer is not None and tree.answer.terminal else "length"


def usage(tree: Tree, prompt_tokens: int) -> dict[str, int]:
    """The problem's prompt once, as the policy reads it, and every generated token of the search (policy and
    scorer), not only the chosen path's."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": tree.tokens,
        "total_tokens": prompt_tokens + tree.tokens,
    }


def verdict(task: Task, tree: Tree, order: Order, tree_url: str | None) -> dict[str, Any]:
    """qstar's own fields of a reply: whether the verifier accepted the answer, and what the search spent."""
    checkable = not task.verifier_needs_reference or tree.problem.answer is not None
    return {
        "verified": tree.solved if checkable else None,
        "search": order.search_name,
        "budget": order.budget,
        "tokens": tree.tokens,
        "calls": tree.calls,
        "nodes": sum(1 for _ in tree.nodes()),
        "tree": tree_url,
    }


def completion(
    rid: str, model: str, task: Task, tree: Tree, order: Order, chat: bool, tree_url: str | None, prompt_tokens: int
):
    """The whole reply of a request that did not stream."""
    text = "".join(s.text + "\n" for s in tree.best_path()) + answer_text(task, tree)
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason(tree), "logprobs": None}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {
        "id": rid,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage(tree, prompt_tokens),
        "qstar": verdict(task, tree, order, tree_url),
    }


def chunk(rid: str, model: str, chat: bool, text: str | None = None, finish: str | None = None, **extra) -> dict:
    """One stream chunk: a piece of the reply's text, or its end (`finish`), or neither (`extra` only)."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
    if chat:
        choice["delta"] = {"content": text} if text is not None else {}
    else:
        choice["text"] = text or ""
    return {
        "id": rid,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        **extra,
    }
