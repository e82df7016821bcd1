"""Policies by spec: `tiny` (the shipped checkpoint), a model folder or `.gguf` file, an `http(s)://` URL, `openai`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from qstar.checkpoints import DEFAULT_POLICY
from qstar.policy.base import BackendError, Policy
from qstar.tasks.base import QstarError


def is_tiny_checkpoint(path: Path) -> bool:
    """qstar's own tiny model: a Llama over its character vocabulary (WordLevel tokenizer)."""
    try:
        return json.loads((path / "tokenizer.json").read_text())["model"]["type"] == "WordLevel"
    except (OSError, KeyError, ValueError):
        return False


def load_policy(
    spec: str = "tiny",
    seed: int = 0,
    model: str | None = None,
    chat: bool | None = None,
    api_key: str | None = None,
) -> Policy:
    """`tiny` or a tiny-model folder → the built-in fast decoder; another folder or a `.gguf` file → any
    transformers causal LM (HF backend); `http(s)://...`, or `openai` for `$OPENAI_BASE_URL` → an
    OpenAI-compatible server serving `model` (else `$OPENAI_MODEL`, else the server's first; key: `api_key`,
    else `$OPENAI_API_KEY`)."""
    if spec == "openai" or spec.startswith(("http://", "https://")):
        from qstar.policy.openai import OpenAIPolicy

        url = None if spec == "openai" else spec
        model = model or os.environ.get("OPENAI_MODEL")
        return OpenAIPolicy.from_spec(url, model=model, chat=bool(chat), seed=seed, api_key=api_key)
    path = DEFAULT_POLICY if spec == "tiny" else Path(spec)
    if path.suffix != ".gguf" and not (path / "config.json").is_file():
        raise QstarError(f"no model at {path} (expected a folder with config.json, a .gguf file, or a URL)")
    if is_tiny_checkpoint(path):
        from qstar.policy.tiny import TinyPolicy

        return TinyPolicy.from_pretrained(path, seed=seed)
    from qstar.policy.hf import HFPolicy

    return HFPolicy.from_pretrained(path, chat=chat, seed=seed)


__all__ = ["BackendError", "Policy", "load_policy"]
