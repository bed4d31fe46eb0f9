"""Experiment configs: YAML validated into typed objects before any work starts.

A config is data: it is read with ``yaml.safe_load``, names (tasks, circuits,
activations, optimizers) resolve through explicit registries, and mask files
are read with ``numpy.load(allow_pickle=False)`` or ``torch.load(weights_only=True)``.
Every error names the field, the value and what is allowed.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bionn._core.errors import ConfigError, format_errors
from bionn.circuits import MultiArea, MultiAreaEI, RandomInput
from bionn.constraints import WEIGHT_INITS
from bionn.functional.rate import ACTIVATIONS
from bionn.plasticity.diversity import SynapticDiversityConfig
from bionn.tasks import TASKS, Task, make_task

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")

CIRCUITS = {"multi_area": MultiArea, "multi_area_ei": MultiAreaEI, "random_input": RandomInput}
OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def load_matrix(value: Any, field: str) -> torch.Tensor:
    """A matrix given inline (nested list) or as a path to ``.npy``/``.pt``."""
    if isinstance(value, (list, tuple)):
        return torch.as_tensor(np.asarray(value, dtype=np.float32))
    path = Path(str(value))
    if not path.is_file():
        raise ValueError(f"{field}: file {str(path)!r} does not exist")
    if path.suffix == ".npy":
        return torch.as_tensor(np.load(path, allow_pickle=False), dtype=torch.float32)
    if path.suffix in (".pt", ".pth"):
        t = torch.load(path, weights_only=True, map_location="cpu")
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{field}: {str(path)!r} must hold one tensor")
        return t.float()
    raise ValueError(f"{field}: {str(path)!r} must be a .npy or .pt file, or an inline list")


CONVERT_OPTIONS = ("init", "scale", "constrain_norm", "copy_weights", "constrain_feedback")


def _methods() -> tuple[str, ...]:
    from bionn.learning import METHODS  # lazy: bionn.learning imports bionn.rate

    return tuple(METHODS)


class MirrorOptions(_Strict):
    """Arguments of :func:`bionn.learning.mirror` (method ``wm``), called after each step."""

    eta: float = Field(0.01, ge=0, allow_inf_nan=False)
    noise_amplitude: float = Field(0.1, gt=0, allow_inf_nan=False)
    n_samples: int = Field(128, ge=1)
    growth_control: bool = False
    damping: float = Field(0.5, gt=0, allow_inf_nan=False)
    match_norm: bool = False


class CreditAssignmentFields(_Strict):
    """How a model learns: a :func:`bionn.learning.convert` method and its options,
    plus the :func:`bionn.learning.mirror` arguments for ``wm`` (called after each step)."""

    method: str = "bp"
    options: dict[str, Any] = Field(default_factory=dict)
    mirror: MirrorOptions = Field(default_factory=MirrorOptions)

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in _methods():
            raise ValueError(f"unknown method {v!r}; allowed: {list(_methods())}")
        return v

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, Any]) -> dict[str, Any]:
        from bionn.learning.feedback import INITS

        bad = sorted(set(v) - set(CONVERT_OPTIONS))
        if bad:
            raise ValueError(f"unknown convert option(s) {bad}; allowed: {list(CONVERT_OPTIONS)}")
        if "init" in v and v["init"] not in INITS:
            raise ValueError(f"options.init must be one of {list(INITS)}; got {v['init']!r}")
        if "scale" in v and (isinstance(v["scale"], bool) or not isinstance(v["scale"], (int, float))
                             or not math.isfinite(v["scale"])):
            raise ValueError(f"options.scale must be a finite number; got {v['scale']!r}")
        for key in ("constrain_norm", "copy_weights", "constrain_feedback"):
            if key in v and not isinstance(v[key], bool):
                raise ValueError(f"options.{key} must be true or false; got {v[key]!r}")
        return v


class TaskConfig(_Strict):
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


class CircuitConfig(_Strict):
    """A structure builder from ``bionn.circuits`` and its arguments
    (``n_neurons``/``n_input``/``n_output`` are filled in from the model and task)."""

    kind: Literal["multi_area", "multi_area_ei", "random_input"]
    params: dict[str, Any] = Field(default_factory=dict)


class TauBlocks(_Strict):
    """Time constants per block of consecutive neurons (ms)."""

    sizes: list[int]
    values: list[float]

    @model_validator(mode="after")
    def _match(self) -> TauBlocks:
        if len(self.sizes) != len(self.values) or not self.sizes:
            raise ValueError(f"tau.sizes ({len(self.sizes)}) and tau.values ({len(self.values)}) must be non-empty and of equal length")
        if any(s <= 0 for s in self.sizes):
            raise ValueError(f"tau.sizes must be positive; got {self.sizes}")
        return self

    def per_neuron(self) -> list[float]:
        return [v for s, v in zip(self.sizes, self.values, strict=True) for _ in range(s)]


class ModelConfig(CreditAssignmentFields):
    """The CTRNN (see :class:`bionn.rate.CTRNN` for each argument) and how it learns:
    ``method`` ``bp`` (backprop through time) or feedback alignment through time
    (``fa usf brsf frsf wm kp``, see :func:`bionn.learning.convert`)."""

    n_hidden: int = Field(100, gt=0)
    tau: float | list[float] | TauBlocks = 100.0
    learn_tau: bool = False
    activation: str = "relu"
    e_fraction: float | None = Field(0.8, gt=0, lt=1)
    preact_noise: float = Field(0.05, ge=0)
    postact_noise: float = Field(0.0, ge=0)
    init_state: Literal["zero", "learn"] = "zero"
    weight_init: str | dict[str, str] = "uniform"
    spectral_radius: float | None = Field(1.0, gt=0)
    readout: Literal["all", "excitatory"] = "excitatory"
    positive_input: bool = True
    rec_density: float = Field(1.0, gt=0, le=1)
    rec_mask: str | list[list[float]] | None = None
    plasticity: dict[Literal["input", "recurrent", "readout"], str | list[list[float]]] = Field(
        default_factory=dict
    )
    circuit: CircuitConfig | None = None

    @field_validator("tau")
    @classmethod
    def _tau_positive(cls, v: float | list[float] | TauBlocks) -> float | list[float] | TauBlocks:
        values = v.values if isinstance(v, TauBlocks) else v if isinstance(v, list) else [v]
        if not values or any(not (t > 0) for t in values):
            raise ValueError("tau must be > 0 ms (a number or one per neuron)")
        return v

    @model_validator(mode="after")
    def _ctrnn_method(self) -> ModelConfig:
        if self.method == "dfa":
            raise ValueError("model.method: 'dfa' is not available for a CTRNN (no direct "
                             "projection of the output error through time); use bp, fa, usf, "
                             "brsf, frsf, wm or kp")
        if self.options.get("constrain_norm"):
            raise ValueError("model.options.constrain_norm: not available for a CTRNN")
        return self

    def tau_per_neuron(self) -> float | list[float]:
        """``tau`` as the CTRNN takes it: a number or one value per neuron."""
        return self.tau.per_neuron() if isinstance(self.tau, TauBlocks) else self.tau

    @field_validator("activation")
    @classmethod
    def _activation(cls, v: str) -> str:
        if v not in ACTIVATIONS:
            raise ValueError(f"unknown activation {v!r}; allowed: {sorted(ACTIVATIONS)}")
        return v

    @field_validator("weight_init")
    @classmethod
    def _init(cls, v: str | dict[str, str]) -> str | dict[str, str]:
        for k, name in ({"all": v} if isinstance(v, str) else v).items():
            if k not in ("all", "input", "recurrent", "readout"):
                raise ValueError(f"weight_init keys must be input, recurrent, readout; got {k!r}")
            if name not in WEIGHT_INITS:
                raise ValueError(f"unknown weight_init {name!r}; allowed: {list(WEIGHT_INITS)}")
        return v


class LossConfig(_Strict):
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


class BPTTConfig(_Strict):
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


class TrainingConfig(_Strict):
    """Optimisation budget and schedule (steps are optimizer steps)."""

    steps: int = Field(1500, gt=0)
    batch_size: int = Field(64, gt=0)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    eval_every: int = Field(250, gt=0)
    eval_trials: int = Field(1000, gt=0)
    checkpoint_every: int = Field(250, gt=0)
    example_trials: int = Field(3, ge=1)
    bptt: BPTTConfig = Field(default_factory=BPTTConfig)


class RunConfig(_Strict):
    """A whole experiment: ``bionn run`` validates a YAML file into this."""

    name: str = "run"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    synaptic_diversity: SynapticDiversityConfig | None = Field(
        None, description="spine-dynamics transforms on the CTRNN's weights "
                          "(bionn.plasticity.BioConverter), applied inside optimizer.step()")

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        dt, m = self.task.dt, self.model
        if isinstance(m.tau, TauBlocks) and sum(m.tau.sizes) != m.n_hidden:
            raise ValueError(f"model.tau.sizes sum to {sum(m.tau.sizes)}; expected n_hidden={m.n_hidden}")
        taus = m.tau_per_neuron() if not isinstance(m.tau, float) else [m.tau]
        if min(taus) < dt:
            raise ValueError(
                f"model.tau ({min(taus):g} ms) must be >= task.dt ({dt:g} ms) so that alpha = dt/tau <= 1"
            )
        if isinstance(m.tau, list) and len(m.tau) != m.n_hidden:
            raise ValueError(f"model.tau has {len(m.tau)} values; expected 1 or n_hidden={m.n_hidden}")
        if m.readout == "excitatory" and m.e_fraction is None and m.circuit is None:
            raise ValueError("model.readout='excitatory' needs model.e_fraction or an E/I circuit")
        try:
            task = self.task.build()
        except (TypeError, ValueError) as e:
            raise ValueError(f"task.params: {e}") from None
        n = m.n_hidden
        shapes = {"recurrent": (n, n), "input": (n, task.n_input), "readout": (task.n_output, n)}
        if m.rec_mask is not None:
            mask = load_matrix(m.rec_mask, "model.rec_mask")
            if tuple(mask.shape) != (n, n):
                raise ValueError(
                    f"model.rec_mask has shape {tuple(mask.shape)}; expected (n_hidden, n_hidden) = {(n, n)}"
                )
        for k, v in m.plasticity.items():
            p = load_matrix(v, f"model.plasticity.{k}")
            if tuple(p.shape) != shapes[k]:
                raise ValueError(f"model.plasticity.{k} has shape {tuple(p.shape)}; expected {shapes[k]} (post, pre)")
            if p.min() < 0 or p.max() > 1:
                raise ValueError(f"model.plasticity.{k} values must be in [0, 1]")
        if m.circuit is not None:
            try:
                build_circuit(m.circuit, n, task.n_input, task.n_output)
            except (TypeError, ValueError) as e:
                raise ValueError(f"model.circuit: {e}") from None
        return self


def build_circuit(cfg: CircuitConfig, n_hidden: int, n_input: int, n_output: int):
    """Instantiate the circuit builder named in ``cfg`` (not yet drawn)."""
    cls = CIRCUITS[cfg.kind]
    params = dict(cfg.params)
    if cfg.kind == "random_input":
        params.update(n_neurons=n_hidden, n_input=n_input, n_output=n_output)
    else:
        params.update(n_input=n_input, n_output=n_output)
        sizes = params.get("area_sizes")
        if sizes is None or sum(sizes) != n_hidden:
            raise ValueError(f"area_sizes {sizes} must sum to model.n_hidden={n_hidden}")
    return cls(**params)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.n_hidden=128"`` -> ``(["model", "n_hidden"], 128)``; values are YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw else None
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
    """Read a YAML mapping with ``yaml.safe_load``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections; got {type(data).__name__}")
    return data


def validate_config(data: dict[str, Any]) -> RunConfig:
    """Validate a nested dict; raises :class:`ConfigError` naming every bad field."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e, RunConfig)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config (the embedded default when ``path`` is None), apply
    ``key=value`` overrides and validate.

    Example:
        >>> cfg = load_config(None, ["training.steps=10", "model.n_hidden=32"])
        >>> cfg.training.steps, cfg.model.n_hidden
        (10, 32)
    """
    data = read_yaml(DEFAULT_CONFIG if path is None else path)
    return validate_config(apply_overrides(data, overrides or []))


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (every default written out)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
