"""Local learning rules: STDP, BCM and Oja (BrainPy-Models' forms and defaults), and
synaptic-diversity transforms for training any network (:mod:`bionn.plasticity.diversity`).

Attach a rule to a spiking projection with ``Projection(..., plasticity=rule)``;
see :mod:`bionn.plasticity.rules` for the interface. Convert a model with
``BioConverter(config).convert(model)`` and ``.attach(optimizer)``.
"""

from bionn.plasticity.diversity import (
    BioConverter,
    SynapticDiversity,
    SynapticDiversityConfig,
)
from bionn.plasticity.rules import BCM, PLASTICITY_RULES, STDP, Oja, PlasticityRule

__all__ = [
    "BCM",
    "BioConverter",
    "Oja",
    "PlasticityRule",
    "PLASTICITY_RULES",
    "STDP",
    "SynapticDiversity",
    "SynapticDiversityConfig",
]
