r"""Convolutional recurrent spiking networks: spiking units on a 2-D sheet, trained by
surrogate gradients.

:class:`ConvSpikingRNN` is a configuration of :class:`~bionn.recurrent.RecurrentCore` like
:class:`~bionn.spiking.SpikingRNN`, with convolutions in place of the dense input and
recurrent matrices. ``C`` channels of neurons sit at every position of an ``(H, W)``
sheet; the state ``(batch, C, H, W)`` is flattened to ``(batch, n)``, ``n = C H W``, for
the :class:`~bionn.spiking.SpikingCell` (any class of
:data:`~bionn.spiking.TRAINABLE_NEURONS`, any synapse kind). Time in ms, potentials in mV::

    u_t = conv(W_rec, z_{t-1}) + conv(W_in, x_t) + b       (synaptic input, (batch, C, H, W))
    state_t, z_t = cell(state_{t-1}, u_t)                  (synapse, neuron, surrogate spike, reset)
    y_t = kappa y_{t-1} + (1 - kappa) (W_out pool(z_t) + b_out),   kappa = exp(-dt / tau_out)

``conv`` is a stride-1 cross-correlation (``F.conv2d``) with zero ``'same'`` padding (odd
kernels ``in_kernel``, ``rec_kernel``), so the sheet keeps its size and the network is
translation equivariant away from its borders. ``W_rec`` ``(C, C, k, k)`` obeys Dale's law
by channel: ``W_rec = |W_raw| * sign[pre channel]``
(:class:`~bionn.constraints.Dale` along the presynaptic axis, a parametrization, so it
holds after every optimizer step), with ``sign`` given or from ``e_fraction`` (first
channels E, the rest I); ``W_in`` ``(C, C_in, k_in, k_in)`` (an image has no sign) and the
readout are free. ``pool`` averages the spikes over space per channel (``"avg"``; over a
``pool_size x pool_size`` grid of regions) or keeps every neuron (``"none"``);
``readout="linear"`` gives ``y_t = W_out pool(z_t) + b_out``. A conductance synapse
sends the positive part of each product onto ``g_E`` and the negative part onto ``g_I``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from bionn.constraints import Dale, LowerBound, balance_ei, resolve_sign
from bionn.functional.feedback import ConvKernel, FeedbackKernel, OpKernel
from bionn.recurrent.core import Prepared
from bionn.spiking.base import NeuronGroup
from bionn.spiking.trainable import SpikingCell, SpikingCore, _cell

__all__ = ["ConvSpikingRNN", "POOLS"]

#: readout pooling of a :class:`ConvSpikingRNN`
POOLS = ("avg", "none")


def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"{name} must be a positive integer; got {v!r}")
    return v


def _odd_kernel(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1 or v % 2 == 0:
        raise ValueError(f"{name} must be a positive odd integer (zero 'same' padding); got {v!r}")
    return v


class ConvSpikingRNN(SpikingCore):
    r"""A recurrent spiking network on a 2-D sheet with convolutional input and recurrence
    (equations in the module docstring).

    Shapes: input ``x`` ``(batch, time, in_channels, H, W)`` (batch-first; a static image
    repeated over time by ``expand`` is convolved once); ``forward(x, state=None,
    return_state=False) -> (outputs (batch, time, n_output), spikes (batch, time, C*H*W)
    [, state])``, the spikes flattened channel-major in the rates' place (:meth:`sheet`
    gives ``(batch, time, C, H, W)``). The state is the cell's :class:`CellState` on
    ``(batch, C*H*W)`` (conductance synapses: ``(batch, 2, C*H*W)``) plus the membrane
    readout ``out``; continue a trial from ``detach_state(state)`` (truncated BPTT).

    ``connection_weights()``: ``input`` ``(C, C_in, k_in, k_in)``, ``recurrent``
    ``(C, C, k_rec, k_rec)`` (effective, signed) and ``readout`` ``(n_output, features)``;
    ``bionn.learning.convert(model, method)`` applies ``fa``, ``usf``, ``frsf``, ``brsf``,
    ``wm`` and ``kp`` to all three (the convolutions' input gradient is the transposed
    convolution with ``B``); ``dfa`` is refused, as on every recurrent model.

    Args:
        in_channels: channels of the input image.
        channels: ``C``, neuron channels per position.
        size: ``(H, W)`` of the sheet (and of the input).
        n_output: readout size.
        in_kernel, rec_kernel: odd kernel sizes of the input and recurrent convolutions.
        cell: a neuron name of :data:`~bionn.spiking.TRAINABLE_NEURONS` (default ``"LIF"``),
            a :class:`~bionn.spiking.NeuronGroup` or a :class:`~bionn.spiking.SpikingCell` of
            ``C*H*W`` neurons with this ``dt``.
        dt: step (ms).
        e_fraction, sign: Dale's law by channel (``e_fraction`` in (0, 1): the first
            ``round(e_fraction C)`` channels E; ``sign``: ``(C,)`` of +1/-1); neither: a
            free recurrent kernel.
        pool: ``"avg"`` (spatial average per channel over a ``pool_size`` grid,
            ``C * pool_size**2`` features) or ``"none"`` (every neuron, ``C*H*W`` features).
        pool_size: regions per side of the ``"avg"`` pooling (1: global average).
        readout: ``"membrane"`` (leaky, ``tau_out`` ms, ``learn_tau_out``) or ``"linear"``.
        input_gain, recurrent_gain: initial weight scales, in units of the cell's ``scale``
            (mV) per unit of input, divided by the synapse's gain ``1 / (1 - d)``.
        bias: a learned input bias per channel.
        generator: for the initial weights.
        **cell_options: :class:`~bionn.spiking.SpikingCell` options and neuron parameters
            (``surrogate``, ``reset``, ``synapse``, ``tau_syn``, ``learn``, ``tau``, ``V_th``,
            ``t_refractory``, ...).

    Example:
        >>> import torch
        >>> net = ConvSpikingRNN(1, 4, (8, 8), 2, e_fraction=0.75, input_gain=4.0,
        ...                      t_refractory=0.0, generator=torch.Generator().manual_seed(0))
        >>> out, spikes = net(torch.rand(3, 10, 1, 8, 8))
        >>> out.shape, spikes.shape, net.sheet(spikes).shape
        (torch.Size([3, 10, 2]), torch.Size([3, 10, 256]), torch.Size([3, 10, 4, 8, 8]))
        >>> w = net.connection_weights()["recurrent"]          # (post, pre, k, k)
        >>> bool((w[:, :3] >= 0).all() and (w[:, 3:] <= 0).all())
        True
    """

    WEIGHT_NAMES = {"input": "weight_in", "recurrent": "weight_rec", "readout": "weight_out"}
    #: biases (``BioConverter(include_bias=True)`` transforms them with the weights)
    BIAS_NAMES = ("bias_rec", "bias_out")

    def __init__(self, in_channels: int, channels: int, size: tuple[int, int], n_output: int, *,
                 in_kernel: int = 3, rec_kernel: int = 3,
                 cell: SpikingCell | NeuronGroup | str = "LIF", dt: float = 1.0,
                 e_fraction: float | None = None, sign: Tensor | None = None,
                 pool: Literal["avg", "none"] = "avg", pool_size: int = 1,
                 readout: Literal["membrane", "linear"] = "membrane", tau_out: float = 20.0,
                 learn_tau_out: bool = False, input_gain: float = 1.0, recurrent_gain: float = 0.5,
                 bias: bool = False, generator: torch.Generator | None = None,
                 **cell_options: Any) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("channels", channels), ("n_output", n_output)):
            _positive_int(name, v)
        try:
            h, w = (int(s) for s in size)
        except (TypeError, ValueError):
            raise ValueError(f"size must be a (height, width) pair of positive integers; got {size!r}") from None
        if h <= 0 or w <= 0:
            raise ValueError(f"size must be a (height, width) pair of positive integers; got {size!r}")
        _odd_kernel("in_kernel", in_kernel)
        _odd_kernel("rec_kernel", rec_kernel)
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}; got {pool!r}")
        _positive_int("pool_size", pool_size)
        if pool_size > min(h, w):
            raise ValueError(f"pool_size must be <= min(H, W) = {min(h, w)}; got {pool_size}")
        if readout not in ("membrane", "linear"):
            raise ValueError(f"readout must be 'membrane' or 'linear'; got {readout!r}")
        if e_fraction is not None and not (isinstance(e_fraction, (int, float)) and 0.0 < e_fraction < 1.0):
            raise ValueError(f"e_fraction must be in (0, 1); got {e_fraction!r}")
        self.in_channels, self.channels, self.size, self.n_output = in_channels, channels, (h, w), n_output
        self.in_kernel, self.rec_kernel = in_kernel, rec_kernel
        self.n_hidden = channels * h * w
        self.pool, self.pool_size, self.readout_mode = pool, pool_size, readout
        self._init_core(dt=dt, unit_shape=(self.n_hidden,), activation=None, fused=False)
        self.cell = _cell(cell, self.n_hidden, self.dt, cell_options)
        sign = resolve_sign(channels, sign, e_fraction)
        if sign is not None and not bool(((sign == 1) | (sign == -1)).all()):
            raise ValueError(f"sign must hold +1 (E) or -1 (I) per channel; got {sign.tolist()}")
        self.register_buffer("sign", sign)

        # initial weights: unit input moves V by about `gain` thresholds at steady state
        cell_ = self.cell
        syn_gain = 1.0 if cell_.synapse == "delta" else float(1.0 - torch.exp(-self.dt / cell_.tau_syn.detach()))
        unit = cell_.scale * syn_gain
        if cell_.synapse == "conductance":
            unit = syn_gain / max(abs(cell_.E_exc - float(cell_.neuron.V_th.mean())), 1.0)
        fan_in, fan_rec = in_channels * in_kernel ** 2, channels * rec_kernel ** 2
        w_in = torch.randn(channels, in_channels, in_kernel, in_kernel, generator=generator)
        w_rec = torch.rand(channels, channels, rec_kernel, rec_kernel, generator=generator)
        w_rec = w_rec * (recurrent_gain * unit / math.sqrt(fan_rec))
        if sign is not None:
            w_rec = balance_ei(w_rec, sign)  # sign along dim 1, the presynaptic channel
        else:
            w_rec = w_rec * torch.where(torch.rand(w_rec.shape, generator=generator) < 0.5, -1.0, 1.0)
        self.weight_in = nn.Parameter(w_in * (input_gain * unit / math.sqrt(fan_in)))
        self.bias_rec = nn.Parameter(torch.zeros(channels)) if bias else None
        self.weight_rec = nn.Parameter(w_rec.contiguous())
        if sign is not None:
            parametrize.register_parametrization(self, "weight_rec", Dale(sign, dim=1))
        n_feat = channels * pool_size ** 2 if pool == "avg" else self.n_hidden
        self.weight_out = nn.Parameter(torch.randn(n_output, n_feat, generator=generator) / math.sqrt(n_feat))
        self.bias_out = nn.Parameter(torch.zeros(n_output))
        if readout == "membrane":
            if not tau_out >= self.dt:
                raise ValueError(f"tau_out must be >= dt ({self.dt:g} ms); got {tau_out!r}")
            if learn_tau_out:
                self.tau_out = nn.Parameter(torch.tensor(float(tau_out)))
                parametrize.register_parametrization(self, "tau_out", LowerBound(self.dt))
            else:
                self.register_buffer("tau_out", torch.tensor(float(tau_out)))

    # ------------------------------------------------------------------ views
    def sheet(self, x: Tensor) -> Tensor:
        """Flat ``(..., C*H*W)`` (spikes, states) as ``(..., C, H, W)``."""
        return x.unflatten(-1, (self.channels, *self.size))

    def features(self, spikes: Tensor) -> Tensor:
        """What the readout sees: ``pool(z)``, ``(batch, time, features)`` from flat spikes."""
        if self.pool == "none":
            return spikes
        s = self.sheet(spikes)
        lead = s.shape[:-3]
        pooled = F.adaptive_avg_pool2d(s.flatten(0, -4), self.pool_size)
        return pooled.reshape(*lead, -1)

    # ------------------------------------------------------------------ core configuration
    def connection_weights(self) -> dict[str, Tensor]:
        """Effective weights: ``input`` ``(C, C_in, k_in, k_in)``, ``recurrent``
        ``(C, C, k_rec, k_rec)`` (post, pre, signed), ``readout`` ``(n_output, features)``."""
        return {"input": self.weight_in, "recurrent": self.weight_rec, "readout": self.weight_out}

    def _kernel(self, k: int) -> FeedbackKernel:
        """Zero-padded 'same' convolution (closed-form feedback gradients); conductance
        synapses: positive weights onto channel E, negative onto I, ``(N, 2, C, H, W)``."""
        pad = k // 2
        conv = ConvKernel((1, 1), (pad, pad), (1, 1), 1)
        if self.cell.n_channels == 1:
            return conv
        return OpKernel(lambda x, w, b: torch.stack(
            (conv.op(x, w.clamp_min(0), b), conv.op(x, (-w).clamp_min(0), None)), 1))

    def check_input(self, x: Tensor) -> None:
        """Refuse an input that is not ``(batch, time, in_channels, H, W)``."""
        want = (self.in_channels, *self.size)
        if x.dim() != 5 or tuple(x.shape[2:]) != want:
            raise ValueError(f"input must be (batch, time, in_channels, H, W) = (batch, time, "
                             f"{', '.join(map(str, want))}); got shape {tuple(x.shape)}")

    def input_drive(self, x: Tensor, p: Prepared) -> Tensor:
        """``conv(W_in, x_t) + b`` for every step, ``(batch, time, C*H*W)`` (conductance:
        ``(batch, time, 2, C*H*W)``); an input expanded over time is convolved once."""
        b, steps = x.shape[:2]
        static = steps > 1 and x.stride(1) == 0
        xs = x[:, :1] if static else x
        y = self.connect(p, "input", xs.flatten(0, 1), p.weights["input"], self.bias_rec,
                         kernel=self._kernel(self.in_kernel))
        y = y.flatten(-3).unflatten(0, (b, xs.shape[1]))
        return y.expand(-1, steps, *y.shape[2:]) if static else y

    def recurrent_input(self, r: Tensor, p: Prepared) -> Tensor:
        """``conv(W_rec, z_{t-1})`` on the flat spikes ``r`` ``(batch, C*H*W)``."""
        y = self.connect(p, "recurrent", self.sheet(r), p.weights["recurrent"],
                         kernel=self._kernel(self.rec_kernel))
        return y.flatten(-3)

    def readout(self, rates: Tensor, p: Prepared, y0: Tensor | None = None) -> Tensor:
        """The outputs from the spikes: ``W_out pool(z_t) + b_out``, through the leaky
        membrane (from ``y0``) or linear."""
        return self.membrane(
            self.connect(p, "readout", self.features(rates), p.weights["readout"], self.bias_out), y0)

    def extra_repr(self) -> str:
        ei = ""
        if self.sign is not None:
            ei = f", E={int((self.sign > 0).sum())}, I={int((self.sign < 0).sum())} channels"
        return (f"in_channels={self.in_channels}, channels={self.channels}, size={self.size}, "
                f"n_output={self.n_output}, in_kernel={self.in_kernel}, rec_kernel={self.rec_kernel}, "
                f"dt={self.dt:g}, pool={self.pool!r}, readout={self.readout_mode!r}{ei}")
