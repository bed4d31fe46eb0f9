"""Draw the figures of docs/analysis.md that come from networks trained here (not from a run
folder): the 3-bit flip-flop's fixed points and the perceptual-decision line attractor.
The training recipes are those of tests/test_fixed_points.py.

    python docs/_ext/analysis_figures.py
"""

from pathlib import Path

import torch

from bionn import CTRNN
from bionn.analysis import find_fixed_points
from bionn.tasks import FlipFlop, PerceptualDecisionMaking

OUT = Path(__file__).resolve().parents[1] / "figures"


def train(net, task, steps, lr, seed=1):
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        b = task.sample(32, g)
        out, _ = net(b.inputs)
        loss = ((out - b.targets) ** 2 * b.mask[..., None]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    task = FlipFlop(dt=10, duration=500)
    net = train(CTRNN(3, 48, 3, dt=10, tau=10, activation="tanh",
                      generator=torch.Generator().manual_seed(0)), task, 800, 1e-2)
    starts = task.sample(64, torch.Generator().manual_seed(5)).inputs
    fps = find_fixed_points(net, torch.zeros(3), sample_from=starts, n_initial=256, init_noise=0.5,
                            generator=torch.Generator().manual_seed(0))
    c = fps.counts()
    fps.plot(path=OUT / "analysis_flipflop_fixed_points.png",
             title=f"3-bit flip-flop: {c['stable']} stable, {c['saddle']} saddles")

    torch.manual_seed(0)
    task = PerceptualDecisionMaking(dt=20, coherences=(0.016, 0.032, 0.064, 0.128),
                                    timing={"stimulus": 1500})
    net = train(CTRNN(3, 64, 3, dt=20, tau=100, activation="tanh", preact_noise=0.1,
                      generator=torch.Generator().manual_seed(0)), task, 1500, 5e-3)
    test = task.sample(500, torch.Generator().manual_seed(9))
    fps = find_fixed_points(net, torch.tensor([1.0, 0.5, 0.5]), sample_from=test.inputs[:64],
                            n_initial=128, q_threshold=1e-3, generator=torch.Generator().manual_seed(0))
    fps.plot(path=OUT / "analysis_pdm_line_attractor.png",
             title=f"perceptual decision: {len(fps)} slow points on a line")


if __name__ == "__main__":
    main()
