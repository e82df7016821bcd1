"""`qstar improve` end to end with the real tiny policy: learning happens, and a killed run resumes cleanly."""

import gzip
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from qstar.io import load_trees, read_jsonl
from qstar.pipelines.evaluate import evaluate
from qstar.pipelines.improve import Improve
from qstar.pipelines.improve_config import ImproveConfig
from qstar.policy.tiny import TinyPolicy
from qstar.search import get_search
from qstar.tasks import get_task
from qstar.train.config import SFTConfig, ValueConfig

SMALL = ["--train-problems", "24", "--data-search", "sample", "--data-budget", "1200"]
SMALL += ["--eval-limit", "6", "--eval-search", "best-of-n", "--eval-budget", "300", "--sft-epochs", "20"]
SMALL += ["--value-epochs", "1", "--max-value-records", "50"]


def small_config(**kw) -> ImproveConfig:
    return ImproveConfig(
        train_problems=24,
        data_search="sample",
        data_budget=1200,
        eval_limit=6,
        eval_search="best-of-n",
        eval_budget=300,
        sft=SFTConfig(epochs=20.0, lr=1e-3),
        value=ValueConfig(epochs=1.0, lr=1e-3),
        **kw,
    )


@pytest.mark.slow
def test_two_iterations_raise_greedy_accuracy_on_the_training_problems(tmp_path):
    cfg = small_config(iterations=2)
    run = Improve(cfg, tmp_path)
    rows = run.run()
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    task = get_task("game24")
    problems = [t.problem for k in (1, 2) for t in load_trees(tmp_path / f"iter-{k}" / "trees.jsonl.gz")]
    before, _ = evaluate(
        task, problems, TinyPolicy.from_pretrained(run.policy_path(0)), get_search("greedy"), show_progress=False
    )
    after, _ = evaluate(
        task, problems, TinyPolicy.from_pretrained(run.policy_path(2)), get_search("greedy"), show_progress=False
    )
    assert after.accuracy > before.accuracy
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [0, 1, 2]
    assert (tmp_path / "improve.png").read_bytes()[:4] == b"\x89PNG"
    timings = json.loads((tmp_path / "iter-2" / "timings.json").read_text())
    assert list(timings) == ["search", "records", "train_policy", "train_value", "evaluate_models"]
    assert all(seconds >= 0 for seconds in timings.values()) and timings["train_policy"] > 0


def files(run: Path) -> dict[str, bytes]:
    """Every file of a run, trees decompressed, leaving out the timing-bearing training histories and timings."""
    out = {}
    for path in sorted(run.rglob("*")):
        if path.is_file() and "history" not in path.name and path.name != "timings.json":
            data = path.read_bytes()
            out[str(path.relative_to(run))] = gzip.decompress(data) if path.suffix == ".gz" else data
    return out


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_files(qstar_command, tmp_path):
    QSTAR = qstar_command
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    args = ["improve", "--iterations", "1", *SMALL]
    subprocess.run([*QSTAR, *args, "--run-dir", str(whole)], check=True, capture_output=True, timeout=600)

    proc = subprocess.Popen(
        [*QSTAR, *args, "--run-dir", str(killed)], stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 300
    while not (killed / "iter-1" / "sft.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-iteration: records written, the policy still training
    proc.wait()
    assert not (killed / "iter-1" / "eval.json").exists()

    again = subprocess.run([*QSTAR, *args, "--run-dir", str(killed)], capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr  # never silently mixed with an old run
    resumed = subprocess.run(
        [*QSTAR, *args, "--run-dir", str(killed), "--resume"], check=True, capture_output=True, text=True, timeout=600
    )
    assert "iteration 1: search done in an earlier run" in resumed.stderr  # not "search 0 s"

    done, reference = files(killed), files(whole)
    assert len(done["iter-1/value.jsonl"].splitlines()) == 50  # capped by a seeded sample
    assert sorted(done) == sorted(reference)
    assert not [name for name in done if name.endswith(".tmp") or "/." in name]
    for name in ("iter-1/trees.jsonl", "iter-1/sft.jsonl", "iter-1/value.jsonl", "metrics.jsonl"):
        key = name + ".gz" if name.endswith("trees.jsonl") else name
        assert done[key] == reference[key], name


def test_extra_problems_never_include_an_evaluation_problem(tmp_path):
    from qstar.errors import QstarError
    from qstar.io import save_trees
    from qstar.types import Tree

    cfg = small_config(iterations=1, extra_task="countdown", extra_problems=40)
    run = Improve(cfg, tmp_path)
    held = {run.task.problem_key(p) for p in get_task("countdown").evaluation_problems()}
    assert len(held) == 1100  # the 100 test games and countdown's 1,000 held-out-target problems
    assert len(run.extra) > 0 and not [p for p in run.extra if run.task.problem_key(p) in held]
    test_game = get_task("game24").problems("test")[0]
    (tmp_path / "iter-1").mkdir()
    save_trees(tmp_path / "iter-1" / "trees.jsonl.gz", [Tree(test_game)])
    try:
        run.records(1)
    except QstarError as e:
        assert test_game.id in str(e)
    else:
        raise AssertionError("a test problem in the trees must stop the records stage")
    assert not (tmp_path / "iter-1" / "sft.jsonl").exists()


def test_an_iteration_that_solved_nothing_writes_no_value_records(tmp_path):
    """Every path's labels 0 would teach the value model that every step is dead: none are written, and with the
    value records empty the value stage keeps the previous model."""
    from qstar.io import read_jsonl, save_trees
    from qstar.types import Step, Tree

    run = Improve(small_config(iterations=1), tmp_path)
    tree = Tree(run.train[0])
    first = tree.root.add_child(Step("13 + 9 = 22 (left: 4 10 22)", -0.7, tokens=9))
    first.add_child(Step("22 - 10 = 12 (left: 4 12)", -0.7, tokens=9)).add_child(
        Step("12 + 4 = 16 (left: 16)", -0.7, tokens=9), terminal=True, reward=0.0
    )
    (tmp_path / "iter-1").mkdir()
    save_trees(tmp_path / "iter-1" / "trees.jsonl.gz", [tree])
    run.records(1)
    assert read_jsonl(tmp_path / "iter-1" / "value.jsonl") == []
    tree.root.children[0].children[0].children[0].reward = 1.0  # the same path verified: its labels are kept
    save_trees(tmp_path / "iter-1" / "trees.jsonl.gz", [tree])
    (tmp_path / "iter-1" / "sft.jsonl").unlink()
    run.records(1)
    assert [r["labels"][-1] for r in read_jsonl(tmp_path / "iter-1" / "value.jsonl")] == [1.0]


def test_a_run_folder_is_one_process_s_at_a_time(tmp_path):
    """Two processes on one run would interleave their stages' files: the second is refused until the first ends."""
    from qstar.errors import QstarError

    first = Improve(small_config(), tmp_path)
    with pytest.raises(QstarError, match="in use by another qstar improve process"):
        Improve(small_config(), tmp_path, resume=True)
    first.lock.close()  # what the first process's end does
    Improve(small_config(), tmp_path, resume=True)


def test_a_run_saved_before_a_setting_existed_resumes_at_its_default_and_no_other(tmp_path):
    """config.json of an older qstar lacks the settings added since: the run resumes while they are at their
    defaults; a changed setting is still refused."""
    from qstar.errors import QstarError

    Improve(small_config(), tmp_path).lock.close()
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["sft"]["sampling"], saved["sft_per_problem"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    Improve(small_config(), tmp_path, resume=True).lock.close()
    with pytest.raises(QstarError, match="differs from this command's settings"):
        Improve(small_config(sft_per_problem=1), tmp_path, resume=True)


def test_a_resume_may_run_a_run_on_for_more_iterations(tmp_path):
    """--iterations is the one setting a resume may change: the saved settings take the new count."""
    Improve(small_config(iterations=2), tmp_path).lock.close()
    Improve(small_config(iterations=5), tmp_path, resume=True).lock.close()
    assert json.loads((tmp_path / "config.json").read_text())["iterations"] == 5


def test_the_shipped_checkpoints_solve_test_games():
    from qstar.scorers.value import ValueScorer

    task = get_task("game24")
    problems = task.problems("test")
    greedy, runs = evaluate(task, problems, TinyPolicy.from_pretrained(), get_search("greedy"), show_progress=False)
    assert greedy.accuracy >= 0.3  # 43% when shipped; the rules-only checkpoint solves none
    value = ValueScorer(task, ground_truth=False)
    solved = [t for t in runs[0] if t.solved][:8]
    unsolved = [t for t in runs[0] if not t.solved and t.answer is not None and t.answer.legal][:8]
    first = [value.values([t.problem], [t.answer.texts()[:1]])[0] for t in solved + unsolved]
    assert all(0 <= v <= 1 for v in first)
    assert sum(first[: len(solved)]) / len(solved) > sum(first[len(solved) :]) / max(len(unsolved), 1)


def test_a_start_value_model_guides_the_first_search(tmp_path):
    """`start_value` replaces the Monte-Carlo rollouts of iteration 1's data search with a value model,
    and iteration 1's value model trains on from it."""
    from qstar.checkpoints import DEFAULT_VALUE
    from qstar.scorers import RolloutScorer
    from qstar.scorers.value import ValueScorer

    run = Improve(small_config(start_value="tiny-value"), tmp_path)
    assert run.value_path(0) == DEFAULT_VALUE and run.value_path(1) == tmp_path / "iter-1" / "value"
    assert isinstance(run.models(0)[1], ValueScorer)
    assert isinstance(Improve(small_config(), tmp_path / "b").models(0)[1], RolloutScorer)


def test_without_rollouts_the_first_search_is_scored_by_the_verifier_alone(tmp_path, monkeypatch):
    """`rollouts = 0`: before a value model exists the verifier scores complete steps and every partial one 0, so the
    data search spends no tokens on rollouts and a step's label comes from what it expanded below."""
    from qstar.errors import QstarError
    from qstar.scorers.ground_truth import VerifierScorer

    run = Improve(small_config(rollouts=0), tmp_path)
    policy, scorer = run.models(0)
    assert isinstance(scorer, VerifierScorer) and scorer.partial == 0.0
    assert run.replica(0, evaluation=True).scorer == "verifier"
    (tmp_path / "verifier").mkdir()  # a folder of the scorer's name in the working directory is not the scorer
    monkeypatch.chdir(tmp_path)
    assert run.replica(0, evaluation=True).scorer == "verifier"
    problem = run.test[0]
    (step,) = policy.propose([run.task.render(problem, [])])[0]  # the rules-only policy's steps are legal
    assert scorer.score([problem], [[step.text]]).values == [0.0]
    with pytest.raises(QstarError, match="rollouts must be 0 or more"):
        small_config(rollouts=-1)


def test_legal_steps_keep_every_search_of_the_run_to_the_tasks_legal_steps(tmp_path):
    """`legal_steps`: the data search's and the evaluation's policy write only legal steps, a server's through its
    constrained decoding."""
    run = Improve(small_config(legal_steps=True), tmp_path)
    assert (
        run.replica(0).policy_options["legal_steps"] and run.replica(0, evaluation=True).policy_options["legal_steps"]
    )
    assert run.models(0)[0].legal_steps  # the loaded policy keeps to the lists its searches hand it
    assert not Improve(small_config(), tmp_path / "b").replica(0).policy_options.get("legal_steps")
    assert small_config(legal_steps=True, policy="http://127.0.0.1:9/v1", train_model="tiny").legal_steps


def test_a_shared_trunk_run_keeps_one_network_for_policy_and_value(tmp_path):
    """With `shared_trunk`, each iteration's policy/ holds the value head too, trained in the same stage, and the
    evaluation's search is guided by it; no separate value model is written."""
    from qstar.errors import QstarError
    from qstar.models import value_head_files
    from qstar.train.config import PolicyValueConfig

    with pytest.raises(QstarError, match="drop step_dpo"):
        small_config(shared_trunk=True)
    cfg = small_config(
        iterations=1, shared_trunk=True, step_dpo=False, policy_value=PolicyValueConfig(epochs=20.0, value_epochs=1.0)
    )
    run = Improve(cfg, tmp_path)
    rows = run.run()
    it = tmp_path / "iter-1"
    assert value_head_files(it / "policy") and not (it / "value").exists()
    assert run.value_path(1) == it / "policy" and rows[-1]["scorer"] == "value"
    losses = [h["loss"] for h in json.loads((it / "policy_value_history.json").read_text())]
    assert sum(losses[-3:]) < sum(losses[:3])
    assert list(json.loads((it / "timings.json").read_text()))[2:4] == ["train_policy", "train_value"]


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def recipe(name: str) -> ImproveConfig:
    """configs/NAME.toml read as `qstar improve --config` reads it (every name and value checked before any work)."""
    from qstar.config import from_dict, read_config_file

    return from_dict(ImproveConfig, read_config_file(CONFIGS / f"{name}.toml"))


def test_the_demo_config_is_a_valid_run_with_the_search_targets():
    """configs/demo.toml, what scripts/demo.sh runs, is a valid run."""
    cfg = recipe("demo")
    assert cfg.search_targets and cfg.policy == "tiny-rules" and cfg.eval_search == "dfs-wide"


def test_the_countdown_config_is_a_valid_run_evaluated_without_pruning():
    """configs/countdown.toml is a valid run, evaluated by `dfs-wide` with two proposals a node and no pruning."""
    cfg = recipe("countdown")
    assert cfg.task == "countdown" and cfg.eval_search == "dfs-wide"
    assert cfg.eval_search_args == {"k": 2, "threshold": 0.0}


def test_shared_states_need_hard_labels():
    from qstar.errors import QstarError

    assert ImproveConfig(shared_states=True, value_labels="hard").shared_states
    with pytest.raises(QstarError, match="value_labels = hard"):
        ImproveConfig(shared_states=True, value_labels="mc")


def test_the_configs_reproduce_the_recipes_of_the_shipped_checkpoints():
    """configs/tiny-improved-K-*.toml hold the settings each leg of the shipped checkpoints ran with, as recorded
    in its qstar_improve.json (fields renamed since; the starting folders are the previous leg's run)."""
    from dataclasses import asdict

    from qstar.checkpoints import TINY_IMPROVED
    from qstar.config import from_dict, read_config_file

    legs = json.loads((TINY_IMPROVED / "qstar_improve.json").read_text())["legs"]
    files = sorted(CONFIGS.glob("tiny-improved-*.toml"))
    assert len(files) == len(legs) == 4
    renamed = {"value_records": "max_value_records", "dpo": "step_dpo", "dpo_train": "dpo"}
    for path, leg in zip(files, legs, strict=True):
        settings = read_config_file(path)
        cfg = asdict(from_dict(ImproveConfig, {**settings, "start_value": ""}))
        recorded = {renamed.get(k, k): v for k, v in leg["config"].items()}
        for name, value in recorded.items():
            if name in ("policy", "start_value") or (name == "dpo" and not cfg["step_dpo"]):
                continue  # paths of the run that made them; DPO settings of a leg without DPO
            mine = cfg[name]
            if isinstance(value, dict) and name in ("sft", "dpo", "value"):
                mine = {k: mine[k] for k in value}
            assert mine == value, (path.name, name)


@pytest.mark.parametrize("replay, iterations", [(0, {1, 2, 3}), (1, {3}), (2, {2, 3})])
def test_sft_replays_the_trees_of_the_last_iterations_it_is_told(tmp_path, shipped_policy, replay, iterations):
    from qstar.io import save_trees

    task = get_task("game24")
    problems = task.problems("train")[:90]
    trees = evaluate(task, problems, shipped_policy, get_search("greedy"), show_progress=False)[1][0]
    run = Improve(small_config(iterations=3, sft_replay=replay), tmp_path)
    for k in (1, 2, 3):
        (tmp_path / f"iter-{k}").mkdir()
        save_trees(tmp_path / f"iter-{k}" / "trees.jsonl.gz", trees[(k - 1) * 30 : k * 30])
    run.records(3)
    prompts = {row["prompt"] for row in read_jsonl(tmp_path / "iter-3" / "sft.jsonl")}
    solved_in = {k for k in (1, 2, 3) for t in trees[(k - 1) * 30 : k * 30] if t.solved}
    assert len(solved_in) == 3  # every iteration's trees hold a solution
    shown = {k for k in (1, 2, 3) for t in trees[(k - 1) * 30 : k * 30] if task.render(t.problem, []) in prompts}
    assert shown == iterations
