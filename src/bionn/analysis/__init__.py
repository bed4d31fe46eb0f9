"""Reverse-engineering trained circuits: fixed and slow points, linearization.

The analysis layer sits above the models and ``viz`` and below ``experiment``.
"""

from bionn.analysis.fixed_points import (
    FixedPoints,
    Linearization,
    SelectionVectors,
    find_fixed_points,
    hidden_trajectories,
    linearize,
    selection_vectors,
    step_map,
)

__all__ = [
    "FixedPoints",
    "Linearization",
    "SelectionVectors",
    "find_fixed_points",
    "hidden_trajectories",
    "linearize",
    "selection_vectors",
    "step_map",
]
