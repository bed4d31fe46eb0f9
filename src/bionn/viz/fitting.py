"""Figures of a fit to recorded activity (``bionn fit``): the training curve and recorded
against fitted activity of a few neurons.

Plain arrays in, a pyplot-free :class:`~matplotlib.figure.Figure` out (saved atomically when
``path`` is given), as everywhere in :mod:`bionn.viz`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ._common import PathLike, _finish, _new_figure, _to_numpy

__all__ = ["plot_fit_curve", "plot_fit_examples"]


def plot_fit_curve(curve: Sequence[float] | Any, path: PathLike | None = None, *,
                   method: str = "bptt", loss: str = "mse") -> Figure:
    """The loss of a fit per step (BPTT) or per pass (FORCE, full-FORCE).

    Args:
        curve: one value per step or pass (:attr:`bionn.analysis.fitting.FitResult.curve`).
        path: if given, save a PNG there (atomically).
        method, loss: named in the axis labels.

    The ordinate is logarithmic when every value is positive.

    Example:
        >>> fig = plot_fit_curve([1.0, 0.5, 0.2], method="bptt")
        >>> fig.axes[0].get_xlabel()
        'Adam step'
    """
    values = _to_numpy(curve, "curve").ravel()
    if values.size == 0:
        raise ValueError("curve is empty: nothing to plot")
    fig = _new_figure((5.0, 3.2))
    ax = fig.add_subplot()
    steps = np.arange(1, values.size + 1)
    ax.plot(steps, values, color="#333333", lw=1.2, marker="o" if values.size <= 30 else None, ms=3)
    finite = values[np.isfinite(values)]
    if finite.size and bool((finite > 0).all()):
        ax.set_yscale("log")
    ax.set_xlabel("Adam step" if method == "bptt" else "pass over the training trials")
    what = {"mse": "rate MSE", "poisson": "Poisson NLL"}.get(loss, loss)
    ax.set_ylabel(what if method == "bptt" else "target units' rate MSE")
    ax.set_title(f"fit: {method}")
    ax.spines[["top", "right"]].set_visible(False)
    return _finish(fig, path)


def plot_fit_examples(recorded: Any, fitted: Any, path: PathLike | None = None, *,
                      dt: float = 1.0, neurons: Sequence[int] | None = None,
                      trials: Sequence[int] | None = None, trial_labels: Sequence[Any] | None = None,
                      ylabel: str = "rate") -> Figure:
    """Recorded (grey) against fitted (colour) activity: one panel per neuron, one line per
    trial.

    Args:
        recorded, fitted: ``(trials, time, neurons)`` arrays of the same shape.
        path: if given, save a PNG there (atomically).
        dt: the time step (ms) of one bin.
        neurons: the neurons (last axis) to show; default the first four.
        trials: the trials (first axis) to draw; default the first three.
        trial_labels: how to name each drawn trial in the legend (default its index).
        ylabel: what the values are (``"rate"``, ``"count per bin"``).

    Example:
        >>> y = np.random.default_rng(0).random((4, 20, 6))
        >>> fig = plot_fit_examples(y, y * 0.9, dt=10.0, neurons=[0, 5], trials=[1, 3])
        >>> len(fig.axes)
        2
    """
    rec = _to_numpy(recorded, "recorded")
    fit = _to_numpy(fitted, "fitted")
    if rec.ndim != 3 or rec.shape != fit.shape:
        raise ValueError(f"recorded and fitted must be (trials, time, neurons) arrays of one shape; "
                         f"got {rec.shape} and {fit.shape}")
    neurons = list(range(min(4, rec.shape[2]))) if neurons is None else [int(n) for n in neurons]
    trials = list(range(min(3, rec.shape[0]))) if trials is None else [int(k) for k in trials]
    if not neurons or not trials:
        raise ValueError("nothing to plot: give at least one neuron and one trial")
    labels = list(trial_labels) if trial_labels is not None else trials
    if len(labels) != len(trials):
        raise ValueError(f"trial_labels has {len(labels)} labels for {len(trials)} trials")
    t = np.arange(rec.shape[1]) * float(dt)
    cols = min(len(neurons), 4)
    rows = -(-len(neurons) // cols)
    fig = _new_figure((3.0 * cols, 2.3 * rows))
    colors = [f"C{i % 10}" for i in range(len(trials))]
    for j, n in enumerate(neurons):
        ax = fig.add_subplot(rows, cols, j + 1)
        for k, c, lab in zip(trials, colors, labels, strict=True):
            ax.plot(t, rec[k, :, n], color="0.55", lw=1.6, alpha=0.8)
            ax.plot(t, fit[k, :, n], color=c, lw=1.1, ls="--", label=f"trial {lab}")
        ax.set_title(f"neuron {n}", fontsize=9)
        ax.spines[["top", "right"]].set_visible(False)
        if j % cols == 0:
            ax.set_ylabel(ylabel)
        if j >= len(neurons) - cols:
            ax.set_xlabel("time (ms)")
    fig.axes[0].legend(fontsize=7, frameon=False, title="grey: recorded", title_fontsize=7)
    fig.tight_layout()
    return _finish(fig, path)
