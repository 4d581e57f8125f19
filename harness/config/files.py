"""Reading spec files: YAML with no repeated keys and YAML 1.2 floats, and pydantic's validation errors turned
into one message per problem that names the file, the field and what is allowed (harness/config/loading.py
validates experiments and profiles with them).
"""

from __future__ import annotations

import copy
import re
import reprlib
from pathlib import Path
from typing import get_args

import yaml
from pydantic import BaseModel, ValidationError


class SpecError(ValueError):
    """A spec file is invalid; the message names the file, the field and what is allowed."""


def _model_in(annotation) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as `X`, `list[X]` or `X | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for a in get_args(annotation) if (m := _model_in(a)) is not None), None)


# what a refused value is shown as: bounded in depth and length, so that a YAML alias bomb (a few hundred
# bytes that expand to millions of items) is shown in microseconds instead of walked in full
_SHORT = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxtuple = 3, 6, 6, 6
_SHORT.maxstring = _SHORT.maxother = 80


def format_errors(err: ValidationError, model: type[BaseModel], source: Path) -> str:
    """Every problem of `err`, one line each; an unknown key lists the keys allowed where it stands."""
    lines = [f"{source}: invalid {model.__name__.lower()} ({err.error_count()} problem(s))"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<top level>"
        if e["type"] == "extra_forbidden":
            parent = model
            for part in e["loc"][:-1]:
                if isinstance(part, int):  # a list index: stay on the list's item model
                    continue
                field = parent.model_fields.get(str(part)) if hasattr(parent, "model_fields") else None
                parent = _model_in(getattr(field, "annotation", None)) if field else None
            allowed = (
                sorted(parent.model_fields)
                if isinstance(parent, type) and issubclass(parent, BaseModel)
                else []
            )
            lines.append(f"  - field '{loc}': unknown key; allowed keys here: {', '.join(allowed)}")
        elif e["type"] == "value_error":
            # cross-field checks say "sub.field: text; other.field: text" relative to where they run
            for part in e["msg"].removeprefix("Value error, ").split("; "):
                sub, _, text = part.partition(": ")
                where = ".".join(x for x in (loc if e["loc"] else "", sub) if x)
                lines.append(f"  - field '{where}': {text}")
        else:
            lines.append(f"  - field '{loc}': {e['msg']} (got {_SHORT.repr(e.get('input'))})"[:400])
    return "\n".join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key repeated in one mapping is an error: plain YAML keeps the last
    value silently, and a repeated `epochs:` would change a run without anyone noticing. Merge keys
    (`<<: *base`) work as in YAML 1.1: the mapping's own keys override the merged ones."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be overridden here
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}'", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


# YAML 1.1 (PyYAML) reads `1e-3` as a string; read it as the number it is (YAML 1.2's float syntax), so that a
# strict float field accepts it.
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> object:
    """A YAML file's content, or a SpecError naming the file and the line: not UTF-8, not YAML, or a key
    given twice in one mapping."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None


def read_mapping(path: Path) -> dict:
    """A YAML file that must hold a mapping at the top level (an experiment or a profile)."""
    if not path.is_file():
        raise SpecError(f"{path}: file not found")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def problems_error(where: Path | str, title: str, problems: list[str]) -> SpecError:
    """Checks outside a schema reported as a schema's are: the file and what is wrong, then one line per
    'field: why'."""
    lines = [f"  - field '{field}': {why}" for field, why in (p.split(": ", 1) for p in problems)]
    return SpecError("\n".join([f"{where}: {title} ({len(problems)} problem(s))", *lines]))


def new_folder(path: Path | str, flag: str) -> None:
    """Refuse an output folder that holds anything already: nothing a user wrote is overwritten."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise SpecError(f"{flag}: {path} exists and is not an empty folder; name a new folder")


def merge(base: dict, over: dict) -> dict:
    """`base` with `over` laid on it, mapping by mapping."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
