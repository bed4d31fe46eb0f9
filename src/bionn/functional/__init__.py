"""Pure dynamics: step functions with explicit state."""

from bionn.functional.ctrnn_scan import SCAN_ACTIVATIONS, ctrnn_scan, linear_few_inputs
from bionn.functional.lif_scan import lif_scan
from bionn.functional.loop import scan
from bionn.functional.rate import ACTIVATIONS, RateState, ctrnn_step, get_activation, retanh

__all__ = [
    "ACTIVATIONS",
    "SCAN_ACTIVATIONS",
    "RateState",
    "ctrnn_scan",
    "ctrnn_step",
    "get_activation",
    "lif_scan",
    "linear_few_inputs",
    "retanh",
    "scan",
]
