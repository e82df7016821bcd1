"""`qstar serve`: an OpenAI-compatible endpoint (FastAPI + uvicorn) whose replies are searches. Each request's
problem is searched on the shared `Engine`, so requests in flight together share model calls; a streamed reply
sends each step as the search commits to it, then the answer."""

import asyncio
import hashlib
import hmac
import json
import secrets
import socket
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from qstar.config import check_ranges, option
from qstar.errors import QstarError
from qstar.pipelines import openai_api as api
from qstar.pipelines.engine import Engine, Ticket
from qstar.policy.base import Policy
from qstar.scorers.base import Scorer
from qstar.search.base import SEARCHES, get_search
from qstar.tasks.base import Task
from qstar.types import Tree

DISCONNECT_POLL_S = 0.25  # how often a non-streamed request checks that its client is still there


@dataclass
class ServeConfig:
    """How `qstar serve` answers: its search and caps, who may call it, what it keeps."""

    model: str = option("qstar", "the served model's id (`<search>-<id>` picks a search)")
    search: str = option("greedy", "the search a request runs unless it names another")
    search_args: dict[str, Any] = option({}, "that search's hyper-parameters")
    budget: int = option(2000, "generated tokens a request may spend: default and cap")
    api_key: str | None = option(None, "clients must send `Authorization: Bearer KEY`")
    keep_trees: int = option(0, "keep the last N requests' trees at GET /trees/{id}")
    seed: int = option(0, "seed of a request that sends none")
    batch_size: int = option(256, "searches in flight at once; more wait their turn")
    window: float = option(0.01, "seconds an idle engine waits for requests to batch")

    def __post_init__(self) -> None:
        check_ranges(self, ("budget", "batch_size"), ("keep_trees", "window"), flags=True)


class Metrics:
    """Prometheus counters of the server, read from the engine when scraped."""

    def __init__(self, engine: Engine) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        self.registry = CollectorRegistry()
        self.requests = Counter("qstar_requests", "requests answered, by status", ["status"], registry=self.registry)
        self.tokens = Counter("qstar_generated_tokens", "tokens the searches generated", registry=self.registry)
        self.latency = Histogram(
            "qstar_request_seconds",
            "seconds from a request to its last byte",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.cancelled = Counter("qstar_cancelled", "searches stopped by a client going away", registry=self.registry)

        class EngineCollector:
            def collect(self):
                yield CounterMetricFamily("qstar_policy_calls", "batched policy calls", value=engine.policy_calls)
                yield CounterMetricFamily("qstar_scorer_calls", "batched scorer calls", value=engine.scorer_calls)
                yield GaugeMetricFamily("qstar_in_flight", "searches running or waiting", value=engine.in_flight)

        self.registry.register(EngineCollector())

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def create_app(task: Task, policy: Policy, scorer: Scorer | None, cfg: ServeConfig):
    """The FastAPI application; its engine thread starts and stops with the app's lifespan."""
    from contextlib import asynccontextmanager

    from fastapi import Depends, FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

    get_search(cfg.search, **cfg.search_args)  # a bad --search or --search-args fails before the server starts
    caps = api.Caps(cfg.model, cfg.search, cfg.search_args, cfg.budget)
    engine = Engine(task, policy, scorer, cfg.seed, cfg.batch_size, cfg.window)
    metrics = Metrics(engine)
    trees: OrderedDict[str, Tree] = OrderedDict()
    started = int(time.time())

    @asynccontextmanager
    async def lifespan(app):
        engine.start()
        yield
        engine.stop()

    app = FastAPI(title="qstar", lifespan=lifespan)

    @app.exception_handler(api.APIError)
    async def refused(request: Request, error: api.APIError):
        metrics.requests.labels(str(error.status)).inc()
        return JSONResponse(error.body(), status_code=error.status)

    async def authorise(request: Request) -> None:
        """With `api_key`, a request must send it (a dependency, not an HTTP middleware: Starlette's hides a client's
        disconnect from the endpoint, which must cancel its search)."""
        sent = request.headers.get("authorization", "")
        if cfg.api_key and not secrets.compare_digest(sent.encode(), f"Bearer {cfg.api_key}".encode()):
            raise api.APIError(401, "missing or wrong API key (send Authorization: Bearer KEY)", code="invalid_api_key")

    guarded = [Depends(authorise)]  # every route but /health and /metrics

    def signature(rid: str) -> str:
        """What a kept tree's URL carries with `api_key`, so a browser, which sends no header, can open it."""
        return hmac.new(cfg.api_key.encode(), rid.encode(), hashlib.sha256).hexdigest()[:32]

    def keep(rid: str, tree: Tree) -> str | None:
        if not cfg.keep_trees:
            return None
        trees[rid] = tree
        while len(trees) > cfg.keep_trees:
            trees.popitem(last=False)
        return f"/trees/{rid}?token={signature(rid)}" if cfg.api_key else f"/trees/{rid}"

    async def authorise_tree(request: Request, rid: str, token: str = "") -> None:
        """A tree's page: its signed URL from the reply, or the key as on every guarded route."""
        if not (cfg.api_key and token and secrets.compare_digest(token.encode(), signature(rid).encode())):
            await authorise(request)

    async def body_of(request: Request) -> dict:
        try:
            return json.loads(await request.body())
        except ValueError as error:
            raise api.APIError(400, f"the request body is not JSON: {error}") from error

    def submit(order: api.Order) -> tuple[Ticket, asyncio.Queue]:
        """Hand the order to the engine; its news arrives on the queue: ("steps", [...]) then ("tree", tree)."""
        loop, events = asyncio.get_running_loop(), asyncio.Queue()

        def tell(kind: str):
            return lambda value: loop.call_soon_threadsafe(events.put_nowait, (kind, value))

        ticket = Ticket(order.problem, order.search, order.budget, order.seed, tell("steps"), tell("tree"))
        return engine.submit(ticket), events

    def answered(tree: Tree, begun: float) -> None:
        metrics.tokens.inc(tree.tokens)
        metrics.requests.labels("200").inc()
        metrics.latency.observe(time.perf_counter() - begun)

    async def answer(request: Request, chat: bool):
        begun = time.perf_counter()
        body = await body_of(request)
        order = api.read_order(body, task, caps, chat)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        model = body.get("model") or cfg.model
        ticket, events = submit(order)
        if order.stream:
            return StreamingResponse(
                stream(rid, model, order, ticket, events, chat, begun), media_type="text/event-stream"
            )
        try:
            tree = await final_tree(request, events)
        except asyncio.CancelledError:
            cancel(ticket)
            raise
        if tree is None:  # the client went away: nobody reads a reply
            cancel(ticket)
            return Response(status_code=499)
        refused = api.refusal(tree, order)
        if refused is not None:
            raise refused
        answered(tree, begun)
        return api.completion(rid, model, task, tree, order, chat, keep(rid, tree), ticket.prompt_tokens)

    def cancel(ticket: Ticket) -> None:
        """Stop a search whose client went away, and count it."""
        engine.cancel(ticket)
        metrics.cancelled.inc()

    async def final_tree(request: Request, events: asyncio.Queue) -> Tree | None:
        """The finished search's tree, or None once the client has disconnected (checked while it runs)."""
        while True:
            try:
                kind, value = await asyncio.wait_for(events.get(), DISCONNECT_POLL_S)
            except TimeoutError:
                if await request.is_disconnected():
                    return None
                continue
            if kind == "tree":
                return value

    async def stream(rid, model, order, ticket, events, chat, begun) -> AsyncIterator[str]:
        sent = 0  # steps streamed so far
        done = False
        try:
            if chat:
                yield sse(role_chunk(rid, model))
            while True:
                kind, value = await events.get()
                steps = value if kind == "steps" else value.best_path()
                refused = api.refusal(value, order) if kind == "tree" else None
                if refused is not None:
                    metrics.requests.labels(str(refused.status)).inc()
                    yield sse(refused.body())
                    break
                for step in steps[sent:]:
                    yield sse(api.chunk(rid, model, chat, step.text + "\n"))
                sent = len(steps)
                if kind == "tree":
                    tree: Tree = value
                    url = keep(rid, tree)
                    yield sse(api.chunk(rid, model, chat, api.answer_text(task, tree)))
                    yield sse(
                        api.chunk(
                            rid, model, chat, None, api.finish_reason(tree), qstar=api.verdict(task, tree, order, url)
                        )
                    )
                    if order.include_usage:
                        yield sse(
                            {
                                **api.chunk(rid, model, chat),
                                "choices": [],
                                "usage": api.usage(tree, ticket.prompt_tokens),
                            }
                        )
                    answered(tree, begun)
                    break
            done = True
            yield "data: [DONE]\n\n"
        finally:
            if not done:
                cancel(ticket)

    def role_chunk(rid: str, model: str) -> dict:
        first = api.chunk(rid, model, True)
        first["choices"][0]["delta"] = {"role": "assistant", "content": ""}
        return first

    @app.post("/v1/chat/completions", dependencies=guarded)
    async def chat_completions(request: Request):
        return await answer(request, chat=True)

    @app.post("/v1/completions", dependencies=guarded)
    async def completions(request: Request):
        return await answer(request, chat=False)

    @app.get("/v1/models", dependencies=guarded)
    async def models():
        ids = [cfg.model] + [f"{name}-{cfg.model}" for name in SEARCHES.names()]
        return {
            "object": "list",
            "data": [{"id": i, "object": "model", "created": started, "owned_by": "qstar"} for i in ids],
        }

    @app.get("/health")
    async def health():
        return {"status": "ok", "in_flight": engine.in_flight}

    @app.get("/metrics")
    async def prometheus():
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.text(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/trees/{rid}", dependencies=[Depends(authorise_tree)])
    async def tree_page(rid: str):
        if rid not in trees:
            kept = f"the last {cfg.keep_trees} are kept" if cfg.keep_trees else "start the server with --keep-trees N"
            raise api.APIError(404, f"no tree {rid!r} ({kept})", code="tree_not_found")
        from qstar.pipelines.view import page

        return HTMLResponse(page([trees[rid]], title=f"qstar {rid}"))

    return app


def sse(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"


def serve(task: Task, policy: Policy, scorer: Scorer | None, cfg: ServeConfig, host: str, port: int, log_level: str):
    """Run the server until interrupted."""
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1") and not cfg.api_key:
        print(
            f"qstar serve: warning: listening on {host} with no --api-key: anyone who can reach it may use it",
            file=sys.stderr,
        )
    app = create_app(task, policy, scorer, cfg)
    sock = listen(host, port)
    port = sock.getsockname()[1]  # the one the system chose for port 0
    address = f"[{host}]" if ":" in host else host
    print(
        f"qstar serve: http://{address}:{port}/v1  model {cfg.model!r}, search {cfg.search}, budget {cfg.budget}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level)).run(sockets=[sock])


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before it says it serves: a port in use, or a host that is not this machine's,
    is one line (uvicorn's own bind prints a traceback after the banner)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise QstarError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise QstarError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock
