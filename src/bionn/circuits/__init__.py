"""Circuit structure: one :class:`Connectivity` (dense or sparse, signs, weights, cell-type
labels) and everything that produces one: connection rules, builders, cell-type tables,
microcircuit motifs and connectomes."""

from bionn.circuits.builders import PATHWAYS, MultiArea, MultiAreaEI, RandomInput
from bionn.circuits.celltypes import CellType, CellTypeTable, TypeConnection
from bionn.circuits.connect import (
    all_to_all,
    blocks,
    distance_prob,
    fixed_in_degree,
    fixed_out_degree,
    fixed_prob,
    from_edges,
    from_matrix,
    one_to_one,
)
from bionn.circuits.connectivity import Circuit, Connectivity
from bionn.circuits.connectome import (
    CELEGANS_SIGNS,
    FLY_SIGNS,
    TRANSMITTER_SIGNS,
    Connectome,
    celegans,
    celegans_datasets,
    fly_optic_lobe,
    from_edge_list,
    from_networkx,
    from_scipy,
)
from bionn.circuits.motifs import MOTIFS, list_motifs, motif

__all__ = [
    "Circuit",
    "Connectivity",
    "all_to_all",
    "blocks",
    "distance_prob",
    "fixed_in_degree",
    "fixed_out_degree",
    "fixed_prob",
    "from_edges",
    "from_matrix",
    "one_to_one",
    "MultiArea",
    "MultiAreaEI",
    "RandomInput",
    "PATHWAYS",
    "CellType",
    "CellTypeTable",
    "TypeConnection",
    "MOTIFS",
    "list_motifs",
    "motif",
    "Connectome",
    "from_edge_list",
    "from_scipy",
    "from_networkx",
    "celegans",
    "celegans_datasets",
    "fly_optic_lobe",
    "TRANSMITTER_SIGNS",
    "CELEGANS_SIGNS",
    "FLY_SIGNS",
]
