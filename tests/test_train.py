"""Data from trees and the three trainers (SFT, step-DPO, value): losses fall and every trainable parameter
changes, for the built-in tiny Llama and for another HF architecture (GPT-2) through the same code."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2ForTokenClassification, GPT2LMHeadModel

from qstar.checkpoints import resolve
from qstar.errors import QstarError
from qstar.policy.tokenizer import char_tokenizer
from qstar.records import node_values, preference_records, search_target_records, sft_records, value_records
from qstar.scorers import RolloutScorer
from qstar.scorers.value import ValueScorer
from qstar.search import get_search, run_search
from qstar.tasks.countdown import Countdown, make_problem
from qstar.train.config import DPOConfig, SFTConfig, ValueConfig
from qstar.train.dpo import train_dpo
from qstar.train.sft import merged_rows, sft_row, train_sft
from qstar.train.value import train_value

TASK = Countdown()
PROBLEMS = [make_problem(f"p{i}", n, t) for i, (n, t) in enumerate([([1, 2, 3], 9), ([2, 5, 6], 17), ([3, 5, 7], 8)])]


@pytest.fixture(scope="module")
def trees():
    from tests.scripted import ScriptedPolicy

    policy = ScriptedPolicy(seed=0, junk=0.1)
    search = get_search("mcts", simulations=40, k=12, stop_on_solution=False)
    return run_search(search, PROBLEMS, TASK, policy, RolloutScorer(TASK, policy, k=2))


def test_records_from_trees(trees):
    sft = sft_records(trees, TASK)
    assert sft and len({(r["prompt"], r["completion"]) for r in sft}) == len(sft)
    for r in sft:
        problem = next(p for p in PROBLEMS if TASK.render(p, []) == r["prompt"])
        assert TASK.verify(problem, r["completion"].splitlines())
    values = value_records(trees, TASK)
    assert values and all(len(r["completions"]) == len(r["labels"]) for r in values)
    assert all(0 <= y <= 1 for r in values for y in r["labels"])
    assert any(0 < y < 1 for r in values for y in r["labels"])  # soft labels
    hard = value_records(trees, TASK, kind="hard")
    assert {y for r in hard for y in r["labels"]} <= {0.0, 1.0}
    for r in values:  # a verified path ends at 1, an illegal or wrong one at 0
        assert r["labels"][-1] in (0.0, 1.0)
    pairs = preference_records(trees, TASK, margin=0.5)
    assert pairs and all(r["chosen"] != r["rejected"] for r in pairs)
    v = node_values(trees[0])
    for node, value in v.items():
        if node.terminal:
            assert value == node.reward


def test_search_targets_are_the_steps_the_search_verified_below(trees):
    """Every one-step target lies on a verified solution of its tree (hard labels); the root has some."""
    targets = search_target_records(trees, TASK)
    solved = [TASK.render(t.problem, s.texts()) for t in trees for s in t.solutions()]
    assert targets and len({(r["prompt"], r["completion"]) for r in targets}) == len(targets)
    for r in targets:
        assert r["completion"].count(TASK.separator) == 1 and r["completion"].endswith(TASK.separator)
        assert any(full.startswith(r["prompt"] + r["completion"]) for full in solved)
    roots = {TASK.render(t.problem, []) for t in trees}
    assert any(r["prompt"] in roots for r in targets) and any(r["prompt"] not in roots for r in targets)


def test_a_step_with_nothing_explored_below_has_no_hard_label_and_is_no_search_target():
    """A value model's score on a step the search never expanded is no verified completion: `hard` leaves the step
    unlabelled, `mc` keeps the score as its estimate (a value label), and with either it is no search target."""
    from qstar.types import Step, Tree

    problem = PROBLEMS[0]
    tree = Tree(problem)
    solved = tree.root.add_child(Step("1 + 2 = 3"), score=0.4)  # scores: a value model's readings
    failed = tree.root.add_child(Step("1 * 2 = 2"), score=0.3)
    unexplored = tree.root.add_child(Step("2 - 1 = 1"), score=0.9)
    solved.add_child(Step("3 * 3 = 9"), terminal=True, reward=1.0)
    solved.add_child(Step("3 + 3 = 6"), terminal=True, reward=0.0)
    failed.add_child(Step("2 + 3 = 5"), terminal=True, reward=0.0)
    hard, mc = node_values(tree, "hard"), node_values(tree, "mc")
    assert (hard[solved], hard[failed], unexplored in hard) == (1.0, 0.0, False)
    assert (mc[solved], mc[unexplored]) == (0.5, 0.9)
    for kind in ("hard", "mc"):  # with mc, too: an estimate above the verified step's share is no target
        targets = search_target_records([tree], TASK, kind)
        assert [r["completion"] for r in targets if r["prompt"] == TASK.render(problem, [])] == ["1 + 2 = 3\n"]


def test_a_state_one_tree_proved_solvable_is_labelled_1_in_every_tree_that_reaches_it():
    """Shared states: tree A verifies a solution through the numbers [3, 3] (left after 1 + 2); tree B, another
    problem of the same target, reaches [3, 3] too (6 / 2) and finds nothing below: with A's proven states B's step
    is 1 and a search target; B's dead step (leaving [3, 4]) stays 0, and so does a finished failed play at a proven
    state. A task without state keys (gsm8k) proves none."""
    from qstar.records import proven_states
    from qstar.tasks import get_task
    from qstar.types import Step, Tree

    a, b = make_problem("a", [1, 2, 3], 9), make_problem("b", [3, 6, 2], 9)
    tree_a, tree_b = Tree(a), Tree(b)
    tree_a.root.add_child(Step("1 + 2 = 3 (left: 3 3)")).add_child(
        Step("3 * 3 = 9 (left: 9)"), terminal=True, reward=1.0
    )
    reached = tree_b.root.add_child(Step("6 / 2 = 3 (left: 3 3)"))
    reached.add_child(Step("3 + 3 = 6 (left: 6)"), terminal=True, reward=0.0)  # its second step was wrong
    dead = tree_b.root.add_child(Step("6 - 2 = 4 (left: 3 4)"))
    dead.add_child(Step("3 + 4 = 7 (left: 7)"), terminal=True, reward=0.0)
    proven = proven_states([tree_a, tree_b], TASK)
    assert TASK.state_key(b, [reached.step.text]) in proven and TASK.state_key(b, [dead.step.text]) not in proven
    alone, shared = node_values(tree_b, "hard"), node_values(tree_b, "hard", TASK, proven)
    assert (alone[reached], alone[dead]) == (0.0, 0.0)
    assert (shared[reached], shared[dead]) == (1.0, 0.0)
    assert shared[reached.children[0]] == 0.0  # a finished play is judged by the verifier alone
    root = TASK.render(b, [])
    targets = [r["completion"] for r in search_target_records([tree_b], TASK, "hard", proven) if r["prompt"] == root]
    assert targets == [reached.step.text + TASK.separator] and not search_target_records([tree_b], TASK, "hard")
    assert proven_states([tree_a], get_task("gsm8k")) == set()


def models(kind: str):
    torch.manual_seed(0)
    tok = char_tokenizer()
    if kind == "tiny":
        from qstar.policy.tiny import new_tiny_model

        return new_tiny_model(hidden=32, layers=1, heads=2, mlp=64)[0], tok
    config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=256)
    return GPT2LMHeadModel(config), tok


def assert_learned(history, before, model):
    losses = [h["loss"] for h in history]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert not torch.equal(before[name], p), f"{name} did not change"


@pytest.mark.parametrize("kind", ["tiny", "gpt2"])
def test_sft_learns(trees, kind):
    model, tok = models(kind)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trained = train_sft(model, tok, sft_records(trees, TASK), SFTConfig(epochs=40, batch_size=4, lr=3e-3), quiet=True)
    assert_learned(trained.history, before, trained.model)


def test_sft_grouped_by_length_learns_on_fewer_padded_tokens(trees):
    """`sampling = group_by_length` batches whole solutions with whole solutions and one-step targets with one-step
    targets: the same records, fewer padded tokens through the model, and it still learns."""
    whole = sft_records(trees, TASK)
    first = [{**r, "completion": r["completion"].split(TASK.separator)[0] + TASK.separator} for r in whole]
    records = (whole + first) * 8  # the sampler sorts groups of 16 records (8 batches of 2) by length
    padded = {}
    for sampling in ("random", "group_by_length"):
        model, tok = models("tiny")
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        shapes = []
        model.register_forward_pre_hook(
            lambda _, args, kwargs, seen=shapes: seen.append(kwargs["input_ids"].shape), with_kwargs=True
        )
        cfg = SFTConfig(epochs=4, batch_size=2, lr=3e-3, sampling=sampling)
        trained = train_sft(model, tok, records, cfg, quiet=True)
        assert_learned(trained.history, before, trained.model)
        assert sum(rows for rows, _ in shapes) == 4 * len(records)
        padded[sampling] = sum(rows * width for rows, width in shapes)
    assert padded["group_by_length"] < 0.95 * padded["random"]  # at best 0.89 with these lengths


def test_merged_rows_train_each_record_inside_the_longest_it_begins():
    rows = [
        {"input_ids": [1, 2, 3], "completion_mask": [0, 1, 1]},  # the first step below the prompt [1]
        {"input_ids": [1, 2, 3, 4, 5], "completion_mask": [0, 0, 0, 1, 1]},  # the next step below it
        {"input_ids": [1, 2, 3], "completion_mask": [0, 0, 1]},  # a record that begins the same (a duplicate)
        {"input_ids": [1, 2, 9], "completion_mask": [0, 0, 1]},  # a sibling: begins no other row
        {"input_ids": [1, 2], "completion_mask": [0, 1]},  # begins both [1, 2, 3, ...] and [1, 2, 9]
    ]
    assert merged_rows(rows) == [  # in the order of their ids
        {"input_ids": [1, 2, 3, 4, 5], "completion_mask": [0, 1, 1, 1, 1]},
        {"input_ids": [1, 2, 9], "completion_mask": [0, 0, 1]},
    ]
    assert rows[1]["completion_mask"] == [0, 0, 0, 1, 1]  # the records are left as they were


def test_sft_on_merged_prefixes_takes_each_loss_term_once_on_fewer_tokens(trees):
    """A one-step search target is the start of the solution through it: merged, the first step's loss is the mean
    of the distinct (context, token) terms the records hold, through one row a solution, and training learns."""
    whole = sft_records(trees, TASK)
    first = [{**r, "completion": r["completion"].split(TASK.separator)[0] + TASK.separator} for r in whole]
    records = whole + first + whole[:1]
    model, tok = models("tiny")
    terms = {}  # (the tokens before, the token) -> its NLL under the untrained model
    with torch.no_grad():
        for r in records:
            row = sft_row(tok, r)
            ids = torch.tensor([row["input_ids"]])
            nll = torch.nn.functional.cross_entropy(model(ids).logits[0, :-1], ids[0, 1:], reduction="none")
            for i, keep in enumerate(row["completion_mask"][1:]):
                if keep:
                    terms[tuple(row["input_ids"][: i + 2])] = nll[i].item()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    shapes = []
    model.register_forward_pre_hook(
        lambda _, args, kwargs, seen=shapes: seen.append(kwargs["input_ids"].shape), with_kwargs=True
    )
    cfg = SFTConfig(epochs=30, batch_size=len(whole), lr=3e-3, merge_prefixes=True)
    trained = train_sft(model, tok, records, cfg, quiet=True)
    assert trained.history[0]["loss"] == pytest.approx(sum(terms.values()) / len(terms), rel=1e-4)
    assert all(rows == len(whole) for rows, _ in shapes)  # one row a distinct solution, none for the rest
    assert_learned(trained.history, before, trained.model)


def test_the_shared_trunk_merges_sft_prefixes_within_each_pass(trees):
    """With `merge_prefixes` the shared trunk's SFT rows are the distinct solutions, a search target inside the
    solution through it, and every pass holds each once; the value rows are as they were."""
    from qstar.train.config import PolicyValueConfig
    from qstar.train.policy_value import policy_value_dataset

    whole = sft_records(trees, TASK)
    first = [{**r, "completion": r["completion"].split(TASK.separator)[0] + TASK.separator} for r in whole]
    values = value_records(trees, TASK)
    _, tok = models("tiny")

    def rows(merge: bool) -> list[dict]:
        cfg = PolicyValueConfig(epochs=2, value_epochs=1, merge_prefixes=merge)
        return list(policy_value_dataset(tok, whole + first, values, TASK.separator, cfg))

    plain, merged = rows(False), rows(True)
    assert len(plain) == 2 * 2 * len(whole) + len(values)
    assert len(merged) == 2 * len(whole) + len(values)
    assert [r for r in merged if r["tags"]] == [r for r in plain if r["tags"]]
    solutions = {tuple(sft_row(tok, r)["input_ids"]): sft_row(tok, r)["completion_mask"] for r in whole}
    for r in merged[: 2 * len(whole)]:
        assert r["completion_mask"] == solutions[tuple(r["input_ids"])]  # the first step was trained already


def test_dpo_takes_no_length_grouping():
    with pytest.raises(ValueError, match="sampling random"):
        DPOConfig(sampling="group_by_length")


@pytest.mark.parametrize("kind", ["tiny", "gpt2"])
def test_dpo_learns(trees, kind):
    model, tok = models(kind)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    pairs = preference_records(trees, TASK, margin=0.3)
    trained = train_dpo(model, tok, pairs, DPOConfig(epochs=30, batch_size=8, lr=3e-3), quiet=True)
    assert_learned(trained.history, before, trained.model)


@pytest.mark.parametrize("kind", ["tiny", "gpt2"])
def test_value_model_learns_to_rank(trees, kind, tmp_path):
    if kind == "tiny":
        from qstar.models import value_model_from
        from qstar.policy.tiny import new_tiny_model

        torch.manual_seed(0)
        policy, tok = new_tiny_model(hidden=32, layers=1, heads=2, mlp=64)
        policy.save_pretrained(tmp_path)
        tok.save_pretrained(tmp_path)
        model, tok = value_model_from(tmp_path)  # the policy's body with a fresh two-class head
    else:
        torch.manual_seed(0)
        tok = char_tokenizer()
        model = GPT2ForTokenClassification(
            GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, num_labels=2)
        )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    records = value_records(trees, TASK)
    trained = train_value(model, tok, records, ValueConfig(epochs=8, batch_size=8, lr=3e-3), quiet=True)
    assert_learned(trained.history, before, trained.model)
    model.save_pretrained(tmp_path / "value")
    tok.save_pretrained(tmp_path / "value")
    scorer = ValueScorer(TASK, path=str(tmp_path / "value"), ground_truth=False)
    good = [r for r in records if r["labels"][0] > 0]
    bad = [r for r in records if r["labels"][0] == 0]
    problem = {TASK.render(p, []): p for p in PROBLEMS}
    v_good = scorer.values([problem[r["prompt"]] for r in good], [r["completions"][:1] for r in good])
    v_bad = scorer.values([problem[r["prompt"]] for r in bad], [r["completions"][:1] for r in bad])
    assert sum(v_good) / len(v_good) > sum(v_bad) / len(v_bad)


@pytest.mark.parametrize("trainer", ["sft", "dpo"])
def test_lora_trains_the_adapters_only(trees, trainer):
    """With PEFT LoRA adapters the loss falls, every adapter weight changes and no base weight does; DPO's
    reference is the base with the adapters off."""
    from peft import get_peft_model

    from qstar.train.config import LoRAConfig

    model, tok = models("tiny")
    model = get_peft_model(model, LoRAConfig(r=4, alpha=8).peft())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    if trainer == "sft":
        records, cfg = sft_records(trees, TASK), SFTConfig(epochs=40, batch_size=4, lr=3e-3)
        trained = train_sft(model, tok, records, cfg, quiet=True)
    else:
        records, cfg = preference_records(trees, TASK, margin=0.3), DPOConfig(epochs=30, batch_size=8, lr=3e-3)
        trained = train_dpo(model, tok, records, cfg, quiet=True)
    losses = [h["loss"] for h in trained.history]
    assert sum(losses[-5:]) < sum(losses[:5])
    after = dict(trained.model.named_parameters())
    adapters = [n for n in before if "lora_" in n]
    assert adapters and all(not torch.equal(before[n], after[n]) for n in adapters)
    assert all(torch.equal(before[n], after[n]) for n in before if "lora_" not in n)


def test_dpo_steps_end_at_the_separator_not_at_end_of_sequence(trees):
    """TRL appends EOS to chosen and rejected; qstar's pairs end at the step separator."""
    from qstar.train.dpo import dpo_dataset

    tok = char_tokenizer()
    pairs = preference_records(trees, TASK, margin=0.3)
    rows = dpo_dataset(tok, pairs)
    newline = tok.convert_tokens_to_ids("\n")
    for row in rows:
        for key in ("chosen_ids", "rejected_ids"):
            assert row[key][-1] == newline and tok.eos_token_id not in row[key]


def records_for(kind: str) -> list[dict]:
    """Small records of each kind from solved countdown problems (the solver stands in for a search here)."""
    from qstar.tasks.countdown import solve

    rows = []
    for numbers, target in ([1, 2, 3], 9), ([2, 5, 6], 17), ([3, 5, 7], 8), ([4, 6, 1], 10):
        problem = make_problem("p", numbers, target)
        prompt, steps = TASK.render(problem, []), solve(numbers, target)[0]
        if kind == "sft":
            rows.append({"prompt": prompt, "completion": "".join(s + "\n" for s in steps)})
        elif kind == "dpo":
            rows.append({"prompt": prompt, "chosen": steps[0] + "\n", "rejected": "9 * 9 = 81 (left: 81)\n"})
        else:
            rows.append({"prompt": prompt, "completions": steps, "labels": [1.0] * len(steps)})
            rows.append({"prompt": prompt, "completions": ["9 * 9 = 81 (left: 81)"], "labels": [0.0]})
    return rows * 4


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sft", "dpo", "value"])
def test_each_trainer_runs_on_two_processes(tmp_path, kind):
    """`qstar train` under torchrun: two processes train one model together (DDP) and the main one writes the
    checkpoint. (`accelerate launch` starts the same thing on GPUs; on this CPU-only machine its --cpu
    --num_processes 2 starts a single process, so the test launches with torchrun.)"""
    import os
    import sys

    from transformers import AutoConfig

    from qstar.io import write_jsonl

    records = tmp_path / f"{kind}.jsonl"
    write_jsonl(records, records_for(kind))
    out = tmp_path / "out"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = ["-m", "qstar", "train", kind, "--model", "tiny-rules", "--records", str(records)]
    args += ["--output-dir", str(out), "--epochs", "2", "--batch-size", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launch, *args], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "qstar_train.json").read_text())
    assert summary["processes"] == 2 and summary["records"] == len(records_for(kind)) and summary["history"]
    assert (out / "model.safetensors").is_file()
    expected = "LlamaForTokenClassification" if kind == "value" else "LlamaForCausalLM"
    assert AutoConfig.from_pretrained(out).architectures == [expected]


@pytest.mark.parametrize("launched", [False, True])
def test_improve_trains_the_value_model_at_the_tasks_separator(trees, tmp_path, monkeypatch, launched):
    """The value stage of `qstar improve` reads each step where the task's steps end, in this process and under a
    launcher (here the interpreter itself: `python -m qstar train value ...`, one process)."""
    import json

    from qstar.io import write_jsonl
    from qstar.pipelines import fit
    from qstar.pipelines.improve_config import ImproveConfig

    folder = tmp_path / "iter-1"
    folder.mkdir()
    write_jsonl(folder / "value.jsonl", value_records(trees, TASK)[:8])
    run = ImproveConfig(launcher=sys.executable if launched else "", value=ValueConfig(epochs=1, batch_size=8))
    read_at = []
    from qstar.train import by_kind

    real = by_kind.train_value
    monkeypatch.setattr(by_kind, "train_value", lambda *args: read_at.append(args[4]) or real(*args))
    fit.fit("value", fit.saved_base(Path(resolve("tiny-rules")), tmp_path), folder / "value", run, "cpu", " ;")
    if launched:
        read_at.append(json.loads((folder / "value" / "qstar_train.json").read_text())["separator"])
    assert read_at == [" ;"] and (folder / "value" / "model.safetensors").is_file()


def test_a_checkpoint_replaces_a_folder_left_by_a_killed_run(tmp_path):
    from transformers import AutoConfig

    from qstar.models import save_checkpoint

    model, tok = models("gpt2")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "stale.bin").write_bytes(b"half")
    save_checkpoint(model, tok, tmp_path / "adapter")
    assert not (tmp_path / "adapter" / "stale.bin").exists() and not (tmp_path / "adapter.tmp").exists()
    assert AutoConfig.from_pretrained(tmp_path / "adapter").model_type == "gpt2"
    from qstar.io import UMASK

    modes = {f.name: f.stat().st_mode & 0o777 for f in (tmp_path / "adapter").iterdir()}
    assert modes["model.safetensors"] == 0o666 & ~UMASK and len(set(modes.values())) == 1  # none left private


def test_training_runs_leave_no_folder_behind(tmp_path):
    """The Trainers save nothing in their output_dir: a process uses one temporary folder, removed when it exits."""
    script = "\n".join(
        [
            "import os, tempfile",
            "from qstar.train.common import training_arguments",
            "from qstar.train.config import SFTConfig",
            f"tempfile.tempdir = {str(tmp_path)!r}",
            "folders = {training_arguments(SFTConfig())['output_dir'] for _ in range(3)}",
            "assert len(folders) == 1 and all(os.path.isdir(f) for f in folders), folders",
        ]
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["tiny", "gpt2"])
def test_a_shared_trunk_learns_both_heads_and_loads_as_either_model(trees, kind, tmp_path):
    """AlphaZero's two heads: one trainer fits the LM head to the verified solutions and the value head to the step
    labels; its one checkpoint loads as the policy and as the value model, each computing what it did in training."""
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    from qstar.models import load_causal_lm, value_head_files, with_value_head
    from qstar.train.config import PolicyValueConfig
    from qstar.train.policy_value import train_policy_value

    model, tok = models(kind)
    model = with_value_head(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    sft, values = sft_records(trees, TASK), value_records(trees, TASK)
    cfg = PolicyValueConfig(epochs=12, value_epochs=12, batch_size=8, lr=3e-3)
    trained = train_policy_value(model, tok, sft, values, cfg, TASK.separator, quiet=True)
    assert_learned(trained.history, before, trained.model)

    trained.model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert value_head_files(tmp_path) and not value_head_files(tmp_path.parent)
    ids = torch.tensor([tok(sft[0]["prompt"] + sft[0]["completion"])["input_ids"]])
    hidden = trained.model.base_model(input_ids=ids).last_hidden_state
    policy = load_causal_lm(tmp_path).eval()
    assert torch.allclose(policy(input_ids=ids).logits, trained.model(input_ids=ids).logits, atol=1e-5)
    assert type(policy) is type(AutoModelForCausalLM.from_pretrained(tmp_path))
    value = AutoModelForTokenClassification.from_pretrained(tmp_path).eval()
    head = value.score if kind == "tiny" else value.classifier
    assert torch.allclose(value(input_ids=ids).logits, head(hidden), atol=1e-5)
    assert torch.equal(
        with_value_head(load_causal_lm(tmp_path), tmp_path).state_dict()[
            f"{'score' if kind == 'tiny' else 'classifier'}.weight"
        ],
        head.weight,
    )

    with pytest.raises(QstarError, match="without a value head"):
        ValueScorer(TASK, path="tiny-rules")  # never a random head read as values
    scorer = ValueScorer(TASK, path=str(tmp_path), ground_truth=False)  # the value head ranks first steps
    problem = {TASK.render(p, []): p for p in PROBLEMS}
    good = [r for r in values if r["labels"][0] > 0]
    bad = [r for r in values if r["labels"][0] == 0]
    v_good = scorer.values([problem[r["prompt"]] for r in good], [r["completions"][:1] for r in good])
    v_bad = scorer.values([problem[r["prompt"]] for r in bad], [r["completions"][:1] for r in bad])
    assert sum(v_good) / len(v_good) > sum(v_bad) / len(v_bad)


def test_a_warm_up_that_spans_the_whole_run_is_warned(capsys):
    """A short run (a few DPO steps) under the default 20-step warm-up never reaches its learning rate: said."""
    from types import SimpleNamespace

    from qstar.train.common import RichProgress

    progress = RichProgress("dpo", quiet=True)
    for warmup, steps in ((20, 2), (20, 20), (4, 40)):
        progress.on_train_begin(
            SimpleNamespace(warmup_steps=warmup), SimpleNamespace(is_world_process_zero=True, max_steps=steps), None
        )
    err = capsys.readouterr().err
    assert err.count("qstar: warning: dpo: a warm-up of 20 optimiser steps spans the whole run") == 2
    assert "of 2:" in err and "of 20:" in err and "of 40" not in err


@pytest.mark.parametrize(
    ("kind", "row", "message"),
    [
        ("value", {"prompt": "p", "completions": ["a", "b"], "labels": [0.5]}, "one per step (2 here)"),
        ("value", {"prompt": "p", "completions": ["a", "b"], "labels": [1, 0, 1]}, "one per step (2 here)"),
        ("value", {"prompt": "p", "completions": ["a"], "labels": ["yes"]}, "labels must be a list of numbers"),
        ("value", {"prompt": "p", "completions": ["a"], "labels": [None]}, "labels must be a list of numbers"),
        ("value", {"prompt": "p", "completions": ["a"], "labels": [True]}, "labels must be a list of numbers"),
        ("value", {"prompt": "p", "completions": ["a", "b"], "labels": [2.0, -1]}, "labels must be in [0, 1]"),
        ("value", {"prompt": "p", "completions": [], "labels": []}, "completions must be a non-empty list"),
        ("value", {"prompt": "p", "completions": ["a\nb"], "labels": [1]}, "step 1 holds the separator '\\n'"),
        ("value", {"prompt": "p", "completion": "a"}, "(completions is missing)"),
        ("sft", {"prompt": "p", "completion": ["a"]}, "prompt, completion must be text"),
        ("dpo", {"prompt": 3, "chosen": "a", "rejected": "b"}, "prompt, chosen, rejected must be text"),
    ],
)
def test_a_record_the_trainer_would_misread_is_one_line_naming_its_line(tmp_path, kind, row, message):
    """The second row is the bad one: each row is checked, not the first only, before any model loads."""
    from qstar.pipelines.train import read_records

    good = {"sft": {"prompt": "p", "completion": "a"}, "dpo": {"prompt": "p", "chosen": "a", "rejected": "b"}}
    path = tmp_path / "records.jsonl"
    first = good.get(kind, {"prompt": "p", "completions": ["a"], "labels": [1]})
    path.write_text(f"{json.dumps(first)}\n{json.dumps(row)}\n")
    with pytest.raises(QstarError, match=re.escape(f"{path}:2: ")) as error:
        read_records(kind, path)
    assert message in str(error.value)
    path.write_text(f"{json.dumps(first)}\n")
    assert read_records(kind, path) == [first]
