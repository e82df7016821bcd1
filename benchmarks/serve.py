"""`qstar serve` under many clients at once, against the same problems run by `qstar eval` in one process.

    python benchmarks/serve.py                        # 1,000 clients, greedy, max_tokens 300 (~1 min)
    python benchmarks/serve.py --clients 200 --search best-of-n

Every client sends one countdown `val` problem as a chat message with `max_tokens` set, all at once, through the
real `openai` package (async) to a `qstar serve` subprocess on 127.0.0.1. Printed: whether all succeeded, latency
p50 / p99, requests/s, the server's peak memory, batched policy calls per request (the batching at work: each
request's search makes several calls of its own), and the ratio of the server's wall time to `qstar eval`'s
search time on the same problems (the server's overhead: HTTP, JSON, the engine's thread). The run stops itself
after --timeout seconds whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

import httpx
import openai
from rich.console import Console
from rich.table import Table

from qstar.tasks import get_task


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(url: str, name: str) -> float:
    lines = httpx.get(url + "/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.split(" ")[0] == name)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_memory_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kib / 1024


async def clients(url: str, texts: list[str], max_tokens: int, timeout: float) -> list[tuple[float, dict | None]]:
    """Every text as one chat request, all at once: (seconds, qstar's reply fields or None on failure) each."""
    limits = httpx.Limits(max_connections=len(texts), max_keepalive_connections=len(texts))
    http = httpx.AsyncClient(limits=limits, timeout=timeout)
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0, http_client=http)

    async def one(text: str) -> tuple[float, dict | None]:
        start = time.perf_counter()
        try:
            reply = await client.chat.completions.create(
                model="qstar", messages=[{"role": "user", "content": text}], max_tokens=max_tokens
            )
            return time.perf_counter() - start, reply.model_extra["qstar"]
        except openai.OpenAIError:
            return time.perf_counter() - start, None

    try:
        return await asyncio.gather(*(one(t) for t in texts))
    finally:
        await http.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000, help="clients at once, one countdown val problem each")
    parser.add_argument("--search", default="greedy", help="the server's search (the default of qstar serve)")
    parser.add_argument("--max-tokens", type=int, default=300, help="each request's max_tokens (its search budget)")
    parser.add_argument("--batch-size", type=int, default=256, help="searches in flight, in the server and in eval")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before the run stops itself")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a socket per client here and in the server
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.clients + 256)), hard))
    problems = get_task("countdown").problems("val", args.clients)
    texts = [f"{p.prompt} -> {p.meta['target']}" for p in problems]
    common = ["--task", "countdown", "--search", args.search, "--budget", str(args.max_tokens)]
    batching = ["--batch-size", str(args.batch_size), "--json"]

    evaluation = subprocess.run(
        [sys.executable, "-m", "qstar", "eval", *common, "--split", "val", "--limit", str(args.clients), *batching],
        capture_output=True,
        text=True,
        timeout=args.timeout,
        check=True,
    )
    eval_figures = json.loads(evaluation.stdout)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "qstar",
        "serve",
        *common,
        "--port",
        str(port),
        "--batch-size",
        str(args.batch_size),
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                if server.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"qstar serve did not start: {server.stderr.read()}") from None
                time.sleep(0.2)
        calls = metric(url, "qstar_policy_calls_total")
        server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
        start = time.perf_counter()
        results = asyncio.run(asyncio.wait_for(clients(url, texts, args.max_tokens, args.timeout), args.timeout))
        wall = time.perf_counter() - start
        server_cpu, client_cpu = cpu_seconds(server.pid) - server_cpu, time.process_time() - client_cpu
        calls = metric(url, "qstar_policy_calls_total") - calls
        memory = peak_memory_mb(server.pid)
    finally:
        server.terminate()
        server.wait(10)

    answered = [extra for _, extra in results if extra is not None]
    latencies = sorted(seconds for seconds, _ in results)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    searched = sum(extra["calls"] for extra in answered) / max(1, len(answered))
    table = Table(title=f"{args.clients} clients at once, countdown val, {args.search}, max_tokens {args.max_tokens}")
    for column in (
        "run",
        "succeeded",
        "accuracy",
        "seconds",
        "problems/s",
        "p50 s",
        "p99 s",
        "batched policy calls/problem",
    ):
        table.add_column(column, justify="left" if column == "run" else "right")
    table.add_column("peak memory", justify="right")
    table.add_column("vs eval", justify="right")
    n = eval_figures["n"]
    table.add_row(
        "qstar eval, one process",
        f"{n}/{args.clients}",
        f"{eval_figures['accuracy']:.1%}",
        f"{eval_figures['seconds']:.1f}",
        f"{n / eval_figures['seconds']:.1f}",
        "",
        "",
        f"({eval_figures['calls_per_problem']:.2f} searched)",
        "",
        "1.00",
    )
    table.add_row(
        "qstar serve",
        f"{len(answered)}/{args.clients}",
        f"{sum(bool(e['verified']) for e in answered) / args.clients:.1%}",
        f"{wall:.1f}",
        f"{len(answered) / wall:.1f}",
        f"{statistics.median(latencies):.2f}",
        f"{p99:.2f}",
        f"{calls / args.clients:.3f} ({searched:.2f} searched)",
        f"{memory:.0f} MiB",
        f"{wall / eval_figures['seconds']:.2f}",
    )
    console = Console(width=160)
    console.print(table)
    console.print(
        f"CPU seconds while the clients ran: server {server_cpu:.1f}, clients {client_cpu:.1f} "
        f"(of {wall * (os.cpu_count() or 1):.1f} on {os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    from entry import run

    run(main)
