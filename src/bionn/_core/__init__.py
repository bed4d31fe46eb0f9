"""The lowest layer of bionn: error types and atomic file writing.

Everything here depends only on the standard library, so every other layer may
import it (``bionn.spiking`` as much as ``bionn.experiment``) without pulling in
configs, YAML or pydantic.
"""

from bionn._core.errors import ConfigError, format_errors
from bionn._core.io import atomic_write, atomic_write_bytes, atomic_write_text

__all__ = ["ConfigError", "atomic_write", "atomic_write_bytes", "atomic_write_text", "format_errors"]
