"""Rate circuits: CTRNN, spatially embedded areas and networks, connectome RNN."""

from bionn.rate.connectome import ConnectomeRNN
from bionn.rate.ctrnn import CTRNN, block_tau
from bionn.rate.spatial import SpatialArea, SpatialNetwork, SpatialRecord, SpatialState, TopDown

__all__ = [
    "CTRNN",
    "ConnectomeRNN",
    "SpatialArea",
    "SpatialNetwork",
    "SpatialRecord",
    "SpatialState",
    "TopDown",
    "block_tau",
]
