"""Policies by name: `tiny` (the shipped checkpoint) or a folder holding a tiny-model checkpoint."""

from __future__ import annotations

from pathlib import Path

from qstar.checkpoints import DEFAULT_POLICY
from qstar.policy.base import Policy
from qstar.tasks.base import QstarError


def load_policy(spec: str = "tiny", seed: int = 0) -> Policy:
    from qstar.policy.tiny import TinyPolicy

    path = DEFAULT_POLICY if spec == "tiny" else Path(spec)
    if not (path / "config.json").is_file():
        raise QstarError(f"no model checkpoint at {path} (expected a folder with config.json)")
    return TinyPolicy.from_pretrained(path, seed=seed)


__all__ = ["Policy", "load_policy"]
