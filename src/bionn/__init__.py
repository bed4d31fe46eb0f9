"""bionn: biologically plausible neural networks on PyTorch.

Conventions: weights are ``(post, pre)``; tensors are batch-first
``(batch, time, ...)``; time is in ms and voltages in mV.
"""

from bionn.circuits import (
    CellTypeTable,
    Circuit,
    Connectivity,
    Connectome,
    MultiArea,
    MultiAreaEI,
    RandomInput,
    motif,
)
from bionn.losses import RNNLoss
from bionn.rate import CTRNN, ConnectomeRNN, SpatialNetwork, block_tau

__version__ = "0.1.0"


def __getattr__(name: str):
    # load_run needs the experiment layer (configs, runner): imported on first use only
    if name == "load_run":
        from bionn.experiment.runs import load_run

        return load_run
    if name == "fit":  # the analysis layer (fitting to recordings), on first use
        from bionn.analysis.fitting import fit

        return fit
    raise AttributeError(f"module 'bionn' has no attribute {name!r}")


__all__ = [
    "CTRNN",
    "CellTypeTable",
    "Circuit",
    "Connectivity",
    "Connectome",
    "ConnectomeRNN",
    "SpatialNetwork",
    "motif",
    "MultiArea",
    "MultiAreaEI",
    "RNNLoss",
    "RandomInput",
    "block_tau",
    "fit",
    "load_run",
    "__version__",
]
