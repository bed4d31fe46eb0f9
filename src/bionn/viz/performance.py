"""Task performance by trial condition (psychometric-style curves)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ._common import PathLike, _finish, _new_figure, _to_numpy

#: ``TrialBatch.info`` keys that describe timing, not the stimulus condition.
TIMING_KEYS = ("decision_start", "decision_end", "trial_length")


def plot_accuracy_by_condition(
    correct: Any,
    info: Mapping[str, Any],
    path: PathLike | None = None,
    max_levels: int = 16,
    skip: Iterable[str] = TIMING_KEYS,
) -> Figure:
    """Fraction correct per value of each trial condition, one panel per condition.

    For perceptual decision making this is accuracy against coherence (the
    psychometric curve folded at zero); for working memory, accuracy per f1.
    Conditions with more than ``max_levels`` distinct values are left out.
    Error bars are binomial standard errors ``sqrt(p (1 - p) / n)``.

    Args:
        correct: ``(trials,)`` booleans.
        info: condition name -> ``(trials,)`` values (``TrialBatch.info``).
        path: where to save the PNG, or None.

    Example:
        >>> import numpy as np
        >>> coh = np.repeat([0.05, 0.1, 0.2], 100)
        >>> fig = plot_accuracy_by_condition(np.random.rand(300) < 0.5 + coh, {"coherence": coh})
        >>> len(fig.axes)
        1
    """
    ok = _to_numpy(correct, "correct", dtype=bool).ravel()
    skip = set(skip)
    panels = []
    for name, values in info.items():
        if name in skip:
            continue
        v = _to_numpy(values, f"info[{name!r}]").ravel()
        if v.shape != ok.shape:
            raise ValueError(f"info[{name!r}] has {v.size} values; correct has {ok.size} trials")
        levels = np.unique(v)
        if 1 < len(levels) <= max_levels:
            panels.append((name, v, levels))
    if not panels:
        raise ValueError(
            f"no condition in info has 2..{max_levels} distinct values "
            f"(keys: {sorted(info)}; skipped: {sorted(skip)})"
        )
    fig = _new_figure((3.2 * len(panels), 2.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, v, levels) in zip(axes, panels, strict=True):
        p = np.array([ok[v == lv].mean() for lv in levels])
        n = np.array([(v == lv).sum() for lv in levels])
        se = np.sqrt(p * (1 - p) / np.maximum(n, 1))
        ax.errorbar(levels, p, yerr=se, marker="o", capsize=3, color="k", lw=1)
        ax.axhline(ok.mean(), color="0.6", ls=":", lw=1, label=f"all: {ok.mean():.3f}")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(name)
        ax.set_ylabel("fraction correct")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"held-out accuracy by condition ({ok.size} trials)", fontsize=10)
    return _finish(fig, path)


def _logistic_fit(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3,
                  iters: int = 100) -> tuple[float, float] | None:
    """Maximum-likelihood ``P(y=1) = 1 / (1 + exp(-(a + b x)))`` by Newton's method
    (a small ridge on ``b`` keeps it finite when the classes are separable); None if it
    does not converge."""
    scale = float(np.abs(x).max()) or 1.0
    z = x / scale
    design = np.stack([np.ones_like(z), z], 1)
    w = np.zeros(2)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(design @ w)))
        grad = design.T @ (y - p) - np.array([0.0, ridge * w[1]])
        hess = (design * (p * (1 - p))[:, None]).T @ design + np.diag([1e-9, ridge])
        step = np.linalg.solve(hess, grad)
        w = w + step
        if not np.isfinite(w).all():
            return None
        if np.abs(step).max() < 1e-8:
            return float(w[0]), float(w[1] / scale)
    return None


def plot_psychometric(
    evidence: Any,
    chose: Any,
    path: PathLike | None = None,
    *,
    groups: Any | None = None,
    group_names: Mapping[Any, str] | None = None,
    xlabel: str = "signed evidence",
    ylabel: str = "P(choice 1)",
    max_levels: int = 16,
    title: str | None = None,
) -> Figure:
    """Psychometric curve: the fraction of trials with one choice against the signed evidence.

    Points are the fraction per evidence level (binomial standard errors
    ``sqrt(p (1 - p) / n)``; with more than ``max_levels`` distinct levels the
    evidence is binned into ``max_levels`` quantile bins, each point at its bin's
    mean); the curve is a logistic fit ``1 / (1 + exp(-(a + b x)))`` to the single
    trials (maximum likelihood), or the points joined by lines when it does not
    converge. A dotted line marks chance (0.5) and zero evidence.

    Args:
        evidence: ``(trials,)`` signed evidence (e.g. coherence, positive where the
            counted choice is correct).
        chose: ``(trials,)`` booleans: the trial's response was the counted choice.
        path: if given, save a PNG there (atomically).
        groups: ``(trials,)`` labels (e.g. the context): one curve per label.
        group_names: label -> legend name (default ``str(label)``).
        xlabel, ylabel, title: decorations.
        max_levels: most points per curve.

    Returns:
        The :class:`~matplotlib.figure.Figure` (1 axes).

    Raises:
        ValueError: on arrays of different lengths or no trials.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> coh = rng.choice([-0.5, -0.1, 0.0, 0.1, 0.5], 500)
        >>> chose = rng.random(500) < 1 / (1 + np.exp(-10 * coh))
        >>> fig = plot_psychometric(coh, chose, xlabel="coherence")
        >>> fig.axes[0].get_ylabel()
        'P(choice 1)'
    """
    x = _to_numpy(evidence, "evidence").ravel()
    y = _to_numpy(chose, "chose", dtype=bool).ravel()
    if x.shape != y.shape:
        raise ValueError(f"evidence has {x.size} trials but chose has {y.size}")
    g = np.zeros(x.size, dtype=int) if groups is None else np.asarray(
        _to_numpy(groups, "groups", dtype=object)).ravel()
    if g.shape != x.shape:
        raise ValueError(f"groups has {g.size} trials but evidence has {x.size}")
    keep = np.isfinite(x)
    x, y, g = x[keep], y[keep], g[keep]
    if x.size == 0:
        raise ValueError("no trials with finite evidence to plot")
    if max_levels < 2:
        raise ValueError(f"max_levels must be >= 2, got {max_levels}")

    fig = _new_figure((4.4, 3.4), layout="constrained")
    ax = fig.add_subplot()
    labels = [None] if groups is None else sorted(set(g.tolist()), key=str)
    for i, label in enumerate(labels):
        sel = np.ones(x.size, bool) if label is None else g == label
        xs, ys = x[sel], y[sel].astype(float)
        levels = np.unique(xs)
        if levels.size > max_levels:
            edges = np.unique(np.quantile(xs, np.linspace(0, 1, max_levels + 1)))
            bins = np.clip(np.searchsorted(edges, xs, side="right") - 1, 0, edges.size - 2)
        else:
            bins = np.searchsorted(levels, xs)
        ids = np.unique(bins)
        px = np.array([xs[bins == b].mean() for b in ids])
        p = np.array([ys[bins == b].mean() for b in ids])
        n = np.array([(bins == b).sum() for b in ids])
        se = np.sqrt(p * (1 - p) / n)
        color = "k" if label is None else f"C{i % 10}"
        name = None if label is None else (group_names or {}).get(label, str(label))
        ax.errorbar(px, p, yerr=se, fmt="o", color=color, ms=5, capsize=2, label=name)
        fit = _logistic_fit(xs, ys) if np.unique(xs).size > 1 else None
        if fit is not None:
            grid = np.linspace(xs.min(), xs.max(), 200)
            ax.plot(grid, 1.0 / (1.0 + np.exp(-(fit[0] + fit[1] * grid))), color=color, lw=1.4)
        else:
            ax.plot(px, p, color=color, lw=1.0)
    ax.axhline(0.5, color="0.6", ls=":", lw=1)
    if x.min() < 0 < x.max():
        ax.axvline(0.0, color="0.6", ls=":", lw=1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if groups is not None:
        ax.legend(fontsize=8, frameon=False)
    ax.set_title(title if title is not None else f"psychometric curve ({x.size} trials)",
                 fontsize=10)
    return _finish(fig, path)
