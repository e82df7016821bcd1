"""Real local servers for the OpenAI-backend tests: llama.cpp's OpenAI-compatible server in a subprocess, and a
tiny misbehaving OpenAI-style server (stdlib `http.server` in a thread) that fails on demand."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` on 127.0.0.1 with a GGUF model; a context manager that waits until
    `/v1/models` answers (failing with the server's output if it does not) and stops the server after."""

    def __init__(self, model: Path, threads: int = 1, n_ctx: int = 2048, start_timeout: float = 120.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(n_ctx),
            "--n_threads",
            str(threads),
            "--n_threads_batch",
            str(threads),
            "--verbose",
            "False",
        ]
        self.start_timeout = start_timeout
        self.log = tempfile.TemporaryFile()  # noqa: SIM115  (open as long as the server runs; closed in stop)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def __enter__(self) -> LlamaServer:
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/v1/models", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama.cpp server did not answer within {self.start_timeout:g}s:\n{self.output()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Faults:
    """What the fault server does; counters count down as requests arrive."""

    errors_first: int = 0  # answer `status` to the first this many requests
    status: int = 500
    fail_marker: str | None = None  # answer `status` to every request whose prompt holds this text
    slow_first: int = 0  # sleep `delay` seconds before answering the first this many requests
    delay: float = 0.0
    malformed_first: int = 0  # answer the first this many with broken JSON
    stop_after: int | None = None  # shut the server down once this many requests arrived
    replies: list[str] = field(default_factory=list)  # texts to answer with, in turn (then `reply`)
    reply: str = "The answer is 42."  # a text ending in "\n" stops at the separator, otherwise at end-of-sequence
    api: dict[str, tuple[int, dict]] = field(default_factory=dict)  # a path's own answer (status, JSON), e.g. vLLM's
    prompt_tokens: int | None = 10  # the `usage.prompt_tokens` every reply reports (None: none, as some servers)


class FaultServer:
    """A tiny OpenAI-style server (completions and chat, one choice whatever `n`, like llama.cpp) that misbehaves
    as its `faults` say. It records every request body and header; `stop()` shuts it down mid-run."""

    def __init__(self, faults: Faults | None = None):
        self.faults = faults or Faults()
        self.requests: list[dict[str, Any]] = []
        self.api_calls: list[tuple[str, dict[str, Any]]] = []  # (path, body) of each request to `faults.api`
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                owner.respond(self, 200, json.dumps({"object": "list", "data": [{"id": "fake-model"}]}))

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path in owner.faults.api:
                    owner.api_calls.append((self.path, body))
                    status, reply = owner.faults.api[self.path]
                    return owner.respond(self, status, json.dumps(reply))
                owner.handle(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.stopped = False

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        with self.lock:
            if self.stopped:
                return
            self.stopped = True
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def respond(handler: BaseHTTPRequestHandler, status: int, text: str) -> None:
        data = text.encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def handle(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        f = self.faults
        prompt = body.get("prompt") or json.dumps(body.get("messages"))
        with self.lock:
            self.requests.append(body)
            self.headers.append(dict(handler.headers))
            count = len(self.requests)
            error = f.errors_first > 0 or (f.fail_marker is not None and f.fail_marker in prompt)
            f.errors_first -= f.errors_first > 0
            slow, malformed = f.slow_first > 0, f.malformed_first > 0 and not error
            f.slow_first -= slow
            f.malformed_first -= malformed
            text = f.replies.pop(0) if f.replies else f.reply
        if f.stop_after is not None and count >= f.stop_after:
            threading.Thread(target=self.stop, daemon=True).start()
        if slow:
            time.sleep(f.delay)
        if error:
            message = {"error": {"message": f"injected failure\nnumber {count}", "code": f.status}}
            return self.respond(handler, f.status, json.dumps(message))
        if malformed:
            return self.respond(handler, 200, '{"choices": [{"text": "trunc')
        ended_step = text.endswith("\n")
        words = [w + " " for w in text.rstrip("\n").split(" ")] if text.rstrip("\n") else []
        if words:
            words[-1] = words[-1][:-1]
        tokens = words + (["\n"] if ended_step else [])
        logprobs = [-0.5] * len(tokens)
        out = text.rstrip("\n")
        if "messages" in body:
            content = [{"token": t, "logprob": lp} for t, lp in zip(tokens, logprobs, strict=True)]
            choice = {"index": 0, "message": {"role": "assistant", "content": out}, "logprobs": {"content": content}}
        else:
            choice = {"index": 0, "text": out, "logprobs": {"tokens": tokens, "token_logprobs": logprobs}}
        choice["finish_reason"] = "stop"
        usage = {"completion_tokens": len(tokens)}
        if self.faults.prompt_tokens is not None:
            usage |= {
                "prompt_tokens": self.faults.prompt_tokens,
                "total_tokens": self.faults.prompt_tokens + len(tokens),
            }
        self.respond(handler, 200, json.dumps({"choices": [choice], "usage": usage}))
