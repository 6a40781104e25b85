"""Frozen-dataclass configs and `--set key=value` overrides.

Overrides address fields by dotted path (`model.decoder_depth=8`, `lr=3e-4`), are parsed with
the field's own type, and an unknown key is an error that lists the known ones: a typo must
never be silently ignored. Values are parsed by type, never with `eval`.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Callable

from smae.errors import UserError


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

    Nested dataclass fields are addressed with dots. All assignments are applied before the
    config is validated, so `epochs=10 warmup_epochs=2` works whatever the order. Raises
    ValueError naming the bad key and listing the valid ones, or UserError naming the key whose
    value breaks a rule of the config (see check_fields).
    """
    changes: dict = {}
    texts: dict[str, str] = {}
    for assignment in assignments or []:
        if "=" not in assignment:
            raise ValueError(f"--set expects key=value, got {assignment!r}")
        key, text = (part.strip() for part in assignment.split("=", 1))
        texts[key] = text
        _add_change(config, changes, key.split("."), text, key)
    return _replaced(config, changes, "", texts)


def _add_change(config: Any, changes: dict, path: list[str], text: str, full_key: str) -> None:
    """Records the parsed value of `full_key` in the nested dict `changes` (one level per dot)."""
    hints = typing.get_type_hints(type(config))
    fields = {f.name for f in dataclasses.fields(config)}
    name = path[0]
    if name not in fields:
        raise ValueError(f"--set {full_key}: unknown key {name!r}; known keys: {', '.join(sorted(fields))}")
    current = getattr(config, name)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise ValueError(f"--set {full_key}: {name!r} has no sub-keys")
        _add_change(current, changes.setdefault(name, {}), path[1:], text, full_key)
        return
    if dataclasses.is_dataclass(current):
        raise ValueError(f"--set {full_key}: {name!r} is a group; set one of its keys ({name}.KEY=VALUE)")
    changes[name] = _parse_value(text, hints[name], full_key)


def _replaced(config: Any, changes: dict, prefix: str, texts: dict[str, str]) -> Any:
    """dataclasses.replace, level by level from the innermost; a broken rule names its --set key."""
    values = {name: _replaced(getattr(config, name), change, f"{prefix}{name}.", texts) if isinstance(change, dict)
              else change for name, change in changes.items()}
    try:
        return dataclasses.replace(config, **values)
    except InvalidField as error:
        key = prefix + error.field
        if key in texts:
            raise UserError(f"--set {key}={texts[key]}: {error.rule}") from None
        given = ", ".join(f"{k}={texts[k]}" for k in (prefix + name for name in values) if k in texts)
        raise UserError(f"--set {given or prefix.rstrip('.')}: then {key} {error.rule}") from None


class InvalidField(UserError, ValueError):
    """A config field breaks its rule; apply_overrides names it by its --set key."""

    def __init__(self, field: str, rule: str):
        super().__init__(f"{field}: {rule}")
        self.field, self.rule = field, rule

    def __reduce__(self):
        return type(self), (self.field, self.rule)


def _has_type(value: Any, annotation: Any) -> bool:
    """Whether `value` is of the annotated field type (ints pass as floats; bools never as numbers)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, option) for option in args)
    if origin is typing.Literal:
        return value in args
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        item_types = (args[0],) * len(value) if not args or args[-1] is Ellipsis else args
        return len(item_types) == len(value) and all(_has_type(v, t) for v, t in zip(value, item_types))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True  # an annotation this check does not model


def check_fields(config: Any, rules: dict[str, tuple[Callable[[Any], bool], str]]) -> None:
    """Validates a dataclass config when it is built (call from __post_init__).

    Every field must have its annotated type; then each rule `field: (test, requirement)` must
    hold, e.g. {"epochs": (lambda v: v >= 1, "must be at least 1")}. A test may read other
    fields through `config` for rules between fields. Raises InvalidField on the first failure.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not _has_type(value, hints[f.name]):
            raise InvalidField(f.name, f"expected {_type_name(hints[f.name])}, got {value!r}")
    for name, (test, requirement) in rules.items():
        if not test(getattr(config, name)):
            raise InvalidField(name, f"{requirement}, got {getattr(config, name)!r}")


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def to_dict(config: Any) -> dict:
    """The resolved config as plain JSON-able data (saved with every run and checkpoint)."""
    return dataclasses.asdict(config)
