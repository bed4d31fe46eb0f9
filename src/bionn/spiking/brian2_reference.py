"""The same networks written for Brian2, the reference simulator (optional).

Used by the Brian2 comparison tests and ``benchmarks/coba.py``; handy for a
user who wants to check a bionn result against Brian2. Needs ``brian2``
(``pip install bionn[test]``); importing this module without it is fine,
calling a builder is not.
"""

from __future__ import annotations

COBA_EQUATIONS = """
dv/dt = ((El - v) + ge * (Ee - v) + gi * (Ei - v) + I) / taum : volt (unless refractory)
dge/dt = -ge / taue : 1
dgi/dt = -gi / taui : 1
"""


def brian2_coba(n: int = 4000, *, target: str = "numpy", seed: int = 1, e_fraction: float = 0.8,
                synapses_per_neuron: float = 80.0, we: float = 0.6, wi: float = 6.7):
    """Brian2 version of :func:`bionn.spiking.networks.coba` (same equations and constants).

    Returns ``(network, group, spike_monitor)``; the caller runs it. Brian2's
    threshold is ``v > V_t`` (bionn: ``V >= V_t``; equal for continuous V).
    """
    import brian2 as b2
    from brian2 import ms, mV

    b2.prefs.codegen.target = target
    b2.seed(seed)
    b2.defaultclock.dt = 0.1 * ms
    ns = {"taum": 20 * ms, "taue": 5 * ms, "taui": 10 * ms, "El": -60 * mV, "Ee": 0 * mV,
          "Ei": -80 * mV, "I": 20 * mV}
    group = b2.NeuronGroup(n, COBA_EQUATIONS, threshold="v > -50*mV", reset="v = -60*mV",
                           refractory=5 * ms, method="exponential_euler", namespace=ns)
    group.v = "-55*mV + 5*mV*randn()"
    n_e = int(round(e_fraction * n))
    p = min(1.0, synapses_per_neuron / n)
    ce = b2.Synapses(group[:n_e], group, on_pre=f"ge += {we}")
    ci = b2.Synapses(group[n_e:], group, on_pre=f"gi += {wi}")
    ce.connect(p=p)
    ci.connect(p=p)
    mon = b2.SpikeMonitor(group)
    return b2.Network(group, ce, ci, mon), group, mon
