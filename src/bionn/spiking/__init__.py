"""Spiking dynamics: neuron groups, synapses, projections, networks, monitors.

Units: ms and mV; weights ``(post, pre)``; state tensors ``(batch, n)``.
"""

from bionn.spiking.base import Drive, NeuronGroup, StepConstants, StepContext
from bionn.spiking.connectome import spiking_network  # noqa: E402 (needs the models above)
from bionn.spiking.convolutional import ConvSpikingRNN
from bionn.spiking.network import Network, NonFiniteStateError, SimulationResult, SpikeEvents
from bionn.spiking.networks import (
    CANN1D,
    NETWORKS,
    brunel,
    coba,
    cobahh,
    cuba,
    ei_balanced,
    wang_buzsaki,
)
from bionn.spiking.neurons import (
    ALIF,
    GIF,
    HH,
    LIF,
    NEURONS,
    AdExIF,
    AdQuaIF,
    ExpIF,
    HindmarshRose,
    Izhikevich,
    MorrisLecar,
    PoissonGroup,
    QuaIF,
    TraubHH,
    WangBuzsakiHH,
    WilsonCowan,
)
from bionn.spiking.nir import SpikingSequential, from_nir, to_nir  # noqa: E402 (needs trainable)
from bionn.spiking.recording import load_recording, run_to_disk  # noqa: E402
from bionn.spiking.synapse_models import (  # noqa: I001 - after synapses (circular import)
    AMPA,
    NMDA,
    STP,
    SYNAPSE_MODELS,
    Alpha,
    AMPAExponential,
    DualExponential,
    GABAa,
    GABAaExponential,
    GABAaWangBuzsaki,
    GABAb,
    GapJunction,
    VoltageJump,
)
from bionn.spiking.synapses import Exponential, PoissonInput, Projection, Synapse
from bionn.spiking.trainable import (  # noqa: E402 (needs the simulator above)
    SYNAPSE_KINDS,
    TRAINABLE_NEURONS,
    CellState,
    LeakyReadout,
    SpikingCell,
    SpikingLayer,
    SpikingRNN,
    count_loss,
    first_spike_loss,
    first_spike_time,
    membrane_loss,
    spike_count,
)

__all__ = [
    "spiking_network",
    "run_to_disk",
    "load_recording",
    "ALIF", "SYNAPSE_KINDS", "TRAINABLE_NEURONS", "CellState", "LeakyReadout", "SpikingCell",
    "SpikingLayer", "SpikingRNN", "ConvSpikingRNN", "count_loss", "first_spike_loss", "first_spike_time",
    "membrane_loss", "spike_count",
    "SpikingSequential", "from_nir", "to_nir",
    "AMPA", "AMPAExponential", "AdExIF", "AdQuaIF", "Alpha", "CANN1D", "DualExponential", "ExpIF",
    "GABAa", "GABAaExponential", "GABAaWangBuzsaki", "GABAb", "GIF", "GapJunction", "HH",
    "HindmarshRose", "Izhikevich", "MorrisLecar", "NETWORKS", "NMDA", "PoissonGroup", "QuaIF",
    "STP", "SYNAPSE_MODELS", "TraubHH", "VoltageJump", "WangBuzsakiHH", "WilsonCowan", "brunel", "coba",
    "cobahh", "cuba", "ei_balanced", "wang_buzsaki",
    "Drive",
    "Exponential",
    "LIF",
    "NEURONS",
    "Network",
    "NeuronGroup",
    "NonFiniteStateError",
    "PoissonInput",
    "Projection",
    "SimulationResult",
    "SpikeEvents",
    "StepConstants",
    "StepContext",
    "Synapse",
]
