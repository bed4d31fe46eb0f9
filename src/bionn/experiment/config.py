"""The config of a rate-task run (``bionn run`` without a ``data`` section).

Every config has the common shape of :mod:`bionn.experiment.schema`: an ``experiment``
section (name, seed, device, threads) and the command's sections, here ``task``,
``model``, ``loss``, ``training`` and ``synaptic_diversity``. The ``model`` section is
generated from the model constructor's signature (:mod:`bionn.experiment.models`, one
source of defaults). A config is data: it is read by the one safe reader
(:mod:`bionn._core.safe_yaml`), names
(tasks, circuits, activations, optimizers, model kinds) resolve through explicit
registries, and mask files are read with ``numpy.load(allow_pickle=False)`` or
``torch.load(weights_only=True)``. Every error names the field, the value and what is
allowed; a config of the old shape is refused with what changed.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from bionn._core.errors import ConfigError, format_errors
from bionn._core.safe_yaml import load_yaml_text, read_config_file
from bionn.experiment.models import (  # noqa: F401  (re-exported)
    CIRCUITS,
    MODEL_KINDS,
    CircuitConfig,
    RateModelConfig,
    TauBlocks,
    build_circuit,
    load_matrix,
)
from bionn.experiment.schema import (  # noqa: F401  (re-exported)
    OPTIMIZERS,
    CreditAssignmentFields,
    ExperimentSection,
    MirrorOptions,
    OptimizerConfig,
    Strict,
    check_shape,
)
from bionn.plasticity.diversity import SynapticDiversityConfig
from bionn.tasks import TASKS, Task, make_task

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")


class TaskConfig(Strict):
    """Which task, its time step and its parameters (see ``bionn.tasks``)."""

    name: str = "perceptual_decision_making"
    dt: float = Field(20.0, gt=0, description="time step, ms")
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in TASKS:
            raise ValueError(f"unknown task {v!r}; allowed: {sorted(TASKS)}")
        return v

    def build(self) -> Task:
        return make_task(self.name, dt=self.dt, **self.params)


class LossConfig(Strict):
    """Task loss and regulariser weights (see :class:`bionn.losses.RNNLoss`)."""

    task: Literal["mse", "cross_entropy"] = "mse"
    l2: dict[Literal["input", "recurrent", "readout"], float] = Field(default_factory=dict)
    rate_mean: float = Field(0.0, ge=0)
    rate_std: float = Field(0.0, ge=0)
    rate_cv: float = Field(0.0, ge=0)

    @field_validator("l2")
    @classmethod
    def _l2(cls, v: dict[str, float]) -> dict[str, float]:
        for k, lam in v.items():
            if not lam >= 0:
                raise ValueError(f"l2.{k} must be >= 0; got {lam}")
        return v


class BPTTConfig(Strict):
    """How gradients flow back through time within a trial.

    ``full``: through the whole trial. ``truncated``: the trial runs in chunks of
    ``chunk`` steps, each chunk's loss is back-propagated at once and the state is
    detached between chunks (memory of one chunk; gradients reach back at most
    ``chunk`` steps; the forward pass and the logged loss are unchanged).
    ``checkpoint``: exact gradients, but only the states at chunk boundaries are kept
    and each chunk is recomputed during the backward pass (activation checkpointing).
    """

    mode: Literal["full", "truncated", "checkpoint"] = "full"
    chunk: int = Field(50, gt=0, description="time steps per chunk")


class TrainingConfig(Strict):
    """Optimisation budget and schedule (steps are optimizer steps)."""

    steps: int = Field(1500, gt=0)
    batch_size: int = Field(64, gt=0)
    optimizer: OptimizerConfig = Field(
        default_factory=lambda: OptimizerConfig(type="adam", lr=3e-3),
        description="{type: adam | adamw | sgd | rmsprop, lr: ..., <the optimizer's arguments>}")
    grad_clip: float | None = Field(1.0, gt=0)
    eval_every: int = Field(250, gt=0)
    eval_trials: int = Field(1000, gt=0)
    checkpoint_every: int = Field(250, gt=0)
    example_trials: int = Field(3, ge=1)
    bptt: BPTTConfig = Field(default_factory=BPTTConfig)


class RunConfig(Strict):
    """A rate-task run: ``bionn run`` validates a YAML file into this (through
    :func:`validate_config`, which picks the ``model`` section of ``model.kind``)."""

    experiment: ExperimentSection = Field(default_factory=ExperimentSection)
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: RateModelConfig
    loss: LossConfig = Field(default_factory=LossConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    synaptic_diversity: SynapticDiversityConfig | None = Field(
        None, description="spine-dynamics transforms on the model's weights "
                          "(bionn.plasticity.BioConverter), applied inside optimizer.step()")

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        try:
            task = self.task.build()
        except (TypeError, ValueError) as e:
            raise ValueError(f"task.params: {e}") from None
        wanted = getattr(task, "loss", None)  # e.g. a NeuroGym Box or reach task: mse
        if wanted is not None and wanted != self.loss.task:
            raise ValueError(f"loss.task: task {self.task.name!r} has regression targets and is "
                             f"trained with {wanted!r}; got {self.loss.task!r} (set loss.task: "
                             f"{wanted})")
        check = MODEL_KINDS[self.model.kind].check
        if check is not None:
            check(self.model, task)
        if not self.experiment.force:
            _check_memory(self, task)
        return self


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _check_memory(cfg: RunConfig, task: Any) -> None:
    """Refuse a run whose model kind's training-memory estimate exceeds 80% of the memory
    available now, naming the estimate, what is available and what to lower."""
    estimate = MODEL_KINDS[cfg.model.kind].memory
    if estimate is None:
        return
    steps = int(task.sample(1, torch.Generator().manual_seed(0)).inputs.shape[1])
    batch = max(cfg.training.batch_size, min(cfg.training.eval_trials, 500))
    need, what, field, lower = estimate(cfg.model, task, batch, steps)
    have = available_memory()
    if have is not None and need > 0.8 * have:
        raise ValueError(
            f"{field}: {what} needs about {need / 1e9:.3g} GB to train (batch {batch}, {steps} "
            f"steps per trial) but {have / 1e9:.3g} GB of memory is available; lower {lower} or "
            "training.batch_size (experiment.force: true, or --force, skips this estimate)")


@cache
def run_config_type(kind: str = "ctrnn") -> type[RunConfig]:
    """:class:`RunConfig` with the ``model`` section of ``model.kind: kind``."""
    if kind not in MODEL_KINDS:
        raise ConfigError(f"invalid config:\n  model.kind: unknown model kind {kind!r} "
                          f"(allowed: {', '.join(sorted(MODEL_KINDS))})")
    return create_model(f"RunConfig[{kind}]", __base__=RunConfig,
                        model=(MODEL_KINDS[kind].config, ...))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.n_hidden=128"`` -> ``(["model", "n_hidden"], 128)``; values are YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = load_yaml_text(raw, f"override {text!r}") if raw else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (a copy)."""
    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            if not isinstance(node.get(part, {}), dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file through the one safe reader
    (:func:`bionn._core.safe_yaml.read_config_file`: plain data, at most 1 MB of UTF-8
    text, a non-empty mapping, bounded aliases)."""
    return read_config_file(path)


def validate_config(data: dict[str, Any]) -> RunConfig:
    """Validate a nested dict; raises :class:`ConfigError` naming every bad field (or,
    for a config of the old shape, what changed)."""
    check_shape(data)
    model = data.get("model")
    kind = model.get("kind", "ctrnn") if isinstance(model, dict) else "ctrnn"
    cls = run_config_type(str(kind))
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e, cls)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config (the embedded default when ``path`` is None), apply
    ``key=value`` overrides and validate.

    Example:
        >>> cfg = load_config(None, ["training.steps=10", "model.n_hidden=32"])
        >>> cfg.training.steps, cfg.model.n_hidden, cfg.experiment.name
        (10, 32, 'ei_ctrnn_pdm')
    """
    data = read_yaml(DEFAULT_CONFIG if path is None else path)
    return validate_config(apply_overrides(data, overrides or []))


def dump_config(cfg: Any) -> str:
    """A resolved config (any command's) as YAML, every default written out."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
