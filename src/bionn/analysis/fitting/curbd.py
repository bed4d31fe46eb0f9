r"""CURBD: current-based decomposition of multi-region activity (Perich et al. 2020).

:func:`curbd` builds a :class:`~bionn.analysis.fitting.ForceNetwork` with one unit per recorded
neuron (every unit a target), trains its recurrent matrix ``J`` by recursive least squares
until the free-running network reproduces all the recorded rates (``method="force"``, as in
Perich's code; or ``"full_force"``, see :mod:`bionn.analysis.fitting.force`), and splits
each region's recurrent input into the contribution of each source region::

    I_{b <- a}(t) = J[b, a] r_a(t)        (time, n_b)

with ``r_a`` the fitted network's rates of region ``a`` (not the data, as in CURBD's code);
summed over the sources ``a`` these give ``J r``, the whole recurrent input of ``b``.
The magnitude of ``b <- a`` is the mean of ``|I_{b <- a}|`` over trials, time and the
units of ``b``.

The rates must lie in (-1, 1) for the tanh units: by default (``normalize=True``, as
Perich) the data are divided by their largest magnitude and clipped to ``[-0.999, 0.999]``.
The network starts from ``h = atanh(d(0))``. Optional frozen smoothed white noise
(``noise_amplitude``, time constant ``noise_tau``) drives every unit, as CURBD's
``ampInWN``/``tauWN``; it is the same on every pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bionn.analysis.fitting.data import Recording
from bionn.analysis.fitting.force import ForceNetwork, rls_train
from bionn.analysis.fitting.metrics import pvar
from bionn.recurrent import RateState

__all__ = ["CurbdResult", "curbd", "region_currents"]


@dataclass
class CurbdResult:
    """What :func:`curbd` returns.

    Attributes:
        regions: region names, in order.
        index: unit indices of each region in the network (and the data's neuron axis).
        currents: ``(target, source) -> (time, n_target)`` (``(trials, time, n_target)`` for
            trial data), every ordered pair, within-region ones included.
        magnitudes: ``(target, source) -> mean |current|``.
        model: the fitted network.
        rates: the fitted network's rates, shaped like the data.
        data: the data that were fitted (after normalization).
        pvar: pVar of ``rates`` against ``data``.
        curve: the rate MSE per training pass.
    """

    regions: tuple[str, ...]
    index: dict[str, Tensor]
    currents: dict[tuple[str, str], Tensor]
    magnitudes: dict[tuple[str, str], float]
    model: ForceNetwork
    rates: Tensor
    data: Tensor
    pvar: float
    curve: list[float] = field(default_factory=list)

    def magnitude_matrix(self) -> Tensor:
        """``(regions, regions)`` magnitudes, row = target, column = source."""
        return torch.tensor([[self.magnitudes[(t, s)] for s in self.regions] for t in self.regions],
                            dtype=torch.float64)

    def ranking(self, within: bool = False) -> list[tuple[str, str]]:
        """``(target, source)`` pairs by decreasing magnitude, between regions only unless ``within``."""
        pairs = [p for p in self.magnitudes if within or p[0] != p[1]]
        return sorted(pairs, key=lambda p: -self.magnitudes[p])


def region_currents(J: Tensor, rates: Tensor, index: Mapping[str, Tensor],
                    ) -> tuple[dict[tuple[str, str], Tensor], dict[tuple[str, str], float]]:
    """The currents ``J[b, a] r_a`` of every ordered pair of regions and their mean magnitudes
    for a ``(post, pre)`` matrix ``J`` and rates ``(..., N)``.

    Example:
        >>> J = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # unit 0 (region a) drives unit 1 (b)
        >>> cur, mag = region_currents(J, torch.ones(3, 2), {"a": torch.tensor([0]), "b": torch.tensor([1])})
        >>> mag[("b", "a")], mag[("a", "b")], cur[("b", "a")].shape
        (2.0, 0.0, torch.Size([3, 1]))
    """
    J = J.detach()
    rates = rates.detach().to(J)
    currents: dict[tuple[str, str], Tensor] = {}
    mags: dict[tuple[str, str], float] = {}
    for tgt, it in index.items():
        for src, js in index.items():
            c = rates[..., js] @ J[it][:, js].T
            currents[(tgt, src)] = c
            mags[(tgt, src)] = float(c.abs().mean())
    return currents, mags


def _regions_of(rates: Any, regions: Sequence[str] | None) -> tuple[Tensor, tuple[str, ...], dict[str, Tensor]]:
    if isinstance(rates, Mapping):
        if regions is not None:
            raise ValueError("regions: give region labels only with one array (a dict names its regions)")
        if not rates:
            raise ValueError("rates: the dict of regions is empty")
        blocks, index, start = [], {}, 0
        lengths = set()
        for name, a in rates.items():
            t = torch.as_tensor(np.asarray(a) if not isinstance(a, Tensor) else a, dtype=torch.float64)
            if t.dim() not in (2, 3) or t.shape[-1] == 0:
                raise ValueError(f"rates[{name!r}] must be (time, n) or (trials, time, n); got {tuple(t.shape)}")
            blocks.append(t)
            lengths.add(tuple(t.shape[:-1]))
            index[str(name)] = torch.arange(start, start + t.shape[-1])
            start += t.shape[-1]
        if len(lengths) != 1:
            raise ValueError(f"rates: every region needs the same (trials,) time axes; got {sorted(lengths)}")
        return torch.cat(blocks, -1), tuple(index), index
    t = torch.as_tensor(np.asarray(rates) if not isinstance(rates, Tensor) else rates, dtype=torch.float64)
    if t.dim() not in (2, 3):
        raise ValueError(f"rates must be (time, N) or (trials, time, N) (or a dict of regions); got {tuple(t.shape)}")
    if regions is None:
        raise ValueError("regions: give one region label per neuron with an array of rates")
    labels = [str(r) for r in regions]
    if len(labels) != t.shape[-1]:
        raise ValueError(f"regions has {len(labels)} labels for {t.shape[-1]} neurons")
    names = tuple(dict.fromkeys(labels))
    index = {n: torch.tensor([i for i, lab in enumerate(labels) if lab == n]) for n in names}
    return t, names, index


def _frozen_noise(n: int, T: int, dt: float, amplitude: float, tau: float,
                  generator: torch.Generator | None) -> Tensor:
    """Smoothed white noise ``(T, n)``: ``x_t = e x_{t-1} + sqrt(1 - e^2) amplitude xi_t``, ``e = exp(-dt/tau)``."""
    e = math.exp(-dt / tau)
    xi = torch.randn(T, n, generator=generator)
    out = torch.empty(T, n)
    x = xi[0] * amplitude
    for t in range(T):
        x = e * x + math.sqrt(1 - e * e) * amplitude * xi[t]
        out[t] = x
    return out


def curbd(rates: Mapping[str, Any] | Any | Recording, regions: Sequence[str] | None = None, *,
          dt: float | None = None, tau: float = 10.0, g: float = 1.5, passes: int = 50,
          method: str = "full_force", rls_alpha: float = 1.0, normalize: bool = True,
          noise_amplitude: float = 0.0, noise_tau: float = 100.0,
          generator: torch.Generator | None = None, progress: bool = False) -> CurbdResult:
    """Fit a data-constrained network to multi-region rates and decompose the currents
    between regions (CURBD, Perich et al. 2020; see the module docstring).

    Args:
        rates: ``{region: (time, n)}`` (or ``(trials, time, n)``), one ``(time, N)`` /
            ``(trials, time, N)`` array with ``regions``, or a
            :class:`~bionn.analysis.fitting.Recording` with ``regions``.
        regions: one region label per neuron, for an array.
        dt: the data's time step (ms; default 1, or the recording's); the network runs at it.
        tau: the units' time constant (ms).
        g: the initial gain of ``J`` (chaotic for ``g > 1``).
        passes: training passes over the data.
        method: ``"force"`` (Perich) or ``"full_force"``.
        rls_alpha: ``P_0 = I / rls_alpha``.
        normalize: divide by the largest ``|rate|`` and clip to ``[-0.999, 0.999]``.
        noise_amplitude, noise_tau: frozen smoothed white-noise input to every unit (0: none).
        generator: random generator of ``J`` and of the noise.
        progress: show a progress bar.

    Example:
        >>> t = torch.linspace(0, 6, 60)[:, None]
        >>> res = curbd({"A": torch.sin(t + torch.arange(3)), "B": torch.cos(t)}, passes=2,
        ...             generator=torch.Generator().manual_seed(0))
        >>> res.regions, res.currents[("A", "B")].shape, res.magnitude_matrix().shape
        (('A', 'B'), torch.Size([60, 3]), torch.Size([2, 2]))
    """
    if isinstance(rates, Recording):
        if regions is None and rates.regions is None:
            raise ValueError("regions: the recording has no region labels; pass regions=")
        if rates.kind != "rates":
            raise ValueError("curbd fits rates; the recording holds spike counts (smooth them first)")
        regions = rates.regions if regions is None else regions
        dt = rates.dt if dt is None else dt
        rates = rates.data
    data, names, index = _regions_of(rates, regions)
    dt = 1.0 if dt is None else dt
    if method not in ("force", "full_force"):
        raise ValueError(f"method must be 'force' or 'full_force'; got {method!r}")
    if not (isinstance(passes, int) and not isinstance(passes, bool) and passes >= 1):
        raise ValueError(f"passes must be a positive integer; got {passes!r}")
    if not (isinstance(noise_amplitude, (int, float)) and noise_amplitude >= 0):
        raise ValueError(f"noise_amplitude must be >= 0; got {noise_amplitude!r}")
    if not bool(torch.isfinite(data).all()):
        raise ValueError("rates hold NaN or infinite values")
    single = data.dim() == 2
    d = data[None] if single else data
    if normalize:
        peak = float(d.abs().max())
        if peak == 0:
            raise ValueError("rates are all zero")
        d = (d / peak).clamp(-0.999, 0.999)
    elif bool((d.abs() >= 1).any()):
        raise ValueError("rates must lie in (-1, 1) for tanh units with normalize=False")
    B, T, N = d.shape
    dtype = torch.get_default_dtype()
    if noise_amplitude > 0:
        n_in = N
        x = _frozen_noise(N, T, dt, noise_amplitude, noise_tau, generator).to(dtype).expand(B, T, N)
    else:
        n_in = 1
        x = torch.zeros(B, T, 1, dtype=dtype)
    net = ForceNetwork(n_in, N, 1, dt=dt, tau=tau, g=g, generator=generator)
    if noise_amplitude > 0:
        with torch.no_grad():
            net.weight_in.copy_(torch.eye(N))
    units = torch.arange(N)
    h0 = torch.atanh(d[:, 0])
    curve = rls_train(net, x, d, units, h0, method=method, passes=passes, rls_alpha=rls_alpha,
                      train_input=False, progress=progress)
    with torch.no_grad():
        h0m = h0.to(dtype)
        fitted = net(x, RateState(h0m, torch.tanh(h0m)))[1].to(torch.float64)
    currents, mags = region_currents(net.weight_rec.to(torch.float64), fitted, index)
    if single:
        currents = {k: v[0] for k, v in currents.items()}
        fitted, d = fitted[0], d[0]
    return CurbdResult(names, index, currents, mags, net, fitted, d, pvar(fitted, d), curve)
