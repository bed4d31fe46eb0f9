"""Figures for training runs, circuits and task samples: pyplot-free, Agg-drawn, saved atomically.

Every function takes torch tensors or numpy arrays, returns the
:class:`matplotlib.figure.Figure`, and saves a PNG when given ``path``.
Conventions: weights are ``(post, pre)``; trials are batch-first
``(batch, time, ...)``; time is in ms.
"""

from ._common import save_figure
from .circuits import plot_activity_maps, plot_cell_type_table, plot_motif, plot_time_constants
from .connectivity import plot_weight_matrix
from .dynamics import plot_fixed_points
from .performance import plot_accuracy_by_condition, plot_psychometric
from .population import plot_clusters, plot_task_variance_map, plot_trajectories
from .spiking import plot_bump, plot_raster, plot_rate_histogram, plot_voltage_traces
from .tasks import plot_visual_examples
from .training import load_records, plot_alignment, plot_training_curve
from .trials import plot_example_trials

__all__ = [
    "load_records",
    "plot_activity_maps",
    "plot_cell_type_table",
    "plot_motif",
    "plot_time_constants",
    "plot_alignment",
    "plot_accuracy_by_condition",
    "plot_bump",
    "plot_clusters",
    "plot_example_trials",
    "plot_fixed_points",
    "plot_psychometric",
    "plot_rate_histogram",
    "plot_task_variance_map",
    "plot_raster",
    "plot_training_curve",
    "plot_trajectories",
    "plot_visual_examples",
    "plot_voltage_traces",
    "plot_weight_matrix",
    "save_figure",
]
