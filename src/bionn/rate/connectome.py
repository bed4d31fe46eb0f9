"""Connectome-constrained rate RNN: a sparse recurrent matrix with the
connectome's pattern and signs, per-type time constants and biases."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from bionn.circuits import Connectivity
from bionn.circuits.connectome import Connectome, connectome_from_connectivity
from bionn.constraints import Dale
from bionn.functional.feedback import OpKernel
from bionn.recurrent.core import Prepared, RecurrentCore, TimeConstants
from bionn.sparse import SparseStructure, spmm


class ConnectomeRNN(RecurrentCore):
    r"""Rate RNN on a connectome: sparse recurrent weights with fixed pattern and signs.

    The sparse configuration of the recurrent core (:class:`~bionn.recurrent.RecurrentCore`):
    noise, learned initial state, time constants, truncated/checkpointed BPTT and
    credit assignment through time (``convert``) are the core's. Dynamics (Euler,
    time in ms, ``alpha = dt / tau`` per neuron)::

        h_t = (1 - alpha) h_{t-1} + alpha (W r_{t-1} + U x_t + b) + sqrt(2 alpha) sigma xi_t
        r_t = f(h_t) + sigma_post xi'_t,        y_t = V r_t[output neurons] + c

    ``W`` is ``(post, pre)`` with the connectome's synapses only (a
    :class:`~bionn.sparse.SparseStructure`, multiplied with :func:`~bionn.sparse.spmm`,
    so memory is O(synapses)). Each synapse's weight is ``sign_e * |w_e|`` with

    * ``weight_sharing="edge"``: ``w_e = strength_e``, one trainable weight per synapse,
      its sign held by :class:`~bionn.constraints.Dale` (``softplus`` magnitude);
    * ``weight_sharing="type"``: ``|w_e| = count_e * s_{type(pre), type(post)}``, one
      trainable strength per (pre type, post type) pair scaled by synapse counts
      (the flyvis parametrisation), kept positive by the same parametrization.

    So the sign pattern holds after every optimizer step. ``tau`` (per type or per
    neuron) is kept above ``dt`` by :class:`~bionn.recurrent.TimeConstants`; ``b`` is
    per type or per neuron. ``U`` reaches only ``input_neurons``, ``V`` reads only
    ``output_neurons``.

    Args:
        connectome: the :class:`~bionn.circuits.connectome.Connectome`, or a square
            :class:`~bionn.circuits.Connectivity` (read by
            :func:`~bionn.circuits.connectome.connectome_from_connectivity`: e.g. a
            cell-type table's).
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
        preact_noise, postact_noise: ``sigma`` of the noise on ``h`` and on ``r``.
        learn_initial_state: train the initial state ``h_0`` (else zero).
        generator: random generator for the input and readout weights.

    Example:
        >>> import torch
        >>> from bionn.circuits.connectome import Connectome
        >>> c = Connectome(4, pre=torch.tensor([0, 1, 2, 3]), post=torch.tensor([1, 2, 3, 0]),
        ...                weight=torch.tensor([2., 1., 3., 1.]), sign=torch.tensor([1., 1., -1., 1.]),
        ...                types=("a", "a", "b", "b"))
        >>> net = ConnectomeRNN(c, 2, 1, input_neurons=[0], output_neurons=[3], weight_sharing="type")
        >>> out, rates = net(torch.randn(5, 7, 2))
        >>> out.shape, rates.shape, net.time_constants.tau.shape, bool((net.recurrent_values()[net.sign < 0] < 0).all())
        (torch.Size([5, 7, 1]), torch.Size([5, 7, 4]), torch.Size([2]), True)
    """

    WEIGHT_NAMES = {"input": "weight_in", "recurrent": "strength", "readout": "weight_out"}
    BIAS_NAMES = ("bias", "bias_out")

    def __init__(
        self,
        connectome: Connectome | Connectivity,
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
        postact_noise: float = 0.0,
        learn_initial_state: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for name, v, allowed in (("tau_mode", tau_mode, ("type", "neuron")),
                                 ("bias_mode", bias_mode, ("type", "neuron")),
                                 ("weight_sharing", weight_sharing, ("edge", "type"))):
            if v not in allowed:
                raise ValueError(f"{name} must be one of {allowed}; got {v!r}")
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be > 0 ms; got {dt}")
        if isinstance(connectome, Connectivity):
            connectome = connectome_from_connectivity(connectome)
        n = connectome.n
        self.n_neurons, self.n_input, self.n_output = n, int(n_input), int(n_output)
        self._init_core(dt=dt, unit_shape=(n,), activation=activation, preact_noise=preact_noise,
                        postact_noise=postact_noise, learn_initial_state=learn_initial_state)
        self.tau_mode, self.bias_mode, self.weight_sharing = tau_mode, bias_mode, weight_sharing
        self.type_names = connectome.type_names
        n_types = len(self.type_names)
        self.register_buffer("type_index", connectome.type_index)

        # recurrent structure, in CSR order of the (post, pre) matrix
        structure, order = SparseStructure.from_edges(connectome.post, connectome.pre, (n, n))
        structure.keep_in(self)
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
            init, strength_sign = torch.full((uniq.numel(),), scale), torch.ones(uniq.numel())
        else:
            init, strength_sign = (count * scale).clamp_min(1e-6) * self.sign, self.sign
        self.strength = nn.Parameter(init)
        parametrize.register_parametrization(self, "strength", Dale(strength_sign, magnitude="softplus", dim=0))

        # time constants and biases
        size_tau = n_types if tau_mode == "type" else n
        tau_t = torch.as_tensor(tau, dtype=torch.get_default_dtype()).flatten()
        if tau_t.numel() == 1:
            tau_t = tau_t.expand(size_tau).clone()
        if tau_t.numel() != size_tau:
            raise ValueError(f"tau needs 1 or {size_tau} values (tau_mode={tau_mode!r}); got {tau_t.numel()}")
        self.time_constants = TimeConstants(tau_t, self.dt, learn=learn_tau,
                                            index=self.type_index if tau_mode == "type" else None)
        self.bias = nn.Parameter(torch.zeros(n_types if bias_mode == "type" else n))

        # input and readout on chosen neurons
        self.register_buffer("input_index", torch.tensor(
            connectome.select(input_neurons, ("input", "sensory"), "input_neurons"), dtype=torch.long))
        self.register_buffer("output_index", torch.tensor(
            connectome.select(output_neurons, ("output", "motor"), "output_neurons"), dtype=torch.long))
        n_in, n_out = self.input_index.numel(), self.output_index.numel()
        self.weight_in = nn.Parameter(torch.randn(n_in, self.n_input, generator=generator) / math.sqrt(self.n_input))
        self.weight_out = nn.Parameter(torch.randn(self.n_output, n_out, generator=generator) / math.sqrt(n_out))
        self.bias_out = nn.Parameter(torch.zeros(self.n_output))

    # -- views ----------------------------------------------------------------
    @property
    def structure(self) -> SparseStructure:
        """The recurrent pattern (on the module's device)."""
        return SparseStructure.kept_in(self, (self.n_neurons, self.n_neurons))

    @property
    def nnz(self) -> int:
        return int(self._s_col.numel())

    def recurrent_values(self) -> Tensor:
        """Signed weight of every synapse, ``(nnz,)`` in CSR order of ``(post, pre)``."""
        s = self.strength
        return self.sign * self.count * s[self.pair_index] if self.weight_sharing == "type" else s

    def recurrent_weight(self) -> Tensor:
        """Dense ``(post, pre)`` recurrent matrix (small networks, for inspection)."""
        return self.structure.to_dense(self.recurrent_values())

    def neuron_bias(self) -> Tensor:
        """Bias of every neuron, ``(N,)``."""
        return self.bias[self.type_index] if self.bias_mode == "type" else self.bias

    def type_tau(self) -> dict[str, float]:
        """Mean time constant per cell type (ms)."""
        tau = self.tau.detach().float()
        out = tau.new_zeros(len(self.type_names)).index_add_(0, self.type_index, tau)
        cnt = torch.bincount(self.type_index, minlength=len(self.type_names)).clamp_min(1)
        return {t: float(v) for t, v in zip(self.type_names, (out / cnt).tolist(), strict=True)}

    # -- configuration of the core ----------------------------------------------
    def connection_weights(self) -> dict[str, Tensor]:
        """Effective weights: ``input`` ``(n_in_neurons, n_input)``, ``recurrent`` (the
        signed synapse values, ``(nnz,)``), ``readout`` ``(n_output, n_out_neurons)``."""
        return {"input": self.weight_in, "recurrent": self.recurrent_values(), "readout": self.weight_out}

    def input_drive(self, x: Tensor, p: Prepared) -> Tensor:
        u = self.connect(p, "input", x, p.weights["input"])  # (batch, time, n_in)
        drive = self.neuron_bias().expand(x.shape[0], x.shape[1], -1).clone()
        return drive.index_add_(2, self.input_index, u)

    def recurrent_input(self, r: Tensor, p: Prepared) -> Tensor:
        structure = self.structure
        return self.connect(p, "recurrent", r, p.weights["recurrent"],
                            kernel=OpKernel(lambda x, v, b: spmm(v, structure, x)))

    def readout(self, rates: Tensor, p: Prepared) -> Tensor:
        return self.connect(p, "readout", rates.index_select(2, self.output_index), p.weights["readout"],
                            self.bias_out)

    def extra_repr(self) -> str:
        return (f"{self.n_input} -> {self.n_neurons} neurons ({self.nnz} synapses, {len(self.type_names)} "
                f"types) -> {self.n_output}, dt={self.dt:g} ms, weight_sharing={self.weight_sharing!r}, "
                f"tau_mode={self.tau_mode!r}, activation={self.activation_name!r}")
