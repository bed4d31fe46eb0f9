"""Synaptic-diversity transforms (bionn.plasticity.diversity): each rule against its
formula, the optimizer hooks, buffers, configs, ``bionn run``, CTRNN, and the reference
package ``bio_transformations`` where the rules coincide."""

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from bionn.experiment.config import ConfigError
from bionn.functional import philox
from bionn.plasticity import BioConverter, SynapticDiversity, SynapticDiversityConfig, _fused
from bionn.plasticity.diversity import (
    CrystallizationConfig,
    FuzzyLearningRateConfig,
    VolumeLearningRateConfig,
    WeightSplitting,
    crystallization_mask,
    fuzzy_factors,
    rejuvenation_mask,
    volume_factors,
)

ROOT = Path(__file__).resolve().parents[1]


def _mlp(seed: int = 0, hidden: int = 6) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 3))


def _grads(net: nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()


# ------------------------------------------------------------------------------ fuzzy LR
def test_uniform_fuzzy_factors_are_the_reference_draw():
    w = torch.zeros(4, 7)
    f = fuzzy_factors(w, generator=torch.Generator().manual_seed(3))
    u = torch.rand(4, 7, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(f, 1 + (2 * u - 1) * 0.16)


@pytest.mark.parametrize("dist", ["uniform", "normal", "lognormal", "gamma", "beta"])
def test_fuzzy_distributions_have_mean_one_and_spread_nu(dist):
    cfg = FuzzyLearningRateConfig(distribution=dist, nu=0.1)
    f = fuzzy_factors(torch.zeros(200, 200), cfg, generator=torch.Generator().manual_seed(0))
    assert abs(f.mean().item() - 1) < 0.01  # the reference's gamma averages 2
    assert 0.5 <= f.min() and f.max() <= 2.0
    # std nu (normal, lognormal, gamma), nu / sqrt(3) (uniform on [1 - nu, 1 + nu]),
    # nu / sqrt(2/nu + 1) (beta: 1 + (2 Beta(1/nu, 1/nu) - 1) nu)
    std = {"uniform": 0.1 / math.sqrt(3), "beta": 0.1 / math.sqrt(2 / 0.1 + 1)}.get(dist, 0.1)
    assert f.std().item() == pytest.approx(std, rel=0.05)


def test_fuzzy_baseline_layer_and_weight_adaptive():
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(fuzzy_factors(torch.zeros(3, 3), FuzzyLearningRateConfig(
        distribution="baseline")), torch.ones(3, 3))
    la = FuzzyLearningRateConfig(distribution="layer_adaptive")
    deep = fuzzy_factors(torch.zeros(100, 100), la, generator=gen, layer_index=3, n_layers=4)
    assert (deep - 1).abs().max() <= 0.16 * (1 - 0.5 * 3 / 4) + 1e-6
    w = torch.cat([torch.full((1, 1000), 0.01), torch.full((1, 1000), 10.0)])
    wa = fuzzy_factors(w, FuzzyLearningRateConfig(distribution="weight_adaptive"), generator=gen)
    # small weights: spread 1.5 nu; large ones: 0.5 nu
    assert (wa[0] - 1).abs().max() > 0.16 and (wa[1] - 1).abs().max() <= 0.08 + 1e-6


def test_fuzzy_learning_rates_scale_the_gradient_by_the_stored_factor():
    net = _mlp()
    bio = BioConverter(fuzzy_learning_rates=True).convert(net, inplace=True)
    _grads(net)
    raw = [p.grad.clone() for p in bio.parameters()]
    bio.apply_gradient_transforms()
    for p, g, t in zip(bio.parameters(), raw, bio.targets, strict=True):
        torch.testing.assert_close(p.grad, g * t.factor)


# ------------------------------------------------------------------------------ crystallisation
def test_crystallization_mask_formula():
    w = torch.tensor([[1.0, 1.0, -2.0, 0.0, 0.5]])
    g = torch.tensor([[1e-6, 0.1, -1e-5, 0.3, 5.0]])
    # |g|/|w|: 1e-6 (< 4.5e-5), 0.1, 5e-6 (<), inf, 10; mean|w| = 0.9: only 5.0 exceeds it
    assert crystallization_mask(w, g).tolist() == [[True, False, True, False, True]]


def test_crystallization_dampens_the_factor_exactly_and_cumulatively():
    layer = nn.Linear(5, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 1.0, -2.0, 0.0, 0.5]]))
    bio = BioConverter(crystallization=True).convert(layer, inplace=True)
    g = torch.tensor([[1e-6, 0.1, -1e-5, 0.3, 5.0]])
    layer.weight.grad = g.clone()
    bio.apply_gradient_transforms()
    f = layer.synaptic_state.weight_lr_factor
    torch.testing.assert_close(f, torch.tensor([[0.6, 1, 0.6, 1, 0.6]]))
    torch.testing.assert_close(layer.weight.grad, g * f)
    layer.weight.grad = g.clone()
    bio.steps = 1  # as after one optimizer step
    bio.apply_gradient_transforms()
    torch.testing.assert_close(f, torch.tensor([[0.36, 1, 0.36, 1, 0.36]]))


def test_crystallization_follows_its_schedule():
    layer = nn.Linear(2, 1, bias=False)
    bio = BioConverter(crystallization={"every": 3}).convert(layer, inplace=True)
    opt = torch.optim.SGD(layer.parameters(), lr=0.0)
    bio.attach(opt)
    hits = []
    for _ in range(7):
        layer.weight.grad = torch.full((1, 2), 1e3)  # |g| > mean|w|: always crystallises
        opt.step()
        hits.append(layer.synaptic_state.weight_lr_factor[0, 0].item())
    assert hits == pytest.approx([0.6, 0.6, 0.6, 0.36, 0.36, 0.36, 0.216])


# ------------------------------------------------------------------------------ volume LR
def test_volume_factors_formula():
    w = torch.tensor([0.0, 0.5, -1.0, 3.0])
    xi = torch.tensor([0.0, 1.0, -2.0, -10.0])
    mu = 0.1 * torch.exp(-2.0 * w.abs() / (w.abs() + 1))
    torch.testing.assert_close(volume_factors(w, noise=xi), (mu + 0.2 * mu * xi).abs())


def _noise(backend: str, leaves: list[torch.Tensor]) -> list[torch.Tensor]:
    """The standard normals the gradient pass of ``backend`` draws for ``leaves`` from the
    global generator's current state (targets in order, all holding gradients)."""
    if backend == "torch":
        return [torch.empty_like(w).normal_() for w in leaves]
    key = philox.draw_key()
    return [philox.normal(w.numel(), key, i).view_as(w) for i, w in enumerate(leaves)]


def _skip_without_compiler(backend: str) -> None:
    if backend == "cpp" and not _fused.available():
        pytest.skip("no C++ compiler: the compiled gradient pass cannot be built")


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_volume_dependent_lr_through_the_optimizer_matches_the_formula(backend):
    _skip_without_compiler(backend)
    net = _mlp()
    bio = BioConverter(volume_dependent_lr={"base_lr": 0.5}, backend=backend).convert(
        net, inplace=True)
    _grads(net)
    raw = [(p.detach().clone(), p.grad.clone()) for p in bio.parameters()]
    torch.manual_seed(7)
    bio.apply_gradient_transforms()
    assert bio.backend == backend
    torch.manual_seed(7)
    cfg = VolumeLearningRateConfig(base_lr=0.5)
    noise = _noise(backend, [w for w, _ in raw])
    for p, (w, g), xi in zip(bio.parameters(), raw, noise, strict=True):
        torch.testing.assert_close(p.grad, g * volume_factors(w, cfg, noise=xi))


def test_volume_factor_statistics():
    w = torch.full((200, 200), 0.1)
    f = volume_factors(w)
    mu = 0.1 * math.exp(-2 * 0.1 / 1.1)
    assert f.mean().item() == pytest.approx(mu, rel=0.01)
    assert f.std().item() == pytest.approx(0.2 * mu, rel=0.03)


# ------------------------------------------------------------------------------ rejuvenation
def test_rejuvenation_mask_formula():
    w = torch.tensor([0.01, -0.05, 0.2, -0.8])
    xi = torch.tensor([0.1, -1.0, 2.0, 9.0])
    # threshold |xi| * max|W| / dre = |xi| * 0.1
    assert rejuvenation_mask(w, 8.0, noise=xi).tolist() == [True, True, False, True]


def test_rejuvenation_replaces_exactly_the_weak_weights():
    layer = nn.Linear(20, 10)
    bias = layer.bias.detach().clone()
    bio = BioConverter(rejuvenation={"every": 1}).convert(layer, inplace=True)
    w0 = layer.weight.detach().clone()
    torch.manual_seed(11)
    n = bio.rejuvenate()
    torch.manual_seed(11)
    top = w0.abs().max()
    weak = w0.abs() < torch.randn_like(w0).abs() * (top / 8.0 + 1e-13)
    new = (torch.rand_like(w0) * 2 - 1) * top
    assert n == int(weak.sum()) > 0
    torch.testing.assert_close(layer.weight.detach(), torch.where(weak, new, w0))
    assert layer.weight.detach().abs().max() <= top
    assert torch.equal(layer.bias.detach(), bias)  # include_bias=False


def test_rejuvenation_runs_every_k_steps_after_the_step():
    net = _mlp()
    bio = BioConverter(rejuvenation={"every": 2}).convert(net, inplace=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)  # only rejuvenation moves weights
    bio.attach(opt)
    w = net[0].weight.detach().clone()
    _grads(net)
    opt.step()
    assert torch.equal(net[0].weight, w)
    opt.step()
    assert not torch.equal(net[0].weight, w)


# ------------------------------------------------------------------------------ splitting
def test_weight_splitting_linear_output_is_the_group_sum():
    net = _mlp(hidden=6)
    ref = copy.deepcopy(net)
    BioConverter(weight_splitting={"gamma": 3}).convert(net, inplace=True)
    x = torch.randn(4, 5)
    h = ref[0](x)
    expected = h.view(4, 2, 3).sum(2).repeat_interleave(3, 1)
    torch.testing.assert_close(net[0](x), expected)
    # the output layer (3 units) is not split
    torch.testing.assert_close(net[4](torch.ones(2, 6)), ref[4](torch.ones(2, 6)))
    assert net(x).shape == (4, 3)


def test_weight_splitting_conv_parametrization_equals_the_summed_outputs():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, 3)
    plain = copy.deepcopy(conv)
    model = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(4, 3, 1))
    BioConverter(weight_splitting={"gamma": 2}).convert(model, inplace=True)
    assert parametrize.is_parametrized(conv, "weight")
    x = torch.randn(3, 2, 7, 7)
    expected = WeightSplitting(2)(plain, (x,), plain(x))
    torch.testing.assert_close(conv(x), expected)
    assert torch.equal(expected[:, 0], expected[:, 1])
    # a neuron pair's Gamma synapses receive the same gradient
    conv(x).square().sum().backward()
    g = conv.parametrizations.weight.original.grad
    torch.testing.assert_close(g[0], g[1])


def test_weight_splitting_grouped_conv_sums_the_outputs():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 3, groups=2)
    plain = copy.deepcopy(conv)
    BioConverter(weight_splitting={"gamma": 2, "skip_output": False}).convert(conv, inplace=True)
    assert not parametrize.is_parametrized(conv, "weight")
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(conv(x), WeightSplitting(2)(plain, (x,), plain(x)))


def test_weight_splitting_checks_the_split_dimension():
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"layer '0' \(Linear\).*out_features=5.*gamma=2"):
        BioConverter(weight_splitting={"gamma": 2}).convert(net, inplace=True)
    assert not hasattr(net[0], "synaptic_state")  # nothing changed
    conv = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Conv2d(3, 2, 1))
    with pytest.raises(ValueError, match="out_channels=3"):
        BioConverter(weight_splitting={"gamma": 2}).convert(conv, inplace=True)


def test_weight_splitting_with_an_activation_uses_the_output_hook():
    net = _mlp(hidden=4)
    ref = copy.deepcopy(net)
    BioConverter(weight_splitting={"gamma": 2, "activation": "tanh"}).convert(net, inplace=True)
    x = torch.randn(3, 5)
    expected = torch.tanh(ref[0](x)).view(3, 2, 2).sum(2).repeat_interleave(2, 1)
    torch.testing.assert_close(net[0](x), expected)


# ------------------------------------------------------------------------------ Dale
def test_dale_holds_after_training_steps_linear_and_conv():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU(),
                          nn.Flatten(), nn.Linear(6 * 4 * 4, 5))
    bio = BioConverter(dale={"skip_input": True}).convert(model, inplace=True)
    assert not parametrize.is_parametrized(model[0], "weight")
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    bio.attach(opt)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 1, 8, 8)).square().mean().backward()
        opt.step()
    conv_sign = model[2].parametrizations.weight[0].sign
    w = model[2].weight
    assert ((w * conv_sign.view(1, -1, 1, 1)) >= 0).all()
    lin_sign = model[5].parametrizations.weight[0].sign
    assert ((model[5].weight * lin_sign) >= 0).all()


# ------------------------------------------------------------------------------ API
ALL = {"fuzzy_learning_rates": True, "crystallization": True, "volume_dependent_lr": True,
       "rejuvenation": {"every": 2}, "weight_splitting": {"gamma": 2}, "dale": True,
       "include_bias": True}


def test_factors_are_buffers_and_survive_a_state_dict_round_trip():
    net = _mlp()
    n_params = len(list(net.parameters()))
    bio = BioConverter(ALL).convert(net, inplace=True)
    assert len(list(net.parameters())) == n_params
    names = {n for n, _ in net.named_parameters()}
    assert not any("lr_factor" in n for n in names)
    sd = net.state_dict()
    assert "0.synaptic_state.weight_lr_factor" in sd and "0.synaptic_state.bias_lr_factor" in sd
    with torch.no_grad():
        for t in bio.targets:
            t.factor.mul_(0.5)
    other = _mlp(seed=5)
    BioConverter(ALL, seed=9).convert(other, inplace=True)
    other.load_state_dict(net.state_dict())
    x = torch.randn(2, 5)
    torch.testing.assert_close(other(x), net(x))
    torch.testing.assert_close(other[2].synaptic_state.weight_lr_factor,
                               net[2].synaptic_state.weight_lr_factor)


def test_optimizer_hooks_equal_the_manual_calls():
    a = _mlp()
    b = copy.deepcopy(a)
    bio_a = BioConverter(ALL).convert(a, inplace=True)
    bio_b = BioConverter(ALL).convert(b, inplace=True)
    opt_a = torch.optim.SGD(a.parameters(), lr=0.5, momentum=0.9)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.5, momentum=0.9)
    bio_a.attach(opt_a)
    for step in range(5):
        torch.manual_seed(100 + step)
        _grads(a, step)
        opt_a.step()
        torch.manual_seed(100 + step)
        _grads(b, step)
        bio_b.apply_gradient_transforms()
        opt_b.step()
        bio_b.after_step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)
    assert bio_a.steps == bio_b.steps == 5
    bio_a.detach()
    _grads(a)
    opt_a.step()
    assert bio_a.steps == 5


def test_convert_as_a_copy_and_the_report():
    net = _mlp()
    bio = BioConverter(ALL).convert(net, inplace=False)
    assert bio.model is not net and not hasattr(net[0], "synaptic_state")
    text = str(bio.report)
    assert "weight splitting gamma=2" in text and "Dale" in text and "fuzzy learning rates" in text
    assert isinstance(bio, SynapticDiversity) and "6 tensors" in repr(bio)
    with pytest.raises(ValueError, match="already converted"):
        BioConverter(ALL).convert(bio.model, inplace=True)


def test_attach_refuses_an_optimizer_without_the_weights():
    net = _mlp()
    bio = BioConverter(fuzzy_learning_rates=True).convert(net, inplace=True)
    with pytest.raises(ValueError, match="does not hold"):
        bio.attach(torch.optim.SGD(net[0].parameters(), lr=0.1))


def test_regularizer_is_differentiable_on_the_weights():
    net = _mlp()
    bio = BioConverter(dale=True).convert(net, inplace=True)
    reg = bio.regularizer()
    assert reg.requires_grad
    expected = sum(m.weight.abs().sum() for m in net if isinstance(m, nn.Linear))
    torch.testing.assert_close(reg, expected)
    bio.regularizer(p=2).backward()
    assert net[0].weight.grad is not None
    with pytest.raises(ValueError, match="p must be"):
        bio.regularizer(p=3)


def test_bias_transforms_only_when_configured():
    net = _mlp()
    bio = BioConverter(fuzzy_learning_rates=True).convert(net, inplace=True)
    assert {t.name for t in bio.targets} == {"weight"}
    _grads(net)
    b = net[0].bias.grad.clone()
    bio.apply_gradient_transforms()
    assert torch.equal(net[0].bias.grad, b)


# ------------------------------------------------------------------------------ config
@pytest.mark.parametrize("cfg, words", [
    ({"fuzzy_learning_rates": {"distribution": "cauchy"}},
     ["fuzzy_learning_rates.distribution", "cauchy", "uniform", "lognormal"]),
    ({"crystallization": {"dampening": 1.5}}, ["crystallization.dampening", "1.5"]),
    ({"rejuvenation": {"dre": 8, "period": 3}}, ["rejuvenation.period", "unknown key", "every"]),
    ({"weight_splitting": {"gamma": 1}}, ["weight_splitting.gamma", "greater than or equal"]),
    ({"spine_turnover": True}, ["spine_turnover", "unknown key", "rejuvenation"]),
])
def test_bad_configs_name_the_field_value_and_allowed(cfg, words):
    with pytest.raises(ConfigError) as err:
        BioConverter(cfg)
    for w in words:
        assert w in str(err.value)


def test_config_switches():
    cfg = SynapticDiversityConfig(fuzzy_learning_rates=True, dale=False)
    assert cfg.enabled == ["fuzzy_learning_rates"] and cfg.dale is None
    assert cfg.fuzzy_learning_rates.nu == 0.16
    assert CrystallizationConfig().threshold == 4.5e-5


# ------------------------------------------------------------------------------ bionn run
def test_bionn_run_with_the_section(tmp_path, capsys):
    from bionn.experiment.cli import main

    rc = main(["run", str(ROOT / "configs/sd_digits_mlp.yaml"), "training.steps=4",
               "training.epochs=1", "--out", str(tmp_path / "run"), "--quiet"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 4
    assert set(summary["synaptic_diversity"]) == {
        "fuzzy_learning_rates", "crystallization", "volume_dependent_lr", "rejuvenation",
        "weight_splitting", "dale"}
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert any(k.endswith("synaptic_state.weight_lr_factor") for k in ckpt["model"])


@pytest.mark.parametrize("override, words", [
    ("synaptic_diversity.rejuvenation.every=0", ["synaptic_diversity.rejuvenation.every"]),
    ("synaptic_diversity.fuzzy_learning_rates.distribution=x",
     ["synaptic_diversity.fuzzy_learning_rates.distribution", "'x'", "weight_adaptive"]),
    ("synaptic_diversity.weight_splitting.gamma=3", ["synaptic_diversity", "'net.0'",
                                                     "out_features=100", "gamma=3"]),
])
def test_bionn_run_rejects_a_bad_section_before_any_folder(override, words, tmp_path, capsys):
    from bionn.experiment.cli import main

    out = tmp_path / "run"
    assert main(["run", str(ROOT / "configs/sd_digits_mlp.yaml"), override, "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err, (w, err)
    assert not out.exists()


@pytest.mark.parametrize("name", ["sd_digits_mlp", "sd_digits_lenet", "sd_mnist1d_mlp",
                                  "sd_mnist1d_conv"])
def test_shipped_sd_configs_validate(name):
    from bionn.experiment.classify import load_classify_config

    cfg = load_classify_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.synaptic_diversity is not None and len(cfg.synaptic_diversity.enabled) == 6


def test_ablation_example_smoke(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_sd_ablation", ROOT / "examples" / "synaptic_diversity_ablation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    threads = torch.get_num_threads()
    try:
        res = mod.main(["--configs", "sd_digits_mlp", "--seeds", "0", "--epochs", "1",
                        "--steps", "2", "--variants", "baseline,all", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    assert set(res["sd_digits_mlp"]) == {"baseline", "all"}
    assert set(mod.variants({"dale": True, "rejuvenation": True, "volume_dependent_lr": {}})) == {
        "baseline", "dale", "rejuvenation", "volume_dependent_lr", "all",
        "rejuvenation_small", "volume_dependent_lr_x10"}
    assert (tmp_path / "learning_curves.png").stat().st_size > 0
    assert "| sd_digits_mlp | baseline |" in (tmp_path / "table.md").read_text()


# ------------------------------------------------------------------------------ CTRNN
def test_ctrnn_gradient_transforms_reach_the_parametrized_leaves():
    from bionn.rate import CTRNN

    torch.manual_seed(0)
    net = CTRNN(3, 20, 2, e_fraction=0.8)
    bio = BioConverter(fuzzy_learning_rates=True, crystallization=True, volume_dependent_lr=True,
                       rejuvenation={"every": 2}).convert(net, inplace=True)
    leaves = set(map(id, bio.parameters()))
    assert id(net.parametrizations.weight_rec.original) in leaves
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    bio.attach(opt)
    for _ in range(4):
        opt.zero_grad()
        out, _ = net(torch.randn(4, 10, 3))
        out.square().mean().backward()
        opt.step()
    assert bio.steps == 4
    assert (net.weight_rec[:, 16:] <= 0).all() and (net.weight_rec[:, :16] >= 0).all()
    assert "weight_rec_lr_factor" in dict(net.synaptic_state.named_buffers())
    with pytest.raises(ValueError, match=r"CTRNN\(e_fraction"):
        BioConverter(dale=True).convert(CTRNN(3, 20, 2), inplace=True)


# ------------------------------------------------------------------------------ reference
def _reference():
    return pytest.importorskip("bio_transformations",
                               reason="pytorch-bio-transformations is not installed")


def test_fuzzy_and_crystallize_match_the_reference():
    _reference()
    from bio_transformations import BioConverter as RefConverter

    torch.manual_seed(0)
    ref = RefConverter().convert(nn.Sequential(nn.Linear(30, 20)))
    ours = copy.deepcopy(ref)[0]
    del ours.bio_mod
    bio = BioConverter(fuzzy_learning_rates=True, crystallization=True).convert(ours, inplace=True)
    with torch.no_grad():
        ours.synaptic_state.weight_lr_factor.copy_(ref[0].bio_mod.fuzzy_learning_rate_parameters)
    torch.manual_seed(1)
    g = torch.randn(20, 30) * torch.logspace(-7, 1, 600).view(20, 30)  # all regimes
    ref[0].weight.grad = g.clone()
    ours.weight.grad = g.clone()
    ref.crystallize()
    ref.fuzzy_learning_rates()
    bio.apply_gradient_transforms()
    torch.testing.assert_close(ours.synaptic_state.weight_lr_factor,
                               ref[0].bio_mod.fuzzy_learning_rate_parameters.detach())
    torch.testing.assert_close(ours.weight.grad, ref[0].weight.grad)
    assert (ours.synaptic_state.weight_lr_factor < 0.6).any()  # crystallisation fired


def test_volume_dependent_lr_matches_the_reference_draw():
    _reference()
    from bio_transformations import BioConverter as RefConverter

    torch.manual_seed(0)
    ref = RefConverter().convert(nn.Sequential(nn.Linear(30, 20)))
    w = ref[0].weight.detach().clone()
    g = torch.randn(20, 30)
    ref[0].weight.grad = g.clone()
    torch.manual_seed(5)
    ref.volume_dependent_lr()
    torch.manual_seed(5)
    xi = torch.randn(20, 30)  # torch.normal(mu, sigma) = mu + sigma * xi
    torch.testing.assert_close(ref[0].weight.grad, g * volume_factors(w, noise=xi))


def test_weight_splitting_matches_the_reference():
    _reference()
    from bio_transformations import BioConverter as RefConverter

    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Conv2d(1, 4, 3), nn.Linear(4, 2))
    ref = RefConverter(weight_splitting_Gamma=2).convert(copy.deepcopy(base))
    ours = BioConverter(weight_splitting={"gamma": 2}).convert(copy.deepcopy(base), inplace=True).model
    x, img = torch.randn(3, 6), torch.randn(2, 1, 7, 7)
    torch.testing.assert_close(ours[0](x), ref[0](x))
    torch.testing.assert_close(ours[2](img), ref[2](img))
    # the reference checks in_features but splits out_features: Linear(6, 5) passes its
    # check and fails at the forward; bionn refuses it at conversion with the reason
    bad = nn.Sequential(nn.Linear(6, 5))
    refbad = RefConverter(weight_splitting_Gamma=2).convert(copy.deepcopy(bad))
    with pytest.raises(RuntimeError):
        refbad[0](x)
    with pytest.raises(ValueError, match="out_features=5"):
        BioConverter(weight_splitting={"gamma": 2, "skip_output": False}).convert(bad, inplace=True)


# ------------------------------------------------------------------------------ fused paths
def _per_tensor_reference(leaves, grads, factors, cfg: SynapticDiversityConfig,
                          crystallize: bool, noise) -> None:
    """The gradient-side rules one tensor at a time (the formulas as first written)."""
    c, v = cfg.crystallization, cfg.volume_dependent_lr
    for w, g, f, xi in zip(leaves, grads, factors, noise, strict=True):
        a = w.abs()
        if crystallize:
            ga = g.abs()
            mask = torch.lt(ga, a * c.threshold).logical_or_(torch.gt(ga, a.mean()))
            f.mul_(torch.where(mask, c.dampening, 1.0))
        k = v.base_lr * math.exp(-v.stability_factor)
        m = a.add(1.0).reciprocal_().mul_(v.stability_factor).exp_()
        if xi is None:  # the torch path's draw
            m.mul_(torch.empty_like(a).normal_(k, k * v.variability).abs_())
        else:
            m.mul_(xi.mul(k * v.variability).add_(k).abs_())
        g.mul_(m.mul_(f))


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_fused_gradient_transforms_equal_the_per_tensor_rules(backend):
    """Both gradient passes (``_foreach`` operations, the compiled pass) against the rules
    one tensor at a time: bit for bit on the torch path; on the compiled path the factors
    bit for bit and the gradients within float32 rounding (its exp, log, sin and cos are
    its own polynomials)."""
    _skip_without_compiler(backend)
    net = _mlp(hidden=8)
    bio = BioConverter(ALL, crystallization={"every": 2}, backend=backend).convert(
        net, inplace=True)
    factors = [t.factor.clone() for t in bio.targets]
    for step in range(3):
        _grads(net, seed=step)
        leaves = [p.detach().clone() for p in bio.parameters()]
        grads = [p.grad.clone() for p in bio.parameters()]
        torch.manual_seed(50 + step)
        bio.apply_gradient_transforms()
        assert bio.backend == backend
        torch.manual_seed(50 + step)
        noise = [None] * len(leaves) if backend == "torch" else _noise(backend, leaves)
        _per_tensor_reference(leaves, grads, factors, bio.config, crystallize=step % 2 == 0,
                              noise=noise)
        for p, g in zip(bio.parameters(), grads, strict=True):
            if backend == "torch":
                assert torch.equal(p.grad, g)
            else:
                torch.testing.assert_close(p.grad, g, rtol=2e-6, atol=0)
        for t, f in zip(bio.targets, factors, strict=True):
            assert torch.equal(t.factor, f)
        bio.after_step()


def test_backend_choice_is_reported_and_cpp_refuses_what_it_cannot_run():
    def grads(net):
        for p in net.parameters():
            p.grad = torch.ones_like(p)

    net = _mlp().double()
    bio = BioConverter(volume_dependent_lr=True).convert(net, inplace=True)
    grads(net)
    bio.apply_gradient_transforms()
    assert bio.backend == "torch" and "float32" in bio.backend_reason
    _skip_without_compiler("cpp")
    with pytest.raises(ValueError, match="backend 'cpp': .*float32"):  # before any work
        BioConverter(volume_dependent_lr=True, backend="cpp").convert(_mlp().double())
    strict = BioConverter(volume_dependent_lr=True, backend="cpp").convert(_mlp())
    strict.model.double()  # moved after converting: refused at the step
    grads(strict.model)
    with pytest.raises(ValueError, match="backend 'cpp' does not apply: .*float32"):
        strict.apply_gradient_transforms()
    with pytest.raises(ConfigError, match="backend"):
        BioConverter(backend="numba")


def test_volume_noise_every_k_steps_is_drawn_once_and_kept():
    net = _mlp()
    bio = BioConverter(volume_dependent_lr={"noise_every": 3}).convert(net, inplace=True)
    default = BioConverter(volume_dependent_lr=True).convert(_mlp(), inplace=True)
    assert default.config.volume_dependent_lr.noise_every == 1
    seen, seen_default = [], []
    for step in range(5):
        for b, out in ((bio, seen), (default, seen_default)):
            for p in b.parameters():
                p.grad = torch.ones_like(p)
            torch.manual_seed(step)
            b.apply_gradient_transforms()
            out.append([p.grad.clone() for p in b.parameters()])
            b.after_step()
    same = [all(torch.equal(a, b) for a, b in zip(seen[i], seen[i - 1], strict=True))
            for i in range(1, 5)]
    assert same == [True, True, False, True]  # draws at steps 0 and 3 only
    assert not any(all(torch.equal(a, b) for a, b in zip(seen_default[i], seen_default[i - 1],
                                                         strict=True)) for i in range(1, 5))
    # the draw itself is the per-step rule's: step 0 of both agree
    for a, b in zip(seen[0], seen_default[0], strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="noise_every"):
        BioConverter(volume_dependent_lr={"noise_every": 0})


@pytest.mark.parametrize("gamma, shape", [(2, (4, 6)), (3, (4, 6)), (2, (3, 4, 5, 5))])
def test_weight_splitting_hook_equals_the_expanded_group_sum(gamma, shape):
    y = torch.randn(*shape, requires_grad=True)
    out = WeightSplitting(gamma)(None, None, y)
    s = y.unflatten(1, (shape[1] // gamma, gamma)).sum(2, keepdim=True)
    ref = s.expand(*s.shape[:2], gamma, *s.shape[3:]).flatten(1, 2)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    g = torch.randn(*shape)
    (gy,) = torch.autograd.grad(out, y, g)
    (gref,) = torch.autograd.grad(ref, y, g)
    torch.testing.assert_close(gy, gref, rtol=0, atol=1e-6)


def test_group_share_gradients_and_second_derivatives():
    from bionn.plasticity.diversity import _group_share

    y = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: _group_share(t, 3), (y,))
    assert torch.autograd.gradgradcheck(lambda t: _group_share(t, 2).square(), (y,))


@pytest.mark.parametrize("gamma, shape, dim", [(2, (5, 8), 1), (3, (3, 12, 4, 5), 1),
                                               (5, (7, 10, 6), 1), (2, (6, 4), 0),
                                               (4, (2, 3, 8), -1), (7, (2, 14), 1)])
def test_compiled_group_sum_and_repeat_match_pytorch(gamma, shape, dim):
    if not _fused.available():
        pytest.skip("no C++ compiler: the compiled group passes are not built")
    y = torch.randn(*shape)
    d = dim % y.dim()
    s = _fused.group_sum(y, gamma, dim)
    torch.testing.assert_close(s, y.unflatten(d, (shape[d] // gamma, gamma)).sum(d + 1))
    assert torch.equal(_fused.group_repeat(s, gamma, dim), s.repeat_interleave(gamma, dim))
    # where they do not apply the caller is told (None) and uses PyTorch
    assert _fused.group_sum(y.double(), gamma, dim) is None
    with pytest.raises(ValueError, match="do not divide"):
        _fused.group_sum(torch.randn(3, gamma + 1), gamma, 1)
    assert _fused.group_repeat(y.transpose(0, -1), gamma, dim) is None


def test_weight_splitting_hook_on_a_linear_layer_splits_its_features():
    torch.manual_seed(0)
    lin = nn.Linear(5, 6)
    x = torch.randn(3, 4, 5)  # (batch, time, features): the features are split
    y = lin(x)
    out = WeightSplitting(2, "tanh")(lin, (x,), y)
    t = torch.tanh(y)
    ref = t.unflatten(-1, (3, 2)).sum(-1, keepdim=True).expand(3, 4, 3, 2).flatten(-2)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 5), (3, 2, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_neuron_sum_equals_the_summed_outputs_and_their_gradients(shape, bias):
    """The folded layer computes the hook's output from gamma times fewer products; every
    synapse keeps its own gradient, the same as through the hook."""
    from bionn.plasticity.diversity import NeuronSum

    torch.manual_seed(0)
    lin = nn.Linear(5, 6, bias=bias)
    folded = copy.deepcopy(lin)
    folded.forward = NeuronSum(folded, 3)
    x = torch.randn(*shape)
    y = lin(x)
    ref = y.unflatten(-1, (2, 3)).sum(-1, keepdim=True).expand(*y.shape[:-1], 2, 3).flatten(-2)
    out = folded(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    g = torch.randn_like(ref)
    ref.backward(g)
    out.backward(g)
    torch.testing.assert_close(folded.weight.grad, lin.weight.grad, rtol=1e-6, atol=1e-6)
    assert torch.equal(folded.weight.grad[0], folded.weight.grad[1])  # a pair's synapses
    if bias:
        torch.testing.assert_close(folded.bias.grad, lin.bias.grad, rtol=1e-6, atol=1e-6)


def test_splitting_keeps_a_feedback_layer_forward():
    """After convert(model, 'fa') the layers are FeedbackLinear: their forward carries the
    feedback rule, so splitting keeps it and sums the outputs (the hook)."""
    from bionn.learning import convert
    from bionn.plasticity.diversity import NeuronSum

    net = convert(_mlp(hidden=6), "fa").model
    bio = BioConverter(weight_splitting={"gamma": 2}).convert(net)
    layer = bio.model[2]
    assert not isinstance(layer.forward, NeuronSum) and layer._forward_hooks
    x = torch.randn(4, 6, requires_grad=True)
    layer(x).sum().backward()
    B = layer.rule.feedback(layer.weight)
    g = torch.ones(4, 6)  # d sum / d out, shared within each group by the hook's adjoint
    g = g.unflatten(1, (3, 2)).sum(2).repeat_interleave(2, 1)
    torch.testing.assert_close(x.grad, g @ B)  # the error went back through B, not W


def test_converter_folds_linear_splitting_and_survives_copies(tmp_path):
    from bionn.plasticity.diversity import NeuronSum

    torch.manual_seed(0)
    net = _mlp(hidden=6)
    bio = BioConverter(weight_splitting={"gamma": 2}, dale=True).convert(net)
    layer = bio.model[0]
    assert isinstance(layer.forward, NeuronSum) and "summed synapses" in str(bio.report)
    assert not layer._forward_hooks  # the fold replaces the output hook
    x = torch.randn(4, 5)
    expected = bio.model(x)
    twin = copy.deepcopy(bio.model)
    assert twin[0].forward.layer is twin[0]  # the copy computes with its own weights
    torch.testing.assert_close(twin(x), expected)
    with torch.no_grad():
        twin[0].bias.add_(1.0)
    assert not torch.allclose(twin(x), expected)
    plain = BioConverter(weight_splitting={"gamma": 2}).convert(net).model
    torch.save(plain, tmp_path / "m.pt")  # (PyTorch pickles no parametrized module)
    back = torch.load(tmp_path / "m.pt", weights_only=False)
    assert back[0].forward.layer is back[0]
    torch.testing.assert_close(back(x), plain(x))
    # gradcheck through Dale, the fold and the output layer
    dbl = copy.deepcopy(bio.model).double()
    xd = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: dbl(t).sum(), (xd,))


def test_converter_projects_dale_weights_so_the_forward_reads_them_directly():
    net = _mlp(hidden=6)
    bio = BioConverter(dale=True, fuzzy_learning_rates=True).convert(net)
    layer = bio.model[2]
    raw = layer.parametrizations.weight.original
    sign = layer.parametrizations.weight[0].sign
    assert layer.weight is raw and torch.equal(raw, raw.abs() * sign)  # projected at convert
    opt = torch.optim.Adam(bio.model.parameters(), lr=1e-2)
    bio.attach(opt)
    for _ in range(5):
        opt.zero_grad()
        bio.model(torch.randn(4, 5)).square().mean().backward()
        assert layer.weight is raw  # after every step
        opt.step()
    assert ((raw * sign) >= 0).all()  # Dale holds
    bio.detach()
    opt.zero_grad()
    bio.model(torch.randn(4, 5)).sum().backward()
    opt.step()  # without the hooks nothing projects: the parametrization computes again
    assert layer.weight is not raw
    # dale.project: false keeps the parametrization at every forward
    off = BioConverter(dale={"project": False}).convert(_mlp(hidden=6))
    held = off.model[2]
    assert held.weight is not held.parametrizations.weight.original
    assert bool((held.parametrizations.weight.original >= 0).all())  # |W| as registered
    opt = torch.optim.SGD(off.model.parameters(), lr=0.1)
    off.attach(opt)
    off.model(torch.randn(4, 5)).sum().backward()
    opt.step()
    assert held.weight is not held.parametrizations.weight.original
