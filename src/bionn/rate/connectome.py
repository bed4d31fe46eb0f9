"""Connectome-constrained rate RNN: a sparse recurrent matrix with the
connectome's pattern and signs, per-type time constants and biases."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from bionn.circuits.connectome import Connectome
from bionn.constraints import LowerBound
from bionn.functional.loop import scan
from bionn.functional.rate import RateState, get_activation
from bionn.sparse import SparseStructure, spmm


def _neurons(connectome: Connectome, spec: str | Sequence[int] | None, default: Sequence[str],
             what: str) -> list[int]:
    if spec is None:
        for g in default:
            if connectome.groups.get(g):
                return list(connectome.groups[g])
        return list(range(connectome.n))
    if isinstance(spec, str):
        if spec == "all":
            return list(range(connectome.n))
        if spec in connectome.groups:
            return list(connectome.groups[spec])
        if spec in connectome.type_names:
            return connectome.of_types([spec])
        raise ValueError(f"{what}={spec!r} is neither a group {sorted(connectome.groups)} nor a type")
    idx = [int(i) for i in spec]
    if not idx or min(idx) < 0 or max(idx) >= connectome.n:
        raise ValueError(f"{what} must be non-empty indices in [0, {connectome.n})")
    return idx


class ConnectomeRNN(nn.Module):
    r"""Rate RNN on a connectome: sparse recurrent weights with fixed pattern and signs.

    Dynamics (Euler, time in ms, ``alpha = dt / tau`` per neuron)::

        h_t = (1 - alpha) h_{t-1} + alpha (W r_{t-1} + U x_t + b) + sqrt(2 alpha) sigma xi_t
        r_t = f(h_t),        y_t = V r_t[output neurons] + c

    ``W`` is ``(post, pre)`` with the connectome's synapses only (a
    :class:`~bionn.sparse.SparseStructure`, multiplied with :func:`~bionn.sparse.spmm`,
    so memory is O(synapses)). Each synapse's weight is ``sign_e * |w_e|`` with

    * ``weight_sharing="edge"``: ``|w_e| = s_e``, one trainable strength per synapse;
    * ``weight_sharing="type"``: ``|w_e| = count_e * s_{type(pre), type(post)}``, one
      trainable strength per (pre type, post type) pair scaled by synapse counts
      (the flyvis parametrisation).

    Strengths are kept positive by a softplus parametrization
    (:class:`~bionn.constraints.LowerBound` at 0) and the signs are fixed buffers,
    so the sign pattern holds after every optimizer step. ``tau`` (per type or per
    neuron) is kept above ``dt`` the same way; ``b`` is per type or per neuron.
    ``U`` reaches only ``input_neurons``, ``V`` reads only ``output_neurons``.

    Args:
        connectome: the :class:`~bionn.circuits.connectome.Connectome`.
        n_input, n_output: input and output sizes.
        input_neurons, output_neurons: a group name (``"sensory"``, ``"input"``...),
            a type name, ``"all"`` or a list of indices. Defaults: group ``input``
            or ``sensory``; group ``output`` or ``motor``; else all neurons.
        dt: step (ms). tau: initial time constant(s) (ms), ``> dt``.
        tau_mode, bias_mode: ``"type"`` (shared within a type) or ``"neuron"``.
        learn_tau: train ``tau``.
        weight_sharing: ``"edge"`` or ``"type"`` (see above).
        gain: initial scale: the mean over neurons of ``sum_j |W_ij|`` equals ``gain``.
        dale: use one sign per presynaptic neuron (raises if the connectome is not
            Dale-consistent; see :meth:`Connectome.neuron_sign`); default: the
            connectome's per-synapse signs.
        activation: ``relu``, ``tanh``, ``sigmoid``, ``softplus`` or ``retanh``.
        preact_noise: ``sigma`` of the noise on ``h``.
        generator: random generator for the input and readout weights.

    Example:
        >>> import torch
        >>> from bionn.circuits.connectome import Connectome
        >>> c = Connectome(4, pre=torch.tensor([0, 1, 2, 3]), post=torch.tensor([1, 2, 3, 0]),
        ...                weight=torch.tensor([2., 1., 3., 1.]), sign=torch.tensor([1., 1., -1., 1.]),
        ...                types=("a", "a", "b", "b"))
        >>> net = ConnectomeRNN(c, 2, 1, input_neurons=[0], output_neurons=[3], weight_sharing="type")
        >>> out, rates = net(torch.randn(5, 7, 2))
        >>> out.shape, rates.shape, net.tau.shape, bool((net.recurrent_values()[net.sign < 0] < 0).all())
        (torch.Size([5, 7, 1]), torch.Size([5, 7, 4]), torch.Size([2]), True)
    """

    def __init__(
        self,
        connectome: Connectome,
        n_input: int,
        n_output: int,
        *,
        input_neurons: str | Sequence[int] | None = None,
        output_neurons: str | Sequence[int] | None = None,
        dt: float = 10.0,
        tau: float | Sequence[float] | Tensor = 50.0,
        tau_mode: str = "type",
        learn_tau: bool = True,
        bias_mode: str = "type",
        weight_sharing: str = "type",
        gain: float = 0.5,
        dale: bool = False,
        activation: str = "relu",
        preact_noise: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for name, v, allowed in (("tau_mode", tau_mode, ("type", "neuron")),
                                 ("bias_mode", bias_mode, ("type", "neuron")),
                                 ("weight_sharing", weight_sharing, ("edge", "type"))):
            if v not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {v!r}")
        if dt <= 0:
            raise ValueError(f"dt must be > 0 ms; got {dt}")
        if preact_noise < 0:
            raise ValueError(f"preact_noise must be >= 0; got {preact_noise}")
        n = connectome.n
        self.n_neurons, self.n_input, self.n_output = n, int(n_input), int(n_output)
        self.dt = float(dt)
        self.activation_name = activation
        self.activation = get_activation(activation)
        self.preact_noise = float(preact_noise)
        self.tau_mode, self.bias_mode, self.weight_sharing = tau_mode, bias_mode, weight_sharing
        self.type_names = connectome.type_names
        n_types = len(self.type_names)
        self.register_buffer("type_index", connectome.type_index)

        # recurrent structure, in CSR order of the (post, pre) matrix
        structure, order = SparseStructure.from_edges(connectome.post, connectome.pre, (n, n))
        for k in ("crow", "col", "t_crow", "t_col", "t_perm"):
            self.register_buffer(f"_s_{k}", getattr(structure, k), persistent=False)
        sign = connectome.neuron_sign("error")[connectome.pre] if dale else connectome.sign
        self.register_buffer("sign", sign[order].clone())
        count = connectome.weight[order].clone()
        self.register_buffer("count", count)
        post_csr, pre_csr = structure.row.long(), structure.col.long()
        row_sum = count.new_zeros(n).index_add_(0, post_csr, count)
        mean_in = float(row_sum[row_sum > 0].mean()) if bool((row_sum > 0).any()) else 1.0
        scale = gain / mean_in
        if weight_sharing == "type":
            ti = self.type_index
            pair = ti[pre_csr] * n_types + ti[post_csr]
            uniq, pair_index = torch.unique(pair, return_inverse=True)
            self.register_buffer("pair_index", pair_index)
            self.register_buffer("pair_types", torch.stack([uniq // n_types, uniq % n_types], 1))
            init = torch.full((uniq.numel(),), scale)
        else:
            init = (count * scale).clamp_min(1e-6)
        self.strength = nn.Parameter(init)
        parametrize.register_parametrization(self, "strength", LowerBound(0.0))

        # time constants and biases
        size_tau = n_types if tau_mode == "type" else n
        tau_t = torch.as_tensor(tau, dtype=torch.get_default_dtype()).flatten()
        if tau_t.numel() == 1:
            tau_t = tau_t.expand(size_tau).clone()
        if tau_t.numel() != size_tau:
            raise ValueError(f"tau needs 1 or {size_tau} values (tau_mode={tau_mode!r}); got {tau_t.numel()}")
        if bool((tau_t <= self.dt).any()) and learn_tau or bool((tau_t < self.dt).any()):
            raise ValueError(f"tau must exceed dt={self.dt:g} ms; got min {float(tau_t.min()):g}")
        if learn_tau:
            self.tau = nn.Parameter(tau_t)
            parametrize.register_parametrization(self, "tau", LowerBound(self.dt))
        else:
            self.register_buffer("tau", tau_t)
        self.bias = nn.Parameter(torch.zeros(n_types if bias_mode == "type" else n))

        # input and readout on chosen neurons
        self.register_buffer("input_index", torch.tensor(
            _neurons(connectome, input_neurons, ("input", "sensory"), "input_neurons"), dtype=torch.long))
        self.register_buffer("output_index", torch.tensor(
            _neurons(connectome, output_neurons, ("output", "motor"), "output_neurons"), dtype=torch.long))
        n_in, n_out = self.input_index.numel(), self.output_index.numel()
        self.weight_in = nn.Parameter(torch.randn(n_in, self.n_input, generator=generator) / math.sqrt(self.n_input))
        self.weight_out = nn.Parameter(torch.randn(self.n_output, n_out, generator=generator) / math.sqrt(n_out))
        self.bias_out = nn.Parameter(torch.zeros(self.n_output))

    # -- views ----------------------------------------------------------------
    @property
    def structure(self) -> SparseStructure:
        """The recurrent pattern (on the module's device)."""
        n = self.n_neurons
        return SparseStructure((n, n), self._s_crow, self._s_col, self._s_t_crow, self._s_t_col,
                               self._s_t_perm)

    @property
    def nnz(self) -> int:
        return int(self._s_col.numel())

    def recurrent_values(self) -> Tensor:
        """Signed weight of every synapse, ``(nnz,)`` in CSR order of ``(post, pre)``."""
        s = self.strength
        mag = self.count * s[self.pair_index] if self.weight_sharing == "type" else s
        return self.sign * mag

    def recurrent_weight(self) -> Tensor:
        """Dense ``(post, pre)`` recurrent matrix (small networks, for inspection)."""
        return self.structure.to_dense(self.recurrent_values())

    def neuron_tau(self) -> Tensor:
        """Time constant of every neuron (ms), ``(N,)``."""
        return self.tau[self.type_index] if self.tau_mode == "type" else self.tau

    def neuron_bias(self) -> Tensor:
        return self.bias[self.type_index] if self.bias_mode == "type" else self.bias

    def type_tau(self) -> dict[str, float]:
        """Mean time constant per cell type (ms)."""
        tau = self.neuron_tau().detach().float()
        out = tau.new_zeros(len(self.type_names)).index_add_(0, self.type_index, tau)
        cnt = torch.bincount(self.type_index, minlength=len(self.type_names)).clamp_min(1)
        return {t: float(v) for t, v in zip(self.type_names, (out / cnt).tolist(), strict=True)}

    def initial_state(self, batch_size: int) -> RateState:
        """Zero state ``(batch, N)``."""
        h = self.bias.new_zeros(batch_size, self.n_neurons)
        return RateState(h, self.activation(h))

    # -- dynamics ---------------------------------------------------------------
    def run(self, x: Tensor, state: RateState | None = None) -> tuple[Tensor, Tensor, RateState]:
        """Run over ``x`` of shape ``(batch, time, n_input)``.

        Returns ``(output (batch, time, n_output), rates (batch, time, N), final_state)``.
        """
        if x.dim() != 3 or x.shape[-1] != self.n_input:
            raise ValueError(f"input must be (batch, time, n_input={self.n_input}); got shape {tuple(x.shape)}")
        batch, steps = x.shape[0], x.shape[1]
        state = self.initial_state(batch) if state is None else state
        alpha = self.dt / self.neuron_tau()
        values = self.recurrent_values()
        structure = self.structure
        u = x @ self.weight_in.t()  # (batch, time, n_in)
        drive = self.neuron_bias().expand(batch, steps, -1).clone()
        drive.index_add_(2, self.input_index, u)
        if self.preact_noise > 0:
            drive = drive + torch.randn_like(drive) * ((2 / alpha).sqrt() * self.preact_noise)
        f = self.activation

        def step(s: RateState, d: Tensor) -> tuple[Tensor, RateState]:
            h = torch.lerp(s.h, spmm(values, structure, s.r) + d, alpha)
            r = f(h)
            return r, RateState(h, r)

        rates, final = scan(step, state, (drive,))
        out = rates.index_select(2, self.output_index) @ self.weight_out.t() + self.bias_out
        return out, rates, final

    def forward(self, x: Tensor, state: RateState | None = None) -> tuple[Tensor, Tensor]:
        """``(output, rates)``; see :meth:`run`."""
        out, rates, _ = self.run(x, state)
        return out, rates

    def extra_repr(self) -> str:
        return (f"{self.n_input} -> {self.n_neurons} neurons ({self.nnz} synapses, {len(self.type_names)} "
                f"types) -> {self.n_output}, dt={self.dt:g} ms, weight_sharing={self.weight_sharing!r}, "
                f"tau_mode={self.tau_mode!r}, activation={self.activation_name!r}")
