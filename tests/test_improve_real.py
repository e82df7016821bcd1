"""The whole loop on a real pretrained model: SmolLM2-135M-Instruct (the GGUF the tests already use) through
`qstar improve --task gsm8k --lora` on the CPU, one small iteration, and a run killed after its search resumed."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from qstar.io import load_trees, read_jsonl, write_jsonl
from qstar.records import sft_records
from qstar.tasks import get_task

pytestmark = pytest.mark.slow  # a real 135M model trained and searched on the CPU

EASY = Path(__file__).parent / "data" / "easy_word_problems.jsonl"


def improve_args(gguf: Path, run: Path) -> list[str]:
    return [
        "improve", "--task", "gsm8k", "--policy", str(gguf), "--problems", str(EASY), "--lora", "--lora-r", "4",
        "--iterations", "1", "--train-problems", "8", "--data-search", "greedy", "--eval-limit", "2",
        "--eval-search", "greedy", "--batch-size", "8",
        "--sft-epochs", "2", "--sft-batch-size", "4", "--dpo-batch-size", "4", "--value-epochs", "1",
        "--value-batch-size", "4", "--max-value-records", "8", "--run-dir", str(run),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def run(smollm2_gguf, qstar, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("real") / "run"
    out = qstar(*improve_args(smollm2_gguf, folder), timeout=1500)
    assert out.returncode == 0, out.stderr[-3000:]
    return folder


def test_lora_improve_writes_the_run_and_trains_the_adapters_only(run):
    for name in ("config.json", "metrics.jsonl", "iter-1/trees.jsonl.gz", "iter-1/sft.jsonl", "iter-1/eval.json"):
        assert (run / name).is_file(), name
    assert read_jsonl(run / "iter-1" / "sft.jsonl")  # greedy solves 4 of the 8 easy problems: records exist
    history = json.loads((run / "iter-1" / "sft_history.json").read_text())
    assert history and all(h["loss"] > 0 for h in history)
    adapter = run / "iter-1" / "policy"
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(run / "base")
    weights = load_file(adapter / "adapter_model.safetensors")
    assert weights and all("lora_" in name for name in weights)  # adapters only; the base stays in base/
    assert all(w.abs().sum() > 0 for name, w in weights.items() if "lora_B" in name)  # B starts at zero: trained
    base = load_file(run / "base" / "model.safetensors")
    assert all(w.dtype == torch.float32 for w in base.values())


def test_the_lora_checkpoint_loads_for_evaluation(run, qstar):
    out = qstar("eval", "--task", "gsm8k", "--limit", "1", "--policy", str(run / "iter-1" / "policy"), "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["n"] == 1


def test_a_run_killed_after_its_search_resumes_from_the_trees(smollm2_gguf, qstar_command, tmp_path):
    folder = tmp_path / "run"
    args = [*qstar_command, *improve_args(smollm2_gguf, folder)]
    proc = subprocess.Popen(args, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
    trees = folder / "iter-1" / "trees.jsonl.gz"
    deadline = time.time() + 900
    while not trees.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert trees.exists() and not (folder / "iter-1" / "policy").exists()
    searched = trees.read_bytes()
    done = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert trees.read_bytes() == searched  # not searched again
    task = get_task("gsm8k")
    assert read_jsonl(folder / "iter-1" / "sft.jsonl") == sft_records(load_trees(trees), task)
    assert (folder / "iter-1" / "policy" / "adapter_config.json").is_file()


def test_lora_training_of_a_gguf_saves_the_base_its_adapters_name(smollm2_gguf, qstar, tmp_path):
    records, out = tmp_path / "sft.jsonl", tmp_path / "out"
    write_jsonl(records, [{"prompt": "Question: What is 2 + 3?\nAnswer:", "completion": " 2 + 3 = 5\n"}] * 4)
    done = qstar(
        "train", "sft", "--model", str(smollm2_gguf), "--records", str(records), "--output-dir", str(out),
        "--lora", "--lora-r", "2", "--batch-size", "4", "--epochs", "2", timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(out / "base")
    base = load_file(out / "base" / "model.safetensors")
    assert base and not any("lora_" in name for name in base)  # the base alone, its adapters beside it
    evaluated = qstar("eval", "--task", "gsm8k", "--limit", "1", "--policy", str(out), "--json")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
