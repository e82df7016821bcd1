"""`qstar pretrain` learns: the loss falls and every parameter moves; the shipped checkpoint plays legally."""

import json

import pytest
import torch
from transformers import LlamaForCausalLM

from qstar.errors import QstarError
from qstar.pipelines.pretrain import legal_step_rate, pretrain
from qstar.pipelines.pretrain_config import PretrainConfig
from qstar.policy.tiny import TinyPolicy, new_tiny_model
from qstar.tasks import get_task


def test_pretraining_makes_the_loss_fall_and_changes_every_parameter(tmp_path):
    cfg = PretrainConfig(
        output_dir=str(tmp_path),
        steps=120,
        batch_size=32,
        lr=3e-3,
        warmup=10,
        hidden=64,
        layers=2,
        mlp=128,
        eval_every=60,
        eval_problems=16,
    )
    torch.manual_seed(cfg.seed)  # pretrain() seeds the same way, so this is its initial model
    initial = dict(new_tiny_model(cfg.hidden, cfg.layers, cfg.heads, cfg.mlp)[0].named_parameters())
    metrics = pretrain(cfg)
    losses = [r["loss"] for r in metrics["history"]]
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10
    trained = dict(LlamaForCausalLM.from_pretrained(tmp_path).named_parameters())
    for name, before in initial.items():
        assert not torch.equal(before, trained[name]), f"{name} did not change"
    saved = json.loads((tmp_path / "qstar_pretrain.json").read_text())
    assert [h["step"] for h in saved["history"] if "legal_step_rate" in h] == [60, 120]  # every evaluation kept
    assert 0 <= saved["final"]["legal_step_rate"] <= 1


def test_shipped_rules_checkpoint_plays_mostly_legal_steps(shipped_policy: TinyPolicy):
    task = get_task("game24")
    problems = task.problems("test")[:40]
    assert legal_step_rate(shipped_policy, problems, task) > 0.5


def test_an_unknown_device_is_refused_before_anything_trains():
    with pytest.raises(QstarError, match="device must be auto, cpu, cuda or cuda:N, not 'tpu'"):
        PretrainConfig(device="tpu")
