"""Spiking and rate neuron models with BrainPy-Models' equations and defaults.

Defaults are those of ``bpmodels`` 0.2.3 (see ``docs/spiking.md`` for where
later BrainPy versions differ and which parameter selects their behaviour).
Every model takes ``(batch, n)`` state tensors and a :class:`Drive`; time is in
ms, voltages in mV.

Shared conventions:

- Default integrator: ``exp_euler`` for linear models (LIF, GIF) and for
  conductance-based models (HH family), which are stiff; ``euler`` (the
  BrainPy 0.3.x default that bpmodels ran with) for the other nonlinear models.
  ``linear`` gives the diagonal Jacobian entry ``d f_x / d x`` (as BrainPy's
  exponential Euler); for :class:`WangBuzsakiHH` it leaves out the ``m_inf(V)``
  term (conditionally linear form, as Brian2).
- Update order: bpmodels updates the gates of :class:`HH` and the adaptation
  ``w`` of :class:`AdExIF` / :class:`AdQuaIF` first and then V from the new
  values. These classes take ``order="sequential"`` (that) or ``"joint"`` (all
  derivatives from the old state: Brian2, BrainPy 2.x); the default is
  sequential for ``euler``/``exp_euler`` and joint for ``rk2``/``rk4``, whose
  order a splitting would destroy. Every other model is joint, as in bpmodels.
- Spikes: integrate-and-fire models spike at ``V >= V_th`` after the update
  (then reset and hold V and the adaptation variable for ``t_refractory``);
  HH-type models and the models without a reset spike on an upward crossing,
  ``V_old < V_th <= V_new``.
- Noise (``noise`` parameter, default 0): bpmodels' SDE form, Euler-Maruyama
  ``x += (noise / tau_x) sqrt(dt) N(0, 1)`` after the deterministic step, drawn
  from the generator of the step's :class:`~bionn.spiking.base.StepContext`
  (``ctx.generator``; :meth:`Network.run` passes its own, ``None`` is the global
  RNG). A group holds no generator. ``noise`` is read when the group is built.
- Initial values are consistent with the parameters: ExpIF, QuaIF, AdExIF and
  AdQuaIF start at ``V_rest`` (bpmodels starts them at V = 0, far above
  threshold: reproduce with ``initial={"V": 0.0}``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from bionn.functional.integrators import INTEGRATORS, phi1
from bionn.functional.spiking import lif_exact_step
from bionn.spiking.base import Drive, InitValue, NeuronGroup, State, StepContext, constants_of


def _x_expm1(x: Tensor) -> Tensor:
    """``x / (exp(x) - 1)`` (``1 / exprel(x)``), 1 at x = 0: the 0/0 of HH rate functions."""
    zero = x == 0
    safe = torch.where(zero, 1.0, x)
    return torch.where(zero, 1.0, safe / torch.expm1(safe))


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    if generator is None:
        return torch.randn_like(x)
    z = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
    return z.to(x.device)


def _generator_of(group: NeuronGroup, ctx: StepContext | None) -> torch.Generator | None:
    """The generator a step draws from: the context's (no context: the global RNG)."""
    return ctx.generator if ctx is not None else None


def _only(fn, keys: tuple[str, ...]):
    if fn is None:
        return None
    return lambda s: {k: v for k, v in fn(s).items() if k in keys}


def _crossing(old: State, new: State, v_th: Tensor) -> Tensor:
    """Upward crossing within the step: ``V_old < v_th <= V_new``."""
    return (old["V"] < v_th) & (new["V"] >= v_th)


class _Neuron(NeuronGroup):
    """Shared machinery: noise, derived initial values, fused exponential Euler.

    ``noise_terms`` maps a variable to the parameter dividing ``noise`` in its
    noise amplitude (``None``: no divisor). ``derived_initial`` maps a variable to
    the names of initial values computed from the rest of the initial state
    (e.g. ``"b*V"``, ``"steady"``) by :meth:`derive_initial`.
    """

    noise_terms: ClassVar[dict[str, str | None]] = {}
    derived_initial: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, n: int, *, method: str | None = None,
                 initial: dict[str, InitValue] | None = None, **params: Any) -> None:
        super().__init__(n, method=method, initial=initial, **params)
        for name, value in self.initial.items():
            if isinstance(value, str) and value not in self.defaults \
                    and value not in self.derived_initial.get(name, ()):
                allowed = sorted(self.defaults) + list(self.derived_initial.get(name, ()))
                raise ValueError(
                    f"{type(self).__name__}: initial {name}={value!r} is not a parameter name or a "
                    f"derived initial value; allowed strings: {allowed}"
                )
        self._noisy = "noise" in self.defaults and bool((self.noise != 0).any())

    def initial_state(self, batch: int = 1, *, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        derived = {k: v for k, v in self.initial.items()
                   if isinstance(v, str) and v not in self.defaults}
        if not derived:
            return super().initial_state(batch, generator=generator, device=device, dtype=dtype)
        saved = self.initial
        self.initial = {k: (0.0 if k in derived else v) for k, v in saved.items()}
        try:
            state = super().initial_state(batch, generator=generator, device=device, dtype=dtype)
        finally:
            self.initial = saved
        for k, v in derived.items():
            state[k] = self.derive_initial(k, v, state)
        return state

    def derive_initial(self, name: str, how: str, state: State) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def derivatives_linear(self, state: State, drive: Drive) -> tuple[State, State]:
        """Derivatives and exponential-Euler coefficients (override to share work)."""
        return self.derivatives(state, drive), self.linear(state, drive)

    def _step(self, state: State, drive: Drive, dt: float, keys: tuple[str, ...] | None = None):
        if self.method in ("exp_euler", "exact"):
            d, a = self.derivatives_linear(state, drive)
            new = dict(state)
            for k, dk in d.items():
                if keys is None or k in keys:
                    new[k] = state[k] + dt * dk * phi1(a[k] * dt)
            return new
        f = lambda s: self.derivatives(s, drive)  # noqa: E731
        return INTEGRATORS[self.method](f if keys is None else _only(f, keys), None, state, dt)

    def integrate(self, state: State, drive: Drive, dt: float) -> State:
        return self._step(state, drive, dt)

    def add_noise(self, new: State, dt: float, generator: torch.Generator | None = None) -> State:
        """Euler-Maruyama noise on ``noise_terms``, drawn from ``generator`` (None: global RNG)."""
        for var, div in self.noise_terms.items():
            amp = self.noise if div is None else self.noise / getattr(self, div)
            new[var] = new[var] + amp * math.sqrt(dt) * _randn_like(new[var], generator)
        return new

    def forward(self, state: State, drive: Drive, dt: float, ctx: StepContext | None = None) -> State:
        new = self.integrate(state, drive, dt)
        if self._noisy:
            new = self.add_noise(new, dt, _generator_of(self, ctx))
        return self.spike_and_reset(state, new, dt)

    def if_reset(self, old: State, new: State, dt: float, *, v_th: Tensor, v_reset: Tensor,
                 t_ref: Tensor, jumps: dict[str, Tensor] | None = None) -> State:
        """IF threshold and reset; ``jumps`` variables are held while refractory, jump at a spike."""
        jumps = jumps or {}
        frozen = old["refractory"] > 0
        for k in jumps:
            new[k] = torch.where(frozen, old[k], new[k])

        def extra(new: State, spike: Tensor) -> None:
            for k, j in jumps.items():
                new[k] = torch.where(spike, new[k] + j, new[k])

        return self.threshold_reset(old, new, dt, v_th=v_th, v_reset=v_reset, t_ref=t_ref,
                                    extra_reset=extra)


class _Ordered(_Neuron):
    """Models that bpmodels updates in two stages (``first``, then the rest)."""

    first: ClassVar[tuple[str, ...]] = ()

    def __init__(self, n: int, *, order: str | None = None, **kwargs: Any) -> None:
        super().__init__(n, **kwargs)
        if order is None:
            order = "sequential" if self.method in ("euler", "exp_euler") else "joint"
        if order not in ("sequential", "joint"):
            raise ValueError(f"{type(self).__name__}: order must be 'sequential' or 'joint'; "
                             f"got {order!r}")
        self.order = order

    def extra_repr(self) -> str:
        return super().extra_repr() + f", order={self.order!r}"

    def after_stage(self, state: State) -> State:
        return state

    def integrate(self, state: State, drive: Drive, dt: float) -> State:
        if self.order == "joint":
            return self.after_stage(self._step(state, drive, dt))
        rest = tuple(v for v in self.variables if v not in self.first)
        mid = self.after_stage(self._step(state, drive, dt, self.first))
        return self.after_stage(self._step(mid, drive, dt, rest))


# ---------------------------------------------------------------------------
# Integrate-and-fire family
# ---------------------------------------------------------------------------


class LIF(_Neuron):
    """Leaky integrate-and-fire neuron.

    ``tau dV/dt = -(V - V_rest) + R I``; at ``V >= V_th``: spike, ``V <- V_reset``
    and V is held for ``t_refractory`` ms. Defaults from bpmodels 0.2.3
    (``t_refractory = 5``; BrainPy 2.x uses 0, brainmodels 1.0 uses 1).
    The equation is linear, so the default ``exp_euler`` update is exact (a
    fused step, unless ``noise`` > 0: white noise ``noise / tau`` on V, bpmodels).

    Example:
        >>> import torch
        >>> lif = LIF(2)
        >>> s = lif.initial_state(batch=1)
        >>> for _ in range(300):
        ...     s = lif(s, Drive(current=torch.tensor([[25.0, 0.0]])), 0.1)
        >>> s["V"].shape, bool(s["V"][0, 1] == 0.0)
        (torch.Size([1, 2]), True)
    """

    variables = ("V",)
    defaults: ClassVar[dict[str, float]] = {
        "V_rest": 0.0, "V_reset": -5.0, "V_th": 20.0, "R": 1.0, "tau": 10.0, "t_refractory": 5.0,
        "noise": 0.0,
    }
    initial_values: ClassVar[dict] = {"V": "V_rest"}
    default_method = "exp_euler"
    methods = ("exp_euler", "exact", "euler", "rk2", "heun", "rk4")
    has_refractory = True
    noise_terms: ClassVar[dict] = {"V": "tau"}

    def derivatives(self, state: State, drive: Drive) -> State:
        v = state["V"]
        return {"V": (-(v - self.V_rest) + self.R * drive.at(v)) / self.tau}

    def linear(self, state: State, drive: Drive) -> State:
        return {"V": -(1.0 + self.R * drive.conductance) / self.tau + torch.zeros_like(state["V"])}

    def integrate(self, state: State, drive: Drive, dt: float) -> State:
        if self.method not in ("exp_euler", "exact"):
            return NeuronGroup.integrate(self, state, drive, dt)
        # Exact for a drive constant over the step: relax to V_inf at rate (1 + R g) / tau.
        v = state["V"]
        g = drive.conductance
        if isinstance(g, float) and g == 0.0:
            v_inf = self.V_rest + self.R * drive.current
            decay = torch.exp(-dt / self.tau)
        else:
            leak = 1.0 + self.R * g
            v_inf = (self.V_rest + self.R * drive.current) / leak
            decay = torch.exp(-dt / self.tau * leak)
        new = dict(state)
        new["V"] = v_inf + (v - v_inf) * decay
        return new

    def spike_and_reset(self, old: State, new: State, dt: float) -> State:
        return self.threshold_reset(old, new, dt, v_th=self.V_th, v_reset=self.V_reset,
                                    t_ref=self.t_refractory)

    def forward(self, state: State, drive: Drive, dt: float, ctx: StepContext | None = None) -> State:
        consts = constants_of(self, ctx)
        if consts is None:
            consts = self.constants(dt)
        if consts is None or self._noisy:
            return super().forward(state, drive, dt, ctx)
        v, ref, spike = lif_exact_step(state["V"], state["refractory"], drive.current,
                                       drive.conductance, dt=dt, **consts)
        return {**state, "V": v, "refractory": ref, "spike": spike}

    def constants(self, dt: float) -> dict | None:
        """Python-float parameters of the fused exact step at ``dt`` (None: the generic path).

        A pure function of the parameters: read once per run through
        :class:`~bionn.spiking.base.StepConstants`, else at every step.
        """
        if self.method not in ("exp_euler", "exact"):
            return None
        names = ("V_rest", "V_reset", "V_th", "R", "tau", "t_refractory")
        tensors = [getattr(self, k) for k in names]
        if any(t.numel() != 1 for t in tensors):
            return None
        v_rest, v_reset, v_th, r, tau, t_ref = (float(t) for t in tensors)
        return {"v_rest": v_rest, "v_reset": v_reset, "v_th": v_th, "r": r, "tau": tau,
                "refractory_steps": int(round(t_ref / dt))}


class ALIF(LIF):
    """Adaptive LIF: a LIF whose threshold rises with its recent spikes (Bellec et al. 2018, 2020).

    ``tau dV/dt = -(V - V_rest) + R I``, ``db/dt = -b / tau_a``; the threshold is
    ``A = V_th + beta b``; at ``V >= A``: spike, ``V <- V_reset`` (held for
    ``t_refractory`` ms) and ``b <- b + (1 - rho)``, ``rho = exp(-dt / tau_a)``. Per
    step this is Bellec et al.'s discrete update ``b_{t+1} = rho b_t + (1 - rho) z_t``
    with the step's threshold read from ``b`` at the start of the step (so a spike
    raises the threshold from the next step on). ``b`` is a dimensionless spike
    trace (its steady value is the number of spikes per step, 1 for a neuron spiking
    at every step), ``beta`` in mV. Both variables are linear, so the update is exact.
    Defaults: :class:`LIF`'s, ``tau_a = 200`` ms, ``beta = 100`` mV (at dt = 1 ms a
    neuron firing at 20 Hz has ``b ~ 0.02``: its threshold is 2 mV higher; Bellec et
    al.'s ``beta = 1.8`` is in units of their threshold ``0.01``, i.e. 180 thresholds).

    Example:
        >>> import torch
        >>> def count(m):
        ...     s, n = m.initial_state(), 0
        ...     for _ in range(2000):
        ...         s = m(s, Drive(current=40.0), 0.1)
        ...         n += int(s["spike"].sum())
        ...     return n
        >>> count(LIF(1, t_refractory=0.0)), count(ALIF(1, t_refractory=0.0, beta=2000.0))
        (24, 17)
    """

    variables = ("V", "b")
    defaults: ClassVar[dict[str, float]] = {**LIF.defaults, "tau_a": 200.0, "beta": 100.0}
    initial_values: ClassVar[dict] = {"V": "V_rest", "b": 0.0}
    methods = ("exp_euler", "exact")

    def derivatives(self, state: State, drive: Drive) -> State:
        return {**super().derivatives(state, drive), "b": -state["b"] / self.tau_a}

    def linear(self, state: State, drive: Drive) -> State:
        return {**super().linear(state, drive), "b": -1.0 / self.tau_a + torch.zeros_like(state["b"])}

    def integrate(self, state: State, drive: Drive, dt: float) -> State:
        new = super().integrate(state, drive, dt)
        new["b"] = state["b"] * torch.exp(-dt / self.tau_a)
        return new

    def threshold(self, state: State) -> Tensor:
        """The adaptive threshold ``V_th + beta b`` of ``state`` (mV)."""
        return self.V_th + self.beta * state["b"]

    def spike_and_reset(self, old: State, new: State, dt: float) -> State:
        jump = -torch.expm1(-dt / self.tau_a)  # 1 - rho

        def extra(new: State, spike: Tensor) -> None:
            new["b"] = torch.where(spike, new["b"] + jump, new["b"])

        return self.threshold_reset(old, new, dt, v_th=self.threshold(old), v_reset=self.V_reset,
                                    t_ref=self.t_refractory, extra_reset=extra)

    def forward(self, state: State, drive: Drive, dt: float, ctx: StepContext | None = None) -> State:
        return _Neuron.forward(self, state, drive, dt, ctx)

    def constants(self, dt: float) -> None:
        return None


_EXP_CAP = 80.0  # cap of the exponent in ExpIF/AdEx: exp(80) is finite in float32


def _exp_term(v: Tensor, v_t: Tensor, delta: Tensor) -> Tensor:
    return torch.exp(((v - v_t) / delta).clamp(max=_EXP_CAP))


class ExpIF(_Neuron):
    """Exponential integrate-and-fire neuron (Fourcaud-Trocme et al. 2003).

    ``tau dV/dt = -(V - V_rest) + delta_T exp((V - V_T) / delta_T) + R I``;
    at ``V >= V_th``: ``V <- V_reset``, held for ``t_refractory`` ms.
    Defaults: bpmodels 0.2.3 ``get_ExpIF`` (V_th = -30, R = 10, t_refractory = 1.7).
    BrainPy 2.x ``ExpIFRef`` uses V_th = -55, R = 1, tau_ref = 0 (pass those).
    V starts at ``V_rest`` (bpmodels: 0, an immediate spike; ``initial={"V": 0.0}``).
    The exponent is capped at 80 so that intermediate stages cannot overflow.

    Example:
        >>> m = ExpIF(1)
        >>> s = m.initial_state()
        >>> n_spikes = 0
        >>> for _ in range(1000):
        ...     s = m(s, Drive(current=2.0), 0.1)
        ...     n_spikes += int(s["spike"].sum())
        >>> n_spikes > 0
        True
    """

    variables = ("V",)
    defaults: ClassVar[dict[str, float]] = {
        "V_rest": -65.0, "V_reset": -68.0, "V_th": -30.0, "V_T": -59.9, "delta_T": 3.48,
        "R": 10.0, "tau": 10.0, "t_refractory": 1.7, "noise": 0.0,
    }
    initial_values: ClassVar[dict] = {"V": "V_rest"}
    methods = ("euler", "exp_euler", "rk2", "heun", "rk4")
    has_refractory = True
    noise_terms: ClassVar[dict] = {"V": "tau"}

    def derivatives(self, state: State, drive: Drive) -> State:
        v = state["V"]
        spike_term = self.delta_T * _exp_term(v, self.V_T, self.delta_T)
        return {"V": (-(v - self.V_rest) + spike_term + self.R * drive.at(v)) / self.tau}

    def linear(self, state: State, drive: Drive) -> State:
        e = _exp_term(state["V"], self.V_T, self.delta_T)
        return {"V": (-1.0 + e - self.R * drive.conductance) / self.tau}

    def spike_and_reset(self, old: State, new: State, dt: float) -> State:
        return self.if_reset(old, new, dt, v_th=self.V_th, v_reset=self.V_reset,
                             t_ref=self.t_refractory)


class AdExIF(_Ordered):
    """Adaptive exponential integrate-and-fire neuron (Brette & Gerstner 2005).

    ``tau dV/dt = -(V - V_rest) + delta_T exp((V - V_T) / delta_T) - R w + R I``,
    ``tau_w dw/dt = a (V - V_rest) - w``; at ``V >= V_th``: ``V <- V_reset``,
    ``w <- w + b`` (V and w held for ``t_refractory`` ms).
    Defaults: bpmodels 0.2.3 ``get_AdExIF`` (R = 1; brainmodels 1.0: R = 10;
    BrainPy 2.x: V_th = -55). bpmodels integrates w first and V with the new w
    (``order="sequential"``, default with euler); ``order="joint"`` as Brian2.
    V starts at ``V_rest`` (bpmodels: 0; ``initial={"V": 0.0}``), w at 0.

    Example:
        >>> m = AdExIF(1)
        >>> s = m.initial_state()
        >>> for _ in range(2000):
        ...     s = m(s, Drive(current=20.0), 0.1)
        >>> bool(s["w"][0, 0] > 0)
        True
    """

    variables = ("V", "w")
    first = ("w",)
    defaults: ClassVar[dict[str, float]] = {
        "V_rest": -65.0, "V_reset": -68.0, "V_th": -30.0, "V_T": -59.9, "delta_T": 3.48,
        "a": 1.0, "b": 1.0, "R": 1.0, "tau": 10.0, "tau_w": 30.0, "t_refractory": 0.0, "noise": 0.0,
    }
    initial_values: ClassVar[dict] = {"V": "V_rest", "w": 0.0}
    methods = ("euler", "exp_euler", "rk2", "heun", "rk4")
    has_refractory = True
    noise_terms: ClassVar[dict] = {"V": "tau", "w": "tau_w"}

    def derivatives(self, state: State, drive: Drive) -> State:
        v, w = state["V"], state["w"]
        spike_term = self.delta_T * _exp_term(v, self.V_T, self.delta_T)
        return {
            "V": (-(v - self.V_rest) + spike_term - self.R * w + self.R * drive.at(v)) / self.tau,
            "w": (self.a * (v - self.V_rest) - w) / self.tau_w,
        }

    def linear(self, state: State, drive: Drive) -> State:
        e = _exp_term(state["V"], self.V_T, self.delta_T)
        return {"V": (-1.0 + e - self.R * drive.conductance) / self.tau,
                "w": -1.0 / self.tau_w + torch.zeros_like(state["w"])}

    def spike_and_reset(self, old: State, new: State, dt: float) -> State:
        return self.if_reset(old, new, dt, v_th=self.V_th, v_reset=self.V_reset,
                             t_ref=self.t_refractory, jumps={"w": self.b})


class QuaIF(_Neuron):
    """Quadratic integrate-and-fire neuron.

    ``tau dV/dt = a_0 (V - V_rest)(V - V_c) + R I``; at ``V >= V_th``:
    ``V <- V_reset`` (held for ``t_refractory`` ms). Defaults: bpmodels 0.2.3
    ``get_QuaIF``; BrainPy 2.x calls ``a_0`` ``c``. V starts at ``V_rest``
    (bpmodels: 0; ``initial={"V": 0.0}``).

    Example:
        >>> m = QuaIF(1)
        >>> s = m.initial_state()
        >>> n_spikes = 0
        >>> for _ in range(1000):
        ...     s = m(s, Drive(current=10.0), 0.1)
        ...     n_spikes += int(s["spike"].sum())
        >>> n_spikes > 0
        True
    """

    variables = ("V",)
    defaults: ClassVar[dict[str, float]] = {
        "V_rest": -65.0, "V_reset": -68.0, "V_th": -30.0, "a_0": 0.07, "V_c": -50.0, "R": 1.0,
        "tau": 10.0, "t_refractory": 0.0, "noise": 0.0,
    }
    initial_values: ClassVar[dict] = {"V": "V_rest"}
    methods = ("euler", "exp_euler", "rk2", "heun", "rk4")
    has_refractory = True
    noise_terms: ClassVar[dict] = {"V": "tau"}

    def derivatives(self, state: State, drive: Drive) -> State:
        v = state["V"]
        quad = self.a_0 * (v - self.V_rest) * (v - self.V_c)
        return {"V": (quad + self.R * drive.at(v)) / self.tau}

    def linear(self, state: State, drive: Drive) -> State:
        v = state["V"]
        slope = self.a_0 * (2 * v - self.V_rest - self.V_c)
        return {"V": (slope - self.R * drive.conductance) / self.tau}

    def spike_and_reset(self, old: State, new: State, dt: float) -> State:
        return self.if_reset(old, new, dt, v_th=self.V_th, v_reset=self.V_reset,
                             t_ref=self.t_refractory)


class AdQuaIF(_Ordered):
    """Adaptive quadratic integrate-and-fire neuron.

    ``tau dV/dt = a_0 (V - V_rest)(V - V_c) - R w + R I``,
    ``tau_w dw/dt = a (V - V_rest) - w``; at ``V >= V_th``: ``V <- V_reset``,
    ``w <- w + b``. Defaults: bpmodels 0.2.3 ``get_AdQuaIF``; BrainPy 2.x drops R
    (same as R = 1) and calls ``a_0`` ``c``. Update order as :class:`AdExIF`
    (w first in bpmodels). V starts at ``V_rest`` (bpmodels: 0).

    Example:
        >>> m = AdQuaIF(1)
        >>> s = m.initial_state()
        >>> for _ in range(1000):
        ...     s = m(s, Drive(current=10.0), 0.1)
        >>> bool(s["w"][0, 0] > 0)
        True
    """

    variables = ("V", "w")
    first = ("w",)
    defaults: ClassVar[dict[str, float]] = {
        "a": 1.0, "b": 0.1, "a_0": 0.07, "V_c": -50.0, "V_rest": -65.0, "V_reset": -68.0,
        "V_th": -30.0, "R": 1.0, "tau": 10.0, "tau_w": 10.0, "t_refractory": 0.0, "noise": 0.0,
    }
    initial_values: ClassVar[dict] = {"V": "V_rest", "w": 0.0}
    methods = ("euler", "exp_euler", "rk2", "heun", "rk4")
    has_refractory = True
    noise_terms: ClassVar[dict] = {"V": "tau", "w": "tau_w"}

    def derivatives(self, state: State, drive: Drive) -> State:
        v, w = state["V"], state["w"]
        quad = self.a_0 * (v - self.V_rest) * (v - self.V_c)
        return {"V": (quad - self.R * w + self.R * drive.at(v)) / self.tau,
                "w": (self.a * (v - self.V_rest) - w) / self.tau_w}

    def linear(self, state: State, drive: Drive) -> State:
        v = state["V"]
        slope = self.a_0 * (2 * v - self.V_rest - self.V_c)
        return {"V": (slope - self.R * drive.conductance) / self.tau,
                "w": -1.0 / self.tau_w + torch.zeros_like(state["w"])}

    def spike_and_reset(self, old: State, new: State, dt: float) -> State:
        return self.if_reset(old, new, dt, v_th=self.V_th, v_reset=self.V_reset,
                             t_ref=self.t_refractory, jumps={"w": self.b})


class GIF(_Neuron):
    """Generalized integrate-and-fire neuron (Mihalas & Niebur 2009).

    ``dI_j/dt = -k_j I_j`` (j = 1, 2), ``tau dV/dt = -(V - V_rest) + R (I + I1 + I2)``,
    ``dV_th/dt = a (V - V_rest) - b (V_th - V_th_inf)``. A spike occurs when the
    new V exceeds the *old* threshold (``V > V_th``, bpmodels); then
    ``V <- V_reset``, ``I_j <- R_j I_j + A_j``, ``V_th <- max(V_th_reset, V_th)``.
    No refractory period. Defaults: bpmodels 0.2.3 ``get_GeneralizedIF``
    (BrainPy 2.x ``GifRef`` has the same values but spikes at ``V >= V_th``).
    V starts at ``V_rest`` and V_th at ``V_th_inf`` (-70 and -50 as bpmodels).

    Example:
        >>> m = GIF(1)
        >>> s = m.initial_state()
        >>> n_spikes = 0
        >>> for _ in range(2000):
        ...     s = m(s, Drive(current=1.5), 0.1)
        ...     n_spikes += int(s["spike"].sum())
        >>> n_spikes > 0
        True
    """

    variables = ("V", "V_th", "I1", "I2")
    defaults: ClassVar[dict[str, float]] = {
        "V_rest": -70.0, "V_reset": -70.0, "V_th_inf": -50.0, "V_th_reset": -60.0, "R": 20.0,
        "tau": 20.0, "a": 0.0, "b": 0.01, "k1": 0.2, "k2": 0.02, "R1": 0.0, "R2": 1.0,
        "A1": 0.0, "A2": 0.0, "noise": 0.0,
    }
    initial_values: ClassVar[dict] = {"V": "V_rest", "V_th": "V_th_inf", "I1": 0.0, "I2": 0.0}
    default_method = "exp_euler"
    methods = ("exp_euler", "euler", "rk2", "heun", "rk4")
    noise_terms: ClassVar[dict] = {"V": "tau"}

    def derivatives(self, state: State, drive: Drive) -> State:
        v, th, i1, i2 = state["V"], state["V_th"], state["I1"], state["I2"]
        return {
            "V": (-(v - self.V_rest) + self.R * (drive.at(v) + i1 + i2)) / self.tau,
            "V_th": self.a * (v - self.V_rest) - self.b * (th - self.V_th_inf),
            "I1": -self.k1 * i1,
            "I2": -self.k2 * i2,
        }

    def linear(self, state: State, drive: Drive) -> State:
        z = torch.zeros_like(state["V"])
        return {"V": -(1.0 + self.R * drive.conductance) / self.tau + z, "V_th": -self.b + z,
                "I1": -self.k1 + z, "I2": -self.k2 + z}

    def spike_and_reset(self, old: State, new: State, dt: float) -> State:
        spike = new["V"] > old["V_th"]
        new["V"] = torch.where(spike, self.V_reset, new["V"])
        new["I1"] = torch.where(spike, self.R1 * new["I1"] + self.A1, new["I1"])
        new["I2"] = torch.where(spike, self.R2 * new["I2"] + self.A2, new["I2"])
        new["V_th"] = torch.where(spike, torch.clamp(new["V_th"], min=self.V_th_reset), new["V_th"])
        new["spike"] = spike
        return new


# ---------------------------------------------------------------------------
# Izhikevich
# ---------------------------------------------------------------------------

_IZH_TABLE: dict[str, tuple[float, float, float, float]] = {
    # Izhikevich 2003 cell classes
    "RS": (0.02, 0.2, -65.0, 8.0), "IB": (0.02, 0.2, -55.0, 4.0), "CH": (0.02, 0.2, -50.0, 2.0),
    "FS": (0.1, 0.2, -65.0, 2.0), "TC": (0.02, 0.25, -65.0, 0.05), "RZ": (0.1, 0.26, -65.0, 2.0),
    "LTS": (0.02, 0.25, -65.0, 2.0),
    # bpmodels' versions of the 20 behaviours of Izhikevich 2004
    "tonic spiking": (0.02, 0.40, -65.0, 2.0), "phasic spiking": (0.02, 0.25, -65.0, 6.0),
    "tonic bursting": (0.02, 0.20, -50.0, 2.0), "phasic bursting": (0.02, 0.25, -55.0, 0.05),
    "mixed mode": (0.02, 0.20, -55.0, 4.0), "spike frequency adaptation": (0.01, 0.20, -65.0, 8.0),
    "Class 1": (0.02, -0.1, -55.0, 6.0), "Class 2": (0.20, 0.26, -65.0, 0.0),
    "spike latency": (0.02, 0.20, -65.0, 6.0), "subthreshold oscillation": (0.05, 0.26, -60.0, 0.0),
    "resonator": (0.10, 0.26, -60.0, -1.0), "integrator": (0.02, -0.1, -55.0, 6.0),
    "rebound spike": (0.03, 0.25, -60.0, 4.0), "rebound burst": (0.03, 0.25, -52.0, 0.0),
    "threshold variability": (0.03, 0.25, -60.0, 4.0), "bistability": (1.00, 1.50, -60.0, 0.0),
    "depolarizing afterpotential": (1.00, 0.20, -60.0, -21.0),
    "accommodation": (0.02, 1.00, -55.0, 4.0),
    "inhibition-induced spiking": (-0.02, -1.00, -60.0, 8.0),
    "inhibition-induced bursting": (-0.026, -1.00, -45.0, 0.0),
}
_IZH_ALIASES = {
    "Regular Spiking": "RS", "Intrinsically Bursting": "IB", "Chattering": "CH",
    "Fast Spiking": "FS", "Thalamo-cortical": "TC", "Resonator": "RZ",
    "Low-threshold Spiking": "LTS", "tonic": "tonic spiking", "phasic": "phasic spiking",
    "SFA": "spike frequency adaptation", "class 1": "Class 1", "class 2": "Class 2",
    "DAP": "depolarizing afterpotential",
}


class Izhikevich(_Neuron):
    """Izhikevich (2003) neuron.

    ``dV/dt = 0.04 V^2 + 5 V + 140 - u + I``, ``du/dt = a (b V - u)``, both from
    the old V and u; at ``V >= V_th`` (30): ``V <- c``, ``u <- u + d`` (V and u held
    for ``t_refractory`` ms, default 0). Defaults: bpmodels 0.2.3
    ``get_Izhikevich`` (RS cell), Euler as bpmodels ran it.

    ``preset=`` picks (a, b, c, d) from :attr:`PRESETS` (the names bpmodels
    accepts for ``type=``, case-sensitive: ``"RZ"``/``"Resonator"`` differ from
    the 2004 ``"resonator"``); explicit a, b, c, d override it. Note bpmodels'
    ``"tonic spiking"`` is (0.02, 0.40, -65, 2), not the paper's (0.02, 0.2, -65, 6).

    Initial values: V = -65 and ``u = b V`` (``"b*V"``: Izhikevich's papers,
    BrainPy 2.x, no start-up transient); bpmodels starts at ``u = 1``
    (``initial={"u": 1.0}``: the first spike of an RS cell at I = 10 moves from
    3.3 to 46.6 ms, the steady rate is the same). BrainPy 2.x also starts at V = -70.

    Example:
        >>> m = Izhikevich(2, preset="FS")
        >>> s = m.initial_state()
        >>> n_spikes = 0
        >>> for _ in range(1000):
        ...     s = m(s, Drive(current=10.0), 0.1)
        ...     n_spikes += int(s["spike"].sum())
        >>> n_spikes  # 2 neurons, 100 ms at about 130 Hz
        28
    """

    PRESETS: ClassVar[dict[str, tuple[float, float, float, float]]] = {
        **_IZH_TABLE, **{k: _IZH_TABLE[v] for k, v in _IZH_ALIASES.items()}}
    variables = ("V", "u")
    defaults: ClassVar[dict[str, float]] = {
        "a": 0.02, "b": 0.2, "c": -65.0, "d": 8.0, "V_th": 30.0, "t_refractory": 0.0, "noise": 0.0,
    }
    initial_values: ClassVar[dict] = {"V": -65.0, "u": "b*V"}
    derived_initial: ClassVar[dict] = {"u": ("b*V",)}
    methods = ("euler", "exp_euler", "rk2", "heun", "rk4")
    has_refractory = True
    noise_terms: ClassVar[dict] = {"V": None}

    def __init__(self, n: int, *, preset: str | None = None, **kwargs: Any) -> None:
        if preset is not None:
            if preset not in self.PRESETS:
                raise ValueError(f"Izhikevich: unknown preset {preset!r}; "
                                 f"allowed: {sorted(self.PRESETS)}")
            kwargs = {**dict(zip("abcd", self.PRESETS[preset], strict=True)), **kwargs}
        super().__init__(n, **kwargs)
        self.preset = preset

    def derive_initial(self, name: str, how: str, state: State) -> Tensor:
        return (self.b * state["V"]).to(state["V"].dtype)

    def derivatives(self, state: State, drive: Drive) -> State:
        v, u = state["V"], state["u"]
        return {"V": 0.04 * v * v + 5.0 * v + 140.0 - u + drive.at(v),
                "u": self.a * (self.b * v - u)}

    def linear(self, state: State, drive: Drive) -> State:
        v = state["V"]
        return {"V": 0.08 * v + 5.0 - drive.conductance, "u": -self.a + torch.zeros_like(v)}

    def spike_and_reset(self, old: State, new: State, dt: float) -> State:
        return self.if_reset(old, new, dt, v_th=self.V_th, v_reset=self.c,
                             t_ref=self.t_refractory, jumps={"u": self.d})


# ---------------------------------------------------------------------------
# Conductance-based models
# ---------------------------------------------------------------------------


def _hh_rates(v: Tensor) -> tuple[Tensor, ...]:
    v65 = v + 65.0
    am = _x_expm1((v + 40.0) * -0.1)               # 0.1 (V+40) / (1 - exp(-(V+40)/10))
    bm = 4.0 * torch.exp(v65 * (-1.0 / 18.0))
    ah = 0.07 * torch.exp(v65 * -0.05)
    bh = torch.sigmoid((v + 35.0) * 0.1)           # 1 / (1 + exp(-(V+35)/10))
    an = 0.1 * _x_expm1((v + 55.0) * -0.1)         # 0.01 (V+55) / (1 - exp(-(V+55)/10))
    bn = 0.125 * torch.exp(v65 * -0.0125)
    return am, bm, ah, bh, an, bn


def _gates(state: State, rates: tuple[Tensor, ...], names=("m", "h", "n"), phi=1.0):
    d, a = {}, {}
    for name, alpha, beta in zip(names, rates[0::2], rates[1::2], strict=True):
        x = state[name]
        d[name] = phi * (alpha * (1.0 - x) - beta * x)
        a[name] = -phi * (alpha + beta)
    return d, a


def _steady(v: Tensor | float, rates_fn, names=("m", "h", "n")) -> dict[str, Tensor]:
    v = torch.as_tensor(v, dtype=torch.get_default_dtype()) if not isinstance(v, Tensor) else v
    r = rates_fn(v)
    return {name: r[2 * i] / (r[2 * i] + r[2 * i + 1]) for i, name in enumerate(names)}


class _HHBase(_Neuron):
    """HH-type models: fused exponential Euler, upward-crossing spikes, ``"steady"`` gates."""

    def derivatives(self, state: State, drive: Drive) -> State:
        return self.derivatives_linear(state, drive)[0]

    def linear(self, state: State, drive: Drive) -> State:
        return self.derivatives_linear(state, drive)[1]

    def spike_and_reset(self, old: State, new: State, dt: float) -> State:
        new["spike"] = _crossing(old, new, self.V_th)
        return new


class HH(_HHBase, _Ordered):
    """Hodgkin-Huxley (1952) neuron, bpmodels' parameters.

    ``C dV/dt = -g_Na m^3 h (V - E_Na) - g_K n^4 (V - E_K) - g_leak (V - E_leak) + I``,
    ``dx/dt = alpha_x(V) (1 - x) - beta_x(V) x`` for x in m, h, n with
    ``alpha_m = 0.1 (V+40) / (1 - exp(-(V+40)/10))``, ``beta_m = 4 exp(-(V+65)/18)``,
    ``alpha_h = 0.07 exp(-(V+65)/20)``, ``beta_h = 1 / (1 + exp(-(V+35)/10))``,
    ``alpha_n = 0.01 (V+55) / (1 - exp(-(V+55)/10))``, ``beta_n = 0.125 exp(-(V+65)/80)``
    (rates per ms; the 0/0 at V = -40 and -55 is replaced by its limit).
    Units: µF/cm², mS/cm², µA/cm².

    A spike is an upward crossing of ``V_th`` = 20 mV (no reset). Defaults:
    bpmodels 0.2.3 ``get_HH`` (E_leak = -54.387; its docstring drops the sign).
    Initial V = -65, m = 0.05, h = 0.6, n = 0.32 (bpmodels); ``HH.steady_state(V)``
    or ``initial={"m": "steady", "h": "steady", "n": "steady"}`` start the gates at
    rest (BrainPy 2.x, which also draws V from U(-70, -60)).

    The default exponential Euler relaxes each gate exactly for the step's V
    (``a = -(alpha + beta)``) and V with ``a = -(g_Na m^3 h + g_K n^4 + g_leak + g_syn) / C``.
    ``clip_gates`` (default True, as bpmodels) clips m, h, n to [0, 1] after each
    update. ``order``: see the module docstring (bpmodels updates the gates first).
    Forward Euler and RK4 fail at dt = 0.1 ms (2-3 spikes, then NaN; with the
    sequential order and clipping, finite but wrong rates); they are refused
    above :attr:`stable_dt` = 0.05 ms (ValueError from :meth:`check_dt`).

    Example:
        >>> hh = HH(1)
        >>> s = hh.initial_state()
        >>> n_spikes = 0
        >>> for _ in range(1000):
        ...     s = hh(s, Drive(current=10.0), 0.05)
        ...     n_spikes += int(s["spike"].sum())
        >>> n_spikes  # 50 ms at about 70 Hz
        4
    """

    variables = ("V", "m", "h", "n")
    first = ("m", "h", "n")
    defaults: ClassVar[dict[str, float]] = {
        "V_th": 20.0, "C": 1.0, "E_Na": 50.0, "E_K": -77.0, "E_leak": -54.387, "g_Na": 120.0,
        "g_K": 36.0, "g_leak": 0.03, "noise": 0.0,
    }
    initial_values: ClassVar[dict] = {"V": -65.0, "m": 0.05, "h": 0.6, "n": 0.32}
    derived_initial: ClassVar[dict] = {g: ("steady",) for g in ("m", "h", "n")}
    default_method = "exp_euler"
    stable_dt: ClassVar[dict[str, float]] = {"euler": 0.05, "rk2": 0.05, "heun": 0.05, "rk4": 0.05}
    noise_terms: ClassVar[dict] = {"V": "C"}

    def __init__(self, n: int, *, clip_gates: bool = True, **kwargs: Any) -> None:
        super().__init__(n, **kwargs)
        self.clip_gates = bool(clip_gates)

    @staticmethod
    def steady_state(V: Tensor | float = -65.0) -> dict[str, Tensor]:
        """Resting gates at ``V``: ``{"V", "m", "h", "n"}`` usable as ``initial=``."""
        return {"V": torch.as_tensor(V, dtype=torch.get_default_dtype()), **_steady(V, _hh_rates)}

    def derive_initial(self, name: str, how: str, state: State) -> Tensor:
        return _steady(state["V"], _hh_rates)[name]

    def derivatives_linear(self, state: State, drive: Drive) -> tuple[State, State]:
        v, m, h, n = state["V"], state["m"], state["h"], state["n"]
        d, a = _gates(state, _hh_rates(v))
        g_na = self.g_Na * m ** 3 * h
        g_k = self.g_K * n ** 4
        d["V"] = (-g_na * (v - self.E_Na) - g_k * (v - self.E_K) - self.g_leak * (v - self.E_leak)
                  + drive.at(v)) / self.C
        a["V"] = -(g_na + g_k + self.g_leak + drive.conductance) / self.C
        return d, a

    def after_stage(self, state: State) -> State:
        if self.clip_gates:
            for g in ("m", "h", "n"):
                state[g] = state[g].clamp(0.0, 1.0)
        return state


def _wb_rates(v: Tensor) -> tuple[Tensor, ...]:
    am = _x_expm1((v + 35.0) * -0.1)               # 0.1 (V+35) / (1 - exp(-0.1 (V+35)))
    bm = 4.0 * torch.exp((v + 60.0) * (-1.0 / 18.0))
    ah = 0.07 * torch.exp((v + 58.0) * -0.05)
    bh = torch.sigmoid((v + 28.0) * 0.1)           # 1 / (exp(-0.1 (V+28)) + 1)
    an = 0.1 * _x_expm1((v + 34.0) * -0.1)         # 0.01 (V+34) / (1 - exp(-0.1 (V+34)))
    bn = 0.125 * torch.exp((v + 44.0) * -0.0125)
    return am, bm, ah, bh, an, bn


class WangBuzsakiHH(_HHBase):
    """Wang-Buzsaki (1996) interneuron, BrainPy 2.x ``WangBuzsakiHH`` constants.

    ``C dV/dt = -g_Na m_inf(V)^3 h (V - E_Na) - g_K n^4 (V - E_K) - g_L (V - E_L) + I``,
    ``m_inf = alpha_m / (alpha_m + beta_m)`` (instantaneous),
    ``dx/dt = phi (alpha_x (1 - x) - beta_x x)`` for x in h, n; ``alpha_m =
    0.1 (V+35) / (1 - exp(-0.1 (V+35)))``, ``beta_m = 4 exp(-(V+60)/18)``,
    ``alpha_h = 0.07 exp(-(V+58)/20)``, ``beta_h = 1 / (exp(-0.1 (V+28)) + 1)``,
    ``alpha_n = 0.01 (V+34) / (1 - exp(-0.1 (V+34)))``, ``beta_n = 0.125 exp(-(V+44)/80)``.
    (Some BrainPy 2.x releases compute alpha_n as ``1 / exprel(...)``, ten times
    the paper's value; this class follows the paper and earlier BrainPy.)

    Spike: upward crossing of ``V_th`` = 20 mV (BrainPy default); the gamma
    example of Wang & Buzsaki uses 0 (``V_th=0.0``). Initial V = -65, h = 0.6,
    n = 0.32 (BrainPy); ``initial={"h": "steady", "n": "steady"}`` starts at rest.
    Exponential Euler (default) uses the conditionally linear coefficient
    ``a = -(g_Na m_inf^3 h + g_K n^4 + g_L + g_syn) / C`` for V.

    Example:
        >>> m = WangBuzsakiHH(1)
        >>> s = m.initial_state()
        >>> n_spikes = 0
        >>> for _ in range(2500):
        ...     s = m(s, Drive(current=1.2), 0.04)
        ...     n_spikes += int(s["spike"].sum())
        >>> n_spikes > 0
        True
    """

    variables = ("V", "h", "n")
    defaults: ClassVar[dict[str, float]] = {
        "E_Na": 55.0, "g_Na": 35.0, "E_K": -90.0, "g_K": 9.0, "E_L": -65.0, "g_L": 0.1,
        "phi": 5.0, "C": 1.0, "V_th": 20.0,
    }
    initial_values: ClassVar[dict] = {"V": -65.0, "h": 0.6, "n": 0.32}
    derived_initial: ClassVar[dict] = {g: ("steady",) for g in ("h", "n")}
    default_method = "exp_euler"

    @staticmethod
    def steady_state(V: Tensor | float = -65.0) -> dict[str, Tensor]:
        """Resting h, n at ``V``: ``{"V", "h", "n"}`` usable as ``initial=``."""
        s = _steady(V, _wb_rates, ("m", "h", "n"))
        return {"V": torch.as_tensor(V, dtype=torch.get_default_dtype()), "h": s["h"], "n": s["n"]}

    def derive_initial(self, name: str, how: str, state: State) -> Tensor:
        return _steady(state["V"], _wb_rates)[name]

    def derivatives_linear(self, state: State, drive: Drive) -> tuple[State, State]:
        v = state["V"]
        am, bm, *rates = _wb_rates(v)
        d, a = _gates(state, rates, ("h", "n"), self.phi)
        m_inf = am / (am + bm)
        g_na = self.g_Na * m_inf ** 3 * state["h"]
        g_k = self.g_K * state["n"] ** 4
        d["V"] = (-g_na * (v - self.E_Na) - g_k * (v - self.E_K) - self.g_L * (v - self.E_L)
                  + drive.at(v)) / self.C
        a["V"] = -(g_na + g_k + self.g_L + drive.conductance) / self.C
        return d, a


def _traub_rates(v: Tensor, vt: Tensor) -> tuple[Tensor, ...]:
    u = v - vt
    am = 1.28 * _x_expm1((13.0 - u) * 0.25)        # 0.32 (13-V+VT) / (exp((13-V+VT)/4) - 1)
    bm = 1.4 * _x_expm1((u - 40.0) * 0.2)          # 0.28 (V-VT-40) / (exp((V-VT-40)/5) - 1)
    ah = 0.128 * torch.exp((17.0 - u) * (1.0 / 18.0))
    bh = 4.0 * torch.sigmoid((u - 40.0) * 0.2)     # 4 / (1 + exp((40-V+VT)/5))
    an = 0.16 * _x_expm1((15.0 - u) * 0.2)         # 0.032 (15-V+VT) / (exp((15-V+VT)/5) - 1)
    bn = 0.5 * torch.exp((10.0 - u) * 0.025)
    return am, bm, ah, bh, an, bn


class TraubHH(_HHBase):
    """Traub-Miles HH cell of the COBAHH benchmark (Brette et al. 2007).

    ``C dV/dt = g_L (E_L - V) - g_Na m^3 h (V - E_Na) - g_K n^4 (V - E_K) + I``,
    ``dx/dt = alpha_x (1 - x) - beta_x x`` with, for ``u = V - V_T``:
    ``alpha_m = 0.32 (13 - u) / (exp((13 - u)/4) - 1)``,
    ``beta_m = 0.28 (u - 40) / (exp((u - 40)/5) - 1)``,
    ``alpha_h = 0.128 exp((17 - u)/18)``, ``beta_h = 4 / (1 + exp((40 - u)/5))``,
    ``alpha_n = 0.032 (15 - u) / (exp((15 - u)/5) - 1)``,
    ``beta_n = 0.5 exp((10 - u)/40)`` (per ms; Brian2's COBAHH example, 0/0
    replaced by its limit).

    Units as Brian2's example (area 20000 µm²): C = 200 pF, conductances in nS
    (g_L = 10, g_Na = 20 µS = 20000, g_K(d) = 6 µS = 6000), so the drive's
    current is in pA and its conductance in nS (COBAHH: we = 6, wi = 67 nS);
    BrainPy's version divides everything by 100, which leaves V unchanged.
    E_L = -60 (Brette 2007 and BrainPy; Brian2's example: -65), E_Na = 50,
    E_K = -90, V_T = -63 mV. Spike: upward crossing of ``V_th`` = -20 mV.
    Initial V = E_L with the gates at rest (``"steady"``). Default exponential
    Euler (Brian2's method for this model) is stable at dt = 0.1 ms; forward
    Euler and RK are refused above :attr:`stable_dt`.

    Example:
        >>> m = TraubHH(1)
        >>> s = m.initial_state()
        >>> n_spikes = 0
        >>> for _ in range(1000):
        ...     s = m(s, Drive(current=500.0), 0.1)
        ...     n_spikes += int(s["spike"].sum())
        >>> n_spikes > 0
        True
    """

    variables = ("V", "m", "h", "n")
    defaults: ClassVar[dict[str, float]] = {
        "C": 200.0, "g_L": 10.0, "g_Na": 20000.0, "g_K": 6000.0, "E_L": -60.0, "E_Na": 50.0,
        "E_K": -90.0, "V_T": -63.0, "V_th": -20.0,
    }
    initial_values: ClassVar[dict] = {"V": "E_L", "m": "steady", "h": "steady", "n": "steady"}
    derived_initial: ClassVar[dict] = {g: ("steady",) for g in ("m", "h", "n")}
    default_method = "exp_euler"
    stable_dt: ClassVar[dict[str, float]] = {"euler": 0.01, "rk2": 0.01, "heun": 0.01, "rk4": 0.02}

    def steady_state(self, V: Tensor | float) -> dict[str, Tensor]:
        """Resting gates at ``V`` for this group's ``V_T``: ``{"V", "m", "h", "n"}``."""
        v = torch.as_tensor(V, dtype=self.V_T.dtype, device=self.V_T.device)
        return {"V": v, **_steady(v, lambda x: _traub_rates(x, self.V_T))}

    def derive_initial(self, name: str, how: str, state: State) -> Tensor:
        return _steady(state["V"], lambda x: _traub_rates(x, self.V_T))[name].to(state["V"].dtype)

    def derivatives_linear(self, state: State, drive: Drive) -> tuple[State, State]:
        v = state["V"]
        d, a = _gates(state, _traub_rates(v, self.V_T))
        g_na = self.g_Na * state["m"] ** 3 * state["h"]
        g_k = self.g_K * state["n"] ** 4
        d["V"] = (self.g_L * (self.E_L - v) - g_na * (v - self.E_Na) - g_k * (v - self.E_K)
                  + drive.at(v)) / self.C
        a["V"] = -(g_na + g_k + self.g_L + drive.conductance) / self.C
        return d, a


class MorrisLecar(_Neuron):
    """Morris-Lecar (1981) neuron, bpmodels' parameters.

    ``C dV/dt = -g_Ca M_inf (V - V_Ca) - g_K W (V - V_K) - g_Leak (V - V_Leak) + I``,
    ``dW/dt = (W_inf - W) / tau_W`` with ``M_inf = (1 + tanh((V - V1)/V2)) / 2``,
    ``W_inf = (1 + tanh((V - V3)/V4)) / 2``, ``tau_W = 1 / (phi cosh((V - V3)/(2 V4)))``.
    Defaults: bpmodels 0.2.3 ``get_MorrisLecar``, initial V = -20, W = 0.02.
    bpmodels has no spike variable; as in BrainPy 2.x, ``spike`` marks an upward
    crossing of ``V_th`` = 10 mV (no reset).

    Example:
        >>> m = MorrisLecar(1)
        >>> s = m.initial_state()
        >>> n_spikes = 0
        >>> for _ in range(5000):
        ...     s = m(s, Drive(current=100.0), 0.1)
        ...     n_spikes += int(s["spike"].sum())
        >>> n_spikes > 0
        True
    """

    variables = ("V", "W")
    defaults: ClassVar[dict[str, float]] = {
        "V_Ca": 130.0, "g_Ca": 4.4, "V_K": -84.0, "g_K": 8.0, "V_Leak": -60.0, "g_Leak": 2.0,
        "C": 20.0, "V1": -1.2, "V2": 18.0, "V3": 2.0, "V4": 30.0, "phi": 0.04, "V_th": 10.0,
        "noise": 0.0,
    }
    initial_values: ClassVar[dict] = {"V": -20.0, "W": 0.02}
    methods = ("euler", "exp_euler", "rk2", "heun", "rk4")
    noise_terms: ClassVar[dict] = {"V": "C"}

    def derivatives_linear(self, state: State, drive: Drive) -> tuple[State, State]:
        v, w = state["V"], state["W"]
        t_m = torch.tanh((v - self.V1) / self.V2)
        m_inf = 0.5 * (1.0 + t_m)
        w_inf = 0.5 * (1.0 + torch.tanh((v - self.V3) / self.V4))
        rate_w = self.phi * torch.cosh((v - self.V3) / (2.0 * self.V4))
        dv = (-self.g_Ca * m_inf * (v - self.V_Ca) - self.g_K * w * (v - self.V_K)
              - self.g_Leak * (v - self.V_Leak) + drive.at(v)) / self.C
        dm_inf = 0.5 * (1.0 - t_m * t_m) / self.V2
        av = -(self.g_Ca * (m_inf + dm_inf * (v - self.V_Ca)) + self.g_K * w + self.g_Leak
               + drive.conductance) / self.C
        return {"V": dv, "W": (w_inf - w) * rate_w}, {"V": av, "W": -rate_w}

    def derivatives(self, state: State, drive: Drive) -> State:
        return self.derivatives_linear(state, drive)[0]

    def linear(self, state: State, drive: Drive) -> State:
        return self.derivatives_linear(state, drive)[1]

    def spike_and_reset(self, old: State, new: State, dt: float) -> State:
        new["spike"] = _crossing(old, new, self.V_th)
        return new


class HindmarshRose(_Neuron):
    """Hindmarsh-Rose (1984) bursting neuron (dimensionless).

    ``dV/dt = y - a V^3 + b V^2 - z + I``, ``dy/dt = c - d V^2 - y``,
    ``dz/dt = r (s (V - V_rest) - z)``. Defaults: bpmodels 0.2.3
    ``get_HindmarshRose``; initial V = -1.6, y = -10, z = 0 (BrainPy 2.x: V = 0).
    bpmodels has no spike flag; as BrainPy 2.x, ``spike`` marks an upward
    crossing of ``V_th`` = 1.0 (no reset).

    Example:
        >>> m = HindmarshRose(1)
        >>> s = m.initial_state()
        >>> n_spikes = 0
        >>> for _ in range(20000):
        ...     s = m(s, Drive(current=3.0), 0.05)
        ...     n_spikes += int(s["spike"].sum())
        >>> n_spikes > 0
        True
    """

    variables = ("V", "y", "z")
    defaults: ClassVar[dict[str, float]] = {
        "a": 1.0, "b": 3.0, "c": 1.0, "d": 5.0, "r": 0.01, "s": 4.0, "V_rest": -1.6, "V_th": 1.0,
    }
    initial_values: ClassVar[dict] = {"V": -1.6, "y": -10.0, "z": 0.0}
    methods = ("euler", "exp_euler", "rk2", "heun", "rk4")

    def derivatives(self, state: State, drive: Drive) -> State:
        v, y, z = state["V"], state["y"], state["z"]
        return {"V": y - self.a * v ** 3 + self.b * v * v - z + drive.at(v),
                "y": self.c - self.d * v * v - y,
                "z": self.r * (self.s * (v - self.V_rest) - z)}

    def linear(self, state: State, drive: Drive) -> State:
        v = state["V"]
        one = torch.ones_like(v)
        return {"V": -3.0 * self.a * v * v + 2.0 * self.b * v - drive.conductance,
                "y": -one, "z": -self.r * one}

    def spike_and_reset(self, old: State, new: State, dt: float) -> State:
        new["spike"] = _crossing(old, new, self.V_th)
        return new


def _wc_sigmoid(x: Tensor, slope: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
    """``S(x) = 1/(1+exp(-a(x-theta))) - 1/(1+exp(a theta))`` and ``S'(x)``."""
    s = torch.sigmoid(slope * (x - theta))
    return s - torch.sigmoid(-slope * theta), slope * s * (1.0 - s)


class WilsonCowan(_Neuron):
    """Wilson-Cowan (1972) E/I rate model: ``n`` independent E/I pairs.

    ``tau_e da_e/dt = -a_e + (k_e - r_e a_e) S_e(c1 a_e - c2 a_i + I_e)``,
    ``tau_i da_i/dt = -a_i + (k_i - r_i a_i) S_i(c3 a_e - c4 a_i + I_i)``,
    ``S(x) = 1/(1 + exp(-slope (x - theta))) - 1/(1 + exp(slope theta))``.
    The drive's current is ``I_e`` (input to the E population; the drive must not
    carry a conductance), ``I_i`` is a parameter (default 0). Not spiking
    (``spiking = False``). Defaults: bpmodels 0.2.3 ``get_WilsonCowan``
    (theta_e = 2.8; its docstring says 1.8); initial a_e = 0.1, a_i = 0.05
    (BrainPy 2.x draws both from U(0, 0.05)).

    Example:
        >>> m = WilsonCowan(1)
        >>> s = m.initial_state()
        >>> for _ in range(1000):
        ...     s = m(s, Drive(current=1.0), 0.1)
        >>> sorted(s), bool((s["a_e"] >= 0).all())
        (['a_e', 'a_i'], True)
    """

    variables = ("a_e", "a_i")
    defaults: ClassVar[dict[str, float]] = {
        "c1": 12.0, "c2": 4.0, "c3": 13.0, "c4": 11.0, "k_e": 1.0, "k_i": 1.0, "tau_e": 1.0,
        "tau_i": 1.0, "r_e": 1.0, "r_i": 1.0, "slope_e": 1.2, "slope_i": 1.0, "theta_e": 2.8,
        "theta_i": 4.0, "I_i": 0.0,
    }
    initial_values: ClassVar[dict] = {"a_e": 0.1, "a_i": 0.05}
    methods = ("euler", "exp_euler", "rk2", "heun", "rk4")
    spiking = False

    def derivatives_linear(self, state: State, drive: Drive) -> tuple[State, State]:
        g = drive.conductance
        if not (isinstance(g, (int, float)) and g == 0):
            raise ValueError("WilsonCowan takes a current drive only (I_e); got a conductance")
        ae, ai = state["a_e"], state["a_i"]
        x_e = self.c1 * ae - self.c2 * ai + drive.current
        se, dse = _wc_sigmoid(x_e, self.slope_e, self.theta_e)
        si, dsi = _wc_sigmoid(self.c3 * ae - self.c4 * ai + self.I_i, self.slope_i, self.theta_i)
        ke, ki = self.k_e - self.r_e * ae, self.k_i - self.r_i * ai
        d = {"a_e": (-ae + ke * se) / self.tau_e, "a_i": (-ai + ki * si) / self.tau_i}
        a = {"a_e": (-1.0 - self.r_e * se + ke * dse * self.c1) / self.tau_e,
             "a_i": (-1.0 - self.r_i * si - ki * dsi * self.c4) / self.tau_i}
        return d, a

    def derivatives(self, state: State, drive: Drive) -> State:
        return self.derivatives_linear(state, drive)[0]

    def linear(self, state: State, drive: Drive) -> State:
        return self.derivatives_linear(state, drive)[1]


class PoissonGroup(_Neuron):
    """Poisson spike sources: each neuron spikes with probability ``rate dt / 1000`` per step.

    ``rate`` in Hz, a number or one value per neuron (a buffer: change it in place
    for time-varying rates). Draws use the generator of the step's
    :class:`~bionn.spiking.base.StepContext` (``ctx.generator``; ``None``: the
    global RNG). The drive is ignored. A dt with ``rate dt / 1000 > 1`` is
    refused by :meth:`check_dt`.

    Example:
        >>> p = PoissonGroup(1000, rate=20.0)
        >>> s = p.initial_state()
        >>> total = 0
        >>> for _ in range(1000):
        ...     s = p(s, Drive(), 0.1)
        ...     total += int(s["spike"].sum())
        >>> 1500 < total < 2500  # 1000 neurons x 0.1 s x 20 Hz = 2000
        True
        >>> ctx = StepContext(0.0, 0.1, torch.Generator().manual_seed(0))  # seeded draws
        >>> a = p(p.initial_state(), Drive(), 0.1, ctx)["spike"]
        >>> ctx = StepContext(0.0, 0.1, torch.Generator().manual_seed(0))
        >>> bool((a == p(p.initial_state(), Drive(), 0.1, ctx)["spike"]).all())
        True
    """

    defaults: ClassVar[dict[str, float]] = {"rate": 0.0}

    def __init__(self, n: int, rate: float | Tensor, **kwargs: Any) -> None:
        super().__init__(n, rate=rate, **kwargs)
        if bool((self.rate < 0).any()) or not bool(torch.isfinite(self.rate).all()):
            raise ValueError(f"PoissonGroup: rate must be finite and >= 0 Hz; got {rate}")

    def check_dt(self, dt: float) -> None:
        top = float(self.rate.max()) * dt / 1000.0
        if top > 1.0:
            raise ValueError(f"PoissonGroup: rate * dt = {top:g} spikes per step at dt={dt} ms "
                             f"exceeds 1; use dt <= {1000.0 / float(self.rate.max()):g} ms")

    def forward(self, state: State, drive: Drive, dt: float, ctx: StepContext | None = None) -> State:
        like = state["spike"]
        p = self.rate * (dt / 1000.0)
        gen = _generator_of(self, ctx)
        u = torch.rand(like.shape, generator=gen, device=gen.device if gen is not None else like.device,
                       dtype=p.dtype)
        return {**state, "spike": u.to(like.device) < p}


NEURONS: dict[str, type[NeuronGroup]] = {
    cls.__name__: cls
    for cls in (LIF, ALIF, ExpIF, AdExIF, QuaIF, AdQuaIF, GIF, Izhikevich, HH, WangBuzsakiHH, TraubHH,
                MorrisLecar, HindmarshRose, WilsonCowan, PoissonGroup)
}
