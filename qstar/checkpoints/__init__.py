"""Checkpoints shipped inside the package (Hugging Face format), so everything works offline."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
TINY_RULES = HERE / "tiny-rules"  # rules-only policy from `qstar pretrain` (see README for the command)
TINY_IMPROVED = HERE / "tiny-improved"  # the policy after self-improvement (`benchmarks/improve.py`, see README)
TINY_VALUE = HERE / "tiny-value"  # the value model trained beside it (LlamaForTokenClassification, 2 classes)
DEFAULT_POLICY = TINY_IMPROVED
DEFAULT_VALUE = TINY_VALUE
