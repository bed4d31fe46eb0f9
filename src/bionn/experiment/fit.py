"""``bionn fit CONFIG.yaml``: train a rate model so that some of its units reproduce
recorded activity (:func:`bionn.analysis.fitting.fit` from a config file).

    bionn fit CONFIG.yaml [key=value ...] [--out DIR] [--overwrite] [--quiet] [--device D]

A config has the shape every command shares, an ``experiment`` section (name, seed, device,
threads) and three sections of its own::

    experiment: {name: fit_teacher, seed: 0, device: cpu}
    data: {path: recording.npz}            # or teacher:<seed>; relative to the config's folder
    model: {kind: ctrnn, n_hidden: 60, activation: tanh, tau: 50.0}
    fit: {method: bptt, steps: 300, lr: 0.02, train_trials: 0.75}

* ``data``: the recording (:func:`bionn.analysis.fitting.load_recording`: ``.npy``, ``.npz``,
  ``.h5``/``.hdf5``, ``.nwb``) with ``dt`` (ms), ``layout``, ``kind`` (``rates`` or
  ``counts``), ``key`` and ``units`` (a subset of the recorded neurons, by index; table rows
  for NWB). ``path: teacher:<seed>`` generates the activity of a random teacher network
  instead (:func:`teacher_recording`, sized by ``data.teacher``), so a config runs with no
  file.
* ``model``: ``kind: ctrnn``, ``connectome`` or ``spiking`` (the ``model`` sections of
  ``bionn run``, :data:`bionn.experiment.models.MODEL_KINDS`) or ``force`` (a
  :class:`~bionn.analysis.fitting.ForceNetwork`). ``n_input`` comes from the recording's
  inputs (one zero input without inputs), ``dt`` from the recording (divided by
  ``fit.steps_per_bin``); there is no readout. A spiking model's units are read as firing
  rates in spikes/s (``fit.rate_tau``), fitted by BPTT.
* ``fit``: which model units follow the recorded neurons (``units``, default the first
  ``n``), ``method`` (``bptt``, ``force``, ``full_force``), ``loss`` (``mse`` for rates,
  ``poisson`` for counts by default), ``steps``, ``lr``, ``train_trials`` (a fraction, a
  count or indices; the rest are held out, drawn with ``experiment.seed``), the model steps
  per recording bin (``steps_per_bin``), the spike filter of a spiking model (``rate_tau``,
  ms) and the RLS options (``rls``).

Everything is checked before any output folder is made (unknown keys, the data file, its
``dt`` against ``data.dt``, units out of range, a model too small for the recording,
methods the model cannot take); a refusal exits 2 naming the field or file. The output
folder (``--out``, default ``runs/<name>-<time>``; one that holds anything is refused unless
``--overwrite``: :func:`bionn.experiment.checkpoint.claim_output_folder`) receives, each
file written atomically: ``config.yaml`` (resolved: the data file's absolute path, ``dt``,
``kind``, the fitted units and the loss written out), ``fit.json`` (the summary, also the
last line of stdout), ``model.pt`` (the fitted model's ``state_dict``) and
``figures/fit_curve.png``, ``figures/fit_examples.png``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from bionn._core.errors import ConfigError, format_errors
from bionn.experiment.checkpoint import atomic_write_text, claim_output_folder, save_checkpoint
from bionn.experiment.config import apply_overrides, dump_config, read_yaml
from bionn.experiment.models import MODEL_KINDS
from bionn.experiment.schema import ExperimentSection, Strict, check_shape, pick_device

__all__ = [
    "FIT_MODEL_KINDS",
    "FitConfig",
    "FitSection",
    "DataSection",
    "ForceSection",
    "TeacherSection",
    "add_parser",
    "cmd_fit",
    "load_fit_config",
    "prepare_fit",
    "run_fit",
    "teacher_recording",
    "validate_fit_config",
]

#: ``model.kind`` values ``bionn fit`` trains
FIT_MODEL_KINDS = ("ctrnn", "connectome", "spiking", "force")
#: ``data.path`` of a generated teacher recording: ``teacher:<seed>``
TEACHER = "teacher:"
#: the recording's time step (ms) of a teacher when ``data.dt`` is not given
TEACHER_DT = 10.0


# --------------------------------------------------------------------------------------------
# The config
# --------------------------------------------------------------------------------------------
class TeacherSection(Strict):
    """The random teacher of ``data.path: teacher:<seed>``: a tanh
    :class:`~bionn.analysis.fitting.ForceNetwork` of ``n_units`` (gain ``g``, ``tau`` ms)
    run on ``trials`` trials of ``steps`` steps, two inputs (a pulse of graded amplitude on
    the first, a sine of varied amplitude on the second), ``n_recorded`` of its units
    (drawn at random) recorded. With ``max_rate`` (spikes/s) a unit's rate ``r`` in
    [-1, 1] is recorded as ``max_rate (1 + r) / 2`` spikes/s (for spiking models), and
    ``data.kind: counts`` records Poisson counts of that rate per bin instead."""

    n_units: int = Field(40, gt=0)
    n_recorded: int = Field(15, gt=0)
    trials: int = Field(16, ge=1)
    steps: int = Field(60, ge=2)
    tau: float = Field(50.0, gt=0, description="ms")
    g: float = Field(1.2, ge=0)
    max_rate: float | None = Field(None, gt=0, description="spikes/s: record max_rate (1 + r) / 2")

    @model_validator(mode="after")
    def _fits(self) -> TeacherSection:
        if self.n_recorded > self.n_units:
            raise ValueError(f"n_recorded ({self.n_recorded}) must be <= n_units ({self.n_units})")
        return self


class DataSection(Strict):
    """Where the recording is and how to read it (see the module docstring)."""

    path: str = Field(description="a recording file (relative to the config's folder) or "
                                  "teacher:<seed>")
    dt: float | None = Field(None, gt=0, description="ms per bin; must match the file's own dt")
    layout: str | None = Field(None, description="stored axes, e.g. 'neurons x time x trials'")
    kind: Literal["rates", "counts"] | None = None
    key: str | None = Field(None, description="the array of a .npz/.h5 file holding the data")
    units: list[int] | None = Field(None, description="recorded neurons to fit (indices; NWB "
                                                      "table rows)")
    teacher: TeacherSection = Field(default_factory=TeacherSection)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name a recording file or teacher:<seed>")
        if v.startswith(TEACHER):
            seed = v[len(TEACHER):]
            if not seed.strip().lstrip("-").isdigit():
                raise ValueError("teacher:<seed> needs an integer seed")
        return v

    @field_validator("layout")
    @classmethod
    def _layout(cls, v: str | None) -> str | None:
        if v is not None:
            from bionn.analysis.fitting import parse_layout

            parse_layout(v)
        return v

    @field_validator("units")
    @classmethod
    def _units(cls, v: list[int] | None) -> list[int] | None:
        if v is not None:
            if not v:
                raise ValueError("must list at least one neuron (or be left out: all neurons)")
            if len(set(v)) != len(v):
                raise ValueError("must not repeat a neuron")
        return v

    @property
    def is_teacher(self) -> bool:
        return self.path.startswith(TEACHER)


class ForceSection(Strict):
    """``model: {kind: force}``: a :class:`~bionn.analysis.fitting.ForceNetwork` (tanh,
    ``J ~ N(0, g^2 / n_hidden)``, no constraint)."""

    kind: Literal["force"] = "force"
    n_hidden: int = Field(100, gt=0)
    tau: float = Field(50.0, gt=0, description="ms")
    g: float = Field(1.5, ge=0)
    input_scale: float = Field(1.0, ge=0)
    bias: bool = False
    preact_noise: float = Field(0.0, ge=0)


class RLSSection(Strict):
    """Recursive least squares settings (``fit.method: force | full_force``)."""

    alpha: float = Field(1.0, gt=0, description="P_0 = I / alpha")
    learn_every: int = Field(1, ge=1)
    train_input: bool = True


class FitSection(Strict):
    """How to fit (arguments of :func:`bionn.analysis.fitting.fit`)."""

    units: list[int] | None = Field(None, description="the model unit of each recorded neuron "
                                                      "(default the first n)")
    method: Literal["bptt", "force", "full_force"] = "bptt"
    loss: Literal["mse", "poisson"] | None = Field(None, description="default: mse for rates, "
                                                                     "poisson for counts")
    steps: int = Field(300, ge=1, description="Adam steps (bptt) or passes (force, full_force)")
    lr: float = Field(1e-2, gt=0)
    train_trials: int | float | list[int] | None = Field(
        0.75, description="a fraction or count of trials drawn with experiment.seed, or their "
                          "indices; the others are held out (null: all, none held out)")
    grad_clip: float | None = Field(1.0, gt=0)
    initial_state: Literal["model", "data"] = "model"
    poisson_link: Literal["rate", "softplus"] = "rate"
    rate_scale: float = Field(1.0, gt=0)
    steps_per_bin: int = Field(1, ge=1, description="model steps per recording bin (bptt): the "
                                                    "model's dt is data.dt / steps_per_bin")
    rate_tau: float = Field(0.0, ge=0, description="ms: the exponential filter of a spiking "
                                                    "model's spikes before binning (0: none)")
    rls: RLSSection = Field(default_factory=RLSSection)
    examples: int = Field(4, ge=1, description="neurons drawn in figures/fit_examples.png")


class FitConfig(Strict):
    """A ``bionn fit`` config (validated through :func:`validate_fit_config`, which picks
    the ``model`` section of ``model.kind``)."""

    experiment: ExperimentSection = Field(default_factory=lambda: ExperimentSection(name="fit"))
    data: DataSection
    model: ForceSection
    fit: FitSection = Field(default_factory=FitSection)


@cache
def fit_config_type(kind: str) -> type[FitConfig]:
    """:class:`FitConfig` with the ``model`` section of ``model.kind: kind``."""
    section = ForceSection if kind == "force" else MODEL_KINDS[kind].config
    return create_model(f"FitConfig[{kind}]", __base__=FitConfig, model=(section, ...))


# what ``bionn run`` says of the arguments it supplies, said for ``bionn fit``
_WORDING = {
    "the model steps at its task's time step; set task.dt (ms) instead":
        "the model steps at the recording's time step (data.dt)",
    "the run takes it from the task (task.n_input)": "bionn fit takes it from the recording's inputs",
    "the run takes it from the task (task.n_output)": "bionn fit builds no readout to fit",
    "the run seeds the weights": "bionn fit seeds the weights",
    "task.dt": "data.dt",
}


def _reword(text: str) -> str:
    for old, new in _WORDING.items():
        text = text.replace(old, new)
    return text


def validate_fit_config(data: dict[str, Any]) -> FitConfig:
    """Validate a nested dict; raises :class:`ConfigError` naming every bad field."""
    check_shape(data, "fit")
    model = data.get("model")
    if model is None:
        raise ConfigError(f"invalid config:\n  model: missing (kind: one of {', '.join(FIT_MODEL_KINDS)})")
    if not isinstance(model, dict):
        raise ConfigError(f"invalid config:\n  model: must be a mapping (got {model!r})")
    kind = str(model.get("kind", "ctrnn"))
    if kind not in FIT_MODEL_KINDS:
        raise ConfigError(f"invalid config:\n  model.kind: unknown model kind {kind!r} "
                          f"(allowed: {', '.join(FIT_MODEL_KINDS)})")
    cls = fit_config_type(kind)
    try:
        cfg = cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_reword(format_errors(e, cls))) from None
    method = getattr(cfg.model, "method", "bp")
    if method != "bp":
        raise ConfigError(f"invalid config:\n  model.method: {method!r} is a credit-assignment "
                          "method of bionn run; bionn fit trains with fit.method (bptt, force, "
                          "full_force)")
    return cfg


def load_fit_config(path: str | Path, overrides: list[str] | None = None) -> FitConfig:
    """Read a YAML fit config through the one safe reader, apply ``key=value`` overrides
    and validate."""
    return validate_fit_config(apply_overrides(read_yaml(path), overrides or []))


# --------------------------------------------------------------------------------------------
# Preparation: everything that can fail, before any output
# --------------------------------------------------------------------------------------------
@dataclass
class Prepared:
    """What :func:`prepare_fit` checked and built."""

    recording: Any
    model: torch.nn.Module
    units: list[int]
    train: list[int]
    test: list[int]
    loss: str
    device: torch.device
    data_path: str  # the absolute file, or teacher:<seed>


def teacher_recording(seed: int, teacher: TeacherSection | None = None,
                      dt: float = TEACHER_DT, kind: str = "rates") -> Any:
    """The recording of ``data.path: teacher:<seed>``: the rates of ``teacher.n_recorded``
    units (drawn at random) of a random tanh network (see :class:`TeacherSection`), with
    its two inputs: rates (in spikes/s with ``teacher.max_rate``) or, ``kind="counts"``,
    Poisson counts per bin of ``max_rate (1 + r) / 2`` drawn with the same seed.

    Example:
        >>> rec = teacher_recording(0, TeacherSection(trials=4, steps=10))
        >>> rec.data.shape, rec.inputs.shape, rec.dt
        (torch.Size([4, 10, 15]), torch.Size([4, 10, 2]), 10.0)
    """
    from bionn.analysis.fitting import ForceNetwork, Recording

    t = teacher or TeacherSection()
    gen = torch.Generator().manual_seed(int(seed))
    net = ForceNetwork(2, t.n_units, dt=dt, tau=t.tau, g=t.g, generator=gen)
    K, T = t.trials, t.steps
    x = torch.zeros(K, T, 2)
    on, off = max(1, T // 12), max(2, T // 3)
    x[:, on:off, 0] = torch.linspace(-1, 1, K)[:, None] * 1.5
    x[:, :, 1] = (torch.sin(torch.arange(K) * 2.4)[:, None]
                  * torch.sin(2 * torch.pi * torch.arange(T) / (2 * T / 3)))
    with torch.no_grad():
        rates = net(x)[1]
    recorded = torch.randperm(t.n_units, generator=gen)[:t.n_recorded]
    rates = rates[..., recorded]
    if t.max_rate is not None:
        rates = t.max_rate * (1.0 + rates) / 2.0
    if kind == "counts":
        if t.max_rate is None:
            raise ValueError("Poisson counts need data.teacher.max_rate (spikes/s)")
        return Recording(torch.poisson(rates * (dt / 1000.0), generator=gen), dt, inputs=x, kind="counts")
    return Recording(rates, dt, inputs=x)


def _data_file(cfg: FitConfig, base: Path) -> Path:
    path = Path(cfg.data.path).expanduser()
    full = path if path.is_absolute() else base / path
    if not full.is_file():
        where = "" if path.is_absolute() else f", relative to the config's folder {str(base)!r}"
        what = "is a folder, not a file" if full.is_dir() else "does not exist"
        raise ConfigError(f"data.path: the recording {str(full)!r} {what} (data.path: "
                          f"{cfg.data.path!r}{where})")
    return full.resolve()


def _load(cfg: FitConfig, base: Path) -> tuple[Any, str]:
    """The recording and its source (absolute path or teacher:<seed>); data.units applied."""
    from bionn.analysis.fitting import load_recording

    d = cfg.data
    if d.is_teacher:
        for name in ("layout", "key"):
            if getattr(d, name) is not None:
                raise ConfigError(f"data.{name}: a teacher recording (data.path: {d.path!r}) is "
                                  f"generated, not read; leave data.{name} out")
        if d.kind == "counts" and d.teacher.max_rate is None:
            raise ConfigError("data.kind: a teacher's spike counts (counts) are drawn at "
                              "max_rate (1 + r) / 2 spikes/s; set data.teacher.max_rate")
        rec = teacher_recording(int(d.path[len(TEACHER):]), d.teacher, d.dt or TEACHER_DT,
                                d.kind or "rates")
        source = d.path
    else:
        path = _data_file(cfg, base)
        source = str(path)
        nwb = path.suffix.lower() == ".nwb"
        kwargs = dict(layout=d.layout, kind=d.kind, key=d.key)
        if nwb:
            kwargs.pop("key")
        try:
            if nwb or path.suffix.lower() == ".npy":
                rec = load_recording(path, dt=d.dt, units=d.units if nwb else None, **kwargs)
            else:  # the file may store its dt: data.dt must agree with it
                try:
                    rec = load_recording(path, **kwargs)
                except ConfigError as e:
                    if d.dt is None or ": dt: missing" not in str(e):
                        raise
                    rec = load_recording(path, dt=d.dt, **kwargs)
                if d.dt is not None and not math.isclose(rec.dt, d.dt, rel_tol=1e-9):
                    raise ConfigError(f"data.dt: {d.dt:g} ms differs from the dt stored in "
                                      f"{str(path)!r} ({rec.dt:g} ms); bionn fit does not rebin: "
                                      "leave data.dt out or give the file's own dt")
        except ConfigError as e:
            raise ConfigError(f"data: {e}") from None
        except ImportError as e:
            raise ConfigError(f"data.path: {e}") from None
        except ValueError as e:
            raise ConfigError(f"data: {path}: {e}") from None
        if nwb:
            return rec, source
    if d.units is not None:
        bad = [u for u in d.units if not 0 <= u < rec.n_neurons]
        if bad:
            raise ConfigError(f"data.units: neuron index {bad[0]} out of range (the recording "
                              f"{source!r} has {rec.n_neurons} neurons: 0..{rec.n_neurons - 1})")
        from dataclasses import replace

        regions = None if rec.regions is None else tuple(rec.regions[u] for u in d.units)
        rec = replace(rec, data=rec.data[..., d.units], regions=regions)
    return rec, source


class _Shape:
    """What a ``model`` builder of :data:`MODEL_KINDS` reads of a task."""

    def __init__(self, n_input: int, dt: float) -> None:
        self.n_input, self.n_output, self.dt = n_input, 1, dt


def _memory(cfg: FitConfig, shape: _Shape, n_train: int, n_time: int) -> None:
    from bionn.experiment.config import available_memory

    m = cfg.model
    if isinstance(m, ForceSection):
        rows = m.n_hidden + shape.n_input + 1
        need = 8 * (rows * rows + 4 * n_train * n_time * m.n_hidden)
        what, field, lower = f"a ForceNetwork of {m.n_hidden} units", "model.n_hidden", "model.n_hidden"
    else:
        estimate = MODEL_KINDS[m.kind].memory
        if estimate is None:
            return
        need, what, field, lower = estimate(m, shape, n_train, n_time)
    have = available_memory()
    if have is not None and need > 0.8 * have:
        raise ConfigError(f"{field}: {what} needs about {need / 1e9:.3g} GB to fit {n_train} trials "
                          f"of {n_time} steps but {have / 1e9:.3g} GB of memory is available; lower "
                          f"{lower} or the trials (experiment.force: true, or --force, skips this "
                          "estimate)")


def _build(cfg: FitConfig, shape: _Shape) -> torch.nn.Module:
    m = cfg.model
    gen = torch.Generator().manual_seed(int(cfg.experiment.seed))
    if isinstance(m, ForceSection):
        from bionn.analysis.fitting import ForceNetwork

        if m.tau < shape.dt:
            raise ConfigError(f"model.tau ({m.tau:g} ms) must be >= data.dt ({shape.dt:g} ms) so "
                              "that alpha = dt/tau <= 1")
        return ForceNetwork(shape.n_input, m.n_hidden, 1, dt=shape.dt, tau=m.tau, g=m.g,
                            input_scale=m.input_scale, bias=m.bias, preact_noise=m.preact_noise,
                            generator=gen)
    kind = MODEL_KINDS[m.kind]
    try:
        if kind.check is not None:
            kind.check(m, shape)
        return kind.build(m, shape, gen)
    except ConfigError as e:
        raise ConfigError(_reword(str(e))) from None
    except (TypeError, ValueError) as e:
        text = _reword(str(e))
        raise ConfigError(text if text.startswith("model.") else f"model: {text}") from None


def prepare_fit(cfg: FitConfig, base: str | Path = ".") -> Prepared:
    """Load the recording, build the model and check every setting against them, before
    any output; raises :class:`ConfigError` naming the field or file. ``base`` is the
    folder a relative ``data.path`` is read from (the config's folder)."""
    from bionn.analysis.fitting.fit import _check_units, _n_hidden, _split, is_spiking
    from bionn.analysis.fitting.force import check_force_model

    device = pick_device(cfg.experiment.device)
    f = cfg.fit
    rec, source = _load(cfg, Path(base))
    loss = f.loss or ("poisson" if rec.kind == "counts" else "mse")
    if loss == "poisson" and rec.kind != "counts":
        raise ConfigError("fit.loss: 'poisson' fits spike counts but the recording holds rates "
                          "(data.kind: rates); use loss: mse")
    if loss == "mse" and rec.kind != "rates":
        raise ConfigError("fit.loss: 'mse' fits rates but the recording holds spike counts "
                          "(data.kind: counts); use loss: poisson")
    if loss == "poisson" and f.method != "bptt":
        raise ConfigError(f"fit.method: {f.method!r} fits rates by least squares; spike counts "
                          "(loss: poisson) need method: bptt")
    try:
        train, test = _split(rec.n_trials, f.train_trials,
                             torch.Generator().manual_seed(int(cfg.experiment.seed)))
    except ValueError as e:
        raise ConfigError(f"fit.train_trials: {e} (the recording has {rec.n_trials} trials)") from None
    if f.method != "bptt" and f.steps_per_bin != 1:
        raise ConfigError(f"fit.steps_per_bin: {f.method} (recursive least squares) takes one model "
                          "step per bin; use steps_per_bin: 1 or method: bptt")
    shape = _Shape(max(1, rec.n_input), rec.dt / f.steps_per_bin)
    if not cfg.experiment.force:
        _memory(cfg, shape, len(train), rec.n_time * f.steps_per_bin)
    model = _build(cfg, shape)
    n_hidden = _n_hidden(model)
    if rec.n_neurons > n_hidden:
        field = "model.connectome" if cfg.model.kind == "connectome" else "model.n_hidden"
        raise ConfigError(f"{field}: the model has {n_hidden} units but the recording has "
                          f"{rec.n_neurons} neurons to fit (one unit per recorded neuron); give a "
                          "larger model or fewer neurons (data.units)")
    try:
        units = _check_units(f.units, rec.n_neurons, n_hidden)
    except ValueError as e:
        raise ConfigError(f"fit.units: {e}") from None
    if is_spiking(model):
        if f.method != "bptt":
            raise ConfigError(f"fit.method: {f.method!r} (recursive least squares on a tanh rate "
                              "network) cannot fit a spiking model; use method: bptt")
        if f.initial_state != "model":
            raise ConfigError("fit.initial_state: 'data' sets rate units' pre-activations; a "
                              "spiking model starts from its own initial state (model)")
        if f.poisson_link != "rate":
            raise ConfigError("fit.poisson_link: a spiking model's rates are spikes/s >= 0; its "
                              "expected count is the rate itself (poisson_link: rate)")
    elif f.method != "bptt":
        try:
            check_force_model(model, f.method, f.rls.train_input)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"fit.method: {e}") from None
    if f.initial_state == "data" and getattr(model, "activation_name", None) != "tanh":
        raise ConfigError("fit.initial_state: 'data' inverts tanh (h = atanh(d)); the model's "
                          f"activation is {getattr(model, 'activation_name', None)!r}")
    if f.method != "bptt":
        device = torch.device("cpu")  # RLS runs in float64 on the CPU
    return Prepared(rec, model, units.tolist(), train.tolist(), test.tolist(), loss, device, source)


def resolved_config(cfg: FitConfig, prep: Prepared) -> str:
    """The config as run, every default written out: the data file's absolute path, its
    dt and kind, the fitted units and the loss."""
    data = cfg.model_dump(mode="json")
    data["data"].update(path=prep.data_path, dt=prep.recording.dt, kind=prep.recording.kind)
    data["fit"].update(units=prep.units, loss=prep.loss)
    return dump_config(type(cfg).model_validate(data))


# --------------------------------------------------------------------------------------------
# The fit
# --------------------------------------------------------------------------------------------
def _finite(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _r2_summary(pred: torch.Tensor, data: torch.Tensor) -> dict[str, Any] | None:
    from bionn.analysis.fitting import r2_per_neuron

    if pred.shape[0] == 0:
        return None
    r2 = r2_per_neuron(pred, data)
    ok = r2[~torch.isnan(r2)]
    if ok.numel() == 0:
        return {"median": None, "min": None, "max": None, "constant_neurons": int(r2.numel())}
    return {"median": round(float(ok.median()), 4), "min": round(float(ok.min()), 4),
            "max": round(float(ok.max()), 4), "constant_neurons": int(r2.numel() - ok.numel())}


def run_fit(cfg: FitConfig, prep: Prepared, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Fit ``prep.model`` to ``prep.recording`` and write the outputs into ``out`` (see the
    module docstring); returns the summary (``fit.json``)."""
    from bionn.analysis.fitting import fit as fit_recording
    from bionn.analysis.fitting.fit import _n_hidden, is_spiking
    from bionn.viz.fitting import plot_fit_curve, plot_fit_examples

    folder = Path(out)
    atomic_write_text(folder / "config.yaml", resolved_config(cfg, prep))
    f, rec = cfg.fit, prep.recording
    threads = torch.get_num_threads()
    if cfg.experiment.threads is not None:
        torch.set_num_threads(int(cfg.experiment.threads))
    torch.manual_seed(int(cfg.experiment.seed))  # the model's noise, if any
    start = time.perf_counter()
    try:
        model = prep.model.to(prep.device)
        res = fit_recording(
            model, rec, prep.units, method=f.method, loss=prep.loss, steps=f.steps, lr=f.lr,
            train_trials=prep.train, progress=progress, initial_state=f.initial_state,
            grad_clip=f.grad_clip, poisson_link=f.poisson_link, rate_scale=f.rate_scale,
            rls_alpha=f.rls.alpha, learn_every=f.rls.learn_every, train_input=f.rls.train_input,
            steps_per_bin=f.steps_per_bin, rate_tau=f.rate_tau)
    finally:
        torch.set_num_threads(threads)
    wall = time.perf_counter() - start
    pred, data = res.prediction.double(), rec.data.double()
    spiking = is_spiking(model)
    train, test = res.train_trials, res.test_trials
    summary: dict[str, Any] = {
        "method": f.method, "loss": prep.loss, "model": cfg.model.kind,
        "model_class": type(model).__name__.removeprefix("Parametrized"), "n_hidden": _n_hidden(model),
        "spiking": spiking, "steps_per_bin": f.steps_per_bin,
        "rate_tau": f.rate_tau if spiking else None,
        "data": prep.data_path, "kind": rec.kind, "dt": rec.dt, "n_neurons": rec.n_neurons,
        "n_trials": rec.n_trials, "n_time": rec.n_time, "n_input": rec.n_input,
        "train_trials": len(train), "held_out_trials": test.tolist(),
        "pvar_train": round(res.pvar_train, 6),
        "pvar_test": None if res.pvar_test is None else round(res.pvar_test, 6),
        "r2_train": _r2_summary(pred[train], data[train]),
        "r2_test": _r2_summary(pred[test], data[test]),
    }
    if rec.kind == "counts":
        for name in ("train", "test"):
            v = res.metrics.get(f"bits_per_spike_{name}")
            summary[f"bits_per_spike_{name}"] = None if v is None else round(float(v), 6)
    summary.update(curve_length=len(res.curve),
                   loss_first=res.curve[0] if res.curve else None,
                   loss_last=res.curve[-1] if res.curve else None,
                   wall_s=round(wall, 3), device=str(prep.device))
    save_checkpoint(folder / "model.pt", {k: v.detach().cpu() for k, v in model.state_dict().items()})
    figures = folder / "figures"
    written = []
    if res.curve:
        plot_fit_curve(res.curve, figures / "fit_curve.png", method=f.method, loss=prep.loss)
        written.append(str(figures / "fit_curve.png"))
    shown = (test if len(test) else train)[:3].tolist()
    plot_fit_examples(data, pred, figures / "fit_examples.png", dt=rec.dt,
                      neurons=list(range(min(f.examples, rec.n_neurons))), trials=shown,
                      trial_labels=[f"{k} ({'held out' if len(test) else 'train'})" for k in shown],
                      ylabel="count per bin" if rec.kind == "counts"
                      else "rate (spikes/s)" if spiking else "rate")
    written.append(str(figures / "fit_examples.png"))
    summary["figures"] = written
    summary["out"] = str(folder)
    summary = _finite(summary)
    atomic_write_text(folder / "fit.json", json.dumps(summary, indent=2) + "\n")
    return summary


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------
def cmd_fit(args: Any) -> int:
    """``bionn fit``: see the module docstring."""
    path = Path(args.config)
    overrides = list(args.overrides)
    cfg = load_fit_config(path, overrides)
    base = path.resolve().parent
    if any(o.split("=", 1)[0] == "data.path" for o in overrides):
        base = Path.cwd()  # a path given on the command line is relative to where it was typed
    prep = prepare_fit(cfg, base)
    out = claim_output_folder(args.out, cfg.experiment.name, overwrite=args.overwrite,
                              resumable=False)
    summary = run_fit(cfg, prep, out, progress=not args.quiet)
    held = "" if summary["pvar_test"] is None else f", held-out {summary['pvar_test']:.4f}"
    print(f"fitted in {out}/ (config.yaml, fit.json, model.pt, figures/): pVar train "
          f"{summary['pvar_train']:.4f}{held}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``fit`` on an argparse subparsers object."""
    p = sub.add_parser("fit", help="train a model so that some of its units reproduce recorded "
                                   "activity (BPTT, FORCE, full-FORCE)")
    p.add_argument("config", help="YAML fit config (sections experiment, data, model, fit)")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. fit.steps=50")
    p.add_argument("--out", help="output folder (default runs/<name>-<time>)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the contents of --out (an earlier bionn output) before running")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
