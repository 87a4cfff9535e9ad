"""Load a YAML document while remembering where every value came from.

PyYAML's plain loaders forget positions and silently keep the last of two duplicate keys;
both are bad for an SRE fixing a file at 3am. Here every mapping key and every sequence item
gets its (line, column), and pydantic validation errors are mapped back to them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import InputError, Problem, SourceLocation

PathKey = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass
class YamlDocument:
    """Plain data of one YAML file plus the position of each path inside it."""

    path: Path
    data: Any
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)  # of the key / item
    values: dict[PathKey, tuple[int, int]] = field(default_factory=dict)  # of a scalar value

    def locate(self, loc: Sequence[str | int], *, at_key: bool = False) -> SourceLocation:
        """Position of `loc` (its value when scalar, unless `at_key`), else of its nearest ancestor."""
        key: PathKey = tuple(loc)
        if not at_key and key in self.values:
            return SourceLocation(self.path, *self.values[key])
        while key:
            if key in self.positions:
                return SourceLocation(self.path, *self.positions[key])
            key = key[:-1]
        return SourceLocation(self.path, *self.positions.get((), (1, 1)))

    def problem(self, loc: Sequence[str | int], message: str, *, at_key: bool = False) -> Problem:
        return Problem(message, self.locate(loc, at_key=at_key), dotted(loc))


def dotted(loc: Iterable[str | int]) -> str:
    """('sites', 0, 'uplinks', 1) -> 'sites[0].uplinks[1]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_yaml(path: Path, error_type: type[InputError] = InputError) -> YamlDocument:
    """Read `path`; raise `error_type` with file:line:column for unreadable or malformed YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error_type("file not found", source=path) from None
    except IsADirectoryError:
        raise error_type("is a directory, not a file", source=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error_type(f"cannot read: {exc}", source=path) from None
    return parse_yaml(text, path, error_type)


def parse_yaml(text: str, path: Path, error_type: type[InputError] = InputError) -> YamlDocument:
    """Parse YAML text (named `path` in messages) into a positioned document."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        doc = YamlDocument(path, None)
        if node is None:
            raise error_type(Problem("the file is empty", SourceLocation(path, 1, 1)), source=path)
        doc.positions[()] = _pos(node)
        problems: list[Problem] = []
        doc.data = _build(loader, node, (), doc, problems)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = SourceLocation(path, mark.line + 1, mark.column + 1) if mark else SourceLocation(path)
        message = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise error_type(Problem(f"YAML syntax error: {message}", where), source=path) from None
    except yaml.YAMLError as exc:
        raise error_type(Problem(f"YAML error: {exc}", SourceLocation(path)), source=path) from None
    finally:
        loader.dispose()
    if problems:
        raise error_type(problems, source=path)
    return doc


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(loader: yaml.SafeLoader, node: yaml.Node, at: PathKey, doc: YamlDocument,
           problems: list[Problem]) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolve YAML merge keys (<<)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                problems.append(Problem("mapping keys must be plain scalars",
                                        SourceLocation(doc.path, *_pos(key_node)), dotted(at)))
                continue
            here = (*at, key)
            if key in out:
                first = doc.positions[here]
                problems.append(Problem(f"duplicate key {key!r} (first defined at line {first[0]})",
                                        SourceLocation(doc.path, *_pos(key_node)), dotted(at)))
                continue
            doc.positions[here] = _pos(key_node)
            if isinstance(value_node, yaml.ScalarNode):
                doc.values[here] = _pos(value_node)
            out[key] = _build(loader, value_node, here, doc, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            doc.positions[(*at, i)] = _pos(item)
            items.append(_build(loader, item, (*at, i), doc, problems))
        return items
    return loader.construct_object(node, deep=True)


def validate_model(model: type[M], doc: YamlDocument,
                                 error_type: type[InputError] = InputError) -> M:
    """Validate `doc` against a pydantic model; every error comes back with file:line."""
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        problems = [doc.problem(_in_data(doc.data, err["loc"]), _message(err), at_key=err["type"] in _AT_KEY)
                    for err in exc.errors(include_url=False)]
        raise error_type(problems, source=doc.path) from None


_AT_KEY = {"extra_forbidden", "missing"}


def _in_data(data: Any, loc: Sequence[str | int]) -> PathKey:
    """pydantic's error path without the parts that are not in the document: the tag a discriminated
    union inserts (faults[0].link-down.duration_s is faults[0].duration_s in the file)."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        elif isinstance(data, dict) and i + 1 < len(loc) and isinstance(part, str):
            continue  # a union tag: the next part names the field
        out.append(part)
        if not isinstance(data, (dict, list)):
            data = None
    return tuple(out)


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind not in ("value_error",) and "input" in err and not isinstance(err["input"], (dict, list)):
        msg = f"{msg} (got {err['input']!r})"
    return msg
