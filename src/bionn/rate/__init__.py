"""Rate circuits."""

from bionn.rate.ctrnn import CTRNN, block_tau

__all__ = ["CTRNN", "block_tau"]
