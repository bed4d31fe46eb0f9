"""The error types of bionn and the one formatter of validation errors.

Pure standard library: :func:`format_errors` reads a pydantic
``ValidationError`` through its public methods (``errors()``, ``model_fields``)
without importing pydantic, so low layers can raise :class:`ConfigError`
cheaply.

Example:
    >>> raise ConfigError("model.n_hidden: must be > 0 (got -1)")
    Traceback (most recent call last):
    ...
    bionn._core.errors.ConfigError: model.n_hidden: must be > 0 (got -1)
"""

from __future__ import annotations

import re
import typing
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

__all__ = ["ConfigError", "format_errors", "number_hint"]

_NUMBER_LIKE = re.compile(r"[-+]?[.\d][\w.+-]*")
_NUMBER_ERRORS = {"int_parsing", "int_type", "float_parsing", "float_type", "int_from_float",
                  "decimal_parsing", "decimal_type", "finite_number"}


def number_hint(value: Any) -> str:
    """For a string that looks like a number: a note that it was read as text (else "").

    Example:
        >>> number_hint("1e-3x")
        " ('1e-3x' looks like a number but was read as text; write numbers like 100, 0.5, 3e-4 or 1.0e38)"
        >>> number_hint("abc")
        ''
    """
    if isinstance(value, str) and _NUMBER_LIKE.fullmatch(value.strip()) \
            and any(c.isdigit() for c in value):
        return (f" ({value!r} looks like a number but was read as text; write numbers like "
                "100, 0.5, 3e-4 or 1.0e38)")
    return ""


class ConfigError(ValueError):
    """A config that cannot run; the message names each bad field."""


def _is_model_class(obj: Any) -> bool:
    return isinstance(obj, type) and hasattr(obj, "model_fields") and hasattr(obj, "model_validate")


def format_errors(err: ValidationError, root: type[BaseModel]) -> str:
    """One line per invalid field of a ``root`` config: the field, what is wrong, the
    value given, and for unknown keys the keys allowed there (shared by every command).

    Example:
        >>> from pydantic import BaseModel, ConfigDict, ValidationError
        >>> class Cfg(BaseModel):
        ...     model_config = ConfigDict(extra="forbid")
        ...     n: int = 1
        >>> try:
        ...     Cfg.model_validate({"n": "x", "m": 2})
        ... except ValidationError as e:
        ...     print(format_errors(e, Cfg))
        invalid config:
          n: Input should be a valid integer, unable to parse string as an integer (got 'x')
          m: unknown key (allowed here: n)
    """
    lines = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            parent = _model_at(root, e["loc"][:-1])
            allowed = sorted(parent.model_fields) if parent else []
            set_by_run = getattr(parent, "set_by_run", {}).get(str(e["loc"][-1]))
            why = f"not a config key: {set_by_run}" if set_by_run else "unknown key"
            lines.append(f"  {loc}: {why} (allowed here: {', '.join(allowed)})")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        hidden = isinstance(value, dict) or _is_model_class(type(value)) or e["type"] == "missing"
        shown = "" if hidden else f" (got {value!r})"
        if e["type"] in _NUMBER_ERRORS:
            shown += number_hint(value)
        lines.append(f"  {loc}: {msg}{shown}" if loc else f"  {msg}")
    return "invalid config:\n" + "\n".join(lines)


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The config class that holds the field at ``loc`` below ``model`` (None if not a model)."""
    parts = list(loc)
    while parts:
        field = model.model_fields.get(str(parts.pop(0)))
        if field is None:
            return None
        ann = field.annotation
        if typing.get_origin(ann) is dict and parts:  # dict[str, Model]: skip the key
            parts.pop(0)
        candidates = getattr(ann, "__args__", (ann,))
        nxt = next((c for c in candidates if _is_model_class(c)), None)
        if nxt is None:
            return None
        model = nxt
    return model
