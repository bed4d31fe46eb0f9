"""The ``model:`` section of a rate-task run, read from the model constructors themselves.

``model.kind`` picks an entry of :data:`MODEL_KINDS` (default ``ctrnn``). Each kind's
section is generated from its constructor's signature: every keyword argument is a
config key with the constructor's own default (one source of defaults) and a type from
its annotation; unknown keys are refused naming the allowed ones. Tensors are given
as a path to a ``.npy``/``.pt`` file or an inline nested list. Arguments the run
supplies (``n_input``/``n_output`` from the task, ``dt`` from ``task.dt``, the
``generator`` seeded by ``experiment.seed``) are not config keys; keys that are not
constructor arguments (``method``/``options``/``mirror`` for credit assignment,
``circuit`` builders, ``tau`` blocks, ``rec_density``, a connectome source) are explicit
fields. The builder passes the section through to the constructor.

Kinds: ``ctrnn`` (:class:`bionn.rate.CTRNN`) and ``connectome``
(:class:`bionn.rate.ConnectomeRNN` on :func:`bionn.circuits.connectome.celegans` or an
edge-list file). A new kind is one :func:`register_model_kind` call.

Example:
    >>> cfg = MODEL_KINDS["ctrnn"].config(n_hidden=32, e_fraction=0.8)
    >>> cfg.kind, cfg.n_hidden, cfg.preact_noise   # CTRNN's own default noise
    ('ctrnn', 32, 0.0)
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from bionn.circuits import MultiArea, MultiAreaEI, RandomInput
from bionn.constraints import WEIGHT_INITS
from bionn.experiment.schema import CreditAssignmentFields, Strict, plain_type
from bionn.functional.rate import ACTIVATIONS
from bionn.tasks import Task

__all__ = [
    "CIRCUITS",
    "MODEL_KINDS",
    "CircuitConfig",
    "ConnectomeSource",
    "ModelKind",
    "RECURRENT_CLASSIFIERS",
    "RateModelConfig",
    "RecurrentImageClassifier",
    "TauBlocks",
    "build_circuit",
    "build_rate_model",
    "load_matrix",
    "register_model_kind",
    "spatial_network",
]

#: a tensor in a config: a path to ``.npy``/``.pt`` or an inline (nested) list
MatrixSource = str | list[Any]
#: arguments every rate model gets from the run, never from the config
FILLED = ("n_input", "n_output", "dt", "generator")
LAYERS = ("input", "recurrent", "readout")
CIRCUITS = {"multi_area": MultiArea, "multi_area_ei": MultiAreaEI, "random_input": RandomInput}


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


class CircuitConfig(Strict):
    """A structure builder from ``bionn.circuits`` and its arguments
    (``n_neurons``/``n_input``/``n_output`` are filled in from the model and task)."""

    kind: Literal["multi_area", "multi_area_ei", "random_input"]
    params: dict[str, Any] = Field(default_factory=dict)


def build_circuit(cfg: CircuitConfig, n_hidden: int, n_input: int, n_output: int):
    """Instantiate the circuit builder named in ``cfg`` (not yet drawn)."""
    params = dict(cfg.params)
    if cfg.kind == "random_input":
        params.update(n_neurons=n_hidden, n_input=n_input, n_output=n_output)
    else:
        params.update(n_input=n_input, n_output=n_output)
        sizes = params.get("area_sizes")
        if sizes is None or sum(sizes) != n_hidden:
            raise ValueError(f"area_sizes {sizes} must sum to model.n_hidden={n_hidden}")
    return CIRCUITS[cfg.kind](**params)


class TauBlocks(Strict):
    """Time constants per block of consecutive neurons (ms)."""

    sizes: list[int]
    values: list[float]

    @model_validator(mode="after")
    def _match(self) -> TauBlocks:
        if len(self.sizes) != len(self.values) or not self.sizes:
            raise ValueError(f"tau.sizes ({len(self.sizes)}) and tau.values ({len(self.values)}) "
                             "must be non-empty and of equal length")
        if any(s <= 0 for s in self.sizes):
            raise ValueError(f"tau.sizes must be positive; got {self.sizes}")
        return self

    def per_neuron(self) -> list[float]:
        return [v for s, v in zip(self.sizes, self.values, strict=True) for _ in range(s)]


def _connectome_loaders() -> dict[str, Callable]:
    from bionn.circuits.connectome import celegans, from_edge_list

    return {"celegans": celegans, "edge_list": from_edge_list}


class ConnectomeSource(Strict):
    """Where a connectome comes from: ``celegans`` (the data shipped in ``cect``; ``params``
    are :func:`~bionn.circuits.connectome.celegans`'s arguments) or the path of a CSV/TSV/
    Parquet edge list (``params``: :func:`~bionn.circuits.connectome.from_edge_list`'s)."""

    source: str = "celegans"
    params: dict[str, Any] = Field(default_factory=dict)
    _loaded: Any = PrivateAttr(None)

    @model_validator(mode="after")
    def _check(self) -> ConnectomeSource:
        loader = self._loader()
        allowed = [k for k, p in inspect.signature(loader).parameters.items()
                   if k != "source" and p.kind != p.VAR_KEYWORD]
        bad = sorted(set(self.params) - set(allowed))
        if bad:
            raise ValueError(f"connectome.params: unknown argument(s) {bad} for "
                             f"{loader.__name__}; allowed: {allowed}")
        if self.source != "celegans" and not Path(self.source).is_file():
            raise ValueError(f"connectome.source: {self.source!r} is neither 'celegans' nor an "
                             "existing edge-list file")
        return self

    def _loader(self) -> Callable:
        loaders = _connectome_loaders()
        return loaders["celegans" if self.source == "celegans" else "edge_list"]

    def load(self):
        """The :class:`~bionn.circuits.connectome.Connectome` (read once per config
        object: the memory estimate and the build share it)."""
        if self._loaded is None:
            if self.source == "celegans":
                self._loaded = self._loader()(**self.params)
            else:
                self._loaded = self._loader()(self.source, **self.params)
        return self._loaded


# --------------------------------------------------------------------------------------------
# Sections generated from constructor signatures
# --------------------------------------------------------------------------------------------
class RateModelConfig(CreditAssignmentFields):
    """The common part of every rate model section: ``kind`` and how the model learns
    (``method``/``options``/``mirror``, see :func:`bionn.learning.convert`)."""

    kind: str = "ctrnn"
    #: constructor arguments the run supplies, with what to set instead (named in the
    #: error when a config gives one)
    set_by_run: ClassVar[dict[str, str]] = {
        "dt": "the model steps at its task's time step; set task.dt (ms) instead",
        "n_input": "the run takes it from the task (task.n_input)",
        "n_output": "the run takes it from the task (task.n_output)",
        "generator": "the run seeds the weights from experiment.seed",
    }

    @field_validator("activation", check_fields=False)
    @classmethod
    def _activation(cls, v: str) -> str:
        if v not in ACTIVATIONS:
            raise ValueError(f"unknown activation {v!r}; allowed: {sorted(ACTIVATIONS)}")
        return v

    @field_validator("tau", check_fields=False)
    @classmethod
    def _tau_positive(cls, v: Any) -> Any:
        values = v.values if isinstance(v, TauBlocks) else v if isinstance(v, list) else [v]
        if not values or any(not (t > 0) for t in values):
            raise ValueError("tau must be > 0 ms (a number or one per neuron)")
        return v

    def tau_value(self) -> float | list[float]:
        """``tau`` as the constructor takes it: a number or one value per neuron."""
        tau = getattr(self, "tau", None)
        return tau.per_neuron() if isinstance(tau, TauBlocks) else tau

    def constructor_kwargs(self, kind: ModelKind) -> dict[str, Any]:
        """The section's constructor arguments (tensors loaded), without the replaced ones."""
        out = {}
        for name in kind.arguments:
            if name in kind.replaced:
                continue
            value = getattr(self, name)
            out[name] = _load_tensors(value, kind.hints.get(name), f"model.{name}")
        return out


def _takes_tensor(hint: Any) -> bool:
    return hint is torch.Tensor or any(_takes_tensor(a) for a in typing.get_args(hint))


def _load_tensors(value: Any, hint: Any, field: str) -> Any:
    if value is None or hint is None or not _takes_tensor(hint):
        return value
    if isinstance(value, dict):
        return {k: _load_tensors(v, hint, f"{field}.{k}") for k, v in value.items()}
    if isinstance(value, str) and str in typing.get_args(hint):
        return value  # a string choice, e.g. tau_groups="type"
    if isinstance(value, (int, float)):
        return value
    return load_matrix(value, field)


@dataclass
class ModelKind:
    """One entry of :data:`MODEL_KINDS`: a model constructor, its generated config
    section, and how the run builds it.

    ``build(section, task, generator)`` returns the model; ``check(section, task)``
    (optional) raises ``ValueError`` for settings that do not fit the task;
    ``memory(section, task, batch, steps)`` (optional) estimates the bytes training takes,
    as ``(bytes, "a CTRNN of N units", the field that sets the size, what to lower)``,
    checked against the available memory before any work.
    """

    name: str
    cls: type
    config: type[RateModelConfig]
    build: Callable[..., torch.nn.Module]
    check: Callable[..., None] | None = None
    replaced: tuple[str, ...] = ()
    memory: Callable[..., tuple[int, str, str, str]] | None = None

    @property
    def arguments(self) -> list[str]:
        return [k for k, p in inspect.signature(self.cls).parameters.items()
                if k not in FILLED and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    @property
    def hints(self) -> dict[str, Any]:
        return typing.get_type_hints(self.cls.__init__)


#: ``model.kind`` -> :class:`ModelKind`
MODEL_KINDS: dict[str, ModelKind] = {}


def register_model_kind(name: str, cls: type, build: Callable[..., torch.nn.Module], *,
                        replace: dict[str, tuple[Any, Any]] | None = None,
                        bounds: dict[str, dict[str, Any]] | None = None,
                        choices: dict[str, tuple[str, ...]] | None = None,
                        extra: dict[str, tuple[Any, Any]] | None = None,
                        check: Callable[..., None] | None = None,
                        memory: Callable[..., tuple[int, str, str, str]] | None = None,
                        base: type[RateModelConfig] = RateModelConfig) -> ModelKind:
    """Add ``model.kind: name`` for the constructor ``cls``.

    The section's keys are ``cls``'s keyword arguments (minus ``n_input``, ``n_output``,
    ``dt``, ``generator``) with its defaults, typed from its annotations (tensors as
    paths or lists). ``replace``: ``{argument: (type, default)}`` for arguments given
    differently in a config (e.g. a circuit builder instead of a ``Circuit``);
    ``bounds``: pydantic ``Field`` constraints (``{"n_hidden": {"gt": 0}}``);
    ``choices``: allowed strings; ``extra``: ``{key: (type, default)}`` config keys that
    are not constructor arguments; ``check``, ``memory``: see :class:`ModelKind`.
    """
    replace, bounds, choices = replace or {}, bounds or {}, choices or {}
    params = inspect.signature(cls).parameters
    hints = typing.get_type_hints(cls.__init__)
    fields: dict[str, Any] = {"kind": (Literal[name], name)}
    for key, p in params.items():
        if key in FILLED or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = ... if p.default is inspect.Parameter.empty else p.default
        if key in replace:
            typ, default = replace[key]
        elif key in choices:
            typ = Literal[choices[key]]
        else:
            typ = plain_type(hints.get(key, Any), tensor=MatrixSource)
        info = default if isinstance(default, FieldInfo) else Field(default, **bounds.get(key, {}))
        fields[key] = (typ, info)
    for key, (typ, default) in (extra or {}).items():
        fields[key] = (typ, default)
    config = create_model(f"{cls.__name__}Section", __base__=base,
                          __doc__=f"``model:`` of kind ``{name}``: the arguments of "
                                  f":class:`{cls.__module__}.{cls.__qualname__}`.", **fields)
    kind = ModelKind(name, cls, config, build, check, tuple(replace), memory)
    MODEL_KINDS[name] = kind
    return kind


def build_rate_model(section: RateModelConfig, task: Task, seed: int) -> torch.nn.Module:
    """The model a ``model:`` section describes, for ``task`` (weights drawn from ``seed``)."""
    kind = MODEL_KINDS[section.kind]
    return kind.build(section, task, torch.Generator().manual_seed(int(seed)))


# --------------------------------------------------------------------------------------------
# ctrnn
# --------------------------------------------------------------------------------------------
class _CTRNNBase(RateModelConfig):
    @field_validator("weight_init", check_fields=False)
    @classmethod
    def _init(cls, v: str | dict[str, str]) -> str | dict[str, str]:
        for k, name in ({"all": v} if isinstance(v, str) else v).items():
            if k not in ("all", *LAYERS):
                raise ValueError(f"weight_init keys must be input, recurrent, readout; got {k!r}")
            if name not in WEIGHT_INITS:
                raise ValueError(f"unknown weight_init {name!r}; allowed: {list(WEIGHT_INITS)}")
        return v

    @model_validator(mode="after")
    def _ctrnn_method(self) -> _CTRNNBase:
        if self.method == "dfa":
            raise ValueError("model.method: 'dfa' is not available for a CTRNN (no direct "
                             "projection of the output error through time); use bp, fa, usf, "
                             "brsf, frsf, wm or kp")
        if self.options.get("constrain_norm"):
            raise ValueError("model.options.constrain_norm: not available for a CTRNN")
        return self


def training_bytes(n_parameters: int, n_units: int, batch: int, steps: int) -> int:
    """Float32 memory of training a recurrent model by BPTT with Adam: the parameters with
    their gradients and two Adam moments (4 copies), and per time step the stored state and
    rate with their gradients and the drive (about 5 ``(batch, n_units)`` tensors).

    Example:
        >>> training_bytes(100 * 108, 100, 64, 50) // 1000
        6572
    """
    return 4 * (4 * n_parameters + 5 * batch * steps * n_units)


def dense_rnn_memory(what: str, tensors_per_unit: int = 1) -> Callable[..., tuple[int, str, str, str]]:
    """The memory estimate of a dense recurrent model sized by ``model.n_hidden`` (input,
    recurrent and readout weights and biases), whose state takes ``tensors_per_unit`` times
    a rate unit's per-step memory; ``what`` names it (``"a CTRNN of {n} units"``)."""
    def estimate(m: Any, task: Task, batch: int, steps: int) -> tuple[int, str, str, str]:
        n = m.n_hidden
        params = n * (n + task.n_input + task.n_output + 2)
        return (training_bytes(params, tensors_per_unit * n, batch, steps), what.format(n=n),
                "model.n_hidden", "model.n_hidden")
    return estimate


_ctrnn_memory = dense_rnn_memory("a CTRNN of {n} units")


def _shapes(n: int, n_in: int, n_out: int) -> dict[str, tuple[int, ...]]:
    return {"rec_mask": (n, n), "input_mask": (n, n_in), "readout_mask": (n_out, n),
            "sign": (n,), "recurrent": (n, n), "input": (n, n_in), "readout": (n_out, n)}


def _check_ctrnn(m: Any, task: Task) -> None:
    n, dt = m.n_hidden, task.dt
    if isinstance(m.tau, TauBlocks) and sum(m.tau.sizes) != n:
        raise ValueError(f"model.tau.sizes sum to {sum(m.tau.sizes)}; expected n_hidden={n}")
    taus = m.tau_value() if isinstance(m.tau_value(), list) else [m.tau_value()]
    if min(taus) < dt:
        raise ValueError(f"model.tau ({min(taus):g} ms) must be >= task.dt ({dt:g} ms) so that "
                         "alpha = dt/tau <= 1")
    if isinstance(m.tau, list) and len(m.tau) not in (1, n):
        raise ValueError(f"model.tau has {len(m.tau)} values; expected 1 or n_hidden={n}")
    if getattr(m, "readout", None) == "excitatory" and m.e_fraction is None \
            and getattr(m, "sign", None) is None and m.circuit is None:
        raise ValueError("model.readout='excitatory' needs model.e_fraction, model.sign or an "
                         "E/I circuit")
    shapes = _shapes(n, task.n_input, task.n_output)
    kind = MODEL_KINDS["ctrnn"]
    for name, hint in kind.hints.items():
        value = getattr(m, name, None)
        if name in kind.replaced or value is None or not _takes_tensor(hint):
            continue
        if isinstance(value, dict):  # per-layer tensors, e.g. grad_scale
            for k, v in value.items():
                if k not in LAYERS:
                    raise ValueError(f"model.{name}: keys must be among {list(LAYERS)}; got {k!r}")
                p = load_matrix(v, f"model.{name}.{k}")
                if tuple(p.shape) != shapes[k]:
                    raise ValueError(f"model.{name}.{k} has shape {tuple(p.shape)}; expected "
                                     f"{shapes[k]} (post, pre)")
            continue
        if isinstance(value, str) and str in typing.get_args(hint):
            continue
        t = load_matrix(value, f"model.{name}")
        if name in shapes and tuple(t.shape) != shapes[name]:
            raise ValueError(f"model.{name} has shape {tuple(t.shape)}; expected {shapes[name]}"
                             + (" = (n_hidden, n_hidden)" if name == "rec_mask" else " (post, pre)"))
    if m.circuit is not None:
        try:
            build_circuit(m.circuit, n, task.n_input, task.n_output)
        except (TypeError, ValueError) as e:
            raise ValueError(f"model.circuit: {e}") from None


def _build_ctrnn(m: Any, task: Task, g: torch.Generator) -> torch.nn.Module:
    from bionn.circuits import Circuit, Connectivity, fixed_prob
    from bionn.rate import CTRNN

    kind = MODEL_KINDS["ctrnn"]
    kwargs = m.constructor_kwargs(kind)
    circuit = None
    if m.circuit is not None:
        circuit = build_circuit(m.circuit, m.n_hidden, task.n_input, task.n_output).build(g)
    rec_mask = kwargs.get("rec_mask")
    if rec_mask is None and m.rec_density < 1.0:
        rec_mask = fixed_prob(m.n_hidden, m.n_hidden, m.rec_density, generator=g, layout="dense").dense()
    if circuit is not None and rec_mask is not None:  # the circuit's mask, thinned
        circuit = Circuit(Connectivity(circuit.recurrent.mask * rec_mask, circuit.sign),
                          circuit.input_mask, circuit.readout_mask, circuit.area,
                          circuit.area_names)
        rec_mask = None
    kwargs.update(rec_mask=rec_mask, circuit=circuit, tau=m.tau_value())
    return CTRNN(task.n_input, n_output=task.n_output, dt=task.dt, generator=g, **kwargs)


def _register_ctrnn() -> None:
    from bionn.rate import CTRNN

    params = inspect.signature(CTRNN).parameters
    register_model_kind(
        "ctrnn", CTRNN, _build_ctrnn, check=_check_ctrnn, memory=_ctrnn_memory, base=_CTRNNBase,
        replace={"tau": (float | list[float] | TauBlocks, params["tau"].default),
                 "circuit": (CircuitConfig | None, None)},
        bounds={"n_hidden": {"gt": 0}, "e_fraction": {"gt": 0, "lt": 1},
                "preact_noise": {"ge": 0}, "postact_noise": {"ge": 0},
                "spectral_radius": {"gt": 0}},
        choices={k: v for k, v in (("readout", ("all", "excitatory")),) if k in params},
        extra={"rec_density": (float, Field(1.0, gt=0, le=1,
                                            description="random sparse recurrent mask"))},
    )


# --------------------------------------------------------------------------------------------
# connectome
# --------------------------------------------------------------------------------------------
def _check_connectome(m: Any, task: Task) -> None:
    taus = m.tau if isinstance(m.tau, list) else [m.tau]
    if min(taus) < task.dt:
        raise ValueError(f"model.tau ({min(taus):g} ms) must be >= task.dt ({task.dt:g} ms)")


def _connectome_memory(m: Any, task: Task, batch: int, steps: int) -> tuple[int, str, str, str]:
    c = m.connectome.load()
    n, nnz = c.n, c.nnz
    params = nnz + n * (task.n_input + task.n_output + 2)
    return (training_bytes(params, n, batch, steps),
            f"a ConnectomeRNN of {n} neurons and {nnz} connections", "model.connectome",
            "the number of neurons (a smaller connectome, model.connectome.source)")


def _build_connectome(m: Any, task: Task, g: torch.Generator) -> torch.nn.Module:
    from bionn.rate import ConnectomeRNN

    kwargs = m.constructor_kwargs(MODEL_KINDS["connectome"])
    return ConnectomeRNN(m.connectome.load(), task.n_input, task.n_output, dt=task.dt,
                         generator=g, tau=m.tau, **kwargs)


def _register_connectome() -> None:
    from bionn.rate import ConnectomeRNN

    params = inspect.signature(ConnectomeRNN).parameters
    register_model_kind(
        "connectome", ConnectomeRNN, _build_connectome, check=_check_connectome,
        memory=_connectome_memory,
        replace={"connectome": (ConnectomeSource, Field(default_factory=ConnectomeSource)),
                 "tau": (float | list[float], params["tau"].default)},
        bounds={"preact_noise": {"ge": 0}, "gain": {"gt": 0}},
        choices={k: v for k, v in (("tau_mode", ("type", "neuron")),
                                   ("bias_mode", ("type", "neuron")),
                                   ("weight_sharing", ("edge", "type"))) if k in params},
    )


# --------------------------------------------------------------------------------------------
# spiking
# --------------------------------------------------------------------------------------------
def _spiking_cell_options(m: Any) -> dict[str, Any]:
    return {**m.cell_options, **({"surrogate": m.surrogate} if m.surrogate else {})}


def _check_spiking(m: Any, task: Task) -> None:
    from bionn.spiking import SpikingCell

    # one neuron, or n_hidden where a parameter is given per neuron (e.g. ALIF's beta)
    n = m.n_hidden if any(isinstance(v, list) for v in m.cell_options.values()) else 1
    try:  # the cell's own checks (names, time constants, surrogate) before any work
        cell = SpikingCell(m.cell, n, dt=task.dt, **_spiking_cell_options(m))
    except (TypeError, ValueError) as e:
        raise ValueError(f"model.cell_options: {e}") from None
    if m.method == "eprop":
        _check_eprop_cell(m, cell)


def _check_eprop_cell(m: Any, cell: Any) -> None:
    """Refuse, naming the field, a spiking model that e-prop cannot train (its model:
    LIF/ALIF, delta synapse, no refractory period, reset derivative neglected, no noise)."""
    from bionn.spiking import ALIF, LIF

    problems = []
    if type(cell.neuron) not in (LIF, ALIF):
        problems.append(f"model.cell: {m.cell!r} (e-prop trains 'LIF' or 'ALIF')")
    if cell.synapse != "delta":
        problems.append(f"model.cell_options.synapse: {cell.synapse!r} (e-prop needs 'delta')")
    if cell.refractory:
        problems.append("model.cell_options.t_refractory: a refractory period (e-prop needs "
                        "t_refractory: 0.0)")
    if not cell.detach_reset:
        problems.append("model.cell_options.detach_reset: false (e-prop neglects the reset's "
                        "derivative)")
    if bool((cell.neuron.noise != 0).any()):
        problems.append("model.cell_options.noise: membrane noise (e-prop needs noise: 0)")
    if problems:
        raise ValueError("model.method: 'eprop' cannot train this spiking model: "
                         + "; ".join(problems))


# per step: V, the synaptic current, spikes and the refractory count, with gradients
_spiking_memory = dense_rnn_memory("a spiking RNN of {n} neurons", tensors_per_unit=2)


def _build_spiking(m: Any, task: Task, g: torch.Generator) -> torch.nn.Module:
    from bionn.spiking import SpikingRNN

    kwargs = m.constructor_kwargs(MODEL_KINDS["spiking"])
    kwargs["cell"] = m.cell  # replaced fields: constructor_kwargs leaves them out
    circuit = m.connectivity
    if circuit is not None:
        built = build_circuit(circuit, m.n_hidden, task.n_input, task.n_output).build(g)
        kwargs["connectivity"] = built.recurrent
        if kwargs.get("input_mask") is None and built.input_mask is not None:
            kwargs["input_mask"] = built.input_mask
    kwargs.pop("cell_options", None)
    kwargs.pop("surrogate", None)
    return SpikingRNN(task.n_input, n_output=task.n_output, dt=task.dt, generator=g,
                      **kwargs, **_spiking_cell_options(m))


def _register_spiking() -> None:
    from bionn.spiking import TRAINABLE_NEURONS, SpikingRNN

    register_model_kind(
        "spiking", SpikingRNN, _build_spiking, check=_check_spiking, memory=_spiking_memory,
        replace={"cell": (str, "LIF"), "connectivity": (CircuitConfig | None, None)},
        choices={"cell": tuple(TRAINABLE_NEURONS), "readout": ("membrane", "linear")},
        bounds={"n_hidden": {"gt": 0}, "e_fraction": {"gt": 0, "lt": 1},
                "tau_out": {"gt": 0}, "input_gain": {"ge": 0}, "recurrent_gain": {"ge": 0}},
        extra={"surrogate": (str | None, Field(None, description="fast_sigmoid, arctan, "
                                                            "triangle, exponential, sigmoid")),
               "cell_options": (dict[str, Any], Field(
                   default_factory=dict,
                   description="SpikingCell options and neuron parameters (reset, synapse, "
                               "tau_syn, learn, tau, V_th, t_refractory, ...)"))},
    )


_register_ctrnn()
_register_connectome()
_register_spiking()


def model_section_type(kind: str) -> type[BaseModel]:
    """The config class of ``model.kind: kind`` (raises ``ValueError`` naming the kinds)."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; allowed: {sorted(MODEL_KINDS)}")
    return MODEL_KINDS[kind].config


# --------------------------------------------------------------------------------------------
# recurrent classifiers (classification runs: ``model.architecture``)
# --------------------------------------------------------------------------------------------
class RecurrentImageClassifier(torch.nn.Module):
    """A recurrent network of the core that sees an image for ``steps`` steps (or a movie,
    ``(batch, T, C, H, W)``, step by step); its logits are the mean output of the last
    ``readout_steps`` steps. The network is a submodule, so credit assignment,
    synaptic diversity and the regularisers reach it through its protocol."""

    def __init__(self, net: torch.nn.Module, steps: int, readout_steps: int) -> None:
        super().__init__()
        if steps < 1 or not 1 <= readout_steps <= steps:
            raise ValueError(f"need steps >= 1 and 1 <= readout_steps <= steps; got steps={steps}, "
                             f"readout_steps={readout_steps}")
        self.net, self.steps, self.readout_steps = net, int(steps), int(readout_steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.net(x, steps=self.steps) if x.dim() == 4 else self.net(x)
        return out[:, -self.readout_steps:].mean(1)


def spatial_network(in_channels: int, input_size: int, num_classes: int, *, motif: str = "E-I",
                    channels: int | None = None, sizes: list[list[int]] | None = None,
                    steps: int = 8, readout_steps: int = 2, top_down: list[dict] | None = None,
                    **network: Any) -> torch.nn.Module:
    """A :class:`bionn.rate.SpatialNetwork` of a motif's cell types (``motif``, ``channels``
    per type) on ``sizes`` (default two areas: the image's and half of it), with
    ``top_down`` projections (dicts of :class:`bionn.rate.TopDown`'s fields), classifying
    from its last ``readout_steps`` of ``steps``. Other keys go to ``SpatialNetwork``
    (checked against its signature)."""
    from bionn.circuits import motif as make_motif
    from bionn.rate import SpatialNetwork, TopDown

    allowed = set(spatial_network_arguments())
    bad = sorted(set(network) - allowed)
    if bad:
        raise TypeError(f"unknown argument(s) {bad}; allowed: {sorted(allowed)}")
    sizes = sizes or [[input_size, input_size], [max(1, input_size // 2)] * 2]
    table = make_motif(motif) if channels is None else make_motif(motif, channels=channels)
    projections = [TopDown(**d) for d in (top_down or [])]
    net = SpatialNetwork(table, [tuple(s) for s in sizes], in_channels, num_classes,
                         top_down=projections, **network)
    return RecurrentImageClassifier(net, steps, readout_steps)


def spatial_network_arguments() -> list[str]:
    """``SpatialNetwork``'s keyword arguments a config may give through ``spatial_network``."""
    from bionn.rate import SpatialNetwork

    taken = {"tables", "sizes", "in_channels", "n_output", "top_down", "generator"}
    return [k for k in inspect.signature(SpatialNetwork).parameters if k not in taken]


#: encodings of a :class:`SpikingClassifier`'s input
SPIKING_ENCODINGS = ("current", "poisson", "latency", "population")


class SpikingClassifier(torch.nn.Module):
    r"""A spiking network that classifies a static input (or a sequence): the input is
    presented for ``steps`` steps (``encoding``), the spiking layers respond, and a leaky
    readout's membrane, reduced over time (``reduce``), gives the logits.

    Encodings of a ``(batch, features)`` input ``x`` in [0, 1]: ``"current"`` (``x`` as a
    constant input current at every step), ``"poisson"`` (:func:`bionn.tasks.poisson_encode`
    at ``max_rate`` Hz), ``"latency"`` (:func:`bionn.tasks.latency_encode`: one spike, earlier
    for larger values), ``"population"`` (:meth:`population_code`: each value as the
    currents of ``P`` Gaussian tuning curves, constant over the ``steps``). With
    ``sequence=True`` a ``(batch, L)`` input is a signal of ``L`` samples, each shown for
    ``steps`` steps: as one current channel (``"current"``, ``(batch, L * steps, 1)``) or
    through the population code (``"population"``, ``(batch, L * steps, P)``)."""

    def __init__(self, layers: torch.nn.ModuleList, readout: torch.nn.Module, *, steps: int,
                 dt: float, encoding: str, max_rate: float, sequence: bool, reduce: str,
                 recurrent: bool, centres: torch.Tensor | None = None, width: float = 1.0) -> None:
        super().__init__()
        self.layers, self.readout = layers, readout
        self.steps, self.dt, self.encoding, self.max_rate = int(steps), float(dt), encoding, max_rate
        self.sequence, self.reduce, self.recurrent = bool(sequence), reduce, bool(recurrent)
        self.register_buffer("centres", None if centres is None else torch.as_tensor(centres, dtype=torch.get_default_dtype()))
        self.width = float(width)

    def population_code(self, x: torch.Tensor) -> torch.Tensor:
        r"""Gaussian tuning curves (receptive fields over the value range): channel ``k`` of
        a value ``x`` carries the current

            I_k(x) = exp(-(x - c_k)^2 / (2 sigma^2))      (dimensionless, in (0, 1])

        with ``P`` centres ``c_k`` spaced evenly over ``population_range`` (in the units of
        ``x``; values outside the range drive the outermost curves) and ``sigma`` the
        ``population_width`` times their spacing. ``x`` ``(..., F)`` gives ``(..., F * P)``
        (feature-major: the ``P`` channels of feature 0 first)."""
        z = (x.unsqueeze(-1) - self.centres) / self.width
        return torch.exp(-0.5 * z * z).flatten(-2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The input current of every step: ``(batch, steps, n_in)`` from a static
        ``(batch, features)`` input, ``(batch, L * steps, n_in)`` from a ``(batch, L)``
        sequence (``n_in``: ``features``, or ``1`` for a sequence, times ``P`` for the
        population code)."""
        from bionn.tasks import latency_encode, poisson_encode

        if self.sequence:  # (batch, L) -> (batch, L * steps, channels)
            x = x.flatten(1).unsqueeze(-1)
            if self.encoding == "population":
                x = self.population_code(x)
            return x.repeat_interleave(self.steps, dim=1)
        x = x.flatten(1)
        if self.encoding in ("current", "population"):
            if self.encoding == "population":
                x = self.population_code(x)
            return x.unsqueeze(1).expand(-1, self.steps, -1)
        if self.encoding == "poisson":
            return poisson_encode(x.clamp(0, 1), self.steps, max_rate=self.max_rate, dt=self.dt)
        return latency_encode(x.clamp(0, 1), self.steps, dt=self.dt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encode(x)
        for layer in self.layers:
            h = layer(h)[1] if self.recurrent else layer(h)
        out = self.readout(h)
        if self.reduce == "max":
            return out.max(1).values
        return out[:, -1] if self.reduce == "last" else out.mean(1)


def spiking_classifier(in_features: int, num_classes: int, *, hidden: list[int] | None = None,
                       steps: int = 30, dt: float = 1.0, encoding: str = "current",
                       max_rate: float = 200.0, sequence: bool = False, recurrent: bool = False,
                       cell: str = "LIF", readout_tau: float = 20.0, reduce: str = "max",
                       e_fraction: float | None = None, population: int = 16,
                       population_range: list[float] | tuple[float, float] = (-3.0, 3.0),
                       population_width: float = 1.0, **cell_options: Any) -> torch.nn.Module:
    """A :class:`SpikingClassifier`: ``hidden`` sizes of :class:`bionn.spiking.SpikingLayer`
    (or, ``recurrent=True``, one :class:`bionn.spiking.SpikingRNN` of ``hidden[0]`` neurons,
    with Dale's law at ``e_fraction``) of ``cell`` neurons, and a
    :class:`bionn.spiking.LeakyReadout` (``readout_tau`` ms) whose membrane, reduced over
    time by ``reduce`` (max, mean, last), gives the logits. ``cell_options``: the cell's
    options and neuron parameters (surrogate, reset, synapse, tau, V_th, ...).

    ``encoding="population"``: each input value ``x`` becomes ``population`` (``P >= 2``)
    input currents ``I_k = exp(-(x - c_k)^2 / (2 sigma^2))``, the centres ``c_k`` spaced
    evenly over ``population_range`` ``[lo, hi]`` (units of ``x``; MNIST-1D is standardised,
    so about [-3, 3]) and ``sigma = population_width * (hi - lo) / (P - 1)``; the network
    sees ``P`` input channels per feature (a sequence: ``(batch, L * steps, P)``)."""
    from bionn.spiking import LeakyReadout, SpikingLayer, SpikingRNN

    if encoding not in SPIKING_ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(SPIKING_ENCODINGS)}; got {encoding!r}")
    if reduce not in ("max", "mean", "last"):
        raise ValueError(f"reduce must be max, mean or last; got {reduce!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    centres, width = None, 1.0
    if encoding == "population":
        if isinstance(population, bool) or not isinstance(population, int) or population < 2:
            raise ValueError(f"population (tuning curves per value) must be an integer >= 2; "
                             f"got {population!r}")
        if isinstance(population_range, str) or len(population_range) != 2:
            raise ValueError(f"population_range must be [lo, hi]; got {population_range!r}")
        lo, hi = (float(v) for v in population_range)
        if not lo < hi:
            raise ValueError(f"population_range must be [lo, hi] with lo < hi; got {list(population_range)}")
        if not population_width > 0:
            raise ValueError(f"population_width must be > 0 (times the centre spacing); got {population_width!r}")
        centres = torch.linspace(lo, hi, population)
        width = float(population_width) * (hi - lo) / (population - 1)
    elif encoding != "current" and sequence:
        raise ValueError(f"a sequence is encoded as current or population; got encoding {encoding!r}")
    hidden = list(hidden or [120])
    n_in = (1 if sequence else in_features) * (population if encoding == "population" else 1)
    if recurrent:
        if len(hidden) != 1:
            raise ValueError(f"a recurrent spiking classifier has one hidden size; got {hidden}")
        layers = [SpikingRNN(n_in, hidden[0], num_classes, cell=cell, dt=dt, readout="linear",
                             e_fraction=e_fraction, **cell_options)]
    else:
        sizes = [n_in, *hidden]
        layers = [SpikingLayer(a, b, cell, dt=dt, **cell_options) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    readout = LeakyReadout(hidden[-1], num_classes, dt=dt, tau=readout_tau)
    return SpikingClassifier(torch.nn.ModuleList(layers), readout, steps=steps, dt=dt,
                             encoding=encoding, max_rate=max_rate, sequence=sequence,
                             reduce=reduce, recurrent=recurrent, centres=centres, width=width)


#: recurrent architectures for classification runs, beside :data:`bionn.models.MODELS`
RECURRENT_CLASSIFIERS: dict[str, Callable[..., torch.nn.Module]] = {
    "spatial_network": spatial_network, "spiking": spiking_classifier}
