r"""Fitting circuits to recorded activity.

* metrics: :func:`pvar`, :func:`r2_per_neuron`, :func:`co_smoothing_bits_per_spike`;
* data: :class:`Recording` (batch-first ``(trials, time, neurons)``), :func:`load_recording`
  (``.npy``, ``.npz``, HDF5, NWB), :func:`save_recording`;
* fitting: :func:`fit` (BPTT, FORCE, full-FORCE) -> :class:`FitResult`, :func:`predict`,
  :class:`ForceNetwork`;
* :func:`curbd` (Perich et al. 2020) -> :class:`CurbdResult`, :func:`region_currents`.
"""

from bionn.analysis.fitting.curbd import CurbdResult, curbd, region_currents
from bionn.analysis.fitting.data import (
    BIONN_LAYOUT,
    Recording,
    load_recording,
    parse_layout,
    save_recording,
)
from bionn.analysis.fitting.fit import METHODS, FitResult, fit, predict
from bionn.analysis.fitting.force import ForceNetwork, rls_train
from bionn.analysis.fitting.metrics import co_smoothing_bits_per_spike, pvar, r2_per_neuron

__all__ = [
    "BIONN_LAYOUT",
    "METHODS",
    "CurbdResult",
    "FitResult",
    "ForceNetwork",
    "Recording",
    "co_smoothing_bits_per_spike",
    "curbd",
    "fit",
    "load_recording",
    "parse_layout",
    "predict",
    "pvar",
    "r2_per_neuron",
    "region_currents",
    "rls_train",
    "save_recording",
]
