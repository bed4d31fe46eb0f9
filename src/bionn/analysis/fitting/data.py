r"""Recorded activity to fit: :class:`Recording` and :func:`load_recording`.

bionn is batch-first: a recording holds ``(trials, time, neurons)`` (rates, or spike counts
per bin) and optional task inputs ``(trials, time, n_input)``, time in steps of ``dt`` ms.
Data stored the other way round (the issue writes arrays as ``neurons x time x trials``) is
read through ``layout``: the names of the stored axes in order, among ``trials``, ``time``
and ``neurons`` (separated by spaces, commas or ``x``: ``"neurons x time x trials"``); a
two-axis layout (``"time neurons"``, ``"neurons time"``) is one trial. Inputs are stored in
the same layout, their channel axis in the place of ``neurons``.

File formats read by :func:`load_recording` (by suffix):

* ``.npy``: the data array alone (``dt`` must be given);
* ``.npz`` and HDF5 (``.h5``, ``.hdf5``; needs ``h5py``): the data under ``data`` (or
  ``rates`` / ``counts``, whose name then sets ``kind``), optional ``inputs``, and ``dt``
  (ms), ``layout``, ``kind`` as arrays or, for HDF5, attributes of the root group;
  :func:`save_recording` writes both;
* ``.nwb`` (needs ``pynwb``): the spike times of the Units table binned at ``dt`` ms into
  the trials of the trials table (``start_time``/``stop_time``, seconds); every trial keeps
  the number of whole bins of the shortest one; ``kind="counts"``.

Keyword arguments override what the file says.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import InitVar, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bionn._core import ConfigError

__all__ = ["BIONN_LAYOUT", "KINDS", "Recording", "load_recording", "parse_layout", "save_recording"]

#: bionn's layout of a recording
BIONN_LAYOUT = "trials time neurons"
#: what a recording holds
KINDS = ("rates", "counts")
_AXES = ("trials", "time", "neurons")


def parse_layout(layout: str | Sequence[str]) -> tuple[str, ...]:
    """The stored axes named by ``layout``, e.g. ``"neurons x time x trials"``.

    Example:
        >>> parse_layout("neurons x time x trials"), parse_layout("time, neurons")
        (('neurons', 'time', 'trials'), ('time', 'neurons'))
    """
    names = tuple(re.split(r"[\s,x]+", layout.strip())) if isinstance(layout, str) else tuple(layout)
    ok = (len(names) == 3 and set(names) == set(_AXES)) or (
        len(names) == 2 and set(names) == {"time", "neurons"})
    if not ok:
        raise ValueError(f"layout must name the axes trials, time and neurons once each (or time and "
                         f"neurons for one trial), e.g. {BIONN_LAYOUT!r}; got {layout!r}")
    return names


def _to_bionn(a: Any, axes: tuple[str, ...], name: str, channel: str) -> Tensor:
    t = torch.as_tensor(np.asarray(a) if not isinstance(a, Tensor) else a)
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold real numbers; got dtype {t.dtype}")
    if t.dim() != len(axes):
        raise ValueError(f"{name} has {t.dim()} axes {tuple(t.shape)} but layout {' '.join(axes)!r} "
                         f"names {len(axes)} (axes: {', '.join(a if a != 'neurons' else channel for a in axes)})")
    if len(axes) == 2:
        t, axes = t.unsqueeze(0), ("trials", *axes)
    t = t.permute(*(axes.index(a) for a in _AXES))
    t = t.to(torch.get_default_dtype()).contiguous()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} holds NaN or infinite values")
    return t


@dataclass
class Recording:
    """Recorded activity, batch-first.

    Attributes:
        data: ``(trials, time, neurons)`` rates, or spike counts per bin (``kind="counts"``).
        dt: the time step (ms) of one bin.
        inputs: ``(trials, time, n_input)`` task inputs, or None (no inputs).
        kind: ``"rates"`` or ``"counts"``.
        regions: one region label per neuron (used by :func:`~bionn.analysis.fitting.curbd`), or None.
        layout: (init only) the axes of ``data`` and ``inputs`` as given (default
            ``"trials time neurons"``); they are stored in bionn's layout.

    Example:
        >>> rec = Recording(torch.zeros(5, 100, 3), dt=10.0, layout="neurons time trials")
        >>> rec.data.shape, rec.n_trials, rec.n_neurons
        (torch.Size([3, 100, 5]), 3, 5)
    """

    data: Tensor
    dt: float
    inputs: Tensor | None = None
    kind: str = "rates"
    regions: tuple[str, ...] | None = None
    layout: InitVar[str | Sequence[str]] = BIONN_LAYOUT

    def __post_init__(self, layout: str | Sequence[str]) -> None:
        axes = parse_layout(layout)
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {self.kind!r}")
        if isinstance(self.dt, bool) or not (isinstance(self.dt, (int, float, np.floating, np.integer))
                                             and float(self.dt) > 0 and math.isfinite(float(self.dt))):
            raise ValueError(f"dt must be a positive number of ms; got {self.dt!r}")
        self.dt = float(self.dt)
        self.data = _to_bionn(self.data, axes, "data", "neurons")
        if self.data.numel() == 0:
            raise ValueError(f"data is empty: shape {tuple(self.data.shape)} (trials, time, neurons)")
        if self.kind == "counts" and (bool((self.data < 0).any())
                                      or not bool((self.data == self.data.round()).all())):
            raise ValueError("data: kind='counts' needs non-negative integer spike counts per bin")
        if self.inputs is not None:
            self.inputs = _to_bionn(self.inputs, axes, "inputs", "inputs")
            if self.inputs.shape[:2] != self.data.shape[:2]:
                raise ValueError(f"inputs has {tuple(self.inputs.shape[:2])} (trials, time) but data has "
                                 f"{tuple(self.data.shape[:2])}")
        if self.regions is not None:
            self.regions = tuple(str(r) for r in self.regions)
            if len(self.regions) != self.n_neurons:
                raise ValueError(f"regions has {len(self.regions)} labels for {self.n_neurons} neurons")

    @property
    def n_trials(self) -> int:
        return int(self.data.shape[0])

    @property
    def n_time(self) -> int:
        return int(self.data.shape[1])

    @property
    def n_neurons(self) -> int:
        return int(self.data.shape[2])

    @property
    def n_input(self) -> int:
        """Input channels (0 without inputs)."""
        return 0 if self.inputs is None else int(self.inputs.shape[2])

    def input_sequence(self, n_input: int) -> Tensor:
        """``(trials, time, n_input)``: the inputs, or zeros of a model's ``n_input`` without inputs."""
        if self.inputs is None:
            return self.data.new_zeros(self.n_trials, self.n_time, n_input)
        if self.inputs.shape[2] != n_input:
            raise ValueError(f"recording.inputs has {self.inputs.shape[2]} channels but the model takes "
                             f"n_input={n_input}")
        return self.inputs

    def trials(self, index: Any) -> Recording:
        """The recording of the trials ``index`` (indices or a slice)."""
        idx = torch.arange(self.n_trials)[index] if isinstance(index, slice) else torch.as_tensor(index).long()
        return replace(self, data=self.data[idx.reshape(-1)],
                       inputs=None if self.inputs is None else self.inputs[idx.reshape(-1)])

    def trial_average(self) -> Recording:
        """One trial, the mean over trials (inputs averaged alike; counts become mean counts,
        so ``kind`` becomes ``"rates"`` when the average is not an integer)."""
        data = self.data.mean(0, keepdim=True)
        kind = self.kind if bool((data == data.round()).all()) else "rates"
        inputs = None if self.inputs is None else self.inputs.mean(0, keepdim=True)
        return replace(self, data=data, inputs=inputs, kind=kind)


# --------------------------------------------------------------------------- files
def _fail(path: Path, field: str, why: str) -> ConfigError:
    return ConfigError(f"{path}: {field}: {why}")


def _scalar(path: Path, field: str, v: Any, kind: type) -> Any:
    a = np.asarray(v)
    if a.size != 1:
        raise _fail(path, field, f"must be one value; got shape {a.shape}")
    v = a.reshape(()).item()
    if isinstance(v, bytes):
        v = v.decode()
    if kind is float:
        try:
            return float(v)
        except (TypeError, ValueError):
            raise _fail(path, field, f"must be a number; got {v!r}") from None
    return str(v)


def _build(path: Path, found: dict[str, Any], key: str, dt: float | None, layout: Any, kind: str | None,
           regions: Any) -> Recording:
    if dt is None:
        if "dt" not in found:
            raise _fail(path, "dt", "missing: store dt (ms) in the file or pass dt=")
        dt = _scalar(path, "dt", found["dt"], float)
    if layout is None:
        layout = _scalar(path, "layout", found["layout"], str) if "layout" in found else BIONN_LAYOUT
    if kind is None:
        kind = _scalar(path, "kind", found["kind"], str) if "kind" in found else (
            "counts" if key == "counts" else "rates")
    if regions is None and "regions" in found:
        regions = [r.decode() if isinstance(r, bytes) else str(r) for r in np.asarray(found["regions"]).ravel()]
    data = np.asarray(found[key])
    if data.dtype.kind not in "fiub":
        raise _fail(path, key, f"must be a numeric array; got dtype {data.dtype}")
    inputs = found.get("inputs")
    if inputs is not None:
        inputs = np.asarray(inputs)
        if inputs.dtype.kind not in "fiub":
            raise _fail(path, "inputs", f"must be a numeric array; got dtype {inputs.dtype}")
    try:
        return Recording(torch.as_tensor(data.astype(np.float64)), dt,
                         None if inputs is None else torch.as_tensor(inputs.astype(np.float64)),
                         kind=kind, regions=regions, layout=layout)
    except ValueError as e:
        field = str(e).split(" ", 1)[0]
        field = {"data": key}.get(field, field)
        raise _fail(path, field if field in (key, "inputs", "dt", "kind", "layout", "regions") else key,
                    str(e)) from None


def _pick_key(path: Path, names: Sequence[str], key: str | None) -> str:
    if key is not None:
        if key not in names:
            raise _fail(path, key, f"not in the file (it holds {sorted(names)})")
        return key
    for k in ("data", "rates", "counts"):
        if k in names:
            return k
    raise _fail(path, "data", f"missing: store the activity as 'data', 'rates' or 'counts' "
                              f"(the file holds {sorted(names)})")


def _load_npz(path: Path, key: str | None) -> tuple[dict[str, Any], str]:
    try:
        with np.load(path, allow_pickle=False) as z:
            found = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable .npz file ({e})") from None
    return found, _pick_key(path, list(found), key)


def _load_h5(path: Path, key: str | None) -> tuple[dict[str, Any], str]:
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py ships with the test extra
        raise ImportError("reading HDF5 recordings needs h5py: pip install h5py "
                          "(or pip install 'bionn[fit]')") from e
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ConfigError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        names = [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]
        k = _pick_key(path, names, key)
        found: dict[str, Any] = {n: f[n][()] for n in names}
        for a in ("dt", "layout", "kind"):
            if a not in found and a in f.attrs:
                found[a] = f.attrs[a]
    return found, k


def _load_nwb(path: Path, dt: float | None, units: Sequence[int] | None) -> Recording:
    try:
        from pynwb import NWBHDF5IO
    except ImportError as e:
        raise ImportError("reading NWB recordings needs pynwb: pip install pynwb "
                          "(or pip install 'bionn[fit]')") from e
    if dt is None or isinstance(dt, bool) or not dt > 0:
        raise _fail(path, "dt", f"give the bin width dt (ms) > 0 to bin the spike times; got {dt!r}")
    try:
        io = NWBHDF5IO(str(path), "r")
        nwb = io.read()
    except Exception as e:  # pynwb raises many types on a bad file
        raise ConfigError(f"{path}: not a readable NWB file ({type(e).__name__}: {e})") from None
    try:
        if nwb.units is None or len(nwb.units) == 0:
            raise _fail(path, "units", "the file has no Units table (spike times) or it is empty")
        if nwb.trials is None or len(nwb.trials) == 0:
            raise _fail(path, "trials", "the file has no trials table (start_time, stop_time)")
        start = np.asarray(nwb.trials["start_time"][:], dtype=np.float64)
        stop = np.asarray(nwb.trials["stop_time"][:], dtype=np.float64)
        width = dt / 1000.0
        n_bins = int(np.floor(float((stop - start).min()) / width + 1e-9))
        if n_bins < 1:
            raise _fail(path, "trials", f"the shortest trial ({float((stop - start).min()):g} s) is shorter "
                                        f"than one bin of dt={dt:g} ms")
        idx = list(range(len(nwb.units))) if units is None else [int(u) for u in units]
        for u in idx:
            if not 0 <= u < len(nwb.units):
                raise _fail(path, "units", f"unit index {u} out of range (the table has {len(nwb.units)})")
        counts = np.zeros((len(start), n_bins, len(idx)))
        for j, u in enumerate(idx):
            spikes = np.asarray(nwb.units.get_unit_spike_times(u), dtype=np.float64)
            for k, t0 in enumerate(start):
                counts[k, :, j] = np.histogram(spikes, bins=t0 + width * np.arange(n_bins + 1))[0]
    finally:
        io.close()
    return Recording(torch.as_tensor(counts), dt, kind="counts")


def load_recording(path: str | Path, *, dt: float | None = None, layout: str | Sequence[str] | None = None,
                   kind: str | None = None, key: str | None = None, regions: Sequence[str] | None = None,
                   units: Sequence[int] | None = None) -> Recording:
    """Read a :class:`Recording` from ``.npy``, ``.npz``, HDF5 (``.h5``/``.hdf5``) or NWB
    (``.nwb``) (see the module docstring for what each must hold).

    Args:
        path: the file.
        dt: bin width (ms); overrides the file's ``dt``; required for ``.npy`` and NWB.
        layout: the stored axes (default: the file's ``layout``, else ``"trials time neurons"``).
        kind: ``"rates"`` or ``"counts"`` (default: the file's, else from the data's name).
        key: the data's name in an ``.npz``/HDF5 file (default ``data``, ``rates`` or ``counts``).
        regions: a region label per neuron (default: the file's ``regions``, if any).
        units: NWB only: which rows of the Units table (default all).

    Raises:
        ConfigError: a file that is missing, unreadable or holds a bad field (named).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".nwb":
        if layout is not None or key is not None:
            raise ValueError("layout and key do not apply to NWB files (spike times are binned into "
                             "(trials, time, neurons))")
        rec = _load_nwb(path, dt, units)
        return replace(rec, regions=tuple(regions)) if regions is not None else rec
    if units is not None:
        raise ValueError("units applies to NWB files only")
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: not a readable .npy file ({e})") from None
        if dt is None:
            raise _fail(path, "dt", "a .npy file holds the data alone: pass dt= (ms)")
        return _build(path, {"data": arr}, "data", dt, layout, kind, regions)
    if suffix == ".npz":
        found, k = _load_npz(path, key)
    elif suffix in (".h5", ".hdf5"):
        found, k = _load_h5(path, key)
    else:
        raise ConfigError(f"{path}: unknown recording format {suffix!r} (use .npy, .npz, .h5, .hdf5 or .nwb)")
    return _build(path, found, k, dt, layout, kind, regions)


def save_recording(path: str | Path, recording: Recording) -> Path:
    """Write ``recording`` in bionn's layout to ``.npz`` or HDF5 (by suffix), readable by
    :func:`load_recording`.

    Example:
        >>> import tempfile, os
        >>> rec = Recording(torch.rand(2, 5, 3), dt=5.0, kind="rates")
        >>> p = save_recording(os.path.join(tempfile.mkdtemp(), "r.npz"), rec)
        >>> torch.equal(load_recording(p).data, rec.data)
        True
    """
    path = Path(path)
    fields: dict[str, Any] = {"data": recording.data.numpy(), "dt": np.float64(recording.dt),
                              "kind": np.str_(recording.kind), "layout": np.str_(BIONN_LAYOUT)}
    if recording.inputs is not None:
        fields["inputs"] = recording.inputs.numpy()
    if recording.regions is not None:
        fields["regions"] = np.array(recording.regions, dtype=np.str_)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        np.savez(path, **fields)
    elif suffix in (".h5", ".hdf5"):
        try:
            import h5py
        except ImportError as e:  # pragma: no cover
            raise ImportError("writing HDF5 recordings needs h5py: pip install h5py") from e
        with h5py.File(path, "w") as f:
            for k in ("data", "inputs"):
                if k in fields:
                    f.create_dataset(k, data=fields[k])
            if "regions" in fields:
                f.create_dataset("regions", data=np.array(recording.regions, dtype=object),
                                 dtype=h5py.string_dtype())
            f.attrs["dt"] = recording.dt
            f.attrs["kind"] = recording.kind
            f.attrs["layout"] = BIONN_LAYOUT
    else:
        raise ValueError(f"save_recording writes .npz or .h5/.hdf5; got {path.name!r}")
    return path
