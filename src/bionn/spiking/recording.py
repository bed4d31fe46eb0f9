"""Long simulations with bounded memory: record to disk in chunks.

:func:`run_to_disk` runs a :class:`~bionn.spiking.network.Network` for ``duration`` ms as
consecutive runs of ``chunk_ms`` each, every run continuing from the previous one's final
state, time and random generator, so the result is the one long run would give. After
each chunk its spikes and traces are written to ``out_dir/chunk_#####.npz`` (atomically)
and dropped from memory, and ``out_dir/index.json`` is updated; only one chunk's records
are ever held. :func:`load_recording` reads the chunks back into one
:class:`~bionn.spiking.network.SimulationResult` (or a time window of it).

Example:
    >>> import tempfile, torch
    >>> from bionn.spiking.networks import coba
    >>> net = coba(200, generator=torch.Generator().manual_seed(0))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     rec = run_to_disk(net, 20.0, d, chunk_ms=5.0, record={"P": ["V"]},
    ...                       record_neurons={"P": [0, 1]}, seed=0, progress=False)
    ...     res = load_recording(d)
    >>> rec.n_chunks, res.traces["P.V"].shape
    (4, torch.Size([1, 200, 2]))
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bionn._core.io import atomic_write, atomic_write_text
from bionn.spiking.network import Network, NonFiniteStateError, SimulationResult, SpikeEvents

__all__ = ["DiskRecording", "load_recording", "run_to_disk"]


@dataclass
class DiskRecording:
    """What :func:`run_to_disk` left: the folder, the number of chunks, the final state."""

    path: Path
    n_chunks: int
    state: dict

    def load(self, t_range: tuple[float, float] | None = None) -> SimulationResult:
        """:func:`load_recording` of this folder."""
        return load_recording(self.path, t_range)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # the one writer of bionn._core.io: fsynced, atomic, the permissions of open(path, "w")
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays))


def run_to_disk(network: Network, duration: float, out_dir: str | Path, *, chunk_ms: float,
                dt: float = 0.1, batch: int = 1,
                record: Mapping[str, Sequence[str]] | None = None, record_every: int = 1,
                record_neurons: Mapping[str, Sequence[int] | Tensor] | None = None,
                record_spikes: bool | Sequence[str] = True, state: dict | None = None,
                generator: torch.Generator | None = None, seed: int | None = None,
                device=None, dtype: torch.dtype | None = None,
                progress: bool = True, check_finite: bool | int = True,
                backend: str = "torch") -> DiskRecording:
    """Simulate ``duration`` ms in chunks of ``chunk_ms``, writing each chunk's records.

    Arguments are those of :meth:`Network.run` plus ``out_dir`` and ``chunk_ms`` (a
    multiple of ``dt * record_every``, so that trace samples fall as in one run).
    A state that becomes non-finite stops it with
    :class:`~bionn.spiking.network.NonFiniteStateError` (steps counted from the first
    chunk's start) before that chunk is written; the chunks before it stay.
    """
    chunk_steps = int(round(chunk_ms / dt))
    n_steps = int(round(duration / dt))
    if duration <= 0:
        raise ValueError(f"duration must be > 0 ms; got {duration}")
    if chunk_steps < 1 or abs(chunk_steps * dt - chunk_ms) > 1e-9 * max(1.0, chunk_ms):
        raise ValueError(f"chunk_ms must be a positive multiple of dt={dt}; got {chunk_ms}")
    if chunk_steps % int(record_every):
        raise ValueError(f"chunk_ms={chunk_ms} must be a multiple of dt * record_every "
                         f"= {dt * int(record_every)} ms")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if generator is None:  # one generator for all chunks: the long run's random stream
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    from tqdm.auto import tqdm

    bar = tqdm(total=round(n_steps * dt, 6), disable=not progress, unit="ms",
               desc="simulate (to disk)", dynamic_ncols=True)
    index: dict = {"dt": dt, "batch": None, "n_steps": n_steps, "chunk_steps": chunk_steps,
                   "chunks": [], "groups": {}, "recorded_neurons": {}}
    done, k = 0, 0
    while done < n_steps:
        steps = min(chunk_steps, n_steps - done)
        try:
            res = network.run(steps * dt, dt=dt, batch=batch, record=record,
                              record_every=record_every, record_neurons=record_neurons,
                              record_spikes=record_spikes, state=state, generator=generator,
                              device=device, dtype=dtype, progress=False, t_start=done * dt,
                              check_finite=check_finite, backend=backend)
        except NonFiniteStateError as e:
            bar.close()
            raise e.shifted(done) from None
        arrays: dict[str, np.ndarray] = {"trace_times": res.trace_times.numpy()}
        for g, ev in res.spikes.items():
            arrays[f"spikes/{g}"] = torch.stack([ev.trial, ev.step + done, ev.neuron], 1).numpy()
            index["groups"][g] = ev.n_neurons
            index["batch"] = ev.batch
        for key, x in res.traces.items():
            arrays[f"traces/{key}"] = x.numpy()
            index["batch"] = x.shape[0]
        index["recorded_neurons"] = {g: v.tolist() for g, v in res.recorded_neurons.items()}
        name = f"chunk_{k:05d}.npz"
        _save_npz(out / name, arrays)
        index["chunks"].append({"file": name, "first_step": done, "n_steps": steps})
        atomic_write_text(out / "index.json", json.dumps(index, indent=1) + "\n")
        state, done, k = res.state, done + steps, k + 1
        del res, arrays
        bar.update(round(steps * dt, 6))
    bar.close()
    return DiskRecording(out, k, state)


def load_recording(path: str | Path,
                   t_range: tuple[float, float] | None = None) -> SimulationResult:
    """The chunks of a :func:`run_to_disk` folder as one :class:`SimulationResult`
    (``state`` is ``None``); ``t_range=(t0, t1)`` ms reads only the chunks that overlap it
    and keeps spikes and samples with ``t0 < t <= t1``."""
    folder = Path(path)
    index_file = folder / "index.json"
    if not index_file.is_file():
        raise FileNotFoundError(f"{index_file} does not exist: not a run_to_disk folder")
    index = json.loads(index_file.read_text())
    dt, n_steps = float(index["dt"]), int(index["n_steps"])
    lo, hi = (-np.inf, np.inf) if t_range is None else (float(t_range[0]), float(t_range[1]))
    spikes: dict[str, list[np.ndarray]] = {g: [] for g in index["groups"]}
    traces: dict[str, list[np.ndarray]] = {}
    times: list[np.ndarray] = []
    for c in index["chunks"]:
        t_first, t_last = c["first_step"] * dt, (c["first_step"] + c["n_steps"]) * dt
        if t_last <= lo or t_first >= hi:
            continue
        with np.load(folder / c["file"], allow_pickle=False) as z:
            tt = z["trace_times"]
            keep = (tt > lo) & (tt <= hi)
            times.append(tt[keep])
            for key in z.files:
                if key.startswith("spikes/"):
                    e = z[key]
                    t = (e[:, 1] + 1) * dt
                    spikes[key.split("/", 1)[1]].append(e[(t > lo) & (t <= hi)])
                elif key.startswith("traces/"):
                    traces.setdefault(key.split("/", 1)[1], []).append(z[key][:, keep])
    batch = int(index["batch"] or 1)
    result = SimulationResult(dt=dt, duration=n_steps * dt)
    for g, parts in spikes.items():
        e = torch.from_numpy(np.concatenate(parts)) if parts else torch.zeros(0, 3, dtype=torch.long)
        result.spikes[g] = SpikeEvents(e[:, 0], e[:, 1], e[:, 2], int(index["groups"][g]),
                                       n_steps, batch, dt)
    for key, parts in traces.items():
        result.traces[key] = torch.from_numpy(np.concatenate(parts, 1))
    result.trace_times = torch.from_numpy(np.concatenate(times)) if times else torch.zeros(0)
    result.recorded_neurons = {g: torch.tensor(v, dtype=torch.long)
                               for g, v in index["recorded_neurons"].items()}
    return result
