"""Config dataclasses that describe themselves: every field carries its help text (`option`), and a config is
built from a plain mapping (a TOML or JSON file, command-line flags) with unknown keys refused by name."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from qstar.errors import QstarError

C = TypeVar("C")


def option(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:
    """A dataclass field with its help text (what `--help` shows); a mutable default is copied per instance."""
    if isinstance(default, dict | list) or dataclasses.is_dataclass(default):
        value = default
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def help_of(f: dataclasses.Field) -> str:
    return f.metadata.get("help", "")


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type of each field (annotations may be strings under `from __future__ import annotations`)."""
    return typing.get_type_hints(cls)


def nested(cls: type) -> dict[str, type]:
    """The fields of `cls` that are configs themselves (e.g. a trainer's config inside `ImproveConfig`)."""
    types = field_types(cls)
    return {f.name: types[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(types[f.name])}


SIMPLE_KINDS = (bool, int, float, str, type(None))


def option_kinds(factory: Any) -> dict[str, tuple[type, ...]]:
    """The types the options of simple types (numbers, text, flags, None) of a dataclass, a function or a class's
    `__init__` accept: what a JSON or TOML value is checked against before the config or plug-in is made, so a
    wrong kind fails at once and not in the middle of a run."""
    annotated = factory if dataclasses.is_dataclass(factory) or not isinstance(factory, type) else factory.__init__
    try:
        hints = typing.get_type_hints(annotated)
    except (NameError, TypeError, AttributeError):  # a hint this module cannot resolve: leave the checks to it
        return {}
    hints.pop("return", None)
    kinds = {}
    for key, hint in hints.items():
        args = (
            typing.get_args(hint)
            if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
            else (hint,)
        )
        if all(a in SIMPLE_KINDS for a in args):
            kinds[key] = tuple(args) + ((int,) if float in args else ()) + ((os.PathLike,) if str in args else ())
    return kinds


def wrong_kind(factory: Any, values: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """The first value whose kind its option does not accept (a flag is not a number): (key, wanted, the value as
    JSON writes it, which is how the user gave it: `true`, not Python's `True`)."""
    checked = option_kinds(factory)
    for key, value in values.items():
        kinds = checked.get(key)
        if kinds and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            wanted = " or ".join("null" if k is type(None) else k.__name__ for k in kinds if k is not os.PathLike)
            try:
                return key, wanted, json.dumps(value)
            except TypeError:  # a value given from Python that JSON cannot write
                return key, wanted, repr(value)
    return None


def from_dict(cls: type[C], data: Mapping[str, Any], where: str = "") -> C:
    """`cls(**data)`, with nested configs built from nested mappings (laid over the field's default) and any unknown
    key a one-line error."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in names]
    if unknown:
        raise QstarError(f"unknown setting {where + unknown[0]!r}; {cls.__name__} has {', '.join(sorted(names))}")
    values = dict(data)
    wrong = wrong_kind(cls, values)
    if wrong:
        key, wanted, value = wrong
        raise QstarError(f"setting {where + key!r} must be {wanted}, not {value}")
    defaults = {f.name: f for f in dataclasses.fields(cls)}
    for name, sub in nested(cls).items():
        if isinstance(values.get(name), Mapping):  # laid over this config's own default of that field
            f = defaults[name]
            base = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            start = dataclasses.asdict(base) if dataclasses.is_dataclass(base) else {}
            values[name] = from_dict(sub, {**start, **values[name]}, f"{where}{name}.")
    try:
        return cls(**values)
    except TypeError as e:
        raise QstarError(f"{cls.__name__}: {e}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config file's settings: TOML (`.toml`) or JSON (anything else)."""
    path = Path(path)
    if not path.is_file():
        raise QstarError(f"config file not found: {path}")
    try:
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text())
        data = json.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise QstarError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'} ({e})") from None
    if not isinstance(data, dict):
        raise QstarError(f"{path}: expected an object of settings")
    return data


def check(condition: bool, message: str) -> None:
    """Validation in a config's `__post_init__`: a one-line error when `condition` fails."""
    if not condition:
        raise QstarError(message)


def check_ranges(
    config: object, counts: tuple[str, ...] = (), non_negative: tuple[str, ...] = (), flags: bool = False
) -> None:
    """Numeric options in range, in a config's `__post_init__`: each of `counts` at least 1, each of `non_negative`
    0 or more (None: the option's own default); the first out of range is a one-line error naming it (as its
    command-line flag with `flags`)."""
    for names, least, wanted in ((counts, 1, "at least 1"), (non_negative, 0, "0 or more")):
        for name in names:
            value = getattr(config, name)
            label = "--" + name.replace("_", "-") if flags else name
            check(value is None or value >= least, f"{label} must be {wanted}, not {value}")
