"""The compiled spiking step (``Network.run(backend="cpp")``) against the torch path.

Every case runs both backends from the same seed and asserts the same spike events and a
bitwise-equal final state (both follow PyTorch's operations and rounding).
"""

from __future__ import annotations

import pytest
import torch

from bionn._core import native
from bionn.circuits.connect import fixed_prob, one_to_one
from bionn.spiking import (
    LIF,
    AdExIF,
    Alpha,
    DualExponential,
    Exponential,
    Izhikevich,
    Network,
    NonFiniteStateError,
    Projection,
    VoltageJump,
    compiled,
)
from bionn.spiking.networks import coba

pytestmark = pytest.mark.skipif(native.compiler() is None, reason="no C++ compiler")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BIONN_CACHE_DIR", str(tmp_path / "cache"))


def _same(a, b, require=None):
    for g, ev in a.spikes.items():
        other = b.spikes[g]
        if require is None or g in require:
            assert ev.count() > 0, f"{g}: no spikes; the case tests nothing"
        for f in ("trial", "step", "neuron"):
            assert torch.equal(getattr(ev, f), getattr(other, f)), (g, f)
    assert set(a.spikes) == set(b.spikes)
    for owner, s in a.state.items():
        for k, v in s.items():
            assert torch.equal(v, b.state[owner][k]), f"{owner}.{k}"


def _both(net, duration, **kw):
    a = net.run(duration, progress=False, backend="torch", **kw)
    b = net.run(duration, progress=False, backend="cpp", **kw)
    _same(a, b)
    return a, b


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_coba_identical_to_torch(dtype):
    net = coba(500, generator=torch.Generator().manual_seed(0))
    a, b = _both(net, 60.0, batch=2, seed=3, dtype=dtype)
    assert a.spikes["P"].trial.unique().numel() == 2
    assert (a.backend, b.backend, b.backend_reason) == ("torch", "cpp", None)


def _mixed(gen):
    """LIF (per-neuron tau: the generic path), AdEx and Izhikevich groups; exponential,
    alpha and dual-exponential synapses as current and conductance; voltage jumps with
    delays; neuron ranges on both sides."""
    lif = LIF(60, V_rest=-65.0, V_reset=-70.0, V_th=-50.0, tau=torch.linspace(10, 30, 60),
              t_refractory=2.0, initial={"V": (-70.0, -50.0)})
    adex = AdExIF(40, V_rest=-70.0, V_reset=-58.0, V_th=-30.0, V_T=-50.0, delta_T=2.0, a=2.0,
                  b=60.0, R=0.5, tau=20.0, tau_w=100.0, t_refractory=1.0,
                  initial={"V": (-70.0, -55.0)})
    izh = Izhikevich(30, preset="FS", initial={"V": (-70.0, -60.0)})
    projs = [
        Projection("L", "A", fixed_prob(40, 60, 0.2, generator=gen), Exponential(tau_decay=5.0, g_max=1.0),
                   weight=0.4, output="conductance", E=0.0, delay=1.0),
        Projection("A", "L", fixed_prob(60, 40, 0.2, generator=gen), Alpha(tau_decay=2.0, g_max=1.0),
                   weight=30.0, delay=0.5),
        Projection("A", "Z", fixed_prob(30, 40, 0.3, generator=gen), DualExponential(g_max=1.0),
                   weight=0.3, output="conductance", E=-80.0),
        Projection("Z", "L", fixed_prob(30, 30, 0.3, generator=gen), VoltageJump(), weight=-2.0,
                   post_range=(30, 60), delay=0.3),
        Projection("L", "Z", one_to_one(20), VoltageJump(), weight=3.0, pre_range=(0, 20),
                   post_range=(10, 30)),
    ]
    inputs = {"L": torch.linspace(14.0, 22.0, 60), "A": 600.0, "Z": 6.0}
    return Network({"L": lif, "A": adex, "Z": izh}, projs, inputs=inputs)


def test_lif_adex_izhikevich_synapses_delays_batch_identical():
    net = _mixed(torch.Generator().manual_seed(1))
    a, _ = _both(net, 150.0, batch=3, seed=5, dtype=torch.float64)
    for g in ("L", "A", "Z"):
        assert a.spikes[g].count() > 20, g


def test_recorded_groups_and_continued_state():
    net = _mixed(torch.Generator().manual_seed(2))
    a1 = net.run(40.0, progress=False, seed=1, record_spikes=["A"], backend="torch")
    b1 = net.run(40.0, progress=False, seed=1, record_spikes=["A"], backend="cpp")
    assert set(b1.spikes) == {"A"}
    _same(a1, b1)
    a2 = net.run(30.0, progress=False, state=a1.state, t_start=40.0, backend="torch")
    b2 = net.run(30.0, progress=False, state=b1.state, t_start=40.0, backend="cpp")
    _same(a2, b2, require=("L",))
    assert torch.equal(a1.state["L"]["V"], b1.state["L"]["V"])  # the given state is not written


def test_compile_cached_and_reported(tmp_path):
    net = coba(200, generator=torch.Generator().manual_seed(0))
    p1 = compiled.compile_network(net, dt=0.1, batch=1)
    assert not p1.cached and p1.compile_s > 0 and p1.path.exists()
    assert compiled.compile_network(net, dt=0.1, batch=1) is p1  # kept for the unchanged network
    compiled._PLANS.clear()
    p2 = compiled.compile_network(net, dt=0.1, batch=1)
    assert p2.cached and p2.compile_s == 0.0 and p2.path == p1.path
    with torch.no_grad():
        net.projections[0].weight.mul_(1.5)  # a changed parameter: a new step
    p3 = compiled.compile_network(net, dt=0.1, batch=1)
    assert p3 is not p2


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_neuron_noise_with_poisson_input_identical(dtype):
    from bionn.spiking import PoissonInput

    g = torch.Generator().manual_seed(0)
    net = Network(
        {"E": LIF(50, noise=2.0, V_rest=0.0, V_reset=10.0, V_th=20.0, tau=20.0, t_refractory=2.0),
         "Z": Izhikevich(20, noise=1.0)},
        [PoissonInput("E", 50, n_sources=100, rate=20.0, synapse=VoltageJump(), weight=0.5),
         Projection("E", "Z", fixed_prob(20, 50, 0.3, generator=g), Exponential(g_max=1.0),
                    weight=3.0)],
        inputs={"Z": 5.0})
    ga, gb = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = net.run(30.0, progress=False, batch=2, generator=ga, dtype=dtype, backend="torch")
    b = net.run(30.0, progress=False, batch=2, generator=gb, dtype=dtype, backend="cpp")
    _same(a, b)
    assert torch.equal(ga.get_state(), gb.get_state())


def test_unsupported_refused_by_name_and_auto_falls_back():
    from bionn.spiking import PoissonGroup

    noisy = Network({"S": PoissonGroup(20, rate=50.0), "E": LIF(5)},
                    [Projection("S", "E", fixed_prob(5, 20, 0.5), Exponential(), weight=1.0)])
    with pytest.raises(ValueError, match="backend='cpp'.*random"):
        noisy.run(5.0, progress=False, backend="cpp")
    a = noisy.run(5.0, progress=False, seed=0)
    b = noisy.run(5.0, progress=False, seed=0, backend="auto")
    assert torch.equal(a.state["E"]["V"], b.state["E"]["V"])
    assert (a.backend, a.backend_reason) == ("torch", None)
    assert b.backend == "torch" and "random" in b.backend_reason  # auto says why
    net = coba(100, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="plasticity"):
        from bionn.plasticity import STDP

        plastic = Network({"E": LIF(4)}, [Projection("E", "E", one_to_one(4), Exponential(),
                                                     plasticity=STDP())], inputs={"E": 25.0})
        plastic.run(5.0, progress=False, backend="cpp")
    timed = Network({"E": LIF(5)}, inputs={"E": lambda t: 25.0})
    with pytest.raises(ValueError, match="function of time"):
        timed.run(5.0, progress=False, backend="cpp")
    with pytest.raises(ValueError, match="backend must be one of"):
        net.run(5.0, progress=False, backend="numba")


def test_nonfinite_state_named_at_the_same_step():
    def blowup():
        g = torch.Generator().manual_seed(0)
        izh = Izhikevich(10, initial={"V": (-70.0, -60.0)})
        proj = Projection("Z", "Z", fixed_prob(10, 10, 0.5, generator=g), Exponential(tau_decay=5.0, g_max=1.0),
                          weight=1e38)
        return Network({"Z": izh}, [proj], inputs={"Z": 10.0})

    errs = []
    for backend in ("torch", "cpp"):
        with pytest.raises(NonFiniteStateError) as e:
            blowup().run(100.0, progress=False, backend=backend, dtype=torch.float32)
        errs.append(e.value)
    assert (errs[0].variable, errs[0].step, errs[0].index) == (errs[1].variable, errs[1].step,
                                                               errs[1].index)


def test_tracing_leaves_the_torch_path_working():
    from bionn.functional import spiking as functional_spiking

    functional_spiking._CONSTANTS.clear()  # the trace is the first to make the LIF's constants
    net = coba(300, generator=torch.Generator().manual_seed(4))
    compiled.compile_network(net, dt=0.1, batch=1)
    a = net.run(10.0, progress=False, seed=2)  # would fail on a traced constant left in the cache
    b = net.run(10.0, progress=False, seed=2, backend="cpp")
    _same(a, b)


def test_brunel_poisson_input_identical_and_generator_in_step():
    from bionn.spiking.networks import brunel

    net = brunel(n_e=800, n_i=200, c_e=80, c_i=20, g=5.0, eta=2.0,
                 generator=torch.Generator().manual_seed(0))
    ga, gb = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a = net.run(40.0, progress=False, batch=2, generator=ga, backend="torch")
    b = net.run(40.0, progress=False, batch=2, generator=gb, backend="cpp")
    _same(a, b)
    assert torch.equal(ga.get_state(), gb.get_state())  # the same draws, so a run can continue
    c = net.run(20.0, progress=False, state=a.state, generator=ga, backend="torch")
    d = net.run(20.0, progress=False, state=b.state, generator=gb, backend="cpp")
    _same(c, d)


def test_state_variables_recorded_as_on_the_torch_path():
    net = _mixed(torch.Generator().manual_seed(3))
    kw = dict(seed=2, batch=2, record={"L": ["V", "refractory"], "A": ["w", "V"], "Z": ["spike"]},
              record_every=3, record_neurons={"A": [0, 5, 7]}, progress=False)
    a = net.run(31.0, backend="torch", **kw)
    b = net.run(31.0, backend="cpp", **kw)
    _same(a, b, require=("L",))
    assert a.traces.keys() == b.traces.keys()
    for k, x in a.traces.items():
        assert x.shape == b.traces[k].shape and torch.equal(x, b.traces[k]), k
    assert a.traces["A.w"].shape == (2, 103, 3)
    assert torch.equal(a.trace_times, b.trace_times)
    assert all(torch.equal(a.recorded_neurons[g], b.recorded_neurons[g]) for g in a.recorded_neurons)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_exponential_euler_expm1_identical(dtype):
    """Exponential Euler's phi1 needs expm1: PyTorch's own vector routine, lane by lane."""
    g = torch.Generator().manual_seed(0)
    adex = AdExIF(37, method="exp_euler", V_rest=-70.0, V_reset=-58.0, V_th=-30.0, V_T=-50.0,
                  delta_T=2.0, a=2.0, b=60.0, R=0.5, tau=20.0, tau_w=100.0, t_refractory=1.0,
                  initial={"V": (-70.0, -55.0)})
    net = Network({"A": adex}, [Projection("A", "A", fixed_prob(37, 37, 0.2, generator=g),
                                           Exponential(tau_decay=5.0, g_max=1.0), weight=20.0)],
                  inputs={"A": 600.0})
    _both(net, 80.0, batch=2, seed=1, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cobahh_identical(dtype):
    """Hodgkin-Huxley cells: exp, expm1, sigmoid and pow(n, 4), each PyTorch's own routine."""
    from bionn.spiking.networks import cobahh

    net = cobahh(400, generator=torch.Generator().manual_seed(0))
    _both(net, 30.0, batch=2, seed=2, dtype=dtype)


def test_cobahh_beyond_one_parallel_chunk_identical():
    """More than 32768 values per operation: PyTorch splits its loops by thread, and the
    compiled loop follows (the scalar tails of sigmoid and pow sit at the chunk ends)."""
    from bionn.spiking.networks import cobahh

    net = cobahh(17000, generator=torch.Generator().manual_seed(0))
    _both(net, 4.0, batch=2, seed=2, dtype=torch.float64)


def test_gap_junctions_and_graded_synapses_identical():
    """Graded delivery (every synapse, w_ij v_j): gap junctions and Wang-Buzsaki's GABA_A."""
    from bionn.spiking import GapJunction
    from bionn.spiking.networks import wang_buzsaki

    _both(wang_buzsaki(40), 40.0, batch=2, seed=1, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    lif = LIF(30, V_rest=-65.0, V_reset=-70.0, V_th=-50.0, tau=20.0, t_refractory=2.0,
              initial={"V": (-70.0, -50.0)})
    net = Network({"E": lif}, [
        Projection("E", "E", fixed_prob(30, 30, 0.2, generator=g), GapJunction(g_max=0.5),
                   weight=0.3, name="gap"),
        Projection("E", "E", fixed_prob(30, 30, 0.1, generator=g), Exponential(g_max=1.0),
                   weight=2.0)], inputs={"E": torch.linspace(14.0, 20.0, 30)})
    _both(net, 60.0, batch=2, seed=1, dtype=torch.float32)


@pytest.mark.parametrize("name", sorted(__import__("bionn.spiking.synapse_models",
                                                   fromlist=["SYNAPSE_MODELS"]).SYNAPSE_MODELS))
def test_every_synapse_model_identical(name):
    from bionn.spiking.synapse_models import SYNAPSE_MODELS

    g = torch.Generator().manual_seed(0)
    syn = SYNAPSE_MODELS[name]()
    kw = {"E": 0.0} if syn.default_output == "conductance" and syn.default_E is None else {}
    lif = LIF(30, V_rest=-65.0, V_reset=-70.0, V_th=-50.0, tau=20.0, t_refractory=2.0,
              initial={"V": (-70.0, -50.0)})
    net = Network({"E": lif}, [Projection("E", "E", fixed_prob(30, 30, 0.2, generator=g), syn,
                                          weight=2.0, **kw)],
                  inputs={"E": torch.linspace(14.0, 22.0, 30)})
    _both(net, 40.0, batch=2, seed=1, dtype=torch.float64)


def _neuron_cases():
    from bionn.spiking import NEURONS

    cases = []
    for name, cls in sorted(NEURONS.items()):
        if not cls.spiking or name == "PoissonGroup":
            continue
        others = [m for m in cls.methods if m != cls.default_method]
        for method in [cls.default_method] + others[-1:]:  # the default and one more
            cases.append((name, method))
    return cases


@pytest.mark.parametrize(("name", "method"), _neuron_cases())
def test_every_spiking_neuron_model_identical(name, method):
    """Every spiking neuron model (its default integrator and one more), with a synapse."""
    from bionn.spiking import NEURONS

    cls = NEURONS[name]
    g = torch.Generator().manual_seed(0)
    net = Network({"E": cls(20, method=method)},
                  [Projection("E", "E", fixed_prob(20, 20, 0.2, generator=g), Exponential(g_max=1.0),
                              weight=1.0)],
                  inputs={"E": torch.linspace(5.0, 30.0, 20)})
    dt, duration = (0.01, 5.0) if "HH" in name and method != "exp_euler" else (0.1, 20.0)
    a = net.run(duration, dt=dt, progress=False, seed=1, dtype=torch.float64, backend="torch")
    b = net.run(duration, dt=dt, progress=False, seed=1, dtype=torch.float64, backend="cpp")
    _same(a, b, require=())


def test_run_to_disk_chunks_identical(tmp_path):
    """Chunked runs to disk continue the state and the generator as the torch path does."""
    from bionn.spiking import load_recording, run_to_disk
    from bionn.spiking.networks import brunel

    net = brunel(n_e=400, n_i=100, c_e=40, c_i=10, generator=torch.Generator().manual_seed(0))
    got = []
    for backend in ("torch", "cpp"):
        run_to_disk(net, 60.0, tmp_path / backend, chunk_ms=20.0, record={"E": ["V"]},
                    record_neurons={"E": [0, 3]}, seed=4, backend=backend, progress=False)
        got.append(load_recording(tmp_path / backend))
    a, b = got
    assert a.spikes["E"].count() > 0
    assert torch.equal(a.spikes["E"].step, b.spikes["E"].step)
    assert torch.equal(a.spikes["E"].neuron, b.spikes["E"].neuron)
    assert torch.equal(a.traces["E.V"], b.traces["E.V"])
