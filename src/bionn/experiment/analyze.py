"""``bionn analyze RUN_DIR [--out DIR]``: the analyses that apply to a finished task run.

For a run on a cognitive task (rate or spiking model) it loads the run
(:func:`bionn.load_run`), draws held-out trials from its task and writes into ``--out``
(default ``RUN_DIR/analysis``):

* ``figures/pca_trajectories.png``: condition-averaged trajectories in the top principal
  components (conditions: the task's signed ``coherence`` where it has one, else the trial's
  correct response), with the variance explained per component;
* ``figures/fixed_points.png`` (rate models): fixed and slow points among the trajectories
  (:func:`bionn.analysis.find_fixed_points`, with a progress bar), under the *analysis
  input*: the trial-averaged input at the step where it is largest (the stimulus period of
  a decision task, zero for the flip-flop);
* ``figures/psychometric.png`` (two-choice tasks that record their evidence);
* ``analysis.json``: the summary, also the last line of stdout.

Slow modes: at each point the continuous-time modes whose time constant ``1 / |lambda_ct|``
exceeds ten times the longest unit time constant; ``slow_modes`` is their median count over
the points. Spiking runs get the trajectories and psychometric curve (fixed points need a
smooth map). A classification run has nothing here to analyse and is refused.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

from bionn._core.errors import ConfigError
from bionn._core.io import atomic_write_text

__all__ = ["analyze_run", "cmd_analyze"]

#: points with q up to this are kept as slow points; up to FIXED_Q they count as fixed points
SLOW_Q, FIXED_Q = 1e-3, 1e-10


def _conditions(batch: Any) -> tuple[list[Any], str]:
    info = batch.info
    if "task" in info:  # a multitask run: one trajectory per task
        return [int(v) for v in info["task"]], "task"
    if "coherence" in info:
        return [round(float(c), 6) for c in info["coherence"]], "signed coherence"
    return [int(v) for v in batch.labels], "correct response"


def _analysis_input(inputs: torch.Tensor) -> torch.Tensor:
    mean = inputs.double().mean(0)  # (time, n_input)
    return mean[int(torch.argmax(mean.norm(dim=1)))]


def analyze_run(run_dir: str | Path | Any, out: str | Path, *, trials: int = 200, n_initial: int = 256,
                seed: int = 0, device: str = "cpu", progress: bool = True) -> dict[str, Any]:
    """Write the analyses of the run in ``run_dir`` (a folder, or a run :func:`bionn.load_run`
    already loaded) into ``out`` (see the module docstring) and return the summary."""
    from bionn import viz
    from bionn.analysis import find_fixed_points
    from bionn.analysis.fixed_points import _check_rate_model
    from bionn.analysis.population import pca_by_condition
    from bionn.experiment.runs import LoadedRun, load_run
    from bionn.experiment.trainer import _choices, psychometric_data

    run = run_dir if isinstance(run_dir, LoadedRun) else load_run(run_dir, device=device)
    if run.kind != "task":
        raise ConfigError(f"{str(run.path)!r} is a classification run; bionn analyze applies to runs "
                          "on a cognitive task (rate or spiking models)")
    folder = Path(out)
    figures = folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    model, task = run.model, run.task
    g = torch.Generator().manual_seed(seed)
    batch = task.sample(int(trials), g).to(device)
    with torch.no_grad():
        outputs, rates = model(batch.inputs)
    summary: dict[str, Any] = {"run": str(run.path), "task": run.config.task.name,
                               "model": type(model).__name__, "step": run.step, "trials": int(trials)}
    written: list[str] = []

    # trajectories
    conditions, by = _conditions(batch)
    rates_cpu = rates.detach().double().cpu().flatten(2)
    pca = pca_by_condition(rates_cpu, conditions, n_components=10)
    evr = [round(float(v), 4) for v in pca.explained_variance_ratio]
    summary["pca"] = {"conditions": by, "n_conditions": len(pca.conditions),
                      "variance_explained": evr[:3], "variance_explained_top3": round(sum(evr[:3]), 4)}
    fig = pca.plot(dims=2, path=figures / "pca_trajectories.png")
    written.append(str(figures / "pca_trajectories.png"))
    del fig

    # fixed and slow points (rate models)
    try:
        _check_rate_model(model)
        rate_model = True
    except TypeError:
        rate_model = False
    if rate_model:
        u = _analysis_input(batch.inputs.cpu())
        fps = find_fixed_points(model, u, sample_from=batch.inputs[:64].cpu(), n_initial=n_initial,
                                q_threshold=SLOW_Q, generator=torch.Generator().manual_seed(seed),
                                progress=progress)
        fixed = [i for i in range(len(fps)) if float(fps.q[i]) <= FIXED_Q]
        counts = {k: sum(1 for i in fixed if fps.stability[i] == k) for k in ("stable", "saddle", "unstable")}
        tau_max = float(model.time_constants_per_unit().max())
        slow = [int((fps.eigenvalues_ct[i].abs() < 1.0 / (10.0 * tau_max)).sum()) for i in range(len(fps))]
        ratios = [fps.linearization(i).slow_mode_ratio() for i in range(len(fps))]
        summary["fixed_points"] = {
            "input": [round(float(v), 4) for v in u], "fixed": counts, "slow_points": len(fps) - len(fixed),
            "slow_modes": int(sorted(slow)[len(slow) // 2]) if slow else 0,
            "slow_mode_ratio_median": round(float(sorted(ratios)[len(ratios) // 2]), 2) if ratios else None,
        }
        fps.plot(path=figures / "fixed_points.png",
                 title=f"{len(fixed)} fixed, {len(fps) - len(fixed)} slow points")
        written.append(str(figures / "fixed_points.png"))
    else:
        summary["fixed_points"] = None
        summary["fixed_points_note"] = f"not applicable to {type(model).__name__} (spiking: no smooth map)"

    # psychometric curve (two-choice tasks with recorded evidence)
    choices = _choices(task, outputs, batch)
    data = None if choices is None else psychometric_data(
        {k: v.cpu() for k, v in batch.info.items()}, choices, batch.labels.cpu(), task.output_names)
    if data is not None:
        chose = data["chose"]
        summary["psychometric"] = {"trials": int(len(chose)), "p_first": round(float(chose.float().mean()), 4)}
        viz.plot_psychometric(data.pop("evidence"), data.pop("chose"), figures / "psychometric.png", **data)
        written.append(str(figures / "psychometric.png"))
    else:
        summary["psychometric"] = None
    # units clustered by task variance (multitask runs; Yang et al. 2019)
    names = getattr(task, "task_names", None)
    summary["task_variance"] = None
    if names:
        from bionn.analysis import cluster_units, task_variance

        batches = {n: task.sample_task(k, max(2, int(trials) // len(names)), g).to(device)
                   for k, n in enumerate(names)}
        tv = task_variance(model, batches)
        try:
            clusters = cluster_units(tv, seed=seed)
        except ValueError as e:  # too few active units to cluster
            summary["task_variance"] = {"clusters": None, "note": str(e)}
        else:
            sizes = torch.bincount(torch.as_tensor(clusters.labels)).tolist()
            summary["task_variance"] = {
                "tasks": list(names), "active_units": len(clusters.units), "clusters": int(clusters.k),
                "cluster_sizes": sizes,
                "silhouette": round(float(clusters.silhouette[clusters.k]), 4)}
            clusters.plot_map(list(names), path=figures / "task_variance_map.png")
            clusters.plot(list(names), path=figures / "unit_clusters.png")
            written += [str(figures / "task_variance_map.png"), str(figures / "unit_clusters.png")]
    summary["figures"] = written
    summary["out"] = str(folder)
    atomic_write_text(folder / "analysis.json", json.dumps(summary, indent=2, default=_json) + "\n")
    return summary


def _json(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return str(x)


def cmd_analyze(args: Any) -> int:
    """``bionn analyze``: see the module docstring."""
    from bionn.experiment.checkpoint import claim_output_folder
    from bionn.experiment.runs import load_run

    run_dir = Path(args.run)
    run = load_run(run_dir, device=args.device or "cpu")  # a folder that is not a run: refused first
    if args.trials < 2:
        raise ConfigError(f"--trials must be >= 2; got {args.trials}")
    if args.initial < 1:
        raise ConfigError(f"--initial must be >= 1; got {args.initial}")
    out = claim_output_folder(args.out or run_dir / "analysis", "analysis", overwrite=args.overwrite,
                              resumable=False)
    summary = analyze_run(run, out, trials=args.trials, n_initial=args.initial, seed=args.seed,
                          device=args.device or "cpu", progress=not args.quiet)
    print(f"analysis of {run_dir} in {out}/ (analysis.json, figures/)", file=sys.stderr)
    print(json.dumps(summary, default=_json))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``analyze`` on an argparse subparsers object."""
    p = sub.add_parser("analyze", help="fixed points, trajectories and psychometric curve of a "
                                       "finished task run")
    p.add_argument("run", help="the output folder of a bionn run on a task")
    p.add_argument("--out", help="output folder (default RUN/analysis)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the contents of --out (an earlier bionn output) before running")
    p.add_argument("--trials", type=int, default=200, help="held-out trials drawn from the task")
    p.add_argument("--initial", type=int, default=256,
                   help="starts of the fixed-point search, drawn from the trajectories")
    p.add_argument("--seed", type=int, default=0, help="seed of the trials and of the search")
    p.add_argument("--device", help="cpu (default), cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
