"""Can the policy write its own look-ahead? A diagnostic of issue #12's greedy target: the policy is fine-tuned to
write a first step, judge it (` dead` retracts it) and try another, so that greedy decoding itself tries first steps
until one holds. Streams: the legal first steps of each train puzzle in the policy's own order (likeliest first),
the dead ones retracted (at most `--tries`), then the first solvable one and the solution below it the policy finds
likeliest; beside them, every legal first step's verdict alone (the loss on the verdict only). The exhaustive solver
labels first steps and writes the solutions: a diagnostic, never the data of a shipped model. Train puzzles of the
test games' difficulty are split as in `first_step_ceiling.py` (odd ranks unseen, even ones seen).

Greedy decodes each game to the model's context; a line ending ` dead` is a retracted try, and the first three
other lines are the solution the verifier checks. The verdict columns read the policy's probability of ` dead`
after every legal first step: its AUC between solvable and dead ones, and how often the step it is surest of is
solvable.

    python benchmarks/retract.py                  # the shipped policy, 6 tries, 3 epochs at 1e-3 (~40 min, 2 cores)
"""

from __future__ import annotations

import argparse
import time

import torch
from first_step_ceiling import first_steps, near_test, puzzles  # sibling benchmarks (this folder is on sys.path)
from first_steps import auc, completion_logps
from rich.console import Console
from rich.table import Table

from qstar.checkpoints import resolve
from qstar.models import encode, load_causal_lm, load_tokenizer
from qstar.tasks import get_task
from qstar.tasks.countdown.solver import is_solvable, solve
from qstar.train.config import SFTConfig
from qstar.train.sft import train_sft

TASK = get_task("game24")
MARK = " dead"


def records(model, tokenizer, problem, tries: int) -> list[dict]:
    """A puzzle's stream (dead tries retracted, a solvable first step, its likeliest solution) and its verdicts."""
    labels = first_steps(problem)
    prompt = str(TASK.render(problem, []))
    steps = list(labels)
    likelihood = completion_logps(model, tokenizer, [(prompt, s + "\n") for s in steps])
    order = [s for _, s in sorted(zip(likelihood, steps, strict=True), reverse=True)]
    good = [s for s in order if labels[s]]
    if not good:
        return []
    dead = order[: order.index(good[0])][:tries]
    rests = solve(TASK.left_after(problem, [good[0]]), 24)[:24]
    after = str(TASK.render(problem, [good[0]]))
    scores = completion_logps(model, tokenizer, [(after, "".join(x + "\n" for x in rest)) for rest in rests])
    rest = rests[max(range(len(rests)), key=scores.__getitem__)]
    lines = [d + MARK for d in dead] + [good[0], *rest]
    stream = {"prompt": prompt, "completion": "".join(line + "\n" for line in lines)}
    return [stream] + [{"prompt": prompt + s, "completion": "\n" if ok else MARK + "\n"} for s, ok in labels.items()]


def greedy(model, tokenizer, problems: list) -> dict:
    """Greedy to the context, batched; retracted tries skipped, the first three other lines checked."""
    prompts = [encode(tokenizer, str(TASK.render(p, [])))[0] for p in problems]
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), tokenizer.pad_token_id)
    attention = torch.zeros_like(ids)
    for i, row in enumerate(prompts):  # left-padded for generate
        ids[i, width - len(row) :] = torch.tensor(row)
        attention[i, width - len(row) :] = 1
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=attention, max_new_tokens=model.config.max_position_embeddings - width,
            do_sample=False, pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
    solved = alive = tries = tokens = 0
    for problem, text in zip(problems, tokenizer.batch_decode(out[:, width:], skip_special_tokens=True), strict=True):
        lines, accepted, retracted = text.split("\n"), [], 0
        for line in lines:
            if len(accepted) == TASK.max_steps(problem):
                break
            if line.endswith(MARK):
                retracted += 1
            else:
                accepted.append(line)
        tokens += sum(len(line) + 1 for line in lines[: retracted + len(accepted)])  # one token a character
        tries += retracted
        left = TASK.left_after(problem, accepted[:1])
        alive += left is not None and is_solvable(left, 24)
        solved += TASK.verify(problem, accepted)
    n = len(problems)
    return {"solved": solved / n, "alive": alive / n, "tries": tries / n, "tokens": tokens / n}


def verdicts(model, tokenizer, problems: list) -> tuple[float, float]:
    """The AUC of the policy's p(` dead`) between solvable and dead first steps, and how often the legal first step
    it is surest of is solvable."""
    alive, dead, picks = [], [], 0
    for problem in problems:
        labels = first_steps(problem)
        prompt = str(TASK.render(problem, []))
        p = completion_logps(model, tokenizer, [(prompt + s, MARK + "\n") for s in labels])
        for ok, x in zip(labels.values(), p, strict=True):
            (alive if ok else dead).append(x)
        picks += list(labels.values())[min(range(len(p)), key=p.__getitem__)]
    return auc([-x for x in alive], [-x for x in dead]), picks / len(problems)  # less likely dead ranks higher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="tiny", help="the policy to fine-tune (default: the shipped one)")
    parser.add_argument("--tries", type=int, default=6, help="the most dead first steps a stream retracts")
    parser.add_argument("--epochs", type=float, default=3.0, help="SFT epochs")
    parser.add_argument("--lr", type=float, default=1e-3, help="SFT learning rate")
    args = parser.parse_args()
    torch.manual_seed(0)
    start = resolve(args.policy)
    model, tokenizer = load_causal_lm(start), load_tokenizer(start)
    model.eval()
    test = TASK.problems("test")
    unseen, seen = near_test(TASK.problems("train"))
    train = puzzles("train", test, unseen)
    splits = {"test": test, "unseen": unseen, "seen": seen}
    before = {name: greedy(model, tokenizer, problems) for name, problems in splits.items()}
    data = [r for p in train for r in records(model, tokenizer, p, args.tries)]
    began = time.time()
    cfg = SFTConfig(epochs=args.epochs, lr=args.lr, batch_size=64)
    trained = train_sft(model, tokenizer, data, cfg, quiet=True).model.eval()
    seconds = time.time() - began
    streams = sum(not r["prompt"].endswith(")") for r in data)
    table = Table(title=f"greedy that retracts its own first steps ({streams:,} streams, {len(data) - streams:,} "
                  f"verdicts, {args.epochs:g} epochs at {args.lr:g}: {seconds:.0f} s)")  # fmt: skip
    columns = ("policy", "split", "solved", "vs start", "first step solvable", "tries", "tokens", "verdict AUC", "pick")
    for col in columns:
        table.add_column(col, justify="left" if col in ("policy", "split") else "right")
    for name, was in before.items():
        row = (f"{was['solved']:.0%}", "1.00x", f"{was['alive']:.0%}", "0.00", f"{was['tokens']:.0f}", "-", "-")
        table.add_row("start", name, *row)
    for name, problems in splits.items():
        now, auc_pick = greedy(trained, tokenizer, problems), verdicts(trained, tokenizer, problems)
        ratio = now["solved"] / before[name]["solved"] if before[name]["solved"] else float("nan")
        table.add_row(
            "retracting", name, f"{now['solved']:.0%}", f"{ratio:.2f}x", f"{now['alive']:.0%}", f"{now['tries']:.2f}",
            f"{now['tokens']:.0f}", f"{auc_pick[0]:.3f}", f"{auc_pick[1]:.0%}",
        )  # fmt: skip
    Console(width=160).print(table)


if __name__ == "__main__":
    from entry import run

    run(main)
