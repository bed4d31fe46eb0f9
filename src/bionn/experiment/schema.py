"""The config shape shared by every command (``run``, ``compare``, ``sweep``, ``simulate``).

Every config is a YAML mapping with a common ``experiment`` section::

    experiment: {name: ei_ctrnn_pdm, seed: 0, device: auto, threads: null}

and the sections of its command. This module holds what every config shares: the
one strict base model (:class:`Strict`), the ``experiment`` section, the one
optimizer vocabulary (``{type: adam, lr: ..., <any keyword argument of the torch
optimizer>}``, names resolved through :data:`OPTIMIZERS`), the one device picker
and the check that names what changed in a config of the old shape.

Example:
    >>> opt = OptimizerConfig(type="SGD", lr=0.1, momentum=0.9)
    >>> opt.type, opt.kwargs()
    ('sgd', {'lr': 0.1, 'momentum': 0.9})
"""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bionn._core.errors import ConfigError, number_hint

__all__ = [
    "CONVERT_OPTIONS",
    "EPROP_METHOD",
    "EPROP_OPTIONS",
    "OPTIMIZERS",
    "CreditAssignmentFields",
    "ExperimentSection",
    "MirrorOptions",
    "OptimizerConfig",
    "Strict",
    "build_optimizer",
    "check_shape",
    "pick_device",
]

#: optimizer names (case-insensitive in configs) -> ``torch.optim`` classes
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}


def _leaf_types(annotation: Any) -> list[Any]:
    """The types a field annotation is made of (through ``Optional``/``Union``/``Annotated``)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(annotation) for t in _leaf_types(a)]
    if origin is typing.Annotated:
        return _leaf_types(typing.get_args(annotation)[0])
    return [annotation]


_NON_FINITE_TEXT = re.compile(r"[-+]?(?:\.?nan|\.?inf|infinity)", re.I)


def _non_finite(value: Any, path: str = "") -> str | None:
    """The dotted path (``""`` for ``value`` itself) of the first non-finite number in
    ``value`` (floats, and inside containers the strings ``nan``/``inf``), else None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if path and isinstance(value, str):
        return path if _NON_FINITE_TEXT.fullmatch(value.strip()) else None
    if isinstance(value, Mapping):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        found = _non_finite(v, f"{path}.{k}" if path else str(k))
        if found is not None:
            return found
    return None


def _lookup(value: Any, path: str) -> Any:
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, (list, tuple)) else value[part]
    return value


class Strict(BaseModel):
    """The base of every config section: unknown keys are errors, assignments are validated,
    numbers are finite (``.nan``/``.inf`` are refused in every field, inside dict- and
    list-valued fields too) and a boolean is not a number (``steps: true`` is refused).

    Example:
        >>> class Section(Strict):
        ...     steps: int = 1
        ...     params: dict[str, Any] = {}
        >>> for bad in ({"steps": True}, {"params": {"we": float("nan")}}):
        ...     try:
        ...         Section.model_validate(bad)
        ...     except ValidationError as e:
        ...         print(e.errors()[0]["msg"])
        Value error, must be a number, not a boolean
        Value error, we must be a finite number (got nan); .nan, .inf, -.inf, nan and inf are not allowed
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is None:
            return v
        leaves = _leaf_types(field.annotation)
        if isinstance(v, bool):
            if bool not in leaves and Any not in leaves and any(t in (int, float) for t in leaves):
                raise ValueError("must be a number, not a boolean")
            return v
        if isinstance(v, Mapping) and any(isinstance(t, type) and issubclass(t, BaseModel)
                                          for t in leaves):
            return v  # a section: it checks its own fields
        if leaves == [str]:
            return v
        found = _non_finite(v)
        if found is not None:
            bad = _lookup(v, found) if found else v
            where = f"{found} must be a finite number (got {bad!r})" if found \
                else "must be a finite number"
            raise ValueError(f"{where}; .nan, .inf, -.inf, nan and inf are not allowed")
        return v


class ExperimentSection(Strict):
    """What every run has: a name (the default output folder ``runs/<name>-<time>``), the
    seed (weights, feedback matrices, data order, noise), the device and CPU threads."""

    name: str = "run"
    seed: int = 0
    device: str = Field(
        "auto", description="auto (CUDA when present, else the CPU), cpu, cuda or cuda:N")
    threads: int | None = Field(None, ge=1, description="torch CPU threads during the run "
                                                        "(None: torch's default)")
    force: bool = Field(False, description="skip the memory estimate made before any work")

    @field_validator("device")
    @classmethod
    def _device_name(cls, v: str) -> str:
        check_device_name(v)
        return v


CONVERT_OPTIONS = ("init", "scale", "constrain_norm", "copy_weights", "constrain_feedback")

#: the method that trains a spiking network (``model.kind: spiking``) by e-prop
#: (:class:`bionn.learning.EProp`) instead of converting it
EPROP_METHOD = "eprop"
#: ``model.options`` of ``method: eprop`` (arguments of :class:`bionn.learning.EProp`)
EPROP_OPTIONS = ("feedback",)


def _methods() -> tuple[str, ...]:
    from bionn.learning import METHODS  # lazy: bionn.learning imports bionn.rate

    return (*METHODS, EPROP_METHOD)


def _eprop_options(v: dict[str, Any]) -> dict[str, Any]:
    from bionn.learning import EPROP_FEEDBACK

    bad = sorted(set(v) - set(EPROP_OPTIONS))
    if bad:
        raise ValueError(f"unknown e-prop option(s) {bad} for method 'eprop'; allowed: "
                         f"{list(EPROP_OPTIONS)}")
    if "feedback" in v and v["feedback"] not in EPROP_FEEDBACK:
        raise ValueError(f"options.feedback must be one of {list(EPROP_FEEDBACK)}; "
                         f"got {v['feedback']!r}")
    return v


class MirrorOptions(Strict):
    """Arguments of :func:`bionn.learning.mirror` (method ``wm``), called after each step."""

    eta: float = Field(0.01, ge=0, allow_inf_nan=False)
    noise_amplitude: float = Field(0.1, gt=0, allow_inf_nan=False)
    n_samples: int = Field(128, ge=1)
    growth_control: bool = False
    damping: float = Field(0.5, gt=0, allow_inf_nan=False)
    match_norm: bool = False


class CreditAssignmentFields(Strict):
    """How a model learns (part of every ``model:`` section): a :func:`bionn.learning.convert`
    method and its options, plus the :func:`bionn.learning.mirror` arguments for ``wm``
    (called by the runner after each optimizer step); or, for ``model.kind: spiking`` of a
    rate-task run, ``method: eprop`` with ``options: {feedback: symmetric | random |
    adaptive}`` (:class:`bionn.learning.EProp`, no conversion)."""

    method: str = "bp"
    options: dict[str, Any] = Field(default_factory=dict)
    mirror: MirrorOptions = Field(default_factory=MirrorOptions)

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in _methods():
            raise ValueError(f"unknown method {v!r}; allowed: {list(_methods())}")
        return v

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from bionn.learning.feedback import INITS

        if info.data.get("method") == EPROP_METHOD:
            return _eprop_options(v)
        bad = sorted(set(v) - set(CONVERT_OPTIONS))
        if bad:
            only = [k for k in bad if k in EPROP_OPTIONS]
            hint = f" ({only} only with method: eprop)" if only else ""
            raise ValueError(f"unknown convert option(s) {bad}; allowed: "
                             f"{list(CONVERT_OPTIONS)}{hint}")
        if "init" in v and v["init"] not in INITS:
            raise ValueError(f"options.init must be one of {list(INITS)}; got {v['init']!r}")
        if "scale" in v and (isinstance(v["scale"], bool) or not isinstance(v["scale"], (int, float))
                             or not math.isfinite(v["scale"])):
            raise ValueError(f"options.scale must be a finite number; got {v['scale']!r}")
        for key in ("constrain_norm", "copy_weights", "constrain_feedback"):
            if key in v and not isinstance(v[key], bool):
                raise ValueError(f"options.{key} must be true or false; got {v[key]!r}")
        return v

    @model_validator(mode="after")
    def _eprop_kind(self) -> CreditAssignmentFields:
        if self.method == EPROP_METHOD:
            kind = getattr(self, "kind", None)
            if kind != "spiking":
                what = (f"model.kind: {kind!r}" if kind is not None
                        else "a classification run (model.architecture)")
                raise ValueError(f"model.method: 'eprop' trains a spiking network of a rate-task "
                                 f"run (model.kind: spiking), not {what}")
        return self


DEVICE_NAMES = "auto, cpu, cuda or cuda:N (N a GPU index)"


def check_device_name(name: str) -> None:
    """Refuse a device name other than ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    kind, _, index = name.partition(":")
    if name in ("auto", "cpu", "cuda") or (kind == "cuda" and index.isdigit()):
        return
    raise ValueError(f"unknown device {name!r}; allowed: {DEVICE_NAMES}")


def pick_device(name: str, field: str = "experiment.device") -> torch.device:
    """The one device picker: ``auto`` -> CUDA when present, else CPU; ``cuda`` or
    ``cuda:N`` without that GPU is a :class:`ConfigError`."""
    try:
        check_device_name(name)
    except ValueError as e:
        raise ConfigError(f"{field}: {e}") from None
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.partition(":")[2] or 0)
        if index >= available:
            have = (f"this machine has {available} GPU(s): cuda:0..cuda:{available - 1}"
                    if available else "CUDA is not available here")
            raise ConfigError(f"{field}: {name!r} was asked for but {have} "
                              f"(allowed here: auto, cpu{', cuda' if available else ''})")
    return torch.device(name)


def plain_type(annotation: Any, tensor: Any = float) -> Any:
    """A constructor annotation as a config value type: ``Tensor`` becomes ``tensor``,
    ``Sequence``/``Mapping`` become ``list``/``dict`` (YAML has no other containers)."""
    if annotation is torch.Tensor:
        return tensor
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        parts = tuple(dict.fromkeys(plain_type(a, tensor) for a in args))
        return parts[0] if len(parts) == 1 else typing.Union[parts]  # noqa: UP007
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        k, v = args or (str, Any)
        return dict[plain_type(k, tensor), plain_type(v, tensor)]
    if origin is tuple:
        return tuple[tuple(plain_type(a, tensor) for a in args)] if args else tuple
    if origin is not None and isinstance(origin, type) and issubclass(origin, Sequence) \
            and origin is not str:
        return list[plain_type(args[0], tensor)] if args else list
    return annotation


def _optimizer_parameters(cls: type) -> dict[str, inspect.Parameter]:
    return {k: p for k, p in inspect.signature(cls).parameters.items()
            if k != "params" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


class OptimizerConfig(BaseModel):
    """``{type: NAME, <keyword arguments of that torch.optim class>}``.

    ``type`` is a key of :data:`OPTIMIZERS`, case-insensitive (stored in lower case); the
    other keys are checked against the optimizer's own signature (its defaults apply to
    what is left out) and typed from its annotations.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    type: str = "adam"

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        name = str(data.get("type", "adam")).lower()
        if name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer type {data.get('type')!r}; allowed: "
                             f"{list(OPTIMIZERS)} (any case)")
        data["type"] = name
        params = _optimizer_parameters(OPTIMIZERS[name])
        hints = typing.get_type_hints(OPTIMIZERS[name].__init__)
        for key, value in data.items():
            if key == "type":
                continue
            if key not in params:
                raise ValueError(f"{key!r} is not an argument of {name} "
                                 f"({OPTIMIZERS[name].__name__}); allowed: "
                                 f"type, {', '.join(params)}")
            hint = plain_type(hints.get(key, Any))
            try:
                data[key] = TypeAdapter(hint).validate_python(value)
            except ValidationError:
                raise ValueError(f"{key}: expected {_type_name(hint)} for {name} "
                                 f"(default {params[key].default!r}); got {value!r}"
                                 f"{number_hint(value)}") from None
            if isinstance(data[key], float) and (not math.isfinite(data[key]) or data[key] < 0):
                raise ValueError(f"{key} must be a finite number >= 0; got {value!r}")
        if "lr" in data and not data["lr"] > 0:
            raise ValueError(f"lr must be > 0; got {data['lr']!r}")
        return data

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments given (besides ``type``)."""
        return dict(self.model_extra or {})


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def build_optimizer(cfg: OptimizerConfig, params: Any) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer ``cfg`` names, over ``params``."""
    return OPTIMIZERS[cfg.type](params, **cfg.kwargs())


# --------------------------------------------------------------------------------------------
# Configs of the old shape: say exactly what changed
# --------------------------------------------------------------------------------------------
_MOVED = ("name", "seed", "device", "threads")


def check_shape(data: Mapping[str, Any], command: str = "run") -> None:
    """Raise :class:`ConfigError` naming every change from the old config shape in ``data``:
    top-level ``name``/``seed``/``device`` (now in ``experiment:``), and for ``run``/
    ``compare``/``sweep`` a string ``training.optimizer`` with ``training.lr``/
    ``training.weight_decay`` (now ``training.optimizer: {type: ..., lr: ...}``)."""
    changes = []
    moved = [k for k in _MOVED if k in data]
    if moved:
        keys = "/".join(f"`{k}`" for k in moved)
        given = ", ".join(f"{k}: {data[k]}" for k in moved)
        changes.append(f"top-level {keys} moved into the `experiment:` section "
                       f"(write `experiment: {{{given}}}`)")
    training = data.get("training")
    if command != "simulate" and isinstance(training, Mapping):
        opt = training.get("optimizer")
        loose = [k for k in ("lr", "weight_decay") if k in training]
        if isinstance(opt, str) or loose:
            new = {"type": (opt if isinstance(opt, str) else "adam").lower(),
                   **{k: training[k] for k in loose}}
            old = ", ".join(([f"`training.optimizer: {opt}`"] if isinstance(opt, str) else [])
                            + [f"`training.{k}`" for k in loose])
            body = ", ".join(f"{k}: {v}" for k, v in new.items())
            changes.append(f"{old} is now one mapping, `training.optimizer: {{{body}}}` "
                           f"(type: one of {', '.join(OPTIMIZERS)}, any case; other keys are "
                           f"the torch optimizer's arguments)")
    if changes:
        raise ConfigError("this config has the old shape; what changed:\n"
                          + "\n".join(f"  - {c}" for c in changes))
