"""Load a finished (or interrupted) ``bionn run`` back in one call: :func:`load_run`.

Example (after ``bionn run --out runs/pdm``; ``tests/test_load_run.py`` runs it for
every kind of run)::

    >>> run = load_run("runs/pdm")  # doctest: +SKIP
    >>> run.kind, run.step, run.final["accuracy"], run.task.name  # doctest: +SKIP
    ('task', 2000, 0.97, 'perceptual_decision_making')
    >>> out, rates = run.model(run.task.sample(8).inputs)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from bionn._core.errors import ConfigError
from bionn.experiment.checkpoint import read_jsonl

__all__ = ["LoadedRun", "load_run"]


@dataclass
class LoadedRun:
    """A run loaded back by :func:`load_run`.

    Attributes:
        model: the trained model (its credit-assignment conversion and synaptic-diversity
            transforms included, as it was trained), in eval mode, on the chosen device.
        config: the resolved config (``RunConfig`` or ``ClassifyConfig``).
        kind: ``"task"`` (a cognitive task, rate or spiking model) or ``"classification"``.
        task: the task (``kind == "task"``), else None.
        data: the dataset (``kind == "classification"``), else None.
        metrics: the records of ``metrics.jsonl``, in order.
        final: ``final.json`` (None while the run is unfinished).
        step: the step of the checkpoint the model comes from.
        path: the run's folder.
        job: the run's job (its evaluation, figures and sampler, as the run used them).
    """

    model: torch.nn.Module
    config: Any
    kind: Literal["task", "classification"]
    task: Any
    data: Any
    metrics: list[dict[str, Any]]
    final: dict[str, Any] | None
    step: int
    path: Path
    job: Any = field(repr=False)

    @property
    def finished(self) -> bool:
        """Whether the run reached its budget (``final.json`` says ``finished``)."""
        return self.final is not None and self.final.get("status") == "finished"


def load_run(path: str | Path, device: str = "cpu") -> LoadedRun:
    """The model, task or dataset, resolved config and metrics of the run in ``path``.

    Rebuilds the model exactly as :class:`~bionn.experiment.runner.Runner` built it from
    the folder's ``config.yaml`` (model, conversion to its credit-assignment method,
    synaptic diversity) and loads ``checkpoint.pt`` (data only, ``weights_only=True``).
    Works for every kind of run: rate or spiking models on a task, classification.
    The global random state is left as it was.

    Args:
        path: a ``bionn run`` output folder.
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

    Raises:
        ConfigError: the folder, its config or its checkpoint is missing or does not
            match (the message names the file).
    """
    from bionn.experiment.runner import Runner, load_run_config

    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"run folder {str(folder)!r} does not exist or is not a folder")
    for name in ("config.yaml", "checkpoint.pt"):
        if not (folder / name).is_file():
            raise ConfigError(f"{str(folder)!r} is not a bionn run folder: it has no {name}")
    config = load_run_config(folder / "config.yaml", [f"experiment.device={device}"])
    with torch.random.fork_rng(devices=[]):  # building and restoring reseed the global RNG
        runner = Runner(config, folder, resume=True, progress=False)
        step = runner._restore()
    model = runner.model.eval()
    job = runner.job
    final = None
    if (folder / "final.json").is_file():
        final = json.loads((folder / "final.json").read_text())
    kind: Literal["task", "classification"] = "classification" if hasattr(job, "data") else "task"
    return LoadedRun(model=model, config=config, kind=kind, task=getattr(job, "task", None),
                     data=getattr(job, "data", None), metrics=read_jsonl(folder / "metrics.jsonl"),
                     final=final, step=step, path=folder, job=job)
