"""Run a `bionn sweep` file on a SLURM cluster with submitit, one job per unfinished trial.

    python examples/sweep_submitit.py SWEEP.yaml --out DIR [--partition P] [--timeout-min M]
    python examples/sweep_submitit.py SWEEP.yaml --out DIR --dry-run   # list the jobs only

Uses bionn's own expansion (:func:`bionn.experiment.sweep.expand`) and trial folders, so
``bionn sweep SWEEP.yaml --out DIR`` afterwards finds every trial finished and only writes
the table and figure. submitit is imported only when submitting (``pip install submitit``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bionn.experiment.sweep import load_sweep, plan, run_trial


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep")
    p.add_argument("--out", required=True)
    p.add_argument("--partition", default=None)
    p.add_argument("--timeout-min", type=int, default=60)
    p.add_argument("--cpus", type=int, default=1)
    p.add_argument("--gpus", type=int, default=0)
    p.add_argument("--dry-run", action="store_true", help="print the jobs, submit nothing")
    a = p.parse_args(argv)
    cfg = load_sweep(a.sweep)
    out = Path(a.out)
    kind, _, pending = plan(cfg, out)
    jobs = [{"trial": t.id, "overrides": ov, "folder": str(folder)} for t, ov, folder in pending]
    if a.dry_run:
        for j in jobs:
            print(json.dumps(j))
        return jobs
    import submitit

    executor = submitit.AutoExecutor(folder=str(out / "slurm"))
    executor.update_parameters(timeout_min=a.timeout_min, cpus_per_task=a.cpus,
                               gpus_per_node=a.gpus, slurm_partition=a.partition)
    base = str(Path(cfg.base).resolve())
    with executor.batch():
        for j in jobs:
            executor.submit(run_trial, base, kind, j["overrides"], j["folder"], a.cpus)
    print(f"submitted {len(jobs)} jobs; logs in {out / 'slurm'}")
    return jobs


if __name__ == "__main__":
    main()
