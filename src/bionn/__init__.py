"""bionn: biologically plausible neural networks on PyTorch.

Conventions: weights are ``(post, pre)``; tensors are batch-first
``(batch, time, ...)``; time is in ms and voltages in mV.
"""

from bionn.circuits import Circuit, Connectivity, MultiArea, MultiAreaEI, RandomInput
from bionn.losses import RNNLoss
from bionn.rate import CTRNN, block_tau

__version__ = "0.1.0"

__all__ = [
    "CTRNN",
    "Circuit",
    "Connectivity",
    "MultiArea",
    "MultiAreaEI",
    "RNNLoss",
    "RandomInput",
    "block_tau",
    "__version__",
]
