"""The recurrent core that every rate (and, next, spiking) model configures.

See :mod:`bionn.recurrent.core` and ``docs/conventions.md``.
"""

from bionn.recurrent.core import (
    Prepared,
    RateState,
    RecurrentCore,
    RecurrentModel,
    TimeConstants,
    detach_state,
    recurrent_models,
    tau_groups,
)

__all__ = [
    "Prepared",
    "RateState",
    "RecurrentCore",
    "RecurrentModel",
    "TimeConstants",
    "detach_state",
    "recurrent_models",
    "tau_groups",
]
