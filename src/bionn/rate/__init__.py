"""Rate circuits."""

from bionn.rate.connectome import ConnectomeRNN
from bionn.rate.ctrnn import CTRNN, block_tau

__all__ = ["CTRNN", "ConnectomeRNN", "block_tau"]
