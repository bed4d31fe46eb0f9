"""Heatmaps of ``(post, pre)`` weight matrices with E/I cell types and areas marked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from mpl_toolkits.axes_grid1 import make_axes_locatable

from ._common import E_COLOR, I_COLOR, PathLike, _finish, _new_figure, _runs, _to_numpy

__all__ = ["plot_weight_matrix"]

EI_STRIP_GID = "ei-strip"  # gid of the E/I strip images: "ei-strip-pre", "ei-strip-post"
MAX_EI_BLOCKS = 8  # draw boundary lines and E/I letters only for this many blocks or fewer
MAX_GROUP_BLOCKS = 20
_EI_CMAP = ListedColormap([I_COLOR, E_COLOR])


def _check_sign(sign: Any, n: int, name: str, axis: str, shape: tuple[int, ...]) -> np.ndarray:
    s = _to_numpy(sign, name).ravel()
    if s.size != n:
        raise ValueError(
            f"{name} has {s.size} entries but the weight matrix of shape {shape} has "
            f"{n} {axis} neurons; {name} must have one +1 (E) / -1 (I) per {axis} neuron"
        )
    if not np.all(np.isfinite(s)) or np.any(s == 0):
        raise ValueError(f"{name} must be +1 (E) or -1 (I) for every neuron, got zeros or NaNs")
    return np.where(s > 0, 1.0, -1.0)


def _check_groups(groups: Any, n: int, name: str, axis: str, shape: tuple[int, ...]) -> np.ndarray:
    g = _to_numpy(groups, name, dtype=object).ravel()
    if g.size != n:
        raise ValueError(
            f"{name} has {g.size} entries but the weight matrix of shape {shape} has "
            f"{n} {axis} neurons; {name} must give one area label per {axis} neuron"
        )
    try:
        labels = np.asarray([int(v) for v in g])
        ok = all(lab == v for lab, v in zip(labels, g, strict=True))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must hold integer area labels")
    return labels


def _group_name(label: int, group_names: Sequence[str] | Mapping[int, str] | None) -> str:
    if group_names is None:
        return f"area {label}"
    if isinstance(group_names, Mapping):
        return str(group_names.get(label, f"area {label}"))
    if 0 <= label < len(group_names):
        return str(group_names[label])
    raise ValueError(f"group label {label} has no entry in group_names (length {len(group_names)})")


def _ei_strip(ax_main: Any, divider: Any, sign: np.ndarray, axis: str) -> Any:
    """A red/blue strip of cell types along the top (pre) or left (post) of the heatmap."""
    n = sign.size
    if axis == "pre":
        ax = divider.append_axes("top", size=0.16, pad=0.04, sharex=ax_main)
        img = ax.imshow(
            sign[None, :],
            cmap=_EI_CMAP,
            vmin=-1,
            vmax=1,
            aspect="auto",
            interpolation="nearest",
            extent=(-0.5, n - 0.5, 0.5, -0.5),
        )
        ax.tick_params(bottom=False, labelbottom=False, left=False, labelleft=False)
    else:
        ax = divider.append_axes("left", size=0.16, pad=0.04, sharey=ax_main)
        img = ax.imshow(
            sign[:, None],
            cmap=_EI_CMAP,
            vmin=-1,
            vmax=1,
            aspect="auto",
            interpolation="nearest",
            extent=(-0.5, 0.5, n - 0.5, -0.5),
        )
        ax.tick_params(bottom=False, labelbottom=False)
    img.set_gid(f"{EI_STRIP_GID}-{axis}")
    for spine in ax.spines.values():
        spine.set_linewidth(0.5)

    runs = _runs(sign)
    if len(runs) <= MAX_EI_BLOCKS:
        for a, b, v in runs:
            if (b - a) / n < 0.04:
                continue
            c = (a + b - 1) / 2
            xy = (c, 0.0) if axis == "pre" else (0.0, c)
            ax.text(
                *xy,
                "E" if v > 0 else "I",
                ha="center",
                va="center",
                color="white",
                fontsize=8,
                fontweight="bold",
            )
        for a, _, _ in runs[1:]:
            line = ax_main.axvline if axis == "pre" else ax_main.axhline
            line(a - 0.5, color="0.15", lw=0.9, ls="--")
    return ax


def plot_weight_matrix(
    weight: Any,
    path: PathLike | None = None,
    sign: Any | None = None,
    groups: Any | None = None,
    group_names: Sequence[str] | Mapping[int, str] | None = None,
    title: str = "weights (post × pre)",
    *,
    post_sign: Any | None = None,
    post_groups: Any | None = None,
) -> Figure:
    """Heatmap of a ``(post, pre)`` weight matrix, E/I types and areas marked.

    Rows are postsynaptic and columns presynaptic neurons, like ``nn.Linear.weight``.
    Colours are a diverging map centred at 0 with symmetric limits (red positive,
    blue negative).

    Args:
        weight: ``(post, pre)`` tensor or array; need not be square.
        path: if given, save a PNG there (atomically).
        sign: ``(pre,)`` +1 (E) / -1 (I) cell type of each presynaptic neuron. Drawn
            as a red (E) / blue (I) strip above the matrix, in any neuron order;
            when the types form a few contiguous blocks, the blocks are labelled
            "E"/"I" and their boundaries drawn as dashed lines.
        groups: ``(pre,)`` integer area label of each presynaptic neuron; area
            boundaries are drawn as solid lines and the areas named on the axis.
        group_names: names of the areas, indexed by label (sequence or mapping);
            default ``"area <label>"``.
        title: axes title.
        post_sign: ``(post,)`` cell types of the rows. For a square matrix the rows
            are taken to be the same neurons as the columns, so it defaults to
            ``sign``; give it for e.g. input weights ``(n_rec, n_in)``.
        post_groups: ``(post,)`` area labels of the rows; defaults to ``groups`` for
            a square matrix.

    Returns:
        The :class:`~matplotlib.figure.Figure`.

    Raises:
        ValueError: if ``weight`` is not 2-D or a ``sign``/``groups`` vector does not
            match the matrix.

    Example:
        >>> import torch
        >>> w = torch.randn(8, 8).abs() * torch.tensor([1.0] * 6 + [-1.0] * 2)
        >>> fig = plot_weight_matrix(w, sign=[1] * 6 + [-1] * 2)
        >>> [im.get_gid() for ax in fig.axes for im in ax.images if im.get_gid()]
        ['weights', 'ei-strip-pre', 'ei-strip-post']
    """
    w = _to_numpy(weight, "weight")
    if w.ndim != 2:
        raise ValueError(f"weight must be a 2-D (post, pre) matrix, got shape {w.shape}")
    n_post, n_pre = w.shape
    shape = tuple(w.shape)
    square = n_post == n_pre

    pre_s = None if sign is None else _check_sign(sign, n_pre, "sign", "presynaptic", shape)
    if post_sign is None and square:
        post_sign = pre_s
    post_s = (
        None
        if post_sign is None
        else _check_sign(post_sign, n_post, "post_sign", "postsynaptic", shape)
    )
    pre_g = None if groups is None else _check_groups(groups, n_pre, "groups", "presynaptic", shape)
    if post_groups is None and square:
        post_groups = pre_g
    post_g = (
        None
        if post_groups is None
        else _check_groups(post_groups, n_post, "post_groups", "postsynaptic", shape)
    )

    # Figure size follows the matrix's aspect ratio, within limits.
    big = 5.5
    aspect = n_post / max(n_pre, 1)
    width = big if aspect <= 1 else max(big / aspect, 2.2)
    height = big * aspect if aspect <= 1 else big
    height = max(height, 1.6)
    fig = _new_figure((width + 1.2, height + 0.6))
    ax = fig.add_subplot()
    finite = np.abs(w[np.isfinite(w)])
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    # Nearest-neighbour shows each synapse; large matrices are smoothed, not aliased.
    im = ax.imshow(
        w,
        cmap="RdBu_r",
        vmin=-vmax,
        vmax=vmax,
        aspect="auto",
        interpolation="nearest" if max(shape) <= 400 else "antialiased",
    )
    im.set_gid("weights")
    ax.set_xlabel("presynaptic")
    ax.set_ylabel("postsynaptic")

    divider = make_axes_locatable(ax)
    cax = divider.append_axes("right", size=0.15, pad=0.1)
    fig.colorbar(im, cax=cax, label="weight")
    label_ax_y = ax
    top_ax = ax
    if pre_s is not None:
        top_ax = _ei_strip(ax, divider, pre_s, "pre")
    if post_s is not None:
        label_ax_y = _ei_strip(ax, divider, post_s, "post")
        ax.tick_params(labelleft=False)
        ax.set_ylabel("")
        label_ax_y.set_ylabel("postsynaptic")

    for g, axis in ((pre_g, "x"), (post_g, "y")):
        if g is None:
            continue
        runs = _runs(g)
        for a, _, _ in runs[1:]:
            line = ax.axvline if axis == "x" else ax.axhline
            line(a - 0.5, color="black", lw=1.3)
        if len(runs) <= MAX_GROUP_BLOCKS:
            centres = [(a + b - 1) / 2 for a, b, _ in runs]
            names = [_group_name(int(v), group_names) for _, _, v in runs]
            if axis == "x":
                ax.set_xticks(centres, names)
                if len(runs) > 4 or max(len(s) for s in names) > 6:
                    ax.tick_params(axis="x", labelrotation=30)
                    for t in ax.get_xticklabels():
                        t.set_ha("right")
            else:
                ax.set_yticks(centres, names)
            (ax.xaxis if axis == "x" else ax.yaxis).set_tick_params(length=0)

    # Interleaved types: no letters in the strip, so say which colour is which.
    if pre_s is not None and len(_runs(pre_s)) > MAX_EI_BLOCKS:
        n_e = int((pre_s > 0).sum())
        top_ax.legend(
            handles=[
                Patch(color=E_COLOR, label=f"E ({n_e})"),
                Patch(color=I_COLOR, label=f"I ({pre_s.size - n_e})"),
            ],
            loc="lower right",
            bbox_to_anchor=(1.0, 1.0),
            ncol=2,
            frameon=False,
            fontsize=8,
            handlelength=1.0,
            borderaxespad=0.1,
        )
        top_ax.set_title(title, loc="left")
    else:
        top_ax.set_title(title)
    return _finish(fig, path)
