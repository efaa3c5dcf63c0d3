"""Config dataclasses as the single source of their fields: the CLI flags, the notebook forms and the checks of
notebook parameters are all read off the dataclass (its type hints, defaults and the docstring under each field),
so a new field or a changed default is one edit.

A config is checked when it is built (``check`` in its ``__post_init__``): every value against its field's type
(``Literal`` choices included) and the rules the class names (positive counts, probabilities), before any run
folder exists. A class may rename a field's flag with a ``FLAGS`` class attribute ({"student_net": "preset-net"}).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import math
import re
import textwrap
import types
import typing
from typing import Any, Literal

from .hardware import DEVICES

PRESETS = ("smoke", "demo", "full")
Preset = Literal["smoke", "demo", "full"]


class ConfigError(ValueError):
    """A config value that cannot run, with the field, its flag and what to give instead."""


def flag(cls, name: str) -> str:
    """The command-line flag of field ``name``: ``--total-steps``, or the class's own name for it."""
    return "--" + getattr(cls, "FLAGS", {}).get(name, name.replace("_", "-"))


@dataclasses.dataclass(frozen=True)
class OnDevice:
    """The field of every config whose loop runs networks: where they run (``hardware.resolve_device``)."""

    device: str = "auto"
    """Where the networks run: auto (a GPU when torch sees one, else the CPU), cpu, cuda, cuda:N or mps. Not part
    of the recipe: a run resumes on another device; config.json's machine records where it ran."""


@functools.lru_cache(maxsize=None)
def field_docs(cls) -> dict[str, str]:
    """The docstring under each field of a dataclass (its help text), read from the class's source."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:] + [None]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _plain(hint) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return hint, False


def choices(hint) -> tuple | None:
    hint, _ = _plain(hint)
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else None


def _describe(hint) -> str:
    hint, optional = _plain(hint)
    opts = choices(hint)
    if opts:
        text = "one of " + ", ".join(map(str, opts))
    elif typing.get_origin(hint) is tuple:
        text = "a list"
    else:
        text = {int: "a whole number", float: "a number", str: "a string", bool: "true or false",
                dict: "a mapping"}.get(hint, str(hint))
    return text + (" or None" if optional else "")


def _fits(value, hint) -> bool:
    hint, optional = _plain(hint)
    if value is None:
        return optional
    opts = choices(hint)
    if opts:
        return value in opts
    origin = typing.get_origin(hint)
    if origin is tuple:
        inner = typing.get_args(hint)[0] if typing.get_args(hint) else Any
        return isinstance(value, tuple) and all(inner is Any or _fits(v, inner) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool, dict):
        return isinstance(value, hint)
    return True


def check(config, positive: tuple[str, ...] = (), non_negative: tuple[str, ...] = (),
          probability: tuple[str, ...] = ()) -> None:
    """Every field against its type, then the named rules; the first problem raises ConfigError naming the field
    and its flag."""
    cls = type(config)
    for name, hint in hints(cls).items():
        if name in {f.name for f in dataclasses.fields(cls)} and not _fits(getattr(config, name), hint):
            raise ConfigError(f"{name} ({flag(cls, name)}) must be {_describe(hint)}, got {getattr(config, name)!r}")
    for name in ("seed", "eval_seed"):  # envs take seeds below 2**31 (ale-py seeds its envs seed, seed + 1, ... as C ints)
        value = getattr(config, name, None)
        if isinstance(value, int) and not 0 <= value < 2**31 - 2**16:
            raise ConfigError(f"{name} ({flag(cls, name)}) must be 0 or more and below 2**31 - 65536, got {value!r}")
    device = getattr(config, "device", None)
    if isinstance(device, str) and not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device.strip().lower()):
        raise ConfigError(f"device ({flag(cls, 'device')}) must be one of {DEVICES}, got {device!r}")
    for names, ok, what in ((positive, lambda v: v > 0, "above 0"), (non_negative, lambda v: v >= 0, "0 or more"),
                            (probability, lambda v: 0 <= v <= 1, "between 0 and 1")):
        for name in names:
            value = getattr(config, name)
            if value is not None and not ok(value):
                raise ConfigError(f"{name} ({flag(cls, name)}) must be {what}, got {value!r}")


def with_preset(cls, preset: str, table: dict, family: str | None = None, fixed: dict | None = None, **overrides):
    """Build config ``cls``: class defaults, then ``table[preset]`` (its ``[family]`` entry where given), then
    ``fixed`` (identity fields such as env_id), then the non-None ``overrides``; unknown fields fail."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)} (--preset)")
    fields = {f.name for f in dataclasses.fields(cls)}
    bad = set(overrides) - fields
    if bad:
        raise ConfigError(f"{cls.__name__} has no field(s) {sorted(bad)}; fields: {sorted(fields)}")
    entry = table[preset] if family is None else table[preset].get(family, {})
    values = {**entry, **{k: v for k, v in overrides.items() if v is not None}}
    return cls(preset=preset, **(fixed or {}), **values)


# -- the command line ------------------------------------------------------------------------------------------
def add_arguments(parser, cls, skip: tuple[str, ...] = (), required: tuple[str, ...] = (),
                  help_extra: dict[str, str] | None = None, show_defaults: bool = True) -> None:
    """One flag per field of ``cls`` (less ``skip``), typed and with choices and help from the class; every flag
    defaults to None, so that the preset and then the class decide what was not given (the help says the class
    default). ``values(args, cls)`` collects what was given."""
    docs, extra = field_docs(cls), help_extra or {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        hint, _ = _plain(hints(cls)[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        text = " ".join(x for x in (docs.get(f.name, ""), extra.get(f.name, "")) if x)
        if show_defaults and f.name not in required and default is not None and not isinstance(default, (tuple, dict)):
            text += f" (default {default})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": text.replace("%", "%%")}
        opts = choices(hint)
        if opts:
            kwargs.update(choices=opts, type=type(opts[0]))
        elif hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is tuple:
            kwargs.update(nargs="+")
        elif hint is dict:
            continue  # mappings are set in Python, not on a command line
        else:
            kwargs["type"] = hint if hint in (int, float, str) else str
            kwargs["metavar"] = f.name.upper()
        if f.name in required:
            kwargs["required"] = True
        parser.add_argument(flag(cls, f.name), **kwargs)


def values(args: argparse.Namespace, cls) -> dict:
    """The fields of ``cls`` given on the command line (tuples for list flags)."""
    out = {}
    for f in dataclasses.fields(cls):
        v = getattr(args, f.name, None)
        if v is not None:
            out[f.name] = tuple(v) if isinstance(v, list) else v
    return out


def parse_overrides(cls, items: list[str] | None, fixed: tuple[str, ...] = ("env_id", "preset", "seed")) -> dict:
    """``["lr=1e-3", "anneal_lr=false"]`` -> ``{"lr": 0.001, "anneal_lr": False}``, each value converted to the
    type of ``cls``'s field; an unknown field, a ``fixed`` one (it has its own flag) or a value of the wrong type
    fails with a message naming it."""
    settable = {}
    for name, hint in hints(cls).items():
        plain, _ = _plain(hint)
        if name not in fixed and (plain in (bool, int, float, str) or choices(plain)):
            settable[name] = plain
    out = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key, text = key.strip().replace("-", "_"), text.strip()
        if not sep or key not in settable:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(settable)}")
        try:
            out[key] = convert(text, settable[key])
        except ValueError:
            raise ConfigError(f"--set {item!r}: {key} takes {_describe(settable[key])}, got {text!r}") from None
    return out


def convert(text: str, hint):
    """A command-line or form string as a value of the field type ``hint``; ValueError where it is not one."""
    opts = choices(hint)
    if opts:
        value = type(opts[0])(text)
        if value not in opts:
            raise ValueError(text)
        return value
    if hint is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(text)
        return text.lower() == "true"
    if hint is int:
        return int(text)
    if hint is float:
        return float(text)
    return text


# -- notebooks ---------------------------------------------------------------------------------------------------
def check_params(cls, **params) -> None:
    """Fail early, naming the parameter, when a notebook parameter (papermill -p KEY VALUE) that sets field KEY of
    ``cls`` has the wrong type or is not one of its choices."""
    known = hints(cls)
    for name, value in params.items():
        value = tuple(value) if isinstance(value, list) else value  # a papermill list sets a tuple field
        if name not in known:
            raise TypeError(f"{cls.__name__} has no field {name!r}; a notebook parameter checked against it must be "
                            f"one of {sorted(known)}")
        if not _fits(value, known[name]):
            raise TypeError(f"notebook parameter {name!r} must be {_describe(known[name])}, got {value!r} "
                            f"({type(value).__name__}); pass e.g. -p {name} <{_describe(known[name])}>")
