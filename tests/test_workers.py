"""Searches on Ray workers (`--workers`, `--ray`): the figures and trees of one process whatever the sharding, a
killed worker's shard run again with nothing lost or counted twice, and one-line errors for bad input."""

import json
import math
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from qstar.io import load_trees
from qstar.pipelines.improve import Improve
from qstar.pipelines.improve_config import ImproveConfig
from qstar.pipelines.replica import Replica
from qstar.pipelines.workers import Workers
from qstar.search import get_search, run_search

COUNTDOWN = ["--task", "countdown", "--split", "val", "--limit", "40"]


def same(a, b, path="") -> None:
    """Equal, floats to 1e-4 (log-probs and values computed in other batches differ in their last bits)."""
    if isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, abs_tol=1e-4), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def qstar_json(command: list[str], *args: str) -> dict:
    done = subprocess.run([*command, *args, "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    result.pop("seconds")
    return result


@pytest.mark.slow
def test_eval_on_two_workers_prints_what_one_process_prints(qstar_command):
    for search in ("best-of-n", "mcts", "dfs"):
        args = [*COUNTDOWN, "--search", search, "--budget", "2000"]
        alone = qstar_json(qstar_command, "eval", *args)
        sharded = qstar_json(qstar_command, "eval", *args, "--workers", "2")
        assert sharded == alone, search
        assert alone["n"] == 40 and alone["tokens_per_problem"] > 100


@pytest.mark.slow
def test_compare_on_two_workers_gives_the_rows_of_one_process(qstar_command, tmp_path):
    args = [*COUNTDOWN, "--searches", "best-of-n,mcts", "--budgets", "300,1000", "--seeds", "2"]
    rows = {}
    for name, extra in (("alone", []), ("sharded", ["--workers", "2"])):
        done = subprocess.run(
            [*qstar_command, "compare", *args, "--out", str(tmp_path / name), *extra], capture_output=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-2000:]
        rows[name] = json.loads((tmp_path / name / "compare.json").read_text())
        for row in rows[name]:
            row.pop("seconds")
    assert rows["sharded"] == rows["alone"]
    assert any(row["accuracy"] > 0 for row in rows["alone"])


@pytest.mark.slow
def test_improve_data_search_on_two_workers_writes_the_trees_of_one_process(tmp_path):
    """Iteration 1's data search (MCTS scored by sampled rollouts: the policy and the scorer draw from per-problem
    seeds) gives the same trees on two workers, and the evaluation stage the same figures."""
    cfg = ImproveConfig(train_problems=16, data_search="mcts", data_budget=600, rollouts=2, eval_limit=20)
    runs = Improve(cfg, tmp_path / "alone"), Improve(cfg, tmp_path / "sharded", workers=2)
    for run in runs:
        run.search(1)
    assert runs[1].evaluate_models(0) == runs[0].evaluate_models(0)
    alone = [t.to_dict() for t in load_trees(tmp_path / "alone" / "iter-1" / "trees.jsonl.gz")]
    sharded = [t.to_dict() for t in load_trees(tmp_path / "sharded" / "iter-1" / "trees.jsonl.gz")]
    assert len(alone) == 16 and sum(len(t["root"]["children"]) for t in alone) > 16
    same(sharded, alone)


def kill_when_searching(pid: int, killed: list[int]) -> None:
    """SIGKILL the worker process `pid` once it is inside `search` (Ray names the process after the method)."""
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if b"SearchWorker.search" in title:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.002)


def test_a_replica_keeps_names_that_a_folder_in_the_working_directory_shares(tmp_path, monkeypatch):
    """A registered policy or scorer name, or a shipped checkpoint's, is not read as a folder of the same name in
    the working directory; a folder that is no name is made absolute for workers that start elsewhere."""
    for name in ("tiny", "tiny-rules", "value", "tiny-value", "mine"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path)
    assert Replica("game24", "tiny", "value").policy == "tiny"
    assert Replica("game24", "tiny-rules", "tiny-value").scorer == "tiny-value"
    assert Replica("game24", "tiny-rules").policy == "tiny-rules"
    assert Replica("game24", "mine", "mine").policy == str(tmp_path / "mine")


@pytest.mark.slow
def test_a_killed_worker_s_shard_runs_again_and_the_trees_are_unchanged():
    replica = Replica("countdown", "tiny", "verifier")
    task, policy, scorer = replica.load()
    problems = task.problems("val", limit=40)
    search = get_search("best-of-n", n=16)
    policy.seed(0)
    expected = run_search(search, problems, task, policy, scorer, budget=2000, seed=0)
    with Workers(replica, 2) as workers:
        victim, killed = workers.pids()[1], []
        killer = threading.Thread(target=kill_when_searching, args=(victim, killed))
        killer.start()
        trees = workers.search(search, problems, budget=2000, seed=0)
        killer.join()
        assert killed == [victim]
        assert victim not in workers.pids()  # Ray restarted the worker, which searched its shard again
    assert [t.problem.id for t in trees] == [p.id for p in problems]  # each problem once, in order
    same([t.to_dict() for t in trees], [t.to_dict() for t in expected])


def test_a_worker_whose_models_fail_to_load_is_named_and_the_command_stops(qstar_command, tmp_path):
    plugin = tmp_path / "fragile.py"
    plugin.write_text(
        "import ray\n"
        "from qstar.policy import load_policy, register_policy\n\n"
        "@register_policy('fragile')\n"
        "def fragile(**options):\n"
        "    if ray.is_initialized() and ray.get_runtime_context().get_actor_id():\n"
        "        raise RuntimeError('no GPU memory left on this node')\n"
        "    return load_policy('tiny', **options)\n"
    )
    start = time.time()
    done = subprocess.run(
        [*qstar_command, "eval", *COUNTDOWN, "--policy", "fragile", "--plugin", str(plugin), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("qstar: error: worker ") and "no GPU memory left on this node" in last, done.stderr
    assert time.time() - start < 120


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "0"], "must be at least 1, got 0"),
        (["--workers", "-2"], "must be at least 1, got -2"),
        (["--ray", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
        (["--ray", "not-an-address"], "--ray expects auto or HOST:PORT"),
        (["--ray"], "--ray found no Ray cluster on this machine"),  # no `ray start` here: qstar's hint, not Ray's
    ],
)
def test_bad_worker_settings_are_one_line_errors_within_seconds(qstar_command, args, message):
    start = time.time()
    done = subprocess.run([*qstar_command, "eval", *COUNTDOWN, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert time.time() - start < 20
