"""The countdown task: step checker, verifier, solver, presets and problem files."""

import json
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qstar.errors import QstarError
from qstar.records import sft_records
from qstar.tasks import get_task
from qstar.tasks.countdown import Countdown, is_solvable, random_play, solve
from qstar.tasks.countdown.problems import make_problem
from qstar.tasks.countdown.rules import STEP_RE
from qstar.types import Problem, Step, Tree

TASK = Countdown()


def problem(numbers, target):
    return Problem(id="t", prompt=" ".join(map(str, numbers)), meta={"numbers": numbers, "target": target})


numbers4 = st.lists(st.integers(1, 13), min_size=4, max_size=4)


@settings(max_examples=60, deadline=None)
@given(numbers4, st.integers(1, 30))
def test_every_solver_solution_passes_checker_and_verifier(evaluate_expression, numbers, target):
    for steps in solve(numbers, target)[:20]:
        p = problem(numbers, target)
        for i, step in enumerate(steps):
            assert TASK.check_step(p, steps[:i], step).ok, step
        assert TASK.is_complete(p, steps)
        assert TASK.verify(p, steps)
        value, used = evaluate_expression(TASK.final_answer(p, steps))
        assert value == target and sorted(used) == sorted(numbers)


def corrupt(step: str, rng: random.Random) -> str:
    """Change the result, an operand or the left list so the step is wrong."""
    m = STEP_RE.match(step)
    a, op, b, c, left = m[1], m[2], m[3], int(m[4]), m[5]
    kind = rng.choice(["result", "left", "operand"])
    if kind == "result":
        return f"{a} {op} {b} = {c + rng.choice([-2, -1, 1, 2, 10])} (left: {left})"
    if kind == "left":
        return f"{a} {op} {b} = {c} (left: {left} {rng.randint(1, 9)})"
    return f"{int(a) + 50} {op} {b} = {c} (left: {left})"


@settings(max_examples=60, deadline=None)
@given(numbers4, st.integers(0, 10_000))
def test_corrupted_steps_are_rejected(numbers, seed):
    rng = random.Random(seed)
    steps = random_play(numbers, rng)
    p = problem(numbers, 24)
    i = rng.randrange(len(steps))
    assert TASK.check_step(p, steps[:i], steps[i]).ok
    assert not TASK.check_step(p, steps[:i], corrupt(steps[i], rng)).ok


@pytest.mark.parametrize(
    "step, reason",
    [
        ("4 - 9 = -5 (left: 10 13 -5)", "format"),
        ("9 - 10 = 1 (left: 4 13 1)", "rules"),  # negative result
        ("13 / 4 = 3 (left: 9 10 3)", "rules"),  # inexact division
        ("13 - 9 = 5 (left: 4 10 5)", "arithmetic"),
        ("13 - 9 = 4 (left: 4 10)", "left"),
        ("13 - 7 = 6 (left: 4 9 10 6)", "operands"),
        ("thirteen minus nine", "format"),
    ],
)
def test_illegal_steps_say_why(step, reason):
    verdict = TASK.check_step(problem([4, 9, 10, 13], 24), [], step)
    assert not verdict.ok and verdict.reason.startswith(reason)


def test_left_list_is_a_multiset_and_solution_verifies():
    p = problem([4, 9, 10, 13], 24)
    steps = ["13 - 9 = 4 (left: 4 4 10)", "10 - 4 = 6 (left: 4 6)", "4 * 6 = 24 (left: 24)"]
    assert all(TASK.check_step(p, steps[:i], s).ok for i, s in enumerate(steps))
    assert TASK.verify(p, steps) and TASK.final_answer(p, steps) == "(13 - 9) * (10 - 4)"
    assert not TASK.verify(p, steps[:2]) and not TASK.is_complete(p, steps[:2])
    assert not TASK.verify(problem([4, 9, 10, 13], 25), steps)
    wrong = ["13 - 9 = 5 (left: 4 5 10)", "10 - 5 = 5 (left: 4 5)", "4 * 5 = 20 (left: 20)"]
    assert TASK.final_answer(p, wrong) is None  # the operations would build (13 - 9) * ..., the play is illegal


def test_solvability_matches_solver():
    rng = random.Random(0)
    for _ in range(300):
        numbers = [rng.randint(0, 20) for _ in range(rng.randint(1, 4))]
        target = rng.randint(0, 40)
        assert is_solvable(numbers, target) == bool(solve(numbers, target))


def test_game24_splits_are_the_tree_of_thoughts_games():
    task = get_task("game24")
    test, train = task.problems("test"), task.problems("train")
    assert len(test) == 100 and len(train) == 1262
    assert test[0].meta["numbers"] == [4, 5, 6, 10] and test[-1].meta["numbers"] == [4, 9, 10, 13]
    assert not {p.id for p in test} & {p.id for p in train}
    assert all(is_solvable(p.meta["numbers"], 24) for p in test)


def test_countdown_generator_is_seeded_solvable_and_holds_targets_out():
    task = get_task("countdown")
    val_target = task.problems("val_target", limit=50)
    train = task.problems("train", limit=200)
    assert [p.meta for p in val_target] == [p.meta for p in get_task("countdown").problems("val_target", limit=50)]
    held = set(task.held_out)
    assert len(held) == 9 and {p.meta["target"] for p in val_target} <= held
    assert not {p.meta["target"] for p in train} & held
    for p in val_target + train:
        assert len(p.meta["numbers"]) == 4 and all(1 <= n <= 99 for n in p.meta["numbers"])
        assert is_solvable(p.meta["numbers"], p.meta["target"])
    with pytest.raises(QstarError, match="splits"):
        task.problems("dev")


def played(pid: str, numbers: list[int], steps: list[str]) -> Tree:
    """A tree holding one legal complete play that missed its target (99)."""
    tree = Tree(make_problem(pid, numbers, 99))
    node = tree.root
    for i, text in enumerate(steps):
        last = i == len(steps) - 1
        node = node.add_child(Step(text, -0.5, tokens=9), prior=0.5, terminal=last, reward=0.0 if last else None)
    return tree


def test_hindsight_never_relabels_onto_a_held_out_target_or_an_evaluation_problem():
    """A play reaching one of val_target's held-out targets is no training record, nor one that relabels onto an
    evaluation problem (same numbers and target), though its own problem was a train one."""
    task = get_task("countdown")
    to_15 = played(
        "a", [1, 2, 3, 4], ["4 * 3 = 12 (left: 1 2 12)", "12 + 1 = 13 (left: 2 13)", "13 + 2 = 15 (left: 15)"]
    )
    to_35 = played(
        "b", [2, 3, 5, 6], ["6 * 5 = 30 (left: 2 3 30)", "30 + 3 = 33 (left: 2 33)", "33 + 2 = 35 (left: 35)"]
    )
    to_17 = played(
        "c", [10, 7, 1, 1], ["10 * 1 = 10 (left: 7 1 10)", "10 * 1 = 10 (left: 7 10)", "10 + 7 = 17 (left: 17)"]
    )
    assert 17 in task.held_out and not {15, 35} & set(task.held_out)
    reached = [task.relabel(t.problem, [n.step.text for n in t.nodes() if n.step]) for t in (to_15, to_35, to_17)]
    assert [p and p.meta["target"] for p in reached] == [15, 35, None]
    evaluation = {task.problem_key(make_problem("e", [6, 5, 3, 2], 35))}
    records = sft_records([to_15, to_35, to_17], task, hindsight=True, held_out=evaluation)
    assert [r["prompt"] for r in records] == ["Input: 1 2 3 4 Target: 15\n"]
    assert len(sft_records([to_15, to_35, to_17], task, hindsight=True)) == 2


def test_problems_file(tmp_path):
    good = tmp_path / "p.jsonl"
    good.write_text(
        json.dumps({"numbers": [1, 2, 3, 4], "target": 10})
        + "\n\n"
        + json.dumps({"numbers": [5, 5], "target": 25})
        + "\n"
    )
    ps = get_task("countdown", problems_file=str(good)).problems("test")
    assert [p.meta["target"] for p in ps] == [10, 25]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"numbers": [1, 2], "target": 3}) + "\n" + '{"numbers": [1, 2]}\n')
    with pytest.raises(QstarError, match=r"bad.jsonl:2: .*target"):
        get_task("countdown", problems_file=str(bad)).problems("test")
    bad.write_text(json.dumps({"numbers": [1, 2], "target": -3}) + "\n")
    with pytest.raises(QstarError, match=r"bad.jsonl:1: .*>= 0, got -3"):
        get_task("countdown", problems_file=str(bad)).problems("test")
    for number in (4.5, True, "a"):  # 4.5 was read as 4
        bad.write_text(json.dumps({"numbers": [number, 2], "target": 3}) + "\n")
        with pytest.raises(QstarError, match=rf"bad.jsonl:1: .*whole numbers, not {re.escape(repr(number))} \("):
            get_task("countdown", problems_file=str(bad)).problems("test")
    bad.write_text("not json\n")
    with pytest.raises(QstarError, match=r"bad.jsonl:1:"):
        get_task("countdown", problems_file=str(bad)).problems("test")
    with pytest.raises(QstarError, match=r"p.jsonl:1: .*the Game of 24's target is 24, not 10"):
        get_task("game24", problems_file=str(good)).problems("test")  # what its command line refuses, too
    good.write_text('{"numbers": [4, 9, 10, 13], "target": 24}\n\n{"numbers": [4, 9], "target": 24}\n')
    with pytest.raises(QstarError, match=r"p.jsonl:3: .*the Game of 24 takes four numbers, got 2"):
        get_task("game24", problems_file=str(good)).problems("test")


def test_game24_refuses_the_options_of_countdowns_generated_problems():
    """Game of 24 plays its fixed puzzles: a generator option would be taken and ignored."""
    for option in ({"low": 50}, {"sizes": {"test": 3}}, {"seed": 1}):
        with pytest.raises(QstarError, match=f"task 'game24': {next(iter(option))} sets countdown's generated"):
            get_task("game24", **option)
    assert get_task("countdown", low=50).low == 50


@pytest.mark.parametrize(
    "text, numbers, target",
    [
        ("4 9 10 13 -> 24", [4, 9, 10, 13], 24),
        ("use 4 9 10 13 to make 24", [4, 9, 10, 13], 24),
        ("Use 4, 9, 10 and 13 to reach 24!", [4, 9, 10, 13], 24),
        ("[4, 9, 10, 13] -> 24", [4, 9, 10, 13], 24),
        ("Numbers: 4 9 10 13. Target: 24", [4, 9, 10, 13], 24),
        ("4 9 10 13 -> 24 (game 1)", [4, 9, 10, 13], 24),
    ],
)
def test_free_text_reads_the_numbers_and_the_target(text, numbers, target):
    problem = TASK.parse_problem(text)
    assert (problem.meta["numbers"], problem.meta["target"]) == (numbers, target)


@pytest.mark.parametrize(
    "text, says",
    [
        ("4.5 9 10 13 -> 24", "'4.5' is not a whole number"),  # not 4 and 5
        ("-3 4 5 6 -> 24", "'-3' is not a whole number"),  # not 3
        ("4 9 10 13 -> -24", "'-24' is not a whole number"),
        ("4 9 10 13 -> 24.5", "'24.5' is not a whole number"),
        ("4 9 1e3 13 -> 24", "'1e3' is not a whole number"),
        ("4x 9 10 13 -> 24", "'4x' is not a number"),
        ("4 nine 10 13 -> 24", "'nine' between the numbers"),  # not the game 4 10 13
        ("4 9 x -> 24", "'x' after the numbers"),  # not the game 4 9
        ("4 9 10 13 foo -> 24", "'foo' after the numbers"),
        ("make 24 from 4 9 10 13", "no numbers before the target"),
        ("4 9 10 13", "no target in"),
        ("4 9 10 13 -> 24 -> 25", "more than one target"),  # not the first one
        ("use 4 9 10 13 to make 24 or reach 25", "more than one target"),
    ],
)
def test_free_text_that_does_not_say_one_problem_is_refused_not_read_in_part(text, says):
    with pytest.raises(QstarError, match=says):
        TASK.parse_problem(text)
