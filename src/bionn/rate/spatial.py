r"""Spatially embedded rate networks: areas are 2-D sheets of neurons of several cell types.

An area (:class:`SpatialArea`) holds, at every position of an ``(H, W)`` sheet,
``count`` channels ("subtypes") of every cell type of a
:class:`~bionn.circuits.celltypes.CellTypeTable`. Each allowed type connection
``q -> p`` is a convolution whose kernel size is the connection's spatial
extent. For type ``p`` (Euler step, ``alpha = dt / tau``, time in ms)::

    I_p   = sum_q s_q g_qp(s_q conv(W_qp, r_q)) + ff_p + fb_p          (synaptic input)
    I_p   = I_p * gain_p                                               (multiplicative feedback)
    h_p  <- (1 - alpha_p) h_p + alpha_p (I_p + b_p)
    r_p   = f_p(h_p)

``W_qp = |W_raw| * s_q`` (Dale's law from the presynaptic type ``q``, sign
``s_q = +1`` E or ``-1`` I, by parametrization; unsigned types have free
weights and ``s_q = 1``), ``g_qp`` the connection's synaptic nonlinearity
(applied to the magnitude of the group's summed input, so it never flips the
sign; identity groups are summed in one convolution), ``f_p`` the type's neuron
nonlinearity. ``tau`` is per type, per channel, per position or per neuron,
fixed (``tau >= dt``) or learnable (``tau = dt + softplus(raw) > dt``).

A network (:class:`SpatialNetwork`) stacks areas. Area ``i`` receives the
output-type rates of area ``i - 1`` (resized to its sheet by adaptive pooling,
or bilinear upsampling when smaller) through an input convolution onto its
input types; Dale's law holds there too (sign of the sending type). A
:class:`Feedback` projection from a later area ``j`` to an earlier area ``i``
upsamples ``j``'s output rates to ``i``'s sheet and convolves them onto chosen
cell types of ``i``; ``mode="additive"`` adds the result ``F`` to their synaptic
input, ``mode="multiplicative"`` multiplies their synaptic input by
``1 + tanh(F)`` (gain modulation: with excitatory sources ``F >= 0`` and the gain
lies in ``[1, 2)``; it leaves silent neurons silent). Feedback with delay ``d``
delivers the output of step ``t - 1 - d`` at step ``t``; a feedforward delay
``d`` delivers step ``t - d`` (0: the same step, areas update in order).
Inputs are a static image ``(batch, C, H, W)`` repeated ``steps`` times or a
sequence ``(batch, T, C, H, W)``; the readout pools one area's output rates
and applies a linear map at every step.

Example:
    >>> import torch
    >>> from bionn.circuits.motifs import motif
    >>> net = SpatialNetwork(motif("E-I"), [(12, 12), (6, 6)], in_channels=1, n_output=3,
    ...                      top_down=[TopDown(1, 0, mode="multiplicative", delay=1)])
    >>> out, rates = net(torch.rand(2, 1, 12, 12), steps=5)
    >>> out.shape, net.record(rates).query(area=1, cell_type="I", t=-1).shape
    (torch.Size([2, 5, 3]), torch.Size([2, 1, 6, 6]))
    >>> bool((net.areas[0].connection_weight("I", "E") <= 0).all())
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from bionn.circuits.celltypes import CellTypeTable
from bionn.constraints import Dale, Mask
from bionn.functional.feedback import ConvKernel, FeedbackKernel, feedback_apply
from bionn.functional.loop import scan
from bionn.functional.rate import get_activation, leaky_update
from bionn.recurrent.core import Prepared, RecurrentCore, TimeConstants

__all__ = [
    "SpatialArea",
    "TopDown",
    "SpatialNetwork",
    "SpatialState",
    "SpatialRecord",
    "TAU_MODES",
    "TOP_DOWN_MODES",
]

TAU_MODES = ("type", "channel", "position", "neuron")
TOP_DOWN_MODES = ("additive", "multiplicative")
Size = tuple[int, int]


def _signed_conv_param(out_c: int, in_c: int, k: int, in_sign: Tensor, strength: float,
                       row_mask: Tensor | None, generator: torch.Generator | None) -> nn.Module:
    """A module holding ``weight`` ``(out_c, in_c, k, k)`` under Dale's law from the
    presynaptic channel (:class:`~bionn.constraints.Dale` along ``in``, unsigned
    channels free) and, with ``row_mask``, a :class:`~bionn.constraints.Mask` of
    the postsynaptic channels it may reach.

    Signed inputs start with magnitudes ``strength * U(0, 2) / (in_c k^2)`` (summed
    input of expected size ``strength``); unsigned ones with ``N(0, strength^2 / (in_c k^2))``.
    """
    flat_sign = in_sign.to(torch.get_default_dtype()).flatten()
    in_sign = flat_sign.view(1, in_c, 1, 1)
    fan = in_c * k * k
    mag = torch.rand(out_c, in_c, k, k, generator=generator) * (2 * strength / fan)
    gauss = torch.randn(out_c, in_c, k, k, generator=generator) * (strength / math.sqrt(fan))
    holder = nn.Module()
    holder.weight = nn.Parameter(torch.where(in_sign != 0, mag, gauss).contiguous())
    parametrize.register_parametrization(holder, "weight", Dale(flat_sign, dim=1, allow_unsigned=True))
    if row_mask is not None:
        mask = row_mask.to(flat_sign.dtype).view(out_c, 1, 1, 1)
        parametrize.register_parametrization(holder, "weight", Mask(mask))
    return holder


def _resize(x: Tensor, size: Size, pool: str = "avg") -> Tensor:
    """Resize ``(..., C, H, W)`` to ``size``: adaptive pooling when shrinking,
    bilinear interpolation when growing."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    lead = x.shape[:-3]
    x4 = x.reshape(-1, *x.shape[-3:])
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        y = F.adaptive_max_pool2d(x4, size) if pool == "max" else F.adaptive_avg_pool2d(x4, size)
    else:
        y = F.interpolate(x4, size=size, mode="bilinear", align_corners=False)
    return y.reshape(*lead, *y.shape[-3:])


def _check_size(size: Sequence[int], what: str) -> Size:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a (height, width) pair of positive integers; got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{what} must be a (height, width) pair of positive integers; got {size!r}")
    return h, w


class SpatialArea(nn.Module):
    r"""One area: an ``(H, W)`` sheet with the cell types of a table, recurrent
    connections as convolutions (see the module docstring for the equations).

    Channels are ordered by type as in the table (``count`` channels per type, or a
    ``density`` share of ``n_channels``).

    Args:
        table: the :class:`~bionn.circuits.celltypes.CellTypeTable`.
        size: ``(H, W)`` of the sheet.
        in_channels: channels of the feedforward input (image or previous area).
        dt: integration step (ms).
        tau_mode: ``"type"`` (one tau per type), ``"channel"`` (per channel),
            ``"position"`` (per type and position) or ``"neuron"`` (per channel and
            position); initial values from the table.
        learn_tau: train tau (kept ``> dt`` by :class:`~bionn.recurrent.TimeConstants`);
            fixed taus must be ``>= dt``.
        in_extent: kernel size of the input convolution.
        in_sign: ``(in_channels,)`` +1/-1/0 sign of each input channel (Dale's law on
            afferents); None: unsigned (an image).
        in_strength: initial strength of the input convolution.
        bias: a learnable bias per channel.
        n_channels: total channels per position, shared among types given by
            ``density`` (types with a ``count`` keep it).
        generator: random generator for the initial weights.

    Example:
        >>> from bionn.circuits.motifs import motif
        >>> area = SpatialArea(motif("E-PV-SST-VIP"), (10, 10), in_channels=1, learn_tau=True)
        >>> rates, h = area(torch.rand(3, 1, 10, 10), steps=4)
        >>> rates.shape, area.channels["PV"]
        (torch.Size([3, 4, 7, 10, 10]), slice(4, 5, None))
    """

    def __init__(
        self,
        table: CellTypeTable,
        size: Sequence[int],
        in_channels: int,
        *,
        dt: float = 10.0,
        tau_mode: str = "type",
        learn_tau: bool = False,
        in_extent: int = 3,
        in_sign: Tensor | None = None,
        in_strength: float = 1.0,
        bias: bool = True,
        n_channels: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(table, CellTypeTable):
            raise ValueError(f"table must be a CellTypeTable; got {type(table).__name__}")
        self.table = table
        self.size = _check_size(size, "size")
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels <= 0:
            raise ValueError(f"in_channels must be a positive integer; got {in_channels!r}")
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a positive number of ms; got {dt!r}")
        if tau_mode not in TAU_MODES:
            raise ValueError(f"tau_mode must be one of {TAU_MODES}; got {tau_mode!r}")
        if isinstance(in_extent, bool) or not isinstance(in_extent, int) or in_extent <= 0 or in_extent % 2 == 0:
            raise ValueError(f"in_extent must be a positive odd integer; got {in_extent!r}")
        self.in_channels, self.dt, self.tau_mode = in_channels, float(dt), tau_mode
        names = table.names
        sizes = table.sizes(n_channels)
        self.type_sizes = [sizes[n] for n in names]
        self.channels: dict[str, slice] = table.slices(n_channels)
        self.n_channels = sum(self.type_sizes)
        labels = table.labels(n_channels)
        self.register_buffer("type_index", labels, persistent=False)
        self.register_buffer("channel_sign", table.sign(n_channels), persistent=False)
        out_idx = torch.cat([torch.arange(self.n_channels)[self.channels[t]] for t in table.outputs])
        self.register_buffer("output_index", out_idx, persistent=False)
        self.out_channels = int(out_idx.numel())
        self._acts = [t.nonlinearity for t in table.types]

        # Recurrent synapses, one module per allowed connection.
        self.max_extent = max([c.extent for c in table.active_connections] + [1])
        self.synapses = nn.ModuleDict()
        for c in table.active_connections:
            i, j = table.index(c.post), table.index(c.pre)
            sign = torch.full((self.type_sizes[j],), float(table.types[j].sign))
            self.synapses[c.key] = _signed_conv_param(
                self.type_sizes[i], self.type_sizes[j], c.extent, sign, c.strength, None, generator)
        # Synapse groups: per post type one linear group, then one group per
        # connection with a synaptic nonlinearity (applied before summation).
        self._linear_conns: list[list[tuple[int, str]]] = [[] for _ in names]
        self._nonlinear: list[tuple[int, int, str, float]] = []  # (post, pre, key, sign)
        for c in table.active_connections:
            i, j = table.index(c.post), table.index(c.pre)
            if c.synapse == "identity":
                self._linear_conns[i].append((j, c.key))
            else:
                self._nonlinear.append((i, j, c.key, float(table.types[j].sign or 1)))
        self._syn_fn = {c.key: get_activation(c.synapse) for c in table.active_connections
                        if c.synapse != "identity"}

        # Feedforward input onto the input types.
        rows = torch.isin(labels, torch.tensor([table.index(t) for t in table.inputs]))
        in_sign_t = torch.zeros(in_channels) if in_sign is None else torch.as_tensor(in_sign).flatten()
        if in_sign_t.numel() != in_channels or not torch.isin(in_sign_t, torch.tensor([-1.0, 0.0, 1.0])).all():
            raise ValueError(f"in_sign must hold {in_channels} values in {{+1, -1, 0}}")
        self.input_synapse = _signed_conv_param(self.n_channels, in_channels, in_extent, in_sign_t,
                                                in_strength, rows, generator)
        self.in_extent = in_extent
        self.bias = nn.Parameter(torch.zeros(self.n_channels)) if bias else None

        # Time constants.
        type_tau = torch.tensor([t.tau for t in table.types], dtype=torch.get_default_dtype())
        h, w = self.size
        init = {"type": type_tau, "channel": type_tau[labels],
                "position": type_tau[:, None, None].expand(-1, h, w).clone(),
                "neuron": type_tau[labels][:, None, None].expand(-1, h, w).clone()}[tau_mode]
        if not learn_tau and (init < self.dt).any():
            bad = [t.name for t in table.types if t.tau < self.dt]
            raise ValueError(f"tau must be >= dt={self.dt:g} ms (alpha <= 1); types {bad} have smaller tau")
        self.time_constants = TimeConstants(init, self.dt, learn=learn_tau,
                                            index=labels if tau_mode in ("type", "position") else None)

    # ------------------------------------------------------------ structure
    def connection_weight(self, pre: str, post: str) -> Tensor:
        """The effective (signed) ``(C_post, C_pre, k, k)`` kernel of ``pre -> post``."""
        key = f"{pre}->{post}"
        if key not in self.synapses:
            raise ValueError(f"no connection {key} in this area; connections are {list(self.synapses)}")
        return self.synapses[key].weight

    @property
    def tau(self) -> Tensor:
        """tau (ms) broadcastable to ``(C, H, W)``: ``(C, 1, 1)`` or ``(C, H, W)``."""
        tau = self.time_constants.per_unit()
        return tau[:, None, None] if tau.dim() == 1 else tau

    def tau_by_type(self) -> dict[str, Tensor]:
        """The current tau values (ms) per cell type, flattened, detached."""
        full = self.tau.detach().expand(self.n_channels, *self.size)
        return {name: full[sl].flatten().clone() for name, sl in self.channels.items()}

    def recurrent_weight(self, kernels: dict[str, Tensor] | None = None) -> Tensor:
        """All recurrent kernels assembled in one ``(C + C_nl, C, K, K)`` weight:
        first one linear group per post type, then one block per connection with
        a synaptic nonlinearity (``K`` the largest extent). ``kernels`` (by
        connection key) replaces the area's own (e.g. feedback matrices ``B``)."""
        k_max, sizes = self.max_extent, self.type_sizes
        ref = self.input_synapse.weight

        def padded(key: str) -> Tensor:
            w = self.synapses[key].weight if kernels is None else kernels[key]
            d = (k_max - w.shape[-1]) // 2
            return F.pad(w, (d, d, d, d)) if d else w

        rows = []
        for i, conns in enumerate(self._linear_conns):
            by_pre = dict(conns)
            rows.append(torch.cat([padded(by_pre[j]) if j in by_pre else
                                   ref.new_zeros(sizes[i], sizes[j], k_max, k_max)
                                   for j in range(len(sizes))], 1))
        for i, j, key, _ in self._nonlinear:
            rows.append(torch.cat([padded(key) if q == j else ref.new_zeros(sizes[i], sizes[q], k_max, k_max)
                                   for q in range(len(sizes))], 1))
        return torch.cat(rows, 0)

    # ------------------------------------------------------------ dynamics
    def rates(self, h: Tensor) -> Tensor:
        """``r = f_p(h)`` per type, ``(batch, C, H, W)``."""
        if len(set(self._acts)) == 1:
            return get_activation(self._acts[0])(h)
        parts = h.split(self.type_sizes, dim=1)
        return torch.cat([get_activation(a)(p) for a, p in zip(self._acts, parts, strict=True)], 1)

    def output(self, r: Tensor) -> Tensor:
        """Rates of the output types, ``(batch, out_channels, H, W)``, from the rates ``r``."""
        return r.index_select(1, self.output_index)

    def input_kernel(self) -> FeedbackKernel:
        """The input convolution as a feedback kernel (for credit assignment)."""
        pad = self.in_extent // 2
        return ConvKernel((1, 1), (pad, pad), (1, 1), 1)

    def recurrent_kernel(self) -> FeedbackKernel:
        pad = self.max_extent // 2
        return ConvKernel((1, 1), (pad, pad), (1, 1), 1)

    def input_drive(self, x: Tensor, pool: str = "avg", weight: Tensor | None = None,
                    apply=None) -> Tensor:
        """Input convolution of ``x`` ``(..., in_channels, H', W')`` resized to the sheet;
        ``apply(x, weight, kernel)`` performs the product (default: plain convolution)."""
        x = _resize(x, self.size, pool)
        lead = x.shape[:-3]
        w = self.input_synapse.weight if weight is None else weight
        x4 = x.reshape(-1, *x.shape[-3:])
        y = self.input_kernel().op(x4, w, None) if apply is None else apply(x4, w, self.input_kernel())
        return y.reshape(*lead, *y.shape[-3:])

    def synaptic_input(self, r: Tensor, weight: Tensor | None = None, apply=None) -> Tensor:
        """Recurrent synaptic input ``sum_q s_q g_qp(s_q conv(W_qp, r_q))``, ``(batch, C, H, W)``."""
        weight = self.recurrent_weight() if weight is None else weight
        kernel = self.recurrent_kernel()
        out = kernel.op(r, weight, None) if apply is None else apply(r, weight, kernel)
        if not self._nonlinear:
            return out
        c = self.n_channels
        parts = list(out[:, :c].split(self.type_sizes, dim=1))
        off = c
        for i, _, key, s in self._nonlinear:
            z = out[:, off:off + self.type_sizes[i]]
            off += self.type_sizes[i]
            parts[i] = parts[i] + s * self._syn_fn[key](s * z)
        return torch.cat(parts, 1)

    def total_input(self, syn: Tensor, ff: Tensor | None, fb_add: Tensor | None = None,
                    fb_gain: Tensor | None = None) -> Tensor:
        """``(syn + ff + fb_add) * fb_gain + b``: the input the leaky update integrates."""
        if ff is not None:
            syn = syn + ff
        if fb_add is not None:
            syn = syn + fb_add
        if fb_gain is not None:
            syn = syn * fb_gain
        if self.bias is not None:
            syn = syn + self.bias[:, None, None]
        return syn

    def step(self, h: Tensor, ff: Tensor | None, fb_add: Tensor | None = None,
             fb_gain: Tensor | None = None, weight: Tensor | None = None,
             alpha: Tensor | None = None) -> Tensor:
        """One Euler step of the area alone: the new ``h`` from ``h`` ``(batch, C, H, W)``,
        the input drive ``ff``, additive top-down input ``fb_add`` and gain ``fb_gain``."""
        alpha = self.dt / self.tau if alpha is None else alpha
        syn = self.total_input(self.synaptic_input(self.rates(h), weight), ff, fb_add, fb_gain)
        return leaky_update(h, syn, alpha, self.rates).h

    def initial_state(self, batch_size: int) -> Tensor:
        """Zero ``h``, ``(batch, C, H, W)``."""
        return self.input_synapse.weight.new_zeros(batch_size, self.n_channels, *self.size)

    def split(self, x: Tensor, dim: int = -3) -> dict[str, Tensor]:
        """Channels of ``x`` per cell type (``dim``: the channel dimension)."""
        return {n: x.narrow(dim, sl.start, sl.stop - sl.start) for n, sl in self.channels.items()}

    def forward(self, x: Tensor, steps: int | None = None, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run the area alone on a static ``(batch, C_in, H', W')`` input for ``steps``
        steps or a ``(batch, T, C_in, H', W')`` sequence.

        Returns ``(rates (batch, T, C, H, W), final h)``.
        """
        drive, steps = _input_drives(self, x, steps)
        h = self.initial_state(x.shape[0]) if state is None else state
        weight, alpha = self.recurrent_weight(), self.dt / self.tau
        drive = drive.unsqueeze(1).expand(-1, steps, -1, -1, -1) if drive.dim() == 4 else drive

        def step(h: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
            h = self.step(h, d, weight=weight, alpha=alpha)
            return self.rates(h), h

        return scan(step, h, (drive,))

    def extra_repr(self) -> str:
        types = ", ".join(f"{t.name}:{n}" for t, n in zip(self.table.types, self.type_sizes, strict=True))
        return (f"size={self.size}, types=[{types}], in_channels={self.in_channels}, dt={self.dt:g}, "
                f"tau_mode={self.tau_mode}")


def _input_drives(area: SpatialArea, x: Tensor, steps: int | None) -> tuple[Tensor, int]:
    if x.dim() == 4:
        if steps is None or isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
            raise ValueError(f"a static input (batch, C, H, W) needs steps, a positive integer; got {steps!r}")
        if x.shape[1] != area.in_channels:
            raise ValueError(f"input has {x.shape[1]} channels; the first area expects {area.in_channels}")
        return area.input_drive(x), steps
    if x.dim() == 5:
        if x.shape[2] != area.in_channels:
            raise ValueError(f"input has {x.shape[2]} channels; the first area expects {area.in_channels}")
        if steps is not None and steps != x.shape[1]:
            raise ValueError(f"steps={steps} but the input sequence has {x.shape[1]} steps")
        return area.input_drive(x), x.shape[1]
    raise ValueError(f"input must be (batch, C, H, W) or (batch, T, C, H, W); got shape {tuple(x.shape)}")


@dataclass(frozen=True)
class TopDown:
    """A top-down (inter-areal feedback) projection from a later area to an earlier one.

    Args:
        source: index of the sending area (its output types send).
        target: index of the receiving area, ``< source``.
        mode: ``"additive"`` (``I_p += F``) or ``"multiplicative"``
            (``I_p *= 1 + tanh(F)``, gain modulation).
        cell_types: target cell types it reaches (default: the target area's input types),
            e.g. ``("VIP",)`` for feedback onto VIP cells.
        extent: kernel size on the target sheet.
        delay: conduction delay in steps (0: the source's output of the previous step).
        strength: initial strength.
    """

    source: int
    target: int
    mode: str = "additive"
    cell_types: tuple[str, ...] | None = None
    extent: int = 3
    delay: int = 0
    strength: float = 0.5

    def __post_init__(self) -> None:
        for k in ("source", "target", "delay", "extent"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"TopDown.{k} must be a non-negative integer; got {v!r}")
        if self.source <= self.target:
            raise ValueError(f"a top-down projection goes from a later area to an earlier one; got source={self.source}, "
                             f"target={self.target}")
        if self.mode not in TOP_DOWN_MODES:
            raise ValueError(f"TopDown.mode must be one of {TOP_DOWN_MODES}; got {self.mode!r}")
        if self.extent % 2 == 0:
            raise ValueError(f"TopDown.extent must be a positive odd integer; got {self.extent}")
        if not (math.isfinite(self.strength) and self.strength >= 0):
            raise ValueError(f"TopDown.strength must be >= 0; got {self.strength!r}")
        if isinstance(self.cell_types, str):
            object.__setattr__(self, "cell_types", (self.cell_types,))
        elif self.cell_types is not None:
            object.__setattr__(self, "cell_types", tuple(self.cell_types))


class SpatialState(NamedTuple):
    """State of a :class:`SpatialNetwork`: ``h`` and the rates ``r`` per area
    ``(batch, C, H, W)`` and, per area, a ring of its past output rates
    ``(batch, L, C_out, H, W)`` (most recent first; ``None`` when no delayed
    projection reads it)."""

    h: tuple[Tensor, ...]
    r: tuple[Tensor, ...]
    history: tuple[Tensor | None, ...]


@dataclass
class SpatialRecord:
    """Rates of every area over time, with their cell-type layout.

    Attributes:
        rates: per area ``(batch, T, C, H, W)``.
        channels: per area, ``{cell type: channel slice}``.
        area_names: names of the areas.
        dt: step (ms).
    """

    rates: tuple[Tensor, ...]
    channels: tuple[dict[str, slice], ...]
    area_names: tuple[str, ...]
    dt: float

    def _area(self, area: int | str) -> int:
        if isinstance(area, str):
            if area not in self.area_names:
                raise ValueError(f"unknown area {area!r}; areas are {list(self.area_names)}")
            return self.area_names.index(area)
        if not -len(self.rates) <= area < len(self.rates):
            raise ValueError(f"area index {area} out of range for {len(self.rates)} areas")
        return area % len(self.rates)

    def query(
        self,
        area: int | str = 0,
        cell_type: str | None = None,
        t: int | slice | None = None,
        position: tuple[int, int] | None = None,
        batch: int | slice | None = None,
    ) -> Tensor:
        """Activity of one area, optionally one cell type, time, position and trial.

        Starts from ``(batch, T, C, H, W)``; ``cell_type`` keeps that type's channels,
        an integer ``t`` (or ``batch``) removes that dimension (a slice keeps it),
        ``position=(y, x)`` removes ``H, W``. E.g. ``query(0, "E", t=-1)`` is
        ``(batch, C_E, H, W)``; ``query(0, "I", position=(3, 4))`` is ``(batch, T, C_I)``.
        """
        a = self._area(area)
        x = self.rates[a]
        if cell_type is not None:
            chans = self.channels[a]
            if cell_type not in chans:
                raise ValueError(f"area {self.area_names[a]!r} has no cell type {cell_type!r}; "
                                 f"types are {list(chans)}")
            sl = chans[cell_type]
            x = x[:, :, sl]
        if position is not None:
            y, xx = position
            x = x[..., y, xx]
        if t is not None:
            x = x[:, t]
        if batch is not None:
            x = x[batch]
        return x

    @property
    def steps(self) -> int:
        return int(self.rates[0].shape[1])


class _Projection(nn.Module):
    def __init__(self, spec: TopDown, weight_holder: nn.Module) -> None:
        super().__init__()
        self.spec = spec
        self.synapse = weight_holder

    @property
    def weight(self) -> Tensor:
        return self.synapse.weight


class SpatialNetwork(RecurrentCore):
    r"""A hierarchy of spatially embedded areas with feedforward and top-down projections
    and a readout (equations in the module docstring).

    The convolutional configuration of the recurrent core
    (:class:`~bionn.recurrent.RecurrentCore`): noise, learned initial state, time
    constants, truncated/checkpointed BPTT, credit assignment through time
    (``convert``) and the call convention are the core's. Its units are every
    area's ``(C, H, W)`` sheet, flattened and concatenated in area order: ``rates``
    is ``(batch, T, N)``; :meth:`record` turns it into a :class:`SpatialRecord`
    for queries by area, cell type, time and position.

    Args:
        tables: one :class:`~bionn.circuits.celltypes.CellTypeTable` for every area, or one per area.
        sizes: ``(H, W)`` for every area, or one per area (the number of areas is the
            longer of ``tables`` and ``sizes``).
        in_channels: channels of the input image.
        n_output: readout units.
        top_down: :class:`TopDown` projections.
        dt: step (ms).
        tau_mode, learn_tau: as :class:`SpatialArea`.
        in_extent: kernel size of the feedforward input convolutions.
        ff_strength: initial strength of feedforward projections between areas.
        ff_delay: feedforward conduction delay in steps, one number or one per area pair.
        pool: ``"avg"`` or ``"max"`` adaptive pooling when a projection shrinks a map.
        readout_area: the area read out (default the last).
        readout_size: the readout pools the output rates to ``readout_size x readout_size``.
        area_names: names of the areas (default ``area0, area1, ...``).
        preact_noise, postact_noise: ``sigma`` of the noise on ``h`` and on ``r``.
        learn_initial_state: train the initial ``h`` of every unit (else zero).
        generator: random generator for the initial weights.

    Example:
        >>> from bionn.circuits.motifs import motif
        >>> t = motif("E-PV-SST-VIP")
        >>> net = SpatialNetwork(t, [(8, 8), (4, 4)], 1, 2,
        ...                      top_down=[TopDown(1, 0, cell_types=("VIP",), delay=2)])
        >>> out, rates = net(torch.rand(5, 6, 1, 8, 8))   # a 6-step sequence
        >>> out.shape, net.record(rates).query("area0", "VIP", position=(2, 3)).shape
        (torch.Size([5, 6, 2]), torch.Size([5, 6, 1]))
    """

    def __init__(
        self,
        tables: CellTypeTable | Sequence[CellTypeTable],
        sizes: Sequence[int] | Sequence[Sequence[int]],
        in_channels: int,
        n_output: int,
        *,
        top_down: Sequence[TopDown] = (),
        dt: float = 10.0,
        tau_mode: str = "type",
        learn_tau: bool = False,
        in_extent: int = 3,
        ff_strength: float = 1.0,
        ff_delay: int | Sequence[int] = 0,
        pool: str = "avg",
        readout_area: int = -1,
        readout_size: int = 1,
        area_names: Sequence[str] | None = None,
        preact_noise: float = 0.0,
        postact_noise: float = 0.0,
        learn_initial_state: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        tables_l = [tables] if isinstance(tables, CellTypeTable) else list(tables)
        sizes_l = [sizes] if (len(sizes) == 2 and all(isinstance(v, int) for v in sizes)) else list(sizes)
        n = max(len(tables_l), len(sizes_l))
        for what, lst in (("tables", tables_l), ("sizes", sizes_l)):
            if len(lst) not in (1, n):
                raise ValueError(f"{what} must give one entry or one per area ({n}); got {len(lst)}")
        tables_l = tables_l * n if len(tables_l) == 1 else tables_l
        sizes_l = [_check_size(s, f"sizes[{i}]") for i, s in enumerate(sizes_l * n if len(sizes_l) == 1 else sizes_l)]
        if isinstance(n_output, bool) or not isinstance(n_output, int) or n_output <= 0:
            raise ValueError(f"n_output must be a positive integer; got {n_output!r}")
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max'; got {pool!r}")
        delays = [ff_delay] * (n - 1) if isinstance(ff_delay, int) else list(ff_delay)
        if len(delays) != n - 1 or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in delays):
            raise ValueError(f"ff_delay must be a non-negative integer or one per area pair ({n - 1}); got {ff_delay!r}")
        self.ff_delay = tuple(delays)
        self.pool = pool
        self.area_names = tuple(area_names) if area_names is not None else tuple(f"area{i}" for i in range(n))
        if len(self.area_names) != n:
            raise ValueError(f"area_names must name {n} areas; got {len(self.area_names)}")
        if not -n <= readout_area < n:
            raise ValueError(f"readout_area {readout_area} out of range for {n} areas")
        self.readout_area = readout_area % n

        areas = []
        for i in range(n):
            if i == 0:
                c_in, sign = in_channels, None
            else:
                prev = areas[i - 1]
                c_in, sign = prev.out_channels, prev.channel_sign[prev.output_index]
            areas.append(SpatialArea(
                tables_l[i], sizes_l[i], c_in, dt=dt, tau_mode=tau_mode, learn_tau=learn_tau,
                in_extent=in_extent, in_sign=sign, in_strength=1.0 if i == 0 else ff_strength,
                generator=generator))
        self.areas = nn.ModuleList(areas)
        self.area_units = tuple(a.n_channels * a.size[0] * a.size[1] for a in areas)
        self._init_core(dt=dt, unit_shape=(sum(self.area_units),), activation=None,
                        preact_noise=preact_noise, postact_noise=postact_noise,
                        learn_initial_state=learn_initial_state, fused=False)

        self.top_down = nn.ModuleList()
        for fb in top_down:
            if not isinstance(fb, TopDown):
                raise ValueError(f"top_down must be a list of TopDown; got {fb!r}")
            if fb.source >= n:
                raise ValueError(f"top-down source area {fb.source} does not exist ({n} areas)")
            src, tgt = areas[fb.source], areas[fb.target]
            types = fb.cell_types or tgt.table.inputs
            for ct in types:
                if ct not in tgt.channels:
                    raise ValueError(f"top-down projection onto cell type {ct!r}: area {fb.target} has types "
                                     f"{list(tgt.channels)}")
            rows = torch.isin(tgt.type_index, torch.tensor([tgt.table.index(ct) for ct in types]))
            holder = _signed_conv_param(tgt.n_channels, src.out_channels, fb.extent,
                                        src.channel_sign[src.output_index], fb.strength, rows, generator)
            self.top_down.append(_Projection(fb, holder))

        # History depth per area: feedforward delays read t - d, top-down t - 1 - d.
        depth = [0] * n
        for i, d in enumerate(self.ff_delay):
            depth[i] = max(depth[i], d)
        for p in self.top_down:
            depth[p.spec.source] = max(depth[p.spec.source], p.spec.delay + 1)
        self.history_depth = tuple(depth)

        ro = areas[self.readout_area]
        self.readout_size = int(readout_size)
        lin = nn.Linear(ro.out_channels * self.readout_size ** 2, n_output)
        self.weight_out, self.bias_out = lin.weight, lin.bias
        self.in_channels, self.n_output = in_channels, n_output

    # ------------------------------------------------------------ views
    def rate_function(self, h: Tensor) -> Tensor:
        """``f`` of every area on flat ``(..., N)`` activations."""
        return torch.cat([a.rates(x).flatten(-3) for a, x in zip(self.areas, self._split(h), strict=True)], -1)

    def _split(self, flat: Tensor) -> list[Tensor]:
        """Flat ``(..., N)`` per area, reshaped to ``(..., C, H, W)``."""
        return [x.unflatten(-1, (a.n_channels, *a.size))
                for a, x in zip(self.areas, flat.split(self.area_units, -1), strict=True)]

    def record(self, rates: Tensor) -> SpatialRecord:
        """The :class:`SpatialRecord` of flat ``rates`` ``(batch, T, N)`` (from ``forward``)."""
        return SpatialRecord(tuple(self._split(rates)), tuple(dict(a.channels) for a in self.areas),
                             self.area_names, self.dt)

    def time_constants_per_unit(self) -> Tensor:
        return torch.cat([a.tau.expand(a.n_channels, *a.size).flatten() for a in self.areas])

    def tau_by_type(self) -> dict[str, Tensor]:
        """Current tau values (ms) keyed ``"area/type"``."""
        return {f"{name}/{t}": v for name, a in zip(self.area_names, self.areas, strict=True)
                for t, v in a.tau_by_type().items()}

    # ------------------------------------------------------------ configuration of the core
    def _connections(self) -> dict[str, tuple[nn.Module, str]]:
        out: dict[str, tuple[nn.Module, str]] = {}
        for name, a in zip(self.area_names, self.areas, strict=True):
            out[f"{name}/input"] = (a.input_synapse, "weight")
            for key, holder in a.synapses.items():
                out[f"{name}/{key}"] = (holder, "weight")
        for k, p in enumerate(self.top_down):
            out[f"top_down{k}"] = (p.synapse, "weight")
        out["readout"] = (self, "weight_out")
        return out

    def connection_weights(self) -> dict[str, Tensor]:
        """Effective weights: per area ``"<area>/input"`` (input / feedforward convolution)
        and ``"<area>/<pre>-><post>"`` (recurrent kernels), ``"top_down<k>"`` and ``"readout"``."""
        return {k: getattr(m, a) for k, (m, a) in self._connections().items()}

    def connection_holder(self, name: str) -> tuple[nn.Module, str]:
        return self._connections()[name]

    def initial_state(self, batch_size: int) -> SpatialState:
        """``h`` zero or learned everywhere; histories filled with the resting output rates."""
        flat = super().initial_state(batch_size)
        hs = tuple(self._split(flat.h))
        rs = self._split(flat.r)
        hist = tuple(
            None if d == 0 else a.output(r)[:, None].expand(-1, d, -1, -1, -1).contiguous()
            for a, r, d in zip(self.areas, rs, self.history_depth, strict=True))
        return SpatialState(hs, tuple(rs), hist)

    def check_input(self, x: Tensor) -> None:
        if x.dim() != 5:
            raise ValueError(f"input must be (batch, C, H, W) with steps, or a (batch, T, C, H, W) "
                             f"sequence; got shape {tuple(x.shape)}")
        if x.shape[2] != self.in_channels:
            raise ValueError(f"input has {x.shape[2]} channels; the first area expects {self.in_channels}")

    def _connection_fn(self, p: Prepared, name: str):
        """``apply(x, weight, kernel)`` for connection ``name`` (through its ``B`` if it has one)."""
        def apply(x: Tensor, weight: Tensor, kernel: FeedbackKernel) -> Tensor:
            if name not in p.feedback:
                return kernel.op(x, weight, None)
            return feedback_apply(kernel, x, weight, None, self.credit_assignment[name],
                                  feedback=p.feedback[name])
        return apply

    def _area_recurrent(self, p: Prepared, i: int):
        """The area's assembled recurrent weight and, with feedback rules, ``apply`` through
        the assembled ``B``."""
        a, name = self.areas[i], self.area_names[i]
        keys = {k: f"{name}/{k}" for k in a.synapses}
        weight = a.recurrent_weight({k: p.weights[c] for k, c in keys.items()})
        if not any(c in p.feedback for c in keys.values()):
            return weight, None
        b = a.recurrent_weight({k: p.feedback.get(c, p.weights[c]) for k, c in keys.items()})
        rule = next(self.credit_assignment[c] for c in keys.values() if c in p.feedback)

        def apply(x: Tensor, w: Tensor, kernel: FeedbackKernel) -> Tensor:
            return feedback_apply(kernel, x, w, None, rule, feedback=b)
        return weight, apply

    def run(self, x: Tensor, state: SpatialState | None = None, prepared: Prepared | None = None,
            *, steps: int | None = None) -> tuple[Tensor, Tensor, SpatialState]:
        """Run on a static ``(batch, C, H, W)`` input repeated ``steps`` times or a
        ``(batch, T, C, H, W)`` sequence.

        Returns ``(outputs (batch, T, n_output), rates (batch, T, N), final state)``.
        """
        if x.dim() == 4:
            if steps is None or isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
                raise ValueError(f"a static input (batch, C, H, W) needs steps, a positive integer; got {steps!r}")
            x = x.unsqueeze(1).expand(-1, steps, -1, -1, -1)
        elif steps is not None and x.dim() == 5 and steps != x.shape[1]:
            raise ValueError(f"steps={steps} but the input sequence has {x.shape[1]} steps")
        return super().run(x, state, prepared)

    def forward(self, x: Tensor, state: SpatialState | None = None, return_state: bool = False,
                *, steps: int | None = None) -> tuple[Tensor, ...]:
        """``(outputs (batch, T, n_output), rates (batch, T, N))`` (plus the final state with
        ``return_state``); see :meth:`run` and :meth:`record`."""
        out, rates, final = self.run(x, state, steps=steps)
        return (out, rates, final) if return_state else (out, rates)

    def _sequence(self, x: Tensor, state: SpatialState, p: Prepared) -> tuple[Tensor, Tensor, SpatialState]:
        first = self.areas[0]
        static = x.stride(1) == 0  # a static image repeated: one convolution
        xin = x[:, :1] if static else x
        drive0 = first.input_drive(xin, self.pool, p.weights[f"{self.area_names[0]}/input"],
                                   self._connection_fn(p, f"{self.area_names[0]}/input"))
        if static:
            drive0 = drive0.expand(-1, x.shape[1], -1, -1, -1)
        steps = x.shape[1]
        hs, rs, hist = list(state.h), list(state.r), list(state.history)
        alphas = [a.dt / a.tau for a in self.areas]
        rec = [self._area_recurrent(p, i) for i in range(len(self.areas))]
        td_w = [p.weights[f"top_down{k}"] for k in range(len(self.top_down))]
        td_apply = [self._connection_fn(p, f"top_down{k}") for k in range(len(self.top_down))]
        td_kernel = [ConvKernel((1, 1), (pr.spec.extent // 2,) * 2, (1, 1), 1) for pr in self.top_down]
        ff_w = [p.weights[f"{n}/input"] for n in self.area_names]
        ff_apply = [self._connection_fn(p, f"{n}/input") for n in self.area_names]
        rates: list[list[Tensor]] = [[] for _ in self.areas]
        outs: list[Tensor] = []
        for t in range(steps):
            new_out: list[Tensor] = []
            for i, area in enumerate(self.areas):
                if i == 0:
                    ff = drive0[:, t]
                else:
                    d = self.ff_delay[i - 1]
                    src = new_out[i - 1] if d == 0 else hist[i - 1][:, d - 1]
                    ff = area.input_drive(src, self.pool, ff_w[i], ff_apply[i])
                add = gain = None
                for k, pr in enumerate(self.top_down):
                    if pr.spec.target != i:
                        continue
                    src = _resize(hist[pr.spec.source][:, pr.spec.delay], area.size, self.pool)
                    f = td_apply[k](src, td_w[k], td_kernel[k])
                    if pr.spec.mode == "additive":
                        add = f if add is None else add + f
                    else:
                        g = 1.0 + torch.tanh(f)
                        gain = g if gain is None else gain * g
                weight, apply = rec[i]
                syn = area.total_input(area.synaptic_input(rs[i], weight, apply), ff, add, gain)
                pre, post = self._noise(syn, alphas[i])
                new = leaky_update(hs[i], syn, alphas[i], area.rates, pre, post)
                hs[i], rs[i] = new.h, new.r
                rates[i].append(new.r)
                new_out.append(area.output(new.r))
            for i, o in enumerate(new_out):
                if hist[i] is not None:
                    hist[i] = torch.cat([o[:, None], hist[i][:, :-1]], 1)
            outs.append(new_out[self.readout_area])
        seq = torch.stack(outs, 1)  # (B, T, C_out, H, W)
        b, T = seq.shape[:2]
        pooled = F.adaptive_avg_pool2d(seq.flatten(0, 1), self.readout_size).reshape(b, T, -1)
        flat = torch.cat([torch.stack(r, 1).flatten(-3) for r in rates], -1)
        out = self.connect(p, "readout", pooled, p.weights["readout"], self.bias_out)
        return out, flat, SpatialState(tuple(hs), tuple(rs), tuple(hist))

    def extra_repr(self) -> str:
        return f"areas={len(self.areas)}, top_down={[(p.spec.source, p.spec.target, p.spec.mode) for p in self.top_down]}"
