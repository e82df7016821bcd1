"""Policies (backends) by name, and `load_policy`, the one place a policy spec becomes a policy.

A spec is a registered backend (`tiny`, `hf`, `openai`, or one a plug-in adds), a shipped checkpoint's name
(`tiny-rules`, `tiny-improved`), a model folder or `.gguf` file, or an `http(s)://` URL of an OpenAI-compatible
server. Installed packages add backends through the `qstar.policies` entry-point group, a user's file through
`--plugin`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qstar.errors import BackendError
from qstar.io import policy_folder
from qstar.policy.base import POLICIES, Policy, register_policy


def is_tiny_checkpoint(path: Path) -> bool:
    """qstar's own tiny model: a Llama over its character vocabulary (WordLevel tokenizer)."""
    try:
        return json.loads((path / "tokenizer.json").read_text())["model"]["type"] == "WordLevel"
    except (OSError, KeyError, ValueError):
        return False


@register_policy("tiny")
def tiny(
    path: str = "tiny",
    seed: int = 0,
    device: str | None = None,
    max_step_tokens: int = 40,
    prefix_cache_mb: int = 512,
    legal_steps: bool = False,
) -> Policy:
    """qstar's built-in tiny model on its fast KV-cached decoder.

    Args:
        path: a checkpoint folder, or a shipped one's name (`tiny` is the improved one, `tiny-rules` the start).
        seed: seeds the sampling (each prefix draws from its own stream of it).
        device: `cpu`, `cuda`, `cuda:N`, `mps` or `auto` (the default: a GPU when one is visible).
        max_step_tokens: the most tokens one step may take; a request is paid for at this worst case.
        prefix_cache_mb: bounds the keys and values kept for the prompts a search asks next (0 turns it off).
        legal_steps: write only the steps the task lists as legal next (countdown, game24: its move generator).
    """
    from qstar.policy.tiny import TinyPolicy

    return TinyPolicy.from_pretrained(
        policy_folder(path),
        device=device,
        seed=seed,
        max_step_tokens=max_step_tokens,
        prefix_cache_mb=prefix_cache_mb,
        legal_steps=legal_steps,
    )


@register_policy("hf")
def hf(
    path: str,
    seed: int = 0,
    chat: bool | None = None,
    device: str | None = None,
    max_step_tokens: int = 96,
    batch_size: int = 16,
    share_prefix: bool = True,
    legal_steps: bool = False,
) -> Policy:
    """Any transformers causal LM from a folder or a `.gguf` file; CUDA in bf16 when visible, else CPU fp32.

    Args:
        path: a model folder (`config.json` and weights, or a PEFT adapter) or a `.gguf` file.
        seed: seeds the sampling (each prefix draws from its own stream of it).
        chat: wrap prompts in the model's chat template (default: when the tokenizer has one).
        device: `cpu`, `cuda`, `cuda:N`, `mps` or `auto` (the default: a GPU when one is visible).
        max_step_tokens: the most tokens one step may take; a request is paid for at this worst case.
        batch_size: prefixes decoded together in one forward pass.
        share_prefix: compute the prompt a batch shares (a task's worked examples) once and reuse its cache.
        legal_steps: write only the steps the task lists as legal next (countdown, game24: its move generator).
    """
    from qstar.policy.hf import HFPolicy

    return HFPolicy.from_pretrained(
        path,
        device=device,
        chat=chat,
        seed=seed,
        max_step_tokens=max_step_tokens,
        batch_size=batch_size,
        share_prefix=share_prefix,
        legal_steps=legal_steps,
    )


@register_policy("openai")
def openai(
    base_url: str | None = None,
    model: str | None = None,
    chat: bool | None = None,
    api_key: str | None = None,
    seed: int = 0,
    max_step_tokens: int = 128,
    concurrency: int = 8,
    retries: int = 3,
    timeout: float = 60.0,
    legal_steps: bool = False,
    constraint: str = "vllm",
) -> Policy:
    """An OpenAI-compatible server (vLLM, SGLang, llama.cpp, a hosted API).

    Args:
        base_url: the server's URL, e.g. `http://localhost:8000/v1` (default: `$OPENAI_BASE_URL`).
        model: the model to ask for (default: `$OPENAI_MODEL`, else the first the server lists).
        chat: ask `/v1/chat/completions` (the steps an assistant message the model continues) instead of
            `/v1/completions`.
        api_key: the bearer token (default: `$OPENAI_API_KEY`).
        seed: seeds sent with the requests, one per prefix and sample (servers that honour them repeat).
        max_step_tokens: the most tokens one step may take; a request is paid for at this worst case.
        concurrency: requests in flight at once.
        retries: retries of a failed request (no connection, a timeout, 429, 5xx, a malformed reply) before the
            search fails.
        timeout: seconds one request may take.
        legal_steps: keep the steps to the task's legal next ones through the server's constrained decoding.
        constraint: how to ask for that: `vllm` (`structured_outputs`), `vllm-guided` (before 0.12), `sglang`,
            `llama.cpp`.
    """
    import os

    from qstar.policy.openai import OpenAIPolicy

    model = model or os.environ.get("OPENAI_MODEL")
    return OpenAIPolicy.from_spec(
        base_url,
        model=model,
        chat=bool(chat),
        seed=seed,
        api_key=api_key,
        max_step_tokens=max_step_tokens,
        concurrency=concurrency,
        retries=retries,
        timeout=timeout,
        legal_steps=legal_steps,
        constraint=constraint,
    )


def policy_name(spec: str) -> tuple[str, dict[str, Any]]:
    """The backend a spec names and the options the spec itself sets (`path`, `base_url`)."""
    if spec in POLICIES:
        return spec, {}
    if spec.startswith(("http://", "https://")):
        return "openai", {"base_url": spec}
    path = policy_folder(spec)
    return ("tiny" if is_tiny_checkpoint(path) else "hf"), {"path": str(path)}


def load_policy(spec: str = "tiny", **options: Any) -> Policy:
    """The policy `spec` names (see the module's docstring). `options` go to the backend; those it does not take
    among `seed`, `chat`, `model`, `api_key` and `device` (the command line's) are left out, and None means the
    backend's default."""
    name, given = policy_name(spec)
    takes = POLICIES.options(name)
    shared = ("seed", "chat", "model", "api_key", "device")
    options = {k: v for k, v in options.items() if v is not None and (k in takes or k not in shared)}
    return POLICIES.build(name, **{**given, **options})


__all__ = ["POLICIES", "BackendError", "Policy", "load_policy", "policy_name", "register_policy"]
