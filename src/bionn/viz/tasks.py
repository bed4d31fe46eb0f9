"""Task samples: a grid of examples of a visual task with their labels."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.figure import Figure

from ._common import PathLike, _finish, _new_figure

if TYPE_CHECKING:
    from bionn.tasks.visual import VisualBatch

__all__ = ["plot_visual_examples"]

MARK_COLOR = "#d62728"  # the two marked cells of a maze


def _positive_int(value: Any, arg: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{arg} must be an int >= 1, got {value!r}")
    return int(value)


def plot_visual_examples(
    batch: VisualBatch,
    path: PathLike | None = None,
    n: int = 8,
    ncols: int = 4,
    title: str | None = None,
) -> Figure:
    """A grid of the first ``n`` samples of ``batch`` with their labels; returns the
    ``matplotlib`` Figure and saves a PNG when ``path`` is given.

    ``batch`` is a :class:`bionn.tasks.VisualBatch` (any object with ``x``, ``y``,
    ``info`` and ``name`` of that form). Movies ``(n, T, C, H, W)`` are shown as one
    image: the maximum over frames of ``x_t * (0.25 + 0.75 t / (T - 1))``, so later
    positions are brighter (the trail points along the motion). The two marked cells
    of a maze are circled in red. Multi-channel images show channel 0.

    Example:
        >>> from bionn.tasks import maze_connectivity
        >>> fig = plot_visual_examples(maze_connectivity(4, size=11, generator=0))
        >>> len(fig.axes)
        4
    """
    n = _positive_int(n, "n")
    ncols = _positive_int(ncols, "ncols")
    x = batch.x.detach().float().cpu()
    if x.dim() == 5:
        t = x.shape[1]
        w = 0.25 + 0.75 * torch.arange(t, dtype=torch.float32) / max(t - 1, 1)
        x = (x * w.view(1, t, 1, 1, 1)).amax(1)
    x = x[:, 0]
    n = min(n, len(x))
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = _new_figure((1.8 * ncols, 1.9 * nrows + (0.3 if title else 0)))
    for i in range(n):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(x[i].numpy(), cmap="gray", vmin=0.0, vmax=max(1.0, float(x[i].max())),
                  interpolation="nearest")
        label = int(batch.y[i])
        text = f"label {label}"
        if batch.name == "motion" and "theta" in batch.info:
            text += f" ({math.degrees(float(batch.info['theta'][i])):.0f}°)"
        if batch.name == "maze" and "points" in batch.info:
            pts = batch.info["points"][i].numpy()
            ax.plot(pts[:, 1], pts[:, 0], "o", color=MARK_COLOR, ms=4, mfc="none")
        ax.set_title(text, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return _finish(fig, path)
