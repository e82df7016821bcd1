"""The `qstar` command as a user runs it (a real subprocess): the JSON contract, --help, and bad-input exits."""

import json
import re
from fractions import Fraction
from pathlib import Path

import pytest

from qstar.checkpoints import TINY_VALUE
from qstar.cli import main
from qstar.pipelines.improve_config import ImproveConfig


def run(capsys, *args: str) -> dict:
    """`qstar ARGS... --json` in this process (the model stays loaded between calls); its JSON reply."""
    assert main([*args, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_solve_json_contract(qstar, evaluate_expression):
    out = qstar("solve", "--task", "countdown", "--numbers", "4", "9", "10", "13", "--target", "24", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) == {"solved", "answer", "steps", "illegal", "tokens", "calls", "error", "unfinished", "budget"}
    assert isinstance(result["solved"], bool) and isinstance(result["steps"], list) and result["error"] is None
    assert result["tokens"] >= sum(len(s) for s in result["steps"]) and 1 <= result["calls"] <= len(result["steps"])
    if result["solved"]:
        value, used = evaluate_expression(result["answer"])
        assert value == Fraction(24) and sorted(used) == [4, 9, 10, 13]


def test_solve_takes_the_problem_as_free_text(capsys):
    by_flags = run(capsys, "solve", "--task", "countdown", "--numbers", "4", "9", "10", "13", "--target", "24")
    by_text = run(capsys, "solve", "--task", "countdown", "use 4 9 10 13 to make 24")
    assert by_text == by_flags  # the same problem, the same greedy steps
    assert run(capsys, "solve", "--task", "game24", "4 9 10 13") == by_flags  # Game of 24: the target is 24


def test_solve_readable_trace_and_sampling(qstar):
    out = qstar("solve", "--task", "game24", "--numbers", "1", "2", "3", "4", "--search", "sample", "--seed", "1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert [line.split(":")[0].strip() for line in lines[:-1]] == [f"step {i}" for i in range(1, len(lines))]
    assert re.match(r"^(solved: .+|not solved \(answer: .+\))  \(\d+ tokens, \d+ model calls?\)$", lines[-1]), lines


def test_eval_json_contract(qstar):
    out = qstar("eval", "--task", "game24", "--split", "test", "--limit", "5", "--search", "greedy", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["n"] == 5 and 0 <= result["solved"] <= 5
    assert result["accuracy"] == result["solved"] / 5
    assert result["tokens_per_problem"] > 0 and result["seconds"] > 0


def test_eval_takes_search_hyper_parameters(capsys):
    args = ["eval", "--task", "game24", "--limit", "4", "--search", "beam", "--budget", "4000"]
    narrow = run(capsys, *args, "--search-args", '{"width": 1, "k": 2}')
    wide = run(capsys, *args, "--search-args", '{"width": 3, "k": 4}')
    assert narrow["tokens_per_problem"] < wide["tokens_per_problem"]  # the options reached the search
    assert narrow["unfinished"] == wide["unfinished"] == 0
    short = run(capsys, *args[:-1], "500")  # pays for the first step's proposals and their values only
    assert short["unfinished"] == 4 and short["solved"] == 0


def test_records_from_saved_trees_are_the_loop_s_records_and_never_of_evaluation_problems(capsys, tmp_path):
    """eval --save-trees on the train split, then `qstar records` of each kind: what qstar.records makes of the
    same trees, with the task the trees say; trees of test problems, or read with another task, are refused."""
    from qstar.io import load_trees, read_jsonl
    from qstar.records import preference_records, search_target_records, sft_records, value_records
    from qstar.tasks import get_task

    trees, task = tmp_path / "t.jsonl.gz", get_task("game24")
    run(capsys, "eval", "--task", "game24", "--split", "train", "--limit", "6", "--save-trees", str(trees))
    made = {
        "value": value_records(load_trees(trees), task, "hard"),
        "sft": sft_records(load_trees(trees), task),
        "targets": search_target_records(load_trees(trees), task, "hard"),
        "preferences": preference_records(load_trees(trees), task),
    }
    assert made["value"] and made["sft"]
    for kind, rows in made.items():
        out = tmp_path / f"{kind}.jsonl"
        said = run(capsys, "records", str(trees), "--kind", kind, "--labels", "hard", "--out", str(out))
        assert read_jsonl(out) == rows and said["records"] == len(rows) and said["task"] == "game24"
    test = tmp_path / "test.jsonl.gz"
    run(capsys, "eval", "--task", "game24", "--limit", "2", "--search", "greedy", "--save-trees", str(test))
    for args, message in [
        ([str(trees), str(test)], "2 of the trees are of game24's evaluation problems (game24-901, game24-902)"),
        ([str(trees), "--task", "gsm8k"], "searched on the game24 task, not gsm8k: drop --task"),
        ([str(tmp_path / "value.jsonl")], "value.jsonl is not a trees file"),
    ]:
        assert main(["records", *args, "--out", str(tmp_path / "x.jsonl")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_eval_saves_each_seed_s_trees_with_their_seed(capsys, tmp_path):
    from qstar.io import read_tree_lines

    out = tmp_path / "t.jsonl.gz"
    args = ["eval", "--task", "game24", "--limit", "2", "--search", "sample", "--seeds", "2", "--seed", "5"]
    result = run(capsys, *args, "--save-trees", str(out))
    lines = read_tree_lines(out)
    assert [(line["seed"], line["search"]) for line in lines] == [
        (5, "sample"),
        (5, "sample"),
        (6, "sample"),
        (6, "sample"),
    ]
    assert sum(line["answer"] is not None for line in lines) == 4 and result["seeds"] == 2


def test_eval_table_on_a_problems_file(qstar, tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"numbers": [2, 3, 4, 1], "target": 24}\n{"numbers": [5, 5, 5, 1], "target": 24}\n')
    out = qstar("eval", "--task", "countdown", "--problems", str(f), "--search", "greedy")
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if "accuracy" in line)
    assert [c.strip() for c in header.strip("┃│ ").split("┃")] == [
        "problems",
        "solved",
        "accuracy",
        "tokens",
        "calls",
        "legal steps",
        "seconds",
    ]
    row = next(line for line in out.stdout.splitlines() if line.lstrip("│ ").startswith("2 "))
    assert row.split("│")[1].split()[0] == "2"  # two problems


def test_every_name_works_on_every_command(capsys):
    """The shipped checkpoints' names resolve in one place: `tiny-rules` as a policy, `tiny-value` as a scorer."""
    args = ["eval", "--task", "game24", "--limit", "3"]
    rules = run(capsys, *args, "--policy", "tiny-rules")
    assert rules["solved"] == 0 and rules["legal_step_rate"] == 1.0  # the rules-only model: legal, aimless
    valued = run(capsys, *args, "--search", "dfs-wide", "--scorer", "tiny-value", "--budget", "1000")
    assert 0 < valued["tokens_per_problem"] <= 1000


def test_help_and_bad_options_answer_without_loading_torch():
    """`--help` and a wrong option answer at once: the parser and the plug-in registries are torch-free."""
    import subprocess
    import sys

    code = (
        "import sys; from qstar.cli import main\n"
        "for argv in (['--help'], ['improve', '--help'], ['list'], ['eval', '--search', 'mcts', '--budget', '0'],\n"
        "             ['--version'], ['eval', '--task', 'gsm8k', '--scorer', 'rollouts']):  # before any model loads\n"
        "    try: main(argv)\n"
        "    except SystemExit: pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == "[]", out.stdout[-500:] + out.stderr[-500:]
    import qstar

    assert f"\nqstar {qstar.__version__}\n" in out.stdout and qstar.__version__.count(".") == 2  # --version


def test_improve_help_explains_every_option(qstar):
    out = qstar("improve", "--help")
    assert out.returncode == 0
    blocks = re.split(r"\n  (?=-)", out.stdout.split("options:", 1)[1])  # one block per option
    helps = {block.split()[0].rstrip(","): " ".join(block.split()) for block in blocks if block.strip()}
    for f in ImproveConfig.__dataclass_fields__.values():
        nested = f.name in ("sft", "dpo", "value", "policy_value")
        flag = "--" + f.name.replace("_", "-") + ("-epochs" if nested else "")
        assert flag in helps, flag
        assert "(default:" in helps[flag] and len(helps[flag]) > len(flag) + 40, helps[flag]  # words, not a default


@pytest.mark.parametrize(
    "args, message",
    [
        (["solve", "--numbers", "4", "x", "--target", "24"], "whole numbers"),
        (["solve", "--numbers", "4", "9", "10", "13"], "--target is required"),
        (["solve", "--numbers", "4", "9", "--target", "twenty"], "the target must be a whole number"),
        (["solve", "--target", "24"], "--numbers"),
        (["solve", "4 9 10 13"], "no target in '4 9 10 13'"),
        (["solve", "4.5 9 10 13 -> 24"], "'4.5' is not a whole number"),
        (["solve", "4 9 10 13 -> 24", "--numbers", "1", "2"], "as text or with --numbers, not both"),
        (["eval", "--task", "countdown", "--problems", "p.jsonl", "--split", "val"], "drop it with --problems"),
        (["compare", "--searches", ",", "--out", "o"], "--searches names no search"),
        (["compare", "--searches", "greedy,greedy", "--out", "o"], "names 'greedy' twice"),
        (["serve", "--keep-trees", "-1"], "--keep-trees must be 0 or more, not -1"),
        (["solve", "--task", "game24", "4 9 10 13 -> 25"], "the Game of 24's target is 24, not 25"),
        (["solve", "--task", "game24", "--numbers", "4", "9", "10", "13", "--target", "25"], "target is 24, not 25"),
        (["solve", "--numbers", "4", "9", "--target", "-5"], "the target must be a whole number >= 0, got -5"),
        (["solve", "--numbers", "-4", "9", "--target", "5"], "numbers must be whole numbers >= 0, got -4"),
        (["solve", "--task", "gsm8k", "--numbers", "1", "2"], "--numbers is not an option of the gsm8k task"),
        (["solve", "--task", "chess", "--numbers", "1", "2", "--target", "3"], "unknown task 'chess'"),
        (["eval", "--task", "game24", "--search", "telepathy"], "unknown search 'telepathy'"),
        (["eval", "--search", "mcts", "--search-args", '{"sims": 3}'], "search 'mcts' has no option 'sims'"),
        (["eval", "--search", "astar", "--search-args", '{"aggregation": "max"}'], "aggregation must be one of"),
        (["eval", "--search", "mcts", "--search-args", '{"k": "4"}'], "option 'k' must be int, not \"4\""),
        (
            ["eval", "--search", "mcts", "--search-args", '{"simulations": -3}'],
            "search 'mcts': simulations must be at least 1, not -3",
        ),
        (["eval", "--search", "sample", "--search-args", '{"temperature": -1}'], "temperature must be 0 or more"),
        (["eval", "--scorer", "rollouts", "--scorer-args", '{"k": true}'], "option 'k' must be int, not true"),
        (["view", "/no/such/trees.jsonl.gz"], "no such file or folder"),
        (["serve", "--search", "beam", "--search-args", '{"width": 0.5}'], "option 'width' must be int"),
        (["eval", "--task", "game24", "--split", "dev"], "splits train and test"),
        (["eval", "--task", "countdown", "--problems", "/no/such/file.jsonl"], "not found"),
        (["eval", "--task", "game24", "--policy", "/no/such/model"], "no model at"),
        (["eval", "--policy-args", '{"max_tokens": 3}'], "policy 'tiny' has no option 'max_tokens'"),
        (["eval", "--limit", "0"], "--limit"),
        (["solve", "--task", "gsm8k"], "--question is required"),
        (["eval", "--task", "math"], "pass --problems"),
        (["eval", "--task", "gsm8k", "--scorer", "oracle"], "unknown scorer 'oracle'"),
        (["eval", "--scorer", "rollouts", "--scorer-args", '{"n": 2}'], "scorer 'rollouts' has no option 'n'"),
        (["eval", "--scorer", "tiny"], "tiny-improved is a policy without a value head: give a PRM, a value model"),
        (["eval", "--policy", "tiny-value"], "tiny-value is a value model (LlamaForTokenClassification), not a policy"),
        (  # the scorer's options are checked before the policy loads
            ["eval", "--policy", "/no/such/model", "--scorer", "value", "--scorer-args", '{"bogus": 1}'],
            "scorer 'value' has no option 'bogus'",
        ),
        (["eval", "--task", "gsm8k", "--scorer", "verifier", "--limit", "1"], "needs the reference answer"),
        (["eval", "--plugin", "/no/such/plugin.py"], "plug-in file not found"),
        (["frobnicate"], "invalid choice"),
        (["improve", "--run-dir", "r", "--data-search", "dfs", "--data-search-args", '{"rootk": 3}'], "'rootk'"),
        (["improve", "--run-dir", "r", "--eval-search-args", "[1]"], "expected a JSON object"),
        (["improve", "--run-dir", "r", "--value-labels", "soft"], "value_labels must be mc or hard"),
        (["improve", "--run-dir", "r", "--start-value", "/no/such/value"], "no value model folder"),
        (["improve", "--run-dir", "r", "--sft-epochs", "0"], "epochs must be positive"),
        (["improve", "--run-dir", "r", "--config", "/no/such.toml"], "config file not found"),
        (["improve", "--run-dir", "/proc/qstar-run"], "cannot write the run folder /proc/qstar-run"),
        (["solve", "--task", "game24", "1 2 3"], "the Game of 24 takes four numbers, got 3 (1 2 3)"),
        (["solve", "--task", "game24", "--numbers", "1", "2", "3", "4", "5"], "takes four numbers, got 5"),
        (["solve", "--task", "game24", "1 2 3 4", "--policy-args", '{"device": "gpu"}'], "device must be auto, cpu"),
        (["solve", "--task", "game24", "1 2 3 4", "--scorer", "value", "--scorer-args", '{"device": "tpu"}'], "'tpu'"),
        (["eval", "--task", "gsm8k", "--scorer", "tests"], "no PRM checkpoint at tests (expected a folder with"),
        (["eval", "--policy-args", '{"seed": "x"}'], "policy 'tiny': option 'seed' must be int, not \"x\""),
        (["eval", "--task", "gsm8k", "--task-args", '{"shots": "3"}'], "task 'gsm8k': option 'shots' must be int"),
        (["eval", "--task", "gsm8k", "--task-args", '{"shot": 3}'], "no option 'shot' (its options: problems_file,"),
        (["solve", "1 2 -> 3", "--chat"], "--chat/--no-chat applies to the hf and openai policies, not to tiny"),
        (["eval", "--api-key", "k"], "--api-key applies to the openai policy, not to tiny: drop it"),
        (["solve", "--task", "gsm8k", "--question", "1 + 1?", "--answer", "two"], "the answer 'two' is not a number"),
        (["eval", "--task", "gsm8k", "--task-args", '{"shots": -1}'], "task 'gsm8k': shots must be 0 or more, not -1"),
        (["eval", "--task", "countdown", "--task-args", '{"low": 50, "high": 1}'], "need 0 <= low <= high"),
        (["eval", "--task", "countdown", "--task-args", '{"held_out_targets": 91}'], "must be 0 to 90"),
        (["eval", "--task", "countdown", "--task-args", '{"sizes": {"val": -1}}'], "val split's size must be 0"),
        (["improve", "--run-dir", "r", "--policy", "coin"], "policy 'coin' has no weights to train"),
        (["improve", "--run-dir", "r", "--task-args", '{"shot": 1}'], "task 'game24' has no option 'shot'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(qstar, args, message):
    out = qstar(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr


def test_an_output_that_cannot_be_written_is_refused_before_any_work(qstar, tmp_path):
    """A folder where a file goes (or a file where a folder goes) is one line before the search or training, not a
    traceback after it that loses the results."""
    folder, file = tmp_path / "folder", tmp_path / "file"
    folder.mkdir()
    file.write_text("")
    cases = [
        (["eval", "--limit", "1", "--save-trees", str(folder)], f"{folder} is a folder: name a file"),
        (["eval", "--limit", "1", "--save-trees", str(file / "t.jsonl.gz")], f"{file} is a file"),
        (["compare", "--limit", "1", "--out", str(file)], f"{file} is a file: name a folder"),
        (["view", str(tmp_path), "-o", str(folder)], f"{folder} is a folder: name a file"),
        (["train", "sft", "--model", "tiny", "--records", str(file), "--output-dir", str(file)], "name a folder"),
        (  # a checkpoint replaces its folder whole: one holding other files would lose them
            ["train", "value", "--model", "tiny", "--records", str(file), "--output-dir", str(tmp_path)],
            f"{tmp_path} holds files and no checkpoint",
        ),
        (
            ["train", "value", "--model", "tiny", "--records", str(file), "--output-dir", str(TINY_VALUE)],
            "inside qstar's shipped checkpoints",
        ),
        (["pretrain", "--output-dir", str(tmp_path)], "holds files and no checkpoint"),
        (
            [
                "train",
                "value",
                "--model",
                "tiny",
                "--records",
                str(file),
                "--output-dir",
                str(folder / "v"),
                "--separator",
                "",
            ],
            "give a non-empty --separator",
        ),
    ]
    for args, message in cases:
        out = qstar(*args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and message in lines[0], (args, out.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"] and not list(folder.iterdir())


def test_lora_that_cannot_wrap_the_model_is_one_line_before_any_training(qstar, tmp_path):
    records = tmp_path / "sft.jsonl"
    records.write_text('{"prompt": "Input: 4 9 10 13 Target: 24\\n", "completion": "13 - 9 = 4 (left: 4 4 10)\\n"}\n')
    args = ["train", "sft", "--model", "tiny", "--records", str(records), "--output-dir", str(tmp_path / "out")]
    out = qstar(*args, "--lora", "--lora-targets", "nosuch")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert "LoRA adapters cannot wrap the llama model" in lines[0]
    assert not any((tmp_path / "out").glob("*"))  # nothing trained, nothing written


def test_a_config_file_with_a_mistyped_key_fails_before_any_work(qstar, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('data_search = "dfs"\n[sft]\nepochs = 3\nlearning_rate = 0.1\n')
    out = qstar("improve", "--run-dir", str(tmp_path / "run"), "--config", str(config))
    assert out.returncode == 2 and "unknown setting 'sft.learning_rate'" in out.stderr
    assert not (tmp_path / "run").exists()
    for text, says in [
        ('iterations = "two"\n', "setting 'iterations' must be int, not \"two\""),
        ('[sft]\nepochs = "x"\n', "setting 'sft.epochs' must be float or int, not \"x\""),
    ]:
        config.write_text(text)
        out = qstar("improve", "--run-dir", str(tmp_path / "run"), "--config", str(config))
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and says in out.stderr, out.stderr


def test_a_trainer_reads_its_table_of_an_improve_config(tmp_path):
    """`qstar train value --config configs/x.toml` repeats the iteration's value stage: the [value] table, flags on
    top; a trainer's own flat file as before."""
    from qstar.cli.options import config_of
    from qstar.cli.parser import build_parser
    from qstar.train.config import ValueConfig

    base = ["train", "value", "--model", "m", "--records", "r", "--output-dir", "o"]
    leg = str(Path(__file__).parent.parent / "configs" / "tiny-improved-3-cpu.toml")

    def cfg(*flags: str) -> ValueConfig:
        return config_of(build_parser().parse_args([*base, *flags]), ValueConfig, table="value")

    improve = cfg("--config", leg)
    assert (improve.epochs, improve.lr, improve.batch_size) == (2.0, 1e-3, 128)
    assert cfg("--config", leg, "--lr", "1e-4").lr == 1e-4
    assert cfg().batch_size == ValueConfig().batch_size
    flat = tmp_path / "value.toml"
    flat.write_text("lr = 0.002\n")
    assert cfg("--config", str(flat)).lr == 2e-3


@pytest.mark.parametrize(
    "task, rows",
    [
        ("countdown", '{"numbers": [1, 2, 3, 4], "target": 10}\n{"numbers": [1, 2, "three"], "target": 6}\n'),
        ("gsm8k", '{"question": "What is 2 + 3?", "answer": "5"}\n{"question": "And 2 + 4?"}\n'),
    ],
)
def test_malformed_problems_file_names_the_line(qstar, tmp_path, task, rows):
    f = tmp_path / "p.jsonl"
    f.write_text(rows.replace("\n", "\n\n", 1))  # a blank line between: the line is the file's, not the row's
    out = qstar("eval", "--task", task, "--problems", str(f))
    assert out.returncode == 2 and f"{f}:3:" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_improve_refuses_what_it_cannot_do_before_any_search(qstar, tmp_path):
    other = tmp_path / "countdown-run"
    other.mkdir()
    (other / "config.json").write_text('{"task": "countdown"}')
    out = qstar("improve", "--run-dir", str(other), "--resume")
    assert out.returncode == 2 and "holds a run of the countdown task, not game24" in out.stderr
    out = qstar("improve", "--run-dir", str(tmp_path / "none"), "--resume")
    assert out.returncode == 2 and "no run to resume in" in out.stderr and not (tmp_path / "none").exists()
    args = ["improve", "--run-dir", str(tmp_path / "lora"), "--lora", "--lora-targets", "no_such_proj"]
    out = qstar(*args)
    assert out.returncode == 2 and "LoRA adapters cannot wrap the llama model" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "lora").exists()
    out = qstar("improve", "--run-dir", str(tmp_path / "m"), "--merge")
    assert out.returncode == 2 and "merge applies to LoRA adapters" in out.stderr


def test_a_device_is_auto_or_one_this_machine_has():
    import torch

    from qstar.errors import QstarError
    from qstar.models import best_device, device_of

    assert device_of(None) == device_of("auto") == best_device() and device_of("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(QstarError, match="'cuda:1' is not available on this machine"):
            device_of("cuda:1")


def test_what_a_run_could_not_do_is_said_not_only_counted(qstar):
    """Problems whose search failed are counted with the first one's reason, and a run in which every search failed
    exits 1 saying why; a budget below one request's worst case, which lets no search start, is a warning rather
    than a silent 0%, and one that runs out before an answer is complete is said, not only a "not solved"."""
    out = qstar("eval", "--task", "gsm8k", "--limit", "2", "--json")
    result = json.loads(out.stdout)
    assert out.returncode == 1 and result["failed"] == 2
    assert "does not fit the model's context" in result["first_error"]  # the tiny model on a few-shot prompt
    assert out.stderr.strip().endswith(f"every problem's search failed, the first: {result['first_error']}")
    out = qstar("solve", "--task", "gsm8k", "--question", "What is 2 + 3?", "--answer", "5")
    assert out.returncode == 1 and "qstar: error: the search failed: " in out.stderr, out.stderr
    assert "does not fit the model's context" in out.stderr and "not solved" in out.stdout
    out = qstar("solve", "4 9 10 13 -> 24", "--budget", "5")
    assert out.returncode == 0 and "the budget of 5 tokens affords no model call" in out.stderr
    out = qstar("eval", "--task", "game24", "--limit", "2", "--budget", "5")
    assert out.returncode == 0 and "the budget of 5 tokens affords no model call" in out.stderr
    row = next(line for line in out.stdout.splitlines() if line.lstrip("│ ").startswith("2 "))
    assert [c.strip() for c in row.strip("│ ").split("│")][5:7] == ["-", "2"]  # no step to be legal; 2 cut short
    out = qstar("solve", "--task", "game24", "4 9 10 13", "--search", "beam", "--budget", "500")
    assert out.returncode == 0 and "not solved" in out.stdout, out.stderr
    assert "unfinished: the budget of 500 tokens ran out before the search had a complete answer" in out.stdout


def test_ctrl_c_is_one_line_and_exit_130(qstar_command, tmp_path):
    """An interrupted command says so in one line (improve: how to continue), not a traceback."""
    import signal
    import subprocess
    import time

    args = ["improve", "--run-dir", str(tmp_path / "run"), "--train-problems", "300", "--data-budget", "50000"]
    proc = subprocess.Popen(
        [*qstar_command, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background job's children ignore it
    )
    deadline = time.time() + 120
    while not (tmp_path / "run" / "config.json").exists() and time.time() < deadline:  # the run has begun
        time.sleep(0.2)
    for _ in range(3):  # a signal that lands in a garbage collector's callback is lost: send it again
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=20)
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        proc.kill()
        raise AssertionError("qstar improve did not stop on Ctrl-C")
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1] == "qstar: interrupted; run it again with --resume to continue"
