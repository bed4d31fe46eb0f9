"""``bionn compare``: train one config under several credit-assignment methods and seeds.

    bionn compare CONFIG.yaml --methods bp,fa,dfa,usf,brsf,frsf,wm,kp [--seeds 0,1]
                  [--out DIR] [--resume | --overwrite] [--quiet] [key=value ...]

Works on any ``bionn run`` config: a classification config (``data`` section; the
table reports the top-1 test error, %) or a rate-task config (the table reports the
held-out accuracy). Every method gets the same config, seed(s) and budget; only
``model.method`` changes. Each run goes through the one runner
(:class:`bionn.experiment.runner.Runner`) into ``OUT/<method>/seed<k>/``. An ``OUT``
that holds anything is refused unless ``--resume`` (a run that finished, ``final.json``,
is read back, one that was cut short resumes from its checkpoint) or ``--overwrite``
(its contents are deleted first: :func:`bionn.experiment.checkpoint.claim_output_folder`). Every (method, seed) config is validated, and the first run prepared
(data, model), before anything is trained. ``OUT`` then receives ``comparison.csv``
(one row per method: the metric's mean and sd over seeds, final alignment angles),
``comparison.md`` (the same as a Markdown table) and ``alignment.png`` (the
gradient-alignment angle, mean over layers, against the epoch or step; one line per
method, mean over seeds). The last stdout line is one JSON object with the table and
``"out"``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

from bionn._core.errors import ConfigError
from bionn.experiment.checkpoint import atomic_write_text, claim_output_folder, read_jsonl

#: the compared metric of each kind of run: (key of final.json, table label)
METRICS = {"test_error": "top-1 test error (%)", "accuracy": "held-out accuracy"}

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


def _fmt_mean_sd(mean: float | None, sd: float | None, n: int, digits: int = 2) -> str:
    """``"mean ± sd"``, or just the value when it comes from fewer than two runs (no spread)."""
    if mean is None or sd is None or n < 2:
        return _fmt(mean, digits)
    return f"{_fmt(mean, digits)} ± {_fmt(sd, digits)}"


def _n_finite(values: list[Any] | None) -> int:
    return sum(v is not None and math.isfinite(v) for v in values or [])


def _metric(rows: list[dict[str, Any]]) -> str:
    return next((m for m in METRICS if rows and f"{m}_mean" in rows[0]), "test_error")


def format_table(rows: list[dict[str, Any]]) -> str:
    """The comparison rows as a Markdown table."""
    metric = _metric(rows)
    digits = 2 if metric == "test_error" else 3
    lines = [f"| method | {METRICS[metric]} | angle(W, B) (deg) | angle(dW, dW_bp) (deg) | runs |",
             "|---|---|---|---|---|"]
    for r in rows:
        n = _n_finite(r[f"{metric}s"]) if f"{metric}s" in r else r["n_seeds"]
        lines.append(
            f"| {r['method']} | {_fmt_mean_sd(r[f'{metric}_mean'], r[f'{metric}_sd'], n, digits)} "
            f"| {_fmt(r['weight_angle_mean'], 1)} | {_fmt(r['grad_angle_mean'], 1)} "
            f"| {r['n_seeds']} |")
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    metric = _metric(rows)
    keys = ["method", f"{metric}_mean", f"{metric}_sd", "weight_angle_mean", "grad_angle_mean",
            "n_seeds"]
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r[k] is None else r[k]) for k in keys})
    return buf.getvalue()


def _curves(folders: dict[str, list[Path]], x: str) -> dict[str, tuple[list[int], list[float]]]:
    curves = {}
    for method, runs in folders.items():
        per_x: dict[int, list[float]] = {}
        for f in runs:
            for rec in read_jsonl(f / "metrics.jsonl"):
                if rec.get("grad_angle") is not None:
                    per_x.setdefault(int(rec[x]), []).append(float(rec["grad_angle"]))
        if per_x:
            xs = sorted(per_x)
            curves[method] = (xs, [sum(per_x[v]) / len(per_x[v]) for v in xs])
    return curves


def _figure(curves: dict[str, tuple[list[int], list[float]]], path: Path, title: str,
            x: str = "epoch") -> None:
    from matplotlib.ticker import MaxNLocator

    from bionn.viz._common import _new_figure, save_figure

    fig = _new_figure((5.5, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for i, (method, (xs, ys)) in enumerate(curves.items()):
        ax.plot(xs, ys, "o-", ms=3, color=f"C{i % 10}", label=method)
    ax.axhline(90.0, color="0.6", lw=0.8, ls="--")
    ax.set_xlabel(x)
    ax.set_ylabel("angle(dW, dW_bp), mean over layers (deg)")
    ax.set_title(title)
    if curves:
        ax.legend(fontsize=8)
    save_figure(fig, path)


def compare(config: str | Path | None, methods: list[str], seeds: list[int], out: str | Path,
            overrides: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train ``config`` with each method and seed; write the comparison into ``out``.

    Returns ``{"table": rows, "metric": key, "out": str}``; each row has ``method``,
    ``<metric>_mean``/``_sd`` over seeds (``test_error``, top-1 %, for a classification
    config; ``accuracy``, held-out, for a rate-task config), ``weight_angle_mean`` (angle
    between W and B at the end, mean over layers and seeds; ``None`` for DFA and
    backprop through time) and ``grad_angle_mean`` (angle between this method's dW and
    backprop's).
    """
    from bionn.experiment.classify import ClassifyConfig
    from bionn.experiment.runner import Runner, load_run_config

    overrides = list(overrides or [])
    cfgs = {(m, s): load_run_config(config, [*overrides, f"model.method={m}",
                                             f"experiment.seed={s}"])
            for m in methods for s in seeds}
    first = cfgs[(methods[0], seeds[0])]
    classify = isinstance(first, ClassifyConfig)
    metric, x = ("test_error", "epoch") if classify else ("accuracy", "step")
    root = Path(out)

    def runner(key: tuple[str, int]) -> Runner | None:
        folder = root / key[0] / f"seed{key[1]}"
        if (folder / "final.json").is_file():
            return None
        return Runner(cfgs[key], folder, resume=(folder / "checkpoint.pt").is_file(),
                      progress=progress)

    prepared = runner((methods[0], seeds[0]))  # data and model build before any folder
    root.mkdir(parents=True, exist_ok=True)
    summaries: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    folders: dict[str, list[Path]] = {m: [] for m in methods}
    for key in cfgs:
        folder = root / key[0] / f"seed{key[1]}"
        run = prepared if key == (methods[0], seeds[0]) else runner(key)
        summary = run.fit() if run is not None else json.loads((folder / "final.json").read_text())
        summaries[key[0]].append(summary)
        folders[key[0]].append(folder)
    rows = []
    for m in methods:
        values = [r.get(metric) for r in summaries[m]]
        mean, sd = _mean_sd(values)
        rows.append({"method": m, f"{metric}_mean": mean, f"{metric}_sd": sd,
                     "weight_angle_mean": _mean_sd([r.get("weight_angle") for r in summaries[m]])[0],
                     "grad_angle_mean": _mean_sd([r.get("grad_angle") for r in summaries[m]])[0],
                     "n_seeds": len(seeds), f"{metric}s": values})
    title = (f"{first.data.dataset} / {first.model.architecture}" if classify
             else f"{first.task.name} / {first.model.kind}")
    atomic_write_text(root / "comparison.csv", _csv(rows))
    command = "bionn compare " + " ".join(
        [str(config) if config else "", f"--methods {','.join(methods)}",
         f"--seeds {','.join(map(str, seeds))}", *overrides]).strip()
    atomic_write_text(root / "comparison.md",
                      f"# {title}: {len(methods)} methods x {len(seeds)} seed(s)\n\n"
                      f"Command: `{command}`\n\n" + format_table(rows))
    _figure(_curves(folders, x), root / "alignment.png", title, x)
    return {"table": rows, "metric": metric, "out": str(root)}


def cmd_compare(args: Any) -> int:
    """``bionn compare``: see the module docstring."""
    methods = parse_methods(args.methods)
    seeds = parse_seeds(args.seeds)
    if not Path(args.config).is_file():
        raise ConfigError(f"config file {args.config!r} does not exist")
    if args.resume and args.overwrite:  # refused before the configs are read
        claim_output_folder(args.out, "compare", resume=True, overwrite=True)
    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out DIR, the folder of the comparison to continue")
    from bionn.experiment.runner import load_run_config

    for m in methods:  # every config is valid before the folder is claimed (or emptied)
        for s in seeds:
            load_run_config(args.config, [*args.overrides, f"model.method={m}",
                                          f"experiment.seed={s}"])
    out = claim_output_folder(args.out, f"compare-{Path(args.config).stem}", resume=args.resume,
                              overwrite=args.overwrite)
    result = compare(args.config, methods, seeds, out, args.overrides, progress=not args.quiet)
    print(format_table(result["table"]), file=sys.stderr)
    print(f"results in {out}/ (comparison.md, comparison.csv, alignment.png)", file=sys.stderr)
    print(json.dumps(result))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``compare`` on an argparse subparsers object."""
    p = sub.add_parser("compare", help="train a config (classification or rate task) with "
                                       "several credit-assignment methods and tabulate the results")
    p.add_argument("config", help="a bionn run YAML config (classification or rate task)")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. training.epochs=5")
    p.add_argument("--methods", default="bp,fa,dfa,usf,brsf,frsf,wm,kp",
                   help="comma-separated methods (default: all)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--out", help="output folder (default runs/compare-<config>-<time>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the comparison in --out (finished runs are read back)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the contents of --out (an earlier bionn output) before running")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
