"""Base class of neuron groups and the synaptic drive they receive.

A neuron group is an ``nn.Module`` holding parameters as buffers (a scalar or
one value per neuron) and pure step logic on an explicit state: a dict of
``(batch, n)`` tensors. The integrated variables are listed in
``variables``; ``spike`` (bool) is always present for spiking models and
``refractory`` (steps left, stored as float so the hot path needs no
integer or bool arithmetic) where the model has a refractory period.

Input arrives as a :class:`Drive`, affine in the membrane potential:
``I_syn(V) = current - conductance * V``. Current-based synapses add to
``current``; conductance-based ones add ``g E`` to ``current`` and ``g`` to
``conductance``, so the current always drives V toward the reversal potential
E, and exponential Euler stays exact for conductance-based LIF.

Everything a step reads besides the state and the parameters arrives in a
:class:`StepContext` (time, dt, the random generator, read-once parameter
values, the spike events reaching a projection); models keep nothing between
steps and write nothing into their attributes during one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from bionn.functional.integrators import INTEGRATORS

State = dict[str, Tensor]


class Drive(NamedTuple):
    """Input to a neuron group, affine in V: ``I(V) = current - conductance * V``."""

    current: Tensor | float = 0.0
    conductance: Tensor | float = 0.0

    def at(self, v: Tensor) -> Tensor:
        """The input current at membrane potential ``v``."""
        if isinstance(self.conductance, float) and self.conductance == 0.0:
            return torch.as_tensor(self.current, dtype=v.dtype, device=v.device).expand_as(v)
        return self.current - self.conductance * v


class StepConstants(dict):
    """Parameter values read once for a run at one ``dt``: ``id(module) -> module.constants(dt)``.

    Built by :meth:`~bionn.spiking.Network.constants` (or
    :meth:`~bionn.spiking.Network.context`). A model finds its own entry with
    :func:`constants_of`; one without an entry reads its parameters at every
    step, with the same result. The values are those of the parameters when the
    constants were built: build new ones after changing a parameter.
    """

    def __init__(self, dt: float, items: Mapping[int, Any] | None = None) -> None:
        super().__init__(items or {})
        self.dt = float(dt)


class StepContext(NamedTuple):
    """What one step reads besides the state and the parameters.

    Attributes:
        t: time at the start of the step (ms); time-dependent inputs are read at ``t``.
        dt: the time step (ms).
        generator: the generator every stochastic model (noise, Poisson sources)
            draws from in this step; ``None``: the global RNG.
        constants: read-once parameter values (:class:`StepConstants`, from
            :meth:`Network.context <bionn.spiking.Network.context>`) for a fast
            loop; ``None``: every model reads its parameters now.
        events: set by the network for the projection it updates: ``(spikes,
            trial, neuron)``, the spikes arriving at that projection and their
            nonzero indices, so that deliveries do not search them again.
            ``None``: computed from the spikes where needed.

    Example:
        >>> ctx = StepContext(0.0, 0.1, torch.Generator().manual_seed(0))
        >>> ctx.at(0.2).t, ctx.dt
        (0.2, 0.1)
    """

    t: float
    dt: float
    generator: torch.Generator | None = None
    constants: StepConstants | None = None
    events: tuple[Tensor, Tensor, Tensor] | None = None

    def at(self, t: float) -> StepContext:
        """The same context at time ``t`` (ms)."""
        return StepContext(t, self.dt, self.generator, self.constants, None)


def constants_of(module: nn.Module, ctx: StepContext | None) -> Any:
    """``module``'s entry in ``ctx.constants`` (``None`` without a context or an entry)."""
    if ctx is None:
        return None
    c = ctx.constants
    return None if c is None else c.get(id(module))


InitValue = float | str | tuple | Tensor


class NeuronGroup(nn.Module):
    """A population of ``n`` identical-model neurons.

    Subclasses set ``variables`` (integrated state), ``defaults`` (parameter
    name -> value, from the reference), ``initial`` (variable -> initial value),
    ``default_method`` and implement :meth:`derivatives` (and
    :meth:`linear` for exponential Euler) and, for spiking models,
    :meth:`spike_and_reset`.

    Args:
        n: number of neurons.
        method: integrator name (``euler``, ``exp_euler``, ``rk2``/``heun``,
            ``rk4``, or ``exact`` for linear equations); default per model.
        initial: overrides of initial values per variable: a number, a
            ``(low, high)`` pair for a uniform draw, ``("normal", mean, std)``, a parameter name (e.g.
            ``"V_rest"``), or a tensor of shape ``(n,)`` or ``(batch, n)``.
        **params: model parameters, each a number or a ``(n,)`` tensor.
    """

    variables: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[dict[str, float]] = {}
    initial_values: ClassVar[dict[str, InitValue]] = {}
    default_method: ClassVar[str] = "euler"
    methods: ClassVar[tuple[str, ...]] = ("euler", "exp_euler", "rk2", "heun", "rk4")
    spiking: ClassVar[bool] = True
    has_refractory: ClassVar[bool] = False
    #: (method, largest stable dt in ms) pairs; a larger dt warns (see :meth:`check_dt`).
    stable_dt: ClassVar[dict[str, float]] = {}

    def __init__(self, n: int, *, method: str | None = None, initial: dict[str, InitValue] | None = None,
                 **params: Any) -> None:
        super().__init__()
        if int(n) <= 0:
            raise ValueError(f"{type(self).__name__}: n must be a positive integer; got {n}")
        self.n = int(n)
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown parameter(s) {unknown}; "
                f"allowed: {sorted(self.defaults)}"
            )
        for name, default in self.defaults.items():
            value = params.get(name, default)
            t = torch.as_tensor(value, dtype=torch.get_default_dtype())
            if t.dim() > 1 or (t.dim() == 1 and t.shape[0] not in (1, self.n)):
                raise ValueError(
                    f"{type(self).__name__}: parameter {name} must be a number or have {self.n} "
                    f"entries (one per neuron); got shape {tuple(t.shape)}"
                )
            self.register_buffer(name, t)
        self.method = method or self.default_method
        allowed = self.methods
        if self.method not in allowed or self.method not in INTEGRATORS:
            raise ValueError(
                f"{type(self).__name__}: method {self.method!r} is not available; allowed: {list(allowed)}"
            )
        init = dict(self.initial_values)
        unknown = sorted(set(initial or {}) - set(init))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}: initial values given for unknown variable(s) {unknown}; "
                f"variables: {sorted(init)}"
            )
        init.update(initial or {})
        self.initial = init

    # -- parameters -------------------------------------------------------
    def param(self, name: str) -> float:
        """A scalar parameter's value as a Python float (error if per-neuron)."""
        t = getattr(self, name)
        if t.numel() != 1:
            raise ValueError(f"{type(self).__name__}.{name} is per-neuron; expected a scalar here")
        return float(t)

    def extra_repr(self) -> str:
        shown = []
        for name in self.defaults:
            t = getattr(self, name)
            shown.append(f"{name}={float(t):g}" if t.numel() == 1 else f"{name}=<{t.numel()} values>")
        return f"n={self.n}, method={self.method!r}, " + ", ".join(shown)

    # -- state -----------------------------------------------------------
    def initial_state(self, batch: int = 1, *, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> State:
        """The initial state: ``(batch, n)`` tensors per variable (+ ``spike``/``refractory``)."""
        ref = next(iter(self.buffers()), None)
        dtype = dtype or (ref.dtype if ref is not None else torch.get_default_dtype())
        device = device if device is not None else (ref.device if ref is not None else None)
        state: State = {}
        for name, value in self.initial.items():
            state[name] = _initial_tensor(value, batch, self.n, generator, device, dtype, self, name)
        if self.spiking:
            state["spike"] = torch.zeros(batch, self.n, dtype=torch.bool, device=device)
        if self.has_refractory:
            state["refractory"] = torch.zeros(batch, self.n, dtype=dtype, device=device)
        return state

    def constants(self, dt: float) -> Any:
        """Values this model reads from its parameters at every step, read once for a
        run at ``dt`` (see :class:`StepConstants`); ``None``: nothing worth reading once."""
        return None

    def check_dt(self, dt: float) -> None:
        """Raise for a dt at which this model's integrator is known to diverge."""
        limit = self.stable_dt.get(self.method)
        if limit is not None and dt > limit:
            raise ValueError(
                f"{type(self).__name__} with method={self.method!r} is unstable at dt={dt} ms "
                f"(largest stable dt about {limit} ms); use a smaller dt or method='exp_euler'"
            )

    # -- dynamics ----------------------------------------------------------
    def derivatives(self, state: State, drive: Drive) -> State:  # pragma: no cover - abstract
        raise NotImplementedError

    def linear(self, state: State, drive: Drive) -> State:
        raise NotImplementedError(f"{type(self).__name__} has no exponential-Euler form")

    def integrate(self, state: State, drive: Drive, dt: float) -> State:
        """Advance the integrated variables by ``dt`` with :attr:`method`."""
        f = lambda s: self.derivatives(s, drive)  # noqa: E731
        lin = (lambda s: self.linear(s, drive)) if self.method in ("exp_euler", "exact") else None
        return INTEGRATORS[self.method](f, lin, state, dt)

    def spike_and_reset(self, old: State, new: State, dt: float) -> State:
        """Threshold, reset and refractoriness after integration (spiking models)."""
        return new

    def forward(self, state: State, drive: Drive, dt: float, ctx: StepContext | None = None) -> State:
        """One step: integrate, then spike/reset. Returns the new state.

        ``ctx`` (a :class:`StepContext`) gives stochastic models their generator
        and every model its read-once constants; nothing is stored in the module.
        """
        new = self.integrate(state, drive, dt)
        return self.spike_and_reset(state, new, dt)

    # shared helpers for integrate-and-fire models -------------------------
    def refractory_steps(self, t_ref: Tensor, dt: float) -> Tensor:
        return torch.round(t_ref / dt).to(torch.int32)

    def threshold_reset(self, old: State, new: State, dt: float, *, v_th: Tensor, v_reset: Tensor,
                        t_ref: Tensor | None = None, extra_reset=None) -> State:
        """Hold V while refractory, spike at ``V >= v_th``, reset to ``v_reset``."""
        v = new["V"]
        if t_ref is not None:
            frozen = old["refractory"] > 0
            v = torch.where(frozen, old["V"], v)
            spike = (v >= v_th) & ~frozen
            steps = self.refractory_steps(t_ref, dt).to(old["refractory"])
            new["refractory"] = torch.where(spike, steps.expand_as(v),
                                            (old["refractory"] - 1).clamp_min_(0))
        else:
            spike = v >= v_th
        new["V"] = torch.where(spike, v_reset, v)
        new["spike"] = spike
        if extra_reset is not None:
            extra_reset(new, spike)
        return new


def _initial_tensor(value: InitValue, batch: int, n: int, generator, device, dtype, group, name) -> Tensor:
    if isinstance(value, Tensor):
        t = value.to(device=device, dtype=dtype)
        if t.shape not in ((), (n,), (batch, n)):
            raise ValueError(
                f"{type(group).__name__}: initial {name} has shape {tuple(t.shape)}; "
                f"expected (), ({n},) or ({batch}, {n})"
            )
        return t.expand(batch, n).clone()
    if isinstance(value, (tuple, list)) and len(value) == 3 and value[0] == "normal":
        z = torch.randn(batch, n, generator=generator, dtype=dtype)
        return (float(value[1]) + float(value[2]) * z).to(device)
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not value[0] <= value[1]:
            raise ValueError(
                f"{type(group).__name__}: initial {name} must be a number or a (low, high) pair; got {value}"
            )
        u = torch.rand(batch, n, generator=generator, dtype=dtype)
        return (value[0] + (value[1] - value[0]) * u).to(device)
    if isinstance(value, str):  # the value of a parameter, e.g. "V_rest"
        t = getattr(group, value).to(device=device, dtype=dtype)
        return t.expand(batch, n).clone()
    if not math.isfinite(float(value)):
        raise ValueError(f"{type(group).__name__}: initial {name} must be finite; got {value}")
    return torch.full((batch, n), float(value), device=device, dtype=dtype)
