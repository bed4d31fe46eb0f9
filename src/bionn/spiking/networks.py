"""Ready networks with their published parameters.

Each builder returns a :class:`~bionn.spiking.Network` and documents its
source. Sizes can be scaled; connection probabilities follow the source's rule.
"""

from __future__ import annotations

import torch

from bionn.circuits.connect import fixed_prob
from bionn.spiking.network import Network
from bionn.spiking.neurons import LIF
from bionn.spiking.synapses import Exponential, Projection


def coba(n: int = 4000, *, e_fraction: float = 0.8, synapses_per_neuron: float = 80.0,
         we: float = 0.6, wi: float = 6.7, generator: torch.Generator | None = None) -> Network:
    """COBA benchmark network (Brette et al. 2007, after Vogels & Abbott 2005).

    LIF neurons, ``tau_m dV/dt = (E_L - V) + g_e (E_e - V) + g_i (E_i - V) + I``
    with tau_m = 20 ms, E_L = V_r = -60, V_t = -50, E_e = 0, E_i = -80 mV,
    I = 20 mV, 5 ms refractory, V(0) ~ N(-55, 5^2). Exponential conductances
    (tau_e = 5, tau_i = 10 ms) jump by ``we`` = 0.6 and ``wi`` = 6.7 (in units of
    the leak conductance) per spike. Connection probability
    ``synapses_per_neuron / n`` (2 % at n = 4000). Exponential Euler, dt 0.1 ms.

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
                     Exponential(tau_decay=10.0, g_max=1.0), weight=wi, output="conductance", E=-80.0,
                     pre_range=(n_e, n), name="I->P")
    return Network({"P": neurons}, [exc, inh], inputs={"P": 20.0})
