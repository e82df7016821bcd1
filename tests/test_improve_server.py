"""`qstar improve` with its data search on an OpenAI-compatible server: `--train-model` names the weights the server
serves, a reload hook points the server at each iteration's trained weights, and a mismatch is refused up front.
Training stages under a launcher (`torchrun`, as `accelerate launch` on GPUs) write what the in-process ones do."""

import json
from pathlib import Path

import pytest

from qstar.errors import QstarError
from qstar.pipelines.improve import Improve
from qstar.pipelines.improve_config import ImproveConfig
from qstar.policy.openai import OpenAIPolicy
from qstar.policy.served import reload_server
from qstar.tasks import get_task
from tests.servers import Faults, FaultServer, LlamaServer

EASY = Path(__file__).parent / "data" / "easy_word_problems.jsonl"


@pytest.fixture
def adapter(tmp_path) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    return folder


def test_vllm_lora_reload_loads_the_adapters_under_a_name_later_requests_use(adapter):
    api = {"/v1/load_lora_adapter": (200, {})}
    with FaultServer(Faults(api=api)) as server, OpenAIPolicy(server.url) as policy:
        assert reload_server(policy, "vllm-lora", adapter, "run-iter-1") == "run-iter-1"
        assert server.api_calls == [
            ("/v1/load_lora_adapter", {"lora_name": "run-iter-1", "lora_path": str(adapter.resolve())})
        ]


def test_vllm_lora_reload_accepts_an_adapter_loaded_before_a_resume_and_explains_a_refusal(adapter):
    loaded = {"/v1/load_lora_adapter": (400, {"error": {"message": "The lora adapter 'x' has already been loaded."}})}
    with FaultServer(Faults(api=loaded)) as server, OpenAIPolicy(server.url) as policy:
        assert reload_server(policy, "vllm-lora", adapter, "x") == "x"
    with FaultServer() as server, OpenAIPolicy(server.url) as policy:  # no such endpoint: 404 from the server
        server.faults.api = {"/v1/load_lora_adapter": (404, {"detail": "Not Found"})}
        with pytest.raises(QstarError, match=r"HTTP 404 .*VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
            reload_server(policy, "vllm-lora", adapter, "x")
        with pytest.raises(QstarError, match="holds full weights"):
            reload_server(policy, "vllm-lora", adapter.parent, "x")


def test_sglang_reload_updates_the_weights_from_disk(tmp_path, adapter):
    api = {"/update_weights_from_disk": (200, {"success": True, "message": "ok"})}
    with FaultServer(Faults(api=api)) as server, OpenAIPolicy(server.url) as policy:
        assert reload_server(policy, "sglang", tmp_path, "x") is None  # the served model keeps its name
        assert server.api_calls == [("/update_weights_from_disk", {"model_path": str(tmp_path.resolve())})]
        server.faults.api["/update_weights_from_disk"] = (200, {"success": False, "message": "shape mismatch"})
        with pytest.raises(QstarError, match=r"did not load .*shape mismatch"):
            reload_server(policy, "sglang", tmp_path, "x")
        with pytest.raises(QstarError, match="holds adapters"):
            reload_server(policy, "sglang", adapter, "x")


def test_a_reload_command_gets_the_checkpoint_and_the_server_must_answer_after(tmp_path, adapter):
    seen = tmp_path / "seen.txt"
    with FaultServer() as server, OpenAIPolicy(server.url, retries=0) as policy:
        assert reload_server(policy, f"echo {{name}} {{path}} > {seen}", adapter, "it-1") is None
        assert seen.read_text().split() == ["it-1", str(adapter.resolve())]
        with pytest.raises(QstarError, match="reload command exited with 3: broken"):
            reload_server(policy, "echo broken >&2; exit 3 # {path}", adapter, "it-1")
        server.stop()
        with pytest.raises(QstarError, match="did not answer within 0s"):
            reload_server(policy, "true {path}", adapter, "it-1", wait=0)


def test_train_model_of_another_family_than_the_server_is_refused_before_any_search(qstar, tmp_path):
    with FaultServer() as server:  # reads every prompt as 10 tokens; the tiny model reads characters
        out = qstar("improve", "--policy", server.url, "--train-model", "tiny-rules", "--run-dir", str(tmp_path / "r"))
        assert out.returncode == 2, out.stderr
        assert "does not match the server's model fake-model" in out.stderr and len(out.stderr.splitlines()) == 1
        assert all(r["max_tokens"] == 1 for r in server.requests)  # the tokenizer probes only: no search
        assert not (tmp_path / "r").exists()


def test_a_train_model_that_holds_no_model_is_one_line(qstar, tmp_path):
    with FaultServer() as server:
        out = qstar("improve", "--policy", server.url, "--train-model", str(tmp_path), "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 2 and "no model at" in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "http://127.0.0.1:9"], "name them with train_model"),
        (["--train-model", "tiny"], "train_model applies to a server policy"),
        (["--reload", "sglang"], "reload applies to a server policy"),
        (["--policy", "http://127.0.0.1:9", "--train-model", "tiny", "--reload", "vllm-lora"], "add lora"),
        (["--policy", "http://127.0.0.1:9", "--train-model", "tiny", "--reload", "restart.sh"], "holding {path}"),
        (
            ["--policy", "http://127.0.0.1:9", "--train-model", "tiny", "--reload", "vllm-lora", "--lora", "--merge"],
            "without merge",
        ),
        (["--launcher", "no-such-launcher --nproc 2"], "no program 'no-such-launcher'"),
        (["--server-args", '{"timeout": 5}'], "server_args applies to a server policy"),
        (
            ["--policy", "http://127.0.0.1:9", "--train-model", "tiny", "--server-args", '{"nope": 1}'],
            "no option 'nope'",
        ),
        (
            ["--policy", "http://127.0.0.1:9", "--train-model", "tiny", "--server-args", '{"constraint": "tgi"}'],
            "constraint must be one of",
        ),
    ],
)
def test_server_and_launcher_settings_are_checked_before_any_work(qstar, tmp_path, args, message):
    out = qstar("improve", *args, "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr


def test_server_args_reach_every_request_of_the_run(tmp_path):
    """`server_args` configure the openai backend of the run: the step length it asks for, and its
    `constraint` on the data search's legal-step requests (a llama.cpp grammar instead of vLLM's regex). The server
    reports no prompt tokens, so the tiny tokenizer is not compared with it."""
    task = get_task("game24")
    problem = task.parse_problem("4 6 8 9")
    step = task.legal_steps(problem, [])[0]
    with FaultServer(Faults(reply=step + "\n", prompt_tokens=None)) as server:
        args = {"constraint": "llama.cpp", "max_step_tokens": 40}
        config = ImproveConfig(policy=server.url, train_model="tiny", legal_steps=True, server_args=args)
        run = Improve(config, tmp_path)
        assert run.replica(0).policy_options["constraint"] == "llama.cpp"
        policy, _ = run.models(0)
        (proposals,) = policy.propose([task.render(problem, [])], allowed=[task.legal_steps(problem, [])])
    assert proposals[0].text == step
    body = server.requests[-1]
    assert "grammar" in body and "structured_outputs" not in body and body["max_tokens"] == 40


def test_a_stage_whose_every_search_failed_stops_the_run_and_writes_nothing(tmp_path):
    """The server fails every search's requests: the evaluation before iteration 1, and the data search, each stop
    the run with the first error and write nothing, so a resumed run does them again."""
    faults = Faults(fail_marker="Target: 24", prompt_tokens=None)  # in every game's prompt; no tokenizer to compare
    with FaultServer(faults) as server:
        config = ImproveConfig(
            policy=server.url, train_model="tiny", server_args={"retries": 0}, eval_limit=2, train_problems=2,
            data_search="greedy", eval_search="greedy", rollouts=0,
        )  # fmt: skip
        run = Improve(config, tmp_path)
        with pytest.raises(QstarError, match=r"every greedy evaluation search failed, the first: .*injected failure"):
            run.run()
        assert not (tmp_path / "iter-0" / "eval.json").exists()
        (tmp_path / "iter-1").mkdir()
        with pytest.raises(QstarError, match=r"every data search failed, the first: .*\(then --resume the run\)"):
            run.search(1)
        assert not (tmp_path / "iter-1" / "trees.jsonl.gz").exists()


@pytest.mark.slow
def test_improve_searches_on_the_server_and_trains_the_weights_it_serves(smollm2_gguf, qstar, tmp_path):
    """SmolLM2 served by llama.cpp makes the data; its GGUF weights train as LoRA adapters; a reload command gets
    the trained adapters before the iteration is evaluated on the server."""
    run, seen = tmp_path / "run", tmp_path / "reloaded.txt"
    with LlamaServer(smollm2_gguf, threads=1) as server:
        out = qstar(
            "improve", "--task", "gsm8k", "--policy", server.url, "--train-model", str(smollm2_gguf),
            "--reload", f"echo {{name}} {{path}} > {seen}", "--problems", str(EASY), "--lora", "--lora-r", "4",
            "--iterations", "1", "--train-problems", "8", "--data-search", "greedy", "--eval-limit", "2",
            "--eval-search", "greedy", "--batch-size", "8", "--sft-epochs", "2", "--sft-batch-size", "4",
            "--dpo-batch-size", "4", "--value-epochs", "1", "--value-batch-size", "4", "--max-value-records", "8",
            "--run-dir", str(run), timeout=1500,
        )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    name, path = seen.read_text().split()
    assert name.startswith("qstar-") and name.endswith("-iter-1") and path == str(run / "iter-1" / "policy")
    adapter = json.loads((run / "iter-1" / "policy" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(run / "base")  # the served GGUF's weights, saved once
    assert json.loads((run / "iter-1" / "sft_history.json").read_text())  # the server's greedy solved some
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_training_stages_under_a_launcher_run_on_two_processes(qstar, tmp_path):
    run = tmp_path / "run"
    out = qstar(
        "improve", "--iterations", "1", "--train-problems", "24", "--data-budget", "1200", "--eval-limit", "4",
        "--eval-budget", "300", "--sft-epochs", "5", "--value-epochs", "1", "--max-value-records", "50",
        "--launcher", "torchrun --standalone --nproc_per_node 2", "--run-dir", str(run), timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    for stage, kind in (("policy-sft", "sft"), ("policy", "dpo"), ("value", "value")):
        summary = json.loads((run / "iter-1" / stage / "qstar_train.json").read_text())
        assert summary["kind"] == kind and summary["processes"] == 2 and summary["history"]
    history = json.loads((run / "iter-1" / "sft_history.json").read_text())
    assert history[-1]["loss"] < history[0]["loss"]
    assert not list((run / "iter-1").glob("*.launched")) and not list((run / "iter-1").glob("*-config.json"))
