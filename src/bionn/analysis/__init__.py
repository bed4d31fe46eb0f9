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
from bionn.analysis.population import (
    ConditionPCA,
    TargetedAxes,
    TaskVariance,
    UnitClusters,
    cluster_units,
    normalized_task_variance,
    pca_by_condition,
    targeted_dimensionality_reduction,
    task_variance,
)
from bionn.analysis.similarity import linear_cka, procrustes_distance, rdm, rsa

__all__ = [
    "ConditionPCA",
    "TargetedAxes",
    "TaskVariance",
    "UnitClusters",
    "cluster_units",
    "normalized_task_variance",
    "pca_by_condition",
    "targeted_dimensionality_reduction",
    "task_variance",
    "FixedPoints",
    "Linearization",
    "SelectionVectors",
    "find_fixed_points",
    "hidden_trajectories",
    "linear_cka",
    "linearize",
    "procrustes_distance",
    "rdm",
    "rsa",
    "selection_vectors",
    "step_map",
]
