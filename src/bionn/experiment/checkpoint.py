"""Run files: checkpoints, JSON/JSONL and text written so that an interrupt
never leaves a half-written file behind.

Every file goes through the one atomic writer of :mod:`bionn._core.io` (one
permission policy for configs, metrics, checkpoints and figures);
:func:`atomic_write_bytes` and :func:`atomic_write_text` are re-exported here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from bionn._core.io import atomic_write, atomic_write_bytes, atomic_write_text

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "default_out",
    "load_checkpoint",
    "read_jsonl",
    "save_checkpoint",
]


def default_out(name: str) -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>``: the output folder of a command given no ``--out``."""
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """``torch.save`` ``state`` atomically (temp file, fsync, rename; see :mod:`bionn._core.io`)."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint as data only (``weights_only=True``: no code is run)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSONL file; a torn last line (from a crash) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records
