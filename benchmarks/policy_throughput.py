"""Generated tokens/s of the tiny policy backend against plain `model.generate`, measured in the same run.

    python benchmarks/policy_throughput.py [--policy tiny] [--repeats 5]

Both generate one greedy step (to the separator) for the same left-padded prompts: the Game-of-24 test
games, at their first and second step. The ratio column is qstar / generate.
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


def prompts(batch: int) -> list[str]:
    """Prefixes at depth 0 and 1 of the test games (depth 1 from the shipped policy's own first step)."""
    task = get_task("game24")
    problems = task.problems("test")
    roots = [task.render(p, []) for p in problems]
    trees = run_search(get_search("greedy", max_steps=1), problems, task, load_policy("tiny"))
    firsts = [task.render(t.problem, t.answer.texts()) for t in trees]
    pool = [x for pair in zip(roots, firsts, strict=True) for x in pair]
    return (pool * (batch // len(pool) + 1))[:batch]


def qstar_rate(policy: TinyPolicy, batch: list[str], repeats: int) -> float:
    tokens, start = 0, time.perf_counter()
    for _ in range(repeats):
        tokens += sum(s.tokens for steps in policy.propose(batch) for s in steps)
    return tokens / (time.perf_counter() - start)


@torch.inference_mode()
def generate_rate(policy: TinyPolicy, batch: list[str], repeats: int) -> float:
    tok = policy.tokenizer
    encoded = policy.encode(batch)
    width = max(map(len, encoded))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(s)) + s for s in encoded])
    mask = (ids != tok.pad_token_id).long()
    stops = [policy.separator_id, tok.eos_token_id]
    tokens, start = 0, time.perf_counter()
    for _ in range(repeats):
        out = policy.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=policy.max_step_tokens,
            do_sample=False,
            eos_token_id=stops,
            pad_token_id=tok.pad_token_id,
        )[:, width:]
        for row in out.tolist():  # count up to and including the first stop token, like qstar does
            tokens += next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="tiny")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,16,64")
    args = parser.parse_args()
    policy = load_policy(args.policy)
    table = Table(title=f"tiny policy throughput, generated tokens/s ({torch.get_num_threads()} threads)")
    for col in ("batch", "qstar propose", "model.generate", "ratio"):
        table.add_column(col, justify="right")
    for size in map(int, args.batches.split(",")):
        batch = prompts(size)
        qstar_rate(policy, batch, 1), generate_rate(policy, batch, 1)  # warm-up
        ours, theirs = qstar_rate(policy, batch, args.repeats), generate_rate(policy, batch, args.repeats)
        table.add_row(str(size), f"{ours:,.0f}", f"{theirs:,.0f}", f"{ours / theirs:.1f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
