"""Figures of spiking simulations: rasters with population rates, voltage traces,
CANN bumps and firing-rate histograms.

Inputs are what :meth:`bionn.spiking.Network.run` returns
(:class:`~bionn.spiking.network.SimulationResult`,
:class:`~bionn.spiking.network.SpikeEvents`) or plain tensors / arrays. Time is in
ms, rates in Hz per neuron (:mod:`bionn.spiking.measures`). Excitatory groups are
drawn red and inhibitory ones blue.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bionn.spiking.measures import population_rate as _population_rate
from bionn.spiking.network import SimulationResult, SpikeEvents

from ._common import E_COLOR, I_COLOR, PathLike, _finish, _new_figure, _to_numpy

__all__ = ["plot_bump", "plot_rate_histogram", "plot_raster", "plot_voltage_traces"]

_E_NAMES = {"e", "exc", "excitatory", "pyr", "pyramidal"}
_I_NAMES = {"i", "inh", "inhibitory", "int", "interneuron", "interneurons"}


def _group_color(name: str, index: int, colors: Mapping[str, Any] | None) -> Any:
    """Colour of a group: given, else red for E-like names, blue for I-like, else C<index>."""
    if colors is not None and name in colors:
        return colors[name]
    key = name.lower()
    tokens = re.split(r"[\s_.:/()-]+", key.strip())
    ends = {key, tokens[0], tokens[-1]}  # e.g. "E", "exc_L23", "P E"
    if ends & _E_NAMES:
        return E_COLOR
    if ends & _I_NAMES:
        return I_COLOR
    return f"C{index % 10}"


def _split_by_sign(groups: dict[str, SpikeEvents], sign: Mapping[str, Any] | None,
                   ) -> dict[str, SpikeEvents]:
    """Each group with a ``sign`` vector split into its E block (+1), then its I block
    (-1), then unsigned neurons (0), each renumbered from 0 in the original order. A
    block is named ``"E"``/``"I"``/``"other"`` when there is one group, else
    ``"<group> E"`` etc.; a group of one type keeps its name."""
    if not sign:
        return groups
    unknown = sorted(set(sign) - set(groups))
    if unknown:
        raise ValueError(f"sign names unknown groups {unknown}; groups: {list(groups)}")
    out: dict[str, SpikeEvents] = {}
    for name, sp in groups.items():
        if name not in sign or sign[name] is None:
            out[name] = sp
            continue
        s = _to_numpy(sign[name], f"sign[{name!r}]").ravel()
        if s.size != sp.n_neurons:
            raise ValueError(
                f"sign[{name!r}] has {s.size} entries but the group has {sp.n_neurons} neurons")
        blocks = [(lab, m) for lab, m in (("E", s > 0), ("I", s < 0), ("other", s == 0))
                  if m.any()]
        if len(blocks) == 1:
            out[name] = sp
            continue
        neuron = sp.neuron.detach().cpu()
        for lab, m in blocks:
            rank = torch.as_tensor(np.cumsum(m) - 1)
            keep = torch.as_tensor(m)[neuron]
            key = lab if len(groups) == 1 else f"{name} {lab}"
            out[key] = SpikeEvents(sp.trial.detach().cpu()[keep], sp.step.detach().cpu()[keep],
                                   rank[neuron[keep]], int(m.sum()), sp.n_steps, sp.batch, sp.dt)
    return out


def _groups(spikes: Any) -> dict[str, SpikeEvents]:
    if isinstance(spikes, SimulationResult):
        spikes = spikes.spikes
    if isinstance(spikes, SpikeEvents):
        return {"": spikes}
    if isinstance(spikes, Mapping) and all(isinstance(v, SpikeEvents) for v in spikes.values()):
        if not spikes:
            raise ValueError("no spike groups to plot")
        return {str(k): v for k, v in spikes.items()}
    raise TypeError(
        "spikes must be SpikeEvents, a dict of group name -> SpikeEvents or a SimulationResult; "
        f"got {type(spikes).__name__}"
    )


def _check_range(t_range: Sequence[float] | None) -> tuple[float, float] | None:
    if t_range is None:
        return None
    t0, t1 = (float(v) for v in t_range)
    if not t1 > t0:
        raise ValueError(f"t_range must be (start, stop) with stop > start; got {tuple(t_range)}")
    return t0, t1


def plot_raster(
    spikes: SpikeEvents | Mapping[str, SpikeEvents] | SimulationResult,
    *,
    trial: int = 0,
    max_neurons: int | None = 500,
    population_rate: bool = True,
    colors: Mapping[str, Any] | None = None,
    t_range: Sequence[float] | None = None,
    title: str | None = None,
    rate_width: float = 5.0,
    rate_window: str = "gaussian",
    sign: Mapping[str, Any] | None = None,
    path: PathLike | None = None,
) -> Figure:
    """Spike raster of one trial, with the population rate under it.

    Groups are stacked bottom-up in the order given, each in its colour (red for
    E-like names such as ``"E"``, blue for I-like ones such as ``"I"``, else the
    default colour cycle), with their names on the y axis and a legend giving each
    group's colour and size. The lower panel (shared time axis) shows each group's
    population rate in Hz per neuron,
    :func:`bionn.spiking.measures.population_rate` of the whole group, smoothed
    with ``rate_width`` ms (``rate_window``: ``"gaussian"`` or ``"flat"``).

    A group that mixes cell types (e.g. the COBA/CUBA benchmarks' one group ``P``
    of 3200 E then 800 I cells) is split by ``sign`` into an E block and an I block
    (then unsigned neurons), each drawn, counted and rated as a group of its own.

    Args:
        spikes: one group's :class:`SpikeEvents`, a dict of group name ->
            :class:`SpikeEvents`, or a :class:`SimulationResult`.
        trial: which trial of the batch.
        max_neurons: draw at most this many neurons of each group (the first
            ones); ``None`` draws all. The rate always uses the whole group.
        population_rate: add the rate panel.
        colors: group name -> colour, overriding the defaults.
        t_range: ``(start, stop)`` ms to show; default the whole run.
        title: figure title.
        sign: group name -> ``(n_neurons,)`` +1 (E) / -1 (I) / 0 per neuron of that
            group: split it into E and I blocks (named ``"E"``/``"I"`` when there is
            one group, else ``"<group> E"``/``"<group> I"``).
        path: if given, save the figure there (atomically).

    Returns:
        The :class:`~matplotlib.figure.Figure`: 2 axes (raster, rate), or 1
        without the rate panel.

    Example:
        >>> import torch
        >>> from bionn.spiking import SpikeEvents
        >>> g = torch.Generator().manual_seed(0)
        >>> def poisson(n, p):
        ...     tr, st, ne = (torch.rand(1, 2000, n, generator=g) < p).nonzero().unbind(1)
        ...     return SpikeEvents(tr, st, ne, n, 2000, 1, 0.1)
        >>> fig = plot_raster({"E": poisson(80, 0.002), "I": poisson(20, 0.005)})
        >>> len(fig.axes), [t.get_text() for t in fig.axes[0].get_yticklabels()]
        (2, ['E', 'I'])
    """
    groups = _split_by_sign(_groups(spikes), sign)
    t_lim = _check_range(t_range)
    if max_neurons is not None and int(max_neurons) < 1:
        raise ValueError(f"max_neurons must be >= 1 or None; got {max_neurons}")
    first = next(iter(groups.values()))
    if not -first.batch <= trial < first.batch:
        raise IndexError(f"trial {trial} out of range for a batch of {first.batch}")
    shown = {
        name: sp.n_neurons if max_neurons is None else min(sp.n_neurons, int(max_neurons))
        for name, sp in groups.items()
    }
    rows = max(1, sum(shown.values()))
    duration = max(sp.n_steps * sp.dt for sp in groups.values())
    x_lim = t_lim if t_lim is not None else (0.0, duration)

    fig = _new_figure((8.0, 5.2 if population_rate else 3.8), layout="constrained")
    if population_rate:
        ax, ax_rate = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    else:
        ax, ax_rate = fig.add_subplot(), None

    ms = float(np.clip(250.0 / rows, 1.0, 6.0))
    offset, ticks, labels, handles = 0, [], [], []
    for i, (name, sp) in enumerate(groups.items()):
        color = _group_color(name, i, colors)
        n_show = shown[name]
        tr = sp.trial.detach().cpu().numpy()
        ne = sp.neuron.detach().cpu().numpy()
        t = sp.times.detach().cpu().numpy()
        sel = (tr == (trial % sp.batch)) & (ne < n_show)
        if t_lim is not None:
            sel &= (t >= t_lim[0]) & (t <= t_lim[1])
        ax.plot(
            t[sel], ne[sel] + offset, ls="none", marker="|", ms=ms, mew=0.7, color=color,
            rasterized=True,
        )
        if name:
            ticks.append(offset + (n_show - 1) / 2)
            labels.append(name)
            count = f"{n_show} of {sp.n_neurons}" if n_show < sp.n_neurons else f"{sp.n_neurons}"
            handles.append(Line2D([], [], color=color, lw=3, label=f"{name} ({count} neurons)"))
        if offset > 0:
            ax.axhline(offset - 0.5, color="0.6", lw=0.6)
        offset += n_show
        if ax_rate is not None:
            times, rate = _population_rate(sp, width=rate_width, window=rate_window, trial=trial)
            ax_rate.plot(times.numpy(), rate.numpy(), color=color, lw=1.0, label=name or None)

    ax.set_ylim(-0.5, rows - 0.5)
    ax.set_xlim(*x_lim)
    if ticks:
        ax.set_yticks(ticks, labels)
    if handles:  # reversed: top to bottom, as the blocks are stacked
        ax.legend(handles=handles[::-1], loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  frameon=False, fontsize=8)
    ax.set_ylabel("neuron")
    ax.margins(x=0)
    if ax_rate is not None:
        ax_rate.set_ylabel("rate (Hz)")
        ax_rate.set_xlabel("time (ms)")
        ax_rate.set_ylim(bottom=0)
        ax_rate.grid(True, alpha=0.3, lw=0.5)
        if len(groups) > 1:
            ax_rate.legend(frameon=False, fontsize=8, ncols=min(len(groups), 4))
        ax.tick_params(labelbottom=False)
    else:
        ax.set_xlabel("time (ms)")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_voltage_traces(
    source: SimulationResult | tuple[Any, Any],
    group: str | None = None,
    var: str = "V",
    *,
    neurons: Sequence[int] | None = None,
    spikes: SpikeEvents | bool | None = None,
    trial: int = 0,
    t_range: Sequence[float] | None = None,
    title: str | None = None,
    color: Any = None,
    path: PathLike | None = None,
) -> Figure:
    """Recorded state variable of a few neurons over time, one panel per neuron.

    Spike times, when known, are marked by ticks along the top of each panel (an
    integrate-and-fire trace resets at threshold, so spikes do not show in V).

    Args:
        source: a :class:`SimulationResult` (its trace ``"<group>.<var>"``) or a
            pair ``(times, traces)`` with ``times`` ``(T,)`` ms and ``traces``
            ``(T, n)`` or ``(batch, T, n)``.
        group: the group; may be left out when the result has one ``<var>`` trace.
        var: the state variable, e.g. ``"V"`` (mV).
        neurons: neuron indices within the group (for a result: among its
            recorded neurons; for a pair: columns of ``traces``); default the first
            4 recorded.
        spikes: spikes of the group to mark; default the result's spikes of
            ``group``; ``False`` marks none.
        trial: which trial of the batch.
        t_range: ``(start, stop)`` ms to show.
        title: figure title (default ``"<group>.<var>"``).
        color: line colour (default red for E-like groups, blue for I-like).
        path: if given, save the figure there (atomically).

    Returns:
        The :class:`~matplotlib.figure.Figure`, one axes per neuron.

    Example:
        >>> import torch
        >>> t = torch.arange(1, 101) * 0.5
        >>> v = -65 + 10 * torch.rand(100, 3)
        >>> len(plot_voltage_traces((t, v), "E", neurons=[0, 2]).axes)
        2
    """
    t_lim = _check_range(t_range)
    if isinstance(source, SimulationResult):
        if group is None:
            cands = [k for k in source.traces if k.rsplit(".", 1)[-1] == var]
            if len(cands) != 1:
                raise ValueError(
                    f"give group: {len(cands)} traces of {var!r} recorded ({sorted(source.traces)})"
                )
            group = cands[0].rsplit(".", 1)[0]
        key = f"{group}.{var}"
        if key not in source.traces:
            raise ValueError(f"no trace {key!r} recorded; traces: {sorted(source.traces)}")
        data = _to_numpy(source.traces[key], key)
        times = _to_numpy(source.trace_times, "trace_times")
        rec = source.recorded_neurons.get(group)
        rec_ids = (
            np.arange(data.shape[-1]) if rec is None else _to_numpy(rec, "recorded", int)
        )
        if spikes is None:
            spikes = source.spikes.get(group)
    elif isinstance(source, (tuple, list)) and len(source) == 2:
        times = _to_numpy(source[0], "times")
        data = _to_numpy(source[1], "traces")
        if data.ndim == 2:
            data = data[None]
        rec_ids = np.arange(data.shape[-1])
    else:
        raise TypeError(
            f"source must be a SimulationResult or (times, traces); got {type(source).__name__}"
        )
    if data.ndim != 3 or times.ndim != 1 or data.shape[1] != times.shape[0]:
        raise ValueError(
            f"traces must be (batch, T, n) with T = len(times); got {data.shape} and "
            f"{times.shape} times"
        )
    if not -data.shape[0] <= trial < data.shape[0]:
        raise IndexError(f"trial {trial} out of range for a batch of {data.shape[0]}")
    data = data[trial]
    if neurons is None:
        neurons = [int(i) for i in rec_ids[:4]]
    neurons = [int(i) for i in neurons]
    if not neurons:
        raise ValueError("no neurons to plot")
    col_of = {int(n): c for c, n in enumerate(rec_ids)}
    missing = [n for n in neurons if n not in col_of]
    if missing:
        raise ValueError(f"neurons {missing} were not recorded; recorded: {rec_ids.tolist()[:20]}"
                         + (" ..." if rec_ids.size > 20 else ""))
    label = group or ""
    color = color if color is not None else _group_color(label, 0, None)
    if spikes is False:
        spikes = None
    if spikes is not None and not isinstance(spikes, SpikeEvents):
        raise TypeError(f"spikes must be SpikeEvents, False or None; got {type(spikes).__name__}")
    if spikes is not None:
        s_tr = spikes.trial.detach().cpu().numpy()
        s_ne = spikes.neuron.detach().cpu().numpy()
        s_t = spikes.times.detach().cpu().numpy()
        s_sel = s_tr == (trial % max(spikes.batch, 1))
        s_ne, s_t = s_ne[s_sel], s_t[s_sel]

    k = len(neurons)
    fig = _new_figure((8.0, min(1.3 + 1.5 * k, 12.0)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(k, 1, sharex=True, squeeze=False).ravel())
    unit = " (mV)" if var == "V" else ""
    for ax, n in zip(axes, neurons, strict=True):
        ax.plot(times, data[:, col_of[n]], color=color, lw=0.9)
        if spikes is not None:
            st = s_t[s_ne == n]
            if t_lim is not None:
                st = st[(st >= t_lim[0]) & (st <= t_lim[1])]
            ax.vlines(st, 0.88, 1.0, transform=ax.get_xaxis_transform(), color="k", lw=0.8)
        ax.set_ylabel(f"{var}{unit}")
        ax.text(0.005, 0.97, f"neuron {n}", transform=ax.transAxes, va="top", fontsize=8,
                bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 1})
        ax.grid(True, alpha=0.3, lw=0.5)
        if t_lim is not None:
            ax.set_xlim(*t_lim)
    axes[-1].set_xlabel("time (ms)")
    fig.suptitle(title if title is not None else (f"{group}.{var}" if group else var))
    return _finish(fig, path)


def _break_wraps(t: np.ndarray, y: np.ndarray, span: float) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaN where a wrapped position jumps by more than half the span."""
    jump = np.flatnonzero(np.abs(np.diff(y)) > span / 2) + 1
    return np.insert(t, jump, np.nan), np.insert(y, jump, np.nan)


def _bump_color_limits(t: np.ndarray, a: np.ndarray, after: float | None,
                       ) -> tuple[float, float, bool]:
    """``(vmin, vmax, fitted)``: the colour limits of a bump heat map.

    With ``after`` (ms) and activity after it, the limits are the median over those
    times of the population's per-time minimum and maximum (the persistent bump's
    floor and peak), so the bump that outlasts its cue fills the colour scale and the
    transient peak during the cue saturates; ``fitted`` says so. Otherwise (or when the
    activity after ``after`` is flat) the full range of the data."""
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if after is not None:
        late = a[t > after]
        if late.size:
            vmin = float(np.nanmedian(np.nanmin(late, axis=1)))
            vmax = float(np.nanmedian(np.nanmax(late, axis=1)))
            if np.isfinite(vmin) and np.isfinite(vmax) and vmax - vmin > 1e-9 * max(hi - lo, 1.0):
                return vmin, vmax, True
    return lo, hi, False


def plot_bump(
    times: Any,
    positions: Any,
    activity: Any,
    *,
    stimulus: Any | None = None,
    period: float | None = None,
    persistent_after: float | None = None,
    title: str | None = None,
    cmap: str = "viridis",
    label: str = "activity",
    xlabel: str = "time (ms)",
    ylabel: str = "preferred position",
    path: PathLike | None = None,
) -> Figure:
    """Heat map of a population bump over time (e.g. a CANN): x time, y preferred position.

    Args:
        times: ``(T,)``.
        positions: ``(N,)`` preferred positions of the neurons, monotonic.
        activity: ``(T, N)`` activity (firing rate, synaptic input ``u``, ...).
        stimulus: ``(T,)`` stimulus position at each time, or ``(stim_times,
            stim_positions)``; drawn as a white dashed line.
        period: for a periodic feature space (e.g. ``2*pi``): stimulus positions
            are wrapped into ``[positions[0], positions[0] + period)`` and the line
            is broken where it wraps around.
        persistent_after: time in ms after which the colour scale is fitted (see
            below); default the last time the stimulus is present (a finite
            stimulus position), if it ends before the last time.
        title, cmap, label (colour bar), xlabel, ylabel: decorations.
        path: if given, save the figure there (atomically).

    Colour scale: a bump that persists after its cue is usually far weaker than
    the driven bump during the cue (a CANN's ``u`` falls from ~10 to ~0.1), so a
    scale set by the peak would hide it. After ``persistent_after`` the limits are
    the median over time of the population's lowest and highest activity (the
    persistent bump's floor and peak); brighter values during the cue saturate
    (the colour bar is extended) and the colour-bar label names the window. With
    no such time, or no activity left after it, the full range of the data.

    Returns:
        The :class:`~matplotlib.figure.Figure`: the heat map and its colour bar (2 axes).

    Example:
        >>> import math, torch
        >>> x = torch.linspace(-math.pi, math.pi, 65)[:-1]
        >>> t = torch.arange(100.0)
        >>> z = 0.05 * t                                     # bump drifting at 0.05 rad/ms
        >>> u = torch.exp(-((x[None] - z[:, None]) ** 2) / 0.5)
        >>> fig = plot_bump(t, x, u, stimulus=z, period=2 * math.pi)
        >>> len(fig.axes)
        2
    """
    t = _to_numpy(times, "times").reshape(-1)
    x = _to_numpy(positions, "positions").reshape(-1)
    a = _to_numpy(activity, "activity")
    if a.ndim != 2 or a.shape != (t.size, x.size):
        raise ValueError(
            f"activity must be (T, N) = ({t.size}, {x.size}) for {t.size} times and "
            f"{x.size} positions; got {a.shape}"
        )
    st = sy = None
    if stimulus is not None:
        if isinstance(stimulus, (tuple, list)) and len(stimulus) == 2:
            st = _to_numpy(stimulus[0], "stimulus times").reshape(-1)
            sy = _to_numpy(stimulus[1], "stimulus positions").reshape(-1)
        else:
            st, sy = t, _to_numpy(stimulus, "stimulus").reshape(-1)
        if st.size != sy.size:
            raise ValueError(f"stimulus has {sy.size} positions for {st.size} times")
        present = st[np.isfinite(sy)]
        if persistent_after is None and present.size and present.max() < t.max():
            persistent_after = float(present.max())
    vmin, vmax, fitted = _bump_color_limits(t, a, persistent_after)
    fig = _new_figure((8.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(t, x, a.T, shading="nearest", cmap=cmap, rasterized=True,
                         vmin=vmin, vmax=vmax)
    above, below = bool((a > vmax).any()), bool((a < vmin).any())
    extend = {(True, True): "both", (True, False): "max", (False, True): "min"}.get(
        (above, below), "neither")
    if fitted:
        label = f"{label} (scale: t > {persistent_after:g} ms)"
    fig.colorbar(mesh, ax=ax, label=label, pad=0.01, extend=extend)
    if st is not None:
        if period is not None:
            sy = (sy - x[0]) % period + x[0]
            st, sy = _break_wraps(st, sy, period)
        ax.plot(st, sy, color="white", ls="--", lw=1.2, label="stimulus")
        ax.legend(frameon=False, fontsize=8, labelcolor="white", loc="upper right")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return _finish(fig, path)


def plot_rate_histogram(
    rates: Any,
    bins: int | Sequence[float] = 30,
    *,
    colors: Mapping[str, Any] | None = None,
    title: str | None = None,
    xlabel: str = "firing rate (Hz)",
    path: PathLike | None = None,
) -> Figure:
    """Histogram of firing rates across neurons (e.g. :func:`~bionn.spiking.measures.neuron_rates`).

    Args:
        rates: an array / tensor of rates in Hz (any shape; flattened, NaN
            dropped), or a dict of group name -> such an array, drawn as overlaid
            step histograms over shared bins (E red, I blue).
        bins: number of bins or bin edges.
        colors: group name -> colour.
        title: axes title.
        path: if given, save the figure there (atomically).

    Each group's mean is drawn as a dashed vertical line and given in the legend.

    Returns:
        The :class:`~matplotlib.figure.Figure` (1 axes).

    Example:
        >>> import numpy as np
        >>> r = np.random.default_rng(0).gamma(4.0, 5.0, size=(2, 300))
        >>> len(plot_rate_histogram({"E": r[0], "I": r[1] * 2}).axes)
        1
    """
    if isinstance(rates, Mapping):
        data = {str(k): _to_numpy(v, f"rates[{k!r}]").reshape(-1) for k, v in rates.items()}
    else:
        data = {"": _to_numpy(rates, "rates").reshape(-1)}
    data = {k: v[np.isfinite(v)] for k, v in data.items()}
    if not data or not any(v.size for v in data.values()):
        raise ValueError("no finite rates to plot")
    allv = np.concatenate(list(data.values()))
    lo, hi = float(allv.min()), float(allv.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, int(bins) + 1) if np.ndim(bins) == 0 else np.asarray(bins, float)

    fig = _new_figure((5.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, v) in enumerate(data.items()):
        if not v.size:
            continue
        color = _group_color(name, i, colors)
        mean = float(v.mean())
        lab = f"{name + ': ' if name else ''}mean {mean:.3g} Hz (n={v.size})"
        ax.hist(v, bins=edges, histtype="stepfilled", alpha=0.25, color=color)
        ax.hist(v, bins=edges, histtype="step", lw=1.2, color=color, label=lab)
        ax.axvline(mean, color=color, ls="--", lw=1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("neurons")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(True, alpha=0.3, lw=0.5)
    if title:
        ax.set_title(title)
    return _finish(fig, path)
