"""Figures for anatomy-constrained circuits: cell-type tables, motif diagrams,
activity maps of spatial areas and time constants.

Example:
    >>> import tempfile, pathlib
    >>> from bionn.circuits.motifs import motif
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> _ = plot_motif(motif("E-PV-SST-VIP"), out / "motif.png")
    >>> _ = plot_cell_type_table(motif("disinhibition"), out / "table.png")
    >>> sorted(p.name for p in out.iterdir())
    ['motif.png', 'table.png']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch

from ._common import E_COLOR, I_COLOR, PathLike, _finish, _new_figure, _to_numpy

__all__ = ["plot_cell_type_table", "plot_motif", "plot_activity_maps", "plot_time_constants"]

U_COLOR = "#7f7f7f"  # unsigned types: grey


def _type_color(sign: int) -> str:
    return E_COLOR if sign > 0 else I_COLOR if sign < 0 else U_COLOR


def plot_cell_type_table(table: Any, path: PathLike | None = None) -> Figure:
    """The cell-type table: the types (size, sign, tau, nonlinearity) and a
    ``[post][pre]`` grid of connections, coloured by signed initial strength and
    annotated with strength, spatial extent ``k`` and synaptic nonlinearity.

    Args:
        table: a :class:`~bionn.circuits.celltypes.CellTypeTable`.
        path: where to save a PNG (optional).
    """
    names = list(table.names)
    n = len(names)
    fig = _new_figure((4.2 + 1.1 * n, 1.6 + 0.75 * n))
    gs = fig.add_gridspec(1, 2, width_ratios=[1.25, 1.0 + 0.15 * n], wspace=0.35)
    ax_t = fig.add_subplot(gs[0])
    ax_t.axis("off")
    rows = table.type_rows()
    cells = [[r["type"], str(r["size"]), r["sign"], f"{r['tau_ms']:g}", r["nonlinearity"],
              ("in " if r["input"] else "") + ("out" if r["output"] else "")] for r in rows]
    tab = ax_t.table(cellText=cells, colLabels=["type", "size", "sign", "tau ms", "f", "I/O"],
                     loc="center", cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    tab.scale(1.0, 1.4)
    for i, t in enumerate(table.types):
        tab[i + 1, 0].get_text().set_color(_type_color(t.sign))
        tab[i + 1, 0].get_text().set_fontweight("bold")
    ax_t.set_title("cell types", fontsize=10)

    ax = fig.add_subplot(gs[1])
    m = _to_numpy(table.type_matrix("signed_strength"), "strength")
    lim = max(1e-6, float(np.abs(m).max()))
    ax.imshow(np.ma.masked_where(_to_numpy(table.type_matrix("allowed"), "allowed") == 0, m),
              cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -lim, lim))
    for c in table.active_connections:
        i, j = names.index(c.post), names.index(c.pre)
        g = "" if c.synapse == "identity" else f"\ng={c.synapse}"
        ax.text(j, i, f"{m[i, j]:+.2g}\nk={c.extent}{g}", ha="center", va="center", fontsize=7,
                color="white" if abs(m[i, j]) > 0.6 * lim else "black")
    ax.set_xticks(range(n), names)
    ax.set_yticks(range(n), names)
    ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="0.8", linewidth=0.8)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("presynaptic type")
    ax.set_ylabel("postsynaptic type")
    ax.set_title("connections [post, pre]", fontsize=10)
    if table.name:
        fig.suptitle(table.name, fontsize=11)
    return _finish(fig, path)


def plot_motif(table: Any, path: PathLike | None = None) -> Figure:
    """A circuit diagram of a cell-type table: types as circles (red E, blue I, grey
    unsigned), excitatory connections as arrows, inhibitory ones as flat-ended
    lines (width ~ initial strength), self-connections as loops, and input arrows
    into the input types.

    Args:
        table: a :class:`~bionn.circuits.celltypes.CellTypeTable`.
        path: where to save a PNG (optional).
    """
    names = list(table.names)
    n = len(names)
    fig = _new_figure((4.2, 4.2))
    ax = fig.add_subplot()
    ax.set_aspect("equal")
    ax.axis("off")
    radius = 0.0 if n == 1 else 1.0
    pos = {name: (radius * math.cos(math.pi / 2 - 2 * math.pi * k / n),
                  radius * math.sin(math.pi / 2 - 2 * math.pi * k / n)) for k, name in enumerate(names)}
    r_node = 0.22
    smax = max([c.strength for c in table.active_connections] + [1e-6])
    for c in table.active_connections:
        sign = table[c.pre].sign
        color = _type_color(sign)
        lw = 0.8 + 2.2 * c.strength / smax
        style = "-|>,head_length=6,head_width=4" if sign >= 0 else "|-|,widthA=0,widthB=4"
        if c.pre == c.post:
            x, y = pos[c.pre]
            d = math.hypot(x, y) or 1.0
            ux, uy = (x / d, y / d) if (x, y) != (0.0, 0.0) else (0.0, 1.0)
            a = (x + ux * r_node - uy * 0.1, y + uy * r_node + ux * 0.1)
            b = (x + ux * r_node + uy * 0.1, y + uy * r_node - ux * 0.1)
            ax.add_patch(FancyArrowPatch(a, b, connectionstyle="arc3,rad=-2.2", arrowstyle=style,
                                         color=color, lw=lw, mutation_scale=1.0))
            continue
        (x0, y0), (x1, y1) = pos[c.pre], pos[c.post]
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle=style, color=color, lw=lw,
                                     connectionstyle="arc3,rad=0.15", shrinkA=22, shrinkB=22,
                                     mutation_scale=1.0))
    for name in names:
        x, y = pos[name]
        t = table[name]
        ax.add_patch(Circle((x, y), r_node, facecolor=_type_color(t.sign), edgecolor="k", alpha=0.9, zorder=3))
        ax.text(x, y, name, ha="center", va="center", color="white", fontsize=9, fontweight="bold", zorder=4)
        if name in table.inputs:
            d = math.hypot(x, y) or 1.0
            ux, uy = (x / d, y / d) if radius else (-1.0, 0.0)
            ux, uy = ux * 0.8 - uy * 0.6, uy * 0.8 + ux * 0.6  # beside the self-loop
            ax.annotate("", xy=(x + ux * r_node * 1.05, y + uy * r_node * 1.05),
                        xytext=(x + ux * 0.7, y + uy * 0.7),
                        arrowprops={"arrowstyle": "-|>", "color": "0.4", "lw": 1.2})
            ax.text(x + ux * 0.78, y + uy * 0.78, "in", ha="center", va="center", fontsize=7, color="0.4")
    lim = radius + 1.0
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_title(table.name or "circuit", fontsize=11)
    return _finish(fig, path)


def plot_activity_maps(
    record: Any,
    area: int | str = 0,
    cell_types: Sequence[str] | None = None,
    times: Sequence[int] | None = None,
    batch: int = 0,
    path: PathLike | None = None,
) -> Figure:
    """Activity maps of one area: rows are cell types (mean over the type's
    channels), columns are time steps, for one trial.

    Args:
        record: a :class:`bionn.rate.spatial.SpatialRecord`.
        area: area index or name.
        cell_types: types to show (default all).
        times: step indices to show (default up to 6 evenly spaced).
        batch: the trial.
        path: where to save a PNG (optional).
    """
    a = record._area(area)
    types = list(record.channels[a]) if cell_types is None else list(cell_types)
    steps = record.steps
    times = (sorted({int(round(v)) for v in np.linspace(0, steps - 1, min(6, steps))})
             if times is None else [int(t) % steps for t in times])
    maps = [[_to_numpy(record.query(a, ct, t=t, batch=batch).mean(0), "rates") for t in times]
            for ct in types]
    fig = _new_figure((1.5 * len(times) + 1.2, 1.5 * len(types) + 0.6))
    axes = fig.subplots(len(types), len(times), squeeze=False)
    for i, ct in enumerate(types):
        vmax = max(1e-9, max(float(m.max()) for m in maps[i]))
        vmin = min(0.0, min(float(m.min()) for m in maps[i]))
        for j, t in enumerate(times):
            ax = axes[i, j]
            im = ax.imshow(maps[i][j], cmap="magma", vmin=vmin, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"t={(t + 1) * record.dt:g} ms", fontsize=8)
            if j == 0:
                ax.set_ylabel(ct, fontsize=9)
        fig.colorbar(im, ax=list(axes[i]), fraction=0.02, pad=0.02)
    fig.suptitle(f"{record.area_names[a]}: mean rate per cell type", fontsize=10)
    return _finish(fig, path)


def plot_time_constants(
    taus: Mapping[str, Any],
    initial: Mapping[str, Any] | None = None,
    dt: float | None = None,
    path: PathLike | None = None,
    signs: Mapping[str, int] | None = None,
) -> Figure:
    """Time constants per group (e.g. ``"area0/E"``): each value as a dot, the
    median as a bar, the initial value as a dashed line.

    Args:
        taus: ``{label: values (ms)}``, e.g. ``SpatialNetwork.tau_by_type()``.
        initial: the same labels before training (optional).
        dt: draw the lower bound ``tau = dt`` (optional).
        path: where to save a PNG (optional).
        signs: ``{label: +1/-1/0}`` for the dot colours (red E, blue I, grey
            unsigned); by default labels whose last part is ``I``, ``PV``, ``SST``
            or ``VIP`` are blue, the others red.

    Example:
        >>> import torch
        >>> fig = plot_time_constants({"V1/E": torch.full((8,), 20.0), "V1/I": torch.full((2,), 10.0)})
        >>> len(fig.axes)
        1
    """
    labels = list(taus)
    if not labels:
        raise ValueError("taus is empty: give at least one {label: values} entry")
    fig = _new_figure((1.0 + 0.9 * len(labels), 3.2))
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    for k, lab in enumerate(labels):
        v = _to_numpy(taus[lab], lab).ravel()
        if signs is not None and lab in signs:
            color = _type_color(int(signs[lab]))
        else:
            color = I_COLOR if lab.split("/")[-1].upper() in ("I", "PV", "SST", "VIP") else E_COLOR
        ax.scatter(k + rng.uniform(-0.25, 0.25, v.size), v, s=4, alpha=0.4, color=color, linewidths=0)
        ax.hlines(np.median(v), k - 0.35, k + 0.35, color="k", lw=1.5)
        if initial is not None and lab in initial:
            v0 = float(np.median(_to_numpy(initial[lab], lab)))
            ax.hlines(v0, k - 0.4, k + 0.4, color="0.3", lw=1.0, linestyles="--")
    if dt is not None:
        ax.axhline(dt, color="0.6", lw=0.8, ls=":", label=f"dt = {dt:g} ms")
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("tau (ms)")
    ax.set_title("time constants (bar: median; dashed: initial)", fontsize=9)
    return _finish(fig, path)
