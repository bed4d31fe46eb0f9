"""Spiking networks built from a structure: a connectome (:func:`spiking_network`) or a
cell-type table (:func:`from_cell_types`). Both go through the table's or the connectome's
:class:`~bionn.circuits.Connectivity`: LIF neurons and two sparse current-based projections
whose weights are the sign per presynaptic neuron (or per synapse) times a magnitude."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from bionn.circuits.celltypes import CellTypeTable
from bionn.circuits.connect import from_edges
from bionn.circuits.connectivity import Connectivity
from bionn.circuits.connectome import Connectome
from bionn.spiking.base import NeuronGroup
from bionn.spiking.network import Network
from bionn.spiking.neurons import LIF
from bionn.spiking.synapses import Exponential, Projection

__all__ = ["from_cell_types", "signed_projections", "spiking_network"]


def signed_projections(conn: Connectivity, group: str, *, scale: float = 1.0, tau_e: float = 5.0,
                       tau_i: float = 10.0) -> list[Projection]:
    """Current-based :class:`~bionn.spiking.Exponential` projections ``"exc"`` and
    ``"inh"`` of a square ``group -> group`` connectivity.

    A synapse is excitatory when its presynaptic neuron's sign is +1 (or 0, or when
    the connectivity has no signs and its weight is >= 0) and inhibitory otherwise;
    its weight is ``sign * scale * |weight|`` mV (weight 1 without weights), the sign
    carried by each projection's connectivity (+1 for ``"exc"``, -1 for ``"inh"``).
    ``tau_e``/``tau_i``: synaptic decay (ms).
    """
    if conn.n_post != conn.n_pre:
        raise ValueError(f"a recurrent group needs a square connectivity; got {conn.shape}")
    n = conn.n_pre
    post, pre = conn.edges()
    w = conn.weight if conn.weight is not None else torch.ones(post.numel())
    if conn.sign is not None:
        s = conn.sign[pre]
        if bool((s == 0).any()) and bool((w[s == 0] < 0).any()):
            raise ValueError("unsigned presynaptic neurons need non-negative weights here")
        negative = s < 0
    else:
        negative = w < 0
    projections = []
    for name, keep, sign, tau in (("exc", ~negative, 1.0, tau_e), ("inh", negative, -1.0, tau_i)):
        if not bool(keep.any()):
            continue
        part = from_edges(post[keep], pre[keep], n, n, sign=torch.full((n,), sign),
                          weight=w[keep].abs() * scale)
        projections.append(Projection(group, group, part, Exponential(tau_decay=tau, g_max=1.0),
                                      output="current", name=name))
    return projections


def _drive_vector(drive: float | Tensor | None, n: int, neurons: Sequence[int]) -> Tensor | None:
    if drive is None:
        return None
    d = torch.as_tensor(drive, dtype=torch.float32)
    if d.dim() == 0:
        vec = torch.zeros(n)
        vec[list(neurons)] = d
        d = vec
    if d.shape != (n,):
        raise ValueError(f"drive must be a number or one value per neuron ({n}); got {tuple(d.shape)}")
    return d


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
    conn = connectome.connectivity(dale=dale)
    if weight_scale is None:
        row = torch.zeros(n).index_add_(0, connectome.post, connectome.weight)
        mean_in = float(row[row > 0].mean()) if bool((row > 0).any()) else 1.0
        weight_scale = gain / mean_in
    params = {"V_rest": 0.0, "V_reset": -5.0, "V_th": 20.0, "tau": 10.0, "t_refractory": 5.0}
    params.update(lif or {})
    neurons = LIF(n, **params)
    projections = signed_projections(conn, "N", scale=weight_scale, tau_e=tau_e, tau_i=tau_i)
    inputs = {}
    if drive is not None:
        scalar = torch.as_tensor(drive).dim() == 0
        idx = connectome.select(drive_neurons, ("input", "sensory"), "drive_neurons") if scalar else []
        inputs["N"] = _drive_vector(drive, n, idx)
    return Network({"N": neurons}, projections, inputs=inputs)


def from_cell_types(
    table: CellTypeTable,
    n: int | None = None,
    *,
    neuron: type[NeuronGroup] = LIF,
    params: Mapping[str, Any] | None = None,
    weight_scale: float = 1.0,
    tau_e: float = 5.0,
    tau_i: float = 10.0,
    drive: float | Tensor | None = None,
    drive_types: Sequence[str] | None = None,
) -> Network:
    """A spiking network with a :class:`~bionn.circuits.CellTypeTable`'s neurons and wiring.

    The same table builds a rate RNN (:meth:`bionn.rate.CTRNN.from_cell_types`, which
    trains with backprop or, through :func:`bionn.learning.convert`, feedback alignment)
    and this network: both take :meth:`CellTypeTable.connectivity
    <bionn.circuits.CellTypeTable.connectivity>`, so they have the same synapses and the
    same sign per neuron. One group ``"N"`` of ``neuron`` cells (default
    :class:`~bionn.spiking.LIF`; ``tau`` per neuron from the types unless ``params`` sets
    it) and the projections ``"exc"`` / ``"inh"`` of :func:`signed_projections`: a synapse
    from type ``q`` onto type ``p`` jumps by ``sign_q * weight_scale * strength_qp / n_q``
    mV per spike, so a neuron receives ``weight_scale * strength`` mV when every neuron of
    type ``q`` fires once. Unsigned types excite.

    Args:
        table: the cell-type table; ``n`` sizes types given by density.
        neuron, params: the neuron model and its parameters (numbers or ``(N,)`` tensors).
        weight_scale: mV per unit of table strength.
        tau_e, tau_i: synaptic decay (ms) of the excitatory and inhibitory projections.
        drive: a constant current onto ``drive_types`` (default: the table's input
            types), or an ``(N,)`` tensor.

    Example:
        >>> from bionn.circuits import motif
        >>> net = from_cell_types(motif("E-I", channels=8), weight_scale=20.0, drive=25.0)
        >>> [p.name for p in net.projections], net.groups["N"].n
        (['exc', 'inh'], 10)
        >>> res = net.run(50.0, dt=0.1, progress=False)
        >>> res.spikes["N"].count() > 0
        True
    """
    conn = table.connectivity(n, layout="sparse")
    size = conn.n_pre
    values = {"tau": table.tau(n)} if "tau" in neuron.defaults else {}
    values.update(params or {})
    group = neuron(size, **values)
    projections = signed_projections(conn, "N", scale=weight_scale, tau_e=tau_e, tau_i=tau_i)
    inputs = {}
    if drive is not None:
        types = table.inputs if drive_types is None else tuple(drive_types)
        lab, idx = table.labels(n), [table.index(t) for t in types]
        inputs["N"] = _drive_vector(drive, size, torch.isin(lab, torch.tensor(idx)).nonzero().flatten().tolist())
    return Network({"N": group}, projections, inputs=inputs)
