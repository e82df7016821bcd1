"""Shared fixtures: the shipped policy (loaded once) and a small random-init model."""

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
