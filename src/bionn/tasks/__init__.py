"""Cognitive tasks as batch-first :class:`TrialBatch` generators.

Every task samples ``(inputs, targets, mask, labels, info)`` shaped
``(batch, time, ...)`` from an explicit ``torch.Generator``; time is in ms and
``dt`` (default 20 ms) sets the step. Output channel 0 is fixation, channels
``1..k`` the choices (NeuroGym convention). See ``docs/tasks.md``.

Example:
    >>> import torch
    >>> from bionn.tasks import make_task
    >>> task = make_task("perceptual_decision_making", dt=20)
    >>> batch = task.sample(32, torch.Generator().manual_seed(0))
    >>> task.accuracy(batch.targets, batch).float().mean().item()
    1.0
"""

from bionn.tasks.base import Task, TrialBatch
from bionn.tasks.datasets import YIN_YANG_CLASSES, load_yin_yang, spiking_dataset
from bionn.tasks.encoders import (
    ENCODERS,
    delta_encode,
    encode,
    latency_encode,
    poisson_encode,
    poisson_spikes,
)
from bionn.tasks.evidence import EvidenceAccumulation
from bionn.tasks.flipflop import FlipFlop
from bionn.tasks.motor import AntiSaccade, GoNoGo
from bionn.tasks.multitask import MultiTask
from bionn.tasks.neurogym_adapter import NeuroGymTask
from bionn.tasks.perceptual import ContextDependentIntegration, PerceptualDecisionMaking
from bionn.tasks.registry import TASKS, make_task
from bionn.tasks.visual import (
    VISUAL_TASKS,
    VisualBatch,
    contour_integration,
    digits_images,
    make_visual_dataset,
    maze_connectivity,
    motion_direction,
)
from bionn.tasks.working_memory import (
    ROMO_PAIRS,
    DelayedMatchToSample,
    ParametricWorkingMemory,
)

__all__ = [
    "Task",
    "TrialBatch",
    "PerceptualDecisionMaking",
    "ContextDependentIntegration",
    "DelayedMatchToSample",
    "ParametricWorkingMemory",
    "ROMO_PAIRS",
    "GoNoGo",
    "AntiSaccade",
    "NeuroGymTask",
    "TASKS",
    "make_task",
    "VisualBatch",
    "contour_integration",
    "motion_direction",
    "maze_connectivity",
    "digits_images",
    "VISUAL_TASKS",
    "make_visual_dataset",
    "EvidenceAccumulation",
    "FlipFlop",
    "MultiTask",
    "poisson_spikes",
    "poisson_encode",
    "latency_encode",
    "delta_encode",
    "ENCODERS",
    "encode",
    "load_yin_yang",
    "YIN_YANG_CLASSES",
    "spiking_dataset",
]
