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


def brian2_brunel(n_e: int = 4000, n_i: int = 1000, *, c_e: int = 400, c_i: int = 100, j: float = 0.1,
                  g: float = 5.0, eta: float = 2.0, delay: float = 1.5, tau: float = 20.0,
                  theta: float = 20.0, v_reset: float = 10.0, t_refractory: float = 2.0,
                  dt: float = 0.1, target: str = "numpy", seed: int = 1):
    """Brian2 version of :func:`bionn.spiking.networks.brunel`: the same equations,
    fixed in-degrees, delays and a ``PoissonInput`` of ``c_e`` sources at
    ``eta * nu_thr`` onto every neuron.

    Brian2's ``refractory`` is ``t_refractory + dt``: bionn holds V for ``t_refractory /
    dt`` steps *after* the spike step, Brian2 counts the spike step as the first
    refractory one (see ``docs/spiking.md``, refractoriness). Returns ``(network,
    excitatory, inhibitory, monitor_e, monitor_i)``; the caller runs it.
    """
    import brian2 as b2
    import numpy as np
    from brian2 import Hz, ms, mV

    b2.prefs.codegen.target = target
    b2.seed(seed)
    b2.defaultclock.dt = dt * ms
    ns = {"tau": tau * ms, "theta": theta * mV, "v_reset": v_reset * mV}
    nu_ext = eta * theta / (j * c_e * tau) * 1000.0
    group = b2.NeuronGroup(n_e + n_i, "dv/dt = -v / tau : volt (unless refractory)",
                           threshold="v >= theta", reset="v = v_reset",
                           refractory=(t_refractory + dt) * ms, method="exact", namespace=ns)
    group.v = f"{v_reset}*mV + ({theta} - {v_reset})*mV*rand()"
    exc, inh = group[:n_e], group[n_e:]
    se = b2.Synapses(exc, group, on_pre=f"v_post += {j}*mV", delay=delay * ms)
    si = b2.Synapses(inh, group, on_pre=f"v_post += {-g * j}*mV", delay=delay * ms)
    rng = np.random.default_rng(seed)
    for syn, n_pre, k in ((se, n_e, int(c_e)), (si, n_i, int(c_i))):
        # fixed in-degree: each neuron draws k distinct presynaptic neurons
        pre = np.concatenate([rng.choice(n_pre, size=k, replace=False) for _ in range(n_e + n_i)])
        syn.connect(i=pre, j=np.repeat(np.arange(n_e + n_i), k))
    drive = b2.PoissonInput(group, "v", int(c_e), nu_ext * Hz, weight=j * mV)
    mon_e, mon_i = b2.SpikeMonitor(exc), b2.SpikeMonitor(inh)
    return b2.Network(group, se, si, drive, mon_e, mon_i), exc, inh, mon_e, mon_i
