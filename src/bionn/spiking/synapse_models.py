"""Synapse kinetics with BrainPy-Models' equations and defaults.

Every model is a :class:`~bionn.spiking.synapses.Synapse`: parameters are
buffers with the ``bpmodels`` 0.2.3 defaults, and the network calls
``update`` after the neurons stepped (with this step's, possibly delayed,
presynaptic spikes) and ``value`` for the synaptic variable summed onto each
post neuron, which it multiplies by ``g_max`` and delivers as a current, a
conductance with reversal potential ``E`` (``I = g (E - V)``: always toward
``E``, unlike bpmodels' current-based "co_base" option, which added
``+g (V - E)``), a voltage jump or a gap-junction current.

Kinetics that are linear in the spikes (:class:`Exponential`,
:class:`DualExponential`, :class:`Alpha`, the ``s`` of :class:`STP`) keep one
state per post neuron and are updated exactly. Nonlinear kinetics
(:class:`AMPA`, :class:`GABAa`, :class:`GABAb`, :class:`NMDA`,
:class:`GABAaWangBuzsaki`, the ``u``/``x`` of :class:`STP`) keep one state per
*presynaptic* neuron: every synapse of one pre neuron sees the same spikes,
so it has the same state, and ``value`` sums ``w_ij s_j`` over the synapses.

Example:
    >>> import torch
    >>> from bionn.circuits.connect import all_to_all
    >>> from bionn.spiking import Projection
    >>> p = Projection("A", "B", all_to_all(2, 3), AMPA(), weight=0.5)
    >>> p.output, p.E
    ('conductance', 0.0)
    >>> sorted(SYNAPSE_MODELS)[:3]
    ['AMPA', 'AMPAExponential', 'Alpha']
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from bionn.spiking.base import State, StepContext, constants_of
from bionn.spiking.synapses import Exponential, Projection, Synapse

__all__ = [
    "AMPA",
    "AMPAExponential",
    "Alpha",
    "DualExponential",
    "Exponential",
    "GABAa",
    "GABAaExponential",
    "GABAaWangBuzsaki",
    "GABAb",
    "GapJunction",
    "NMDA",
    "STP",
    "SYNAPSE_MODELS",
    "VoltageJump",
]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _p(syn: Synapse, name: str, ctx: StepContext | None = None) -> float | Tensor:
    """A parameter as a Python float when scalar (cheap in the time loop), else the buffer;
    read once per run through ``ctx`` (:meth:`Synapse.scalar`)."""
    return syn.scalar(name, ctx)


def _exp(x: float | Tensor) -> float | Tensor:
    return math.exp(x) if isinstance(x, float) else torch.exp(x)


def _zeros(batch: int, n: int, device, dtype) -> Tensor:
    return torch.zeros(batch, n, device=device, dtype=dtype)


def _relax(s: Tensor, s_inf: Tensor, rate: Tensor, dt: float) -> Tensor:
    """Exact step of ``ds/dt = rate (s_inf - s)`` with ``s_inf, rate`` constant over ``dt``."""
    return s_inf + (s - s_inf) * torch.exp(-rate * dt)


def _expm1_over(z: Tensor) -> Tensor:
    """``(exp(z) - 1) / z``, finite at ``z = 0``."""
    small = z.abs() < 1e-6
    safe = torch.where(small, torch.ones_like(z), z)
    return torch.where(small, 1.0 + 0.5 * z, torch.expm1(safe) / safe)


def _pre_slice(proj: Projection, x: Tensor) -> Tensor:
    """A pre-group variable restricted to the projection's pre range (if not already)."""
    if x.shape[-1] == proj.n_pre or proj.pre_range is None:
        return x
    return x[:, proj.pre_range[0] : proj.pre_range[1]]


def _post_slice(proj: Projection, x: Tensor) -> Tensor:
    if x.shape[-1] == proj.n_post or proj.post_range is None:
        return x
    return x[:, proj.post_range[0] : proj.post_range[1]]


# ---------------------------------------------------------------------------------------------
# exponential variants (conductance-based presets of the single exponential)
# ---------------------------------------------------------------------------------------------
class AMPAExponential(Exponential):
    """AMPA receptor as a single exponential (bpmodels ``get_AMPA1``).

    ``ds/dt = -s / tau_decay``; ``s += w`` per spike; conductance output
    ``I = g_max s (E - V)``. Defaults (bpmodels 0.2.3): ``tau_decay = 2``,
    ``g_max = 0.1``, ``E = 0``. Identical to
    ``Exponential(tau_decay=2., g_max=0.1)`` with ``output="conductance", E=0.``;
    BrainPy 2.x builds the same thing from ``Expon`` + ``COBA(E=0)``.

    Example:
        >>> from bionn.circuits.connect import one_to_one
        >>> p = Projection("A", "B", one_to_one(3), AMPAExponential())
        >>> p.output, p.E, float(p.synapse.tau_decay)
        ('conductance', 0.0, 2.0)
    """

    defaults: ClassVar[dict[str, float]] = {"tau_decay": 2.0, "g_max": 0.1}
    default_output: ClassVar[str] = "conductance"
    default_E: ClassVar[float | None] = 0.0


class GABAaExponential(Exponential):
    """GABA_A receptor as a single exponential (bpmodels ``get_GABAa1``).

    ``ds/dt = -s / tau_decay``; ``s += w`` per spike; ``I = g_max s (E - V)``.
    Defaults (bpmodels 0.2.3): ``tau_decay = 6``, ``g_max = 0.4``, ``E = -80``.

    Example:
        >>> from bionn.circuits.connect import one_to_one
        >>> p = Projection("I", "E", one_to_one(3), GABAaExponential())
        >>> p.output, p.E
        ('conductance', -80.0)
    """

    defaults: ClassVar[dict[str, float]] = {"tau_decay": 6.0, "g_max": 0.4}
    default_output: ClassVar[str] = "conductance"
    default_E: ClassVar[float | None] = -80.0


# ---------------------------------------------------------------------------------------------
# second-order linear kinetics: dual exponential and alpha
# ---------------------------------------------------------------------------------------------
class DualExponential(Synapse):
    """Difference of two exponentials (bpmodels ``get_two_exponentials``).

    ``ds/dt = x``; ``tau_1 tau_2 dx/dt = -(tau_1 + tau_2) x - s``; on a spike
    ``x += w`` (after integrating, as bpmodels). One spike at ``t = 0`` gives

        s(t) = w tau_1 tau_2 / (tau_2 - tau_1) (exp(-t / tau_2) - exp(-t / tau_1)),

    peaking at ``t* = tau_1 tau_2 / (tau_2 - tau_1) ln(tau_2 / tau_1)``. The
    equations are linear, so the state is one ``(s, x)`` pair per post neuron
    and each step applies the exact 2x2 propagator ``exp(M dt)``. A spike in
    step n enters ``x`` at the end of step n, so ``s`` (the value) first
    rises in step n + 2.

    Defaults (bpmodels 0.2.3): ``tau_1 = 1``, ``tau_2 = 3``, ``g_max = 0.2``,
    current output (``E = 0`` when ``output="conductance"`` is chosen, with the
    correct sign ``I = g (E - V)``).

    Differences from BrainPy 2.x: ``brainpy.dyn.DualExpon`` has
    ``tau_decay = 10``, ``tau_rise = 1`` and scales the kernel by a factor
    ``A`` chosen from the time constants; pass ``peak_normalize=True`` here
    for a kernel whose peak is exactly ``w`` (the waveform is the same, only
    the scale differs), and the time constants explicitly.

    Args:
        tau_1, tau_2: the two time constants in ms (symmetric; equal values
            give the alpha function).
        g_max: maximal conductance multiplying ``s``.
        peak_normalize: scale the jump so one spike of weight w peaks at w.

    Example:
        >>> import torch
        >>> from bionn.circuits.connect import one_to_one
        >>> p = Projection("A", "B", one_to_one(1), DualExponential(g_max=1.0))
        >>> syn = p.synapse
        >>> s = syn.initial_state(p, 1, None, torch.float64)
        >>> s = syn.update(s, p, torch.tensor([[True]]), 0.01, {}, {}, p.weight)
        >>> peak = 0.0
        >>> for _ in range(500):
        ...     s = syn.update(s, p, torch.tensor([[False]]), 0.01, {}, {}, p.weight)
        ...     peak = max(peak, float(syn.value(s, p, {}, {}, p.weight)))
        >>> round(peak, 3)  # 1 / sqrt(3) for tau 1 and 3
        0.577
    """

    defaults: ClassVar[dict[str, float]] = {"tau_1": 1.0, "tau_2": 3.0, "g_max": 0.2}
    linear_in_spikes: ClassVar[bool] = True
    default_output: ClassVar[str] = "current"
    default_E: ClassVar[float | None] = 0.0

    def __init__(self, *, peak_normalize: bool = False, **params: Any) -> None:
        super().__init__(**params)
        self.peak_normalize = bool(peak_normalize)
        for name in self.defaults:
            if name != "g_max" and not bool((getattr(self, name) > 0).all()):
                raise ValueError(
                    f"{type(self).__name__}: {name} must be > 0 ms; got {getattr(self, name)}"
                )

    def extra_repr(self) -> str:
        return super().extra_repr() + (", peak_normalize=True" if self.peak_normalize else "")

    def taus(self, ctx: StepContext | None = None) -> tuple[float | Tensor, float | Tensor]:
        """The two time constants (ms)."""
        return _p(self, "tau_1", ctx), _p(self, "tau_2", ctx)

    def constants(self, dt: float) -> dict[str, Any]:
        """The scalar parameters and, for scalar time constants, the propagator at ``dt``."""
        out = super().constants(dt)
        t1, t2 = self.taus()
        if isinstance(t1, float) and isinstance(t2, float):
            out["propagator"] = self._propagator(dt)
        return out

    def _propagator(self, dt: float, ctx: StepContext | None = None):
        """``exp(M dt)`` entries and the per-spike jump scale (floats when scalar)."""
        c = constants_of(self, ctx)
        if c is not None and "propagator" in c:
            return c["propagator"]
        t1, t2 = self.taus(ctx)
        scalar = isinstance(t1, float) and isinstance(t2, float)
        t1t = torch.as_tensor(t1, dtype=torch.float64)
        t2t = torch.as_tensor(t2, dtype=torch.float64)
        t1t, t2t = torch.broadcast_tensors(t1t, t2t)
        a = -1.0 / (t1t * t2t)
        b = -(t1t + t2t) / (t1t * t2t)
        zero, one = torch.zeros_like(a), torch.ones_like(a)
        m = torch.stack([torch.stack([zero, one], -1), torch.stack([a, b], -1)], -2) * dt
        prop = torch.linalg.matrix_exp(m)
        entries = (prop[..., 0, 0], prop[..., 0, 1], prop[..., 1, 0], prop[..., 1, 1])
        scale = 1.0 / _dual_exp_peak(t1t, t2t) if self.peak_normalize else torch.ones_like(a)
        if scalar:
            return tuple(float(e) for e in entries) + (float(scale),)
        device = self.tau_1.device
        dtype = self.tau_1.dtype
        return tuple(e.to(device=device, dtype=dtype) for e in (*entries, scale))

    def initial_state(self, proj: Projection, batch: int, device, dtype) -> State:
        return {
            "s": _zeros(batch, proj.n_post, device, dtype),
            "x": _zeros(batch, proj.n_post, device, dtype),
        }

    def update(
        self,
        state: State,
        proj: Projection,
        spikes: Tensor,
        dt: float,
        pre: State,
        post: State,
        weight: Tensor,
        ctx: StepContext | None = None,
    ) -> State:
        p00, p01, p10, p11, scale = self._propagator(dt, ctx)
        s, x = state["s"], state["x"]
        s_new = s * p00 + x * p01
        x_new = s * p10 + x * p11
        jump = proj.deliver(spikes, weight, ctx=ctx)
        if not (isinstance(scale, float) and scale == 1.0):
            jump = jump * scale
        return {"s": s_new, "x": x_new + jump}

    def value(
        self,
        state: State,
        proj: Projection,
        pre: State,
        post: State,
        weight: Tensor,
        ctx: StepContext | None = None,
    ) -> Tensor:
        return state["s"]


def _dual_exp_peak(t1: Tensor, t2: Tensor) -> Tensor:
    """Peak of ``t1 t2 / (t2 - t1) (exp(-t/t2) - exp(-t/t1))`` (``t1 / e`` when equal)."""
    same = (t1 - t2).abs() <= 1e-9 * torch.maximum(t1, t2)
    d = torch.where(same, torch.ones_like(t1), t2 - t1)
    ratio = torch.where(same, torch.full_like(t1, 2.0), t2 / t1)
    t_peak = t1 * t2 / d * torch.log(ratio)
    peak = t1 * t2 / d * (torch.exp(-t_peak / t2) - torch.exp(-t_peak / t1))
    return torch.where(same, t1 / math.e, peak)


class Alpha(DualExponential):
    """Alpha-function synapse (bpmodels ``get_alpha``).

    ``ds/dt = x``; ``tau^2 dx/dt = -2 tau x - s``; ``x += w`` per spike, added
    after integration (as bpmodels). One spike at ``t = 0`` gives
    ``s(t) = w t exp(-t / tau)``: peak ``w tau / e`` at ``t = tau``. This is
    :class:`DualExponential` with ``tau_1 = tau_2 = tau_decay``; the update is
    the exact propagator, one ``(s, x)`` pair per post neuron.

    Defaults (bpmodels 0.2.3): ``tau_decay = 2``, ``g_max = 0.2``, current
    output (``E = 0`` for ``output="conductance"``).

    Differences from BrainPy 2.x: ``brainpy.dyn.Alpha`` uses ``tau_decay = 10``
    (8 in brainstate) and ``dh/dt = -h/tau``, ``dg/dt = -g/tau + h/tau``, whose
    kernel is this one divided by ``tau`` (peak ``w / e``): reproduce it with
    ``g_max = g_max_2x / tau_decay``, or pass ``peak_normalize=True`` for a
    peak of exactly ``w``.

    Example:
        >>> import torch
        >>> from bionn.circuits.connect import one_to_one
        >>> p = Projection("A", "B", one_to_one(1), Alpha(tau_decay=2.0, g_max=1.0))
        >>> syn = p.synapse
        >>> s = syn.update(syn.initial_state(p, 1, None, torch.float64), p, torch.tensor([[True]]),
        ...                0.1, {}, {}, p.weight)
        >>> for _ in range(20):  # 2 ms = tau after the spike
        ...     s = syn.update(s, p, torch.tensor([[False]]), 0.1, {}, {}, p.weight)
        >>> round(float(s["s"]), 4), round(2.0 / 2.718281828, 4)
        (0.7358, 0.7358)
    """

    defaults: ClassVar[dict[str, float]] = {"tau_decay": 2.0, "g_max": 0.2}

    def taus(self, ctx: StepContext | None = None) -> tuple[float | Tensor, float | Tensor]:
        tau = _p(self, "tau_decay", ctx)
        return tau, tau


# ---------------------------------------------------------------------------------------------
# Markov (transmitter-pulse) kinetics, state per presynaptic neuron
# ---------------------------------------------------------------------------------------------
class _TransmitterPulse(Synapse):
    """Shared: ``[T] = T`` for ``T_duration`` ms after each presynaptic spike.

    The pulse is on in the step the spike arrives and the following steps
    while the elapsed time is ``< T_duration`` (bpmodels and BrainPy: ``t -
    t_spike < T_duration``), i.e. ``round(T_duration / dt)`` steps.
    """

    #: state variables that are +inf by design: the time since a presynaptic neuron's
    #: last spike, before its first one (the non-finite check allows +inf there)
    unbounded_above: ClassVar[tuple[str, ...]] = ("t_since",)

    def _pulse(
        self, state: State, spikes: Tensor, dt: float, ctx: StepContext | None = None
    ) -> tuple[Tensor, Tensor]:
        elapsed = (state["t_since"] + dt).masked_fill(spikes, 0.0)
        on = elapsed < _p(self, "T_duration", ctx) - 1e-3 * dt
        return elapsed, on.to(elapsed.dtype) * _p(self, "T", ctx)

    @staticmethod
    def _since(batch: int, n: int, device, dtype) -> Tensor:
        return torch.full((batch, n), math.inf, device=device, dtype=dtype)


class AMPA(_TransmitterPulse):
    """AMPA receptor, two-state Markov kinetics (bpmodels ``get_AMPA2``).

    ``ds/dt = alpha [T] (1 - s) - beta s`` with ``[T] = T`` for ``T_duration``
    ms after each presynaptic spike (0 otherwise); ``s`` clipped to ``[0, 1]``;
    conductance output ``I = g_max sum_j w_ij s_j (E - V)``. The state is one
    ``s`` per presynaptic neuron (nonlinear in s, but shared by all synapses of
    a pre neuron). With ``[T]`` constant over a step the update is exact
    (bpmodels integrated with forward Euler; BrainPy 2.x with exponential
    Euler, which is this update).

    Defaults (bpmodels 0.2.3, unchanged in BrainPy 2.x ``bp.dyn.AMPA``):
    ``alpha = 0.98``, ``beta = 0.18``, ``T = 0.5``, ``T_duration = 0.5``,
    ``g_max = 0.42``, ``E = 0``.

    Example:
        >>> import torch
        >>> from bionn.circuits.connect import all_to_all
        >>> p = Projection("A", "B", all_to_all(2, 1), AMPA(), weight=1.0)
        >>> s = p.synapse.initial_state(p, 1, None, torch.float64)
        >>> s = p.synapse.update(s, p, torch.tensor([[True]]), 0.1, {}, {}, p.weight)
        >>> round(float(s["s"][0, 0]), 5)  # s_inf (1 - exp(-k dt)): s_inf = 0.49 / 0.67, k = 0.67
        0.04739
    """

    defaults: ClassVar[dict[str, float]] = {
        "alpha": 0.98,
        "beta": 0.18,
        "T": 0.5,
        "T_duration": 0.5,
        "g_max": 0.42,
    }
    default_output: ClassVar[str] = "conductance"
    default_E: ClassVar[float | None] = 0.0
    clip: ClassVar[bool] = True

    def initial_state(self, proj: Projection, batch: int, device, dtype) -> State:
        return {
            "s": _zeros(batch, proj.n_pre, device, dtype),
            "t_since": self._since(batch, proj.n_pre, device, dtype),
        }

    def update(
        self,
        state: State,
        proj: Projection,
        spikes: Tensor,
        dt: float,
        pre: State,
        post: State,
        weight: Tensor,
        ctx: StepContext | None = None,
    ) -> State:
        elapsed, tt = self._pulse(state, spikes, dt, ctx)
        on = _p(self, "alpha", ctx) * tt
        rate = on + _p(self, "beta", ctx)
        s = _relax(state["s"], on / rate, rate, dt)
        if self.clip:
            s = s.clamp(0.0, 1.0)
        return {"s": s, "t_since": elapsed}

    def value(
        self,
        state: State,
        proj: Projection,
        pre: State,
        post: State,
        weight: Tensor,
        ctx: StepContext | None = None,
    ) -> Tensor:
        return proj.deliver(state["s"], weight, event_driven=False)


class GABAa(AMPA):
    """GABA_A receptor, two-state Markov kinetics (bpmodels ``get_GABAa2``).

    Same equations as :class:`AMPA`: ``ds/dt = alpha [T] (1 - s) - beta s``,
    ``[T] = T`` for ``T_duration`` ms after a spike, ``I = g_max s (E - V)``,
    one ``s`` per presynaptic neuron, exact update for ``[T]`` constant over
    a step. bpmodels did not clip ``s`` here; the exact update keeps it in
    ``[0, 1]`` anyway.

    Defaults (bpmodels 0.2.3 = BrainPy 2.x ``bp.dyn.GABAa``): ``alpha = 0.53``,
    ``beta = 0.18``, ``T = 1``, ``T_duration = 1``, ``g_max = 0.04``,
    ``E = -80``.

    Example:
        >>> from bionn.circuits.connect import one_to_one
        >>> p = Projection("I", "E", one_to_one(2), GABAa())
        >>> p.output, p.E, round(float(p.synapse.g_max), 6)
        ('conductance', -80.0, 0.04)
    """

    defaults: ClassVar[dict[str, float]] = {
        "alpha": 0.53,
        "beta": 0.18,
        "T": 1.0,
        "T_duration": 1.0,
        "g_max": 0.04,
    }
    default_E: ClassVar[float | None] = -80.0
    clip: ClassVar[bool] = False


class GABAb(_TransmitterPulse):
    """GABA_B receptor with G-protein cascade (bpmodels ``get_GABAb1``).

        dR/dt = k3 [T] (1 - R) - k4 R
        dG/dt = k1 R - k2 G
        g = g_max sum_j w_ij G_j^4 / (G_j^4 + kd),  I = g (E - V)

    with ``[T] = T`` for ``T_duration`` ms after each presynaptic spike. State
    ``R, G`` per presynaptic neuron; with ``[T]`` constant over a step both
    equations are linear and are stepped exactly (``R`` relaxes
    exponentially, ``G`` is the convolution of that ``R`` with
    ``exp(-k2 t)``).

    Defaults (bpmodels 0.2.3): ``k1 = 0.18``, ``k2 = 0.034``, ``k3 = 0.09``,
    ``k4 = 0.0012``, ``kd = 100``, ``T = 0.5``, ``T_duration = 0.3``,
    ``g_max = 0.02``, ``E = -95``. BrainPy 2.x dropped this model (its
    ``GABAb2``, Destexhe 1995, is not provided here).

    Example:
        >>> import torch
        >>> from bionn.circuits.connect import one_to_one
        >>> p = Projection("I", "E", one_to_one(1), GABAb())
        >>> s = p.synapse.initial_state(p, 1, None, torch.float64)
        >>> s = p.synapse.update(s, p, torch.tensor([[True]]), 0.1, {}, {}, p.weight)
        >>> bool(s["R"] > 0) and bool(s["G"] > 0), p.E
        (True, -95.0)
    """

    defaults: ClassVar[dict[str, float]] = {
        "k1": 0.18,
        "k2": 0.034,
        "k3": 0.09,
        "k4": 0.0012,
        "kd": 100.0,
        "T": 0.5,
        "T_duration": 0.3,
        "g_max": 0.02,
    }
    default_output: ClassVar[str] = "conductance"
    default_E: ClassVar[float | None] = -95.0

    def initial_state(self, proj: Projection, batch: int, device, dtype) -> State:
        return {
            "R": _zeros(batch, proj.n_pre, device, dtype),
            "G": _zeros(batch, proj.n_pre, device, dtype),
            "t_since": self._since(batch, proj.n_pre, device, dtype),
        }

    def update(
        self,
        state: State,
        proj: Projection,
        spikes: Tensor,
        dt: float,
        pre: State,
        post: State,
        weight: Tensor,
        ctx: StepContext | None = None,
    ) -> State:
        elapsed, tt = self._pulse(state, spikes, dt, ctx)
        k1, k2 = _p(self, "k1", ctx), _p(self, "k2", ctx)
        on = _p(self, "k3", ctx) * tt
        a = on + _p(self, "k4", ctx)
        r_inf = on / a
        r0, g0 = state["R"], state["G"]
        r = _relax(r0, r_inf, a, dt)
        e2 = _exp(-k2 * dt)
        # G(dt) = G0 e^{-k2 dt} + k1 R_inf (1 - e^{-k2 dt}) / k2
        #         + k1 (R0 - R_inf) (e^{-a dt} - e^{-k2 dt}) / (k2 - a)
        cross = dt * e2 * _expm1_over((k2 - a) * dt)
        g = g0 * e2 + k1 * (r_inf * (1.0 - e2) / k2 + (r0 - r_inf) * cross)
        return {"R": r, "G": g, "t_since": elapsed}

    def value(
        self,
        state: State,
        proj: Projection,
        pre: State,
        post: State,
        weight: Tensor,
        ctx: StepContext | None = None,
    ) -> Tensor:
        g4 = state["G"] ** 4
        return proj.deliver(g4 / (g4 + _p(self, "kd", ctx)), weight, event_driven=False)


class NMDA(Synapse):
    """NMDA receptor with voltage-dependent Mg2+ block (bpmodels ``get_NMDA``).

        dx/dt = -x / tau_rise            (x += 1 per presynaptic spike)
        ds/dt = -s / tau_decay + a x (1 - s)
        I = g_max sum_j w_ij s_j (E - V) / (1 + cc_Mg / beta exp(-alpha V))

    State ``x, s`` per presynaptic neuron. As in bpmodels the spike's jump of
    ``x`` comes first and ``s`` is then integrated over the step, so ``s``
    rises in the step the spike arrives. ``x`` decays exactly; ``s`` is
    stepped exactly for ``x`` held at its mid-step value (second order in
    dt). The Mg block is :meth:`post_factor` (applied by the network to the
    conductance, so the current still drives V toward ``E``).

    Defaults (bpmodels 0.2.3 = BrainPy 2.x ``bp.dyn.NMDA`` + ``MgBlock``):
    ``g_max = 0.15``, ``E = 0``, ``alpha = 0.062``, ``beta = 3.57``,
    ``cc_Mg = 1.2``, ``tau_decay = 100``, ``tau_rise = 2``, ``a = 0.5``.
    BrainPy 2.x adds the ``x`` jump after integrating, which delays ``s`` by
    one step: the same as ``delay=dt`` on this projection.

    Example:
        >>> import torch
        >>> nmda = NMDA()
        >>> [round(float(nmda.post_factor({"V": torch.tensor([[v]])})), 4) for v in (-80.0, 0.0)]
        [0.0204, 0.7484]
    """

    defaults: ClassVar[dict[str, float]] = {
        "tau_decay": 100.0,
        "tau_rise": 2.0,
        "a": 0.5,
        "alpha": 0.062,
        "beta": 3.57,
        "cc_Mg": 1.2,
        "g_max": 0.15,
    }
    default_output: ClassVar[str] = "conductance"
    default_E: ClassVar[float | None] = 0.0

    def initial_state(self, proj: Projection, batch: int, device, dtype) -> State:
        return {
            "x": _zeros(batch, proj.n_pre, device, dtype),
            "s": _zeros(batch, proj.n_pre, device, dtype),
        }

    def update(
        self,
        state: State,
        proj: Projection,
        spikes: Tensor,
        dt: float,
        pre: State,
        post: State,
        weight: Tensor,
        ctx: StepContext | None = None,
    ) -> State:
        tau_rise = _p(self, "tau_rise", ctx)
        x0 = state["x"] + spikes.to(state["x"].dtype)
        x_mid = x0 * _exp(-0.5 * dt / tau_rise)
        drive = _p(self, "a", ctx) * x_mid
        rate = drive + 1.0 / _p(self, "tau_decay", ctx)
        s = _relax(state["s"], drive / rate, rate, dt)
        return {"x": x0 * _exp(-dt / tau_rise), "s": s}

    def value(
        self,
        state: State,
        proj: Projection,
        pre: State,
        post: State,
        weight: Tensor,
        ctx: StepContext | None = None,
    ) -> Tensor:
        return proj.deliver(state["s"], weight, event_driven=False)

    def post_factor(self, post: State, ctx: StepContext | None = None) -> Tensor:
        """Mg block ``1 / (1 + cc_Mg / beta exp(-alpha V))`` of the post neurons."""
        v = post["V"]
        return 1.0 / (
            1.0
            + _p(self, "cc_Mg", ctx) / _p(self, "beta", ctx) * torch.exp(-_p(self, "alpha", ctx) * v)
        )


class STP(Synapse):
    """Short-term plasticity, Tsodyks & Markram 1998 (bpmodels ``get_STP``).

        du/dt = -u / tau_f,  dx/dt = (1 - x) / tau_d,  ds/dt = -s / tau_s

    On a presynaptic spike (``u, x`` before the step's decay: ``u-, x-``;
    after it: ``u_d, x_d``):

        u  <- clip(u_d + U (1 - u-), 0, 1)
        s  <- s + w u x-          (bpmodels; ``order="brainpy2"``: w u x, the new x)
        x  <- clip(x_d - u x-, 0, 1)

    ``u, x`` are per presynaptic neuron; ``s`` is linear, so it is kept per
    post neuron and the released amount ``u x`` of each spiking pre neuron is
    delivered event-driven with the synaptic weights. Current output ``+s``.

    Defaults (bpmodels 0.2.3): ``U = 0.15``, ``tau_f = 1500``,
    ``tau_d = 200``, ``tau_s = 8``, ``g_max = 1``; ``u`` starts at 0, ``x`` at 1.

    ``order="brainpy2"`` follows BrainPy 2.x ``bp.dyn.STP`` (same jumps, but
    ``u`` starts at ``U`` and the delivered efficacy is ``u x`` *after* the
    depletion). The reference notes (§8) describe the 2.x jumps as using the
    decayed ``u``; the 2.x source applies ``U (1 - u-)`` to the decayed ``u``,
    which is what both orders do here.

    Args:
        order: ``"bpmodels"`` (default) or ``"brainpy2"``.

    Example:
        >>> import torch
        >>> from bionn.circuits.connect import one_to_one
        >>> p = Projection("A", "B", one_to_one(1), STP(U=0.2), weight=2.0)
        >>> st = p.synapse.initial_state(p, 1, None, torch.float64)
        >>> st = p.synapse.update(st, p, torch.tensor([[True]]), 0.1, {}, {}, p.weight)
        >>> [round(float(st[k]), 6) for k in ("u", "x", "s")]  # u = U, x = 1 - U, s = w U
        [0.2, 0.8, 0.4]
    """

    defaults: ClassVar[dict[str, float]] = {
        "U": 0.15,
        "tau_f": 1500.0,
        "tau_d": 200.0,
        "tau_s": 8.0,
        "g_max": 1.0,
    }
    default_output: ClassVar[str] = "current"
    ORDERS: ClassVar[tuple[str, ...]] = ("bpmodels", "brainpy2")

    def __init__(self, *, order: str = "bpmodels", **params: Any) -> None:
        if order not in self.ORDERS:
            raise ValueError(
                f"STP: order={order!r} is not allowed; choose one of {list(self.ORDERS)}"
            )
        super().__init__(**params)
        self.order = order

    def extra_repr(self) -> str:
        return super().extra_repr() + f", order={self.order!r}"

    def initial_state(self, proj: Projection, batch: int, device, dtype) -> State:
        u0 = _p(self, "U") if self.order == "brainpy2" else 0.0
        return {
            "u": torch.zeros(batch, proj.n_pre, device=device, dtype=dtype) + u0,
            "x": torch.ones(batch, proj.n_pre, device=device, dtype=dtype),
            "s": _zeros(batch, proj.n_post, device, dtype),
        }

    def update(
        self,
        state: State,
        proj: Projection,
        spikes: Tensor,
        dt: float,
        pre: State,
        post: State,
        weight: Tensor,
        ctx: StepContext | None = None,
    ) -> State:
        u_old, x_old = state["u"], state["x"]
        u_d = u_old * _exp(-dt / _p(self, "tau_f", ctx))
        x_d = 1.0 + (x_old - 1.0) * _exp(-dt / _p(self, "tau_d", ctx))
        u_j = (u_d + _p(self, "U", ctx) * (1.0 - u_old)).clamp(0.0, 1.0)
        x_j = (x_d - u_j * x_old).clamp(0.0, 1.0)
        efficacy = u_j * (x_j if self.order == "brainpy2" else x_old)
        u = torch.where(spikes, u_j, u_d)
        x = torch.where(spikes, x_j, x_d)
        released = torch.where(spikes, efficacy, torch.zeros_like(efficacy))
        s = state["s"] * _exp(-dt / _p(self, "tau_s", ctx))
        s = s + proj.deliver(released, weight, ctx=ctx)
        return {"u": u, "x": x, "s": s}

    def value(
        self,
        state: State,
        proj: Projection,
        pre: State,
        post: State,
        weight: Tensor,
        ctx: StepContext | None = None,
    ) -> Tensor:
        return state["s"]


# ---------------------------------------------------------------------------------------------
# gap junctions and voltage jumps (handled by the network's "gap" / "voltage" outputs)
# ---------------------------------------------------------------------------------------------
class _Stateless(Synapse):
    """A synapse without kinetics; ``outputs`` lists the projection outputs it supports."""

    outputs: ClassVar[tuple[str, ...]] = ()

    def initial_state(self, proj: Projection, batch: int, device, dtype) -> State:
        if proj.output not in self.outputs:
            allowed = " or ".join(repr(o) for o in self.outputs)
            raise ValueError(
                f"projection {proj.name}: {type(self).__name__} needs output {allowed}; "
                f"got {proj.output!r}"
            )
        return {}

    def update(
        self,
        state: State,
        proj: Projection,
        spikes: Tensor,
        dt: float,
        pre: State,
        post: State,
        weight: Tensor,
        ctx: StepContext | None = None,
    ) -> State:
        return state


class GapJunction(_Stateless):
    """Electrical synapse: ``I_i = g_max sum_j w_ij (V_j - V_i)`` (bpmodels ``get_gap_junction``).

    No kinetics. With the default ``output="gap"`` the network adds the
    coupling to the post neurons' drive in its affine form (``g_max sum_j
    w_ij V_j`` as current, ``g_max sum_j w_ij`` as conductance), so
    exponential Euler stays exact for LIF. Use one projection per direction
    (or an all-to-all projection within a group) for symmetric coupling.
    ``output="current"`` uses :meth:`value` instead (explicit current).
    bpmodels' LIF variant also added a "spikelet" ``k_spikelet w`` to V_post
    after a presynaptic spike: add a :class:`VoltageJump` projection with
    weight ``k_spikelet w`` for that.

    Defaults: ``g_max = 1`` (bpmodels' per-synapse ``w`` is the projection weight).

    Example:
        >>> from bionn.circuits.connect import all_to_all
        >>> p = Projection("A", "A", all_to_all(2, 2, autapses=False), GapJunction(), weight=0.5)
        >>> p.output
        'gap'
    """

    defaults: ClassVar[dict[str, float]] = {"g_max": 1.0}
    default_output: ClassVar[str] = "gap"

    outputs: ClassVar[tuple[str, ...]] = ("gap", "current")

    def value(
        self,
        state: State,
        proj: Projection,
        pre: State,
        post: State,
        weight: Tensor,
        ctx: StepContext | None = None,
    ) -> Tensor:
        v_pre = _pre_slice(proj, pre["V"])
        v_post = _post_slice(proj, post["V"])
        coupled = proj.deliver(v_pre, weight, event_driven=False)
        total = proj.deliver(torch.ones_like(v_pre), weight, event_driven=False)
        return coupled - total * v_post


class VoltageJump(_Stateless):
    """Voltage jump: ``V_post += g_max sum_j w_ij spike_j`` (bpmodels ``get_voltage_jump``).

    No kinetics; the network applies the jump right after the neuron step in
    which the (delayed) presynaptic spike arrives. A post neuron with a
    refractory count ignores it in the steps its V is held and in the step it
    spikes (lost to the reset, as in Brian2, whose ``on_pre`` runs before the
    reset); a post group without refractoriness always receives the jump. The weight is the
    jump in mV (bpmodels used an implicit weight 1; brainmodels 1.0 added
    ``weight = 1``).

    Defaults: ``g_max = 1``.

    Example:
        >>> from bionn.circuits.connect import one_to_one
        >>> Projection("A", "B", one_to_one(3), VoltageJump(), weight=0.5).output
        'voltage'
    """

    defaults: ClassVar[dict[str, float]] = {"g_max": 1.0}
    linear_in_spikes: ClassVar[bool] = True
    default_output: ClassVar[str] = "voltage"

    outputs: ClassVar[tuple[str, ...]] = ("voltage",)

    def value(
        self,
        state: State,
        proj: Projection,
        pre: State,
        post: State,
        weight: Tensor,
        ctx: StepContext | None = None,
    ) -> Tensor:
        raise RuntimeError(
            "VoltageJump has no synaptic variable; the network applies it as output 'voltage'"
        )


# ---------------------------------------------------------------------------------------------
# Wang-Buzsaki GABA_A (graded transmitter release from the presynaptic voltage)
# ---------------------------------------------------------------------------------------------
class GABAaWangBuzsaki(Synapse):
    """GABA_A synapse of the Wang & Buzsaki (1996) interneuron gamma network.

        ds/dt = alpha T(V_pre) (1 - s) - beta s,   T(V) = 1 / (1 + exp(-V / 2))
        I = g_max sum_j w_ij s_j (E - V)

    Transmitter release is graded by the presynaptic voltage, not by spikes:
    the state is one ``s`` per presynaptic neuron, driven by the pre group's
    ``V`` after the neuron step (bpmodels/BrainPy integrate with the V at the
    start of the step; the difference is one step of V, well within the
    scheme's O(dt) error). With ``V`` held over the step the update is exact.
    A projection delay does not apply (V is read directly), so ``delay`` must be 0.

    Defaults (BrainPy-Models ``gamma_oscillation.py``): ``alpha = 12``,
    ``beta = 0.1``, ``E = -75``, ``g_max = 0.1``; that network uses
    ``g_max = 0.1 / N`` per synapse (all-to-all, no autapses).

    Example:
        >>> import torch
        >>> from bionn.circuits.connect import one_to_one
        >>> p = Projection("I", "I", one_to_one(1), GABAaWangBuzsaki())
        >>> s = p.synapse.initial_state(p, 1, None, torch.float64)
        >>> v = {"V": torch.tensor([[40.0]])}
        >>> s = p.synapse.update(s, p, torch.tensor([[False]]), 0.04, v, {}, p.weight)
        >>> round(float(s["s"]), 4), p.E
        (0.3805, -75.0)
    """

    defaults: ClassVar[dict[str, float]] = {"alpha": 12.0, "beta": 0.1, "g_max": 0.1}
    default_output: ClassVar[str] = "conductance"
    default_E: ClassVar[float | None] = -75.0

    def initial_state(self, proj: Projection, batch: int, device, dtype) -> State:
        if proj.delay:
            raise ValueError(
                f"projection {proj.name}: GABAaWangBuzsaki reads the presynaptic V directly; "
                f"delay must be 0 ms, got {proj.delay}"
            )
        return {"s": _zeros(batch, proj.n_pre, device, dtype)}

    def update(
        self,
        state: State,
        proj: Projection,
        spikes: Tensor,
        dt: float,
        pre: State,
        post: State,
        weight: Tensor,
        ctx: StepContext | None = None,
    ) -> State:
        v = _pre_slice(proj, pre["V"]).to(state["s"].dtype)
        on = _p(self, "alpha", ctx) * torch.sigmoid(0.5 * v)
        rate = on + _p(self, "beta", ctx)
        return {"s": _relax(state["s"], on / rate, rate, dt)}

    def value(
        self,
        state: State,
        proj: Projection,
        pre: State,
        post: State,
        weight: Tensor,
        ctx: StepContext | None = None,
    ) -> Tensor:
        return proj.deliver(state["s"], weight, event_driven=False)


SYNAPSE_MODELS: dict[str, type[Synapse]] = {
    "Exponential": Exponential,
    "AMPAExponential": AMPAExponential,
    "GABAaExponential": GABAaExponential,
    "DualExponential": DualExponential,
    "Alpha": Alpha,
    "AMPA": AMPA,
    "GABAa": GABAa,
    "GABAb": GABAb,
    "NMDA": NMDA,
    "STP": STP,
    "GapJunction": GapJunction,
    "VoltageJump": VoltageJump,
    "GABAaWangBuzsaki": GABAaWangBuzsaki,
}
