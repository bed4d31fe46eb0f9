"""Train an 80% E / 20% I CTRNN (Dale's law) on perceptual decision making."""

import torch

from bionn import CTRNN, RNNLoss
from bionn.tasks import make_task

torch.manual_seed(0)
task = make_task("perceptual_decision_making", dt=20)  # time in ms
net = CTRNN(task.n_input, 100, task.n_output, dt=task.dt, tau=100, e_fraction=0.8,
            spectral_radius=1.0, readout="excitatory", positive_input=True, preact_noise=0.05)
loss_fn = RNNLoss(l2={"recurrent": 1e-4}, rate_mean=1e-3)
opt = torch.optim.Adam(net.parameters(), lr=3e-3)
g = torch.Generator().manual_seed(0)
for _ in range(1000):
    batch = task.sample(64, g)  # batch-first (batch, time, channels)
    out, rates = net(batch.inputs)
    loss, terms = loss_fn(out, batch.targets, rates, batch.mask, net.connection_weights())
    opt.zero_grad()
    loss.backward()
    opt.step()  # Dale's law still holds: it is a parametrization, not a clamp
test = task.sample(1000, torch.Generator().manual_seed(1))
with torch.no_grad():
    accuracy = task.accuracy(net(test.inputs)[0], test).float().mean().item()
print(f"held-out accuracy {accuracy:.3f}; E weights >= 0: {bool((net.weight_rec[:, :80] >= 0).all())}")
