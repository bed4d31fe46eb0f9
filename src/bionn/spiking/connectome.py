"""Spiking networks built from a connectome: LIF neurons and sparse signed projections."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from bionn.circuits.connect import from_edges
from bionn.circuits.connectome import Connectome
from bionn.spiking.network import Network
from bionn.spiking.neurons import LIF
from bionn.spiking.synapses import Exponential, Projection


def spiking_network(
    connectome: Connectome,
    *,
    weight_scale: float | None = None,
    gain: float = 3.0,
    tau_e: float = 5.0,
    tau_i: float = 10.0,
    drive: float | Tensor | None = None,
    drive_neurons: str | Sequence[int] | None = None,
    lif: dict | None = None,
    dale: bool = False,
) -> Network:
    """A current-based LIF network with the connectome's synapses.

    One group ``"N"`` of :class:`~bionn.spiking.LIF` neurons (defaults: rest 0,
    threshold 20, reset -5 mV, tau 10 ms, 5 ms refractory; override with ``lif``)
    and two sparse :class:`~bionn.spiking.Projection` s from the connectome's edges:
    ``"exc"`` (positive edges, :class:`~bionn.spiking.Exponential` with ``tau_e``)
    and ``"inh"`` (negative edges, ``tau_i``). A spike of neuron ``j`` adds
    ``sign_e * weight_scale * count_e`` mV to the synaptic state of its targets.

    Args:
        connectome: the :class:`~bionn.circuits.connectome.Connectome`.
        weight_scale: mV per synapse count; default ``gain`` divided by the mean
            summed input count per neuron (so a neuron's total input is ``gain`` mV
            times the mean presynaptic spike count per tau).
        drive: constant external current (mV); a number for ``drive_neurons``
            (default: group ``input``/``sensory``, else all) or an ``(N,)`` tensor.
        dale: use one sign per presynaptic neuron (error if the connectome mixes).

    Example:
        >>> import torch
        >>> from bionn.circuits.connectome import Connectome
        >>> c = Connectome(3, pre=torch.tensor([0, 1, 2]), post=torch.tensor([1, 2, 0]),
        ...                weight=torch.tensor([5., 5., 5.]), sign=torch.tensor([1., 1., -1.]))
        >>> net = spiking_network(c, drive=25.0, drive_neurons=[0])
        >>> res = net.run(100.0, dt=0.1, progress=False)
        >>> res.spikes["N"].count() > 0
        True
    """
    n = connectome.n
    sign = connectome.neuron_sign("error")[connectome.pre] if dale else connectome.sign
    w = connectome.weight
    if weight_scale is None:
        row = torch.zeros(n).index_add_(0, connectome.post, w)
        mean_in = float(row[row > 0].mean()) if bool((row > 0).any()) else 1.0
        weight_scale = gain / mean_in
    params = {"V_rest": 0.0, "V_reset": -5.0, "V_th": 20.0, "tau": 10.0, "t_refractory": 5.0}
    params.update(lif or {})
    neurons = LIF(n, **params)
    projections = []
    for name, keep, tau in (("exc", sign > 0, tau_e), ("inh", sign < 0, tau_i)):
        if not bool(keep.any()):
            continue
        post, pre, ww = connectome.post[keep], connectome.pre[keep], (sign * w)[keep] * weight_scale
        order = torch.argsort(post * n + pre)  # Connectivity.edges() order
        conn = from_edges(post, pre, n, n)
        projections.append(Projection("N", "N", conn, Exponential(tau_decay=tau, g_max=1.0),
                                      weight=ww[order], output="current", name=name))
    inputs = {}
    if drive is not None:
        d = torch.as_tensor(drive, dtype=torch.float32)
        if d.dim() == 0:
            from bionn.rate.connectome import _neurons

            idx = _neurons(connectome, drive_neurons, ("input", "sensory"), "drive_neurons")
            vec = torch.zeros(n)
            vec[idx] = d
            d = vec
        if d.shape != (n,):
            raise ValueError(f"drive must be a number or one value per neuron ({n}); got {tuple(d.shape)}")
        inputs["N"] = d
    return Network({"N": neurons}, projections, inputs=inputs)
