"""NIR interchange (bionn.spiking.nir; the ``nir`` extra): round trips with the same spikes,
graphs exported by snnTorch 1.0 and Norse 1.1 imported with the same spikes, and the
models NIR cannot express refused at export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bionn.spiking import (
    LeakyReadout,
    SpikingCell,
    SpikingLayer,
    SpikingRNN,
    SpikingSequential,
    from_nir,
    to_nir,
)

nir = pytest.importorskip("nir", reason="NIR is an optional extra (bionn[snn])")

B, T = 3, 60


def _x(n: int = 4, scale: float = 2.0, dtype=torch.float64) -> torch.Tensor:
    return torch.rand(B, T, n, generator=torch.Generator().manual_seed(0), dtype=dtype) * scale


def _same(a: torch.Tensor, b: torch.Tensor, spikes: bool = True) -> None:
    if spikes:
        assert 0.02 < float(a.mean()) < 0.7, "the test needs spikes"
    assert float((a - b).abs().max()) == 0.0


@pytest.mark.parametrize("synapse", ["delta", "exponential"])
@pytest.mark.parametrize("reset", ["value", "subtract"])
@pytest.mark.parametrize("method", ["exp_euler", "euler"])
def test_spiking_layer_round_trip(synapse, reset, method):
    torch.manual_seed(0)
    layer = SpikingLayer(4, 6, synapse=synapse, reset=reset, method=method, t_refractory=0.0,
                         tau=8.0, V_th=1.0, dt=0.5).double()
    with torch.no_grad():
        layer.linear.weight.mul_(12.0 if synapse == "delta" else 4.0)
    graph = to_nir(layer)
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    assert kinds == {"Input", "Output", "Affine", "LIF" if synapse == "delta" else "CubaLIF"}
    back = from_nir(graph).double()
    with torch.no_grad():
        _same(layer(_x()), back(_x()))


def test_spiking_rnn_round_trip_with_recurrent_edge_and_readout(tmp_path):
    torch.manual_seed(1)
    net = SpikingRNN(4, 12, 2, dt=1.0, t_refractory=0.0, input_gain=3.0, recurrent_gain=2.0,
                     e_fraction=0.75, bias=True).double()
    graph = to_nir(net)
    assert ("0.lif", "0.rec") in graph.edges and ("0.rec", "0.lif") in graph.edges
    assert isinstance(graph.nodes["0.li"], nir.LI)
    nir.write(tmp_path / "net.nir", graph)  # the file format keeps what the import needs
    back = from_nir(nir.read(tmp_path / "net.nir")).double()
    assert isinstance(back.layers[0], SpikingRNN)
    with torch.no_grad():
        out, spikes = net(_x())
        _same(spikes, back.layers[0](_x())[1])
        _same(out, back(_x()), spikes=False)


def test_conv_flatten_readout_sequence_round_trip():
    torch.manual_seed(2)
    cell = SpikingCell("LIF", 2 * 6 * 6, dt=1.0, synapse="exponential", t_refractory=0.0, tau=5.0)
    seq = SpikingSequential(nn.Conv2d(1, 2, 3, padding=1), _neurons(cell), nn.Flatten(),
                            LeakyReadout(72, 3, dt=1.0, tau=10.0)).double()
    with torch.no_grad():
        seq.layers[0].weight.abs_().mul_(20.0)
    x = torch.rand(B, 20, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    graph = to_nir(seq)
    assert [type(graph.nodes[k]).__name__ for k in ("0", "1.lif", "2", "3.linear", "3.li")] == [
        "Conv2d", "CubaLIF", "Flatten", "Affine", "LI"]
    back = from_nir(graph).double()
    with torch.no_grad():
        _same(seq.layers[1](seq.layers[0](x.flatten(0, 1)).unflatten(0, (B, 20))),
              back.layers[1](back.layers[0](x.flatten(0, 1)).unflatten(0, (B, 20))))
        _same(seq(x), back(x), spikes=False)


def _neurons(cell):
    from bionn.spiking.nir import _Neurons

    return _Neurons(cell)


def test_if_node_integrates_without_leak():
    graph = nir.NIRGraph.from_list(nir.Linear(weight=torch.eye(2).numpy()),
                                   nir.IF(r=torch.ones(2).numpy() * 250.0,
                                          v_threshold=torch.ones(2).numpy() * 0.95))
    net = from_nir(graph, dt=1.0).double()  # dv/dt = r I (1/s): V += 1e-3 * 250 * I per ms
    x = torch.zeros(1, 12, 2, dtype=torch.float64)
    x[..., 0] = 1.0
    with torch.no_grad():
        s = net(x)[0]
    assert s[:, 0].nonzero().flatten().tolist() == [3, 7, 11]  # 0.25 per step, reset to 0
    assert s[:, 1].sum() == 0


@pytest.mark.parametrize("make, name", [
    (lambda: SpikingLayer(3, 4, "ALIF", t_refractory=0.0), "ALIF"),
    (lambda: SpikingLayer(3, 4, "AdExIF", t_refractory=0.0), "AdExIF"),
    (lambda: SpikingLayer(3, 4, "Izhikevich", t_refractory=0.0), "Izhikevich"),
    (lambda: SpikingLayer(3, 4, synapse="conductance", t_refractory=0.0), "conductance"),
    (lambda: SpikingLayer(3, 4, synapse="dual_exponential", t_refractory=0.0), "dual_exponential"),
    (lambda: SpikingLayer(3, 4, t_refractory=2.0), "refractory"),
])
def test_models_nir_cannot_express_are_refused(make, name):
    with pytest.raises(ValueError, match=rf"node '0\.lif'.*{name}"):
        to_nir(make())


def test_import_options_are_checked():
    graph = to_nir(SpikingLayer(2, 2, synapse="delta", t_refractory=0.0))
    with pytest.raises(ValueError, match="reset must be one of"):
        from_nir(graph, reset="zero")
    with pytest.raises(ValueError, match="give dt"):
        from_nir(nir.NIRGraph.from_list(nir.Linear(weight=torch.eye(2).numpy())))


# -- the peers' exports ----------------------------------------------------------------------
def test_snntorch_export_imports_with_the_same_spikes():
    snn = pytest.importorskip("snntorch", reason="snnTorch is a test extra (bionn[snn])")
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    x = _x(dtype=torch.float32)
    # per-neuron beta and threshold: snnTorch's export needs them for NIR's type inference
    net = nn.Sequential(
        nn.Linear(4, 8),
        snn.RLeaky(beta=torch.full((8,), 0.9), linear_features=8, init_hidden=True),
        nn.Linear(8, 5), snn.Leaky(beta=torch.full((5,), 0.8), threshold=torch.ones(5), init_hidden=True),
        nn.Linear(5, 3), snn.Leaky(beta=torch.full((3,), 0.7), threshold=torch.ones(3), init_hidden=True,
                                   output=True))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        for i in (2, 4):
            net[i].weight.abs_().mul_(0.6)
    graph = export_to_nir(net, x[:, 0], ignore_dims=[0])
    utils.reset(net)
    out = []
    with torch.no_grad():
        for t in range(T):
            out.append(net(x[:, t])[0])
    theirs = torch.stack(out, 1)
    # snnTorch writes dt = 1e-4 s (0.1 ms), Euler, and resets by subtracting after the decay
    ours = from_nir(graph, dt=0.1, method="euler", reset="subtract_after_decay")
    assert isinstance(ours.layers[0], SpikingRNN)
    with torch.no_grad():
        _same(theirs, ours(x))


def test_norse_export_imports_with_the_same_spikes():
    pytest.importorskip("norse", reason="Norse is a test extra (bionn[snn])")
    import norse.torch as norse
    from norse.torch.functional.lif import LIFParameters
    from norse.torch.functional.lif_box import LIFBoxParameters

    torch.manual_seed(0)
    x = _x(dtype=torch.float32)
    p = LIFParameters(tau_syn_inv=torch.full((8,), 200.0), tau_mem_inv=torch.full((8,), 100.0),
                      v_leak=torch.zeros(8), v_th=torch.ones(8), v_reset=torch.zeros(8))
    pb = LIFBoxParameters(tau_mem_inv=torch.full((3,), 100.0), v_leak=torch.zeros(3),
                          v_th=torch.ones(3), v_reset=torch.zeros(3))
    net = norse.SequentialState(nn.Linear(4, 8), norse.LIFCell(p), nn.Linear(8, 3), norse.LIFBoxCell(pb))
    with torch.no_grad():
        net[0].weight.mul_(8.0)
        net[2].weight.abs_().mul_(12.0)
    graph = norse.to_nir(net, x[:1, 0], dt=1e-3)
    assert isinstance(graph.nodes["1"], nir.CubaLIF)
    state, out = None, []
    with torch.no_grad():
        for t in range(T):
            z, state = net(x[:, t], state)
            out.append(z)
    theirs = torch.stack(out, 1)
    # Norse writes tau = dt / tau_inv (dt times the time constant): dt = 1000 dt_norse^2 ms
    ours = from_nir(graph, dt=1e3 * 1e-3 ** 2, method="euler", current="jump")
    with torch.no_grad():
        _same(theirs, ours(x))
