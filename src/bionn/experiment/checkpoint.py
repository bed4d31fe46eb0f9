"""Run files: checkpoints, JSON/JSONL and text written so that an interrupt
never leaves a half-written file behind.

Every file goes through the one atomic writer of :mod:`bionn._core.io` (one
permission policy for configs, metrics, checkpoints and figures);
:func:`atomic_write_bytes` and :func:`atomic_write_text` are re-exported here.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bionn._core.errors import ConfigError
from bionn._core.io import atomic_write, atomic_write_bytes, atomic_write_text

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "default_out",
    "output_folder",
    "claim_output_folder",
    "load_checkpoint",
    "read_jsonl",
    "save_checkpoint",
]


def default_out(name: str) -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>``: the output folder of a command given no ``--out``."""
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def output_folder(out: str | Path | None, name: str) -> Path:
    """The output folder of a command (``--out``, else :func:`default_out`), checked before
    any work: refused (``ConfigError``, exit 2) when it or a parent is a file, or when the
    folder it would be made in is not writable."""
    path = Path(out) if out else default_out(name)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out: {str(path)!r} is a file, not a folder; give a folder for the results")
    parent = path
    while not parent.exists():
        parent = parent.parent if parent.parent != parent else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"--out: {str(path)!r} cannot be made: {str(parent)!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out: {str(path)!r} cannot be written: {str(parent)!r} is not writable")
    try:  # permissions are not the whole story (read-only mounts, /proc): try it
        tempfile.TemporaryDirectory(dir=parent, prefix=".bionn-probe-").cleanup()
    except OSError as e:
        raise ConfigError(f"--out: {str(path)!r} cannot be written: a folder cannot be made in "
                          f"{str(parent)!r} ({e.strerror or e})") from None
    return path


#: names that mark a folder as a bionn output folder (one of them must be in it, or in a
#: run folder below it, for ``--overwrite`` to delete its contents)
OUTPUT_MARKERS = frozenset({
    "config.yaml", "final.json", "metrics.jsonl", "checkpoint.pt",  # a run (run, compare, sweep)
    "measures.json", "spikes.npz",  # a simulation
    "comparison.csv", "comparison.md",  # a comparison
    "analysis.json",  # an analysis (bionn analyze)
    "fit.json",  # a fit to recorded activity (bionn fit)
    "sweep.json", "sweep.csv", "sweep.md",  # a sweep
})


def _listing(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _looks_like_output(path: Path) -> bool:
    """A marker file directly in ``path`` or up to two folders below (``OUT/<method>/seed0/``)."""
    for pattern in ("*", "*/*", "*/*/*"):
        if any(p.name in OUTPUT_MARKERS and p.is_file() for p in path.glob(pattern)):
            return True
    return False


def claim_output_folder(out: str | Path | None, name: str, *, resume: bool = False,
                        overwrite: bool = False, resumable: bool = True) -> Path:
    """The output folder of a command, under the one policy every command follows; called
    before any work. Refusals raise ``ConfigError`` (exit 2) and change nothing.

    - the folder must be usable (:func:`output_folder`: not a file, writable);
    - a folder that does not exist or is empty is used;
    - a folder that holds anything is refused, naming it and a few of its entries, unless
      ``resume`` (the command then continues what is there; only where ``resumable``)
      or ``overwrite``;
    - ``overwrite`` deletes the folder's contents first (nothing of an earlier run is left),
      and is refused when the folder does not look like a bionn output folder (none of
      :data:`OUTPUT_MARKERS` in it), is the current folder or one above it, the home
      folder or ``/``;
    - ``resume`` with ``overwrite`` is refused.
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: --resume continues the "
                          "results in --out, --overwrite deletes them; give one")
    if resume and not resumable:
        raise ConfigError("--resume: this command does not resume; use --overwrite to replace "
                          "the results in --out, or choose another --out")
    path = output_folder(out, name)
    if not path.is_dir():
        return path
    entries = sorted(p.name for p in path.iterdir())
    if not entries or resume:
        return path
    if not overwrite:
        hint = ("use --resume to continue it, --overwrite to delete its contents and start over"
                if resumable else "use --overwrite to delete its contents and start over")
        raise ConfigError(f"--out: {str(path)!r} is not empty (it holds {_listing(entries)}); "
                          f"{hint}, or choose another --out")
    real = path.resolve()
    cwd = Path.cwd().resolve()
    protected = {Path("/").resolve(): "the root folder", Path.home().resolve(): "the home folder"}
    if real in protected or real == cwd or real in cwd.parents:
        why = protected.get(real) or ("the current folder" if real == cwd
                                      else "a folder above the current folder")
        raise ConfigError(f"--overwrite: refusing to delete the contents of {str(path)!r}: it is {why}")
    if not _looks_like_output(path):
        raise ConfigError(
            f"--overwrite: refusing to delete the contents of {str(path)!r}: it does not look like "
            f"a bionn output folder (it holds {_listing(entries)}, and none of "
            f"{', '.join(sorted(OUTPUT_MARKERS))}); choose another --out")
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    return path


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """``torch.save`` ``state`` atomically (temp file, fsync, rename; see :mod:`bionn._core.io`)."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read (truncated, overwritten, not a bionn checkpoint)."""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint as data only (``weights_only=True``: no code is run).

    A damaged file raises :class:`CheckpointError` naming it (never torch's advice to
    load it with ``weights_only=False``, which would run code from the file).
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated, random bytes, empty, or a pickle that needs code
        raise CheckpointError(
            f"the checkpoint {str(path)!r} is damaged or is not a bionn checkpoint "
            f"({type(e).__name__}, {path.stat().st_size if path.exists() else 0} bytes); it was not "
            f"loaded. The other files in {str(path.parent)!r} (config, metrics, figures) are intact; "
            "restore the checkpoint from a copy or start a new run in another folder") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"the checkpoint {str(path)!r} does not hold a bionn checkpoint "
                              f"(a {type(state).__name__}, not a dict)")
    return state


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
