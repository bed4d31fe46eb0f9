"""State-space figures: fixed points of a recurrent network among its trajectories."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ._common import PathLike, _finish, _new_figure, _to_numpy

__all__ = ["plot_fixed_points"]

_STYLE = {"stable": dict(marker="o", color="k", s=40),
          "saddle": dict(marker="x", color="tab:red", s=50),
          "unstable": dict(marker="o", facecolors="none", edgecolors="tab:red", s=40)}


def plot_fixed_points(points: Any, stability: Sequence[str], trajectories: Any = None,
                      unstable_directions: Any = None, path: PathLike | None = None, *,
                      title: str | None = None, max_trajectories: int = 40, ax: Any = None) -> Figure:
    """Fixed points in the top two principal components of the trajectories (of the points
    when there are none): trajectories in grey, stable points filled, saddles as red
    crosses with a line along their unstable direction, unstable points open.

    Args:
        points: ``(K, N)`` states; stability: per point ``"stable"``, ``"saddle"`` or
            ``"unstable"``.
        trajectories: ``(batch, time, N)`` states of the network, or None.
        unstable_directions: ``(K, N)`` a unit direction per point (drawn for saddles), or None.
        path: where to save the PNG, or None. ax: an existing axes to draw into.

    Example:
        >>> import numpy as np
        >>> pts = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        >>> fig = plot_fixed_points(pts, ["stable", "stable", "saddle"],
        ...                         unstable_directions=np.array([[0, 0, 0], [0, 0, 0], [1.0, 0, 0]]))
        >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        ['stable (2)', 'saddle (1)']
    """
    pts = _to_numpy(points, "points").astype(float).reshape(len(stability), -1)
    traj = None if trajectories is None else _to_numpy(trajectories, "trajectories").astype(float)
    ref = pts if traj is None else traj.reshape(-1, traj.shape[-1])
    mean = ref.mean(0)
    if ref.shape[0] > 1 and ref.shape[1] > 1:
        _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)
        pcs = vt[:2].T
    else:
        pcs = np.eye(ref.shape[1], 2)
    if pcs.shape[1] < 2:
        pcs = np.pad(pcs, ((0, 0), (0, 2 - pcs.shape[1])))

    def proj(x: np.ndarray) -> np.ndarray:
        return (x - mean) @ pcs

    if ax is None:
        fig = _new_figure((5.5, 5.0))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    if traj is not None:
        for tr in traj[:max_trajectories]:
            p = proj(tr)
            ax.plot(p[:, 0], p[:, 1], color="0.75", lw=0.8, zorder=1)
    p = proj(pts)
    for kind, style in _STYLE.items():
        idx = [i for i, s in enumerate(stability) if s == kind]
        if idx:
            ax.scatter(p[idx, 0], p[idx, 1], label=f"{kind} ({len(idx)})", zorder=3, **style)
    if unstable_directions is not None:
        dirs = _to_numpy(unstable_directions, "unstable_directions").astype(float)
        scale = 0.1 * float(np.linalg.norm(ref - mean, axis=1).max() or 1.0)
        for i, s in enumerate(stability):
            if s == "saddle":
                d = dirs[i] / max(float(np.linalg.norm(dirs[i])), 1e-12) * scale
                a, b = proj(pts[i] - d), proj(pts[i] + d)
                ax.plot([a[0], b[0]], [a[1], b[1]], color="tab:red", lw=1, zorder=2)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title or f"{len(stability)} fixed points")
    ax.legend(frameon=False, fontsize=8)
    return _finish(fig, path)
