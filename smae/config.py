"""Frozen-dataclass configs and `--set key=value` overrides.

Overrides address fields by dotted path (`model.decoder_depth=8`, `lr=3e-4`), are parsed with
the field's own type, and an unknown key is an error that lists the known ones: a typo must
never be silently ignored. Values are parsed by type, never with `eval`.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _parse_value(text: str, annotation: Any, key: str) -> Any:
    """Parses `text` as a value of the annotated field type (bool, int, float, str, tuples, Optional)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if text.strip().lower() == "none" and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _parse_value(text, option, key)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(f"--set {key}: {'; '.join(errors)}")
    if origin is tuple:
        parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
        if args and args[-1] is not Ellipsis:
            item_types = args
        else:  # tuple[X, ...] or a bare tuple
            item_types = (args[0] if args else str,) * len(parts)
        if len(item_types) != len(parts):
            raise ValueError(f"--set {key}: expected {len(item_types)} comma-separated values, got {text!r}")
        return tuple(_parse_value(p.strip(), t, key) for p, t in zip(parts, item_types))
    if origin is typing.Literal:
        if text not in args:
            raise ValueError(f"--set {key}: {text!r} is not one of {list(args)}")
        return text
    try:
        if annotation is bool:
            return _parse_bool(text)
        if annotation is int:
            return int(text)
        if annotation is float:
            return float(text)
        if annotation is str:
            return text
    except ValueError:
        raise ValueError(f"--set {key}: cannot parse {text!r} as {annotation.__name__}") from None
    raise ValueError(f"--set {key}: fields of type {annotation!r} cannot be set from the command line")


def add_override_argument(parser, what: str) -> None:
    """The `--set KEY=VALUE ...` option every command shares (args.overrides, a list of strings)."""
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help=f"{what} (several after one --set, or --set repeated)")


def apply_overrides(config: Any, assignments: list[str] | None) -> Any:
    """Returns a copy of the frozen dataclass `config` with `key=value` assignments applied.

    Nested dataclass fields are addressed with dots. Raises ValueError naming the bad key and
    listing the valid ones.
    """
    for assignment in assignments or []:
        if "=" not in assignment:
            raise ValueError(f"--set expects key=value, got {assignment!r}")
        key, text = assignment.split("=", 1)
        config = _set_path(config, key.strip().split("."), text, key.strip())
    return config


def _set_path(config: Any, path: list[str], text: str, full_key: str) -> Any:
    hints = typing.get_type_hints(type(config))
    fields = {f.name for f in dataclasses.fields(config)}
    name = path[0]
    if name not in fields:
        raise ValueError(f"--set {full_key}: unknown key {name!r}; known keys: {', '.join(sorted(fields))}")
    current = getattr(config, name)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise ValueError(f"--set {full_key}: {name!r} has no sub-keys")
        return dataclasses.replace(config, **{name: _set_path(current, path[1:], text, full_key)})
    if dataclasses.is_dataclass(current):
        raise ValueError(f"--set {full_key}: {name!r} is a group; set one of its keys ({name}.KEY=VALUE)")
    return dataclasses.replace(config, **{name: _parse_value(text, hints[name], full_key)})


def to_dict(config: Any) -> dict:
    """The resolved config as plain JSON-able data (saved with every run and checkpoint)."""
    return dataclasses.asdict(config)
