"""Shared helpers of the figures module: array conversion, new figures, atomic saving.

Figures are plain :class:`matplotlib.figure.Figure` objects with an Agg canvas;
nothing here touches ``matplotlib.pyplot`` or the user's backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bionn._core.io import atomic_write

__all__ = ["save_figure", "PathLike", "DPI", "E_COLOR", "I_COLOR"]

PathLike = str | os.PathLike
DPI = 120
E_COLOR = "#d62728"  # excitatory: red
I_COLOR = "#1f77b4"  # inhibitory: blue


def save_figure(fig: Figure, path: PathLike) -> Path:
    """Save ``fig`` to ``path`` atomically and return the path.

    The image is written by the one atomic writer of :mod:`bionn._core.io`
    (temporary file in the same folder, fsync, :func:`os.replace`; the
    permissions of every other run file), so a reader never sees a half-written
    file (e.g. a dashboard polling a run folder). The format follows the suffix
    (``.png``, ``.pdf``, ``.svg``, ...); PNG when there is none. Parent folders
    are created. Saved at 120 dpi with a tight bounding box.

    Example:
        >>> import tempfile, pathlib
        >>> from matplotlib.figure import Figure
        >>> fig = Figure(); _ = fig.add_subplot().plot([0, 1], [1, 0])
        >>> out = save_figure(fig, pathlib.Path(tempfile.mkdtemp()) / "line.png")
        >>> out.read_bytes()[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
        True
    """
    path = Path(path)
    fmt = path.suffix[1:].lower() or "png"
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight"))


def _new_figure(figsize: tuple[float, float], **kwargs: Any) -> Figure:
    """A pyplot-free figure drawn by the Agg canvas."""
    fig = Figure(figsize=figsize, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: Figure, path: PathLike | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def _to_numpy(x: Any, name: str, dtype: Any = float) -> np.ndarray:
    """A torch tensor (any device, with or without grad) or array-like as numpy."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        t = x.detach().cpu()
        try:
            x = t.numpy()
        except TypeError:  # e.g. bfloat16 has no numpy dtype
            x = t.float().numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} could not be converted to a numeric array: {err}") from None


def _runs(labels: np.ndarray) -> list[tuple[int, int, Any]]:
    """Contiguous runs of equal values as ``(start, stop, value)``, stop exclusive."""
    if labels.size == 0:
        return []
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [labels.size]])
    return [(int(a), int(b), labels[a]) for a, b in zip(starts, stops, strict=True)]
