"""The `qstar` command as a user runs it (a real subprocess): the JSON contract and bad-input exits."""

import json
import subprocess
import sys
from fractions import Fraction

import pytest

from tests.test_countdown import evaluate_expression

QSTAR = [sys.executable, "-m", "qstar"]


def qstar(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*QSTAR, *args], capture_output=True, text=True, timeout=300)


def test_solve_json_contract():
    out = qstar("solve", "--task", "countdown", "--numbers", "4", "9", "10", "13", "--target", "24", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) >= {"solved", "expression", "steps", "tokens", "calls"}
    assert isinstance(result["solved"], bool) and isinstance(result["steps"], list)
    assert result["tokens"] >= sum(len(s) for s in result["steps"]) and 1 <= result["calls"] <= len(result["steps"])
    if result["solved"]:
        value, used = evaluate_expression(result["expression"])
        assert value == Fraction(24) and sorted(used) == [4, 9, 10, 13]


def test_solve_readable_trace_and_sampling():
    out = qstar("solve", "--task", "game24", "--numbers", "1", "2", "3", "4", "--search", "sample", "--seed", "1")
    assert out.returncode == 0, out.stderr
    assert "step 1:" in out.stdout and ("solved" in out.stdout)


def test_eval_json_contract():
    out = qstar("eval", "--task", "game24", "--split", "test", "--limit", "5", "--search", "greedy", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["n"] == 5 and 0 <= result["solved"] <= 5
    assert result["accuracy"] == result["solved"] / 5
    assert result["tokens_per_problem"] > 0 and result["seconds"] > 0


def test_eval_table_on_a_problems_file(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"numbers": [2, 3, 4, 1], "target": 24}\n{"numbers": [5, 5, 5, 1], "target": 24}\n')
    out = qstar("eval", "--task", "countdown", "--problems", str(f), "--search", "greedy")
    assert out.returncode == 0, out.stderr
    assert "accuracy" in out.stdout and "legal steps" in out.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["solve", "--numbers", "4", "x", "--target", "24"], "whole numbers"),
        (["solve", "--numbers", "4", "9", "10", "13"], "--target is required"),
        (["solve", "--numbers", "4", "9", "--target", "twenty"], "--target must be a whole number"),
        (["solve", "--target", "24"], "--numbers"),
        (["solve", "--task", "chess", "--numbers", "1", "2", "--target", "3"], "unknown task 'chess'"),
        (["eval", "--task", "game24", "--search", "telepathy"], "unknown search 'telepathy'"),
        (["eval", "--task", "game24", "--split", "dev"], "splits train and test"),
        (["eval", "--task", "countdown", "--problems", "/no/such/file.jsonl"], "not found"),
        (["eval", "--task", "game24", "--policy", "/no/such/model"], "no model at"),
        (["eval", "--limit", "0"], "--limit"),
        (["solve", "--task", "gsm8k"], "--question is required"),
        (["eval", "--task", "math"], "pass --problems"),
        (["eval", "--task", "gsm8k", "--scorer", "oracle"], "unknown scorer 'oracle'"),
        (["eval", "--task", "gsm8k", "--scorer", "verifier", "--limit", "1"], "needs the reference answer"),
        (["frobnicate"], "invalid choice"),
        (["improve", "--run-dir", "r", "--data-search", "dfs", "--data-search-args", '{"rootk": 3}'], "'rootk'"),
        (["improve", "--run-dir", "r", "--eval-search-args", "[1]"], "expected a JSON object"),
        (["improve", "--run-dir", "r", "--value-labels", "soft"], "--value-labels must be mc or hard"),
        (["improve", "--run-dir", "r", "--start-value", "/no/such/value"], "no value model folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    out = qstar(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr


def test_malformed_problems_file_names_the_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"numbers": [1, 2, 3, 4], "target": 10}\n{"numbers": [1, 2, "three"], "target": 6}\n')
    out = qstar("eval", "--task", "countdown", "--problems", str(f))
    assert out.returncode == 2 and f"{f}:2:" in out.stderr and "Traceback" not in out.stderr
