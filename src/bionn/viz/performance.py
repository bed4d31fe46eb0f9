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
