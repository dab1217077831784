"""The toolkit's one config system: typed dataclasses, read from YAML and overridden with dotted keys.

Every configurable part (pipeline, models, fitting, training, evaluation) describes its settings as a
dataclass. ``load(cls, path, ["section.key=value", ...])`` reads a YAML file (or the defaults) and applies
command-line overrides (values parsed as YAML: ``3``, ``0.5``, ``true``, ``[obj, glb]``, ``null``);
``from_dict`` rebuilds nested dataclasses, rejects unknown keys and checks simple types, naming the key;
``save_yaml``/``dump`` write a config back. Why not OmegaConf or jsonargparse: docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
import os
import re
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
        value = _checked(hint, value, f"config{where}.{key}")
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


_SCALARS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_UNION = type(int | None)  # the type of ``X | None`` hints (typing.Union is the other spelling)


def _checked(hint: Any, value: Any, key: str) -> Any:
    """``value`` if it fits a simple ``hint`` (int, float, bool, str, their Optional; ints pass as floats),
    else a ValueError naming ``key``; other hints are not checked here."""
    args = typing.get_args(hint)
    if value is None and (type(None) in args or hint is Any):
        return value
    base = (
        next((a for a in args if a is not type(None)), hint)
        if typing.get_origin(hint) in (typing.Union, _UNION)
        else hint
    )
    if base in _SCALARS:
        ok = isinstance(value, base) and not (base is int and isinstance(value, bool))
        if base is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise ValueError(f"{key}: expected {_SCALARS[base]}, got {value!r}")
    return value


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict:
    """``["fitting.lm_tolerance=0.02", "--outputs.overwrite=true"]`` -> nested dict, values parsed as YAML."""
    out: dict = {}
    for item in items:
        key, sep, text = item.removeprefix("--").partition("=")
        if not sep or not key or any(not part.isidentifier() for part in key.split(".")):
            raise ValueError(f"config override {item!r}: expected section.key=value")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        try:
            set_dotted(out, key, value)
        except ValueError as err:
            raise ValueError(f"config override {item!r}: {err}") from None
    return out


def set_dotted(tree: dict, key: str, value: Any) -> None:
    """``tree["a"]["b"] = value`` for ``key`` ``"a.b"``, making the sections on the way."""
    *parents, leaf = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
        if not isinstance(tree, dict):
            raise ValueError(f"{part} is set both as a value and a section")
    tree[leaf] = value


_OVERRIDE = re.compile(r"^(--)?[A-Za-z_]\w*(\.[A-Za-z_]\w*)*=")


def pop_option_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Command-line words -> (the others, the ``--section.key=value`` overrides without their ``--``): the
    option form argparse would refuse as unknown (a dotted name is never one of its flags)."""
    found = [a for a in argv if a.startswith("--") and _OVERRIDE.match(a) and "." in a.partition("=")[0]]
    return [a for a in argv if a not in found], [a[2:] for a in found]


def split_overrides(args: list[str]) -> tuple[list[str], list[str]]:
    """Command-line words -> (the others, the ``section.key=value`` / ``--section.key=value`` overrides). A
    word naming an existing file stays a file, whatever its name."""
    overrides = [a for a in args if _OVERRIDE.match(a) and not Path(a).exists()]
    return [a for a in args if a not in overrides], overrides


def merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra``'s entries, nested mappings merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load(cls: type[T], path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = (),
         values: dict | None = None) -> T:  # fmt: skip
    """Config ``cls``: its defaults, then the YAML file ``path`` (when given), then ``values`` (a nested dict,
    e.g. from command-line flags), then dotted ``overrides``."""
    data = _read_yaml(path) if path is not None else {}
    where = f" {path}" if path is not None else ""
    cfg = from_dict(cls, merge(merge(data, values or {}), parse_overrides(overrides)), where)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def dump(cfg: Any) -> str:
    """The config as YAML text (what ``--config`` reads back)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


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
        tmp.write_text(dump(cfg))


def _read_yaml(path: str | os.PathLike) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    except OSError as err:
        raise type(err)(f"{path}: cannot read the config ({err.strerror or err})") from None
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"{path}: a config file holds a mapping of sections, got {type(data).__name__}")
    return data or {}


def load_yaml(cls: type[T], path: str | os.PathLike) -> T:
    return from_dict(cls, _read_yaml(path), f" {path}")
