"""Ready networks with their published parameters.

Each builder returns a :class:`~bionn.spiking.Network` and documents its
source. Sizes can be scaled; connection probabilities follow the source's rule.
:data:`NETWORKS` maps a name to a :class:`NetworkSpec`: the builder plus the
run settings of the source (duration, dt, what to record, the transient to
skip in the measures, which figures make sense) and the published outcome.

| name | source | expected (published / reference re-implementation) |
|---|---|---|
| ``coba`` | Brette et al. 2007 COBA (Vogels & Abbott 2005) | ~20 Hz asynchronous irregular |
| ``cuba`` | Brette et al. 2007 CUBA (Brian2 example) | ~5.7 Hz asynchronous |
| ``cobahh`` | Brette et al. 2007 COBAHH (Traub-Miles HH cells) | ~36 Hz, self-sustained |
| ``ei_balanced`` | BrainPy-Models quick start | ~34 Hz, damped ~35 Hz oscillation then AI |
| ``wang_buzsaki`` | Wang & Buzsaki 1996 | synchronous gamma, ~43 Hz |
| ``cann`` | Wu, Hamaguchi & Amari 2008 CANN | a bump that follows / holds the cue |

Brian2 values: Brian2 2.9.0 (numpy target) running the same equations, 100-1000 ms:
COBA 19.2-20.3 Hz over 3 seeds (ours 20.4-23.4 Hz: a chaotic network), CUBA 5.7 Hz
(ours 5.5-6.0), COBAHH 36.6 Hz (ours 34.5-36.6).

Example:
    >>> sorted(NETWORKS)
    ['brunel', 'cann', 'coba', 'cobahh', 'cuba', 'ei_balanced', 'wang_buzsaki']
    >>> NETWORKS["wang_buzsaki"].dt
    0.04
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from bionn.circuits.connect import all_to_all, fixed_in_degree, fixed_prob
from bionn.spiking.base import Drive, NeuronGroup, State
from bionn.spiking.network import Network
from bionn.spiking.neurons import LIF
from bionn.spiking.synapse_models import VoltageJump
from bionn.spiking.synapses import Exponential, PoissonInput, Projection

__all__ = [
    "CANN1D",
    "NETWORKS",
    "NetworkSpec",
    "brunel",
    "bump_position",
    "cann",
    "cann_population_coding_input",
    "cann_smooth_tracking_input",
    "cann_template_matching_input",
    "coba",
    "cobahh",
    "cuba",
    "ei_balanced",
    "wang_buzsaki",
]


def _check_size(name: str, n: int, minimum: int) -> None:
    if int(n) != n or n < minimum:
        raise ValueError(f"{name}: n must be an integer >= {minimum}; got {n}")


def _check_fraction(name: str, field_name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name}: {field_name} must be in (0, 1); got {value}")


# --------------------------------------------------------------------------------------------
# Brette et al. 2007 benchmarks
# --------------------------------------------------------------------------------------------
def coba(n: int = 4000, *, e_fraction: float = 0.8, synapses_per_neuron: float = 80.0,
         we: float = 0.6, wi: float = 6.7, generator: torch.Generator | None = None) -> Network:
    """COBA benchmark network (Brette et al. 2007, after Vogels & Abbott 2005).

    LIF neurons, ``tau_m dV/dt = (E_L - V) + g_e (E_e - V) + g_i (E_i - V) + I``
    with tau_m = 20 ms, E_L = V_r = -60, V_t = -50, E_e = 0, E_i = -80 mV,
    I = 20 mV, 5 ms refractory, V(0) ~ N(-55, 5^2). Exponential conductances
    (tau_e = 5, tau_i = 10 ms) jump by ``we`` = 0.6 and ``wi`` = 6.7 (in units of
    the leak conductance) per spike. Connection probability
    ``synapses_per_neuron / n`` (2 % at n = 4000). Exponential Euler, dt 0.1 ms.
    Brian2 2.9.0 gives 19-20 Hz over 100-1000 ms with this setup (asynchronous irregular,
    ISI CV ~1.6); this implementation 20-23 Hz depending on the seed.

    Example:
        >>> net = coba(400, generator=torch.Generator().manual_seed(0))
        >>> sorted(net.groups), [p.name for p in net.projections]
        (['P'], ['E->P', 'I->P'])
    """
    if n < 10:
        raise ValueError(f"coba: n must be >= 10; got {n}")
    if not 0.0 < e_fraction < 1.0:
        raise ValueError(f"coba: e_fraction must be in (0, 1); got {e_fraction}")
    n_e = int(round(n * e_fraction))
    p = min(1.0, synapses_per_neuron / n)
    neurons = LIF(n, V_rest=-60.0, V_reset=-60.0, V_th=-50.0, tau=20.0, R=1.0, t_refractory=5.0,
                  initial={"V": ("normal", -55.0, 5.0)})
    exc = Projection("P", "P", fixed_prob(n, n_e, p, generator=generator),
                     Exponential(tau_decay=5.0, g_max=1.0), weight=we, output="conductance", E=0.0,
                     pre_range=(0, n_e), name="E->P")
    inh = Projection("P", "P", fixed_prob(n, n - n_e, p, generator=generator),
                     Exponential(tau_decay=10.0, g_max=1.0), weight=wi, output="conductance",
                     E=-80.0, pre_range=(n_e, n), name="I->P")
    return Network({"P": neurons}, [exc, inh], inputs={"P": 20.0})


def cuba(n: int = 4000, *, e_fraction: float = 0.8, synapses_per_neuron: float = 80.0,
         we: float = 60 * 0.27 / 10, wi: float = -20 * 4.5 / 10,
         generator: torch.Generator | None = None) -> Network:
    """CUBA benchmark network (Brette et al. 2007; Brian2's ``CUBA.py`` example).

    Brian2's equations ``dv/dt = (ge + gi - (v - E_l)) / tau_m``,
    ``dge/dt = -ge / tau_e``, ``dgi/dt = -gi / tau_i`` with ge, gi in volts,
    tau_m = 20, tau_e = 5, tau_i = 10 ms, E_l = -49 mV (above threshold: the
    cells fire without input), V_t = -50, V_r = -60 mV, 5 ms refractory,
    ``v(0) = V_r + U(0, 1) (V_t - V_r)``; a spike adds ``we = 60 * 0.27 / 10 =
    1.62 mV`` (excitatory pre) or ``wi = -20 * 4.5 / 10 = -9 mV`` (inhibitory
    pre) to ge / gi; p = 0.02 at n = 4000 (``synapses_per_neuron / n``).

    Mapping: LIF ``tau dV/dt = -(V - V_rest) + R I`` with R = 1, V_rest = E_l,
    tau = tau_m, and current-based :class:`Exponential` synapses (g_max = 1,
    weight = we / wi) whose state is the voltage ge / gi: the current ``I = ge + gi``
    enters exactly as in Brian2. The I cells' connectivity carries their sign (-1),
    so ``wi`` (<= 0) enters as that sign times the magnitude ``|wi|``. Exact (exponential) integration, dt 0.1 ms.
    Brian2 2.9.0 gives 5.7 Hz over 100-1000 ms; this implementation 5.5-6.0 Hz.

    Example:
        >>> net = cuba(400, generator=torch.Generator().manual_seed(0))
        >>> [p.output for p in net.projections], round(net.projections[0].weight.max().item(), 2)
        (['current', 'current'], 1.62)
    """
    _check_size("cuba", n, 10)
    _check_fraction("cuba", "e_fraction", e_fraction)
    if we < 0 or wi > 0:
        raise ValueError(f"cuba: we must be >= 0 and wi <= 0 (mV per spike); got we={we}, wi={wi}")
    n_e = int(round(n * e_fraction))
    p = min(1.0, synapses_per_neuron / n)
    neurons = LIF(n, V_rest=-49.0, V_reset=-60.0, V_th=-50.0, tau=20.0, R=1.0, t_refractory=5.0,
                  initial={"V": (-60.0, -50.0)})
    exc = Projection("P", "P", fixed_prob(n, n_e, p, generator=generator).with_sign(1.0),
                     Exponential(tau_decay=5.0, g_max=1.0), weight=we, output="current",
                     pre_range=(0, n_e), name="E->P")
    inh = Projection("P", "P", fixed_prob(n, n - n_e, p, generator=generator).with_sign(-1.0),
                     Exponential(tau_decay=10.0, g_max=1.0), weight=-wi, output="current",
                     pre_range=(n_e, n), name="I->P")
    return Network({"P": neurons}, [exc, inh])


def cobahh(n: int = 4000, *, e_fraction: float = 0.8, synapses_per_neuron: float = 80.0,
           we: float = 6.0, wi: float = 67.0, method: str = "exp_euler",
           generator: torch.Generator | None = None) -> Network:
    """COBAHH benchmark network (Brette et al. 2007; Brian2's ``COBAHH.py`` example).

    Traub-Miles HH cells (:class:`~bionn.spiking.neurons.TraubHH`: C_m = 200 pF,
    g_L = 10 nS, g_Na = 20 uS, g_Kd = 6 uS, E_L = -60, E_Na = 50, E_K = -90,
    V_T = -63 mV, spike at the upward crossing of -20 mV), exponential
    conductance synapses with tau_e = 5, tau_i = 10 ms, E_e = 0, E_i = -80 mV,
    jumps ``we`` = 6 nS and ``wi`` = 67 nS per spike, connection probability
    ``synapses_per_neuron / n`` (2 % at n = 4000). V(0) ~ N(-65, 5^2) mV
    (Brian2: ``El + (randn() * 5 - 5) * mV``) with the gates at rest for that V;
    no external input: the activity sustains itself. Exponential Euler, dt 0.1 ms.
    Brian2 2.9.0 gives 36.6 Hz over 100-1000 ms (asynchronous); this implementation
    34.5-36.6 Hz.
    """
    from bionn.spiking.neurons import TraubHH

    _check_size("cobahh", n, 10)
    _check_fraction("cobahh", "e_fraction", e_fraction)
    n_e = int(round(n * e_fraction))
    p = min(1.0, synapses_per_neuron / n)
    neurons = TraubHH(n, method=method, initial={"V": ("normal", -65.0, 5.0)})
    exc = Projection("P", "P", fixed_prob(n, n_e, p, generator=generator),
                     Exponential(tau_decay=5.0, g_max=1.0), weight=we, output="conductance", E=0.0,
                     pre_range=(0, n_e), name="E->P")
    inh = Projection("P", "P", fixed_prob(n, n - n_e, p, generator=generator),
                     Exponential(tau_decay=10.0, g_max=1.0), weight=wi, output="conductance",
                     E=-80.0, pre_range=(n_e, n), name="I->P")
    return Network({"P": neurons}, [exc, inh])


# --------------------------------------------------------------------------------------------
# BrainPy-Models examples
# --------------------------------------------------------------------------------------------
def ei_balanced(n_e: int = 500, n_i: int = 500, p: float = 0.1, *, input_current: float = 3.0,
                tau_syn: float = 2.0, t_refractory: float = 5.0,
                generator: torch.Generator | None = None) -> Network:
    """E/I balanced LIF network of the BrainPy-Models quick start (bpmodels 0.2.3).

    500 E + 500 I LIF neurons (``get_LIF``: V_rest = -52, V_reset = -60,
    V_th = -50 mV, tau = 10 ms, R = 1, t_refractory = 5 ms), V(0) ~
    U(V_rest, V_th); every pair connected with probability ``p`` = 0.1
    (0.15 in v0.2.0); current-based exponential synapses, tau = 2 ms, weight
    ``J_E = 1 / sqrt(p N_E)`` from E cells and ``-J_I = -1 / sqrt(p N_I)`` from
    I cells (the sign is the I cells' sign in their connectivity; the README writes ``-J_I`` onto the excitatory projection; the
    standalone example, and this builder, put it on the inhibitory one);
    constant input 3 to every neuron. Exponential Euler, dt 0.1 ms.

    Expected (reference re-implementation, docs/images/EI_balanced.png): an
    initial synchronous volley, a damped ~30 ms population oscillation, then
    asynchronous firing at ~34 Hz with a ~35 Hz spectral peak (~42 Hz without
    refractoriness). Single cells fire almost periodically (ISI CV ~0.01): the
    constant input is suprathreshold and the recurrent input weak. Measured here:
    33.8-34.1 Hz after 100 ms, peak 35 Hz.

    Example:
        >>> net = ei_balanced(50, 50, generator=torch.Generator().manual_seed(0))
        >>> sorted(net.groups), len(net.projections)
        (['E', 'I'], 4)
    """
    for name, value in (("n_e", n_e), ("n_i", n_i)):
        if int(value) != value or value < 1:
            raise ValueError(f"ei_balanced: {name} must be a positive integer; got {value}")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"ei_balanced: p must be in (0, 1]; got {p}")
    je, ji = 1.0 / math.sqrt(p * n_e), 1.0 / math.sqrt(p * n_i)

    def group(n: int) -> LIF:
        return LIF(n, V_rest=-52.0, V_reset=-60.0, V_th=-50.0, tau=10.0, R=1.0,
                   t_refractory=t_refractory, initial={"V": (-52.0, -50.0)})

    sizes = {"E": n_e, "I": n_i}
    projections = [
        Projection(pre, post, fixed_prob(sizes[post], sizes[pre], p, generator=generator).with_sign(sign),
                   Exponential(tau_decay=tau_syn, g_max=1.0), weight=w, output="current")
        for pre, sign, w in (("E", 1.0, je), ("I", -1.0, ji)) for post in ("E", "I")
    ]
    return Network({"E": group(n_e), "I": group(n_i)}, projections,
                   inputs={"E": input_current, "I": input_current})


#: Brunel (2000), Fig. 8 (N_E = 10,000, C_E = 1,000): (g, eta) -> the regime the paper shows
BRUNEL_REGIMES = {(3.0, 2.0): "synchronous regular", (6.0, 4.0): "synchronous irregular, fast oscillation",
                  (5.0, 2.0): "asynchronous irregular (stationary)",
                  (4.5, 0.9): "synchronous irregular, slow oscillation"}


def brunel(n_e: int = 4000, n_i: int = 1000, *, c_e: int = 400, c_i: int = 100, j: float = 0.1,
           g: float = 5.0, eta: float = 2.0, delay: float = 1.5, tau: float = 20.0,
           theta: float = 20.0, v_reset: float = 10.0, t_refractory: float = 2.0,
           generator: torch.Generator | None = None) -> Network:
    r"""Brunel (2000) model A: sparse E/I LIF network with delta synapses and Poisson drive.

    ``n_e`` E and ``n_i`` I LIF neurons, ``tau dV/dt = -V`` (mV from rest), threshold
    ``theta``, reset to ``v_reset``, refractory ``t_refractory`` ms (V held, every input
    ignored: bionn's one rule). Every neuron receives exactly ``c_e`` E and ``c_i`` I
    synapses (fixed in-degree) that make voltage jumps ``J`` (E) and ``-g J`` (I) after
    ``delay`` ms, and ``c_e`` external Poisson sources of ``eta * nu_thr`` Hz each
    (:class:`~bionn.spiking.PoissonInput`, jumps of ``J``), ``nu_thr = theta / (J c_e tau)``
    the rate that brings the mean input to threshold. V(0) ~ U(v_reset, theta).

    Regimes the paper shows at its size (N_E = 10,000, C_E = 1,000; Fig. 8,
    :data:`BRUNEL_REGIMES`): g = 3, eta = 2 synchronous regular; g = 6, eta = 4
    synchronous irregular with fast oscillations; g = 5, eta = 2 asynchronous irregular
    (stationary); g = 4.5, eta = 0.9 synchronous irregular, slow. At the default, smaller
    size the rates match Brian2's (``docs/spiking.md``). Groups ``E`` and ``I``; exact LIF
    step, dt 0.1 ms.

    Example:
        >>> net = brunel(400, 100, c_e=40, c_i=10, generator=torch.Generator().manual_seed(0))
        >>> sorted(net.groups), len(net.projections)
        (['E', 'I'], 6)
    """
    for name, value in (("n_e", n_e), ("n_i", n_i), ("c_e", c_e), ("c_i", c_i)):
        if int(value) != value or value < 1:
            raise ValueError(f"brunel: {name} must be a positive integer; got {value}")
    if c_e > n_e or c_i > n_i:
        raise ValueError(f"brunel: in-degrees c_e={c_e}, c_i={c_i} exceed the groups n_e={n_e}, n_i={n_i}")
    for name, value in (("j", j), ("tau", tau), ("theta", theta)):
        if not value > 0:
            raise ValueError(f"brunel: {name} must be > 0; got {value}")
    if g < 0 or eta < 0 or delay < 0 or t_refractory < 0:
        raise ValueError("brunel: g, eta, delay and t_refractory must be >= 0")
    if not v_reset < theta:
        raise ValueError(f"brunel: v_reset ({v_reset}) must be below theta ({theta})")
    nu_ext = eta * theta / (j * c_e * tau) * 1000.0  # Hz

    def group(n: int) -> LIF:
        return LIF(n, V_rest=0.0, V_reset=v_reset, V_th=theta, tau=tau, R=1.0,
                   t_refractory=t_refractory, initial={"V": (v_reset, theta)})

    sizes = {"E": int(n_e), "I": int(n_i)}
    degree = {"E": int(c_e), "I": int(c_i)}
    weight = {"E": j, "I": -g * j}
    projections: list[Projection] = [
        Projection(pre, post, fixed_in_degree(sizes[post], sizes[pre], degree[pre], generator=generator),
                   VoltageJump(), weight=weight[pre], delay=delay)
        for pre in ("E", "I") for post in ("E", "I")
    ]
    projections += [PoissonInput(post, sizes[post], n_sources=int(c_e), rate=nu_ext, synapse=VoltageJump(),
                                 weight=j) for post in ("E", "I")]
    return Network({"E": group(sizes["E"]), "I": group(sizes["I"])}, projections)


def wang_buzsaki(n: int = 100, *, input_current: float = 1.2, g_total: float = 0.1,
                 alpha: float = 12.0, beta: float = 0.1, E: float = -75.0,
                 method: str = "exp_euler", generator: torch.Generator | None = None) -> Network:
    """Gamma rhythm of inhibitory interneurons (Wang & Buzsaki 1996).

    ``n`` = 100 :class:`~bionn.spiking.neurons.WangBuzsakiHH` cells (C = 1,
    g_L = 0.1, E_L = -65, g_Na = 35, E_Na = 55, g_K = 9, E_K = -90, phi = 5,
    m = m_inf(V)), V(0) ~ U(-70, -50), h and n at steady state; all-to-all
    GABA_A synapses without self-connections
    (:class:`~bionn.spiking.synapse_models.GABAaWangBuzsaki`:
    ``ds/dt = alpha T(V_pre) (1 - s) - beta s``, ``T = 1 / (1 + exp(-V_pre / 2))``,
    alpha = 12, beta = 0.1, E = -75 mV) with ``g_max = g_total / n`` = 0.1 / N
    per synapse; constant input 1.2. Exponential Euler, dt 0.04 ms, 500 ms
    (BrainPy-Models ``gamma_oscillation.py``).

    Expected: every cell fires every cycle, a synchronous rhythm at ~43 Hz (Brian2 RK4 at
    dt 0.01 ms: 44.8 Hz). Measured here: 42.5 Hz, synchrony index ~0.8.
    """
    from bionn.spiking.neurons import WangBuzsakiHH
    from bionn.spiking.synapse_models import GABAaWangBuzsaki

    _check_size("wang_buzsaki", n, 2)
    neurons = WangBuzsakiHH(n, method=method, V_th=0.0,
                            initial={"V": (-70.0, -50.0), "h": "steady", "n": "steady"})
    syn = GABAaWangBuzsaki(alpha=alpha, beta=beta, g_max=g_total / n)
    proj = Projection("I", "I", all_to_all(n, n, autapses=False), syn, weight=1.0,
                      output="conductance", E=E, name="GABAa")
    return Network({"I": neurons}, [proj], inputs={"I": input_current})


# --------------------------------------------------------------------------------------------
# Continuous attractor network (rate model)
# --------------------------------------------------------------------------------------------
def _periodic(d: Tensor, period: float) -> Tensor:
    """Wrap differences into ``[-period / 2, period / 2)``."""
    return torch.remainder(d + 0.5 * period, period) - 0.5 * period


class CANN1D(NeuronGroup):
    """One-dimensional continuous attractor neural network (Wu, Hamaguchi & Amari 2008).

    A rate model of ``n`` neurons with preferred features ``x`` evenly spaced
    on the circle ``[z_min, z_max)`` (periodic):

        tau du/dt = -u + rho sum_j J(x, x_j) r_j dx + I_ext
        r = u^2 / (1 + k rho sum_j u_j^2 dx)
        J(x, x') = J0 / (sqrt(2 pi) a) exp(-|x - x'|^2 / (2 a^2))

    with ``rho = n / (z_max - z_min)`` and ``dx = 1 / rho``. Defaults from
    BrainPy-Models ``CANN_1D.py``: tau = 1, k = 8.1, a = 0.5, A = 10 (stimulus
    height, see :meth:`stimulus`), ``J0 = 4 / (n / 128)`` (2 at n = 256),
    RK4 at dt 0.05. The recurrent input is a dense ``(n, n)`` matmul with the
    circulant kernel. The state holds ``u`` (integrated) and ``r`` (the rate
    at the end of the step); it does not spike. External input arrives as the
    drive's current (``Network.inputs``).

    Without input a bump ``u0 exp(-x^2 / (4 a^2))`` is stable for
    ``k < rho J0^2 / (8 sqrt(2 pi) a)`` (16.2 at the defaults), with ``u0`` the larger root of
    ``sqrt(2) k rho sqrt(2 pi) a u0^2 - rho J0 u0 + sqrt(2) = 0``: 0.119 at k = 8.1 (tiny
    next to a driven bump of ~10) and 11.3 at k = 0.1.

    Example:
        >>> cann = CANN1D(256)
        >>> float(cann.J0), cann.conn_mat.shape
        (2.0, torch.Size([256, 256]))
        >>> s = cann.initial_state(batch=1)
        >>> for _ in range(200):
        ...     s = cann(s, Drive(current=cann.stimulus(1.0)), 0.05)
        >>> round(float(bump_position(s["u"])), 2)
        1.0
    """

    variables = ("u",)
    defaults: ClassVar[dict[str, float]] = {
        "tau": 1.0, "k": 8.1, "a": 0.5, "A": 10.0, "J0": 2.0, "z_min": -math.pi, "z_max": math.pi,
    }
    initial_values: ClassVar[dict] = {"u": 0.0, "r": 0.0}
    default_method = "rk4"
    methods = ("rk4", "euler", "rk2", "heun", "exp_euler")
    spiking = False
    #: largest stable dt as a multiple of tau, per method (linear part; the bump adds gain).
    stable_dt_tau: ClassVar[dict[str, float]] = {"euler": 1.0, "rk2": 1.0, "heun": 1.0, "rk4": 2.0}

    def __init__(self, n: int = 256, *, method: str | None = None, initial: dict | None = None,
                 **params: Any) -> None:
        if "J0" not in params or params["J0"] is None:
            params["J0"] = 4.0 / (int(n) / 128)
        super().__init__(n, method=method, initial=initial, **params)
        for name in self.defaults:
            if getattr(self, name).numel() != 1:
                raise ValueError(f"CANN1D: parameter {name} must be a number")
        z_min, z_max = self.param("z_min"), self.param("z_max")
        if not z_max > z_min:
            raise ValueError(f"CANN1D: z_max ({z_max}) must be > z_min ({z_min})")
        for name in ("tau", "a"):
            if not self.param(name) > 0:
                raise ValueError(f"CANN1D: {name} must be > 0; got {self.param(name)}")
        if self.param("k") < 0:
            raise ValueError(f"CANN1D: k must be >= 0; got {self.param('k')}")
        self.z_range = z_max - z_min
        self.rho = self.n / self.z_range
        self.dx = self.z_range / self.n
        dtype = torch.get_default_dtype()
        x = z_min + self.z_range * torch.arange(self.n, dtype=torch.float64) / self.n
        d = _periodic(x[:, None] - x[None, :], self.z_range)
        a = self.param("a")
        kernel = self.param("J0") * torch.exp(-0.5 * (d / a) ** 2) / (math.sqrt(2 * math.pi) * a)
        self.register_buffer("x", x.to(dtype))
        self.register_buffer("conn_mat", kernel.to(dtype))

    def dist(self, d: Tensor | float) -> Tensor:
        """Periodic difference on the feature circle, in ``[-range / 2, range / 2)``."""
        return _periodic(torch.as_tensor(d, dtype=self.x.dtype, device=self.x.device), self.z_range)

    def stimulus(self, pos: Tensor | float) -> Tensor:
        """``A exp(-|x - pos|^2 / (4 a^2))`` (periodic); ``pos`` a number or ``(..., 1)``."""
        return self.A * torch.exp(-0.25 * (self.dist(self.x - torch.as_tensor(pos)) / self.a) ** 2)

    def rate(self, u: Tensor) -> Tensor:
        """``r = u^2 / (1 + k rho sum u^2 dx)`` (global divisive inhibition)."""
        u2 = u * u
        return u2 / (1.0 + self.k * self.rho * self.dx * u2.sum(-1, keepdim=True))

    def check_dt(self, dt: float) -> None:
        factor = self.stable_dt_tau.get(self.method)
        if factor is not None and dt > factor * self.param("tau"):
            raise ValueError(
                f"CANN1D with method={self.method!r} is unstable at dt={dt} ms (tau = "
                f"{self.param('tau'):g} ms; largest stable dt about "
                f"{factor * self.param('tau'):g} ms)"
            )

    def derivatives(self, state: State, drive: Drive) -> State:
        u = state["u"]
        rec = self.rho * self.dx * torch.nn.functional.linear(self.rate(u), self.conn_mat)
        return {"u": (-u + rec + drive.current) / self.tau}

    def linear(self, state: State, drive: Drive) -> State:
        return {"u": torch.full_like(state["u"], -1.0) / self.tau}

    def spike_and_reset(self, old: State, new: State, dt: float) -> State:
        new["r"] = self.rate(new["u"])
        return new


def bump_position(u: Tensor, x: Tensor | None = None, *, period: float = 2 * math.pi) -> Tensor:
    """Decode the bump's position: the population vector of ``max(u, 0)`` on the circle.

    Args:
        u: activity ``(..., n)``.
        x: preferred features (default: ``n`` points evenly on ``[-pi, pi)``).
        period: length of the feature circle.

    Returns:
        Positions ``(...)`` in the units of ``x``, wrapped into ``[-period / 2, period / 2)``;
        NaN where ``u <= 0`` everywhere.

    Example:
        >>> x = torch.linspace(-math.pi, math.pi, 257)[:-1]
        >>> round(float(bump_position(torch.exp(-((x - 1.0) ** 2) / 0.1))), 3)
        1.0
    """
    u = torch.as_tensor(u)
    n = u.shape[-1]
    if x is None:
        x = -0.5 * period + period * torch.arange(n, dtype=torch.float64) / n
    angle = 2 * math.pi * x.to(torch.float64) / period
    w = u.to(torch.float64).clamp_min(0.0)
    c = (w * torch.cos(angle)).sum(-1)
    s = (w * torch.sin(angle)).sum(-1)
    pos = torch.atan2(s, c) * period / (2 * math.pi)
    pos = torch.where(w.sum(-1) > 0, pos, torch.full_like(pos, float("nan")))
    return _periodic(pos, period)


def cann_population_coding_input(cann: CANN1D, *, pos: float = 0.0, t_before: float = 5.0,
                                 t_on: float = 30.0) -> Callable[[float], Tensor | float]:
    """Population-coding demo: no input for ``t_before`` ms, a cue at ``pos`` for ``t_on`` ms,
    then none (BrainPy-Models, with k = 0.1). The bump persists after the cue is removed."""
    stim = cann.stimulus(pos)

    def drive(t: float) -> Tensor | float:
        return stim if t_before <= t < t_before + t_on else 0.0

    return drive


def cann_template_matching_input(cann: CANN1D, *, first: float = -0.5, second: float = 0.0,
                                 t_first: float = 20.0, t_second: float = 50.0,
                                 noise: float = 0.1, noise_dt: float = 0.05,
                                 generator: torch.Generator | None = None,
                                 ) -> Callable[[float], Tensor | float]:
    """Template-matching demo: a cue at ``first`` for ``t_first`` ms, then a noisy cue at
    ``second`` for ``t_second`` ms (Gaussian noise of std ``noise * A`` on every neuron,
    redrawn every ``noise_dt`` ms), then none. The bump moves to the new cue (k = 8.1)."""
    a, b = cann.stimulus(first), cann.stimulus(second)
    n_noise = max(1, int(math.ceil(t_second / noise_dt)))
    table = torch.randn(n_noise, cann.n, generator=generator, dtype=torch.float64)
    table = (noise * cann.A * table).to(b.dtype)

    def drive(t: float) -> Tensor | float:
        if t < t_first:
            return a
        if t < t_first + t_second:
            i = min(int((t - t_first) / noise_dt + 1e-9), n_noise - 1)
            return b + table[i]
        return 0.0

    return drive


def cann_smooth_tracking_input(cann: CANN1D, *, start: float = 0.0, end: float = 12.0,
                               t_still: float = 20.0, t_move: float = 20.0,
                               ) -> Callable[[float], Tensor]:
    """Smooth-tracking demo: the cue rests at ``start`` for ``t_still`` ms, moves linearly
    to ``end`` (rad, wrapping around the circle) over ``t_move`` ms, then stays. The bump
    follows with a lag."""

    def position(t: float) -> float:
        if t < t_still:
            return start
        if t < t_still + t_move:
            return start + (end - start) * (t - t_still) / t_move
        return end

    def drive(t: float) -> Tensor:
        return cann.stimulus(position(t))

    drive.position = position  # type: ignore[attr-defined]
    return drive


CANN_DEMOS = ("population_coding", "template_matching", "smooth_tracking")


def cann(n: int = 256, *, demo: str = "template_matching", tau: float = 1.0, k: float | None = None,
         a: float = 0.5, A: float = 10.0, J0: float | None = None, noise: float = 0.1,
         method: str = "rk4", generator: torch.Generator | None = None) -> Network:
    """A :class:`CANN1D` (group ``"cann"``) driven by one of the three BrainPy-Models demos.

    ``demo``: ``"population_coding"`` (k = 0.1; 5 ms off, 30 ms cue at 0, then
    off: the bump persists), ``"template_matching"`` (k = 8.1; 20 ms cue at
    -0.5, then 50 ms noisy cue at 0 with noise std 0.1 A: the bump moves to 0),
    ``"smooth_tracking"`` (k = 8.1; cue still at 0 for 20 ms, moving to 12 rad
    over 20 ms, then held: the bump follows with a lag). ``k = None`` picks the
    demo's value; ``J0 = None`` is ``4 / (n / 128)``. RK4, dt 0.05 ms.

    Example:
        >>> net = cann(demo="population_coding")
        >>> res = net.run(65.0, dt=0.05, record={"cann": ["u"]}, progress=False)
        >>> u_end = res.traces["cann.u"][0, -1]
        >>> bool(u_end.max() > 1.0), abs(float(bump_position(u_end))) < 0.05
        (True, True)
    """
    if demo not in CANN_DEMOS:
        raise ValueError(f"cann: unknown demo {demo!r}; allowed: {list(CANN_DEMOS)}")
    _check_size("cann", n, 8)
    if k is None:
        k = 0.1 if demo == "population_coding" else 8.1
    group = CANN1D(n, tau=tau, k=k, a=a, A=A, J0=J0, method=method)
    if demo == "population_coding":
        drive = cann_population_coding_input(group)
    elif demo == "template_matching":
        drive = cann_template_matching_input(group, noise=noise, generator=generator)
    else:
        drive = cann_smooth_tracking_input(group)
    return Network({"cann": group}, inputs={"cann": drive})


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
FIGURES = ("raster", "traces", "bump", "rate_histogram")


@dataclass(frozen=True)
class NetworkSpec:
    """A ready network: its builder and the run settings of its source.

    Attributes:
        builder: function returning a :class:`Network` (keyword ``generator`` for randomness).
        description: one line.
        duration: simulated time in ms of the source's run.
        dt: time step in ms.
        record: group -> state variables recorded by default.
        record_neurons: group -> how many neurons (the first ones) to record.
        t_start: transient (ms) skipped by the measures.
        figures: figures that make sense (``raster``, ``traces``, ``bump``, ``rate_histogram``).
        expected: the published / reference outcome, in words.
    """

    builder: Callable[..., Network]
    description: str
    duration: float
    dt: float
    record: dict[str, tuple[str, ...]] = field(default_factory=dict)
    record_neurons: dict[str, int] = field(default_factory=dict)
    t_start: float = 0.0
    figures: tuple[str, ...] = ("raster", "rate_histogram")
    expected: str = ""

    def parameters(self) -> dict[str, inspect.Parameter]:
        """The builder's keyword parameters a config may set (all but ``generator``)."""
        sig = inspect.signature(self.builder)
        return {k: p for k, p in sig.parameters.items() if k != "generator"}

    def build(self, generator: torch.Generator | None = None, **params: Any) -> Network:
        return self.builder(generator=generator, **params)


NETWORKS: dict[str, NetworkSpec] = {
    "coba": NetworkSpec(
        coba, "Brette et al. 2007 COBA: 4000 LIF cells, conductance-based exponential synapses",
        duration=1000.0, dt=0.1, record={"P": ("V",)}, record_neurons={"P": 5}, t_start=100.0,
        figures=("raster", "traces", "rate_histogram"),
        expected="asynchronous irregular, ~20 Hz (Brian2 19-20 Hz)"),
    "cuba": NetworkSpec(
        cuba, "Brette et al. 2007 CUBA: 4000 LIF cells, current-based exponential synapses",
        duration=1000.0, dt=0.1, record={"P": ("V",)}, record_neurons={"P": 5}, t_start=100.0,
        figures=("raster", "traces", "rate_histogram"),
        expected="asynchronous, ~5.7 Hz (Brian2)"),
    "cobahh": NetworkSpec(
        cobahh, "Brette et al. 2007 COBAHH: 4000 Traub-Miles HH cells, conductance synapses",
        duration=1000.0, dt=0.1, record={"P": ("V",)}, record_neurons={"P": 5}, t_start=100.0,
        figures=("raster", "traces", "rate_histogram"),
        expected="self-sustained asynchronous activity, ~36 Hz (Brian2)"),
    "ei_balanced": NetworkSpec(
        ei_balanced, "BrainPy-Models quick start: 500 E + 500 I LIF cells, balanced",
        duration=500.0, dt=0.1, record={"E": ("V",)}, record_neurons={"E": 5}, t_start=100.0,
        figures=("raster", "traces", "rate_histogram"),
        expected="damped ~30 ms oscillation, then asynchronous at ~34 Hz, peak ~35 Hz"),
    "brunel": NetworkSpec(
        brunel, "Brunel 2000 model A: 4000 E + 1000 I LIF cells, voltage jumps, Poisson drive",
        duration=300.0, dt=0.1, record={"E": ("V",)}, record_neurons={"E": 5}, t_start=100.0,
        figures=("raster", "traces", "rate_histogram"),
        expected="g 5, eta 2: stationary global activity, about 59 Hz (Brian2: 59.4 Hz)"),
    "wang_buzsaki": NetworkSpec(
        wang_buzsaki, "Wang & Buzsaki 1996: 100 inhibitory HH interneurons, all-to-all GABA_A",
        duration=500.0, dt=0.04, record={"I": ("V",)}, record_neurons={"I": 5}, t_start=100.0,
        figures=("raster", "traces", "rate_histogram"),
        expected="synchronous gamma rhythm, every cell every cycle, ~43 Hz"),
    "cann": NetworkSpec(
        cann, "Wu, Hamaguchi & Amari 2008 CANN (rate model), template-matching demo by default",
        duration=100.0, dt=0.05, record={"cann": ("u",)}, t_start=0.0, figures=("bump",),
        expected="a Gaussian bump that holds or follows the cue"),
}
