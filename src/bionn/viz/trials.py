"""Example trials: inputs, targets vs outputs, and a sample of unit activities over time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ._common import E_COLOR, I_COLOR, PathLike, _finish, _new_figure, _runs, _to_numpy

__all__ = ["plot_example_trials"]

MAX_INPUT_LINES = 8  # more input channels than this are drawn as a heatmap
MAX_LEGEND_CHANNELS = 10  # channels get a legend entry up to this many (one colour each)
OUTPUTS_AS = ("value", "probability")


def _batch_first(x: Any, name: str, ndim: int = 3) -> np.ndarray:
    a = _to_numpy(x, name)
    if a.ndim == ndim - 1:  # a single trial: add the batch axis
        a = a[None]
    if a.ndim != ndim:
        want = "(batch, time, channels)" if ndim == 3 else "(batch, time)"
        raise ValueError(f"{name} must be batch-first {want}, got shape {a.shape}")
    return a


def _sample_units(n: int, k: int, sign: np.ndarray | None) -> np.ndarray:
    """``k`` evenly spread unit indices; with ``sign``, both types in proportion."""
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=int)
    if sign is None:
        return np.unique(np.linspace(0, n - 1, k).round().astype(int))
    e, i = np.flatnonzero(sign > 0), np.flatnonzero(sign < 0)
    k_i = 0 if i.size == 0 else min(i.size, max(1, round(k * i.size / n)))
    k_e = min(e.size, k - k_i)
    k_i = min(i.size, k - k_e)
    pick = [
        idx[np.unique(np.linspace(0, idx.size - 1, m).round().astype(int))]
        for idx, m in ((e, k_e), (i, k_i))
        if m > 0
    ]
    return np.sort(np.concatenate(pick)) if pick else np.empty(0, dtype=int)


def _softmax(a: np.ndarray) -> np.ndarray:
    """Softmax over the last (channel) axis, stable for large logits."""
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _names(names: Sequence[str] | None, n: int, what: str) -> list[str] | None:
    if names is None:
        return None
    names = [str(v) for v in names]
    if len(names) != n:
        raise ValueError(f"{what}_names has {len(names)} names but there are {n} {what} channels")
    return names


def plot_example_trials(
    inputs: Any,
    targets: Any | None,
    outputs: Any | None,
    rates: Any | None,
    path: PathLike | None = None,
    mask: Any | None = None,
    n_trials: int = 3,
    n_units: int = 10,
    dt: float = 1.0,
    sign: Any | None = None,
    *,
    outputs_as: str = "value",
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    activity: str = "auto",
) -> Figure:
    """Plot the first trials of a batch: one column per trial.

    Rows: the inputs over time; the targets (dashed) and outputs (solid) of each
    output channel in matching colours; and ``n_units`` unit activities, spread
    evenly over the population (red E / blue I when ``sign`` is given). Time steps
    with ``mask == 0`` (not scored) are shaded grey.

    With ``outputs_as="probability"`` (a network trained with cross-entropy, whose
    outputs are logits) the outputs are drawn as their softmax over the channels,
    on a 0..1 axis labelled "P(channel)", against the (one-hot) targets.

    Args:
        inputs: ``(batch, time, n_input)``.
        targets: ``(batch, time, n_output)``, or ``None``.
        outputs: ``(batch, time, n_output)``, or ``None``.
        rates: ``(batch, time, n_units)`` activities, or ``None`` to leave the row out.
        path: if given, save a PNG there (atomically).
        mask: ``(batch, time)`` (or ``(batch, time, n_output)``) loss weight per step.
        n_trials: how many trials (the first ones) to show.
        n_units: how many units to show.
        dt: time step in ms; the x-axis is ``step * dt``.
        sign: ``(n_units_total,)`` +1 (E) / -1 (I) per unit of ``rates``.
        outputs_as: ``"value"`` (raw outputs) or ``"probability"`` (softmax of the
            outputs over the channels, for logits).
        input_names: a name per input channel (``n_input``), for the legend (or
            the rows of the input heat map); default ``"in <k>"``.
        output_names: a name per output channel (``n_output``); default ``"ch <k>"``.
        activity: ``"rates"`` (a line per unit), ``"spikes"`` (a raster: a tick per
            spike, E units above I units, ``max(n_units, 40)`` units), or ``"auto"``:
            ``"spikes"`` when ``rates`` holds only 0 and 1 (a spiking network).

    A single trial may be given without the batch axis (``(time, channels)``).

    Returns:
        The :class:`~matplotlib.figure.Figure`.

    Raises:
        ValueError: on inconsistent shapes.

    Example:
        >>> import torch
        >>> x, y = torch.rand(4, 50, 3), torch.rand(4, 50, 2)
        >>> fig = plot_example_trials(x, y, y + 0.1, torch.rand(4, 50, 32), n_trials=2, dt=20.0)
        >>> len([ax for ax in fig.axes if ax.get_visible()])
        6
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if outputs_as not in OUTPUTS_AS:
        raise ValueError(f"outputs_as must be one of {OUTPUTS_AS}, got {outputs_as!r}")
    if activity not in ("auto", "rates", "spikes"):
        raise ValueError(f"activity must be 'auto', 'rates' or 'spikes', got {activity!r}")
    if dt <= 0:
        raise ValueError(f"dt must be positive (ms), got {dt}")
    x = _batch_first(inputs, "inputs")
    batch, steps = x.shape[:2]
    arrays: dict[str, np.ndarray] = {}
    for name, val in (("targets", targets), ("outputs", outputs), ("rates", rates)):
        if val is None:
            continue
        a = _batch_first(val, name)
        if a.shape[:2] != (batch, steps):
            raise ValueError(
                f"{name} has (batch, time) = {a.shape[:2]} but inputs have {(batch, steps)}"
            )
        arrays[name] = a
    if (
        "targets" in arrays
        and "outputs" in arrays
        and (arrays["targets"].shape[2] != arrays["outputs"].shape[2])
    ):
        raise ValueError(
            f"targets have {arrays['targets'].shape[2]} channels but outputs have "
            f"{arrays['outputs'].shape[2]}"
        )
    probability = outputs_as == "probability"
    if probability and "outputs" in arrays:
        arrays["outputs"] = _softmax(arrays["outputs"])
    n_out = next((a.shape[2] for k, a in arrays.items() if k != "rates"), 0)
    in_names = _names(input_names, x.shape[2], "input")
    out_names = _names(output_names, n_out, "output")
    m = None
    if mask is not None:
        m = _to_numpy(mask, "mask")
        if m.ndim == 1:
            m = m[None]
        if m.ndim == 3:
            m = m.max(axis=2)
        if m.shape != (batch, steps):
            raise ValueError(
                f"mask has shape {m.shape} but inputs have (batch, time) = {(batch, steps)}"
            )
    s = None
    if sign is not None:
        if "rates" not in arrays:
            raise ValueError("sign was given but rates is None")
        s = _to_numpy(sign, "sign").ravel()
        n_total = arrays["rates"].shape[2]
        if s.size != n_total:
            raise ValueError(f"sign has {s.size} entries but rates have {n_total} units")

    n_trials = min(n_trials, batch)
    t = np.arange(steps) * dt
    rows = ["inputs"]
    if "targets" in arrays or "outputs" in arrays:
        rows.append("outputs")
    if "rates" in arrays:
        rows.append("rates")
    spikes = "rates" in arrays and (
        activity == "spikes"
        or (activity == "auto" and bool(np.isin(arrays["rates"], (0.0, 1.0)).all()))
    )
    units = (
        _sample_units(arrays["rates"].shape[2], max(n_units, 40) if spikes else n_units, s)
        if "rates" in arrays
        else np.empty(0, dtype=int)
    )
    if spikes and s is not None:  # E above I in the raster
        units = np.concatenate([units[s[units] < 0], units[s[units] > 0]])

    fig = _new_figure((0.6 + 3.4 * n_trials, 0.4 + 2.0 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), n_trials, sharex=True, sharey="row", squeeze=False)
    n_in = x.shape[2]
    for j in range(n_trials):
        for r, row in enumerate(rows):
            ax = axes[r, j]
            if row == "inputs":
                if n_in > MAX_INPUT_LINES:
                    ax.imshow(
                        x[j].T,
                        aspect="auto",
                        interpolation="nearest",
                        cmap="viridis",
                        extent=(t[0] - dt / 2, t[-1] + dt / 2, n_in - 0.5, -0.5),
                    )
                    if in_names is not None and j == 0:
                        ax.set_yticks(range(n_in), in_names, fontsize=7)
                else:
                    for c in range(n_in):
                        ax.plot(t, x[j, :, c], lw=1.0, color=f"C{c % 10}")
            elif row == "outputs":
                for c in range(n_out):
                    col = f"C{c % 10}"
                    if "targets" in arrays:
                        ax.plot(t, arrays["targets"][j, :, c], ls="--", lw=1.6, color=col, zorder=3)
                    if "outputs" in arrays:
                        ax.plot(t, arrays["outputs"][j, :, c], lw=1.2, color=col)
            elif spikes:
                rr = arrays["rates"][j]
                for k, u in enumerate(units):
                    col = (E_COLOR if s[u] > 0 else I_COLOR) if s is not None else "0.2"
                    ax.vlines(t[rr[:, u] > 0], k - 0.4, k + 0.4, color=col, lw=0.8)
                ax.set_ylim(-0.6, len(units) - 0.4)
            else:
                rr = arrays["rates"][j]
                for u in units:
                    col = (E_COLOR if s[u] > 0 else I_COLOR) if s is not None else None
                    ax.plot(t, rr[:, u], lw=0.9, alpha=0.85, color=col)
            if m is not None:
                for a, b, v in _runs(m[j] > 0):
                    if not v:
                        ax.axvspan(
                            (a - 0.5) * dt, (b - 0.5) * dt, color="0.5", alpha=0.15, lw=0, zorder=0
                        )
            if not (row == "inputs" and n_in > MAX_INPUT_LINES):
                ax.grid(True, alpha=0.25, lw=0.5)
        axes[0, j].set_title(f"trial {j}")
        axes[-1, j].set_xlabel("time (ms)")
    axes[0, 0].set_xlim(t[0], t[-1] if steps > 1 else t[0] + dt)
    if probability and "outputs" in rows:
        axes[rows.index("outputs"), 0].set_ylim(-0.03, 1.03)

    labels = {
        "inputs": "input channel" if n_in > MAX_INPUT_LINES else "input",
        "outputs": "P(channel) (softmax)" if probability else "output",
        "rates": "neuron (spikes)" if spikes else "activity",
    }
    for r, row in enumerate(rows):
        axes[r, 0].set_ylabel(labels[row])

    # Legends in the last column, outside the data.
    last = axes[:, -1]
    if "outputs" in rows:
        handles = []
        if "targets" in arrays:
            handles.append(Line2D([], [], color="0.2", ls="--", label="target"))
        if "outputs" in arrays:
            handles.append(Line2D([], [], color="0.2", label="P (softmax)" if probability
                                  else "output"))
        if n_out <= MAX_LEGEND_CHANNELS:
            handles += [
                Line2D([], [], color=f"C{c}", lw=3,
                       label=out_names[c] if out_names is not None else f"ch {c}")
                for c in range(n_out)
            ]
        if m is not None and (m <= 0).any():
            handles.append(Patch(color="0.5", alpha=0.3, label="not scored"))
        last[rows.index("outputs")].legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8
        )
    if "inputs" in rows and n_in <= MAX_INPUT_LINES:
        last[0].legend(
            handles=[
                Line2D([], [], color=f"C{c}",
                       label=in_names[c] if in_names is not None else f"in {c}")
                for c in range(n_in)
            ],
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            frameon=False,
            fontsize=8,
        )
    if "rates" in rows:
        if s is not None:
            handles = [
                Line2D([], [], color=E_COLOR, label="E"),
                Line2D([], [], color=I_COLOR, label="I"),
            ]
        else:
            handles = []
        handles.append(
            Line2D([], [], color="none", label=f"{units.size} of {arrays['rates'].shape[2]} units")
        )
        last[rows.index("rates")].legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            frameon=False,
            fontsize=8,
            handlelength=1.2,
        )
    return _finish(fig, path)
