"""Brunel (2000) and what it needs: ``PoissonInput`` (exact binomial counts, seeded,
refused where it does not apply), spike recording chosen per group, and the ready
``brunel`` network against Brian2 (rate and ISI irregularity; the three regimes are
compared in ``benchmarks/brunel.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bionn.spiking import (
    LIF,
    NMDA,
    Exponential,
    Network,
    PoissonInput,
    StepContext,
    VoltageJump,
    WilsonCowan,
    brunel,
)


def _counts(n_sources: int, rate: float, dt: float, batch: int, n: int, seed: int = 0) -> torch.Tensor:
    drive = PoissonInput("E", n, n_sources=n_sources, rate=rate, synapse=VoltageJump(), weight=1.0)
    ctx = StepContext(0.0, dt, torch.Generator().manual_seed(seed))
    return drive.deliver(torch.zeros(batch, n, dtype=torch.bool), drive.weight.double(), ctx=ctx)


@pytest.mark.parametrize("n_sources, rate", [(400, 50.0), (20, 2000.0), (1, 300.0)])
def test_poisson_input_counts_are_binomial(n_sources, rate):
    dt = 0.1
    k = _counts(n_sources, rate, dt, 50, 4000).flatten()
    p = rate * dt / 1000.0
    mean, var = n_sources * p, n_sources * p * (1 - p)
    m = k.numel()
    assert float(k.mean()) == pytest.approx(mean, abs=5 * math.sqrt(var / m))
    assert float(k.var()) == pytest.approx(var, rel=0.03)
    # the probability of each count against the binomial pmf
    for c in range(0, min(n_sources, 6) + 1):
        pmf = math.comb(n_sources, c) * p**c * (1 - p) ** (n_sources - c)
        got = float((k == c).double().mean())
        assert got == pytest.approx(pmf, abs=5 * math.sqrt(pmf * (1 - pmf) / m) + 1e-6), c
    assert torch.equal(k, k.round()) and int(k.min()) >= 0 and int(k.max()) <= n_sources


def test_poisson_input_is_seeded_and_drives_through_any_linear_synapse():
    def run(seed: int, synapse, output=None):
        drive = PoissonInput("E", 50, n_sources=100, rate=40.0, synapse=synapse, weight=0.5,
                             output=output, E=60.0 if output == "conductance" else None)
        net = Network({"E": LIF(50, V_rest=0.0, V_reset=0.0, V_th=10.0, tau=20.0)}, [drive])
        return net.run(200.0, dt=0.1, progress=False, seed=seed).spikes["E"]

    a, b, c = run(1, VoltageJump()), run(1, VoltageJump()), run(2, VoltageJump())
    assert a.count() > 0 and torch.equal(a.step, b.step) and torch.equal(a.neuron, b.neuron)
    assert not (a.count() == c.count() and torch.equal(a.step, c.step))
    assert run(0, Exponential(tau_decay=5.0, g_max=1.0), "current").count() > 0
    assert run(0, Exponential(tau_decay=5.0, g_max=0.05), "conductance").count() > 0


def test_poisson_input_refusals():
    with pytest.raises(ValueError, match="sum of arriving spikes"):
        PoissonInput("E", 10, n_sources=5, rate=10.0, synapse=NMDA())
    with pytest.raises(ValueError, match="n_sources must be a positive integer"):
        PoissonInput("E", 10, n_sources=0, rate=10.0, synapse=VoltageJump())
    with pytest.raises(ValueError, match="rate must be a number of Hz >= 0"):
        PoissonInput("E", 10, n_sources=5, rate=-1.0, synapse=VoltageJump())
    drive = PoissonInput("E", 10, n_sources=5, rate=20000.0, synapse=VoltageJump())
    net = Network({"E": LIF(10)}, [drive])
    with pytest.raises(ValueError, match="more than one spike per step"):
        net.run(1.0, dt=0.1, progress=False)
    with pytest.raises(ValueError, match="poisson->E: its connectivity has 10 .* a group of 12"):
        Network({"E": LIF(12)}, [PoissonInput("E", 10, n_sources=5, rate=1.0, synapse=VoltageJump())])


def test_spikes_recorded_per_group():
    net = brunel(200, 50, c_e=20, c_i=5, generator=torch.Generator().manual_seed(0))
    res = net.run(50.0, dt=0.1, progress=False, record_spikes=["I"])
    assert list(res.spikes) == ["I"] and res.spikes["I"].n_neurons == 50
    assert list(net.run(5.0, dt=0.1, progress=False, record_spikes=False).spikes) == []
    assert sorted(net.run(5.0, dt=0.1, progress=False).spikes) == ["E", "I"]
    with pytest.raises(ValueError, match="unknown group 'X'"):
        net.run(5.0, dt=0.1, progress=False, record_spikes=["X"])
    rate = Network({"W": WilsonCowan(2), "E": LIF(2)})
    with pytest.raises(ValueError, match="group 'W', which does not spike"):
        rate.run(5.0, dt=0.1, progress=False, record_spikes=["W"])


def test_brunel_refuses_bad_arguments():
    with pytest.raises(ValueError, match="in-degrees"):
        brunel(100, 20, c_e=200)
    with pytest.raises(ValueError, match="v_reset"):
        brunel(100, 20, c_e=10, c_i=5, v_reset=25.0)


def _cv(times: np.ndarray, neurons: np.ndarray) -> float:
    order = np.lexsort((times, neurons))
    t, n = times[order], neurons[order]
    cvs = []
    for i in np.unique(n):
        isi = np.diff(t[n == i])
        if len(isi) >= 3:
            cvs.append(isi.std() / isi.mean())
    return float(np.mean(cvs))


@pytest.mark.reference
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("g, eta", [(3.0, 2.0)])  # the regime the refractory rule moved by 3 %
def test_brunel_matches_brian2(g, eta):
    brian2 = pytest.importorskip("brian2", reason="Brian2 is an optional test extra (pip install bionn[test])")
    from bionn.spiking.brian2_reference import brian2_brunel

    net, _, _, mon_e, _ = brian2_brunel(g=g, eta=eta, seed=3)
    net.run(300 * brian2.ms)
    t_b, i_b = np.asarray(mon_e.t / brian2.ms), np.asarray(mon_e.i)
    res = brunel(g=g, eta=eta, generator=torch.Generator().manual_seed(0)).run(
        300.0, dt=0.1, progress=False, seed=0, record_spikes=["E"])
    t_o, i_o = res.spikes["E"].times.numpy(), res.spikes["E"].neuron.numpy()
    rate_b = float((t_b >= 100).sum()) / (4000 * 0.2)
    rate_o = float((t_o >= 100).sum()) / (4000 * 0.2)
    assert rate_o == pytest.approx(rate_b, rel=0.03), (rate_o, rate_b)
    late_b, late_o = t_b >= 100, t_o >= 100
    assert _cv(t_o[late_o], i_o[late_o]) == pytest.approx(_cv(t_b[late_b], i_b[late_b]), abs=0.05)
