"""Reading parsed YAML: `${VAR}` expansion from the environment, and typed access into one
mapping that raises ConfigError naming the file and the key path. A schema dataclass is read
field by field from the types the schema gives (`Reader.fields`)."""

from __future__ import annotations

import difflib
import functools
import re
import types
from collections.abc import Mapping
from dataclasses import is_dataclass, replace
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from gateway.config.schema import Within

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_Choice = TypeVar("_Choice", bound=str)
_Record = TypeVar("_Record", bound="DataclassInstance")


class ConfigError(ValueError):
    """A config value is missing or wrong; the message names the file and the key."""


def expand_env(value: Any, env: Mapping[str, str]) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string of a parsed YAML tree."""
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: _env_value(env, m.group(1), m.group(2)), value)
    if isinstance(value, dict):
        return {k: expand_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env) for v in value]
    return value


def _env_value(env: Mapping[str, str], name: str, default: str | None) -> str:
    """`${VAR:-default}` as in the shell: the default also applies when VAR is set but empty."""
    value = env.get(name, "")
    if default is not None and not value:
        return default
    return value


class Reader:
    """Typed access into one YAML mapping (a closed record), raising ConfigError that names file
    and key path. Every key asked for is remembered, so `unknown_keys` can refuse the rest.

    Reading methods return None when the key is absent or null: the caller then keeps the
    dataclass's own default, so each default is written once, in its dataclass.
    """

    def __init__(
        self, data: Any, path: str, source: str, readers: list[Reader] | None = None
    ) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: {path or 'top level'} must be a mapping")
        self.data: Mapping[str, Any] = data
        self.path = path
        self.source = source
        self.asked: set[str] = set()
        self.readers = [] if readers is None else readers
        self.readers.append(self)

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, why: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self._key(key)}: {why}")

    def raw(self, key: str) -> Any:
        """The value as written (None when absent), marking the key as known."""
        self.asked.add(key)
        return self.data.get(key)

    def section(self, key: str) -> Reader:
        value = self.raw(key)
        data = value if value is not None else {}
        return Reader(data, self._key(key), self.source, self.readers)

    def get(self, key: str, kind: type) -> Any:
        value = self.raw(key)
        if value is None:
            return None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, bool):
            raise self.error(key, "expected an integer")
        if not isinstance(value, kind):
            raise self.error(key, f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    def number(self, key: str, kind: type[float], within: Within) -> float | None:
        """An int or float key (`kind`; an int is read as a float for a float key) within its
        bounds."""
        value: float | None = self.get(key, kind)
        if value is None:
            return None
        if not within.low <= value <= within.high:
            raise self.error(key, f"must be between {within.low} and {within.high}, got {value}")
        if within.positive and value <= 0:
            raise self.error(key, "must be > 0 (or null for no limit)")
        return value

    def choice(self, key: str, allowed: tuple[_Choice, ...]) -> _Choice | None:
        value: str | None = self.get(key, str)
        return None if value is None else self.one_of(key, value, allowed)

    def one_of(self, key: str, value: object, allowed: tuple[_Choice, ...]) -> _Choice:
        """`value` as the allowed choice it equals, else ConfigError listing the choices."""
        for option in allowed:
            if value == option:
                return option
        raise self.error(key, f"must be one of {', '.join(allowed)}, got {value!r}")

    def fields(self, base: _Record, **given: Any) -> _Record:
        """`base` (a schema dataclass) with each field read from the key of its name by the
        type the schema gives it: bool, str, a Literal choice, a number `Annotated` with its
        Within bounds, or a dataclass read from the section of that name. Fields of any other
        type, and those the caller reads itself, are in `given`. A value that is absent or null
        (None in `given`) keeps base's."""
        hints = _type_hints(type(base))
        if not given.keys() <= hints.keys():
            raise TypeError(f"{type(base).__name__} has no field {sorted(given.keys() - hints)}")
        values = {
            name: given[name] if name in given else self._field(name, hint, getattr(base, name))
            for name, hint in hints.items()
        }
        return replace(base, **{k: v for k, v in values.items() if v is not None})

    def _field(self, key: str, hint: Any, current: Any) -> Any:
        if get_origin(hint) in (Union, types.UnionType):  # `X | None`: read as X
            (hint,) = [arg for arg in get_args(hint) if arg is not type(None)]
        if get_origin(hint) is Annotated:
            kind, within = get_args(hint)
            return self.number(key, kind, within)
        if get_origin(hint) is Literal:
            return self.choice(key, get_args(hint))
        if hint is bool or hint is str:
            return self.get(key, hint)
        if is_dataclass(hint):
            return self.section(key).fields(current)
        raise TypeError(f"{self._key(key)}: the caller reads {hint} (pass it in `given`)")

    def strings(self, key: str, what: str) -> tuple[str, ...] | None:
        value = self.get(key, list)
        if value is None:
            return None
        if not all(isinstance(v, str) for v in value):
            raise self.error(key, f"must be a list of {what}")
        return tuple(value)

    def unknown_keys(self) -> list[str]:
        """One message per key never asked for, with the closest known key when one is close."""
        messages = []
        for key in self.data:
            if key in self.asked:
                continue
            message = f"{self.source}: {self._key(str(key))}: unknown key"
            close = difflib.get_close_matches(str(key), sorted(self.asked), n=1, cutoff=0.6)
            if close:
                message += f"; did you mean {self._key(close[0])}?"
            messages.append(message)
        return messages


@functools.cache
def _type_hints(record: type) -> dict[str, Any]:
    """A schema dataclass's field types, `Annotated` bounds kept."""
    return get_type_hints(record, include_extras=True)
