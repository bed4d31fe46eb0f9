"""Experiments: one config shape, the one training loop, checkpoints and the CLI."""

from bionn.experiment.classify import ClassifyConfig
from bionn.experiment.config import (
    ConfigError,
    RunConfig,
    dump_config,
    load_config,
    validate_config,
)
from bionn.experiment.models import register_model_kind
from bionn.experiment.runner import Job, Runner, load_run_config
from bionn.experiment.runs import LoadedRun, load_run
from bionn.experiment.trainer import TrialSampler, build_model

__all__ = [
    "ClassifyConfig",
    "ConfigError",
    "Job",
    "LoadedRun",
    "RunConfig",
    "Runner",
    "TrialSampler",
    "build_model",
    "dump_config",
    "load_config",
    "load_run",
    "load_run_config",
    "register_model_kind",
    "validate_config",
]
