"""Scorers for language models: a PRM from a local token-classification checkpoint, and the judge's verdicts.

The PRM here is a real GPT-2 token-classification model trained by qstar's value trainer and loaded back from
its folder, as a user's PRM would be; the judge runs on the real SmolLM2 model in tests/test_hf_policy.py."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import GPT2Config, GPT2ForTokenClassification

from qstar.cli import main
from qstar.errors import QstarError
from qstar.policy.tokenizer import char_tokenizer
from qstar.scorers import get_scorer
from qstar.scorers.judge import verdict
from qstar.scorers.prm import PRMScorer
from qstar.tasks import get_task
from qstar.tasks.countdown import solve
from qstar.train.config import ValueConfig
from qstar.train.value import train_value

TASK = get_task("game24")
PROBLEMS = [p for p in TASK.problems("train")[:40] if solve(p.meta["numbers"], 24)][:24]
BAD_STEP = "7 + 7 = 15 (left: 99)"


@pytest.fixture(scope="module")
def prm_dir(tmp_path_factory):
    """Train a small PRM: the steps of a solution are good (1), a path with a wrong step is bad (0)."""
    torch.manual_seed(0)
    tok = char_tokenizer()
    model = GPT2ForTokenClassification(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, num_labels=2))
    records = []
    for p in PROBLEMS:
        steps = solve(p.meta["numbers"], 24)[0]
        records.append({"prompt": TASK.render(p, []), "completions": steps, "labels": [1.0] * len(steps)})
        records.append({"prompt": TASK.render(p, []), "completions": [BAD_STEP], "labels": [0.0]})
    train_value(model, tok, records, ValueConfig(epochs=15, batch_size=8, lr=3e-3), quiet=True)
    path = tmp_path_factory.mktemp("prm")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_a_prm_folder_scores_good_paths_above_bad_ones_with_each_aggregation(prm_dir):
    problems = PROBLEMS[:8]
    good = [solve(p.meta["numbers"], 24)[0] for p in problems]
    bad = [[BAD_STEP]] * len(problems)
    scorer = get_scorer(str(prm_dir), TASK, policy=None, aggregate="min")
    assert isinstance(scorer, PRMScorer) and not scorer.uses_verifier
    assert sum(scorer.score(problems, good).values) > sum(scorer.score(problems, bad).values)
    rewards = scorer.step_rewards(problems, good)
    for name, expected in (("min", min), ("last", lambda r: r[-1]), ("prod", math.prod)):
        values = PRMScorer(TASK, path=str(prm_dir), aggregate=name).score(problems, good).values
        assert values == pytest.approx([expected(r) for r in rewards])
    with pytest.raises(QstarError, match="aggregation"):
        PRMScorer(TASK, path=str(prm_dir), aggregate="mean")


def test_eval_with_a_prm_folder_as_scorer(prm_dir, capsys):
    argv = ["eval", "--task", "game24", "--limit", "3", "--search", "beam", "--budget", "300"]
    assert main([*argv, "--scorer", str(prm_dir), "--scorer-args", '{"aggregate": "last"}', "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 3 and result["tokens_per_problem"] <= 300
    assert main([*argv, "--scorer", "no/such/prm"]) == 2
    assert "unknown scorer" in capsys.readouterr().err


def test_judge_verdicts():
    assert verdict("Sure.") == 1.0 and verdict("likely, but") == 0.5 and verdict("IMPOSSIBLE") == 0.0
    assert verdict("it is unsure whether") is None and verdict("") is None


def test_a_model_trained_at_another_separator_is_read_with_a_warning(prm_dir, capsys):
    """`qstar train value --separator` records where the model read each step; a scorer reading it elsewhere says so."""
    (prm_dir / "qstar_train.json").write_text(json.dumps({"kind": "value", "separator": " ;"}))
    try:
        PRMScorer(TASK, path=str(prm_dir))
        assert "was trained reading each step at ' ;', and is read here at '\\n'" in capsys.readouterr().err
        PRMScorer(TASK, path=str(prm_dir), step_tag=" ;")
        assert "warning" not in capsys.readouterr().err
    finally:
        (prm_dir / "qstar_train.json").unlink()
