"""Model zoo: plain ``nn.Module`` vision models built from ``nn.Linear``/``nn.Conv2d``.

Example:
    >>> import torch
    >>> from bionn.models import MODELS, build_model_by_name
    >>> net = build_model_by_name("lenet_mnist", num_classes=10)
    >>> net(torch.zeros(4, 1, 28, 28)).shape
    torch.Size([4, 10])
    >>> "resnet56" in MODELS
    True
"""

from bionn.models.vision import (
    ACTIVATIONS,
    MLP,
    MODELS,
    BasicBlock,
    CifarResNet,
    ConvNet1D,
    LeNet,
    build_model_by_name,
    conv_mnist1d,
    lenet_cifar,
    lenet_mnist,
    mlp_mnist1d,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
    resnet110,
)

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "LeNet",
    "lenet_mnist",
    "lenet_cifar",
    "BasicBlock",
    "CifarResNet",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "ConvNet1D",
    "mlp_mnist1d",
    "conv_mnist1d",
    "MODELS",
    "build_model_by_name",
]
