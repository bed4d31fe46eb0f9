r"""Spike encoders: turn any tensor into a float 0/1 spike train, batch-first.

Every encoder returns spikes shaped ``(batch, time, *features)`` (``float32`` 0/1, on the
input's device), with the time step ``dt`` in ms and rates in Hz. Random encoders take an
explicit ``torch.Generator``, so the same seed gives the same spikes whatever the global RNG.

- :func:`poisson_spikes`: Bernoulli spikes from a rate tensor in Hz, ``p = rate * dt / 1000``.
- :func:`poisson_encode`: rate coding of a static input, rate proportional to intensity.
- :func:`latency_encode`: one spike per input, earlier for a stronger input (linear or log).
- :func:`delta_encode`: spikes where a time series changes by more than a threshold,
  on and off channels.

Example:
    >>> import torch
    >>> from bionn.tasks.encoders import poisson_encode, latency_encode
    >>> x = torch.tensor([[0.0, 0.5, 1.0]])
    >>> s = poisson_encode(x, steps=100, max_rate=100.0, dt=1.0,
    ...                    generator=torch.Generator().manual_seed(0))
    >>> s.shape, s.dtype
    (torch.Size([1, 100, 3]), torch.float32)
    >>> latency_encode(x, steps=11).argmax(1)     # first-spike step: strongest first
    tensor([[0, 5, 0]])
    >>> latency_encode(x, steps=11).sum(1)        # the zero input never spikes
    tensor([[0., 1., 1.]])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real

import torch
from torch import Tensor

__all__ = [
    "poisson_spikes",
    "poisson_encode",
    "latency_encode",
    "delta_encode",
    "ENCODERS",
    "encode",
]


# --------------------------------------------------------------------------- checks
def _real(name: str, value: object, *, positive: bool = False, nonnegative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and out <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonnegative and out < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return out


def _steps(steps: object) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    return int(steps)


def _tensor(name: str, x: object, min_dim: int) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimensions "
            f"({'(batch, time, *features)' if min_dim == 2 else '(batch, *features)'}), "
            f"got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        x = x.float()
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite (it holds NaN or inf)")
    return x


def _unit_interval(name: str, x: Tensor) -> None:
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ValueError(
            f"{name} must be intensities in [0, 1], got values in "
            f"[{float(x.min()):.4g}, {float(x.max()):.4g}]; rescale first "
            "(e.g. (x - x.min()) / (x.max() - x.min()))"
        )


def _generator(generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )


# --------------------------------------------------------------------------- Poisson
def poisson_spikes(
    rates: Tensor, dt: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    r"""Bernoulli (discretised Poisson) spikes from firing rates in Hz.

    Each entry spikes independently with probability :math:`p = r\,\Delta t / 1000`
    (``r`` in Hz, ``dt`` in ms), so the expected count over ``T`` steps is
    :math:`r\,T\,\Delta t / 1000` and the expected rate is ``r``. Needs :math:`p \le 1`
    (``rate <= 1000 / dt`` Hz).

    Args:
        rates: rates in Hz, any shape (e.g. ``(batch, time, n)``), >= 0.
        dt: time step in ms.
        generator: drives the draws (CPU or the rates' device); None uses torch's global RNG.

    Returns:
        float 0/1 tensor shaped like ``rates``.

    Example:
        >>> import torch
        >>> s = poisson_spikes(torch.full((1, 1000, 2), 40.0), dt=1.0,
        ...                    generator=torch.Generator().manual_seed(0))
        >>> s.shape
        torch.Size([1, 1000, 2])
    """
    rates = _tensor("rates", rates, 0)
    dt = _real("dt", dt, positive=True)
    _generator(generator)
    if rates.numel() and float(rates.min()) < 0:
        raise ValueError(f"rates must be >= 0 Hz, got a minimum of {float(rates.min()):.4g}")
    p = rates * (dt / 1000.0)
    if p.numel() and float(p.max()) > 1.0 + 1e-9:
        raise ValueError(
            f"rate * dt / 1000 must be <= 1 (at most one spike per step): the largest rate "
            f"{float(rates.max()):.4g} Hz with dt = {dt} ms gives {float(p.max()):.4g}; "
            f"lower the rate below {1000.0 / dt:.4g} Hz or the time step"
        )
    gen_device = generator.device if generator is not None else p.device
    u = torch.rand(p.shape, generator=generator, device=gen_device, dtype=p.dtype).to(p.device)
    return (u < p).to(torch.float32)


def poisson_encode(
    x: Tensor,
    steps: int,
    max_rate: float = 100.0,
    dt: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Rate (Poisson) coding: each input fires at a rate proportional to its intensity.

    An intensity :math:`x \in [0, 1]` fires at :math:`r = x\,r_{max}` Hz: at each of the
    ``steps`` steps of ``dt`` ms it spikes with probability :math:`x\,r_{max}\,\Delta t/1000`,
    independently. The expected spike count is :math:`x\,r_{max}\,T\Delta t / 1000`.

    Args:
        x: ``(batch, *features)`` intensities in [0, 1] (values outside are refused).
        steps: number of time steps ``T``.
        max_rate: rate in Hz of an intensity of 1; ``max_rate * dt / 1000 <= 1``.
        dt: time step in ms.
        generator: drives the draws; pass a seeded one for reproducible spikes.

    Returns:
        ``(batch, steps, *features)`` float 0/1 spikes.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> s = poisson_encode(torch.full((4, 10), 0.5), steps=1000, max_rate=100.0, generator=g)
        >>> rate = s.mean().item() * 1000 / 1.0   # spikes per ms -> Hz; expected 0.5 * 100 Hz
        >>> abs(rate - 50.0) < 3.0
        True
    """
    x = _tensor("x", x, 1)
    steps = _steps(steps)
    max_rate = _real("max_rate", max_rate, nonnegative=True)
    dt = _real("dt", dt, positive=True)
    if max_rate * dt / 1000.0 > 1.0:
        raise ValueError(
            f"max_rate * dt / 1000 must be <= 1 (at most one spike per step), got "
            f"max_rate = {max_rate} Hz and dt = {dt} ms; use max_rate <= {1000.0 / dt:.4g} Hz"
        )
    _unit_interval("x", x)
    rates = (x * max_rate).unsqueeze(1).expand(x.shape[0], steps, *x.shape[1:])
    return poisson_spikes(rates, dt, generator)


# --------------------------------------------------------------------------- latency
def latency_encode(
    x: Tensor,
    steps: int,
    dt: float = 1.0,
    mapping: str = "linear",
    tau: float = 5.0,
    threshold: float = 0.01,
    t_max: float | None = None,
) -> Tensor:
    r"""Latency (time-to-first-spike) coding: one spike per input, earlier when stronger.

    Intensities :math:`x \in [0, 1]`; inputs with :math:`x \le \theta` (``threshold``)
    never spike. Otherwise the spike time in ms is

    * ``mapping="linear"``: :math:`t = t_{max}\,(1 - x)`, so ``x = 1`` spikes at 0 and
      ``x -> 0`` at :math:`t_{max}` (default the last step, ``(steps - 1) * dt``);
    * ``mapping="log"``: :math:`t = \tau \ln\frac{x}{x - \theta}`, the time an RC membrane
      (time constant :math:`\tau` ms, unit resistance) driven by a constant current ``x``
      takes to charge from 0 to the threshold :math:`\theta`; weak inputs come late, and
      :math:`t \to \infty` as :math:`x \to \theta`.

    The spike is placed at step :math:`\lfloor t / \Delta t \rfloor`; a time at or after the
    end of the window (``steps * dt``) gives no spike. Deterministic: no generator.

    Args:
        x: ``(batch, *features)`` intensities in [0, 1].
        steps: number of time steps.
        dt: time step in ms.
        mapping: ``"linear"`` or ``"log"``.
        tau: membrane time constant in ms of the ``"log"`` mapping.
        threshold: :math:`\theta` in [0, 1): inputs at or below it do not spike.
        t_max: time in ms of the weakest input under ``"linear"`` (default ``(steps - 1) * dt``).

    Returns:
        ``(batch, steps, *features)`` float 0/1, at most one spike per input.

    Example:
        >>> import torch
        >>> s = latency_encode(torch.tensor([[1.0, 0.8, 0.2]]), steps=50, mapping="log", tau=10.0,
        ...                    threshold=0.1)
        >>> s.argmax(1)        # tau * ln(x / (x - 0.1)) = 1.05, 1.34, 6.93 ms
        tensor([[1, 1, 6]])
    """
    x = _tensor("x", x, 1)
    steps = _steps(steps)
    dt = _real("dt", dt, positive=True)
    if mapping not in ("linear", "log"):
        raise ValueError(f"mapping must be 'linear' or 'log', got {mapping!r}")
    tau = _real("tau", tau, positive=True)
    threshold = _real("threshold", threshold, nonnegative=True)
    if threshold >= 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
    if t_max is None:
        t_max = (steps - 1) * dt
    t_max = _real("t_max", t_max, nonnegative=True)
    _unit_interval("x", x)
    fires = x > threshold
    if mapping == "linear":
        t = t_max * (1.0 - x)
    else:
        safe = torch.where(fires, x, torch.ones_like(x))
        t = tau * torch.log(safe / (safe - threshold).clamp_min(1e-12))
    step = torch.floor(t / dt + 1e-9)
    fires = fires & (step < steps)
    idx = torch.where(fires, step, torch.zeros_like(step)).long()
    out = torch.zeros(x.shape[0], steps, *x.shape[1:], dtype=torch.float32, device=x.device)
    out.scatter_(1, idx.unsqueeze(1), fires.unsqueeze(1).to(torch.float32))
    return out


# --------------------------------------------------------------------------- delta
def delta_encode(
    x: Tensor,
    threshold: float = 0.1,
    mode: str = "crossing",
    channels: str = "on_off",
) -> Tensor:
    r"""Delta / threshold-crossing coding of a time series: spikes where it changes.

    ``x`` is ``(batch, time, *features)``; :math:`\theta` = ``threshold`` (in the units of x).

    * ``mode="crossing"`` (step-forward threshold crossing, like an event camera): a
      reference starts at :math:`r_0 = x_0`; at each step, if :math:`x_t - r \ge \theta` an
      *on* spike is emitted and :math:`r \leftarrow r + \theta`, if
      :math:`x_t - r \le -\theta` an *off* spike and :math:`r \leftarrow r - \theta`. The
      on count minus the off count tracks :math:`(x_t - x_0)/\theta` (at most one spike per
      step, so a jump larger than :math:`\theta` is spread over the next steps); a ramp of
      slope :math:`s < \theta` per step spikes every :math:`\theta / s` steps.
    * ``mode="delta"``: on where :math:`x_t - x_{t-1} \ge \theta`, off where
      :math:`x_t - x_{t-1} \le -\theta` (no spike at ``t = 0``); a slow ramp never spikes.

    Args:
        x: ``(batch, time, *features)`` signal.
        threshold: :math:`\theta > 0`.
        mode: ``"crossing"`` or ``"delta"``.
        channels: ``"on_off"``: ``(batch, time, 2, *features)``, index 0 = on (increase),
            1 = off (decrease); ``"on"``: only on spikes; ``"any"``: on and off merged,
            both ``(batch, time, *features)``.

    Returns:
        float 0/1 spikes (shapes above).

    Example:
        >>> import torch
        >>> ramp = torch.linspace(0, 1, 101).reshape(1, 101, 1)   # rises by 0.01 per step
        >>> s = delta_encode(ramp, threshold=0.1)
        >>> s.shape, s[:, :, 0].sum().item(), s[:, :, 1].sum().item()
        (torch.Size([1, 101, 2, 1]), 10.0, 0.0)
    """
    x = _tensor("x", x, 2)
    threshold = _real("threshold", threshold, positive=True)
    if mode not in ("crossing", "delta"):
        raise ValueError(f"mode must be 'crossing' or 'delta', got {mode!r}")
    if channels not in ("on_off", "on", "any"):
        raise ValueError(f"channels must be 'on_off', 'on' or 'any', got {channels!r}")
    eps = 1e-6 * threshold  # float rounding: a change of exactly theta counts
    if mode == "delta":
        d = torch.diff(x, dim=1, prepend=x[:, :1])
        on = d >= threshold - eps
        off = d <= -threshold + eps
    else:
        ref = x[:, 0].clone()
        on_steps, off_steps = [], []
        for t in range(x.shape[1]):
            d = x[:, t] - ref
            up = d >= threshold - eps
            down = d <= -threshold + eps
            ref = ref + threshold * (up.to(x.dtype) - down.to(x.dtype))
            on_steps.append(up)
            off_steps.append(down)
        on = torch.stack(on_steps, 1)
        off = torch.stack(off_steps, 1)
    if channels == "on":
        return on.to(torch.float32)
    if channels == "any":
        return (on | off).to(torch.float32)
    return torch.stack([on, off], 2).to(torch.float32)


# --------------------------------------------------------------------------- registry
#: Encoders by name, for :func:`encode` and ``spiking_dataset(encoder=...)``.
ENCODERS: dict[str, Callable[..., Tensor]] = {
    "poisson": poisson_encode,
    "latency": latency_encode,
    "delta": delta_encode,
}


def encode(x: Tensor, encoder: str, **params: object) -> Tensor:
    """Encode ``x`` with the encoder registered as ``encoder`` (see :data:`ENCODERS`).

    ``params`` go to the encoder (``steps``, ``dt``, ``max_rate``, ``generator``, ...).

    Example:
        >>> import torch
        >>> encode(torch.rand(2, 5), "latency", steps=20).shape
        torch.Size([2, 20, 5])
    """
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}; allowed: {', '.join(ENCODERS)}")
    return ENCODERS[encoder](x, **params)
