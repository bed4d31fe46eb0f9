r"""Trainable spiking networks: the simulator's neurons with surrogate-gradient spikes.

A :class:`SpikingCell` wraps one of the simulator's neuron classes (:class:`~bionn.spiking.LIF`,
:class:`~bionn.spiking.ALIF`, :class:`~bionn.spiking.ExpIF`, :class:`~bionn.spiking.AdExIF`,
:class:`~bionn.spiking.Izhikevich`, ...) and steps it with the class's *own*
``integrate`` (its equations, its integrator); only the threshold and the reset change:

* synapse (per step, ``d = exp(-dt / tau_syn)``; ``u_t`` the synaptic input of the step,
  recurrent spikes and feedforward input through their weights)::

      delta:            I_t = u_t
      exponential:      I_t = d I_{t-1} + u_t
      dual_exponential: x_t = d_r x_{t-1} + u_t,  I_t = d I_{t-1} + (1 - d_r) x_t
      conductance:      g_t = d g_{t-1} + u_t   (two channels, E and I; the drive is
                        I(V) = g_E (E_exc - V) + g_I (E_inh - V))

* neuron: the class's ``integrate(state, Drive(I_t), dt)`` (for LIF the exact solution,
  ``V_t = beta V_{t-1} + (1 - beta) (V_rest + R I_t)``, ``beta = exp(-dt / tau)``);
* spike: ``z_t = spike((V_t - A_t) / scale, surrogate)`` (Heaviside forward, surrogate
  backward, :func:`bionn.functional.surrogate.spike`), ``A_t`` the threshold ``V_th`` (ALIF:
  ``V_th + beta b_{t-1}``), ``scale`` by default ``V_th - V_rest`` (mV);
* reset: :func:`bionn.functional.surrogate.reset` (``"value"``: ``V <- V_reset`` as the
  simulator, or ``"subtract"``: ``V <- V - (A - V_reset)``), ``detach_reset`` stops the
  gradient through the reset; the class's jumps (AdEx ``w += b``, Izhikevich ``u += d``,
  ALIF ``b += 1 - rho``) are added as ``z_t * jump``;
* refractoriness (classes with ``t_refractory``): as the simulator, V (and the jump
  variables) are held for ``round(t_refractory / dt)`` steps after a spike and the neuron
  cannot spike then. The hold is a fixed mask: the gradient flows through a held V as
  the identity (to the V before the spike) and no surrogate gradient arises in a
  refractory step; the refractory counter carries no gradient.

With ``reset="value"`` and the simulator's threshold this is the simulator's update
step for step: :meth:`SpikingRNN.to_network` hands a trained network to
:class:`~bionn.spiking.Network` for long runs with the same spikes.

:class:`SpikingRNN` is a configuration of :class:`~bionn.recurrent.RecurrentCore` (its
call convention, loop, ``convert``/``BioConverter`` support through
``connection_weights``), :class:`SpikingLayer` a feedforward ``Linear`` + cell.
Readouts and their losses: :class:`LeakyReadout` / :func:`membrane_loss`,
:func:`spike_count` / :func:`count_loss`, :func:`first_spike_time` / :func:`first_spike_loss`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from bionn.circuits import Connectivity
from bionn.constraints import Dale, LowerBound, balance_ei, constrain, resolve_sign
from bionn.functional.feedback import OpKernel
from bionn.functional.lif_scan import lif_scan
from bionn.functional.surrogate import Surrogate, make_surrogate, reset, spike
from bionn.recurrent.core import Prepared, RecurrentCore
from bionn.sparse import SparseStructure, spmm
from bionn.spiking.base import Drive, NeuronGroup
from bionn.spiking.network import Network
from bionn.spiking.neurons import ALIF, LIF, AdExIF, AdQuaIF, ExpIF, Izhikevich, QuaIF
from bionn.spiking.synapses import Exponential, Projection

__all__ = [
    "SYNAPSE_KINDS",
    "TRAINABLE_NEURONS",
    "CellState",
    "LeakyReadout",
    "SpikingCell",
    "SpikingCore",
    "SpikingLayer",
    "SpikingRNN",
    "count_loss",
    "first_spike_loss",
    "first_spike_time",
    "membrane_loss",
    "spike_count",
]

#: neuron classes a :class:`SpikingCell` trains: name -> (class, reset-to parameter,
#: {jump variable: jump parameter}); ALIF's jump ``1 - rho`` is computed from ``tau_a``.
TRAINABLE_NEURONS: dict[str, tuple[type[NeuronGroup], str, dict[str, str]]] = {
    "LIF": (LIF, "V_reset", {}),
    "ALIF": (ALIF, "V_reset", {"b": "1 - rho"}),
    "ExpIF": (ExpIF, "V_reset", {}),
    "QuaIF": (QuaIF, "V_reset", {}),
    "AdExIF": (AdExIF, "V_reset", {"w": "b"}),
    "AdQuaIF": (AdQuaIF, "V_reset", {"w": "b"}),
    "Izhikevich": (Izhikevich, "c", {"u": "d"}),
}

#: synapse kinds of a :class:`SpikingCell`
SYNAPSE_KINDS = ("delta", "exponential", "dual_exponential", "conductance")

#: learnable parameters kept above a bound (``tau*`` above ``dt``: set per cell)
_POSITIVE = ("beta", "R", "delta_T")


class CellState(NamedTuple):
    """State of a :class:`SpikingCell`: spikes ``r`` ``(batch, n)`` (0/1, what the synapses
    see), the neuron's variables ``neuron`` (``{"V": (batch, n), ..., "refractory": ...}``)
    and the synaptic state ``syn`` (a tuple of ``(batch, n)`` or, conductance, ``(batch, 2, n)``);
    in a :class:`SpikingRNN`'s final state also ``out``, its membrane readout at the last step
    ``(batch, n_output)``, so that a trial continued from the state (truncated or checkpointed
    BPTT, closed-loop use) reads out exactly as one uninterrupted run."""

    r: Tensor
    neuron: dict[str, Tensor]
    syn: tuple[Tensor, ...]
    out: Tensor | None = None


def _entry(cls: type) -> tuple[str, dict[str, str]]:
    for k in cls.__mro__:
        for c, to, jumps in TRAINABLE_NEURONS.values():
            if k is c:
                return to, jumps
    raise ValueError(f"{cls.__name__} has no trainable form; trainable: {sorted(TRAINABLE_NEURONS)}")


class SpikingCell(nn.Module):
    r"""One simulator neuron class as a trainable cell (equations in the module docstring).

    Args:
        neuron: a :class:`~bionn.spiking.NeuronGroup` of a class in :data:`TRAINABLE_NEURONS`
            (used as is: its parameters and integrator), or its name with ``n``.
        n: number of neurons (with a name).
        dt: time step (ms).
        surrogate: a :class:`~bionn.functional.surrogate.Surrogate` or its name.
        scale: distance to threshold that ``x = (V - A) / scale`` divides by (mV); default
            ``V_th - V_rest`` (Izhikevich: ``V_th - c``).
        reset: ``"value"`` (the simulator's) or ``"subtract"``.
        detach_reset: no gradient through the reset's dependence on the spike (also for jumps).
        detach_jumps: no gradient through the jumps' dependence on the spike (ALIF ``b``, AdEx
            ``w``, Izhikevich ``u``); default ``detach_reset``. e-prop's ALIF keeps it
            (``detach_reset=True, detach_jumps=False``).
        adaptive_reset: ``reset="subtract"`` removes ``A - V_reset`` (True, the default) or
            ``V_th - V_reset`` (False: the amount does not depend on the adaptation, as in
            e-prop's ALIF, Bellec et al. 2020).
        refractory: keep the class's refractory period (else none).
        synapse: one of :data:`SYNAPSE_KINDS`.
        tau_syn: synaptic (decay) time constant (ms); ``tau_rise`` the rise of ``dual_exponential``.
        E_exc, E_inh: reversal potentials of the ``conductance`` synapse (mV).
        learn: names of parameters to train (``"tau"``, ``"V_th"``, ``"beta"``, ``"tau_a"``,
            ``"a"``, ``"b"``, ..., ``"tau_syn"``): each becomes one ``nn.Parameter`` per
            neuron; ``tau*`` are kept ``>= dt`` and ``beta``, ``R``, ``delta_T`` positive by
            :class:`~bionn.constraints.LowerBound` parametrizations.
        **params: the neuron's parameters when ``neuron`` is a name.

    Example:
        >>> import torch
        >>> cell = SpikingCell("LIF", 3, dt=1.0, synapse="exponential", learn=("tau",),
        ...                    t_refractory=0.0)
        >>> s = cell.initial_state(2)
        >>> for _ in range(20):
        ...     s = cell(s, torch.full((2, 3), 10.0))
        >>> s.r.shape, sorted(s.neuron), bool(cell.neuron.tau.min() >= 1.0)
        (torch.Size([2, 3]), ['V', 'refractory'], True)
    """

    def __init__(self, neuron: NeuronGroup | str, n: int | None = None, *, dt: float = 1.0,
                 surrogate: str | Surrogate = "fast_sigmoid", scale: float | None = None,
                 reset: Literal["value", "subtract"] = "value", detach_reset: bool = True,
                 detach_jumps: bool | None = None, adaptive_reset: bool = True,
                 refractory: bool = True, synapse: str = "exponential", tau_syn: float = 5.0,
                 tau_rise: float = 1.0, E_exc: float = 0.0, E_inh: float = -80.0,
                 learn: Sequence[str] = (), **params: Any) -> None:
        super().__init__()
        if isinstance(neuron, str):
            if neuron not in TRAINABLE_NEURONS:
                raise ValueError(f"unknown neuron {neuron!r}; trainable: {sorted(TRAINABLE_NEURONS)}")
            if n is None:
                raise ValueError("give n (the number of neurons) with a neuron name")
            neuron = TRAINABLE_NEURONS[neuron][0](n, **params)
        elif params or (n is not None and n != neuron.n):
            raise ValueError("parameters and n are given with a neuron name, not with a NeuronGroup")
        if not (isinstance(dt, (int, float)) and dt > 0 and math.isfinite(dt)):
            raise ValueError(f"dt must be a positive number of ms; got {dt!r}")
        if reset not in ("value", "subtract"):
            raise ValueError(f"reset must be 'value' or 'subtract'; got {reset!r}")
        if synapse not in SYNAPSE_KINDS:
            raise ValueError(f"synapse must be one of {SYNAPSE_KINDS}; got {synapse!r}")
        self.reset_to, self.jumps = _entry(type(neuron))
        #: variables held while refractory (as the class's reset: ALIF's trace keeps decaying)
        self.held = ("V",) if isinstance(neuron, ALIF) else ("V", *self.jumps)
        self.neuron = neuron
        self.n, self.dt = neuron.n, float(dt)
        self.surrogate = make_surrogate(surrogate)
        self.reset_mode, self.detach_reset, self.synapse = reset, bool(detach_reset), synapse
        self.detach_jumps = self.detach_reset if detach_jumps is None else bool(detach_jumps)
        self.adaptive_reset = bool(adaptive_reset)
        self.n_channels = 2 if synapse == "conductance" else 1
        used = {"delta": (), "dual_exponential": ("tau_syn", "tau_rise")}.get(synapse, ("tau_syn",))
        for name, v in (("tau_syn", tau_syn), ("tau_rise", tau_rise)):
            # the synapse decays exactly (d = exp(-dt / tau)): any tau > 0 is stable
            if name in used and not v > 0:
                raise ValueError(f"{name} must be > 0 ms; got {v!r}")
            self.register_buffer(name, torch.tensor(float(v)))
        self.E_exc, self.E_inh = float(E_exc), float(E_inh)
        if scale is None:
            rest = neuron.V_rest if "V_rest" in neuron.defaults else getattr(neuron, self.reset_to)
            scale = float((neuron.V_th - rest).abs().mean())
        if not scale > 0:
            raise ValueError(f"scale must be > 0 mV; got {scale!r}")
        self.scale = float(scale)
        self.refractory = bool(refractory) and neuron.has_refractory and bool(
            (torch.round(neuron.t_refractory / dt) > 0).any())
        self.learn = tuple(learn)
        for name in self.learn:
            self._make_learnable(name)

    def _make_learnable(self, name: str) -> None:
        holder: nn.Module = self if name in ("tau_syn", "tau_rise") else self.neuron
        if holder is self.neuron and name not in self.neuron.defaults:
            raise ValueError(f"learn: {name!r} is not a parameter of {type(self.neuron).__name__} "
                             f"(parameters: {sorted(self.neuron.defaults)}) nor tau_syn/tau_rise")
        if name in ("t_refractory", "noise"):
            raise ValueError(f"learn: {name!r} cannot be learned")
        value = getattr(holder, name).detach().clone()
        if holder is self.neuron:
            value = value.expand(self.n).clone()
        del holder._buffers[name]
        holder.register_parameter(name, nn.Parameter(value))
        if name.startswith("tau"):
            parametrize.register_parametrization(holder, name, LowerBound(self.dt))
        elif name in _POSITIVE:
            parametrize.register_parametrization(holder, name, LowerBound(0.0))

    # ------------------------------------------------------------------ state
    def initial_state(self, batch_size: int, *, dtype: torch.dtype | None = None,
                      device: torch.device | str | None = None) -> CellState:
        """The neuron class's initial values (e.g. ``V = V_rest``), no spikes, zero synapses."""
        ref = next(iter(self.neuron.parameters()), None)
        if ref is None:
            ref = self.tau_syn
        dtype = dtype or ref.dtype
        device = device if device is not None else ref.device
        v = self.neuron.initial_state(batch_size, dtype=dtype, device=device)
        r = v.pop("spike").to(dtype)
        v = {k: t.to(device) for k, t in v.items()}
        if "refractory" not in v:
            v["refractory"] = torch.zeros_like(r)
        z = r.new_zeros(batch_size, self.n)
        syn: tuple[Tensor, ...] = {
            "delta": (), "exponential": (z,), "dual_exponential": (z, z),
            "conductance": (r.new_zeros(batch_size, 2, self.n),)}[self.synapse]
        return CellState(r, v, syn)

    def threshold(self, neuron_state: dict[str, Tensor]) -> Tensor:
        """The threshold ``A`` (mV) of a step from the state at its start."""
        th = getattr(self.neuron, "threshold", None)
        return th(neuron_state) if th is not None else self.neuron.V_th

    def _jump(self, name: str) -> Tensor:
        if name == "1 - rho":
            return -torch.expm1(-self.dt / self.neuron.tau_a)
        return getattr(self.neuron, name)

    # ------------------------------------------------------------------ step
    def forward(self, state: CellState, u: Tensor) -> CellState:
        """One step from ``state`` with synaptic input ``u`` ``(batch, n)`` (conductance:
        ``(batch, 2, n)``, E then I). Returns the new :class:`CellState`."""
        dt = self.dt
        syn: tuple[Tensor, ...]
        if self.synapse == "delta":
            drive, syn = Drive(u), ()
        elif self.synapse == "exponential":
            i = state.syn[0] * torch.exp(-dt / self.tau_syn) + u
            drive, syn = Drive(i), (i,)
        elif self.synapse == "dual_exponential":
            d_r = torch.exp(-dt / self.tau_rise)
            x = state.syn[0] * d_r + u
            i = state.syn[1] * torch.exp(-dt / self.tau_syn) + (1.0 - d_r) * x
            drive, syn = Drive(i), (x, i)
        else:
            g = state.syn[0] * torch.exp(-dt / self.tau_syn) + u
            g_e, g_i = g[:, 0], g[:, 1]
            drive, syn = Drive(g_e * self.E_exc + g_i * self.E_inh, g_e + g_i), (g,)
        old = state.neuron
        new = self.neuron.integrate(dict(old), drive, dt)
        th = self.threshold(old)
        v = new["V"]
        if self.refractory:
            frozen = old["refractory"] > 0
            for k in self.held:
                new[k] = torch.where(frozen, old[k], new[k])
            v = new["V"]
        z = spike((v - th) / self.scale, self.surrogate)
        if self.refractory:
            z = z * (~frozen).to(z.dtype)
        new["V"] = reset(v, z, mode=self.reset_mode, v_th=th if self.adaptive_reset else self.neuron.V_th,
                         v_reset=getattr(self.neuron, self.reset_to), detach=self.detach_reset)
        zj = z.detach() if self.detach_jumps else z
        for k, j in self.jumps.items():
            new[k] = new[k] + zj * self._jump(j)
        if self.refractory:
            steps = torch.round(self.neuron.t_refractory / dt).to(v.dtype)
            new["refractory"] = torch.where(z.detach() > 0, steps.expand_as(v),
                                            (old["refractory"] - 1).clamp_min(0))
        return CellState(z, new, syn)

    # ------------------------------------------------------------------ sequence
    @property
    def fusable(self) -> bool:
        """Whether :meth:`scan` runs the fused loop :func:`bionn.functional.lif_scan.lif_scan`:
        the LIF class with its exact step, a delta or exponential synapse, no refractory
        period, a detached reset, ``R > 0`` and no learned parameter (the common training
        set-up)."""
        nr = self.neuron
        return (type(nr) is LIF and nr.method in ("exp_euler", "exact") and not self.refractory
                and self.synapse in ("delta", "exponential") and self.detach_reset and not self.learn
                and bool((nr.R > 0).all()))

    def scan(self, u: Tensor, state: CellState | None = None, w_rec: Tensor | None = None, *,
             fused: bool = True) -> tuple[Tensor, CellState]:
        """Run the cell over a sequence: ``u`` ``(batch, time, n)`` the input of each step,
        plus ``W_rec z_{t-1}`` with a dense recurrent ``(post, pre)`` weight ``w_rec``.

        Returns ``(spikes (batch, time, n), final CellState)``. A :attr:`fusable` cell runs
        :func:`~bionn.functional.lif_scan.lif_scan` (the same spikes and gradients as the
        step-by-step loop, in a fraction of the time); any other cell, or ``fused=False``,
        steps :meth:`forward` (one autograd node per operation: hooks and ``detach`` reach
        every step).

        Example:
            >>> cell = SpikingCell("LIF", 4, synapse="delta", t_refractory=0.0)
            >>> z, s = cell.scan(torch.full((2, 30, 4), 30.0))
            >>> z.shape, cell.fusable, bool(torch.equal(s.r, z[:, -1]))
            (torch.Size([2, 30, 4]), True, True)
        """
        if state is None:
            state = self.initial_state(u.shape[0], dtype=u.dtype, device=u.device)
        if fused and self.fusable and u.dim() == 3:
            nr = self.neuron
            beta = torch.exp(-self.dt / nr.tau)
            exp_syn = self.synapse == "exponential"
            z, v, i = lif_scan(
                u, state.neuron["V"], beta=beta, gain=(1.0 - beta) * nr.R, offset=(1.0 - beta) * nr.V_rest,
                v_th=nr.V_th, v_reset=nr.V_reset, scale=self.scale, surrogate=self.surrogate,
                reset=self.reset_mode, syn_decay=torch.exp(-self.dt / self.tau_syn) if exp_syn else None,
                i0=state.syn[0] if exp_syn else None, w_rec=w_rec, z0=state.r if w_rec is not None else None)
            return z, CellState(z[:, -1], {**state.neuron, "V": v}, (i,) if exp_syn else ())
        out = []
        for u_t in u.unbind(1):  # one view per step: indexing u[:, t] costs a full-size
            if w_rec is not None:  # gradient buffer per step in the backward pass
                u_t = u_t + F.linear(state.r, w_rec)
            state = self(state, u_t)
            out.append(state.r)
        return torch.stack(out, 1), state

    def extra_repr(self) -> str:
        return (f"n={self.n}, dt={self.dt:g}, surrogate={self.surrogate}, synapse={self.synapse!r}, "
                f"reset={self.reset_mode!r}, detach_reset={self.detach_reset}, learn={list(self.learn)}")


def _cell(cell: SpikingCell | NeuronGroup | str, n: int, dt: float, kwargs: dict[str, Any]) -> SpikingCell:
    if isinstance(cell, SpikingCell):
        if kwargs:
            raise ValueError(f"cell options {sorted(kwargs)} are given with a cell name, not a SpikingCell")
        if cell.n != n or cell.dt != dt:
            raise ValueError(f"the cell has n={cell.n}, dt={cell.dt:g}; the model needs n={n}, dt={dt:g}")
        return cell
    return SpikingCell(cell, n if isinstance(cell, str) else None, dt=dt, **kwargs)


def _leaky(x: Tensor, decay: Tensor, y0: Tensor | None = None) -> Tensor:
    """``y_t = decay y_{t-1} + (1 - decay) x_t`` over dim 1 of ``x`` ``(batch, time, n)``,
    from ``y_{-1} = y0`` (zero by default)."""
    y = torch.zeros_like(x[:, 0]) if y0 is None else y0
    out = []
    for x_t in x.unbind(1):  # views: no full-size gradient buffer per step
        y = torch.lerp(x_t, y, decay)
        out.append(y)
    return torch.stack(out, 1)


class LeakyReadout(nn.Module):
    r"""Leaky-integrator (non-spiking) readout of spikes: ``tau_out dy/dt = -y + W s + b``,
    exact for input held over a step::

        y_t = kappa y_{t-1} + (1 - kappa) (W s_t + b),   kappa = exp(-dt / tau_out)

    Args:
        n_in, n_out: sizes; dt, tau: ms (``tau >= dt``); learn_tau: train ``tau`` (kept >= dt).

    Example:
        >>> ro = LeakyReadout(4, 2, dt=1.0, tau=10.0)
        >>> ro(torch.ones(3, 5, 4)).shape
        torch.Size([3, 5, 2])
    """

    def __init__(self, n_in: int, n_out: int, *, dt: float = 1.0, tau: float = 20.0,
                 learn_tau: bool = False, bias: bool = True) -> None:
        super().__init__()
        if not tau >= dt:
            raise ValueError(f"tau must be >= dt ({dt:g} ms); got {tau!r}")
        self.dt = float(dt)
        self.linear = nn.Linear(n_in, n_out, bias=bias)
        if learn_tau:
            self.tau = nn.Parameter(torch.tensor(float(tau)))
            parametrize.register_parametrization(self, "tau", LowerBound(self.dt))
        else:
            self.register_buffer("tau", torch.tensor(float(tau)))

    def forward(self, spikes: Tensor) -> Tensor:
        """Membrane ``(batch, time, n_out)`` from spikes ``(batch, time, n_in)``."""
        return _leaky(self.linear(spikes), torch.exp(-self.dt / self.tau))


def spike_count(spikes: Tensor) -> Tensor:
    """``n_i = sum_t s_{t,i}``: spikes per neuron, ``(batch, n)`` from ``(batch, time, n)``
    (differentiable through the surrogate)."""
    return spikes.sum(1)


def first_spike_time(spikes: Tensor, dt: float) -> Tensor:
    r"""Time of each neuron's first spike (ms, end of its step), ``(batch, n)``::

        t_i = dt (1 + sum_t prod_{k <= t} (1 - s_{k,i}))

    a spike at step ``m`` (from 0) gives ``(m + 1) dt``; no spike gives ``(T + 1) dt``. The
    product makes it differentiable through the surrogate of every spike up to the first.

    Example:
        >>> first_spike_time(torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]]]), 2.0).tolist()
        [[4.0, 8.0]]
    """
    return dt * (1.0 + torch.cumprod(1.0 - spikes, dim=1).sum(1))


def membrane_loss(v: Tensor, target: Tensor, reduce: Literal["max", "last", "mean"] = "max") -> Tensor:
    r"""Cross-entropy on a membrane readout ``v`` ``(batch, time, classes)``: logits
    ``max_t v_t`` (``"max"``), ``v_T`` (``"last"``) or ``mean_t v_t``;
    ``L = -log softmax(logits)_target``."""
    if reduce == "max":
        logits = v.amax(1)
    elif reduce == "last":
        logits = v[:, -1]
    elif reduce == "mean":
        logits = v.mean(1)
    else:
        raise ValueError(f"reduce must be 'max', 'last' or 'mean'; got {reduce!r}")
    return F.cross_entropy(logits, target)


def count_loss(spikes: Tensor, target: Tensor, scale: float = 1.0) -> Tensor:
    r"""Cross-entropy on the spike counts of the output neurons (``(batch, time, classes)``):
    ``L = -log softmax(scale n)_target``, ``n`` from :func:`spike_count`."""
    return F.cross_entropy(scale * spike_count(spikes), target)


def first_spike_loss(spikes: Tensor, target: Tensor, dt: float, tau: float = 5.0) -> Tensor:
    r"""Time-to-first-spike cross-entropy (Mostafa 2018; Goeltz et al. 2021): the target
    neuron should fire first, ``L = -log softmax(-t / tau)_target`` with ``t`` from
    :func:`first_spike_time` (ms) and ``tau`` (ms) the temperature."""
    return F.cross_entropy(-first_spike_time(spikes, dt) / tau, target)


class SpikingLayer(nn.Module):
    r"""A feedforward spiking layer: ``u_t = W x_t + b`` (an ``nn.Linear``, so ``convert``
    swaps it) into a :class:`SpikingCell`.

    With the LIF class, ``synapse="delta"``, ``V_rest = 0``, ``R = 1``, ``reset="subtract"``
    the update is exactly::

        V'_t = beta V_{t-1} + (1 - beta) (W x_t + b)
        z_t  = H(V'_t - V_th),   V_t = V'_t - z_t (V_th - V_reset),   beta = exp(-dt / tau)

    snnTorch's ``Leaky(beta)`` (``mem_t = beta mem_{t-1} + in_t``, subtract reset by
    ``threshold``) is this with its input ``in_t = (1 - beta)(W x_t + b)``, ``V_reset = 0``;
    Norse's ``tau_mem_inv`` is ``1 / tau`` (Norse integrates with forward Euler: its
    decay is ``1 - dt tau_mem_inv`` where ours is ``exp(-dt tau_mem_inv)``).

    ``forward(x, state=None, return_state=False)``: ``x`` ``(batch, time, n_in)`` ->
    spikes ``(batch, time, n_out)`` (and the final :class:`CellState`). ``fused``: run the
    cell through :meth:`SpikingCell.scan`'s fused loop when it can (default).

    Example:
        >>> layer = SpikingLayer(4, 3, dt=1.0, synapse="delta", t_refractory=0.0)
        >>> layer(torch.rand(2, 10, 4) * 50).shape
        torch.Size([2, 10, 3])
    """

    def __init__(self, n_in: int, n_out: int, cell: SpikingCell | NeuronGroup | str = "LIF", *,
                 dt: float = 1.0, bias: bool = True, fused: bool = True, **cell_options: Any) -> None:
        super().__init__()
        self.fused = bool(fused)
        self.linear = nn.Linear(n_in, n_out, bias=bias)
        self.cell = _cell(cell, n_out, dt, cell_options)
        self.dt = float(dt)

    def forward(self, x: Tensor, state: CellState | None = None,
                return_state: bool = False) -> Tensor | tuple[Tensor, CellState]:
        if x.dim() != 3:
            raise ValueError(f"input must be (batch, time, n_in); got shape {tuple(x.shape)}")
        u = self.linear(x)
        if self.cell.n_channels == 2:
            u = torch.stack((u.clamp_min(0), (-u).clamp_min(0)), -2)
        spikes, state = self.cell.scan(u, state, fused=self.fused)
        return (spikes, state) if return_state else spikes


def _split(op: Callable[[Tensor, Tensor, Tensor | None], Tensor]) -> Callable:
    """``op`` for conductance synapses: positive weights onto channel E, negative onto I."""
    return lambda x, w, b: torch.stack((op(x, w.clamp_min(0), b), op(x, (-w).clamp_min(0), None)), -2)


class SpikingCore(RecurrentCore):
    """What every spiking configuration of the core shares (:class:`SpikingRNN`,
    :class:`~bionn.spiking.ConvSpikingRNN`): a :class:`SpikingCell` ``self.cell`` as the unit
    update, its initial state, its membrane time constants, and a readout that is linear or a
    leaky membrane (``readout_mode``, ``tau_out``) continued across calls through
    ``CellState.out``. A subclass builds ``self.cell``, ``weight_out``, ``readout_mode`` and
    ``tau_out`` and implements the connections."""

    def time_constants_per_unit(self) -> Tensor:
        """The membrane tau (ms) per neuron (``dt`` for a class without ``tau``)."""
        nr = self.cell.neuron
        tau = nr.tau if "tau" in nr.defaults else torch.tensor(self.dt)
        return tau.expand(self.n_hidden)

    def membrane(self, y: Tensor, y0: Tensor | None = None) -> Tensor:
        """The readout of the linear drive ``y`` ``(batch, time, n_output)``: ``y`` itself
        (``readout="linear"``) or the leaky membrane ``kappa y_{t-1} + (1 - kappa) y_t``
        from ``y0`` (``"membrane"``, ``kappa = exp(-dt / tau_out)``)."""
        if self.readout_mode == "linear":
            return y
        return _leaky(y, torch.exp(-self.dt / self.tau_out), y0)

    def run(self, x: Tensor, state: CellState | None = None, prepared: Prepared | None = None,
            ) -> tuple[Tensor, Tensor, CellState]:
        """The core's :meth:`~bionn.recurrent.RecurrentCore.run`; the membrane readout
        continues from ``state.out`` and the final state carries it (``CellState.out``)."""
        out, spikes, final = super().run(x, state, prepared)
        y0 = None if state is None else state.out
        if self.readout_mode == "membrane" and y0 is not None:
            # the readout is linear in its start: y_t(y0) = y_t(0) + kappa^(t+1) y0
            kappa = torch.exp(-self.dt / self.tau_out)
            steps = torch.arange(1, out.shape[1] + 1, dtype=out.dtype, device=out.device)
            out = out + kappa.pow(steps)[None, :, None] * y0[:, None, :]
        return out, spikes, final._replace(out=out[:, -1])

    def initial_state(self, batch_size: int) -> CellState:
        """The cell's initial state (the neuron class's initial values, no spikes)."""
        return self.cell.initial_state(batch_size, dtype=self.weight_out.dtype,
                                       device=self.weight_out.device)

    def cell_update(self, state: CellState, syn: Tensor, alpha: Tensor, pre_noise: Tensor | None = None,
                    post_noise: Tensor | None = None) -> CellState:
        """The :class:`SpikingCell` step on the synaptic input ``syn``; spikes as ``.r``."""
        return self.cell(state, syn)


class SpikingRNN(SpikingCore):
    r"""A recurrent spiking network trained by surrogate gradients: a configuration of
    :class:`~bionn.recurrent.RecurrentCore` with a :class:`SpikingCell` as its cell update::

        u_t = W_rec z_{t-1} + W_in x_t + b          (synaptic input, (post, pre) weights)
        state_t, z_t = cell(state_{t-1}, u_t)        (synapse, neuron, surrogate spike, reset)
        y_t = kappa y_{t-1} + (1 - kappa) (W_out z_t + b_out)   (readout="membrane")

    ``readout="linear"`` gives ``y_t = W_out z_t + b_out``. Weights are ``nn.Parameter`` under
    the CTRNN's parametrizations: Dale's law (``sign`` / ``e_fraction`` / the connectivity's
    sign: ``mask * |W| * sign[pre]``), masks, and for a sparse connectivity (or
    ``sparse=True``) one value per synapse under :class:`~bionn.constraints.Dale`,
    multiplied by :func:`~bionn.sparse.spmm`. The recurrent weight reaches the neurons
    through the cell's synapse; conductance synapses split each product into its positive
    (onto ``g_E``) and negative (onto ``g_I``) parts.

    Call convention of the core: ``forward(x, state=None, return_state=False) ->
    (outputs, spikes[, state])`` with ``x`` ``(batch, time, n_input)``, ``spikes``
    ``(batch, time, n_hidden)`` in the rates' place; ``step``, ``initial_state``,
    ``connection_weights()`` / ``connection_parameters()`` (``input``, ``recurrent``,
    ``readout``) and ``credit_assignment`` as every core model, so
    ``bionn.learning.convert(model, "fa")`` and ``BioConverter`` apply. Truncated BPTT:
    continue from ``detach_state(state)``.

    Args:
        n_input, n_hidden, n_output: sizes.
        cell: a neuron name of :data:`TRAINABLE_NEURONS` (default ``"LIF"``), a
            :class:`~bionn.spiking.NeuronGroup` or a :class:`SpikingCell` (``n_hidden``, ``dt``).
        dt: step (ms).
        connectivity: the recurrent :class:`~bionn.circuits.Connectivity` (mask, sign per
            presynaptic neuron; sparse layout gives sparse recurrence), or any object with a
            ``.connectivity`` (a cell-type table, multi-area network, motif, connectome).
        e_fraction, sign: Dale's law without a connectivity (first E, then I).
        sparse: force sparse (True) or dense (False) recurrence; default: the layout.
        input_mask: ``(n_hidden, n_input)`` 0/1 mask.
        readout: ``"membrane"`` or ``"linear"``; tau_out (ms), learn_tau_out.
        input_gain, recurrent_gain: initial weight scales, in units of the cell's ``scale``
            per unit of input (divided by the synapse's gain ``1 / (1 - d)``).
        bias: a learned input bias ``b``.
        generator: for the initial weights.
        fused: with a :attr:`SpikingCell.fusable` cell, dense recurrence and no feedback rule
            on it, run the time loop as :func:`~bionn.functional.lif_scan.lif_scan` (one
            autograd node, hand-written BPTT); False: the core's step-by-step loop.
        **cell_options: :class:`SpikingCell` options and neuron parameters (``surrogate``,
            ``reset``, ``detach_reset``, ``synapse``, ``tau_syn``, ``learn``, ``tau``, ``V_th``, ...).

    Example:
        >>> net = SpikingRNN(3, 40, 2, dt=1.0, e_fraction=0.8, t_refractory=0.0)
        >>> out, spikes = net(torch.rand(4, 30, 3))
        >>> out.shape, spikes.shape, bool((net.weight_rec[:, 32:] <= 0).all())
        (torch.Size([4, 30, 2]), torch.Size([4, 30, 40]), True)
    """

    WEIGHT_NAMES = {"input": "weight_in", "recurrent": "weight_rec", "readout": "weight_out"}
    #: biases (``BioConverter(include_bias=True)`` transforms them with the weights)
    BIAS_NAMES = ("bias_rec", "bias_out")

    def __init__(self, n_input: int, n_hidden: int, n_output: int, *,
                 cell: SpikingCell | NeuronGroup | str = "LIF", dt: float = 1.0,
                 connectivity: Any = None, e_fraction: float | None = None, sign: Tensor | None = None,
                 sparse: bool | None = None, input_mask: Tensor | None = None,
                 readout: Literal["membrane", "linear"] = "membrane", tau_out: float = 20.0,
                 learn_tau_out: bool = False, input_gain: float = 1.0, recurrent_gain: float = 0.5,
                 bias: bool = False, generator: torch.Generator | None = None, fused: bool = True,
                 **cell_options: Any) -> None:
        super().__init__()
        for name, v in (("n_input", n_input), ("n_hidden", n_hidden), ("n_output", n_output)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive integer; got {v!r}")
        if readout not in ("membrane", "linear"):
            raise ValueError(f"readout must be 'membrane' or 'linear'; got {readout!r}")
        self.n_input, self.n_hidden, self.n_output = n_input, n_hidden, n_output
        self._init_core(dt=dt, unit_shape=(n_hidden,), activation=None, fused=fused)
        self.cell = _cell(cell, n_hidden, self.dt, cell_options)
        self.readout_mode = readout

        if connectivity is not None and not isinstance(connectivity, Connectivity):
            c = getattr(connectivity, "connectivity", None)
            if c is None:
                raise ValueError("connectivity must be a Connectivity or have a .connectivity")
            connectivity = c() if callable(c) else c
        mask = None
        if connectivity is not None:
            if connectivity.shape != (n_hidden, n_hidden):
                raise ValueError(f"connectivity has shape {connectivity.shape}; expected "
                                 f"({n_hidden}, {n_hidden})")
            if sign is None and e_fraction is None:
                sign = connectivity.sign
            if sparse is None:
                sparse = connectivity.is_sparse
            mask = connectivity.dense()
        sign = resolve_sign(n_hidden, sign, e_fraction)
        self.sparse = bool(sparse)
        self.register_buffer("sign", sign)

        # initial weights: unit input moves V by about `gain` thresholds at steady state
        syn_gain = 1.0 if self.cell.synapse == "delta" else float(1.0 - torch.exp(-self.dt / self.cell.tau_syn.detach()))
        unit = self.cell.scale * syn_gain
        if self.cell.synapse == "conductance":
            unit = syn_gain / max(abs(self.cell.E_exc - float(self.cell.neuron.V_th.mean())), 1.0)
        w_in = torch.randn(n_hidden, n_input, generator=generator) * (input_gain * unit / math.sqrt(n_input))
        w_rec = torch.rand(n_hidden, n_hidden, generator=generator) * (recurrent_gain * unit / math.sqrt(n_hidden))
        if sign is not None:
            w_rec = balance_ei(w_rec, sign, mask)
        else:
            w_rec = w_rec * torch.where(torch.rand(n_hidden, n_hidden, generator=generator) < 0.5, -1.0, 1.0)
        self.weight_in = nn.Parameter(w_in)
        self.bias_rec = nn.Parameter(torch.zeros(n_hidden)) if bias else None
        if input_mask is not None:
            input_mask = torch.as_tensor(input_mask, dtype=torch.get_default_dtype())
        constrain(self, "weight_in", mask=input_mask)
        if self.sparse:
            m = mask if mask is not None else torch.ones(n_hidden, n_hidden)
            post, pre = m.nonzero(as_tuple=True)
            structure, order = SparseStructure.from_edges(post, pre, (n_hidden, n_hidden))
            structure.keep_in(self)
            pre_csr = structure.col.long()
            post_csr = structure.row.long()
            vals = w_rec[post_csr, pre_csr]
            self.weight_rec = nn.Parameter(vals.clone())
            edge_sign = sign[pre_csr] if sign is not None else torch.sign(vals) + (vals == 0).float()
            parametrize.register_parametrization(self, "weight_rec", Dale(edge_sign, dim=0))
        else:
            self.weight_rec = nn.Parameter(w_rec)
            constrain(self, "weight_rec", sign=sign, mask=None if mask is None or bool((mask == 1).all())
                      else mask)
        self.weight_out = nn.Parameter(torch.randn(n_output, n_hidden, generator=generator) / math.sqrt(n_hidden))
        self.bias_out = nn.Parameter(torch.zeros(n_output))
        if readout == "membrane":
            if not tau_out >= dt:
                raise ValueError(f"tau_out must be >= dt ({dt:g} ms); got {tau_out!r}")
            if learn_tau_out:
                self.tau_out = nn.Parameter(torch.tensor(float(tau_out)))
                parametrize.register_parametrization(self, "tau_out", LowerBound(self.dt))
            else:
                self.register_buffer("tau_out", torch.tensor(float(tau_out)))

    # ------------------------------------------------------------------ structure
    @property
    def structure(self) -> SparseStructure:
        """The sparse recurrent pattern (sparse recurrence only)."""
        return SparseStructure.kept_in(self, (self.n_hidden, self.n_hidden))

    def recurrent_weight(self) -> Tensor:
        """The effective recurrent ``(post, pre)`` matrix, dense (also for sparse recurrence)."""
        w = self.weight_rec
        return self.structure.to_dense(w) if self.sparse else w

    # ------------------------------------------------------------------ core configuration
    def connection_weights(self) -> dict[str, Tensor]:
        """Effective weights: ``input`` ``(n_hidden, n_input)``, ``recurrent`` ``(post, pre)``
        (sparse: ``(nnz,)`` values in CSR order), ``readout`` ``(n_output, n_hidden)``."""
        return {"input": self.weight_in, "recurrent": self.weight_rec, "readout": self.weight_out}

    def _kernel(self, op: Callable) -> OpKernel:
        return OpKernel(_split(op) if self.cell.n_channels == 2 else op)

    def input_drive(self, x: Tensor, p: Prepared) -> Tensor:
        """``W_in x_t + b`` for every step, ``(batch, time, n_hidden)`` (conductance: ``(.., 2, n)``)."""
        return self.connect(p, "input", x, p.weights["input"], self.bias_rec,
                            kernel=self._kernel(F.linear))

    def recurrent_input(self, r: Tensor, p: Prepared) -> Tensor:
        """``W_rec z_{t-1}`` (dense or sparse)."""
        if self.sparse:
            structure = self.structure
            op = lambda x, v, b: spmm(v, structure, x)  # noqa: E731
        else:
            op = F.linear
        return self.connect(p, "recurrent", r, p.weights["recurrent"], kernel=self._kernel(op))

    def readout(self, rates: Tensor, p: Prepared, y0: Tensor | None = None) -> Tensor:
        """The outputs from the spikes (leaky membrane from ``y0``, or linear)."""
        return self.membrane(self.connect(p, "readout", rates, p.weights["readout"], self.bias_out), y0)

    def _sequence(self, x: Tensor, state: CellState, p: Prepared) -> tuple[Tensor, Tensor, CellState]:
        """The core's loop, or, for a :attr:`SpikingCell.fusable` cell with dense recurrence
        and no feedback rule on it, :meth:`SpikingCell.scan` (the fused LIF loop)."""
        if not self.fused or self.sparse or self.RECURRENT in p.feedback or not self.cell.fusable:
            return super()._sequence(x, state, p)
        spikes, final = self.cell.scan(self.input_drive(x, p), state, w_rec=p.weights["recurrent"])
        return self.readout(spikes, p), spikes, final

    @torch.no_grad()
    def traces(self, x: Tensor) -> dict[str, Tensor]:
        """The membrane potential and the threshold of every neuron at every step of a run
        on ``x`` ``(batch, time, n_input)``: ``{"V": (batch, time, n_hidden) mV after the
        step's reset, "threshold": (batch, time, n_hidden) mV the step's spike threshold
        (ALIF: V_th + beta b), "spikes": (batch, time, n_hidden)}``.

        Example:
            >>> net = SpikingRNN(2, 5, 1, cell="ALIF", t_refractory=0.0)
            >>> tr = net.traces(torch.rand(1, 8, 2) * 40)
            >>> tr["V"].shape, bool((tr["threshold"] >= net.cell.neuron.V_th).all())
            (torch.Size([1, 8, 5]), True)
        """
        p = self.prepare()
        state = self.initial_state(x.shape[0])
        out: dict[str, list[Tensor]] = {"V": [], "threshold": [], "spikes": []}
        for x_t in x.unbind(1):
            th = self.cell.threshold(state.neuron)
            _, z, state = self.step(state, x_t, p)
            out["V"].append(state.neuron["V"])
            out["threshold"].append(torch.as_tensor(th, dtype=z.dtype).expand_as(z))
            out["spikes"].append(z)
        return {k: torch.stack(v, 1) for k, v in out.items()}

    # ------------------------------------------------------------------ hand-off
    def network_input(self, x: Tensor) -> Tensor:
        """The feedforward part of the current each neuron receives at every step,
        ``(batch, time, n_hidden)``: ``W_in x_t + b`` through the cell's synapse filter
        (what :meth:`to_network` feeds the simulator as an external current)."""
        with torch.no_grad():
            u = F.linear(x, self.weight_in, self.bias_rec)
            if self.cell.synapse == "delta":
                return u
            if self.cell.synapse != "exponential":
                raise NotImplementedError("hand-off supports the delta and exponential synapses")
            d = torch.exp(-self.dt / self.cell.tau_syn)
            i, out = torch.zeros_like(u[:, 0]), []
            for t in range(u.shape[1]):
                i = i * d + u[:, t]
                out.append(i)
            return torch.stack(out, 1)

    def to_network(self, x: Tensor | None = None, *, name: str = "hidden") -> Network:
        """The hidden layer as a simulator :class:`~bionn.spiking.Network` with the same
        dynamics: group ``name`` (the cell's neuron class with the trained parameter values
        and integrator), projection ``name->name`` with the recurrent weights through an
        :class:`~bionn.spiking.Exponential` synapse (``tau_decay = tau_syn``, ``g_max = 1``;
        the delta synapse as an exponential one decaying to 0 within a step), and, with
        ``x`` ``(batch, time, n_input)``, the input current :meth:`network_input` as the
        group's external input (step ``k`` reads ``t = k dt``; zero after the trial).
        Needs ``reset="value"`` (the simulator's) and a delta or exponential synapse.
        ``Network.run(T dt, dt=dt, batch=batch)`` then gives the spikes of ``forward(x)``.
        """
        cell = self.cell
        if cell.reset_mode != "value" or cell.synapse not in ("delta", "exponential"):
            raise NotImplementedError("to_network needs reset='value' and a delta or exponential synapse")
        nr = cell.neuron
        params = {k: getattr(nr, k).detach().clone() for k in nr.defaults}
        if not cell.refractory and "t_refractory" in params:
            params["t_refractory"] = torch.zeros_like(params["t_refractory"])
        kwargs: dict[str, Any] = {"method": nr.method}
        if hasattr(nr, "order"):
            kwargs["order"] = nr.order
        group = type(nr)(self.n_hidden, initial=dict(nr.initial), **kwargs, **params)
        with torch.no_grad():
            w = self.recurrent_weight().detach().clone()
        mask = (self.structure.to_dense(torch.ones_like(self.weight_rec)) if self.sparse
                else torch.ones_like(w))
        tau = float(cell.tau_syn) if cell.synapse == "exponential" else 1e-30
        proj = Projection(name, name, Connectivity(mask), Exponential(tau_decay=tau, g_max=1.0),
                          weight=w, name=f"{name}->{name}")
        inputs: dict[str, Any] = {}
        if x is not None:
            cur = self.network_input(x)
            dt, steps = self.dt, cur.shape[1]

            def external(t: float) -> Tensor:
                k = int(round(t / dt))
                return cur[:, k] if k < steps else torch.zeros_like(cur[:, 0])

            inputs[name] = external
        return Network({name: group}, [proj], inputs=inputs).to(w.dtype)

    def extra_repr(self) -> str:
        ei = ""
        if self.sign is not None:
            ei = f", E={int((self.sign > 0).sum())}, I={int((self.sign < 0).sum())}"
        return (f"n_input={self.n_input}, n_hidden={self.n_hidden}, n_output={self.n_output}, "
                f"dt={self.dt:g}, readout={self.readout_mode!r}, sparse={self.sparse}{ei}")
