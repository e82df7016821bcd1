"""The weights behind an OpenAI-compatible server, when `qstar improve` trains them: check that a model folder is
what the server serves, and point the server at newly trained weights so the next data search samples from them.

Reload hooks (`how`):

- `vllm-lora`: vLLM's runtime LoRA loading, `POST /v1/load_lora_adapter` (start vLLM with `--enable-lora` and
  `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`); later requests name the adapter as their model. Needs adapters.
- `sglang`: SGLang's `POST /update_weights_from_disk` with a full checkpoint (the served model's name stays).
- any other text: a shell command, `{path}` replaced by the checkpoint folder and `{name}` by a name for it (e.g. a
  script that restarts llama.cpp's server on the new weights); qstar then waits until the server answers again.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

import httpx

from qstar.errors import QstarError
from qstar.io import is_adapter, model_folder
from qstar.models import load_tokenizer
from qstar.policy.openai import OpenAIPolicy, RequestFailed, server_message

HOOKS = ("vllm-lora", "sglang")
PROBES = (  # texts whose token counts tell tokenizer families apart: prose, digits, code, accents, symbols
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "12345 \u00d7 678 = 8369910; def f(x): return x ** 2  # Überprüfung ✓ {'key': [1, 2]} → naïve café",
)


def check_hook(how: str) -> None:
    """A reload hook is a known name or a command that names the checkpoint (`{path}`)."""
    if how and how not in HOOKS and "{path}" not in how:
        raise QstarError(f"reload must be {' or '.join(HOOKS)}, or a shell command holding {{path}}, not {how!r}")


def check_same_tokenizer(policy: OpenAIPolicy, model: str | Path) -> None:
    """Refuse a model folder whose tokenizer reads the probe texts differently from the server (another model
    family): the server's `usage.prompt_tokens` against the folder's tokenizer, a start-of-text token allowed."""
    tokenizer = load_tokenizer(model_folder(model))  # a path that holds no model is a one-line error
    for text in PROBES:
        try:
            served = policy.prompt_tokens(text)
        except RequestFailed as error:
            raise QstarError(f"cannot check the server's tokenizer: {error}") from None
        if served is None:  # the server reports no usage: nothing to compare
            return
        ours = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if served - ours not in (0, 1):
            raise QstarError(
                f"train_model {model} does not match the server's model {policy.model}: their tokenizers read the "
                f"same text as {ours} and {served} tokens (train the weights the server serves)"
            )


def reload_server(policy: OpenAIPolicy, how: str, checkpoint: Path, name: str, wait: float = 600.0) -> str | None:
    """Make the server behind `policy` serve `checkpoint`; returns the model name requests use from now on (None:
    the name they used before)."""
    checkpoint = checkpoint.resolve()
    adapters = is_adapter(checkpoint)
    if how == "vllm-lora":
        if not adapters:
            raise QstarError(f"reload vllm-lora loads LoRA adapters; {checkpoint} holds full weights (train with lora)")
        body = {"lora_name": name, "lora_path": str(checkpoint)}
        hint = "start vLLM with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"
        ask(policy, "/v1/load_lora_adapter", body, hint)
        return name
    if how == "sglang":
        if adapters:
            raise QstarError(f"reload sglang loads full weights; {checkpoint} holds adapters (add merge)")
        reply = ask(policy, "/update_weights_from_disk", {"model_path": str(checkpoint)}, "is it an SGLang server?")
        if not reply.get("success", True):
            raise QstarError(f"SGLang did not load {checkpoint}: {reply.get('message', reply)}")
        return None
    command = how.replace("{path}", shlex.quote(str(checkpoint))).replace("{name}", shlex.quote(name))
    done = subprocess.run(command, shell=True, capture_output=True, text=True)
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).split())[-300:]
        raise QstarError(f"the reload command exited with {done.returncode}: {tail}")
    deadline = time.monotonic() + wait
    while True:  # a restarted server answers again when its model has loaded
        try:
            policy.first_model()
            return None
        except RequestFailed as error:
            if time.monotonic() > deadline:
                raise QstarError(f"the server did not answer within {wait:g}s of the reload: {error}") from None
            time.sleep(1.0)


def ask(policy: OpenAIPolicy, path: str, body: dict, hint: str) -> dict:
    """POST to the server's own API (not under /v1 for SGLang); a refusal is a one-line error with `hint`."""
    url = policy.root + path
    try:
        response = policy.client.post(url, json=body)
    except httpx.HTTPError as error:
        raise QstarError(f"cannot reach {url}: {error}") from None
    if response.status_code >= 400 and "already been loaded" not in response.text:  # vLLM, on a resumed run
        raise QstarError(f"HTTP {response.status_code} from {url}: {server_message(response)} ({hint})")
    try:
        reply = response.json()
    except ValueError:
        return {}
    return reply if isinstance(reply, dict) else {}
