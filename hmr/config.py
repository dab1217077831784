"""The toolkit's one config system: plain dataclasses, serialised as YAML.

Every configurable part (models, training, fitting, demo) describes its settings as a dataclass;
``save_yaml``/``load_yaml`` write and read them, and ``from_dict`` rebuilds nested dataclasses while
rejecting unknown keys with a message that names them.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from hmr.io.atomic import atomic_path

T = TypeVar("T")


def to_dict(cfg: Any) -> dict:
    """A dataclass (possibly nested) as plain Python types (tuples become lists)."""
    return _plain(dataclasses.asdict(cfg))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; nested dataclass fields are built recursively."""
    if not isinstance(data, dict):
        raise ValueError(f"config{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"config{where}: unknown keys {unknown} for {cls.__name__} (known: {sorted(fields)})")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value, f"{where}.{key}")
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            args = typing.get_args(hint)
            # tuple[SomeConfig, ...]: a list of mappings, each rebuilt as that dataclass.
            item = args[0] if len(args) == 2 and args[1] is Ellipsis and dataclasses.is_dataclass(args[0]) else None
            value = tuple(
                from_dict(item, v, f"{where}.{key}[{i}]") if item and isinstance(v, dict) else v
                for i, v in enumerate(value)
            )
        kwargs[key] = value
    return cls(**kwargs)


def override(cfg: T, /, **overrides) -> T:
    """A copy of dataclass ``cfg`` with ``overrides`` applied: a dict given for a nested dataclass field
    replaces only the fields it names (``head={"depth": 2}``). Unknown names are refused; the result is
    checked with its ``validate()`` when it has one."""
    out = _override(cfg, overrides, "")
    if hasattr(out, "validate"):
        out.validate()
    return out


def _override(cfg: T, overrides: dict, where: str) -> T:
    fields = [f.name for f in dataclasses.fields(cfg)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown {where}config fields {unknown}; known: {sorted(fields)}")
    values = {}
    for key in fields:
        value = overrides.get(key, getattr(cfg, key))
        if dataclasses.is_dataclass(getattr(cfg, key)) and isinstance(value, dict | type(getattr(cfg, key))):
            # Nested configs are always copied, so the result never shares mutable parts with ``cfg``.
            value = _override(getattr(cfg, key) if isinstance(value, dict) else value,
                              value if isinstance(value, dict) else {}, f"{where}{key} ")  # fmt: skip
        values[key] = value
    return dataclasses.replace(cfg, **values)


def save_yaml(cfg: Any, path: str | os.PathLike) -> None:
    """Write ``cfg`` as YAML atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load_yaml(cls: type[T], path: str | os.PathLike) -> T:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    return from_dict(cls, data or {}, f" {path}")
