"""Training curves from logged metric records (a list of dicts or a JSONL file)."""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ._common import PathLike, _finish, _new_figure

__all__ = ["load_records", "plot_alignment", "plot_training_curve"]

EVAL_PREFIX = "eval_"


def load_records(path: PathLike) -> list[dict[str, Any]]:
    """Read a JSONL file of metric records (one JSON object per line).

    Blank lines are skipped; a line that is not a JSON object raises ``ValueError``
    naming the file and line number.
    """
    path = Path(path)
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(
                    f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}"
                )
            records.append(rec)
    return records


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        if hasattr(v, "item") and getattr(v, "ndim", None) == 0:  # 0-d tensor / array
            return _number(v.item())
        return None
    return float(v)


def _series(records: Sequence[Mapping[str, Any]], key: str, x: str = "step",
            ) -> tuple[np.ndarray, np.ndarray]:
    """``(xs, values)`` of ``key`` over the records that have a numeric value, sorted by
    ``x`` (the record's position where it lacks ``x``)."""
    steps, values = [], []
    for i, rec in enumerate(records):
        v = _number(rec.get(key))
        if v is None:
            continue
        s = _number(rec.get(x))
        steps.append(i if s is None else s)
        values.append(v)
    order = np.argsort(np.asarray(steps, dtype=float), kind="stable")
    return np.asarray(steps, dtype=float)[order], np.asarray(values, dtype=float)[order]


def plot_training_curve(
    records: Iterable[Mapping[str, Any]] | PathLike,
    path: PathLike | None = None,
    keys: Sequence[str] | str = ("loss", "accuracy"),
    x: str | None = None,
) -> Figure:
    """Plot metrics against the training step (or epoch), one panel per metric.

    Args:
        records: one dict per logged step, each with ``"step"`` and metric values,
            or the path to a JSONL file of such dicts. Records may lack some keys
            (evaluation metrics are logged only every few steps).
        path: if given, save a PNG there (atomically).
        keys: metrics to plot. For each key, the training series ``key`` is drawn
            as a line and the evaluation series ``"eval_" + key`` as markers in
            the same panel. Keys absent from every record are skipped. Loss panels
            use a log scale when every value is positive.
        x: the abscissa key, ``"step"`` or ``"epoch"``; default ``"epoch"`` when
            every record has one (a classification run logs once per epoch), else
            ``"step"``. Its ticks are integers.

    Returns:
        The :class:`~matplotlib.figure.Figure`.

    Raises:
        ValueError: if there are no records, or none of ``keys`` was logged.

    Example:
        >>> recs = [{"step": s, "loss": 1 / (s + 1), "accuracy": s / 100} for s in range(100)]
        >>> recs += [{"step": s, "eval_accuracy": s / 110} for s in range(0, 100, 20)]
        >>> fig = plot_training_curve(recs)
        >>> len(fig.axes)
        2
    """
    source = ""
    if isinstance(records, (str, Path)) or hasattr(records, "__fspath__"):
        source = f" in {records}"
        records = load_records(records)  # type: ignore[arg-type]
    else:
        records = list(records)  # type: ignore[arg-type]
    if not records:
        raise ValueError(f"no training records{source}: nothing to plot")
    if isinstance(keys, str):
        keys = (keys,)
    if x is None:
        x = "epoch" if all(_number(r.get("epoch")) is not None for r in records) else "step"

    panels: list[tuple[str, tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = []
    for key in keys:
        train = _series(records, key, x)
        evalk = _series(records, EVAL_PREFIX + key, x) if not key.startswith(EVAL_PREFIX) else None
        if evalk is None:
            evalk = (np.empty(0), np.empty(0))
        if train[0].size or evalk[0].size:
            panels.append((key, train, evalk))
    if not panels:
        logged = sorted(
            {k for r in records for k, v in r.items() if k not in ("step", x) and _number(v) is not None}
        )
        raise ValueError(
            f"none of the keys {list(keys)} (nor their '{EVAL_PREFIX}' versions) was logged{source}; "
            f"numeric keys present: {logged}"
        )

    ncols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    fig = _new_figure((4.2 * ncols, 3.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(panels) :]:
        ax.set_visible(False)

    for ax, (key, (xs, ys), (ex, ey)) in zip(axes, panels, strict=False):
        is_eval_key = key.startswith(EVAL_PREFIX)
        if xs.size:
            if is_eval_key:
                ax.plot(xs, ys, "o-", color="C1", ms=4, lw=0.8, label=key)
            else:
                ax.plot(
                    xs, ys, color="C0", lw=1.2, marker="o" if xs.size < 2 else None, label="train"
                )
        if ex.size:
            ax.plot(ex, ey, "o", color="C1", ms=5, mec="white", mew=0.6, label="eval", zorder=3)
            if ex.size > 1:
                ax.plot(ex, ey, color="C1", lw=0.6, alpha=0.6, zorder=2)
        vals = np.concatenate([ys, ey])
        finite = vals[np.isfinite(vals)]
        if "loss" in key and finite.size and (finite > 0).all():
            ax.set_yscale("log")
        elif "acc" in key and finite.size and finite.min() >= 0 and finite.max() <= 1:
            ax.set_ylim(-0.03, 1.03)
        ax.set_title(key)
        ax.set_xlabel(x)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3, lw=0.5)
        if xs.size and ex.size:
            ax.legend(frameon=False, fontsize=8)
    return _finish(fig, path)


def plot_alignment(
    records: Iterable[Mapping[str, Any]] | PathLike,
    path: PathLike | None = None,
    x: str = "step",
    title: str = "",
) -> Figure:
    """Alignment angles over training: ``weight_angle/<layer>`` (angle between ``W``
    and its feedback ``B``) and ``grad_angle/<layer>`` (this method's ``dW`` against
    backprop's), one line per layer, with 90 degrees (no alignment) dashed.

    Args:
        records: dicts with ``x`` and the angle keys (as logged by ``bionn run``), or a
            JSONL path.
        path: if given, save a PNG there (atomically).
        x: the abscissa key (``"step"`` or ``"epoch"``).
        title: appended to the panel titles (e.g. the method).

    Raises:
        ValueError: if no record has an angle.

    Example:
        >>> recs = [{"epoch": e, "weight_angle/fc1": 90 - 5 * e, "grad_angle/fc1": 60 - e}
        ...         for e in range(5)]
        >>> len(plot_alignment(recs, x="epoch").axes)
        2
    """
    if isinstance(records, (str, Path)) or hasattr(records, "__fspath__"):
        records = load_records(records)  # type: ignore[arg-type]
    records = list(records)  # type: ignore[arg-type]
    kinds = (("weight_angle", "angle(W, B)"), ("grad_angle", "angle(dW, dW_backprop)"))
    layers = sorted({k.split("/", 1)[1] for r in records for k in r
                     if k.startswith(tuple(f"{kind}/" for kind, _ in kinds))})
    if not layers:
        raise ValueError("no weight_angle/<layer> or grad_angle/<layer> in the records")
    fig = _new_figure((9.0, 3.4), layout="constrained")
    for ax, (kind, label) in zip(fig.subplots(1, 2), kinds, strict=True):
        for i, layer in enumerate(layers):
            xs, ys = _series(records, f"{kind}/{layer}", x)
            if xs.size:
                ax.plot(xs, ys, "o-", ms=3, color=f"C{i % 10}", label=layer)
        ax.axhline(90.0, color="0.6", lw=0.8, ls="--")
        ax.set_xlabel(x)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("degrees")
        ax.set_title(f"{label} [{title}]" if title else label)
        if len(ax.lines) > 1:
            ax.legend(fontsize=7, title="layer", title_fontsize=7)
    return _finish(fig, path)
