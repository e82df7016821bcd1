"""Generated tokens/s of the tiny policy against plain `model.generate` and against the machine's compute bound, all
measured in the same run.

    python benchmarks/policy_throughput.py [--policy tiny] [--repeats 3] [--batches 1,16,64,256]

- The compute bound: the fp32 matmul rate measured here (1024² and 2048²; the larger), and the model's
  shape (64 x hidden by hidden x 3·hidden) for reference, over the FLOPs of one generated token
  (2 x the weights every token multiplies: projections, MLP and the output layer).
- Greedy: one step (to the separator) for `batch` prompts, the Game-of-24 test games at their first and second
  step. Sampled: `batch / 16` prompts with 16 samples each (temperature 1), the way searches draw children.
- The `generate` column is transformers' `model.generate` on the same prompts, left-padded, stopping at the
  separator; ratios are qstar / generate, and qstar's rate as a share of the compute bound. `qstar propose`
  starts with an empty prefix cache; `next step` is the call a search makes next, each prompt extended by the
  step just proposed, whose keys and values the policy kept (only the separator is computed again).
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from qstar.policy import load_policy
from qstar.policy.tiny import TinyPolicy
from qstar.search import get_search, run_search
from qstar.tasks import get_task

SAMPLES = 16


def matmul_rate(n: int, k: int, m: int, seconds: float = 1.0) -> float:
    """fp32 FLOP/s of `[n, k] @ [k, m]` on this machine (best of repeated timings over about `seconds`)."""
    a, b = torch.randn(n, k), torch.randn(k, m)
    a @ b  # warm-up
    reps = max(1, int(2e8 // (2 * n * k * m)))  # about 0.2 GFLOP per timing
    best, spent = float("inf"), 0.0
    while spent < seconds:
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        took = time.perf_counter() - start
        best = min(best, took / reps)
        spent += took
    return 2 * n * k * m / best


def flops_per_token(policy: TinyPolicy) -> float:
    """2 x the weights one generated token multiplies (every linear layer and the output layer)."""
    linear = sum(w.numel() for layer in policy.decoder.layers for w in layer if w.dim() == 2)
    return 2.0 * (linear + policy.decoder.head.numel())


def prompts(count: int) -> list[str]:
    """Prefixes at depth 0 and 1 of the test games (depth 1 from the shipped policy's own first step)."""
    task = get_task("game24")
    problems = task.problems("test")
    roots = [task.render(p, []) for p in problems]
    trees = run_search(get_search("greedy", max_steps=1), problems, task, load_policy("tiny"))
    firsts = [task.render(t.problem, t.answer.texts()) for t in trees]
    pool = [x for pair in zip(roots, firsts, strict=True) for x in pair]
    return (pool * (count // len(pool) + 1))[:count]


def qstar_rate(policy: TinyPolicy, batch: list[str], n: int, repeats: int, follow: bool = False) -> float:
    """Tokens/s of `propose(batch)` with the prefix cache emptied first; with `follow`, of the call after it instead:
    each prompt extended by its first proposal (what a search asks next), whose keys the policy kept."""
    temperature, tokens, seconds = (1.0 if n > 1 else 0.0), 0, 0.0
    policy.seed(0)
    for _ in range(repeats):
        policy.prefixes.clear()
        if follow:
            steps = policy.propose(batch, n=n, temperature=temperature)
            asked = [
                prompt + row[0].text + policy.tokenizer.convert_ids_to_tokens(policy.separator_id)
                for prompt, row in zip(batch, steps, strict=True)
            ]
        else:
            asked = batch
        start = time.perf_counter()
        steps = policy.propose(asked, n=n, temperature=temperature)
        seconds += time.perf_counter() - start
        tokens += sum(s.tokens for row in steps for s in row)
    return tokens / seconds


@torch.inference_mode()
def generate_rate(policy: TinyPolicy, batch: list[str], n: int, repeats: int) -> float:
    tok = policy.tokenizer
    encoded = [policy.prepare(p)[0] for p in batch]
    width = max(map(len, encoded))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(s)) + s for s in encoded])
    stops = [policy.separator_id, tok.eos_token_id]
    torch.manual_seed(0)
    tokens, start = 0, time.perf_counter()
    for _ in range(repeats):
        out = policy.model.generate(
            input_ids=ids,
            attention_mask=(ids != tok.pad_token_id).long(),
            max_new_tokens=policy.max_step_tokens,
            do_sample=n > 1,
            num_return_sequences=n,
            eos_token_id=stops,
            pad_token_id=tok.pad_token_id,
        )[:, width:]
        for row in out.tolist():  # count up to and including the first stop token, like qstar does
            tokens += next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="tiny", help="a tiny-policy checkpoint (default: the shipped one)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per row (after one warm-up)")
    parser.add_argument("--batches", default="1,16,64,256", help="rows per call (sampled: prompts x 16)")
    args = parser.parse_args()
    policy = load_policy(args.policy)
    big = max(matmul_rate(1024, 1024, 1024), matmul_rate(2048, 2048, 2048))
    hidden = policy.model.config.hidden_size
    shaped = matmul_rate(64, hidden, 3 * hidden)
    per_token = flops_per_token(policy)
    bound = big / per_token
    title = (
        f"tiny policy, generated tokens/s ({torch.get_num_threads()} threads): fp32 matmul {big / 1e9:.0f} GFLOP/s "
        f"(model shape {shaped / 1e9:.0f}), {per_token / 1e6:.2f} MFLOP a token, compute bound {bound:,.0f} tok/s"
    )
    table = Table(title=title)
    for col in ("mode", "batch", "qstar propose", "model.generate", "ratio", "share of bound", "next step", "share"):
        table.add_column(col, justify="right")
    for mode, n in (("greedy", 1), ("sampled n=16", SAMPLES)):
        for size in map(int, args.batches.split(",")):
            if size % n:
                continue
            batch = prompts(size // n)
            qstar_rate(policy, batch, n, 1), generate_rate(policy, batch, n, 1)  # warm-up
            ours, theirs = qstar_rate(policy, batch, n, args.repeats), generate_rate(policy, batch, n, args.repeats)
            following = qstar_rate(policy, batch, n, args.repeats, follow=True)
            shares = f"{ours / theirs:.1f}x", f"{ours / bound:.0%}", f"{following:,.0f}", f"{following / bound:.0%}"
            table.add_row(mode, str(size), f"{ours:,.0f}", f"{theirs:,.0f}", *shares)
    Console(width=120).print(table)


if __name__ == "__main__":
    from entry import run

    run(main)
