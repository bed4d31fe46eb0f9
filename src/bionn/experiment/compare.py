"""``bionn compare``: train one classification config under several credit-assignment methods.

    bionn compare CONFIG.yaml --methods bp,fa,dfa,usf,brsf,frsf,wm,kp [--seeds 0,1]
                  [--out DIR] [--quiet] [key=value ...]

Every method gets the same config, seed(s) and budget; only ``model.method``
changes. Each run goes to ``OUT/<method>/seed<k>/`` (see
:mod:`bionn.experiment.classify`). Every (method, seed) config is validated
before anything is trained. ``OUT`` then receives ``comparison.csv`` (one row per
method: top-1 test error mean and sd over seeds, final alignment angles),
``comparison.md`` (the same as a Markdown table) and ``alignment.png`` (the
gradient-alignment angle, mean over layers, against the epoch; one line per
method, mean over seeds). The last stdout line is one JSON object with the table
and ``"out"``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

from bionn.experiment.checkpoint import atomic_write_text, default_out, read_jsonl
from bionn.experiment.config import ConfigError

__all__ = ["cmd_compare", "compare", "format_table", "parse_methods", "parse_seeds"]


def parse_methods(text: str) -> list[str]:
    """``"bp,fa"`` -> ``["bp", "fa"]``; unknown or repeated names raise :class:`ConfigError`."""
    from bionn.learning import METHODS

    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise ConfigError(f"--methods: give at least one method; allowed: {','.join(METHODS)}")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ConfigError(f"--methods: unknown method(s) {bad}; allowed: {','.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise ConfigError(f"--methods: a method is repeated in {text!r}")
    return methods


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: expected distinct comma-separated integers, got {text!r}")
    return seeds


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, sd


def _fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """The comparison rows as a Markdown table."""
    lines = ["| method | top-1 test error (%) | angle(W, B) (deg) | angle(dW, dW_bp) (deg) | runs |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {_fmt(r['test_error_mean'])} ± {_fmt(r['test_error_sd'])} "
            f"| {_fmt(r['weight_angle_mean'], 1)} | {_fmt(r['grad_angle_mean'], 1)} "
            f"| {r['n_seeds']} |")
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    keys = ["method", "test_error_mean", "test_error_sd", "weight_angle_mean", "grad_angle_mean",
            "n_seeds"]
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r[k] is None else r[k]) for k in keys})
    return buf.getvalue()


def _curves(folders: dict[str, list[Path]]) -> dict[str, tuple[list[int], list[float]]]:
    curves = {}
    for method, runs in folders.items():
        per_epoch: dict[int, list[float]] = {}
        for f in runs:
            for rec in read_jsonl(f / "metrics.jsonl"):
                if rec.get("grad_angle") is not None:
                    per_epoch.setdefault(int(rec["epoch"]), []).append(float(rec["grad_angle"]))
        if per_epoch:
            xs = sorted(per_epoch)
            curves[method] = (xs, [sum(per_epoch[x]) / len(per_epoch[x]) for x in xs])
    return curves


def _figure(curves: dict[str, tuple[list[int], list[float]]], path: Path, title: str) -> None:
    from bionn.viz._common import _new_figure, save_figure

    fig = _new_figure((5.5, 3.6), layout="constrained")
    ax = fig.subplots()
    for i, (method, (xs, ys)) in enumerate(curves.items()):
        ax.plot(xs, ys, "o-", ms=3, color=f"C{i % 10}", label=method)
    ax.axhline(90.0, color="0.6", lw=0.8, ls="--")
    ax.set_xlabel("epoch")
    ax.set_ylabel("angle(dW, dW_bp), mean over layers (deg)")
    ax.set_title(title)
    if curves:
        ax.legend(fontsize=8)
    save_figure(fig, path)


def compare(config: str | Path | None, methods: list[str], seeds: list[int], out: str | Path,
            overrides: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train ``config`` with each method and seed; write the comparison into ``out``.

    Returns ``{"table": rows, "out": str}``; each row has ``method``,
    ``test_error_mean``/``_sd`` (top-1, %, over seeds), ``weight_angle_mean``
    (angle between W and B at the end, mean over layers and seeds; ``None`` for DFA)
    and ``grad_angle_mean`` (angle between this method's dW and backprop's).
    """
    from bionn.experiment.classify import (
        load_classify_config,
        prepare_classifier,
        train_classifier,
    )

    overrides = list(overrides or [])
    cfgs = {(m, s): load_classify_config(config, [*overrides, f"model.method={m}",
                                                  f"experiment.seed={s}"])
            for m in methods for s in seeds}
    prepare_classifier(cfgs[(methods[0], seeds[0])])  # data and model build before any folder
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    summaries: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    folders: dict[str, list[Path]] = {m: [] for m in methods}
    for (m, s), cfg in cfgs.items():
        folder = root / m / f"seed{s}"
        summaries[m].append(train_classifier(cfg, folder, progress=progress))
        folders[m].append(folder)
    rows = []
    for m in methods:
        err = _mean_sd([r["test_error"] for r in summaries[m]])
        wa = _mean_sd([r["weight_angle"] for r in summaries[m]])[0]
        ga = _mean_sd([r["grad_angle"] for r in summaries[m]])[0]
        rows.append({"method": m, "test_error_mean": err[0], "test_error_sd": err[1],
                     "weight_angle_mean": wa, "grad_angle_mean": ga, "n_seeds": len(seeds),
                     "test_errors": [r["test_error"] for r in summaries[m]]})
    first = cfgs[(methods[0], seeds[0])]
    title = f"{first.data.dataset} / {first.model.architecture}"
    atomic_write_text(root / "comparison.csv", _csv(rows))
    command = "bionn compare " + " ".join(
        [str(config) if config else "", f"--methods {','.join(methods)}",
         f"--seeds {','.join(map(str, seeds))}", *overrides]).strip()
    atomic_write_text(root / "comparison.md",
                      f"# {title}: {len(methods)} methods x {len(seeds)} seed(s)\n\n"
                      f"Command: `{command}`\n\n" + format_table(rows))
    _figure(_curves(folders), root / "alignment.png", title)
    return {"table": rows, "out": str(root)}



def cmd_compare(args: Any) -> int:
    """``bionn compare``: see the module docstring."""
    from bionn.experiment.classify import is_classify_config

    methods = parse_methods(args.methods)
    seeds = parse_seeds(args.seeds)
    if not Path(args.config).is_file():
        raise ConfigError(f"config file {args.config!r} does not exist")
    if not is_classify_config(args.config):
        raise ConfigError(f"config {args.config!r} has no top-level 'data' section; compare "
                          f"needs a classification config (e.g. configs/ca_digits_mlp.yaml)")
    out = Path(args.out) if args.out else default_out(f"compare-{Path(args.config).stem}")
    result = compare(args.config, methods, seeds, out, args.overrides, progress=not args.quiet)
    print(format_table(result["table"]), file=sys.stderr)
    print(f"results in {out}/ (comparison.md, comparison.csv, alignment.png)", file=sys.stderr)
    print(json.dumps(result))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``compare`` on an argparse subparsers object."""
    p = sub.add_parser("compare", help="train a classification config with several "
                                       "credit-assignment methods and tabulate the results")
    p.add_argument("config", help="classification YAML config (with a 'data' section)")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. training.epochs=5")
    p.add_argument("--methods", default="bp,fa,dfa,usf,brsf,frsf,wm,kp",
                   help="comma-separated methods (default: all)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--out", help="output folder (default runs/compare-<config>-<time>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
