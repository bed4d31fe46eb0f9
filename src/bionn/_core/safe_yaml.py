"""The one reader of YAML configs (files and ``key=value`` override values).

Every command reads its config through :func:`read_config_file` (and override values
through :func:`load_yaml_text`), so the same rules hold everywhere:

- only plain data (PyYAML's safe loader: no Python objects);
- a file is at most :data:`MAX_CONFIG_BYTES` bytes, UTF-8 text, a mapping, not empty;
  a directory, a binary file or a file of only comments is refused, naming the file;
- aliases (``*name``) may repeat at most :data:`MAX_ALIAS_VALUES` values in all, and
  never refer to themselves, so a small file cannot expand into a huge (or endless)
  config;
- numbers in exponent form without a dot (``1e2``, ``-3e-4``) are floats, as in YAML
  1.2 (YAML 1.1 reads them as strings).

Pure standard library and PyYAML.

Example:
    >>> load_yaml_text("lr: 3e-4\\nsteps: 1e2\\nbig: 1.0e38\\nname: abc")
    {'lr': 0.0003, 'steps': 100.0, 'big': 1e+38, 'name': 'abc'}
    >>> load_yaml_text("a: &a [1, 2]\\nb: *a")
    {'a': [1, 2], 'b': [1, 2]}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from bionn._core.errors import ConfigError

__all__ = ["MAX_ALIAS_VALUES", "MAX_CONFIG_BYTES", "load_yaml_text", "read_config_file"]

#: the largest config file read, in bytes
MAX_CONFIG_BYTES = 1_000_000
#: the most values that aliases may repeat, in all, in one document
MAX_ALIAS_VALUES = 10_000

_FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.2 floats (the exponent's dot and sign are optional) plus YAML 1.1's forms.
_FLOAT = re.compile(r"""^(?:
    [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
  | [-+]?(?:[0-9][0-9_]*)[eE][-+]?[0-9]+
  | [-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
  | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
  | [-+]?\.(?:inf|Inf|INF)
  | \.(?:nan|NaN|NAN))$""", re.X)


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 exponent floats."""


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver(_FLOAT_TAG, _FLOAT, list("-+0123456789."))


class _AliasBomb(Exception):
    pass


def _check_aliases(root: yaml.Node) -> None:
    """Raise :class:`_AliasBomb` when aliases repeat more than :data:`MAX_ALIAS_VALUES`
    values or an alias refers to a node that holds it (an endless config)."""
    sizes: dict[int, int] = {}  # id(node) -> values in its expanded form
    seen: set[int] = set()
    repeated = 0
    limit = MAX_ALIAS_VALUES

    def size(node: yaml.Node, active: set[int]) -> int:
        nonlocal repeated
        key = id(node)
        if key in active:
            raise _AliasBomb("an alias refers to a value that contains it (an endless config)")
        if key in sizes:  # a repeat: only an alias reaches a node twice
            repeated += sizes[key]
            if repeated > limit:
                raise _AliasBomb(f"its aliases (*name) repeat more than {limit} values "
                                 f"(allowed: at most {limit}; write the values out)")
            return sizes[key]
        seen.add(key)
        n = 1
        if isinstance(node, yaml.SequenceNode):
            active.add(key)
            n += sum(size(child, active) for child in node.value)
            active.discard(key)
        elif isinstance(node, yaml.MappingNode):
            active.add(key)
            n += sum(size(k, active) + size(v, active) for k, v in node.value)
            active.discard(key)
        sizes[key] = n
        return n

    size(root, set())


def load_yaml_text(text: str, source: str = "value") -> Any:
    """Parse one YAML document of plain data under the rules of this module.

    ``source`` names what the text came from in error messages (``"config file 'x.yaml'"``,
    ``"override 'a=b'"``); YAML syntax errors raise :class:`yaml.YAMLError`, too many or
    self-referring aliases a :class:`ConfigError`.
    """
    loader = _ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            _check_aliases(node)
        except _AliasBomb as e:
            raise ConfigError(f"{source} is refused: {e}") from None
        except RecursionError:
            raise ConfigError(f"{source} is refused: it nests too deeply") from None
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict: at most :data:`MAX_CONFIG_BYTES` bytes of
    UTF-8 text holding a non-empty mapping. Every refusal is a :class:`ConfigError`
    naming the file, what it holds and what is allowed."""
    path = Path(path)
    name = f"config file {str(path)!r}"
    if path.is_dir():
        raise ConfigError(f"{name} is a directory; give a YAML file (e.g. configs/NAME.yaml)")
    if not path.exists():
        raise ConfigError(f"{name} does not exist")
    if not path.is_file():
        raise ConfigError(f"{name} is not a regular file; give a YAML file")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{name} cannot be read: {e.strerror or e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        size = path.stat().st_size
        raise ConfigError(f"{name} is too large ({size:,} bytes); a config file may be at "
                          f"most {MAX_CONFIG_BYTES:,} bytes (1 MB): put large arrays in "
                          ".npy files and name them in the config")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{name} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset "
                          f"{e.start} cannot be decoded); a config is a YAML text file") from None
    try:
        data = load_yaml_text(text, name)
    except yaml.YAMLError as e:
        raise ConfigError(f"{name} is not valid YAML: {e}") from None
    if data is None:
        raise ConfigError(f"{name} is empty (nothing but blank lines or comments); a config "
                          "is a mapping of sections, e.g. `experiment: {name: my_run}`")
    if not isinstance(data, dict):
        raise ConfigError(f"{name} must hold a mapping of sections; got "
                          f"{type(data).__name__}")
    return data
