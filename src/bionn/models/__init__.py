"""Model zoo: plain ``nn.Module`` vision models built from ``nn.Linear``/``nn.Conv2d``.

Example:
    >>> import torch
    >>> from bionn.models import MODELS, make_model
    >>> net = make_model("lenet_mnist", num_classes=10)
    >>> net(torch.zeros(4, 1, 28, 28)).shape
    torch.Size([4, 10])
    >>> "resnet56" in MODELS
    True
"""

from bionn.models.vision import (
    ACTIVATION_MODULES,
    MLP,
    MODELS,
    BasicBlock,
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

__all__ = [
    "ACTIVATION_MODULES",
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
    "make_model",
]
