"""Checkpoints shipped inside the package (Hugging Face format), so everything works offline, and the one place
their names are turned into folders."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
TINY_RULES = HERE / "tiny-rules"  # rules-only policy from `qstar pretrain` (see README for the command)
TINY_IMPROVED = HERE / "tiny-improved"  # the policy after self-improvement (`configs/`, see README)
TINY_VALUE = HERE / "tiny-value"  # the value model trained beside it (LlamaForTokenClassification, 2 classes)
DEFAULT_POLICY = TINY_IMPROVED
DEFAULT_VALUE = TINY_VALUE
NAMED = {"tiny": DEFAULT_POLICY, "tiny-improved": TINY_IMPROVED, "tiny-rules": TINY_RULES, "tiny-value": TINY_VALUE}


def resolve(spec: str | Path) -> Path:
    """A shipped checkpoint's name (`tiny`, `tiny-improved`, `tiny-rules`, `tiny-value`) as its folder; any other
    spec is a path, returned as given."""
    return NAMED.get(str(spec), Path(spec))
