"""Rate circuits: CTRNN, spatially embedded areas and networks, connectome RNN."""

from bionn.rate.connectome import ConnectomeRNN
from bionn.rate.ctrnn import CTRNN, block_tau
from bionn.rate.spatial import Feedback, SpatialArea, SpatialNetwork, SpatialRecord, SpatialState

__all__ = [
    "CTRNN",
    "ConnectomeRNN",
    "Feedback",
    "SpatialArea",
    "SpatialNetwork",
    "SpatialRecord",
    "SpatialState",
    "block_tau",
]
