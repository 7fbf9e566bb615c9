"""YAML ⇄ frozen dataclasses, validated at the edge: unknown keys, wrong types and broken YAML are one-line
:class:`SlimnasError`\\ s that name the file, the line and the key.

Types are read from the dataclasses' annotations: ``int``, ``float``, ``bool``, ``str``, ``Optional[X]``,
``tuple[X, ...]``, ``list[X]``, ``dict`` and nested dataclasses. A value a dataclass itself refuses (its
``__post_init__`` raises) is reported with the section's line.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import yaml

from ..errors import SlimnasError

Lines = dict[str, int]  # "section.key" -> 1-based line of the key in the YAML text


def _where(source: str, lines: Lines, path: str) -> str:
    line = lines.get(path)
    while line is None and "." in path:
        path = path.rpartition(".")[0]
        line = lines.get(path)
    return f"{source} line {line}" if line is not None else source


def _key_lines(node: yaml.Node, prefix: str, out: Lines) -> None:
    if isinstance(node, yaml.MappingNode):
        for knode, vnode in node.value:
            if isinstance(knode, yaml.ScalarNode):
                path = f"{prefix}{knode.value}"
                out.setdefault(path, knode.start_mark.line + 1)
                _key_lines(vnode, path + ".", out)


def parse_yaml(text: str, source: str) -> tuple[dict, Lines]:
    """The YAML mapping in ``text`` and the line of every key (``source`` names the text in errors)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.SafeLoader(text).get_single_data() if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{source} line {mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        ctx, ctx_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if ctx and ctx_mark is not None and mark is not None and ctx_mark.line != mark.line:
            problem = f"{ctx} started on line {ctx_mark.line + 1}: {problem}"
        raise SlimnasError(f"{where}: broken YAML ({problem}); fix the syntax there") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise SlimnasError(f"{source}: the config must be a YAML mapping of sections (model:, data:, ...), "
                           f"not a {type(data).__name__}")
    lines: Lines = {}
    _key_lines(node, "", lines)
    return data, lines


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " (or null)"
    if origin in (tuple, list):
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _coerce(tp: Any, value: Any, path: str, source: str, lines: Lines) -> Any:
    def bad() -> SlimnasError:
        return SlimnasError(f"{_where(source, lines, path)}: {path} must be {_type_name(tp)}, got {value!r}")

    origin = typing.get_origin(tp)
    if origin is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, path, source, lines)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise bad()
        return build(tp, value, source, lines, path + ".")
    if origin in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise bad()
        item = typing.get_args(tp)[0]
        items = [_coerce(item, v, path, source, lines) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise bad()
        args = typing.get_args(tp)
        if len(args) == 2 and dataclasses.is_dataclass(args[1]):  # dict[str, Section]: each value a section
            return {str(k): _coerce(args[1], v, f"{path}.{k}", source, lines) for k, v in value.items()}
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return float(value)
    if tp is str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise bad()
        return str(value)
    return value


def _over_default(f: dataclasses.Field, value: Any) -> Any:
    """A section given in part keeps its field's own default for every key it does not name: ``supernet:
    {train: {epochs: 1}}`` keeps slim's ``supernet.train.lr`` 0.01, not the bare ``TrainConfig`` default."""
    if not isinstance(value, Mapping):
        return value
    if f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    elif f.default is not dataclasses.MISSING:
        default = f.default
    else:
        return value
    if not dataclasses.is_dataclass(default) or isinstance(default, type):
        return value
    return merge(to_plain(default), value)


def build(cls: type, data: Mapping, source: str = "config", lines: Optional[Lines] = None, prefix: str = ""):
    """An instance of dataclass ``cls`` from ``data``; every key and value checked."""
    lines = lines or {}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        path = f"{prefix}{unknown[0]}"
        raise SlimnasError(f"{_where(source, lines, path)}: unknown key {path!r}; "
                           f"{prefix.rstrip('.') or 'the config'} takes {', '.join(fields)}")
    kwargs = {k: _coerce(hints[k], _over_default(fields[k], v), f"{prefix}{k}", source, lines) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except SlimnasError as exc:
        section = prefix.rstrip(".")
        raise SlimnasError(f"{_where(source, lines, section) if section else source}: "
                           f"{section + ': ' if section else ''}{exc}") from None


def to_plain(obj: Any) -> Any:
    """Dataclasses, tuples and paths as plain YAML/JSON data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_plain(obj), sort_keys=False, default_flow_style=False, width=110)


def load_yaml(cls: type, path: Union[str, Path]):
    """Read a YAML file into dataclass ``cls`` (missing keys keep their defaults)."""
    path = Path(path)
    if not path.is_file():
        raise SlimnasError(f"config file {path} does not exist")
    data, lines = parse_yaml(path.read_text(), str(path))
    return build(cls, data, str(path), lines)


def merge(base: Mapping, override: Mapping) -> dict:
    """``override`` laid over ``base``, recursively for nested mappings."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_assignment(text: str) -> dict:
    """``section.key=value`` (the value read as YAML) as a nested mapping, for ``--set`` overrides."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise SlimnasError(f"--set takes SECTION.KEY=VALUE (e.g. search.population=20), got {text!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    out: Any = parsed
    for part in reversed(key.strip().split(".")):
        out = {part: out}
    return out
