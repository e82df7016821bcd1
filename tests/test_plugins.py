"""Plug-ins: the README's own-task example run verbatim through the Python API and the command line (--plugin),
entry-point discovery from an installed package, and the registries' one pattern."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import qstar
from qstar.errors import QstarError
from qstar.registry import Registry
from tests.scripted import ScriptedPolicy

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    """The README's example, written to a file exactly as the README shows it."""
    text = README.read_text()
    code = re.search(r"<!-- example: reach\.py -->\n```python\n(.*?)```", text, re.DOTALL)
    assert code, "the README's example block is missing"
    path = tmp_path_factory.mktemp("example") / "reach.py"
    path.write_text(code[1])
    return path


@pytest.fixture(scope="module")
def printed(example) -> list[str]:
    """What `python reach.py` prints."""
    out = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


def accuracy(line: str) -> float:
    return int(re.search(r": (\d+)% ", line)[1]) / 100


def test_the_readme_example_runs_verbatim(printed):
    lines = printed
    assert [line.split(":")[0] for line in lines] == ["best-of-n", "beam"]
    best_of_n, beam = map(accuracy, lines)
    assert beam > best_of_n and beam >= 0.5  # guided by the scorer, beam finds the shortest ways far more often


def test_the_example_file_works_from_the_command_line(example, printed, qstar):
    args = ["--plugin", str(example), "--task", "reach", "--policy", "coin", "--scorer", "shortcut"]
    out = qstar("eval", *args, "--search", "beam", "--budget", "2000", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["n"] == 40 and result["accuracy"] == accuracy(printed[-1])  # the API's figure, to the problem
    solved = qstar("solve", "reach 10", *args, "--search", "beam", "--budget", "2000", "--json")
    assert solved.returncode == 0, solved.stderr
    steps = json.loads(solved.stdout)["steps"]
    assert json.loads(solved.stdout)["solved"] and steps[-1].endswith("= 10") and len(steps) == 4  # 1 2 4 5 10
    listed = qstar("list", "--plugin", str(example)).stdout
    assert re.search(r"^  reach  Problems `reach N`; a step is ", listed, re.M)  # its docstring's first sentence
    assert re.search(r"^  coin  Proposes \+1 or \*2 of the last number at random .*\n    seed=0$", listed, re.M)
    assert qstar("--plugin", str(example), "list").stdout == listed  # the flag before the command works too
    sampled = [qstar("solve", "reach 10", *args, "--search", "sample", "--seed", str(s), "--json") for s in range(4)]
    refused = [json.loads(out.stdout) for out in sampled if json.loads(out.stdout)["illegal"]]
    assert refused, "no sample went past the target"  # coin's plays pass 10 often
    for result in refused:  # the illegal step is the last one (it ends the path), with the task's reason
        assert result["illegal"] == {"step": len(result["steps"]), "reason": result["illegal"]["reason"]}
        assert "past 10" in result["illegal"]["reason"] and not result["solved"]


def test_an_installed_package_adds_plug_ins_through_entry_points(example, tmp_path):
    """A package on the path with entry points in qstar's groups: its names work with no --plugin."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "reach_plugin.py").write_text(example.read_text())
    info = site / "reach_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: reach-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[qstar.tasks]\nreach = reach_plugin:Reach\n[qstar.policies]\ncoin = reach_plugin:CoinFlip\n"
        "[qstar.scorers]\nshortcut = reach_plugin:Shortcut\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    cmd = [sys.executable, "-m", "qstar", "eval", "--task", "reach", "--policy", "coin", "--scorer", "shortcut"]
    out = subprocess.run([*cmd, "--search", "beam", "--budget", "2000", "--limit", "5", "--json"], env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["n"] == 5
    with (info / "entry_points.txt").open("a") as f:  # a package's name that a built-in has: refused, not shadowed
        f.write("[qstar.searches]\nbeam = reach_plugin:Reach\n")
    out = subprocess.run([sys.executable, "-m", "qstar", "list"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.strip() == (
        "qstar: error: search plug-in 'beam' (reach_plugin:Reach) takes the name of qstar.search.beam.Beam: its "
        "package must name it otherwise"
    ), out.stderr


def test_a_registry_builds_presets_and_refuses_unknown_names_and_options():
    registry: Registry = Registry("widget", "qstar.widgets")

    @registry.register("big", size=10)
    @registry.register("plain")
    def widget(size: int = 1, colour: str = "red", task=None):
        return (size, colour, task)

    assert registry.build("plain") == (1, "red", None)
    assert registry.build("big", colour="blue") == (10, "blue", None)
    assert registry.build("plain", context={"task": "T", "policy": "P"}) == (1, "red", "T")  # only what it takes
    assert registry.options("big") == {"size": 10, "colour": "red", "task": None}
    with pytest.raises(QstarError, match="unknown widget 'huge'; choose from plain, big"):
        registry.build("huge")
    with pytest.raises(QstarError, match="widget 'plain' has no option 'weight' \\(its options: size, colour, task\\)"):
        registry.build("plain", weight=3)
    with pytest.raises(QstarError, match=r"widget 'plain' is registered already \(by tests\.test_plugins\..*widget\)"):
        registry.register("plain")(lambda: None)  # a second plug-in does not silently replace the first
    assert registry.register("plain")(widget) is widget  # the same one again (a file imported twice) is fine


def test_every_option_says_what_it_does():
    """`qstar list` gives each option's help: a dataclass field's, or a function's docstring `Args:` entry."""
    registry: Registry = Registry("widget", "qstar.widgets")

    @registry.register("plain")
    def widget(size: int = 1, colour: str = "red"):
        """A widget.

        Args:
            size: how big,
                in metres.
            colour (str): what it looks like.

        Returns:
            size: not an option.
        """

    assert registry.help("plain") == {"size": "how big, in metres.", "colour": "what it looks like."}
    out = subprocess.run([sys.executable, "-m", "qstar", "list", "--json"], capture_output=True, text=True, timeout=120)
    listed = json.loads(out.stdout)
    silent = [f"{name}.{key}" for entries in listed.values() for name, entry in entries.items()
              for key, option in entry["options"].items() if not option["help"]]  # fmt: skip
    assert listed["policies"]["tiny"] and not silent, silent
    undescribed = [name for entries in listed.values() for name, entry in entries.items() if not entry["description"]]
    assert not undescribed and listed["searches"]["greedy"]["description"].startswith("Sample with temperature=0.0")
    hf, tiny = listed["policies"]["hf"]["options"]["path"], listed["policies"]["tiny"]["options"]["path"]
    assert (hf["required"], hf["default"], tiny["required"], tiny["default"]) == (True, None, False, "tiny")


def test_import_qstar_stays_light():
    """The public API is importable from `qstar`; names load on first use, and the core types need no torch."""
    code = "import sys, qstar; qstar.Problem('p', 'x'); qstar.get_task('game24'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_plugin_file_runs_once_however_often_it_is_named(tmp_path):
    """The command line imports each --plugin file, and so does every Replica that names it: the file runs once."""
    from qstar.registry import load_plugin

    runs = tmp_path / "runs.txt"
    plugin = tmp_path / "counted.py"
    plugin.write_text(f"with open({str(runs)!r}, 'a') as f:\n    f.write('ran\\n')\n")
    load_plugin(plugin)
    load_plugin(tmp_path / "." / "counted.py")  # the same file by another spelling
    assert runs.read_text() == "ran\n"


BROKEN = '''
from dataclasses import dataclass

import qstar
from qstar.search.steps import grow


@qstar.register_task("count-up")
@dataclass
class CountUp(qstar.BaseTask):
    """Write 1, 2, ..., n, one number a line; `problems` as `mode` says."""

    name = "count-up"
    mode: str = "good"

    def problems(self, split, limit=None):
        good = [self.parse_problem(f"count {n}") for n in (1, 2, 3)]
        bad = {"raise": None, "strings": ["count 1"], "none": None, "same-ids": good[:1] * 2, "empty": []}
        if self.mode == "raise":
            raise OSError("the data file is gone")
        return bad.get(self.mode, good)

    def parse_problem(self, text, answer=None):
        n = int(text.split()[-1])  # a ValueError for a word
        return qstar.Problem(f"count-{n}", text, str(n), {"n": n})

    def check_step(self, problem, steps, step):
        return qstar.StepCheck(step == str(len(steps) + 1))

    def is_complete(self, problem, steps):
        return len(steps) >= problem.meta["n"]

    def verify(self, problem, steps):
        return steps == [str(i) for i in range(1, problem.meta["n"] + 1)]

    def max_steps(self, problem):
        return problem.meta["n"]


class Counter:
    max_step_tokens = 2

    def __init__(self, mode):
        self.mode = mode

    def seed(self, seed):
        pass

    def propose(self, prefixes, n=1, temperature=0.0):
        if self.mode == "raise":
            raise RuntimeError("GPU on fire")
        rows = [[qstar.Step(str(p.count("\\n")), tokens=1)] * n for p in prefixes]
        return {"strings": [[s.text for s in r] for r in rows], "fewer": rows[1:], "none": None}.get(self.mode, rows)


@qstar.register_policy("counter")
def counter(mode: str = "good"):
    return Counter(mode)


@qstar.register_scorer("even")
@dataclass
class Even:
    mode: str = "good"
    uses_verifier = False

    def score(self, problems, paths):
        if self.mode == "raise":
            raise KeyError("no such head")
        values = [0.5] * len(paths)
        return {"list": values, "short": qstar.Scores(values[1:])}.get(self.mode, qstar.Scores(values))

    def max_tokens(self, problem, path):
        return 0


@qstar.register_scorer("bare")
class Bare:
    def score(self, problems, paths):
        return qstar.Scores([0.5] * len(paths))


@qstar.register_search("no-tree")
@dataclass
class NoTree:
    def run(self, problem, ctx):
        yield from grow(qstar.Tree(problem), ctx, [qstar.Tree(problem).root], 1, 0.0)


@qstar.register_search("not-a-generator")
@dataclass
class NotAGenerator:
    def run(self, problem, ctx):
        return qstar.Tree(problem)
'''


@pytest.mark.parametrize(
    "args, says",
    [
        (["--task-args", '{"mode": "raise"}'], "the problems of task 'count-up' raised OSError: the data file is gone"),
        (["--task-args", '{"mode": "strings"}'], "must be a list of Problems, got a list holding str"),
        (["--task-args", '{"mode": "none"}'], "must be a list of Problems, got NoneType"),
        (["--task-args", '{"mode": "same-ids"}'], "gives two problems the id 'count-1'"),
        (["--task-args", '{"mode": "empty"}'], "task 'count-up' has no problems in its 'test' split"),
        (["--policy-args", '{"mode": "raise"}'], "policy Counter raised RuntimeError: GPU on fire"),
        (["--policy-args", '{"mode": "strings"}'], "propose must return lists of Steps, got str '"),
        (["--policy-args", '{"mode": "fewer"}'], "one list of Steps for each of the 3 prefixes, got 2 lists"),
        (["--policy-args", '{"mode": "none"}'], "got NoneType"),
        (["--scorer-args", '{"mode": "raise"}'], "scorer Even raised KeyError: 'no such head'"),
        (
            ["--scorer-args", '{"mode": "list"}'],
            "score must return Scores with one value for each of the 3 paths, got list",
        ),
        (["--scorer-args", '{"mode": "short"}'], "got 2 values"),
        (["--scorer", "bare"], "scorer 'bare' has no uses_verifier, max_tokens (what a scorer has: "),
        (["--search", "no-tree"], "the search on problem 'count-1' returned NoneType, not a Tree"),
        (["--search", "not-a-generator"], "run must be a generator that yields requests, not Tree"),
    ],
)
def test_a_broken_plugin_is_one_line_that_names_it(tmp_path, capsys, args, says):
    """Whatever a plug-in raises or returns out of shape is reported where it enters qstar, in one line: the
    task's problems, a policy's proposals, a scorer's scores, a search's tree."""
    from qstar.cli import main

    plugin = tmp_path / "broken.py"
    plugin.write_text(BROKEN)
    base = ["eval", "--json", "--plugin", str(plugin), "--task", "count-up", "--policy", "counter", "--scorer", "even"]
    assert main([*base, "--search", "beam"]) == 0  # the same plug-ins, unbroken, solve every problem
    assert json.loads(capsys.readouterr().out)["accuracy"] == 1.0
    assert main([*base, "--search", "beam", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err


def test_the_python_apis_mistakes_are_one_line_errors_before_any_model_call():
    """A name where the object made from it belongs, one problem where a list belongs, zero seeds: each is refused
    by the function given it, not by the first call deep inside (an AttributeError naming a plug-in)."""
    task = qstar.get_task("game24")
    problems = task.problems("test", limit=1)
    greedy, policy = qstar.get_search("greedy"), ScriptedPolicy()
    with pytest.raises(QstarError, match="must be a search object"):
        qstar.evaluate(task, problems, None, "beam")
    with pytest.raises(QstarError, match="seeds and batch_size must be at least 1, not 0 and 64"):
        qstar.evaluate(task, problems, None, greedy, seeds=0)
    with pytest.raises(QstarError, match=r"search must be a search object \(qstar.get_search\(name\)\), not 'beam'"):
        qstar.run_search("beam", problems, task, policy)
    with pytest.raises(QstarError, match="task must be a task object"):
        qstar.run_search(greedy, problems, "game24", policy)
    with pytest.raises(QstarError, match="policy must be a policy object"):
        qstar.run_search(greedy, problems, task, "tiny")
    with pytest.raises(QstarError, match=r"not one Problem: give \[problem\]"):
        qstar.run_search(greedy, problems[0], task, policy)
    with pytest.raises(QstarError, match="got str among them"):
        qstar.run_search(greedy, ["4 9 10 13"], task, policy)
    with pytest.raises(QstarError, match="task must be a task object"):
        qstar.get_scorer("verifier", "game24")
    with pytest.raises(QstarError, match="limit must be a whole number of problems, at least 0"):
        task.problems("test", limit=-1)  # not all but the last
    assert qstar.run_search(greedy, problems, task, policy)[0].calls > 0  # the same call, its arguments right


def test_problems_read_from_text_are_told_apart_by_their_ids():
    """Two problems parsed from text never share an id (trees, records and seeds are keyed by it); one problem given
    as text or by options is the same problem, id included."""
    countdown, gsm8k = qstar.get_task("countdown"), qstar.get_task("gsm8k")
    a, b = countdown.parse_problem("4 9 10 13 -> 24"), countdown.parse_problem("3 7 25 50 -> 81")
    by_options = countdown.problem_from_args({"numbers": ["4", "9", "10", "13"], "target": "24"})
    assert a.id != b.id and a.id == by_options.id == "4 9 10 13 -> 24"
    q1, q2 = gsm8k.parse_problem("What is 2 + 3?"), gsm8k.parse_problem("What is 2 + 4?")
    assert q1.id != q2.id and q1.id == gsm8k.parse_problem("  What is  2 + 3? ").id
