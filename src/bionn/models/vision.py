"""Feed-forward vision models: MLP, LeNet, CIFAR ResNets and MNIST-1D nets.

Every model is a plain ``nn.Module`` built from ``nn.Linear`` and ``nn.Conv2d``
(plus BatchNorm, pooling and activations), so a feedback-alignment converter
that swaps those two layer types reaches every trainable weight matrix. The
MNIST-1D convolutional net therefore runs its 1-D convolutions as ``nn.Conv2d``
with ``(1, k)`` kernels instead of ``nn.Conv1d``.

Example:
    >>> import torch
    >>> from bionn.models import make_model
    >>> net = make_model("resnet20", num_classes=10)
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATION_MODULES: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}

ActivationSpec = str | Callable[[], nn.Module]


def _activation(spec: ActivationSpec, arg: str = "activation") -> nn.Module:
    """A fresh activation module from a name in :data:`ACTIVATION_MODULES` or a factory."""
    if isinstance(spec, str):
        if spec not in ACTIVATION_MODULES:
            raise ValueError(f"{arg}: unknown activation {spec!r}; allowed: {sorted(ACTIVATION_MODULES)}")
        return ACTIVATION_MODULES[spec]()
    if callable(spec):
        module = spec()
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"{arg}: the factory must return an nn.Module, got {type(module).__name__}"
            )
        return module
    raise TypeError(
        f"{arg}: expected a name in {sorted(ACTIVATION_MODULES)} or an nn.Module factory, got {spec!r}"
    )


def _positive_int(value: int, arg: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{arg} must be a positive int, got {value!r}")
    return value


class MLP(nn.Module):
    """Multi-layer perceptron on flattened inputs.

    Args:
        in_features: size of one flattened input (e.g. 64 for 8x8 digits, 40 for MNIST-1D).
        hidden: widths of the hidden layers (may be empty: a linear classifier).
        num_classes: number of outputs (logits).
        activation: a name in :data:`ACTIVATION_MODULES` or a zero-argument ``nn.Module`` factory.
        bias: whether the linear layers have biases.

    Inputs of any shape ``(batch, ...)`` are flattened to ``(batch, in_features)``.

    Example:
        >>> import torch
        >>> net = MLP(64, hidden=(32, 32), num_classes=10)
        >>> net(torch.zeros(5, 1, 8, 8)).shape
        torch.Size([5, 10])
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (100,),
        num_classes: int = 10,
        activation: ActivationSpec = "relu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        _positive_int(in_features, "in_features")
        _positive_int(num_classes, "num_classes")
        hidden = tuple(hidden)
        for i, h in enumerate(hidden):
            _positive_int(h, f"hidden[{i}]")
        self.in_features = in_features
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h, bias=bias), _activation(activation)]
            width = h
        layers.append(nn.Linear(width, num_classes, bias=bias))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"MLP expects {self.in_features} features per sample, got input of shape "
                f"{tuple(x.shape)} after flattening"
            )
        return self.net(x)


class LeNet(nn.Module):
    """LeNet-5 style convolutional net (conv 6@5x5, pool, conv 16@5x5, pool, 120, 84, classes).

    For ``input_size=28`` (MNIST, Fashion-MNIST) the first convolution pads by 2, as in the
    original LeNet-5 on 32x32 digits, so both variants see a 5x5x16 feature map before the
    fully connected layers. Other sizes (at least 16) run without padding. Unlike BioTorch's
    ``le_net_mnist``/``le_net_cifar``, ``num_classes`` is honoured.

    Args:
        in_channels: 1 (grey) or 3 (RGB), or any positive int.
        num_classes: number of outputs.
        input_size: height = width of the square input images.
        activation: a name in :data:`ACTIVATION_MODULES` or an ``nn.Module`` factory.

    Example:
        >>> import torch
        >>> LeNet(in_channels=3, num_classes=7, input_size=32)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 7])
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        activation: ActivationSpec = "relu",
    ) -> None:
        super().__init__()
        _positive_int(in_channels, "in_channels")
        _positive_int(num_classes, "num_classes")
        _positive_int(input_size, "input_size")
        padding = 2 if input_size == 28 else 0
        side = ((input_size + 2 * padding - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"input_size must be 28 or at least 16, got {input_size}")
        self.in_channels = in_channels
        self.input_size = input_size
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=padding),
            _activation(activation),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            _activation(activation),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * side * side, 120),
            _activation(activation),
            nn.Linear(120, 84),
            _activation(activation),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1:] != (self.in_channels, self.input_size, self.input_size):
            raise ValueError(
                f"LeNet expects input (batch, {self.in_channels}, {self.input_size}, "
                f"{self.input_size}), got {tuple(x.shape)}"
            )
        return self.classifier(torch.flatten(self.features(x), 1))


def lenet_mnist(num_classes: int = 10, **kwargs) -> LeNet:
    """LeNet for 1x28x28 images (MNIST, Fashion-MNIST).

    Example:
        >>> lenet_mnist(num_classes=5).classifier[-1].out_features
        5
    """
    kwargs.setdefault("in_channels", 1)
    kwargs.setdefault("input_size", 28)
    return LeNet(num_classes=num_classes, **kwargs)


def lenet_cifar(num_classes: int = 10, **kwargs) -> LeNet:
    """LeNet for 3x32x32 images (CIFAR-10/100).

    Example:
        >>> lenet_cifar(num_classes=100).classifier[-1].out_features
        100
    """
    kwargs.setdefault("in_channels", 3)
    kwargs.setdefault("input_size", 32)
    return LeNet(num_classes=num_classes, **kwargs)


class _PadShortcut(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad the new channels (no parameters)."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.extra = extra_channels

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (option A) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = _PadShortcut(planes - in_planes)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 images (He et al. 2016, sec. 4.2; Idelbayev's reimplementation).

    Three stages of ``n`` basic blocks with 16, 32 and 64 channels (depth ``6n + 2``),
    parameter-free option-A shortcuts (strided identity + zero channel padding),
    BatchNorm, global average pooling and one linear classifier. Weights of conv and
    linear layers are Kaiming-normal initialised.

    Example:
        >>> import torch
        >>> CifarResNet(depth=20, num_classes=4)(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 4])
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, ...), got {depth!r}")
        _positive_int(num_classes, "num_classes")
        _positive_int(in_channels, "in_channels")
        n = (depth - 2) // 6
        self.depth = depth
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks: list[nn.Module] = []
        in_planes = 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            stage = []
            for i in range(n):
                stage.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            blocks.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3 = blocks
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def resnet20(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-20 (0.27M parameters with 10 classes)."""
    return CifarResNet(20, num_classes, in_channels)


def resnet32(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-32 (0.46M parameters with 10 classes)."""
    return CifarResNet(32, num_classes, in_channels)


def resnet44(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-44 (0.66M parameters with 10 classes)."""
    return CifarResNet(44, num_classes, in_channels)


def resnet56(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-56 (0.85M parameters with 10 classes)."""
    return CifarResNet(56, num_classes, in_channels)


def resnet110(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-110 (1.7M parameters with 10 classes)."""
    return CifarResNet(110, num_classes, in_channels)


class ConvNet1D(nn.Module):
    """Small 1-D convolutional net for MNIST-1D (Greydanus 2020's ``ConvBase``).

    Three convolutions (kernel 5, 3, 3; stride 2; ``channels`` each; ReLU) and a linear
    read-out. The convolutions are ``nn.Conv2d`` with ``(1, k)`` kernels on a height-1
    image, numerically a ``Conv1d`` but swappable by converters that handle ``nn.Conv2d``.

    Args:
        in_features: signal length (40 for MNIST-1D).
        num_classes: number of outputs.
        channels: channels of each convolution.
        in_channels: input channels; inputs ``(batch, length)`` are read as one channel.

    Example:
        >>> import torch
        >>> ConvNet1D()(torch.zeros(3, 40)).shape
        torch.Size([3, 10])
    """

    def __init__(
        self,
        in_features: int = 40,
        num_classes: int = 10,
        channels: int = 25,
        in_channels: int = 1,
        activation: ActivationSpec = "relu",
    ) -> None:
        super().__init__()
        _positive_int(in_features, "in_features")
        _positive_int(num_classes, "num_classes")
        _positive_int(channels, "channels")
        _positive_int(in_channels, "in_channels")
        length = in_features
        layers: list[nn.Module] = []
        c_in = in_channels
        for k in (5, 3, 3):
            layers += [
                nn.Conv2d(c_in, channels, (1, k), stride=(1, 2), padding=(0, 1)),
                _activation(activation),
            ]
            length = (length + 2 - k) // 2 + 1
            c_in = channels
        if length < 1:
            raise ValueError(f"in_features={in_features} is too short for three strided convs")
        self.in_features = in_features
        self.in_channels = in_channels
        self.features = nn.Sequential(*layers)
        self.linear = nn.Linear(channels * length, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        if x.dim() != 3 or x.shape[1:] != (self.in_channels, self.in_features):
            raise ValueError(
                f"ConvNet1D expects input (batch, {self.in_features}) or (batch, "
                f"{self.in_channels}, {self.in_features}), got {tuple(x.shape)}"
            )
        out = self.features(x.unsqueeze(2))
        return self.linear(out.flatten(1))


def mlp_mnist1d(num_classes: int = 10, hidden: Sequence[int] = (100, 100), **kwargs) -> MLP:
    """MLP for MNIST-1D: 40 inputs, two hidden layers of 100 ReLU units (Greydanus 2020)."""
    return MLP(40, hidden=hidden, num_classes=num_classes, **kwargs)


def conv_mnist1d(num_classes: int = 10, **kwargs) -> ConvNet1D:
    """:class:`ConvNet1D` for MNIST-1D (40 inputs, 25 channels)."""
    return ConvNet1D(40, num_classes=num_classes, **kwargs)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "lenet": LeNet,
    "lenet_mnist": lenet_mnist,
    "lenet_cifar": lenet_cifar,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet44": resnet44,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "mlp_mnist1d": mlp_mnist1d,
    "conv_mnist1d": conv_mnist1d,
}


def make_model(name: str, **kwargs) -> nn.Module:
    """Build a model from :data:`MODELS` by name, passing ``kwargs`` to its factory.

    Example:
        >>> make_model("mlp", in_features=40, hidden=(16,), num_classes=3)(
        ...     torch.zeros(2, 40)).shape
        torch.Size([2, 3])
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {sorted(MODELS)}")
    return MODELS[name](**kwargs)
