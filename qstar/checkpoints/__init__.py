"""Checkpoints shipped inside the package (Hugging Face format), so everything works offline."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
TINY_RULES = HERE / "tiny-rules"  # rules-only policy from `qstar pretrain` (see README for the command)
DEFAULT_POLICY = TINY_RULES
