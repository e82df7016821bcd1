"""A path longer than a scoring model's context fails alone, as a policy's too-long prompt does: `BackendError`
names it and carries the other paths' scores, so its problem's search ends with the reason and the rest go on."""

from __future__ import annotations

from collections.abc import Callable

from qstar.errors import BackendError
from qstar.types import Scores

SPECIAL_TOKENS = 8  # a path's tokens are at most its UTF-8 bytes plus the few special ones a tokenizer adds


def over_context(model, tokenizer, prompts: list[str], paths: list[list[str]], tag: str, what: str) -> dict[int, str]:
    """Index -> why, for each prompt + path (each step followed by `tag`) longer than the model's context; only
    paths whose bytes come near the context are tokenised."""
    from qstar.models import step_inputs

    context = getattr(model.config, "max_position_embeddings", None)
    failed = {}
    for i, (prompt, path) in enumerate(zip(prompts, paths, strict=True)):
        text = prompt + "".join(step + tag for step in path)
        if context is None or len(text.encode()) + SPECIAL_TOKENS <= context:
            continue
        tokens = len(step_inputs(tokenizer, prompt, path, tag)[0])
        if tokens > context:
            failed[i] = (
                f"a path of {tokens} tokens does not fit the {what}'s context of {context} tokens "
                "(give a scoring model with a longer context)"
            )
    return failed


def score_within_context(failed: dict[int, str], n: int, score: Callable[[list[int]], Scores]) -> Scores:
    """`score(kept)` on the paths not in `failed` (indices into the batch of `n`), spread back to the batch; the
    failed ones score 0 and are raised in a `BackendError` with the others' scores."""
    if not failed:
        return score(list(range(n)))
    kept = [i for i in range(n) if i not in failed]
    got = score(kept) if kept else Scores([])
    values, calls = [0.0] * n, [0] * n
    for j, i in enumerate(kept):
        values[i], calls[i] = got.values[j], got.calls[j]
    raise BackendError(failed, Scores(values, calls=calls))  # type: ignore[arg-type]
