"""``bionn sweep``: a grid or random search over config keys and seeds, run on Ray Tune.

    bionn sweep SWEEP.yaml [--out DIR] [--resume | --overwrite] [--address auto|ray://HOST:PORT]
                [--quiet]

A sweep file names a ``bionn run`` config (rate or classification) and what to vary::

    base: configs/ei_ctrnn_pdm.yaml
    overrides: [training.steps=200]          # fixed for every trial
    grid: {training.optimizer.lr: [0.001, 0.003]}   # every combination ...
    random: {model.n_hidden: {choice: [32, 64]},
             training.optimizer.weight_decay: {loguniform: [1e-6, 1e-3]}}
    samples: 4                               # ... times 4 random draws (sampler_seed: 0)
    seeds: [0, 1]                            # ... times each seed
    metric: accuracy                         # from each run's final.json; mode: max | min
    cpus_per_trial: 1

Every trial is validated with the runner's own schema before anything runs (the base
config has the common shape: the trial's seed is ``experiment.seed``). Each trial is one
ordinary run of the one runner in ``OUT/runs/<trial id>/``; the id is a hash of its
whole resolved config (base file, fixed and swept overrides, seed: a trial whose config
changed gets a fresh folder and runs again, never reporting a stale result), so a sweep that
is interrupted and started again with ``--resume`` skips the trials whose ``final.json`` exists
(a trial cut short resumes from its checkpoint).
``OUT/sweep.lock`` (pid, host) keeps a second sweep off the folder (exit 2); a failed trial
makes the sweep exit 1 naming it and its error; an unknown ``metric`` is refused. Trials run as
Ray Tune trials (``ray[tune]``, the ``sweep`` extra): locally on all cores by default, or on
a cluster with ``address``. Then ``OUT``
receives ``sweep.csv`` / ``sweep.md`` (one row per trial, and the mean and sd over seeds
per configuration, best first) and ``sweep.png``. The last stdout line is one JSON object.

Example:
    >>> cfg = SweepConfig(base="configs/ei_ctrnn_pdm.yaml",
    ...                   grid={"training.optimizer.lr": [0.001, 0.01]}, seeds=[0, 1])
    >>> [(t.overrides, t.seed) for t in expand(cfg)][:2]
    [({'training.optimizer.lr': 0.001}, 0), ({'training.optimizer.lr': 0.001}, 1)]
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import logging
import math
import os
import socket
import sys
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError, model_validator

from bionn._core.errors import ConfigError, format_errors
from bionn.experiment.checkpoint import atomic_write_text, claim_output_folder
from bionn.experiment.compare import _mean_sd
from bionn.experiment.config import parse_override, read_yaml
from bionn.experiment.schema import Strict

__all__ = ["METRICS", "SweepConfig", "Trial", "cmd_sweep", "expand", "load_sweep", "plan",
           "run_trial", "sweep"]

#: the numeric keys of a run's ``final.json`` by kind of config (what ``metric`` may name):
#: the runner's own (``steps``, ``wall_s``) and the job's summary (``RateJob.summary`` for a
#: rate-task config, ``ClassifyJob.summary`` for a classification config with ``data``)
METRICS: dict[str, tuple[str, ...]] = {
    "rate": ("accuracy", "loss", "train_loss", "weight_angle", "grad_angle", "steps", "wall_s"),
    "classify": ("test_error", "test_accuracy", "val_accuracy", "train_accuracy", "train_loss",
                 "epochs", "weight_angle", "grad_angle", "steps", "wall_s"),
}


class Distribution(Strict):
    """One random-search dimension: exactly one of the four forms."""

    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None
    choice: list[Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> Distribution:
        given = [k for k in ("uniform", "loguniform", "randint", "choice") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of uniform, loguniform, randint, choice; got {given}")
        lo_hi = self.uniform or self.loguniform or self.randint
        if lo_hi is not None and not lo_hi[0] < lo_hi[1]:
            raise ValueError(f"{given[0]}: need low < high; got {list(lo_hi)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform: bounds must be > 0; got {list(self.loguniform)}")
        return self

    def draw(self, rng: np.random.Generator) -> Any:
        if self.uniform is not None:
            return float(rng.uniform(*self.uniform))
        if self.loguniform is not None:
            lo, hi = np.log(self.loguniform[0]), np.log(self.loguniform[1])
            return float(np.exp(rng.uniform(lo, hi)))
        if self.randint is not None:
            return int(rng.integers(self.randint[0], self.randint[1] + 1))
        return self.choice[int(rng.integers(len(self.choice)))]


class SweepConfig(Strict):
    """A sweep file (see the module docstring)."""

    base: str = Field(description="a bionn run config (rate or classification)")
    overrides: list[str] = Field(default_factory=list)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    random: dict[str, Distribution] = Field(default_factory=dict)
    samples: int = Field(1, ge=1, description="random draws (with `random`)")
    sampler_seed: int = 0
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    metric: str | None = Field(None, description="key of final.json (default: accuracy for "
                                                 "rate runs, test_error for classification)")
    mode: Literal["max", "min"] | None = None
    cpus_per_trial: float = Field(1.0, gt=0)
    address: str | None = Field(None, description="Ray cluster address; None: local, all cores")
    out: str | None = None

    @model_validator(mode="after")
    def _check(self) -> SweepConfig:
        for k, v in self.grid.items():
            if not v:
                raise ValueError(f"grid.{k}: give at least one value")
        both = set(self.grid) & set(self.random)
        if both:
            raise ValueError(f"keys in both grid and random: {sorted(both)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct; got {self.seeds}")
        if Path(self.base).is_dir():
            raise ValueError(f"base: {self.base!r} is a directory; give a YAML config file")
        if not Path(self.base).is_file():
            raise ValueError(f"base: config file {self.base!r} does not exist")
        return self


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: the swept values and the seed, and (once resolved by
    :func:`plan`) the fingerprint of its whole resolved config, which is then its id."""

    overrides: dict[str, Any]
    seed: int
    fingerprint: str | None = None

    @property
    def id(self) -> str:
        if self.fingerprint is not None:
            return self.fingerprint[:12]
        key = json.dumps({"o": self.overrides, "s": self.seed}, sort_keys=True, default=str)
        return hashlib.sha1(key.encode()).hexdigest()[:12]


def expand(cfg: SweepConfig) -> list[Trial]:
    """Grid combinations x random draws x seeds, in a fixed order."""
    keys = list(cfg.grid)
    combos = [dict(zip(keys, vals, strict=True))
              for vals in itertools.product(*(cfg.grid[k] for k in keys))]
    if cfg.random:
        rng = np.random.default_rng(cfg.sampler_seed)
        draws = [{k: d.draw(rng) for k, d in cfg.random.items()} for _ in range(cfg.samples)]
        combos = [{**c, **d} for c in combos for d in draws]
    return [Trial(c, s) for c in combos for s in cfg.seeds]


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """Read and validate a sweep file (``base`` relative to the working directory or the file)."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a sweep file is a mapping (base, grid, random, seeds, ...)")
    base = data.get("base")
    if isinstance(base, str) and not Path(base).is_file() and (Path(path).parent / base).is_file():
        data["base"] = str(Path(path).parent / base)
    for item in overrides or []:
        keys, value = parse_override(item)
        data[".".join(keys)] = value
    try:
        return SweepConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e, SweepConfig)) from None


def _kind(base: str) -> str:
    from bionn.experiment.classify import is_classify_config

    return "classify" if is_classify_config(base) else "rate"


def _trial_overrides(cfg: SweepConfig, trial: Trial, kind: str) -> list[str]:
    swept = [f"{k}={json.dumps(v)}" for k, v in trial.overrides.items()]
    return [*cfg.overrides, *swept, f"experiment.seed={trial.seed}"]


def _resolve_trials(cfg: SweepConfig, trials: list[Trial], kind: str) -> list[Trial]:
    """Validate every trial's config with the runner's schema; the trials with the
    fingerprint of their whole resolved config (their id)."""
    from bionn.experiment.runner import config_identity, load_run_config

    resolved = []
    for t in trials:
        try:
            config = load_run_config(cfg.base, _trial_overrides(cfg, t, kind))
        except ConfigError as e:
            raise ConfigError(f"trial {t.overrides} seed {t.seed}: {e}") from None
        # the device, threads and force flag say where a trial computes, not what
        text = json.dumps(config_identity(config, ()), sort_keys=True, default=str)
        resolved.append(Trial(t.overrides, t.seed, hashlib.sha1(text.encode()).hexdigest()))
    return resolved


def _pending(cfg: SweepConfig, trials: list[Trial], kind: str, out: Path,
             ) -> list[tuple[Trial, list[str], Path]]:
    return [(t, _trial_overrides(cfg, t, kind), out / "runs" / t.id) for t in trials
            if not (out / "runs" / t.id / "final.json").is_file()]


def _metric(cfg: SweepConfig, kind: str) -> tuple[str, str]:
    """``(metric, mode)``; a metric that a run of this kind does not write is refused."""
    metric = cfg.metric or ("test_error" if kind == "classify" else "accuracy")
    if metric not in METRICS[kind]:
        what = "a classification" if kind == "classify" else "a rate-task"
        raise ConfigError(f"metric: {metric!r} is not a key of {what} run's final.json; "
                          f"choose one of {', '.join(METRICS[kind])}")
    mode = cfg.mode or ("min" if metric in ("test_error", "loss", "train_loss") else "max")
    return metric, mode


def plan(cfg: SweepConfig, out: str | Path) -> tuple[str, list[Trial], list[tuple[Trial, list[str], Path]]]:
    """Expand and validate ``cfg``: ``(kind, all trials, pending (trial, overrides, folder))``
    where ``kind`` is ``"rate"`` or ``"classify"`` and pending trials have no ``final.json``
    under ``out/runs/<id>/`` (shared by Ray sweeps and ``examples/sweep_submitit.py``)."""
    kind = _kind(cfg.base)
    trials = _resolve_trials(cfg, expand(cfg), kind)
    return kind, trials, _pending(cfg, trials, kind, Path(out))


def _lock_holder(lock: Path) -> tuple[dict[str, Any] | None, bool]:
    """``(what the lock file says, whether its owner may be alive)``; an unreadable lock
    (being written, or damaged) counts as held."""
    try:
        info = json.loads(lock.read_text())
        pid, host = int(info["pid"]), str(info["host"])
    except FileNotFoundError:
        return None, False
    except (OSError, ValueError, KeyError, TypeError):
        return None, True
    if host != socket.gethostname():
        return info, True  # another machine's process: cannot be checked from here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return info, False
    except PermissionError:
        return info, True
    return info, True


def _refuse_if_locked(lock: Path) -> None:
    info, alive = _lock_holder(lock)
    if alive:
        who = (f"pid {info['pid']} on {info['host']}" if info else "an unreadable lock")
        raise ConfigError(f"{lock} is held by another bionn sweep ({who}); wait for it to end "
                          "or use another --out (delete the lock only if no sweep is running)")


def _acquire_lock(out: Path) -> Path:
    """Create ``out/sweep.lock`` atomically with this process's pid and host; a live
    owner is refused (``ConfigError``, exit 2), a stale lock (its pid no longer alive on
    this host) is reported and replaced."""
    lock = out / "sweep.lock"
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n"
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            _refuse_if_locked(lock)
            info, _ = _lock_holder(lock)
            if info is not None:
                print(f"bionn sweep: replacing the stale lock {lock} (pid {info['pid']} on "
                      f"{info['host']} is no longer running)", file=sys.stderr)
                try:
                    lock.unlink()
                except FileNotFoundError:
                    pass
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        return lock
    raise ConfigError(f"{lock}: could not take the sweep lock (another sweep keeps taking it)")


def _release_lock(lock: Path) -> None:
    info, _ = _lock_holder(lock)
    if info is not None and info.get("pid") == os.getpid() \
            and info.get("host") == socket.gethostname():
        lock.unlink(missing_ok=True)


def _short_error(err: Any) -> str:
    """The last line of an error (a Ray error carries the worker's whole traceback)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else repr(err))[:500]


def run_trial(base: str, kind: str, overrides: list[str], out: str, threads: int) -> dict:
    """One ordinary run (what a Ray worker executes); returns its final.json."""
    import torch

    from bionn.experiment.runner import Runner, load_run_config

    torch.set_num_threads(max(1, threads))
    folder = Path(out)
    resume = (folder / "checkpoint.pt").exists()  # a trial cut short continues
    summary = Runner(load_run_config(base, overrides), folder, resume=resume,
                     progress=False).fit()
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str)) or v is None}


def _run_on_ray(cfg: SweepConfig, pending: list[tuple[Trial, list[str], Path]], kind: str,
                out: Path, progress: bool) -> dict[str, str]:
    """Run the pending trials as one Ray Tune grid; ``{trial id: error}`` of those that
    failed. Ray's console output goes to stderr (stdout keeps the final JSON line), and
    nowhere when not ``progress`` (``--quiet``)."""
    try:
        import ray
        from ray import tune
    except ImportError as err:
        raise ConfigError("bionn sweep runs on Ray Tune: pip install 'bionn[sweep]' "
                          "(ray[tune])") from err
    jobs = {t.id: (ov, str(folder)) for t, ov, folder in pending}
    threads = max(1, int(cfg.cpus_per_trial))
    base = str(Path(cfg.base).resolve())

    def trainable(config: dict) -> dict:
        overrides, folder = jobs[config["trial"]]
        return run_trial(base, kind, overrides, folder, threads)

    init = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if cfg.address:
        ray.init(address=cfg.address, **init)
    elif not ray.is_initialized():
        ray.init(**init)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cfg.cpus_per_trial}),
        param_space={"trial": tune.grid_search(list(jobs))},
        tune_config=tune.TuneConfig(num_samples=1),
        run_config=tune.RunConfig(storage_path=str((out / "ray").resolve()), name="tune",
                                  verbose=1 if progress else 0),
    )
    loggers = [logging.getLogger(name) for name in ("ray", "ray.tune", "ray.train")]
    levels = [lg.level for lg in loggers]
    with open(os.devnull, "w") as null, redirect_stdout(sys.stderr if progress else null):
        try:
            if not progress:
                for lg in loggers:
                    lg.setLevel(logging.CRITICAL)
            results = tuner.fit()
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
    return {r.config["trial"]: _short_error(r.error) for r in results
            if r.error is not None and r.config and "trial" in r.config}


def _tables(rows: list[dict[str, Any]], keys: list[str], metric: str, mode: str,
            ) -> tuple[str, str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(json.dumps([r[k] for k in keys], default=str), []).append(r)
    agg = []
    for rs in groups.values():
        m, sd = _mean_sd([r[metric] for r in rs if r["status"] == "finished"])
        agg.append({**{k: rs[0][k] for k in keys}, f"{metric}_mean": m, f"{metric}_sd": sd,
                    "n_seeds": sum(r["status"] == "finished" for r in rs)})
    sign = -1 if mode == "max" else 1
    agg.sort(key=lambda a: math.inf if a[f"{metric}_mean"] is None
             else sign * a[f"{metric}_mean"])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["trial", *keys, "seed", metric, "status", "error"])
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in w.fieldnames})

    def fmt(v: Any) -> str:
        return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    cols = [*keys, f"{metric}_mean", f"{metric}_sd", "n_seeds"]
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    # one finished seed has no spread: its sd cell stays empty rather than "0"
    md += ["| " + " | ".join("" if c == f"{metric}_sd" and a["n_seeds"] < 2 else fmt(a[c])
                             for c in cols) + " |" for a in agg]
    md += ["", "| trial | " + " | ".join(keys) + f" | seed | {metric} | status |",
           "|" + "---|" * (len(keys) + 4)]
    md += [f"| {r['trial']} | " + " | ".join(fmt(r[k]) for k in keys)
           + f" | {r['seed']} | {fmt(r[metric])} | {r['status']} |" for r in rows]
    return buf.getvalue(), "\n".join(md) + "\n", agg


def _log_spaced(values: list[float]) -> bool:
    """Whether sorted positive ``values`` look like a log grid: three or more spaced
    more evenly in log than in linear (e.g. 1e-4, 1e-3, 1e-2 or 1, 3, 10, 30), or a
    range of at least 20x."""
    v = np.sort(np.asarray(values, dtype=float))
    if v.size < 2 or v[0] <= 0:
        return False
    if v[-1] / v[0] >= 20:
        return True
    if v.size < 3:
        return False

    def unevenness(d: np.ndarray) -> float:
        return float(d.std() / d.mean()) if d.mean() > 0 else math.inf

    return unevenness(np.diff(np.log(v))) < unevenness(np.diff(v))


def _figure(rows: list[dict[str, Any]], keys: list[str], metric: str, path: Path,
            log_keys: set[str] | None = None) -> None:
    """One panel per swept key: the metric (mean ± sd over the runs of each value; grey
    points the runs) against the value, on a log axis for ``log_keys`` (``loguniform``
    draws) and for values that look like a log grid (:func:`_log_spaced`)."""
    from bionn.viz._common import _new_figure, save_figure

    done = [r for r in rows if r["status"] == "finished" and r[metric] is not None]
    numeric = [k for k in keys if all(isinstance(r[k], (int, float)) for r in done)] or keys
    fig = _new_figure((4.2 * max(1, len(numeric)), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(1, len(numeric))))
    for ax, key in zip(axes, numeric or ["(none)"], strict=False):
        vals = sorted({r[key] for r in done} if key in keys else {0}, key=str)
        xs = list(range(len(vals))) if key not in numeric or not vals or not all(
            isinstance(v, (int, float)) for v in vals) else vals
        means, sds = [], []
        for v in vals:
            m, sd = _mean_sd([r[metric] for r in done if key not in keys or r[key] == v])
            means.append(m)
            sds.append(sd or 0.0)
            pts = [r[metric] for r in done if key not in keys or r[key] == v]
            x = xs[vals.index(v)]
            ax.plot([x] * len(pts), pts, "o", color="0.7", ms=3)
        ax.errorbar(xs, means, yerr=sds, fmt="o-", color="C0", capsize=3)
        pos = [x for x in xs if isinstance(x, (int, float)) and x > 0]
        if xs is vals and len(pos) == len(xs) and (
                (key in (log_keys or ()) and len(pos) > 1) or _log_spaced(pos)):
            ax.set_xscale("log")
            if len(pos) <= 8:  # label the values themselves
                ax.set_xticks(pos, [f"{v:g}" for v in pos])
                ax.minorticks_off()
        if xs is not vals:
            ax.set_xticks(xs, [str(v) for v in vals])
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        several = any(sum(1 for r in done if key not in keys or r[key] == v) > 1 for v in vals)
        ax.set_title(f"{metric} (mean ± sd; grey: runs)" if several else metric, fontsize=9)
    save_figure(fig, path)


def _sweep_locked(cfg: SweepConfig, out: Path, kind: str, trials: list[Trial], metric: str,
                  mode: str, progress: bool) -> dict[str, Any]:
    """The sweep once ``out/sweep.lock`` is ours: run what is pending, tabulate."""
    pending = _pending(cfg, trials, kind, out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sweep.json", json.dumps(
        {"sweep": cfg.model_dump(mode="json"),
         "trials": [{"id": t.id, "overrides": t.overrides, "seed": t.seed} for t in trials]},
        indent=1) + "\n")
    skipped = len(trials) - len(pending)
    if progress:
        print(f"bionn sweep: {len(trials)} trials ({skipped} already finished, "
              f"{len(pending)} to run)", file=sys.stderr)
    errors = _run_on_ray(cfg, pending, kind, out, progress) if pending else {}
    keys = sorted({k for t in trials for k in t.overrides})
    rows = []
    for t in trials:
        final = out / "runs" / t.id / "final.json"
        try:
            summary = json.loads(final.read_text()) if final.is_file() else {}
        except (OSError, ValueError) as e:
            summary, errors[t.id] = {}, f"unreadable final.json: {e}"
        error = errors.get(t.id) or (None if summary else "no final.json was written")
        if not error and summary.get("status", "finished") != "finished":
            error = f"the run ended {summary['status']!r} (see its final.json)"
        rows.append({"trial": t.id, **t.overrides, "seed": t.seed,
                     metric: None if error else summary.get(metric),
                     "status": "failed" if error else "finished", "error": error})
    csv_text, md, agg = _tables(rows, keys, metric, mode)
    atomic_write_text(out / "sweep.csv", csv_text)
    atomic_write_text(out / "sweep.md", md)
    if any(r["status"] == "finished" for r in rows):
        _figure(rows, keys, metric, out / "sweep.png",
                {k for k, d in cfg.random.items() if d.loguniform is not None})
    failed = [{"trial": r["trial"], "overrides": t.overrides, "seed": t.seed, "error": r["error"]}
              for r, t in zip(rows, trials, strict=True) if r["status"] == "failed"]
    return {"out": str(out), "n_trials": len(trials), "n_finished": len(trials) - len(failed),
            "n_failed": len(failed), "n_skipped": skipped, "metric": metric, "mode": mode,
            "best": agg[0] if agg and agg[0][f"{metric}_mean"] is not None else None,
            "failed": failed}


def sweep(cfg: SweepConfig, out: str | Path | None = None, progress: bool = True,
          *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Validate, run what is not finished (on Ray) and tabulate; returns the summary.

    Refused (``ConfigError``, exit 2) before anything is written: a trial whose config the
    runner's schema rejects, a ``metric`` that the runs' ``final.json`` does not have, and
    an ``out`` whose ``sweep.lock`` is held by a live sweep."""
    kind = _kind(cfg.base)
    trials = _resolve_trials(cfg, expand(cfg), kind)
    metric, mode = _metric(cfg, kind)
    if out or cfg.out:  # before anything in the folder is touched
        _refuse_if_locked(Path(out or cfg.out) / "sweep.lock")
    out = claim_output_folder(out or cfg.out, "sweep", resume=resume, overwrite=overwrite)
    out = Path(os.path.abspath(out))  # Ray's workers run in another working directory
    out.mkdir(parents=True, exist_ok=True)
    lock = _acquire_lock(out)
    try:
        return _sweep_locked(cfg, out, kind, trials, metric, mode, progress)
    finally:
        _release_lock(lock)


def cmd_sweep(args: Any) -> int:
    """``bionn sweep``: see the module docstring."""
    cfg = load_sweep(args.sweep, getattr(args, "overrides", []))
    if args.address:
        cfg = cfg.model_copy(update={"address": args.address})
    if getattr(args, "settings", None):  # --device, --force: every trial's experiment section
        cfg = cfg.model_copy(update={"overrides": [*cfg.overrides, *args.settings]})
    result = sweep(cfg, args.out, progress=not args.quiet, resume=args.resume,
                   overwrite=args.overwrite)
    print(f"results in {result['out']}/ (sweep.md, sweep.csv, sweep.png)", file=sys.stderr)
    for f in result["failed"]:
        print(f"bionn sweep: trial {f['trial']} ({f['overrides']}, seed {f['seed']}) failed: "
              f"{f['error']}", file=sys.stderr)
    if result["failed"]:
        print(f"bionn sweep: {result['n_failed']} of {result['n_trials']} trials failed; "
              "run the sweep again with --resume to retry them", file=sys.stderr)
    print(json.dumps(result, default=str))
    return 1 if result["failed"] else 0


def add_parser(sub: Any) -> None:
    """Register ``sweep`` on an argparse subparsers object."""
    p = sub.add_parser("sweep", help="grid or random search over config keys and seeds on "
                                     "Ray Tune, with a results table")
    p.add_argument("sweep", help="sweep YAML file (base, grid / random, seeds, metric)")
    p.add_argument("overrides", nargs="*", help="top-level sweep keys, e.g. samples=8")
    p.add_argument("--out", help="output folder (default: the file's `out` or runs/sweep-<time>)")
    p.add_argument("--address", help="Ray cluster address (default: a local Ray on all cores)")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep in --out (finished trials are skipped)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the contents of --out (an earlier bionn output) before running")
    p.add_argument("--quiet", action="store_true", help="less output")
