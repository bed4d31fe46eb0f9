"""Model zoo: shapes, parameter counts, num_classes, registry, a training smoke test."""

import pytest
import torch
from torch import nn

from bionn.models import (
    MLP,
    MODELS,
    CifarResNet,
    ConvNet1D,
    LeNet,
    conv_mnist1d,
    lenet_cifar,
    lenet_mnist,
    make_model,
    mlp_mnist1d,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
    resnet110,
)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "factory, shape",
    [
        (lambda k: MLP(64, (32, 16), k), (3, 1, 8, 8)),
        (lambda k: MLP(40, (), k), (3, 40)),
        (lambda k: lenet_mnist(num_classes=k), (3, 1, 28, 28)),
        (lambda k: lenet_cifar(num_classes=k), (3, 3, 32, 32)),
        (lambda k: LeNet(in_channels=1, num_classes=k, input_size=32), (3, 1, 32, 32)),
        (lambda k: resnet20(num_classes=k), (3, 3, 32, 32)),
        (lambda k: resnet32(num_classes=k, in_channels=1), (3, 1, 32, 32)),
        (lambda k: resnet20(num_classes=k, in_channels=1), (3, 1, 28, 28)),
        (lambda k: mlp_mnist1d(num_classes=k), (3, 40)),
        (lambda k: conv_mnist1d(num_classes=k), (3, 40)),
        (lambda k: conv_mnist1d(num_classes=k), (3, 1, 40)),
    ],
)
@pytest.mark.parametrize("num_classes", [10, 7])
def test_forward_shapes_and_num_classes(factory, shape, num_classes):
    torch.manual_seed(0)
    model = factory(num_classes)
    out = model(torch.randn(shape))
    assert out.shape == (shape[0], num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "factory, expected",
    # He et al. 2016, Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M (Idelbayev's exact counts)
    [(resnet20, 269_722), (resnet32, 464_154), (resnet44, 658_586), (resnet56, 853_018)],
)
def test_resnet_parameter_counts_match_published(factory, expected):
    assert n_params(factory()) == expected


def test_resnet110_parameter_count():
    assert n_params(resnet110()) == 1_727_962
    assert n_params(resnet110()) == pytest.approx(1.7e6, rel=0.02)


def test_resnet_shortcuts_have_no_parameters_and_only_linear_conv_weights():
    model = resnet20()
    weights = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert len(weights) == 20  # 19 convolutions + the classifier
    assert not any(isinstance(m, nn.Conv1d) for m in ConvNet1D().modules())
    assert sum(isinstance(m, nn.Conv2d) for m in ConvNet1D().modules()) == 3


def test_lenet_parameter_count_classic():
    # LeNet-5 with 10 classes: 61,706 parameters
    assert n_params(lenet_mnist()) == 61_706
    assert n_params(lenet_cifar()) == 62_006


def test_registry_and_errors():
    for name in ("lenet_mnist", "lenet_cifar", "resnet20", "resnet56", "mlp_mnist1d"):
        assert isinstance(make_model(name, num_classes=3), nn.Module)
    with pytest.raises(ValueError, match="unknown model 'resnet21'.*resnet20"):
        make_model("resnet21")
    with pytest.raises(ValueError, match="depth must be 6n"):
        CifarResNet(depth=21)
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        MLP(4, (), 0)
    with pytest.raises(ValueError, match="unknown activation 'relux'.*relu"):
        MLP(4, (3,), 2, activation="relux")
    with pytest.raises(ValueError, match=r"LeNet expects input \(batch, 1, 28, 28\)"):
        lenet_mnist()(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="MLP expects 64 features"):
        MLP(64, (), 10)(torch.zeros(2, 40))
    assert set(MODELS) >= {"mlp", "lenet", "resnet20", "resnet110", "conv_mnist1d"}


def test_activation_factory():
    model = MLP(4, (3,), 2, activation=nn.Tanh)
    assert isinstance(model.net[1], nn.Tanh)


def test_mlp_sgd_reduces_loss_on_digits():
    pytest.importorskip("sklearn")
    from bionn.tasks.datasets import load_digits

    data = load_digits(flatten=True)
    x, y = data.x_train[:256], data.y_train[:256]
    torch.manual_seed(0)
    model = MLP(64, (64,), 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    first = loss_fn(model(x), y).item()
    for _ in range(30):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    assert loss_fn(model(x), y).item() < 0.5 * first
