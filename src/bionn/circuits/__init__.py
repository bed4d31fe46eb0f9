"""Circuit structure: connectivity (mask + sign) and builders."""

from bionn.circuits.builders import PATHWAYS, MultiArea, MultiAreaEI, RandomInput
from bionn.circuits.connectivity import Circuit, Connectivity, fixed_probability

__all__ = [
    "Circuit",
    "Connectivity",
    "fixed_probability",
    "MultiArea",
    "MultiAreaEI",
    "RandomInput",
    "PATHWAYS",
]
