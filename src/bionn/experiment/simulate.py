"""``bionn simulate``: run a ready spiking (or rate) network from a YAML config.

    bionn simulate CONFIG.yaml|NETWORK [key=value ...] [--out DIR] [--overwrite] [--quiet]

A config names a network of :data:`bionn.spiking.networks.NETWORKS` and its
builder arguments; every run setting left out takes the value of the
network's source (duration, dt, what to record, the transient skipped by the
measures, the figures). Everything is validated (field names, values, builder
arguments, numerical stability of the dt) before any output folder is made.

Example config (``configs/sim_coba.yaml``; the ``experiment`` section is the one every
command shares)::

    experiment: {name: coba, seed: 0, device: auto}
    network: {name: coba, params: {n: 4000}}
    run: {duration: 1000.0, dt: 0.1}
    measures: {t_start: 100.0}

The out folder (``runs/<name>-<time>`` by default; one that holds anything is refused
unless ``--overwrite``, which deletes its contents first:
:func:`bionn.experiment.checkpoint.claim_output_folder`) receives, each file written
atomically: ``config.yaml`` (resolved: every default written out),
``spikes.npz`` (per group ``<g>.trial``, ``<g>.step``, ``<g>.neuron`` index
arrays, spike time = ``(step + 1) * dt``, and ``<g>.n_neurons``; plus ``dt``,
``n_steps``, ``batch``, ``groups``), ``traces.npz`` (``<g>.<var>`` arrays
``(batch, n_records, n_recorded)``, ``<g>.neurons``, ``time_ms``),
``measures.json`` (per group :func:`bionn.spiking.measures.summarize`; for a
CANN the decoded bump position and height) and PNG figures under
``figures/``. The last stdout line is one JSON object: the measures plus
``"out"``.

Example:
    >>> cfg = load_sim_config(None, ["network.name=ei_balanced", "run.duration=50"])
    >>> cfg.run.dt, cfg.measures.t_start, cfg.figures
    (0.1, 10.0, ['raster', 'traces', 'rate_histogram'])
"""

from __future__ import annotations

import inspect
import io
import json
import math
import sys
import time
import typing
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from pydantic import (
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from bionn._core.errors import ConfigError, format_errors
from bionn.experiment.checkpoint import atomic_write_bytes, atomic_write_text, claim_output_folder
from bionn.experiment.config import apply_overrides, read_yaml
from bionn.experiment.schema import ExperimentSection, Strict, check_shape, pick_device

__all__ = [
    "FIGURES",
    "SimConfig",
    "cmd_simulate",
    "load_sim_config",
    "prepare",
    "simulate",
    "validate_sim_config",
]

FIGURES = ("raster", "traces", "bump", "rate_histogram")
#: a recording larger than this (bytes) triggers a warning
TRACE_WARN_BYTES = 2 * 1024**3


def _networks() -> dict:
    from bionn.spiking.networks import NETWORKS

    return NETWORKS


class NetworkSection(Strict):
    """Which ready network (a key of ``NETWORKS``) and its builder's keyword arguments."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        nets = _networks()
        if v not in nets:
            raise ValueError(f"unknown network {v!r}; allowed: {sorted(nets)}")
        return v


class SimRunSection(Strict):
    """Simulation settings; ``None`` takes the network's published value."""

    duration: float | None = Field(None, gt=0, allow_inf_nan=False, description="ms")
    dt: float | None = Field(None, gt=0, allow_inf_nan=False, description="ms")
    batch: int = Field(1, ge=1, description="independent trials run at once")
    record: dict[str, list[str]] | None = None
    record_every: int = Field(1, ge=1, description="record state variables every k steps")
    record_neurons: dict[str, int | list[int]] | None = None
    record_spikes: list[str] | None = Field(
        None, description="spiking groups whose spikes are recorded (None: every spiking group)")
    backend: Literal["torch", "cpp", "auto"] = Field(
        "torch", description="torch: PyTorch operations per step; cpp: the step compiled to "
                             "one C++ loop (same spikes; refused before the run where it does "
                             "not apply); auto: cpp where it applies")
    record_chunk_ms: float | None = Field(
        None, gt=0, allow_inf_nan=False,
        description="write spikes and traces to disk every this many ms (bounded memory; "
                    "a multiple of dt * record_every); None keeps them in memory")

    @field_validator("record_neurons")
    @classmethod
    def _neurons(cls, v: dict[str, int | list[int]] | None) -> dict[str, int | list[int]] | None:
        for g, sel in (v or {}).items():
            if isinstance(sel, int) and sel < 1:
                raise ValueError(
                    f"record_neurons.{g} must be >= 1 (the first n) or a list; got {sel}")
            if isinstance(sel, list) and (not sel or min(sel) < 0):
                raise ValueError(f"record_neurons.{g} must list neuron indices >= 0; got {sel}")
        return v


class MeasuresSection(Strict):
    """Analysis settings; ``t_start`` (ms) skips the initial transient."""

    t_start: float | None = Field(None, ge=0, allow_inf_nan=False)


class SimConfig(Strict):
    """A simulation: ``bionn simulate`` validates a YAML file into this."""

    experiment: ExperimentSection = Field(default_factory=lambda: ExperimentSection(name="sim"))
    dtype: Literal["float32", "float64"] = "float32"
    network: NetworkSection
    run: SimRunSection = Field(default_factory=SimRunSection)
    measures: MeasuresSection = Field(default_factory=MeasuresSection)
    figures: list[Literal["raster", "traces", "bump", "rate_histogram"]] | None = None

    @model_validator(mode="after")
    def _cross_checks(self) -> SimConfig:
        spec = _networks()[self.network.name]
        _check_params(self.network.name, spec, self.network.params)
        duration = self.run.duration if self.run.duration is not None else spec.duration
        dt = self.run.dt if self.run.dt is not None else spec.dt
        if duration < dt:
            raise ValueError(f"run.duration ({duration:g} ms) must be at least run.dt ({dt:g} ms)")
        t_start = self.measures.t_start if self.measures.t_start is not None else spec.t_start
        if self.measures.t_start is not None and t_start >= duration:
            raise ValueError(
                f"measures.t_start ({t_start:g} ms) must be < run.duration ({duration:g} ms)")
        if self.figures is not None:
            bad = [f for f in self.figures if f not in spec.figures]
            if bad:
                raise ValueError(f"figures {bad} do not apply to network {self.network.name!r}; "
                                 f"allowed: {list(spec.figures)}")
            record = self.run.record if self.run.record is not None else spec.record
            if "traces" in self.figures and not any(record.values()):
                raise ValueError("figures: 'traces' needs run.record to name a state variable")
            if "bump" in self.figures and not any(record.values()):
                raise ValueError("figures: 'bump' needs run.record (e.g. {cann: [u]})")
        return self


def _check_params(name: str, spec: Any, params: dict[str, Any]) -> None:
    """Builder arguments: known names and values of the annotated types."""
    allowed = spec.parameters()
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"network.params: unknown parameter(s) {unknown} for network {name!r}; "
                         f"allowed: {sorted(allowed)}")
    hints = typing.get_type_hints(spec.builder)
    for key, value in params.items():
        hint = hints.get(key)
        if hint is None:
            continue
        try:
            TypeAdapter(hint).validate_python(value, strict=True)
        except ValidationError:
            default = allowed[key].default
            shown = "" if default is inspect.Parameter.empty else f" (default {default!r})"
            raise ValueError(f"network.params.{key}: expected {_type_name(hint)}{shown}; "
                             f"got {value!r}") from None


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def validate_sim_config(data: dict[str, Any]) -> SimConfig:
    """Validate a nested dict and fill every unset run setting with the network's
    published value; raises :class:`ConfigError` naming every bad field (or, for a
    config of the old shape, what changed)."""
    check_shape(data, "simulate")
    try:
        cfg = SimConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e, SimConfig)) from None
    spec = _networks()[cfg.network.name]
    run = cfg.run.model_copy(update={
        "duration": cfg.run.duration if cfg.run.duration is not None else spec.duration,
        "dt": cfg.run.dt if cfg.run.dt is not None else spec.dt,
        "record": (cfg.run.record if cfg.run.record is not None
                   else {g: list(v) for g, v in spec.record.items()}),
        "record_neurons": (cfg.run.record_neurons if cfg.run.record_neurons is not None
                           else dict(spec.record_neurons)),
    })
    t_start = cfg.measures.t_start
    if t_start is None:  # the source's transient; a fifth of a run too short for it
        t_start = spec.t_start if spec.t_start < 0.5 * run.duration else 0.2 * run.duration
    figures = cfg.figures
    if figures is None:
        figures = [f for f in spec.figures
                   if f not in ("traces", "bump") or any(run.record.values())]
    resolved = cfg.model_dump()
    resolved.update(run=run.model_dump(), measures={"t_start": t_start}, figures=figures)
    try:
        return SimConfig.model_validate(resolved)
    except ValidationError as e:
        raise ConfigError(format_errors(e, SimConfig)) from None


def load_sim_config(path: str | Path | None, overrides: list[str] | None = None) -> SimConfig:
    """Load a YAML simulation config (or start from ``{}`` when ``path`` is None), apply
    ``key=value`` overrides and validate (see :func:`validate_sim_config`)."""
    data = {} if path is None else read_yaml(path)
    return validate_sim_config(apply_overrides(data, overrides or []))


def dump_sim_config(cfg: SimConfig) -> str:
    """The resolved config as YAML."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


# --------------------------------------------------------------------------------------------
# Preparation: everything that can fail, before any output
# --------------------------------------------------------------------------------------------
class Prepared(typing.NamedTuple):
    network: Any
    generator: torch.Generator
    device: torch.device
    dtype: torch.dtype
    record: dict[str, list[str]]
    record_neurons: dict[str, list[int]]
    warnings: list[str]
    record_spikes: list[str] | None = None


def _warn(msg: str) -> None:
    print(f"bionn simulate: warning: {msg}", file=sys.stderr)


def prepare(cfg: SimConfig) -> Prepared:
    """Build the network and check the run settings against it; raises :class:`ConfigError`.

    Risky but allowed choices are returned as warnings (and printed to stderr by
    :func:`simulate`).
    """
    spec = _networks()[cfg.network.name]
    warnings: list[str] = []
    device = pick_device(cfg.experiment.device)
    dtype = {"float32": torch.float32, "float64": torch.float64}[cfg.dtype]
    generator = torch.Generator().manual_seed(int(cfg.experiment.seed))
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        net = spec.build(generator=generator, **cfg.network.params)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"network.params: network {cfg.network.name!r} cannot be built: {e}") from None
    finally:
        torch.set_default_dtype(previous)
    dt, duration = float(cfg.run.dt), float(cfg.run.duration)
    try:
        net.check(dt)
    except ValueError as e:
        raise ConfigError(
            f"run.dt: {dt:g} ms is not usable for network {cfg.network.name!r}: {e}") from None
    if dt > spec.dt * (1 + 1e-9):
        warnings.append(f"run.dt={dt:g} ms is larger than the source's {spec.dt:g} ms; "
                        f"the dynamics may differ from the published ones")
    record = {g: list(v) for g, v in (cfg.run.record or {}).items() if v}
    for g, variables in record.items():
        if g not in net.groups:
            raise ConfigError(f"run.record: unknown group {g!r} for network {cfg.network.name!r}; "
                              f"groups: {list(net.groups)}")
        names = set(net.groups[g].initial_state(1))
        bad = sorted(set(variables) - names)
        if bad:
            raise ConfigError(
                f"run.record.{g}: unknown variable(s) {bad}; allowed: {sorted(names)}")
    record_neurons: dict[str, list[int]] = {}
    for g, sel in (cfg.run.record_neurons or {}).items():
        if g not in net.groups:
            raise ConfigError(
                f"run.record_neurons: unknown group {g!r}; groups: {list(net.groups)}")
        n = net.groups[g].n
        idx = list(range(min(int(sel), n))) if isinstance(sel, int) else list(sel)
        if max(idx) >= n:
            raise ConfigError(f"run.record_neurons.{g}: index {max(idx)} out of range for a group "
                              f"of {n} neurons")
        if g in record:
            record_neurons[g] = idx
    record_spikes = None if cfg.run.record_spikes is None else list(cfg.run.record_spikes)
    for g in record_spikes or []:
        if g not in net.groups:
            raise ConfigError(f"run.record_spikes: unknown group {g!r} for network "
                              f"{cfg.network.name!r}; groups: {list(net.groups)}")
        if not net.groups[g].spiking:
            raise ConfigError(f"run.record_spikes: group {g!r} does not spike (a rate group); "
                              f"spiking groups: {[k for k, v in net.groups.items() if v.spiking]}")
    n_steps = int(round(duration / dt))
    if cfg.run.record_chunk_ms is not None:
        chunk_steps = cfg.run.record_chunk_ms / (dt * int(cfg.run.record_every))
        if abs(chunk_steps - round(chunk_steps)) > 1e-9 or round(chunk_steps) < 1:
            raise ConfigError(f"run.record_chunk_ms: {cfg.run.record_chunk_ms} is not a multiple "
                              f"of run.dt * run.record_every = {dt * int(cfg.run.record_every)} ms")
    n_rec = n_steps // int(cfg.run.record_every)
    size = sum(len(v) * len(record_neurons.get(g, range(net.groups[g].n)))
               for g, v in record.items()) * n_rec * cfg.run.batch * dtype.itemsize
    if size > TRACE_WARN_BYTES:
        warnings.append(f"run.record keeps about {size / 1024**3:.1f} GiB of traces; consider "
                        f"run.record_neurons or run.record_every")
    net = net.to(device=device, dtype=dtype)
    if cfg.run.backend == "cpp":
        from bionn.spiking import compiled

        try:
            compiled.compile_network(
                net, dt=dt, batch=int(cfg.run.batch), dtype=dtype, record_spikes=record_spikes,
                record=record, record_every=int(cfg.run.record_every),
                record_neurons={g: (torch.as_tensor(record_neurons[g]) if g in record_neurons
                                    else None) for g in record})
        except (compiled.Unsupported, RuntimeError, OSError) as e:
            raise ConfigError(f"run.backend: 'cpp' cannot run network {cfg.network.name!r}: {e}; "
                              "allowed here: 'torch' or 'auto'") from e
    return Prepared(net, generator, device, dtype, record, record_neurons, warnings, record_spikes)


# --------------------------------------------------------------------------------------------
# Running and writing
# --------------------------------------------------------------------------------------------
def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _spike_arrays(result: Any) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {
        "dt": np.float64(result.dt),
        "n_steps": np.int64(int(round(result.duration / result.dt))),
        "groups": np.array(sorted(result.spikes), dtype=np.str_),
    }
    for g, sp in result.spikes.items():
        out["batch"] = np.int64(sp.batch)
        out[f"{g}.trial"] = sp.trial.cpu().numpy().astype(np.int32)
        out[f"{g}.step"] = sp.step.cpu().numpy().astype(np.int64)
        out[f"{g}.neuron"] = sp.neuron.cpu().numpy().astype(np.int32)
        out[f"{g}.n_neurons"] = np.int64(sp.n_neurons)
    return out


def _trace_arrays(result: Any) -> dict[str, np.ndarray]:
    out = {key: x.cpu().numpy() for key, x in result.traces.items()}
    out["time_ms"] = result.trace_times.cpu().numpy()
    for g, idx in result.recorded_neurons.items():
        out[f"{g}.neurons"] = idx.cpu().numpy().astype(np.int64)
    return out


def _bump_measures(net: Any, result: Any, t_start: float) -> dict[str, dict[str, Any]]:
    """Decoded bump of each recorded CANN group: position and height at the end, and
    the mean height over ``(t_start, end]``."""
    from bionn.spiking.networks import CANN1D, bump_position

    out: dict[str, dict[str, Any]] = {}
    for g, grp in net.groups.items():
        key = f"{g}.u"
        if (not isinstance(grp, CANN1D) or key not in result.traces
                or result.traces[key].shape[1] == 0):
            continue
        u = result.traces[key].to(torch.float64)  # (batch, T, n)
        x = grp.x.detach().cpu().to(torch.float64)[result.recorded_neurons[g]]
        pos = bump_position(u[:, -1], x, period=grp.z_range)
        times = result.trace_times
        sel = times > t_start
        height = u[:, sel].amax(-1).mean() if bool(sel.any()) else torch.tensor(math.nan)
        out[g] = {
            "n_neurons": grp.n,
            "bump_position_end": (_finite(pos.mean()) if pos.numel() == 1
                                  else [_finite(p) for p in pos]),
            "bump_height_end": _finite(u[:, -1].amax(-1).mean()),
            "bump_height_mean": _finite(height),
        }
    return out


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _stimulus_positions(net: Any, group: str, times: torch.Tensor) -> np.ndarray | None:
    from bionn.spiking.networks import bump_position

    spec = net.inputs.get(group)
    if spec is None:
        return None
    grp = net.groups[group]
    pos = []
    for t in times.tolist():
        value = spec(t - 1e-9) if callable(spec) else spec
        if isinstance(value, torch.Tensor) and value.numel() > 1:
            v = value.detach().cpu().reshape(-1, grp.n)[0].to(torch.float64)
            pos.append(float(bump_position(v, grp.x.detach().cpu(), period=grp.z_range)))
        else:
            pos.append(math.nan)
    return np.asarray(pos)


#: a conductance synapse with a reversal potential above this (mV) excites (glutamatergic
#: ~0 mV), below it inhibits (GABAergic -65 to -90 mV)
EXCITATORY_REVERSAL_MV = -40.0


def _cell_signs(net: Any) -> dict[str, torch.Tensor]:
    """+1 (E) / -1 (I) / 0 (unknown) per neuron of each group that has both E and I cells,
    read from its outgoing projections: a conductance synapse's reversal potential, else
    the connectivity's presynaptic sign, else the sign of the weights, over the
    projection's ``pre_range`` (e.g. COBA's one group ``P``: 3200 E, then 800 I cells)."""
    signs: dict[str, torch.Tensor] = {}
    for g, grp in net.groups.items():
        s = torch.zeros(grp.n)
        for p in net.projections:
            if p.pre != g:
                continue
            a, b = p.pre_range or (0, grp.n)
            if p.output == "conductance" and p.E is not None:
                s[a:b] = 1.0 if p.E > EXCITATORY_REVERSAL_MV else -1.0
            elif p.pre_sign is not None:
                s[a:b] = torch.where(p.pre_sign != 0, p.pre_sign.sign().cpu().float(), s[a:b])
            else:
                total = float(p.weight[p.edge_mask].sum())
                if total:
                    s[a:b] = math.copysign(1.0, total)
        if bool((s > 0).any()) and bool((s < 0).any()):
            signs[g] = s
    return signs


def _figures(cfg: SimConfig, prep: Prepared, result: Any, folder: Path,
             t_start: float) -> list[str]:
    from bionn.spiking.measures import neuron_rates
    from bionn.viz.spiking import plot_bump, plot_raster, plot_rate_histogram, plot_voltage_traces

    net, written = prep.network, []
    name = cfg.experiment.name
    title = name if name == cfg.network.name else f"{name} ({cfg.network.name})"
    for kind in cfg.figures or []:
        if kind == "raster" and result.spikes:
            fig = plot_raster(result, title=title, sign=_cell_signs(net))
            written.append(_save(fig, folder / "raster.png"))
        elif kind == "rate_histogram" and result.spikes:
            rates = {g: neuron_rates(sp, t_start=t_start) for g, sp in result.spikes.items()}
            fig = plot_rate_histogram(rates, title=f"{title}: rates after {t_start:g} ms")
            written.append(_save(fig, folder / "rate_histogram.png"))
        elif kind == "traces":
            for key in result.traces:
                g, var = key.split(".", 1)
                if result.traces[key].shape[1] == 0:
                    continue
                fig = plot_voltage_traces(result, g, var, title=f"{title}: {key}")
                written.append(_save(fig, folder / f"traces_{g}_{var}.png"))
        elif kind == "bump":
            from bionn.spiking.networks import CANN1D

            for g, grp in net.groups.items():
                key = f"{g}.u"
                if not isinstance(grp, CANN1D) or key not in result.traces:
                    continue
                idx = result.recorded_neurons[g]
                stim = _stimulus_positions(net, g, result.trace_times)
                fig = plot_bump(result.trace_times, grp.x.detach().cpu()[idx],
                                result.traces[key][0], stimulus=stim, period=grp.z_range,
                                label="u", title=title)
                written.append(_save(fig, folder / f"bump_{g}.png"))
    return written


def _save(fig: Any, path: Path) -> str:
    from bionn.viz._common import save_figure

    save_figure(fig, path)
    return str(path)


def simulate(cfg: SimConfig, out: str | Path, *, progress: bool = True,
             prepared: Prepared | None = None) -> dict[str, Any]:
    """Run the simulation ``cfg`` and write its outputs into ``out``.

    Returns the measures (group -> summary) plus ``"simulation"`` (run facts:
    steps, wall time, device) and ``"out"``.
    """
    from bionn.spiking.measures import summarize

    prep = prepared if prepared is not None else prepare(cfg)
    for w in prep.warnings:
        _warn(w)
    folder = Path(out)
    fresh = not (folder.is_dir() and any(folder.iterdir()))
    if not fresh:
        _warn(f"{folder} is not empty; its files are overwritten")
    folder.mkdir(parents=True, exist_ok=True)
    if fresh:  # else after the run: a run that fails leaves an earlier run's files alone
        atomic_write_text(folder / "config.yaml", dump_sim_config(cfg))
    t0 = time.perf_counter()
    run_kw = dict(dt=float(cfg.run.dt), batch=int(cfg.run.batch), record=prep.record,
                  record_every=int(cfg.run.record_every),
                  record_neurons=prep.record_neurons or None, generator=prep.generator,
                  record_spikes=True if prep.record_spikes is None else prep.record_spikes,
                  device=prep.device, dtype=prep.dtype, progress=progress,
                  backend=cfg.run.backend)
    threads = torch.get_num_threads()
    if cfg.experiment.threads is not None:
        torch.set_num_threads(int(cfg.experiment.threads))
    try:
        if cfg.run.record_chunk_ms is not None:  # bounded memory: chunks on disk, read back
            from bionn.spiking.recording import load_recording, run_to_disk

            run_to_disk(prep.network, float(cfg.run.duration), folder / "recording",
                        chunk_ms=float(cfg.run.record_chunk_ms), **run_kw)
            result = load_recording(folder / "recording")
        else:
            result = prep.network.run(float(cfg.run.duration), **run_kw)
    finally:
        torch.set_num_threads(threads)
    if prep.device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    if not fresh:
        atomic_write_text(folder / "config.yaml", dump_sim_config(cfg))
    t_start = float(cfg.measures.t_start)
    atomic_write_bytes(folder / "spikes.npz", _npz_bytes(_spike_arrays(result)))
    if result.traces and cfg.run.record_chunk_ms is None:
        atomic_write_bytes(folder / "traces.npz", _npz_bytes(_trace_arrays(result)))
    measures: dict[str, Any] = summarize(result, t_start=t_start) if result.spikes else {}
    measures.update(_bump_measures(prep.network, result, t_start))
    n_steps = int(round(float(cfg.run.duration) / float(cfg.run.dt)))
    measures["simulation"] = {
        "network": cfg.network.name, "duration_ms": n_steps * float(cfg.run.dt),
        "dt_ms": float(cfg.run.dt), "n_steps": n_steps, "batch": int(cfg.run.batch),
        "n_neurons": int(sum(g.n for g in prep.network.groups.values())),
        "device": str(prep.device), "dtype": cfg.dtype, "wall_s": round(wall, 3),
        "backend": getattr(result, "backend", "torch"),
    }
    if getattr(result, "backend_reason", None):  # auto ran the torch path: say why
        measures["simulation"]["backend_reason"] = result.backend_reason
    atomic_write_text(folder / "measures.json", json.dumps(measures, indent=2) + "\n")
    measures["figures"] = _figures(cfg, prep, result, folder / "figures", t_start)
    measures["out"] = str(folder)
    return measures


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def _one_line(measures: dict[str, Any]) -> str:
    parts = []
    for g, m in measures.items():
        if not isinstance(m, dict) or g == "simulation":
            continue
        if "mean_rate_hz" in m:
            rate, peak, chi = m["mean_rate_hz"], m.get("peak_hz"), m.get("synchrony")
            parts.append(f"{g}: {rate:.2f} Hz" + (f", peak {peak:g} Hz" if peak is not None else "")
                         + (f", synchrony {chi:.2f}" if chi is not None else ""))
        elif "bump_position_end" in m:
            parts.append(f"{g}: bump at {m['bump_position_end']}, height {m['bump_height_end']}")
    return "; ".join(parts)


def _nonfinite_hint(cfg: SimConfig, err: Any) -> str:
    """Which settings likely made the state diverge: the builder arguments changed from
    their defaults (largest first) and a dt above the source's."""
    spec = _networks()[cfg.network.name]
    allowed = spec.parameters()
    changed = []
    for key, value in cfg.network.params.items():
        default = allowed[key].default if key in allowed else inspect.Parameter.empty
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value != default:
            changed.append((abs(float(value)) / max(abs(float(default)), 1e-12)
                            if isinstance(default, (int, float)) else math.inf, key, value, default))
    changed.sort(reverse=True)
    hints = [f"network.params.{k}={v:g}" + (f" (default {d:g})" if d is not inspect.Parameter.empty
                                           else "") for r, k, v, d in changed if r > 1]
    if float(cfg.run.dt) > spec.dt * (1 + 1e-9):
        hints.append(f"run.dt={float(cfg.run.dt):g} ms (the source's: {spec.dt:g} ms)")
    what = (f"a synaptic variable of projection {err.owner!r}" if err.kind == "projection"
            else f"{err.variable!r} of group {err.group!r}")
    if hints:
        return f"Likely too large: {', '.join(hints)}; {what} overflowed."
    return (f"{what} overflowed: a weight, an input current or a time step is likely too "
            f"large for this network.")


def shipped_configs(prefix: str = "") -> list[Path]:
    """The YAML configs in ``configs/`` (of the working directory, else of the source tree
    bionn runs from) whose names start with ``prefix``."""
    for root in (Path("configs"), Path(__file__).resolve().parents[3] / "configs"):
        if root.is_dir():
            return sorted(root.glob(f"{prefix}*.yaml"))
    return []


def shipped_config(name: str) -> Path | None:
    """A shipped config by name (``sim_cuba`` or ``sim_cuba.yaml``), or None."""
    stem = Path(name).name.removesuffix(".yaml")
    return next((p for p in shipped_configs() if p.stem == stem), None)


#: the overrides ``bionn simulate RUN_DIR`` takes (a trained run has no network config)
HANDOFF_KEYS = {"run.duration": float, "run.batch": int, "experiment.seed": int}


def simulate_trained(run_dir: str | Path | Any, out: str | Path, *, batch: int = 4,
                     duration: float | None = None, seed: int = 0,
                     progress: bool = True) -> dict[str, Any]:
    """Hand the spiking network trained in ``run_dir`` (a folder, or a run
    :func:`bionn.load_run` already loaded) to the simulator and run it.

    The run's :class:`~bionn.spiking.SpikingRNN` becomes a :class:`~bionn.spiking.Network`
    (:meth:`~bionn.spiking.SpikingRNN.to_network`, float64): its neuron class with the
    trained parameters, its recurrent weights through the synapse, and ``batch`` trials of
    its task as the input current (zero after the trial). The simulator runs ``duration``
    ms (default: one trial). The trained model runs the same trials, and the spikes of the
    two are compared step by step over the trial (``handoff.same_spikes_over_trial``).
    Writes ``spikes.npz``, ``measures.json`` and ``figures/raster.png`` into ``out``.
    """
    import copy

    from bionn.experiment.runs import LoadedRun, load_run
    from bionn.spiking import SpikingRNN
    from bionn.spiking.measures import summarize
    from bionn.viz.spiking import plot_raster

    run = run_dir if isinstance(run_dir, LoadedRun) else load_run(run_dir)
    model = run.model
    if run.kind != "task" or not isinstance(model, SpikingRNN):
        raise ConfigError(f"{str(run.path)!r} holds a {type(model).__name__} run; only a trained "
                          "spiking network (model.kind: spiking) hands over to the simulator")
    cell = model.cell
    if cell.reset_mode != "value" or cell.synapse not in ("delta", "exponential"):
        raise ConfigError(f"{str(run.path)!r}: the simulator runs reset='value' with a delta or "
                          f"exponential synapse; this network has reset={cell.reset_mode!r}, "
                          f"synapse={cell.synapse!r}")
    g = torch.Generator().manual_seed(int(seed))
    x = run.task.sample(int(batch), g).inputs.double()
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        _, trained = net(x)
    steps, dt = x.shape[1], float(model.dt)
    duration = steps * dt if duration is None else float(duration)
    if duration < dt:
        raise ConfigError(f"run.duration ({duration:g} ms) must be at least the step ({dt:g} ms)")
    sim = net.to_network(x)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = sim.run(duration, dt=dt, batch=int(batch), progress=progress, dtype=torch.float64)
    wall = time.perf_counter() - t0
    simulated = result.spikes["hidden"].dense(torch.float64)
    k = min(steps, simulated.shape[1])
    mismatched = int((simulated[:, :k] != trained[:, :k]).sum())
    atomic_write_bytes(folder / "spikes.npz", _npz_bytes(_spike_arrays(result)))
    measures: dict[str, Any] = summarize(result, t_start=0.0) if result.spikes else {}
    measures["handoff"] = {
        "run": str(run.path), "task": run.config.task.name, "trial_steps": steps,
        "compared_steps": k, "same_spikes_over_trial": mismatched == 0,
        "mismatched_spikes": mismatched, "trained_spikes": int(trained[:, :k].sum())}
    n_steps = int(round(duration / dt))
    measures["simulation"] = {
        "network": f"trained:{run.config.experiment.name}", "duration_ms": n_steps * dt, "dt_ms": dt,
        "n_steps": n_steps, "batch": int(batch), "n_neurons": int(model.n_hidden),
        "device": "cpu", "dtype": "float64", "wall_s": round(wall, 3)}
    atomic_write_text(folder / "measures.json", json.dumps(measures, indent=2) + "\n")
    fig = plot_raster(result, title=f"{run.config.experiment.name} in the simulator",
                      sign={"hidden": model.sign.cpu()} if model.sign is not None else None)
    measures["figures"] = [_save(fig, folder / "figures" / "raster.png")]
    measures["out"] = str(folder)
    return measures


def _cmd_simulate_trained(args: Any) -> int:
    """``bionn simulate RUN_DIR [run.duration=MS run.batch=N experiment.seed=S]``."""
    from bionn.experiment.runs import load_run

    values: dict[str, Any] = {}
    for item in args.overrides:
        key, _, value = item.partition("=")
        if key == "experiment.device":  # --device: the simulation of a trained run is on the CPU
            continue
        if key not in HANDOFF_KEYS:
            raise ConfigError(f"{key!r}: a trained run takes only {sorted(HANDOFF_KEYS)} "
                              "(its network comes from the run)")
        try:
            values[key] = HANDOFF_KEYS[key](value)
        except ValueError:
            raise ConfigError(f"{key}: {value!r} is not a {HANDOFF_KEYS[key].__name__}") from None
    if values.get("run.batch", 4) < 1:
        raise ConfigError(f"run.batch must be >= 1; got {values['run.batch']}")
    if values.get("run.duration", 1.0) <= 0:
        raise ConfigError(f"run.duration must be > 0 ms; got {values['run.duration']}")
    run = load_run(args.config)  # a folder that is not a run is refused before any output
    out = claim_output_folder(args.out, f"{run.config.experiment.name}-simulated",
                              overwrite=args.overwrite, resumable=False)
    measures = simulate_trained(run, out, batch=values.get("run.batch", 4),
                                duration=values.get("run.duration"),
                                seed=values.get("experiment.seed", 0), progress=not args.quiet)
    h = measures["handoff"]
    print(f"results in {out}/ (spikes.npz, measures.json, figures/): the simulator "
          + ("reproduces" if h["same_spikes_over_trial"] else "does NOT reproduce")
          + f" the trained network's spikes over the trial ({h['mismatched_spikes']} differ)",
          file=sys.stderr)
    print(json.dumps(measures))
    return 0


def cmd_simulate(args: Any) -> int:
    """``bionn simulate``: see the module docstring."""
    source = args.config
    overrides = list(args.overrides)
    if Path(source).is_dir() and (Path(source) / "checkpoint.pt").exists():
        return _cmd_simulate_trained(args)  # a trained spiking run, handed to the simulator
    path: str | None = source
    if not Path(source).exists():
        if source in _networks():
            path = None  # a bare network name: its published settings
            overrides.insert(0, f"network.name={source}")
            overrides.insert(1, f"experiment.name={source}")
        elif shipped_config(source) is not None:  # a shipped config by name, e.g. sim_cuba
            path = str(shipped_config(source))
        elif "/" not in source and not source.endswith((".yaml", ".yml")):  # a name, unknown
            raise ConfigError(f"{source!r} is neither a config file nor a network; networks: "
                              f"{', '.join(sorted(_networks()))}; shipped configs: "
                              f"{', '.join(sorted(p.stem for p in shipped_configs('sim_')))}")
    cfg = load_sim_config(path, overrides)
    prep = prepare(cfg)
    out = claim_output_folder(args.out, cfg.experiment.name, overwrite=args.overwrite,
                              resumable=False)
    from bionn.spiking.network import NonFiniteStateError

    try:
        measures = simulate(cfg, out, progress=not args.quiet, prepared=prep)
    except NonFiniteStateError as e:
        kept = ("" if cfg.run.record_chunk_ms is None else
                f" (recording/ holds only the chunks before t = {e.time_ms:g} ms)")
        print(f"bionn simulate: stopped: {e}. {_nonfinite_hint(cfg, e)} No spikes, traces or "
              f"measures were written to {out}/{kept}.", file=sys.stderr)
        return 1
    line = _one_line(measures)
    print(f"results in {out}/ (spikes.npz, measures.json, figures/)"
          + (f": {line}" if line else ""), file=sys.stderr)
    print(json.dumps(measures))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``simulate`` on an argparse subparsers object."""
    p = sub.add_parser("simulate", help="run a ready spiking network (coba, cuba, cobahh, "
                                        "ei_balanced, wang_buzsaki, cann) from a YAML config, or a "
                                        "trained spiking run handed to the simulator")
    p.add_argument("config", help="YAML config file, a network name for its published settings, "
                                  "or the folder of a trained spiking run")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. run.duration=200")
    p.add_argument("--out", help="output folder (default runs/<name>-<time>)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the contents of --out (an earlier bionn output) before running")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
