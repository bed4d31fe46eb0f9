"""Spiking dynamics: neuron groups, synapses, projections, networks, monitors.

Units: ms and mV; weights ``(post, pre)``; state tensors ``(batch, n)``.
"""

from bionn.spiking.base import Drive, NeuronGroup
from bionn.spiking.network import Network, SimulationResult, SpikeEvents
from bionn.spiking.neurons import LIF, NEURONS
from bionn.spiking.synapses import SYNAPSES, Exponential, Projection, Synapse

__all__ = [
    "Drive",
    "Exponential",
    "LIF",
    "NEURONS",
    "Network",
    "NeuronGroup",
    "Projection",
    "SYNAPSES",
    "SimulationResult",
    "SpikeEvents",
    "Synapse",
]
