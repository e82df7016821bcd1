"""What policies, scorers and trainers share about Hugging Face models: the device, tokenising pieces so their
boundaries are token boundaries, padding, and reading a value / PRM model at each step's tag."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from qstar.errors import QstarError
from qstar.io import is_adapter, replace_folder

# TRL's configs and PEFT's adapters read transformers' `gradient_checkpointing`, which transformers 5 renamed: not
# the user's to fix
warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated", category=FutureWarning)


def best_device() -> str:
    """`cuda` when a GPU is visible, else `cpu`: where qstar loads models, searches and trains by default."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_of(spec: str | None) -> str:
    """A device option read: None or `auto` is `best_device()`, else a torch device this machine has (`cpu`, `cuda`,
    `cuda:1`, `mps`); anything else is a one-line error rather than torch's traceback at the first `.to()`."""
    if spec is None or spec == "auto":
        return best_device()
    try:
        kind = torch.device(spec).type
    except (RuntimeError, TypeError):
        raise QstarError(f"device must be auto, cpu, cuda, cuda:N or mps, not {spec!r}") from None
    visible = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not visible.get(kind, False):
        raise QstarError(f"device {spec!r} is not available on this machine (auto picks {best_device()})")
    return spec


def where(path: str | Path) -> dict:
    """`from_pretrained` arguments for a folder or a `.gguf` file (dequantised by transformers)."""
    path = Path(path)
    if path.suffix == ".gguf":
        return {"pretrained_model_name_or_path": path.parent, "gguf_file": path.name}
    return {"pretrained_model_name_or_path": path}


def load_causal_lm(path: str | Path, trainable: bool = False, **kwargs) -> PreTrainedModel:
    """A causal LM from a folder, a `.gguf` file or a LoRA adapter folder. Adapters are loaded on their base and
    merged into it, unless `trainable`: then the `PeftModel` comes back, its adapters ready to train on."""
    if is_adapter(path):
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(path, is_trainable=trainable, **kwargs)
        return model if trainable else model.merge_and_unload()
    with quiet_loading() if value_head_files(path) else contextlib.nullcontext():  # its value head is not the LM's
        model = AutoModelForCausalLM.from_pretrained(**where(path), **kwargs)
    if Path(path).suffix == ".gguf":  # dequantised, but marked as a GGUF-quantised model that cannot be saved
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        plain = AutoModelForCausalLM.from_config(model.config, dtype=model.dtype)
        plain.load_state_dict(model.state_dict())
        model = plain
    return model


@contextlib.contextmanager
def quiet_loading():
    """transformers' load report off: a shared-trunk checkpoint's value head is an expected extra for the LM."""
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)


def value_head_name(config) -> str:
    """What the architecture's token-classification model calls its head (`score` for Llama, `classifier` for
    GPT-2): the name a value head on a policy takes, so that model class loads it."""
    from accelerate import init_empty_weights

    try:
        with init_empty_weights():
            model = AutoModelForTokenClassification.from_config(config)
    except ValueError:  # transformers has no token-classification model of this architecture
        raise QstarError(
            f"{config.model_type} models cannot hold a value head (transformers has no token-classification one)"
        ) from None
    heads = [
        n for n, m in model.named_children() if n != model.base_model_prefix and next(m.parameters(), None) is not None
    ]
    if len(heads) != 1:
        raise QstarError(f"cannot tell the value head of a {config.model_type} token-classification model: {heads}")
    return heads[0]


def is_causal_lm(config: dict) -> bool:
    """A `config.json` of a causal LM (`LlamaForCausalLM`, `GPT2LMHeadModel`, ...), not of a value model."""
    return (config.get("architectures") or [""])[0].endswith(("ForCausalLM", "LMHeadModel"))


def value_head_files(path: str | Path) -> dict[str, Path]:
    """The value head's weights a policy checkpoint holds (a shared-trunk policy/value model): each name and the
    safetensors file it is in; empty for a plain policy, a value model, an adapter folder or a `.gguf` file."""
    path = Path(path)
    config = path / "config.json"
    if not config.is_file() or not is_causal_lm(json.loads(config.read_text())):
        return {}
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weights = {k: path / f for k, f in json.loads(index.read_text())["weight_map"].items()}
    elif (path / "model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(path / "model.safetensors", "pt") as f:
            weights = dict.fromkeys(f.keys(), path / "model.safetensors")
    else:
        return {}
    try:
        head = value_head_name(AutoConfig.from_pretrained(path)) + "."
    except QstarError:
        return {}  # an architecture that cannot hold one
    return {k: f for k, f in weights.items() if k.startswith(head)}


def is_plain_policy(path: str | Path) -> bool:
    """A causal-LM checkpoint without a value head: a policy, from which no value model can be read as it is."""
    config = Path(path) / "config.json"
    return config.is_file() and is_causal_lm(json.loads(config.read_text())) and not value_head_files(path)


def with_value_head(model: PreTrainedModel, path: str | Path | None = None) -> PreTrainedModel:
    """The causal LM with a two-class value head on its last hidden state (AlphaZero's two heads on one trunk),
    loaded from `path`'s checkpoint where that holds one, else freshly initialised. `save_pretrained` then writes
    one checkpoint that `AutoModelForCausalLM` loads as the policy and `AutoModelForTokenClassification` as the
    value model."""
    from safetensors import safe_open

    name = value_head_name(model.config)
    head = torch.nn.Linear(model.config.hidden_size, 2).to(model.device, model.dtype)
    model._init_weights(head)
    saved = value_head_files(path) if path is not None else {}
    if saved:
        weights = {}
        for key, file in saved.items():
            with safe_open(file, "pt") as f:
                weights[key.removeprefix(name + ".")] = f.get_tensor(key)
        head.load_state_dict(weights)
    model.add_module(name, head)
    model.config.num_labels = 2
    return model


def check_adapters(path: str | Path, lora_config) -> None:
    """A one-line error when PEFT cannot put these LoRA adapters on the model at `path` (tried on empty weights,
    so nothing loads)."""
    from accelerate import init_empty_weights
    from peft import get_peft_model

    if is_adapter(path):
        return  # its adapters exist already
    config = AutoConfig.from_pretrained(**where(path))
    try:
        with init_empty_weights():
            get_peft_model(AutoModelForCausalLM.from_config(config), lora_config)
    except (ValueError, TypeError, NotImplementedError) as e:
        raise QstarError(f"LoRA adapters cannot wrap the {config.model_type} model at {path}: {e}") from None


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer of a folder, a `.gguf` file or an adapter folder (qstar saves one beside the adapters)."""
    return AutoTokenizer.from_pretrained(**where(path))


def encode(tokenizer: PreTrainedTokenizerBase, *pieces: str) -> tuple[list[int], list[int]]:
    """Token ids of the concatenated pieces (after BOS, if the tokenizer has one), and where each piece ends.

    Pieces are tokenised separately so every piece boundary is a token boundary, whatever the tokenizer.
    """
    ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ends = []
    for piece in pieces:
        ids += tokenizer(piece, add_special_tokens=False)["input_ids"]
        ends.append(len(ids))
    return ids, ends


def pad(rows: list[list[int]], value: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, ...]:
    """Right-padded ids and their attention mask (on `device`, the CPU by default)."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


def is_adapter_model(model: PreTrainedModel) -> bool:
    """A model with PEFT adapters on it (what training with LoRA gives back)."""
    return hasattr(model, "merge_and_unload")


def value_model_from(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A value model from a checkpoint: a policy (causal LM) gets a fresh two-class head, a value model loads whole;
    a policy that is a LoRA adapter folder is merged into its base first."""
    if is_adapter(path):
        with tempfile.TemporaryDirectory(prefix="qstar-merged-") as merged:
            load_causal_lm(path).save_pretrained(merged)
            return token_classifier(merged), load_tokenizer(path)
    return token_classifier(path), AutoTokenizer.from_pretrained(path)


def token_classifier(folder: str | Path) -> PreTrainedModel:
    """The two-class token-classification model of a folder; from a policy without transformers' load report,
    since its new head (or a shared trunk's own) is what was asked for."""
    policy = is_causal_lm(json.loads((Path(folder) / "config.json").read_text()))
    with quiet_loading() if policy else contextlib.nullcontext():
        return AutoModelForTokenClassification.from_pretrained(folder, num_labels=2)


def step_inputs(tokenizer: PreTrainedTokenizerBase, prompt: str, steps: list[str], separator: str):
    """Token ids of prompt + steps, and the position of each step's last token (where its value is read)."""
    ids, ends = encode(tokenizer, prompt, *(s + separator for s in steps))
    return ids, [end - 1 for end in ends[1:]] or [ends[0] - 1]


def step_logits(model: PreTrainedModel, rows: list[list[int]], pad_id: int) -> torch.Tensor:
    ids, mask = pad(rows, pad_id, model.device)
    return model(input_ids=ids, attention_mask=mask).logits.float()


@torch.inference_mode()
def step_probabilities(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    paths: list[list[str]],
    tag: str,
    positive: int = 1,
    batch_size: int = 32,
) -> list[list[float]]:
    """Per path, the model's probability of class `positive` at each step's tag (at the prompt's end for an
    empty path): the value / PRM model's reading of every step, in batches."""
    out: list[list[float]] = []
    pad_id = tokenizer.pad_token_id or 0
    for i in range(0, len(paths), batch_size):
        inputs = [
            step_inputs(tokenizer, q, path, tag)
            for q, path in zip(prompts[i : i + batch_size], paths[i : i + batch_size], strict=True)
        ]
        probs = torch.softmax(step_logits(model, [ids for ids, _ in inputs], pad_id), dim=-1)
        out += [probs[row, tags, positive].tolist() for row, (_, tags) in enumerate(inputs)]
    return out


def save_checkpoint(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path) -> None:
    """Write to a temporary folder, then rename: a folder named `path` is always a whole checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    replace_folder(tmp, path)
