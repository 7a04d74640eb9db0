"""Settings declared once: each field names its environment variable beside its default
and what it means (`variable`), and `read` builds the dataclass from an environment by
those names. `declared` lists them, for docs/configuration.md (deploy/configuration.py)."""

from collections.abc import Mapping
from dataclasses import MISSING, field, fields
from typing import Any, TypeVar

T = TypeVar("T")
VARIABLE = "environment variable"
MEANING = "meaning"


def variable(name: str, default: T, meaning: str = "") -> T:
    """A field read from the environment variable `name`; `default` when it is unset.
    `meaning`, one line for operators, is what docs/configuration.md says of it."""
    found: T = field(default=default, metadata={VARIABLE: name, MEANING: meaning})
    return found


def declared(cls: type) -> list[tuple[str, Any, str]]:
    """Each variable `cls` declares: its name, its default and its meaning."""
    return [
        (each.metadata[VARIABLE], each.default, each.metadata.get(MEANING, ""))
        for each in fields(cls)
        if VARIABLE in each.metadata
    ]


def read(cls: type[T], env: Mapping[str, str], **given: Any) -> T:
    """`cls` with each field that names a variable set in `env` parsed by the field's type
    (str, int, float, or bool: 1, true or yes); `given` fields as they are. ValueError for a
    value its type cannot hold."""
    values = dict(given)
    for each in fields(cls):  # type: ignore[arg-type]
        name = each.metadata.get(VARIABLE)
        if name is None or each.name in values or name not in env:
            continue
        kind = each.type if each.default is MISSING else type(each.default)
        values[each.name] = _parse(kind, name, env[name])
    return cls(**values)


def _parse(kind: Any, name: str, text: str) -> Any:
    if kind is bool:
        return text.strip().lower() in ("1", "true", "yes")
    if kind in (int, float, str):
        try:
            return kind(text)
        except ValueError as error:
            raise ValueError(f"{name}: {text!r} is not {kind.__name__}") from error
    raise TypeError(f"{name}: no parser for {kind}")
