"""bionn.analysis fixed points and linearization against networks with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from bionn import CTRNN
from bionn.analysis import find_fixed_points, hidden_trajectories, linearize, step_map

F64 = torch.float64


def _set(net: CTRNN, w_rec: torch.Tensor, w_in: torch.Tensor, b: torch.Tensor) -> CTRNN:
    with torch.no_grad():
        net.weight_rec.copy_(w_rec)
        net.weight_in.copy_(w_in)
        net.bias_rec.copy_(b)
    return net


def _train(net: CTRNN, task, steps: int, lr: float) -> None:
    """Adam on the masked MSE of the task's targets, batches of 32 from a seeded stream."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        b = task.sample(32, g)
        out, _ = net(b.inputs)
        loss = ((out - b.targets) ** 2 * b.mask[..., None]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_linear_network_fixed_point_and_jacobian_are_exact():
    g = torch.Generator().manual_seed(0)
    n, alpha = 6, 0.1
    w = torch.randn(n, n, generator=g, dtype=F64) * 0.3
    w_in = torch.randn(n, 2, generator=g, dtype=F64)
    b = torch.randn(n, generator=g, dtype=F64) * 0.1
    u = torch.tensor([0.5, -1.0], dtype=F64)
    net = _set(CTRNN(2, n, 1, dt=10, tau=100, activation=lambda x: x), w, w_in, b)
    w, w_in, b = (t.detach().double() for t in (net.weight_rec, net.weight_in, net.bias_rec))
    h_true = torch.linalg.solve(torch.eye(n, dtype=F64) - w, w_in @ u + b)
    fps = find_fixed_points(net, u, initial_states=torch.randn(16, n, generator=g) * 2)
    assert len(fps) == 1
    torch.testing.assert_close(fps.states[0], h_true, rtol=0, atol=1e-5)
    j_true = (1 - alpha) * torch.eye(n, dtype=F64) + alpha * w
    torch.testing.assert_close(fps.jacobians[0], j_true, rtol=0, atol=1e-10)
    lam = torch.linalg.eigvals(j_true)
    assert int(fps.n_unstable[0]) == int((lam.abs() > 1).sum())
    mu = torch.linalg.eigvals(w)  # continuous time: (W - I) / tau, per ms
    ct = torch.sort((mu - 1).real / 100).values
    torch.testing.assert_close(torch.sort(fps.eigenvalues_ct[0].real).values, ct, rtol=0, atol=1e-10)


def _root(w: float) -> float:
    """The positive root of h = w tanh(h) (w > 1), by bisection."""
    lo, hi = 1e-9, w
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mid < w * math.tanh(mid) else (lo, mid)
    return 0.5 * (lo + hi)


def test_tanh_network_recovers_all_nine_fixed_points_with_their_stability():
    # two uncoupled units h = 2 tanh(h): roots {-h*, 0, h*} each, nine points in all
    net = _set(CTRNN(1, 2, 1, dt=10, tau=100, activation="tanh"), 2.0 * torch.eye(2),
               torch.zeros(2, 1), torch.zeros(2))
    g = torch.Generator().manual_seed(1)
    fps = find_fixed_points(net, torch.zeros(1), initial_states=torch.randn(200, 2, generator=g) * 3)
    r = _root(2.0)
    expected = torch.tensor([[a, b] for a in (-r, 0.0, r) for b in (-r, 0.0, r)], dtype=F64)
    assert len(fps) == 9
    for p in expected:
        d = (fps.states - p).abs().max(1).values
        assert float(d.min()) < 1e-5, p
        i = int(torch.argmin(d))
        zeros = int((p == 0).sum())  # h = 0 is unstable (slope 2 > 1); h = +-h* stable
        assert int(fps.n_unstable[i]) == zeros
        assert fps.stability[i] == ("stable", "saddle", "unstable")[zeros]
        slope = 0.9 + 0.1 * 2.0 / torch.cosh(p) ** 2  # (1 - alpha) + alpha w sech^2(h)
        torch.testing.assert_close(torch.diagonal(fps.jacobians[i]), slope, rtol=0, atol=1e-8)
    assert fps.counts() == {"stable": 4, "saddle": 4, "unstable": 1}
    assert float(fps.q.max()) < 1e-16


def test_linearize_left_and_right_eigenvectors_and_a_line_attractor():
    # W = [[1, 0], [0, 0.5]] on identity units: mode 1 is a perfect integrator (line attractor)
    net = _set(CTRNN(1, 2, 1, dt=10, tau=100, activation=lambda x: x),
               torch.tensor([[1.0, 0.0], [0.0, 0.5]]), torch.zeros(2, 1), torch.zeros(2))
    lin = linearize(net, torch.zeros(2), torch.zeros(1))
    assert abs(complex(lin.eigenvalues_ct[0])) < 1e-12  # the integrating mode first
    torch.testing.assert_close(lin.eigenvalues_ct[1].real, torch.tensor(-0.005, dtype=F64))
    torch.testing.assert_close(lin.left @ lin.right, torch.eye(2, dtype=torch.complex128))
    assert lin.slow_mode_ratio() > 1e6


def test_starts_sampled_from_the_models_trajectories_and_the_plot():
    torch.manual_seed(0)
    net = CTRNN(2, 8, 1, dt=10, tau=100, activation="tanh")
    x = torch.rand(4, 30, 2)
    traj = hidden_trajectories(net, x)
    _, rates = net(x)
    torch.testing.assert_close(torch.tanh(traj), rates.to(traj))  # r = f(h) at every step
    fps = find_fixed_points(net, torch.zeros(2), sample_from=x, n_initial=32,
                            generator=torch.Generator().manual_seed(0))
    assert len(fps) >= 1 and fps.trajectories.shape == (4, 30, 8)
    F = step_map(net.double(), torch.zeros(2, dtype=F64))
    torch.testing.assert_close(F(fps.states), fps.states, rtol=0, atol=1e-7)
    fig = fps.plot()
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(lbl.startswith("stable") for lbl in labels)
    assert fig.axes[0].get_xlabel() == "PC 1"


def test_bad_arguments_are_refused():
    net = CTRNN(2, 4, 1)
    with pytest.raises(ValueError, match="initial_states"):
        find_fixed_points(net, torch.zeros(2))
    with pytest.raises(ValueError, match="n_input=2"):
        find_fixed_points(net, torch.zeros(3), initial_states=torch.zeros(2, 4))
    from bionn.spiking import SpikingRNN

    with pytest.raises(TypeError, match="not a rate model"):
        find_fixed_points(SpikingRNN(2, 4, 1), torch.zeros(2), initial_states=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="dt"):
        find_fixed_points(lambda h: h, initial_states=torch.zeros(2, 4))


def test_three_bit_flip_flop_has_eight_memories_and_one_unstable_mode_between_neighbours():
    from bionn.tasks import FlipFlop

    torch.manual_seed(0)
    task = FlipFlop(dt=10, duration=500)
    net = CTRNN(3, 48, 3, dt=10, tau=10, activation="tanh", generator=torch.Generator().manual_seed(0))
    _train(net, task, 800, 1e-2)
    with torch.no_grad():
        test = task.sample(200, torch.Generator().manual_seed(99))
        assert float(task.accuracy(net(test.inputs)[0], test).float().mean()) > 0.95
    starts = task.sample(64, torch.Generator().manual_seed(5)).inputs
    fps = find_fixed_points(net, torch.zeros(3), sample_from=starts, n_initial=256, init_noise=0.5,
                            generator=torch.Generator().manual_seed(0))
    stable = fps.states[[i for i, s in enumerate(fps.stability) if s == "stable"]]
    assert stable.shape[0] == 8
    # each stable point holds one of the 8 memories (the readout's signs)
    w_out, b_out = (t.detach().double() for t in (net.weight_out, net.bias_out))
    codes = ((torch.tanh(stable) @ w_out.T + b_out) > 0).long() @ torch.tensor([1, 2, 4])
    assert sorted(codes.tolist()) == list(range(8))
    # between two memories that differ in one bit: a saddle with exactly one unstable mode
    pairs = [(i, j) for i in range(8) for j in range(i + 1, 8)
             if bin(int(codes[i]) ^ int(codes[j])).count("1") == 1]
    assert len(pairs) == 12
    mids = torch.stack([(stable[i] + stable[j]) / 2 for i, j in pairs])
    found = find_fixed_points(net, torch.zeros(3), initial_states=mids, unique_tol=1e-4)
    saddles = [k for k, s in enumerate(found.stability) if s == "saddle"]
    for (i, j), m in zip(pairs, mids, strict=True):
        k = min(saddles, key=lambda k: float((found.states[k] - m).norm()))
        assert int(found.n_unstable[k]) == 1
        # it lies between the two memories: nearer their midpoint than either memory
        d = found.states[k]
        assert float((d - m).norm()) < min(float((d - stable[i]).norm()), float((d - stable[j]).norm()))


def test_perceptual_decision_network_integrates_on_a_line_attractor():
    from bionn.tasks import PerceptualDecisionMaking

    # weak evidence over a long stimulus: the network must integrate
    task = PerceptualDecisionMaking(dt=20, coherences=(0.016, 0.032, 0.064, 0.128),
                                    timing={"stimulus": 1500})
    torch.manual_seed(0)
    net = CTRNN(3, 64, 3, dt=20, tau=100, activation="tanh", preact_noise=0.1,
                generator=torch.Generator().manual_seed(0))
    _train(net, task, 1500, 5e-3)
    test = task.sample(500, torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert float(task.accuracy(net(test.inputs)[0], test).float().mean()) > 0.75
    u = torch.tensor([1.0, 0.5, 0.5])  # fixation on, zero-coherence stimulus
    fps = find_fixed_points(net, u, sample_from=test.inputs[:64], n_initial=128, q_threshold=1e-3,
                            generator=torch.Generator().manual_seed(0))
    assert len(fps) >= 10
    ratios = torch.tensor([fps.linearization(i).slow_mode_ratio() for i in range(len(fps))])
    # one slow mode: the eigenvalue nearest 0 at least 10x closer than the next, nearly everywhere
    assert float((ratios >= 10).float().mean()) >= 0.9
    assert float(ratios.median()) >= 10
    # ... and the slow points lie on a line: one principal component holds their spread
    pts = fps.states - fps.states.mean(0)
    s = torch.linalg.svdvals(pts)
    print(f"line attractor: {len(fps)} slow points, {float((ratios >= 10).float().mean()):.3f} with ratio >= 10, median {float(ratios.median()):.1f}, PC1 {float(s[0] ** 2 / (s ** 2).sum()):.3f}")
    assert float(s[0] ** 2 / (s ** 2).sum()) > 0.9


def test_selection_vector_of_a_hand_built_line_attractor():
    from bionn.analysis import selection_vectors

    # W = R diag(1, 0.5, 0.2) R^-1 (non-normal): mode 0 integrates; its left eigenvector is
    # row 0 of R^-1, which is not the line direction R[:, 0]
    r = torch.tensor([[1.0, 0.4, 0.0], [0.3, 1.0, 0.5], [0.0, 0.2, 1.0]], dtype=F64)
    r_inv = torch.linalg.inv(r)
    w = r @ torch.diag(torch.tensor([1.0, 0.5, 0.2], dtype=F64)) @ r_inv
    w_in = torch.stack([r[:, 0] * 2.0, r[:, 1]], 1)  # input 0 along the line, input 1 off it
    net = _set(CTRNN(2, 3, 1, dt=10, tau=100, activation=lambda x: x), w, w_in, torch.zeros(3))
    w, w_in = net.weight_rec.detach().double(), net.weight_in.detach().double()
    sv = selection_vectors(net, torch.zeros(2), torch.zeros(2, 3))
    line = r[:, 0] / r[:, 0].norm()
    sel = r_inv[0] * r[:, 0].norm()
    for k in range(2):
        assert abs(complex(sv.eigenvalues_ct[k])) < 1e-6
        sign = torch.sign((sv.line[k] * line).sum())
        torch.testing.assert_close(sv.line[k] * sign, line, rtol=0, atol=1e-6)
        torch.testing.assert_close(sv.selection[k] * sign, sel, rtol=0, atol=1e-6)
        # dF/du = alpha W_in: input 0 moves the state along the line, input 1 hardly
        proj = (sv.selection[k] * sign) @ (0.1 * w_in)
        torch.testing.assert_close(sv.input_projection[k] * sign, proj, rtol=0, atol=1e-8)
        assert float(sv.input_alignment[k, 0]) > 5 * float(sv.input_alignment[k, 1])
