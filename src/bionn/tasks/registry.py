"""Task registry: build any task from its snake_case name."""

from __future__ import annotations

import inspect
from typing import Any

from bionn.tasks.base import Task
from bionn.tasks.evidence import EvidenceAccumulation
from bionn.tasks.flipflop import FlipFlop
from bionn.tasks.motor import AntiSaccade, GoNoGo
from bionn.tasks.multitask import MultiTask
from bionn.tasks.neurogym_adapter import NeuroGymTask
from bionn.tasks.perceptual import ContextDependentIntegration, PerceptualDecisionMaking
from bionn.tasks.working_memory import DelayedMatchToSample, ParametricWorkingMemory

__all__ = ["TASKS", "make_task"]

#: Registry of task classes by name.
TASKS: dict[str, type[Task]] = {
    "perceptual_decision_making": PerceptualDecisionMaking,
    "context_dependent_integration": ContextDependentIntegration,
    "delayed_match_to_sample": DelayedMatchToSample,
    "parametric_working_memory": ParametricWorkingMemory,
    "go_no_go": GoNoGo,
    "anti_saccade": AntiSaccade,
    "neurogym": NeuroGymTask,
    "evidence_accumulation": EvidenceAccumulation,
    "flip_flop": FlipFlop,
    "multitask": MultiTask,
}


def make_task(name: str, **params: Any) -> Task:
    """Build the task registered as ``name`` with constructor ``params``.

    Raises ``ValueError`` for an unknown ``name`` (listing the allowed ones),
    ``TypeError`` for a parameter the task does not take (listing the ones it
    does), and the task's own ``ValueError``/``TypeError`` for an invalid value.

    Example:
        >>> task = make_task("go_no_go", dt=10)
        >>> type(task).__name__, task.dt
        ('GoNoGo', 10.0)
        >>> make_task("neurogym", env_id="GoNogo-v0", dt=20)  # doctest: +SKIP
    """
    if not isinstance(name, str) or name not in TASKS:
        raise ValueError(f"unknown task name {name!r}; allowed names: {', '.join(TASKS)}")
    cls = TASKS[name]
    allowed = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    unknown = [k for k in params if k not in allowed]
    if unknown:
        raise TypeError(
            f"{name}: unknown parameter {unknown[0]!r}; allowed parameters: {', '.join(allowed)}"
        )
    return cls(**params)
