"""Population figures: condition-averaged trajectories, task-variance maps and unit clusters.

The inputs are plain arrays (from :mod:`bionn.analysis.population` or anywhere else);
figures are pyplot-free, returned, and saved when given a ``path``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ._common import PathLike, _finish, _new_figure, _runs, _to_numpy

__all__ = ["plot_clusters", "plot_task_variance_map", "plot_trajectories"]


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def plot_trajectories(traj: Any, conditions: Sequence[Any], evr: Any = None, dims: int = 2,
                      path: PathLike | None = None, *, axis_labels: Sequence[str] | None = None,
                      condition_label: str = "condition", title: str | None = None,
                      cmap: str | None = None) -> Figure:
    """Condition-averaged trajectories in their first 2 or 3 dimensions, one line per
    condition, its start marked by a dot.

    Numeric conditions (e.g. signed coherence) are coloured on a continuous colour map
    (diverging ``coolwarm`` centred on 0 when they take both signs, else ``viridis``) with a
    colour bar; any other labels (strings, tuples) get one colour each and a legend.

    Args:
        traj: ``(n_conditions, time, k)`` with ``k >= dims`` (e.g.
            ``ConditionPCA.trajectories``, or condition-averaged TDR projections).
        conditions: one label per trajectory.
        evr: ``(k,)`` explained-variance ratios: the axes read ``"PC 1 (42.0 %)"``; without
            it ``"PC 1"``.
        dims: 2 or 3 (a 3-D axes).
        path: where to save the figure, or None.
        axis_labels: names of the axes instead of PC labels (e.g. TDR regressor names).
        condition_label: the title of the colour bar or legend.
        cmap: a colour-map name for numeric conditions.

    Example:
        >>> import numpy as np
        >>> fig = plot_trajectories(np.random.rand(3, 10, 4), [-0.5, 0.0, 0.5], [0.6, 0.3, 0.1, 0.0])
        >>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel(), len(fig.axes[0].lines)
        ('PC 1 (60.0 %)', 'PC 2 (30.0 %)', 3)
    """
    x = _to_numpy(traj, "traj")
    if x.ndim != 3:
        raise ValueError(f"traj must be (n_conditions, time, k); got shape {x.shape}")
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3; got {dims!r}")
    if x.shape[2] < dims:
        raise ValueError(f"traj has k={x.shape[2]} dimensions; dims={dims} needs at least {dims}")
    conds = list(conditions.tolist() if hasattr(conditions, "tolist") else conditions)
    if len(conds) != x.shape[0]:
        raise ValueError(f"conditions must have one label per trajectory: traj has "
                         f"{x.shape[0]}, conditions has {len(conds)}")
    if axis_labels is not None:
        if len(axis_labels) < dims:
            raise ValueError(f"axis_labels must name {dims} axes; got {len(axis_labels)}")
        labels = [str(a) for a in axis_labels[:dims]]
    elif evr is not None:
        e = _to_numpy(evr, "evr").reshape(-1)
        if e.size < dims:
            raise ValueError(f"evr must have at least dims={dims} values; got {e.size}")
        labels = [f"PC {i + 1} ({100 * e[i]:.1f} %)" for i in range(dims)]
    else:
        labels = [f"PC {i + 1}" for i in range(dims)]

    fig = _new_figure((6.0, 5.0) if dims == 2 else (6.5, 5.5))
    ax = fig.add_subplot(projection="3d") if dims == 3 else fig.add_subplot()
    numeric = all(_is_number(c) for c in conds)
    if numeric:
        vals = np.asarray(conds, dtype=float)
        lo, hi = float(vals.min()), float(vals.max())
        if lo < 0 < hi:
            m = max(-lo, hi)
            norm, name = Normalize(-m, m), cmap or "coolwarm"
        else:
            norm, name = Normalize(lo, hi if hi > lo else lo + 1), cmap or "viridis"
        cm = colormaps[name]
        colors = [cm(norm(v)) for v in vals]
    else:
        cm = colormaps["tab10" if len(conds) <= 10 else "tab20"]
        colors = [cm(i % cm.N) for i in range(len(conds))]
    for c, tr, col in zip(conds, x, colors, strict=True):
        ax.plot(*(tr[:, d] for d in range(dims)), color=col, lw=1.5, label=str(c))
    starts = x[:, 0, :dims]
    ax.scatter(*(starts[:, d] for d in range(dims)), c=colors, s=18, edgecolors="k",
               linewidths=0.5, zorder=3)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    if dims == 3:
        ax.set_zlabel(labels[2])
    if numeric:
        fig.colorbar(ScalarMappable(norm=norm, cmap=cm), ax=ax, label=condition_label,
                     shrink=0.8)
    else:
        ax.legend(title=condition_label, frameon=False, fontsize=7,
                  ncol=1 if len(conds) <= 12 else 2)
    ax.set_title(title or f"{len(conds)} conditions (dot: start)")
    return _finish(fig, path)


def _check_map(tv: Any, task_names: Sequence[str] | None, labels: Any, order: Any
               ) -> tuple[np.ndarray, list[str], np.ndarray | None, np.ndarray]:
    v = _to_numpy(tv, "tv_normalized")
    if v.ndim != 2:
        raise ValueError(f"tv_normalized must be (units, tasks); got shape {v.shape}")
    n_units, n_tasks = v.shape
    names = [f"task {i}" for i in range(n_tasks)] if task_names is None else list(task_names)
    if len(names) != n_tasks:
        raise ValueError(f"task_names must name the {n_tasks} tasks (columns of tv_normalized); "
                         f"got {len(names)}")
    lab = None
    if labels is not None:
        lab = _to_numpy(labels, "labels", dtype=int).reshape(-1)
        if lab.size != n_units:
            raise ValueError(f"labels must have one cluster per unit: tv_normalized has {n_units} "
                             f"units, labels has {lab.size}")
    if order is None:
        idx = np.arange(n_units) if lab is None else np.argsort(lab, kind="stable")
    else:
        idx = _to_numpy(order, "order", dtype=int).reshape(-1)
        if sorted(idx.tolist()) != list(range(n_units)):
            raise ValueError(f"order must be a permutation of the {n_units} units")
    return v, names, lab, idx


def plot_task_variance_map(tv_normalized: Any, task_names: Sequence[str] | None = None,
                           order: Any = None, labels: Any = None, path: PathLike | None = None,
                           *, title: str | None = None, cmap: str = "hot") -> Figure:
    """The normalized task variance as a heat map: one row per task, one column per unit,
    units in ``order`` (by cluster), white lines at the cluster boundaries and the cluster
    numbers as x ticks (Yang et al. 2019, Fig. 2).

    Args:
        tv_normalized: ``(units, tasks)`` normalized task variance.
        task_names: a name per task (column), or None.
        order: the unit order (a permutation), or None: by ``labels`` (stable), else as given.
        labels: ``(units,)`` cluster per unit, or None (no boundaries).
        path: where to save the figure, or None.

    Example:
        >>> import numpy as np
        >>> tv = np.array([[1, 0.1], [0.2, 1], [1, 0], [0, 1.0]])
        >>> fig = plot_task_variance_map(tv, ["a", "b"], labels=[0, 1, 0, 1])
        >>> len(fig.axes[0].lines), [t.get_text() for t in fig.axes[0].get_yticklabels()]
        (1, ['a', 'b'])
    """
    v, names, lab, idx = _check_map(tv_normalized, task_names, labels, order)
    n_units, n_tasks = v.shape
    fig = _new_figure((max(5.0, min(14.0, 2.0 + 0.06 * n_units)), 1.2 + 0.3 * n_tasks))
    ax = fig.add_subplot()
    vmax = 1.0 if v.size and float(v.max()) <= 1.0 else None
    im = ax.imshow(v[idx].T, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0,
                   vmax=vmax)
    ax.set_yticks(range(n_tasks), names, fontsize=8)
    if lab is not None:
        runs = _runs(lab[idx])
        for start, _, _ in runs[1:]:
            ax.axvline(start - 0.5, color="w", lw=1.0)
        ax.set_xticks([(a + b - 1) / 2 for a, b, _ in runs], [str(int(c)) for _, _, c in runs],
                      fontsize=7)
        ax.set_xlabel("units, sorted by cluster (ticks: cluster)")
    else:
        ax.set_xlabel("units")
    fig.colorbar(im, ax=ax, label="normalized task variance", fraction=0.04)
    ax.set_title(title or f"task variance of {n_units} units")
    return _finish(fig, path)


def plot_clusters(silhouette: Mapping[int, float], k: int, tv_normalized: Any, labels: Any,
                  task_names: Sequence[str] | None = None, path: PathLike | None = None, *,
                  cmap: str = "hot") -> Figure:
    """Choosing and reading the clusters: the silhouette score against the number of
    clusters (the chosen ``k`` marked), and each cluster's mean normalized task variance
    (clusters as rows, tasks as columns, with the cluster sizes).

    Args:
        silhouette: k -> mean silhouette score.
        k: the chosen number of clusters.
        tv_normalized: ``(units, tasks)`` what was clustered; labels: ``(units,)`` clusters.
        task_names: a name per task, or None.
        path: where to save the figure, or None.

    Example:
        >>> import numpy as np
        >>> tv = np.array([[1, 0.1], [0.9, 0], [0, 1], [0.1, 1.0]])
        >>> fig = plot_clusters({2: 0.8, 3: 0.3}, 2, tv, [0, 0, 1, 1], ["a", "b"])
        >>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel(), fig.axes[1].get_ylabel()
        ('number of clusters k', 'silhouette score', 'cluster (units)')
    """
    v, names, lab, _ = _check_map(tv_normalized, task_names, labels, None)
    if lab is None:
        raise ValueError("labels must give a cluster per unit")
    if not isinstance(silhouette, Mapping) or not silhouette:
        raise ValueError("silhouette must be a non-empty dict k -> score")
    if k not in silhouette:
        raise ValueError(f"k={k!r} is not among the scored k {sorted(silhouette)}")
    ks = sorted(silhouette)
    fig = _new_figure((10.0, 4.0))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=(1, 1.4)))
    ax1.plot(ks, [silhouette[j] for j in ks], "o-", color="0.3", ms=3, lw=1)
    ax1.plot([k], [silhouette[k]], marker="*", color="tab:red", ms=14, ls="none",
             label=f"k = {k}")
    ax1.set_xlabel("number of clusters k")
    ax1.set_ylabel("silhouette score")
    ax1.legend(frameon=False)
    clusters = np.unique(lab)
    means = np.stack([v[lab == c].mean(0) for c in clusters])
    vmax = 1.0 if float(v.max(initial=0.0)) <= 1.0 else None
    im = ax2.imshow(means, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0, vmax=vmax)
    ax2.set_yticks(range(len(clusters)),
                   [f"{int(c)} ({int((lab == c).sum())})" for c in clusters], fontsize=7)
    ax2.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax2.set_ylabel("cluster (units)")
    fig.colorbar(im, ax=ax2, label="mean normalized task variance", fraction=0.05)
    ax2.set_title(f"{len(clusters)} clusters")
    return _finish(fig, path)
