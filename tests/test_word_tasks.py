"""The word-problem tasks: GSM8K (shipped splits, numeric answers) and math (JSONL file, math-verify)."""

from __future__ import annotations

import json

import pytest

from qstar.errors import QstarError
from qstar.tasks import get_task
from qstar.tasks.gsm8k import solution_steps

GSM8K = get_task("gsm8k")


def test_gsm8k_splits_and_references():
    train, test = GSM8K.problems("train"), GSM8K.problems("test")
    assert (len(train), len(test)) == (7473, 1319)
    first = test[0]
    assert first.answer == "18" and first.prompt.startswith("Janet")
    assert first.meta["solution"][-1] == "The answer is 18." and "<<" not in "".join(first.meta["solution"])
    with pytest.raises(QstarError, match="split"):
        GSM8K.problems("val")


def test_gsm8k_prompt_has_worked_examples_and_keeps_the_question_apart():
    problem = GSM8K.problems("test", limit=1)[0]
    prefix = GSM8K.render(problem, ["Step one.", "Step two."])
    assert prefix.question.count("Question:") == GSM8K.shots + 1 and prefix.question.endswith("Answer:\n")
    assert prefix.steps == "Step one.\nStep two.\n" and str(prefix).endswith(prefix.steps)
    assert not {p.prompt for p in GSM8K.problems("train", limit=GSM8K.shots)} & {problem.prompt}


@pytest.mark.parametrize(
    ("last", "correct"),
    [
        ("The answer is 18.", True),
        ("So the answer is $18.00", True),
        ("The answer is 1,8.", True),
        ("The answer is 19.", False),
        ("The answer is eighteen.", False),
    ],
)
def test_gsm8k_verifies_the_stated_number(last, correct):
    problem = GSM8K.problems("test", limit=1)[0]
    steps = ["16 - 3 - 4 = 9 eggs are sold.", last]
    assert GSM8K.is_complete(problem, steps)
    assert GSM8K.verify(problem, steps) is correct


def test_step_checker_rejects_what_breaks_the_format():
    problem = GSM8K.problems("test", limit=1)[0]
    assert GSM8K.check_step(problem, [], "She sells 9 eggs.").ok
    for steps, step in [([], "  "), ([], "Question: what next?"), (["The answer is 18."], "More."), ([], "x" * 500)]:
        assert not GSM8K.check_step(problem, steps, step).ok
    assert not GSM8K.is_complete(problem, ["She sells 9 eggs."])
    assert GSM8K.answer_key(problem, ["The answer is 18.0"]) == GSM8K.answer_key(problem, ["The answer is $18"])


def test_gsm8k_problems_file(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text('{"question": "What is 2 + 3?", "answer": "5"}\n{"question": "6 / 3?", "answer": "So 2.\\n#### 2"}\n')
    problems = get_task("gsm8k", problems_file=str(f)).problems("test")
    assert [p.answer for p in problems] == ["5", "2"]
    f.write_text('{"question": "What?", "answer": "five"}\n')
    with pytest.raises(QstarError, match="not a number"):
        get_task("gsm8k", problems_file=str(f)).problems("test")
    with pytest.raises(QstarError, match="####"):
        solution_steps("no marker here")


def test_math_task_verifies_with_math_verify(tmp_path):
    f = tmp_path / "math.jsonl"
    rows = [
        {"problem": "Simplify $\\frac{2}{4}$.", "answer": "\\frac{1}{2}"},
        {"problem": "Solve.", "answer": "(3, 4)"},
    ]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    task = get_task("math", problems_file=str(f))
    with pytest.raises(QstarError, match=":3: not valid JSON"):
        task.problems("test")
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    half, pair = task.problems("test")
    assert task.verify(half, ["Halve it.", "The answer is $0.5$."])
    assert task.verify(half, ["The answer is $\\frac{1}{2}$."])
    assert not task.verify(half, ["The answer is $\\frac{1}{3}$."])
    assert task.verify(pair, ["The answer is $(3, 4)$."]) and not task.verify(pair, ["The answer is $4$."])
    assert task.answer_key(half, ["The answer is $0.5$"]) == task.answer_key(half, ["The answer is $\\frac{1}{2}$"])
    with pytest.raises(QstarError, match="--problems"):
        get_task("math").problems("test")
