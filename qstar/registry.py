"""Plug-ins by name: one registry per kind (tasks, policies, scorers, searches), all of the same shape.

A plug-in is a callable (a dataclass, a class or a function) whose keyword arguments are its options; it is
registered under a name with the kind's decorator, `@register_search("beam")`, optionally as a preset with
some options fixed, `@register_search("dfs-wide", root_k=16)`. Installed packages add their own through
entry points (group `qstar.tasks`, `qstar.policies`, `qstar.scorers` or `qstar.searches`: the entry point's
name is the plug-in's name, its object the plug-in), and a user's file through `load_plugin` (`--plugin`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Collection, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Generic, TypeVar

from qstar.config import help_of, wrong_kind
from qstar.errors import QstarError, blame

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered plug-in: what builds it and the options its name fixes."""

    factory: Callable[..., Any]
    defaults: dict[str, Any]


class Registry(Generic[T]):
    """Names to plug-ins of one kind; `build(name, **options)` makes one, checking the option names first."""

    def __init__(self, kind: str, group: str, protocol: type | None = None):
        self.kind, self.group = kind, group
        self.protocol = protocol  # what a built one must have: the members it declares
        self.members = protocol_members(protocol) if protocol is not None else ()
        self.entries: dict[str, Entry] = {}
        self.discovered = False

    def register(self, name: str, **defaults: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: register the decorated class or function under `name` (a preset when `defaults` are given)."""

        def wrap(factory: Callable[..., T]) -> Callable[..., T]:
            holder = self.holder(name, factory)
            if holder:
                raise QstarError(f"{self.kind} {name!r} is registered already (by {holder}): give yours another name")
            self.entries[name] = Entry(factory, defaults)
            return factory

        return wrap

    def discover(self) -> None:
        """Load the plug-ins installed packages declare in this kind's entry-point group (once)."""
        if self.discovered:
            return
        self.discovered = True
        for ep in entry_points(group=self.group):
            try:
                factory = ep.load()
            except Exception as e:  # a broken plug-in package must not hide the others
                raise QstarError(f"{self.kind} plug-in {ep.name!r} ({ep.value}) failed to load: {e}") from None
            holder = self.holder(ep.name, factory)
            if holder:
                raise QstarError(
                    f"{self.kind} plug-in {ep.name!r} ({ep.value}) takes the name of {holder}: "
                    "its package must name it otherwise"
                )
            self.entries.setdefault(ep.name, Entry(factory, {}))

    def holder(self, name: str, factory: Callable[..., Any]) -> str | None:
        """Who holds `name` already, other than `factory` (the same one imported again holds nothing against it)."""
        taken = self.entries.get(name)
        if taken is None or qualified(taken.factory) == qualified(factory):
            return None
        return qualified(taken.factory)

    def names(self) -> list[str]:
        self.discover()
        return list(self.entries)

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def entry(self, name: str) -> Entry:
        if name not in self:
            raise QstarError(f"unknown {self.kind} {name!r}; choose from {', '.join(self.names())}")
        return self.entries[name]

    def options(self, name: str) -> dict[str, Any]:
        """The options `name` takes and their defaults (the preset's where it fixes them); required ones map to
        `dataclasses.MISSING`."""
        entry = self.entry(name)
        return {**option_defaults(entry.factory), **entry.defaults}

    def help(self, name: str) -> dict[str, str]:
        """What each option of `name` does: a dataclass field's help, else the docstring's `Args:` section."""
        factory = self.entry(name).factory
        if dataclasses.is_dataclass(factory):
            return {f.name: help_of(f) for f in dataclasses.fields(factory)}
        return docstring_args(inspect.getdoc(factory))

    def describe(self, name: str) -> str:
        """What `name` is, in a line: its docstring's first sentence, and for a preset the options it fixes."""
        entry = self.entry(name)
        doc = " ".join((inspect.getdoc(entry.factory) or "").split("\n\n")[0].split())
        first = doc.split(". ")[0].rstrip(".") + "." if doc else ""
        if not entry.defaults:
            return first
        base = next((n for n, e in self.entries.items() if e.factory is entry.factory and not e.defaults), None)
        fixed = ", ".join(f"{key}={value!r}" for key, value in entry.defaults.items())
        return f"{base or entry.factory.__name__} with {fixed}: {first}".rstrip(": ")

    def check(self, name: str, context: Collection[str] = (), **options: Any) -> dict[str, Any]:
        """Refuse, in one line, an option `name` does not take or a value of the wrong kind, before anything is built
        (a caller that loads models first checks here). `context` names what the caller passes itself. Returns the
        options `name` accepts, with their defaults."""
        entry = self.entry(name)
        accepted = option_defaults(entry.factory)
        unknown = [key for key in options if key not in accepted or key in context]
        if unknown:
            known = ", ".join(k for k in accepted if k not in context) or "none"
            raise QstarError(f"{self.kind} {name!r} has no option {unknown[0]!r} (its options: {known})")
        wrong = wrong_kind(entry.factory, options)
        if wrong:
            key, wanted, value = wrong
            raise QstarError(f"{self.kind} {name!r}: option {key!r} must be {wanted}, not {value}")
        return accepted

    def build(self, name: str, context: dict[str, Any] | None = None, **options: Any) -> T:
        """Make the plug-in `name` with `options` (an unknown option is a one-line error). `context` holds what the
        caller has for plug-ins that want it (a scorer's task and policy): each is passed if the factory takes it."""
        entry = self.entry(name)
        accepted = self.check(name, context or {}, **options)
        given = {k: v for k, v in (context or {}).items() if k in accepted}
        with blame(f"{self.kind} {name!r}"):  # what else the plug-in raises
            try:
                built = entry.factory(**{**entry.defaults, **options, **given})
            except (TypeError, QstarError) as e:  # a required option left out, a wrong kind, or its own check
                raise QstarError(f"{self.kind} {name!r}: {e}") from None
        missing = [member for member in self.members if not hasattr(built, member)]
        if missing:
            where = f"{self.protocol.__module__}.{self.protocol.__name__}"  # type: ignore[union-attr]
            raise QstarError(f"{self.kind} {name!r} has no {', '.join(missing)} (what a {self.kind} has: {where})")
        return built


def qualified(factory: Callable[..., Any]) -> str:
    return f"{factory.__module__}.{factory.__qualname__}"


def protocol_members(protocol: type) -> tuple[str, ...]:
    """The attributes and methods a `typing.Protocol` declares (its own, in order)."""
    declared = [*getattr(protocol, "__annotations__", {}), *vars(protocol)]
    return tuple(dict.fromkeys(m for m in declared if not m.startswith("_")))


def option_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """Keyword options of a dataclass (its init fields) or of a function or class signature, with defaults."""
    if dataclasses.is_dataclass(factory):
        out = {}
        for f in dataclasses.fields(factory):
            if f.init:
                out[f.name] = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        return out
    params = inspect.signature(factory).parameters.values()
    return {
        p.name: dataclasses.MISSING if p.default is inspect.Parameter.empty else p.default
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def docstring_args(doc: str | None) -> dict[str, str]:
    """The `Args:` section of a Google-style docstring: each `name: text` (or `name (type): text`) line and the
    lines indented below it, as one line of help per name."""
    out: dict[str, str] = {}
    lines = iter((doc or "").splitlines())
    for line in lines:
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            break
    indent, name = None, None
    for line in lines:
        text = line.strip()
        depth = len(line) - len(line.lstrip())
        if text and depth == 0:
            break  # the next section
        entry = re.fullmatch(r"(\w+)(?: \(.*?\))?:\s*(.*)", text)
        if entry and depth == (indent if indent is not None else depth):
            indent, name = depth, entry[1]
            out[name] = entry[2]
        elif text and name is not None:
            out[name] = f"{out[name]} {text}".strip()
    return out


def load_plugin(path: str | Path) -> None:
    """Import a user's Python file so that its `register_*` decorators run (the `--plugin FILE.py` option); a file
    imported already is not run again."""
    path = Path(path)
    if not path.is_file():
        raise QstarError(f"plug-in file not found: {path}")
    name = f"qstar_plugin_{path.stem}"
    loaded = sys.modules.get(name)
    if loaded is not None and Path(loaded.__file__ or "").resolve() == path.resolve():
        return  # imported already (by the command line, then by each Replica naming it): run its file once
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise QstarError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise QstarError(f"plug-in {path} failed to load: {type(e).__name__}: {e}") from None
