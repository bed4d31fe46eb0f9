"""Pure dynamics: step functions with explicit state."""

from bionn.functional.loop import scan
from bionn.functional.rate import ACTIVATIONS, RateState, ctrnn_step, get_activation, retanh

__all__ = ["ACTIVATIONS", "RateState", "ctrnn_step", "get_activation", "retanh", "scan"]
