"""A training stage of `qstar improve` run as `qstar train` under a launcher (`accelerate launch`, `torchrun`), so the
loop trains on every GPU of a machine while its searches run in one process."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path

from qstar.errors import QstarError
from qstar.io import atomic_write
from qstar.train.config import LoRAConfig, TrainConfig


def launch_command(launcher: str) -> list[str]:
    """The launcher's words, its program found on PATH or beside this interpreter (an unactivated virtualenv)."""
    words = shlex.split(launcher)
    found = shutil.which(words[0]) or shutil.which(words[0], path=str(Path(sys.executable).parent))
    if found is None:
        raise QstarError(f"launcher: no program {words[0]!r} on PATH or beside {sys.executable}")
    return [found, *words[1:]]


def launch_training(
    launcher: str,
    kind: str,
    model: Path,
    records: Path,
    out: Path,
    cfg: TrainConfig,
    lora: LoRAConfig | None = None,
    separator: str = "\n",
) -> list[dict]:
    """Train `kind` (sft, dpo, value) from `model` on `records` into the folder `out` with `LAUNCHER -m qstar train`
    (a folder already there is replaced; a value model reads each step at `separator`); returns the loss history the
    trainer wrote. The launched processes print to the terminal; a failure is one line naming the command."""
    shutil.rmtree(out, ignore_errors=True)
    settings = out.with_name(f"{out.name}.{kind}-config.json")
    atomic_write(settings, json.dumps(asdict(cfg)).encode())
    command = [*launch_command(launcher), "-m", "qstar", "train", kind, "--model", str(model)]
    command += ["--records", str(records), "--output-dir", str(out), "--config", str(settings)]
    if kind == "value":
        command.append(f"--separator={separator}")  # one argument: a separator may start with a dash
    if lora is not None:
        command.append("--lora")
        for f in fields(lora):
            command += [f"--lora-{f.name}", str(getattr(lora, f.name))]
    done = subprocess.run(command)
    if done.returncode != 0 or not (out / "qstar_train.json").is_file():
        raise QstarError(f"the {kind} stage exited with {done.returncode} (its output is above): {shlex.join(command)}")
    settings.unlink()
    return json.loads((out / "qstar_train.json").read_text())["history"]
