"""Local learning rules: STDP, BCM and Oja (BrainPy-Models' forms and defaults).

Attach a rule to a spiking projection with ``Projection(..., plasticity=rule)``;
see :mod:`bionn.plasticity.rules` for the interface.
"""

from bionn.plasticity.rules import BCM, RULES, STDP, Oja, PlasticityRule

__all__ = ["BCM", "Oja", "PlasticityRule", "RULES", "STDP"]
