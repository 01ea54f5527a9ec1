"""Frozen config dataclasses <-> command-line flags <-> JSON stored in output files.

Every subcommand maps 1:1 onto one frozen dataclass. Fields become flags
(``num_envs`` -> ``--num-envs``); a field declared with ``option(..., positional=True)``
becomes a positional argument. Unknown flags are an error (argparse's own). The config
is stored as JSON in the attributes of the file the command writes, and
:func:`config_from_json` rebuilds it exactly, so a result can be reproduced from its
file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from typing import Any

from valuedyn._errors import ValuedynError

_NO_DEFAULT = dataclasses.MISSING


def option(
    default: Any = _NO_DEFAULT,
    help: str = "",
    *,
    positional: bool = False,
    nargs: str | None = None,
    choices: tuple | None = None,
    metavar: str | None = None,
    static: bool = False,
    aliases: tuple[str, ...] = (),
) -> Any:
    """A dataclass field that knows how it appears on the command line.

    ``static=True`` marks a shape-fixing setting (changing it recompiles); it is only
    documentation here, but :func:`static_fields` lists them. ``aliases``: further flags
    accepted for it (an old spelling, so old command lines keep working).
    """
    metadata = dict(
        help=help, positional=positional, nargs=nargs, choices=choices, metavar=metavar, static=static,
        aliases=aliases,
    )
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple, not a mutable default, in a frozen config")
    if default is _NO_DEFAULT:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """Add one argument per field of ``config_cls`` to ``parser``."""
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        meta = f.metadata
        tp, optional = _unwrap_optional(hints[f.name])
        kwargs: dict[str, Any] = {"help": meta.get("help", "")}
        has_default = f.default is not _NO_DEFAULT
        if has_default:
            kwargs["default"] = f.default
            if kwargs["help"] and f.default is not None and tp is not bool:
                kwargs["help"] += f" (default: {f.default!r})"
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        origin = typing.get_origin(tp)
        if origin is tuple:
            item = typing.get_args(tp)[0]
            kwargs["type"] = item
            kwargs["nargs"] = meta.get("nargs") or ("*" if has_default else "+")
        elif tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = tp
            if meta.get("nargs"):
                kwargs["nargs"] = meta["nargs"]
        if meta.get("positional"):
            if has_default and "nargs" not in kwargs:
                kwargs["nargs"] = "?"
            parser.add_argument(f.name, **kwargs)
        else:
            if not has_default:
                kwargs["required"] = True
            parser.add_argument(_flag(f.name), *meta.get("aliases", ()), dest=f.name, **kwargs)


def config_from_namespace(config_cls: type, namespace: argparse.Namespace) -> Any:
    """Build the frozen config from parsed arguments (lists become tuples)."""
    values = {}
    for f in dataclasses.fields(config_cls):
        value = getattr(namespace, f.name)
        if isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    return config_cls(**values)


def config_to_dict(config: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def config_to_json(config: Any) -> str:
    """JSON for a file's attributes; includes the config class name."""
    return json.dumps({"config_class": type(config).__name__, **config_to_dict(config)}, sort_keys=True)


#: old field name -> new one (files written before the rename store the old name).
RENAMED_FIELDS = {"behavior": "behaviour"}


def config_from_json(config_cls: type, text: str) -> Any:
    """Rebuild a config stored by :func:`config_to_json`; refuse another class or unknown fields."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValuedynError(f"stored config is not valid JSON ({err}); the file is corrupt, re-create it") from None
    stored_class = data.pop("config_class", config_cls.__name__)
    for old, new in RENAMED_FIELDS.items():  # files written before a field was renamed stay readable
        if old in data and new not in data:
            data[new] = data.pop(old)
    if stored_class != config_cls.__name__:
        raise ValuedynError(
            f"stored config is a {stored_class}, expected a {config_cls.__name__}; pass a file written by the matching command"
        )
    known = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValuedynError(
            f"stored config has fields {unknown} that {config_cls.__name__} does not know; "
            "the file was written by another valuedyn version"
        )
    hints = typing.get_type_hints(config_cls)
    values = {}
    for name, value in data.items():
        tp, _ = _unwrap_optional(hints[name])
        values[name] = tuple(value) if typing.get_origin(tp) is tuple and value is not None else value
    return config_cls(**values)


def static_fields(config_cls: type) -> tuple[str, ...]:
    """Names of the shape-fixing (static) fields of a config class."""
    return tuple(f.name for f in dataclasses.fields(config_cls) if f.metadata.get("static"))
