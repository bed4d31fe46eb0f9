"""bionn.analysis.population (condition PCA, targeted dimensionality reduction, task variance
and unit clusters) against synthetic populations with known structure, and its figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from bionn import CTRNN
from bionn.analysis.population import (
    TaskVariance,
    cluster_units,
    normalized_task_variance,
    pca_by_condition,
    targeted_dimensionality_reduction,
    task_variance,
)
from bionn.tasks import ContextDependentIntegration
from bionn.viz.population import plot_clusters, plot_task_variance_map, plot_trajectories

F64 = torch.float64


def _orthonormal(n: int, k: int, g: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=F64))
    return q  # (n, k)


def _cos_principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosines of the principal angles between the row spaces of a and b."""
    qa, _ = torch.linalg.qr(a.T)
    qb, _ = torch.linalg.qr(b.T)
    return torch.linalg.svdvals(qa.T @ qb)


# --------------------------------------------------------------------------- PCA
def test_pca_recovers_a_two_dimensional_latent_subspace():
    g = torch.Generator().manual_seed(0)
    n, t_steps, n_trials = 30, 20, 5
    coh = [0.5, -0.25, 0.0, 0.25, -0.5, 0.1]  # unsorted on purpose
    t = torch.linspace(0, 1, t_steps, dtype=F64)
    mix = _orthonormal(n, 2, g).T * 3.0  # (2, N)
    trials, conds = [], []
    for c in coh:
        latent = torch.stack([c * t, (1 + c) * torch.sin(math.pi * t)], 1)  # (time, 2)
        for _ in range(n_trials):
            trials.append(latent @ mix + 0.02 * torch.randn(t_steps, n, generator=g, dtype=F64))
            conds.append(c)
    rates = torch.stack(trials) + 1.0  # an offset the centring must remove
    pca = pca_by_condition(rates, torch.tensor(conds, dtype=F64), n_components=5)

    assert pca.conditions == sorted(coh)
    assert tuple(pca.trajectories.shape) == (6, t_steps, 5)
    assert tuple(pca.components.shape) == (5, n) and tuple(pca.mean.shape) == (n,)
    assert pca.counts.tolist() == [n_trials] * 6
    assert float(pca.explained_variance_ratio[:2].sum()) > 0.95
    assert float(pca.explained_variance_ratio[2:].sum()) < 0.01
    assert bool((pca.explained_variance_ratio[:-1] >= pca.explained_variance_ratio[1:]).all())
    assert float(_cos_principal_angles(pca.components[:2], mix).min()) > 0.999
    torch.testing.assert_close(pca.components @ pca.components.T, torch.eye(5, dtype=F64))
    # the condition average of c = -0.5 is the mean of its own trials, and its projection
    i = pca.conditions.index(-0.5)
    avg = rates[[k for k, c in enumerate(conds) if c == -0.5]].mean(0)
    torch.testing.assert_close(pca.averages[i], avg)
    torch.testing.assert_close(pca.trajectories[i], (avg - pca.mean) @ pca.components.T)
    torch.testing.assert_close(pca.project(rates[:2]), (rates[:2] - pca.mean) @ pca.components.T)


def test_pca_components_are_capped_and_labels_can_be_any_hashable():
    rates = torch.randn(6, 2, 10, generator=torch.Generator().manual_seed(1))
    pca = pca_by_condition(rates, ["b", "a", "b", ("x", 1), "a", ("x", 1)], n_components=50)
    assert len(pca.conditions) == 3
    assert pca.components.shape[0] == 6  # 3 conditions x 2 steps = 6 samples
    assert math.isclose(float(pca.explained_variance_ratio.sum()), 1.0, rel_tol=1e-9)


# --------------------------------------------------------------------------- TDR
def _tdr_data(seed: int = 0, n: int = 40, t_steps: int = 10, n_trials: int = 400):
    g = torch.Generator().manual_seed(seed)
    cohs = torch.tensor([-0.5, -0.15, -0.05, 0.05, 0.15, 0.5], dtype=F64)
    reg = {
        "choice": torch.randint(2, (n_trials,), generator=g).to(F64) * 2 - 1,
        "motion": cohs[torch.randint(6, (n_trials,), generator=g)],
        "colour": cohs[torch.randint(6, (n_trials,), generator=g)],
        "context": torch.randint(2, (n_trials,), generator=g).to(F64) * 2 - 1,
    }
    a = torch.randn(4, n, generator=g, dtype=F64)  # returned times each unit's scale
    a[1] = 0.8 * a[0] + 0.6 * a[1]  # motion axis far from orthogonal to choice
    t = torch.arange(t_steps, dtype=F64)
    peaks = torch.tensor([8.0, 3.0, 5.0, 1.0], dtype=F64)
    profile = torch.exp(-0.5 * ((t[None] - peaks[:, None]) / 1.5) ** 2)  # (4, time)
    gains = torch.tensor([1.0, 4.0, 4.0, 1.0], dtype=F64)
    x = torch.stack(list(reg.values()), 1) * gains  # (trials, 4)
    signal = torch.einsum("kv,vt,vn->ktn", x, profile, a)
    scale = torch.rand(n, generator=g, dtype=F64) * 4 + 0.5  # z-scoring matters
    rates = (signal + 0.3 * torch.randn(n_trials, t_steps, n, generator=g, dtype=F64)) * scale
    rates = rates + torch.randn(n, generator=g, dtype=F64) * 5
    return rates, reg, a * scale, peaks.long()


def test_tdr_recovers_the_encoding_axes_in_order():
    rates, reg, a, peaks = _tdr_data()
    tdr = targeted_dimensionality_reduction(rates, reg, n_pcs=12)
    n_trials, t_steps, n = rates.shape
    assert tdr.names == ["choice", "motion", "colour", "context"]
    assert tuple(tdr.axes.shape) == (4, n)
    assert tuple(tdr.coefficients.shape) == (4, t_steps, n)
    assert tuple(tdr.projections.shape) == (n_trials, t_steps, 4)
    torch.testing.assert_close(tdr.axes @ tdr.axes.T, torch.eye(4, dtype=F64))
    assert tdr.t_max.tolist() == peaks.tolist()
    # in z-scored units the encoding vector of regressor v is (a_v * scale) / std; QR in order
    std = rates.reshape(-1, n).std(0, correction=0)
    expected, _ = torch.linalg.qr((a / std).T)
    cos = (tdr.axes * expected.T).sum(1).abs()
    assert float(cos.min()) > 0.95, cos
    # the first axis is the choice vector itself; the second is not the raw motion vector
    raw = a / std
    assert float(torch.nn.functional.cosine_similarity(tdr.axes[0], raw[0], dim=0)) > 0.95
    c01 = float(torch.nn.functional.cosine_similarity(raw[0], raw[1], dim=0))
    c11 = float(torch.nn.functional.cosine_similarity(tdr.axes[1], raw[1], dim=0))
    assert c01 > 0.5 and c11 < 0.9 and abs(c11 - math.sqrt(1 - c01**2)) < 0.03
    # denoised coefficients lie in the span of the kept PCs; projections are z @ axes
    assert tuple(tdr.pcs.shape) == (12, n)
    d = tdr.denoised
    torch.testing.assert_close(d, (d @ tdr.pcs.T) @ tdr.pcs)
    torch.testing.assert_close(tdr.project(rates), tdr.projections)
    # the choice projection separates the choices late in the trial
    p = tdr.projections[:, 8, 0]
    assert float(p[reg["choice"] > 0].mean()) > float(p[reg["choice"] < 0].mean()) + 1


def test_tdr_axis_order_sets_the_orthogonalization():
    rates, reg, a, _ = _tdr_data(seed=2)
    swapped = {k: reg[k] for k in ("motion", "choice", "colour", "context")}
    tdr = targeted_dimensionality_reduction(rates, swapped, n_pcs=None)
    raw = a / rates.reshape(-1, rates.shape[2]).std(0, correction=0)
    assert float(torch.nn.functional.cosine_similarity(tdr.axes[0], raw[1], dim=0)) > 0.95
    assert torch.equal(tdr.denoised, tdr.coefficients)


# --------------------------------------------------------------------------- task variance
def _three_task_rates(seed: int = 0):
    """Units 0-7 vary only in task a, 8-15 only in task b, 16-23 in tasks a and c (equally);
    units 24-25 are silent. Different per-unit scales, so only the normalized vectors group."""
    g = torch.Generator().manual_seed(seed)
    n_trials, t_steps = 30, 12
    groups = {"a": list(range(8)) + list(range(16, 24)), "b": list(range(8, 16)),
              "c": list(range(16, 24))}
    scale = torch.rand(26, generator=g, dtype=F64) * 3 + 0.5
    rates = {}
    for task, units in groups.items():
        r = 0.5 + 1e-4 * torch.randn(n_trials, t_steps, 26, generator=g, dtype=F64)
        x = torch.linspace(-1, 1, n_trials, dtype=F64)[:, None, None]
        x = x + 0.05 * torch.randn(n_trials, 1, len(units), generator=g, dtype=F64)
        wave = torch.sin(torch.linspace(0.3, 3.0, t_steps, dtype=F64))[None, :, None]
        r[:, :, units] += x * wave * scale[units]
        r[:, :, 24:] = 0.2
        rates[task] = r
    truth = [0] * 8 + [1] * 8 + [2] * 8
    return rates, truth


def test_task_variance_is_the_time_averaged_variance_across_trials():
    g = torch.Generator().manual_seed(3)
    r = torch.randn(7, 5, 3, generator=g, dtype=F64)
    tv = task_variance({"x": r, "y": 2 * r})
    expected = r.var(0, correction=0).mean(0)
    torch.testing.assert_close(tv.variance[:, 0], expected)
    torch.testing.assert_close(tv.variance[:, 1], 4 * expected)
    # a mask: per step over the valid trials; steps with < 2 valid trials are skipped
    mask = torch.ones(7, 5)
    mask[:4, 1] = 0
    mask[1:, 4] = 0
    tvm = task_variance({"x": r}, masks={"x": mask}).variance[:, 0]
    per_step = [r[mask[:, s] > 0, s].var(0, correction=0) for s in (0, 1, 2, 3)]
    torch.testing.assert_close(tvm, torch.stack(per_step).mean(0))


def test_clustering_finds_the_three_known_groups():
    from sklearn.metrics import adjusted_rand_score

    rates, truth = _three_task_rates()
    tv = task_variance(rates)
    assert tv.task_names == ["a", "b", "c"]
    norm, kept = normalized_task_variance(tv)
    assert kept.tolist() == list(range(24))  # the silent units are dropped
    torch.testing.assert_close(norm.max(1).values, torch.ones(24, dtype=F64))
    cl = cluster_units(tv, range(2, 31), seed=0)
    assert cl.k == 3
    assert sorted(cl.silhouette) == list(range(2, 24))  # bounded by n_units - 1
    assert cl.units.tolist() == list(range(24))
    assert adjusted_rand_score(truth, cl.labels.numpy()) == 1.0
    # the order lists units cluster by cluster; clusters numbered by preferred task
    assert sorted(cl.order.tolist()) == list(range(24))
    assert bool((cl.labels[cl.order].diff() >= 0).all())
    assert cl.labels[0] == 0 and cl.labels[8] == 1
    assert cl.silhouette[3] > max(s for k, s in cl.silhouette.items() if k != 3)


def test_cluster_k_range_is_bounded_by_the_number_of_units():
    feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.5, 0.5]])
    cl = cluster_units(feats, range(2, 31))
    assert sorted(cl.silhouette) == [2, 3, 4]
    with pytest.raises(ValueError, match="k_range"):
        cluster_units(feats, range(5, 9))


def test_task_variance_runs_a_model_on_trial_batches():
    task = ContextDependentIntegration(dt=20, timing={"stimulus": (200.0, 300.0)})
    batches = {"cdi": task.sample(12, torch.Generator().manual_seed(0)),
               "cdi_2": task.sample(9, torch.Generator().manual_seed(1))}
    torch.manual_seed(0)
    net = CTRNN(7, 16, 3, dt=20, tau=100, preact_noise=0.5)
    tv = task_variance(net, batches)
    assert tuple(tv.variance.shape) == (16, 2)
    torch.testing.assert_close(task_variance(net, batches).variance, tv.variance)  # noise off
    assert net.preact_noise == 0.5  # the model is unchanged
    net0 = CTRNN(7, 16, 3, dt=20, tau=100)
    net0.load_state_dict(net.state_dict())
    rates = {k: net0(b.inputs)[1] for k, b in batches.items()}
    manual = task_variance(rates, masks={k: b.mask for k, b in batches.items()})
    torch.testing.assert_close(tv.variance, manual.variance, rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------- bad input
def test_bad_input_is_refused_naming_the_argument():
    r = torch.zeros(4, 3, 5)
    with pytest.raises(ValueError, match="rates must be"):
        pca_by_condition(torch.zeros(4, 5), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="conditions must have one value per trial"):
        pca_by_condition(r, [0, 1, 0])
    with pytest.raises(ValueError, match="n_components"):
        pca_by_condition(r, [0, 1, 0, 1], n_components=0)
    with pytest.raises(ValueError, match="non-finite"):
        pca_by_condition(torch.full((2, 2, 2), float("nan")), [0, 1])
    with pytest.raises(ValueError, match=r"regressors\['b'\] must have one value per trial"):
        targeted_dimensionality_reduction(r, {"a": [1, -1, 1, -1], "b": [1, 2]})
    with pytest.raises(ValueError, match="linearly dependent"):
        targeted_dimensionality_reduction(r, {"a": [1, -1, 1, -1], "b": [2, 2, 2, 2]})
    with pytest.raises(ValueError, match="n_pcs"):
        targeted_dimensionality_reduction(r, {"a": [1, -1, 1, -1]}, n_pcs=0)
    with pytest.raises(ValueError, match=r"rates\['b'\] has N=4"):
        task_variance({"a": r, "b": torch.zeros(4, 3, 4)})
    with pytest.raises(ValueError, match=r"masks\['a'\] must be"):
        task_variance({"a": r}, masks={"a": torch.ones(4, 2)})
    with pytest.raises(ValueError, match=r"rates\['a'\] must be"):
        task_variance({"a": torch.zeros(3, 5)})
    with pytest.raises(ValueError, match="tv must be"):
        cluster_units(torch.zeros(5))
    with pytest.raises(ValueError, match="dims"):
        plot_trajectories(np.zeros((2, 3, 4)), [0, 1], dims=4)
    with pytest.raises(ValueError, match="conditions must have one label per trajectory"):
        plot_trajectories(np.zeros((2, 3, 4)), [0, 1, 2])
    with pytest.raises(ValueError, match="task_names"):
        plot_task_variance_map(np.zeros((3, 2)), ["a"])
    with pytest.raises(ValueError, match="order"):
        plot_task_variance_map(np.zeros((3, 2)), ["a", "b"], order=[0, 0, 1])


# --------------------------------------------------------------------------- figures
def test_trajectory_figures(tmp_path):
    traj = np.random.default_rng(0).normal(size=(4, 10, 3))
    fig = plot_trajectories(traj, [-0.5, -0.1, 0.1, 0.5], [0.5, 0.25, 0.1], path=tmp_path / "t.png")
    assert isinstance(fig, Figure) and (tmp_path / "t.png").stat().st_size > 1000
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("PC 1 (50.0 %)", "PC 2 (25.0 %)")
    assert len(ax.lines) == 4 and len(ax.collections) == 1  # one line each, start dots
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "condition"  # the colour bar
    fig3 = plot_trajectories(traj, ["a", "b", "c", "d"], dims=3, axis_labels=["x", "y", "z"])
    ax3 = fig3.axes[0]
    assert ax3.get_zlabel() == "z" and len(ax3.lines) == 4
    assert [t.get_text() for t in ax3.get_legend().get_texts()] == ["a", "b", "c", "d"]


def test_task_variance_map_and_cluster_figures(tmp_path):
    rates, _ = _three_task_rates()
    cl = cluster_units(task_variance(rates), range(2, 8))
    fig = cl.plot_map(["a", "b", "c"], path=tmp_path / "map.png")
    assert (tmp_path / "map.png").exists()
    ax = fig.axes[0]
    assert len(ax.lines) == cl.k - 1  # boundaries between the clusters
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    assert ax.images[0].get_array().shape == (3, 24)
    fig2 = cl.plot(["a", "b", "c"], path=tmp_path / "clusters.png")
    ax1, ax2 = fig2.axes[:2]
    assert ax1.get_xlabel() == "number of clusters k" and ax1.get_ylabel() == "silhouette score"
    assert list(ax1.lines[1].get_xdata()) == [cl.k]  # the chosen k marked
    assert ax2.images[0].get_array().shape == (3, 3)
    same = plot_task_variance_map(cl.features, ["a", "b", "c"], cl.order, cl.labels)
    assert np.array_equal(same.axes[0].images[0].get_array(), ax.images[0].get_array())
    with pytest.raises(ValueError, match="k=9"):
        plot_clusters(cl.silhouette, 9, cl.features, cl.labels)


# --------------------------------------------------------------------------- end to end
def test_ctrnn_on_context_dependent_integration_end_to_end():
    task = ContextDependentIntegration(dt=20, timing={"stimulus": 200.0, "decision": 100.0})
    batch = task.sample(48, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    net = CTRNN(7, 24, 3, dt=20, tau=100)
    with torch.no_grad():
        _, rates = net(batch.inputs)
    n_trials, t_steps, _ = rates.shape
    ctx = batch.info["context"]
    conds = list(zip(batch.info["coherence_motion"].tolist(), ctx.tolist(), strict=True))
    pca = pca_by_condition(rates, conds, n_components=4)
    c = len(set(conds))
    assert tuple(pca.trajectories.shape) == (c, t_steps, 4)
    assert tuple(pca.components.shape) == (4, 24)
    assert isinstance(pca.plot(), Figure)
    reg = {"choice": (3 - 2 * batch.labels).double(), "motion": batch.info["coherence_motion"],
           "colour": batch.info["coherence_color"], "context": 1 - 2 * ctx.double()}
    tdr = targeted_dimensionality_reduction(rates, reg, n_pcs=6)
    assert tuple(tdr.axes.shape) == (4, 24)
    assert tuple(tdr.projections.shape) == (n_trials, t_steps, 4)
    assert tuple(tdr.coefficients.shape) == (4, t_steps, 24)
    torch.testing.assert_close(tdr.axes @ tdr.axes.T, torch.eye(4, dtype=F64))
    assert isinstance(TaskVariance(torch.ones(24, 2), ["a", "b"]).normalized()[0], torch.Tensor)
