"""qstar: deliberate reasoning with language models — step proposals, process rewards, tree search, verifiers and
self-improvement. The public API is importable from here; each name loads its module on first use, so
`import qstar` stays cheap (no torch until a model is needed)."""

from __future__ import annotations

import importlib
from typing import Any

PUBLIC = {
    "qstar.types": ("Node", "Prefix", "Problem", "Scores", "Step", "Tree"),
    "qstar.errors": ("BackendError", "QstarError"),
    "qstar.registry": ("load_plugin",),
    "qstar.tasks": ("TASKS", "BaseTask", "StepCheck", "Task", "get_task", "register_task"),
    "qstar.policy": ("POLICIES", "Policy", "load_policy", "register_policy"),
    "qstar.scorers": ("SCORERS", "Scorer", "get_scorer", "register_scorer"),
    "qstar.search": (
        "SEARCHES",
        "Context",
        "Propose",
        "Score",
        "Search",
        "get_search",
        "register_search",
        "run_search",
    ),
    "qstar.records": ("preference_records", "search_target_records", "sft_records", "value_records"),
    "qstar.io": ("load_trees", "save_trees"),
    "qstar.pipelines.evaluate": ("EvalResult", "evaluate"),
    "qstar.pipelines.improve": ("Improve",),
    "qstar.pipelines.improve_config": ("ImproveConfig",),
}
WHERE = {name: module for module, names in PUBLIC.items() for name in names}
__all__ = sorted(WHERE)


def __getattr__(name: str) -> Any:
    if name == "__version__":  # the installed distribution's, as `qstar --version` prints it
        from importlib.metadata import version

        return version("qstar")
    if name not in WHERE:
        raise AttributeError(f"module 'qstar' has no attribute {name!r}")
    value = getattr(importlib.import_module(WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
