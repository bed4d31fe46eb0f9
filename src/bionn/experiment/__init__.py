"""Experiments: validated configs, the trainer, checkpoints and the CLI."""

from bionn.experiment.config import (
    ConfigError,
    RunConfig,
    dump_config,
    load_config,
    validate_config,
)
from bionn.experiment.trainer import Trainer, TrialSampler, build_model

__all__ = [
    "ConfigError",
    "RunConfig",
    "Trainer",
    "TrialSampler",
    "build_model",
    "dump_config",
    "load_config",
    "validate_config",
]
