"""Files that runs write: atomic (write a temporary file, then rename), so a killed run never leaves half a file;
and the checks of paths that come before any work (outputs, model folders), torch-free."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from qstar.checkpoints import HERE, resolve
from qstar.errors import QstarError
from qstar.types import Tree

UMASK = os.umask(0)
os.umask(UMASK)


def check_writable(path: str | Path, folder: bool = False) -> Path:
    """Refuse, before any work, an output path that cannot be written: a file where a folder is asked for (or a
    folder where a file is), a place under a file, one without write permission. Makes the folder the output goes
    in (`path` itself with `folder`). Returns the path."""
    path = Path(path)
    kind, other = ("folder", "file") if folder else ("file", "folder")
    if path.exists() and path.is_dir() != folder:
        raise QstarError(f"{path} is a {other}: name a {kind} to write")
    parent = path if folder else path.parent
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir():
        raise QstarError(f"cannot write {path}: {existing} is a file")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise QstarError(f"cannot write {path}: {e.strerror or e}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise QstarError(f"cannot write {path}: no permission to write in {parent}")
    return path


def check_checkpoint_folder(path: str | Path) -> Path:
    """Refuse, before any training, a checkpoint folder whose writing would lose files: a checkpoint replaces its
    folder whole, so a folder holding anything but a checkpoint, or one shipped inside qstar, is one line. Makes its
    parent (not the folder: a failed run leaves nothing behind). Returns the path made absolute."""
    path = Path(path).resolve()
    if path == HERE or HERE in path.parents:
        raise QstarError(f"{path} is inside qstar's shipped checkpoints: name another folder to write")
    if path.exists() and not path.is_dir():
        raise QstarError(f"{path} is a file: name a folder to write")
    if path.is_dir() and any(path.iterdir()) and not ((path / "config.json").is_file() or is_adapter(path)):
        raise QstarError(
            f"{path} holds files and no checkpoint, and the checkpoint would replace the folder whole: name a new or "
            "empty folder"
        )
    check_writable(path.parent, folder=True)
    return path


def is_adapter(path: str | Path) -> bool:
    """A PEFT adapter folder (LoRA weights and the name of their base model)."""
    return (Path(path) / "adapter_config.json").is_file()


def model_folder(spec: str | Path) -> Path:
    """The model folder, LoRA adapter folder or `.gguf` file a spec names (a shipped checkpoint's name resolved),
    checked before anything loads."""
    path = resolve(spec)
    folder = (path / "config.json").is_file() or is_adapter(path)
    if not folder and not (path.suffix == ".gguf" and path.is_file()):
        raise QstarError(
            f"no model at {path} (expected a folder with config.json, a LoRA adapter folder, a .gguf file, or a URL)"
        )
    return path


def policy_folder(spec: str | Path) -> Path:
    """`model_folder`, refusing a checkpoint that holds no causal LM: a value model's or PRM's classification head
    read as a policy would write nothing sensible, silently."""
    path = model_folder(spec)
    config = path / "config.json"
    if config.is_file():
        architecture = (json.loads(config.read_text()).get("architectures") or [""])[0]
        if architecture.endswith(("ForTokenClassification", "ForSequenceClassification")):
            raise QstarError(f"{path} is a value model ({architecture}), not a policy: give it to --scorer")
    return path


def replace_folder(source: str | Path, path: str | Path) -> None:
    """Rename the finished folder `source` to `path`, replacing a folder left there by a run killed before: a folder
    named `path` is always a whole one. Its files get the usual permissions (safetensors writes them private), so a
    server running as another user on a shared file system can read the checkpoint."""
    for file in Path(source).rglob("*"):
        if file.is_file():
            os.chmod(file, 0o666 & ~UMASK)
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    Path(source).rename(path)


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes the file private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def numbered_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file (gzipped when it ends in .gz); a missing
    file or a line that is not a JSON object is a one-line error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise QstarError(f"file not found: {path}")
    with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise QstarError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise QstarError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, row


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The objects of a JSONL file, in order (see `numbered_jsonl`)."""
    return [row for _, row in numbered_jsonl(path)]


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Objects as JSON lines, written atomically."""
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows).encode())


def figure(**kwargs):
    """A matplotlib figure and axes drawn off-screen (the Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(**kwargs)


def save_png(fig, path: str | Path) -> None:
    """Render `fig` to PNG atomically and close it."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def save_trees(path: str | Path, trees: Iterable[Tree], each: Iterable[dict] | None = None, **fields) -> None:
    """Trees as JSON lines (gzipped when the name ends in .gz); `fields` are added to every line, `each` (one dict
    a tree, such as its seed) to its tree's own."""
    trees = list(trees)
    extras = list(each) if each is not None else [{}] * len(trees)
    lines = (json.dumps({**fields, **extra, **t.to_dict()}) + "\n" for t, extra in zip(trees, extras, strict=True))
    text = "".join(lines).encode()
    atomic_write(path, gzip.compress(text) if str(path).endswith(".gz") else text)


def read_tree_lines(path: str | Path) -> list[dict]:
    """The JSON lines of a trees file: each tree's dict with the fields `save_trees` added."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_trees_file(path: str | Path) -> tuple[list[dict], list[Tree]]:
    """A trees file's lines (`read_tree_lines`) and their trees; a missing file, or one that is no trees file (a
    records file, a truncated or corrupt one), is a one-line error."""
    if not Path(path).is_file():
        raise QstarError(f"file not found: {path}")
    try:
        lines = read_tree_lines(path)
        return lines, [Tree.from_dict(line) for line in lines]
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError, AttributeError) as e:
        raise QstarError(f"{path} is not a trees file ({type(e).__name__}: {e})".splitlines()[0]) from None


def load_trees(path: str | Path) -> list[Tree]:
    """The trees `save_trees` (or `qstar eval --save-trees`) wrote, each with its answer node and compute."""
    return read_trees_file(path)[1]
