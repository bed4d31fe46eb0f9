"""Numerical comparison with NN4N 1.1.1's CTRNN (optional reference package)."""

import pytest
import torch

nn4n_model = pytest.importorskip("nn4n.model", reason="NN4N not installed (pip install bionn[nn4n])")

from bionn.rate import CTRNN  # noqa: E402

pytestmark = pytest.mark.reference


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "retanh"])
def test_same_weights_same_trajectories_as_nn4n(activation):
    torch.manual_seed(0)
    ref = nn4n_model.CTRNN(dims=[3, 24, 2], activation=activation, dt=10, tau=50,
                           biases="normal", suppress_warnings=True)
    ref.eval()  # NN4N: no constraint re-enforcement, no noise
    rl = ref.recurrent_layer
    net = CTRNN(3, 24, 2, dt=10, tau=50, activation=activation)
    with torch.no_grad():
        net.weight_in.copy_(rl.input_layer.weight)
        net.weight_rec.copy_(rl.hidden_layer.weight)
        net.bias_rec.copy_(rl.input_layer.bias + rl.hidden_layer.bias)
        net.weight_out.copy_(ref.readout_layer.weight)
        net.bias_out.copy_(ref.readout_layer.bias)
    x = torch.randn(5, 30, 3)
    with torch.no_grad():
        ref_out, ref_states = ref(x.transpose(0, 1))  # NN4N is time-first
        out, rates = net(x)
    ref_rates = ref_states[0] if isinstance(ref_states, (list, tuple)) else ref_states
    torch.testing.assert_close(rates, ref_rates.transpose(0, 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, ref_out.transpose(0, 1), atol=1e-5, rtol=1e-5)
