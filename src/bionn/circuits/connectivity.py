"""Connectivity objects: which synapses exist (a mask) and their signs.

Weights and masks are ``(post, pre)``: row ``i`` lists the inputs of
postsynaptic neuron ``i``, like ``nn.Linear.weight``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


def _as_mask(mask: Tensor, name: str) -> Tensor:
    if isinstance(mask, Tensor) and mask.layout != torch.strided:
        return _as_sparse_mask(mask, name)
    mask = torch.as_tensor(mask)
    if mask.dim() != 2:
        raise ValueError(f"{name} must be a 2-D (post, pre) matrix; got shape {tuple(mask.shape)}")
    if mask.dtype == torch.bool:
        return mask.float()
    mask = mask.float()
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1 (or be boolean)")
    return mask


def _as_sparse_mask(mask: Tensor, name: str) -> Tensor:
    if mask.dim() != 2:
        raise ValueError(f"{name} must be a 2-D (post, pre) matrix; got shape {tuple(mask.shape)}")
    mask = mask.to_sparse_coo().coalesce()
    values = mask.values()
    if values.dtype != torch.bool and not ((values == 0) | (values == 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1 (or be boolean)")
    keep = values.bool()
    idx = mask.indices()[:, keep]
    return torch.sparse_coo_tensor(idx, torch.ones(idx.shape[1]), tuple(mask.shape),
                                   check_invariants=False).coalesce()


@dataclass(frozen=True)
class Connectivity:
    """One projection's structure: a ``(post, pre)`` 0/1 mask and optional
    presynaptic signs (+1 excitatory, -1 inhibitory).

    The mask is dense for rate circuits or a sparse COO tensor for large
    spiking and connectome networks (see :mod:`bionn.circuits.connect`); both
    kinds answer :meth:`edges`, :attr:`nnz` and :meth:`dense`.

    Example:
        >>> import torch
        >>> c = Connectivity(torch.ones(3, 4), sign=torch.tensor([1., 1., 1., -1.]))
        >>> c.n_post, c.n_pre, c.density
        (3, 4, 1.0)
    """

    mask: Tensor
    sign: Tensor | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mask", _as_mask(self.mask, "mask"))
        if self.sign is not None:
            sign = torch.as_tensor(self.sign, dtype=torch.float32).flatten()
            if sign.shape[0] != self.mask.shape[1]:
                raise ValueError(
                    f"sign has {sign.shape[0]} entries; the mask has {self.mask.shape[1]} "
                    "presynaptic columns (masks are (post, pre))"
                )
            if not ((sign == 1) | (sign == -1)).all():
                raise ValueError("sign must contain only +1 (excitatory) and -1 (inhibitory)")
            object.__setattr__(self, "sign", sign)

    @property
    def n_post(self) -> int:
        return int(self.mask.shape[0])

    @property
    def n_pre(self) -> int:
        return int(self.mask.shape[1])

    @property
    def is_sparse(self) -> bool:
        return self.mask.layout != torch.strided

    @property
    def nnz(self) -> int:
        """Number of synapses."""
        return int(self.mask._nnz()) if self.is_sparse else int(self.mask.count_nonzero())

    @property
    def density(self) -> float:
        return self.nnz / max(1, self.n_post * self.n_pre)

    def edges(self) -> tuple[Tensor, Tensor]:
        """``(post_index, pre_index)`` of every synapse, sorted by post then pre."""
        if self.is_sparse:
            idx = self.mask.indices()
            return idx[0].clone(), idx[1].clone()
        post, pre = self.mask.nonzero(as_tuple=True)
        return post, pre

    def dense(self) -> Tensor:
        """The ``(post, pre)`` mask as a dense 0/1 float tensor."""
        return self.mask.to_dense() if self.is_sparse else self.mask


@dataclass(frozen=True)
class Circuit:
    """The structure of a recurrent network with inputs and a readout.

    Attributes:
        recurrent: ``(N, N)`` connectivity with per-neuron signs (Dale) or none.
        input_mask: ``(N, n_input)`` 0/1 mask of input synapses, or None (all).
        readout_mask: ``(n_output, N)`` 0/1 mask of readout synapses, or None (all).
        area: ``(N,)`` long area index per neuron (0 for a single area).
        area_names: one name per area.
    """

    recurrent: Connectivity
    input_mask: Tensor | None = None
    readout_mask: Tensor | None = None
    area: Tensor | None = None
    area_names: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        n = self.recurrent.n_pre
        if self.recurrent.n_post != n:
            raise ValueError(f"recurrent mask must be square; got {tuple(self.recurrent.mask.shape)}")
        if self.input_mask is not None:
            m = _as_mask(self.input_mask, "input_mask")
            if m.shape[0] != n:
                raise ValueError(f"input_mask has {m.shape[0]} rows; expected N={n} (post, pre)")
            object.__setattr__(self, "input_mask", m)
        if self.readout_mask is not None:
            m = _as_mask(self.readout_mask, "readout_mask")
            if m.shape[1] != n:
                raise ValueError(f"readout_mask has {m.shape[1]} columns; expected N={n} (post, pre)")
            object.__setattr__(self, "readout_mask", m)
        area = torch.zeros(n, dtype=torch.long) if self.area is None else torch.as_tensor(self.area).long()
        if area.shape != (n,):
            raise ValueError(f"area must have one entry per neuron ({n}); got shape {tuple(area.shape)}")
        object.__setattr__(self, "area", area)
        if not self.area_names:
            object.__setattr__(self, "area_names", tuple(f"area{i}" for i in range(int(area.max()) + 1)))

    @property
    def n_neurons(self) -> int:
        return self.recurrent.n_pre

    @property
    def sign(self) -> Tensor | None:
        return self.recurrent.sign

    @property
    def n_input(self) -> int | None:
        return None if self.input_mask is None else int(self.input_mask.shape[1])

    @property
    def n_output(self) -> int | None:
        return None if self.readout_mask is None else int(self.readout_mask.shape[0])


def fixed_probability(
    n_post: int,
    n_pre: int,
    p: float,
    generator: torch.Generator | None = None,
    autapses: bool = True,
) -> Tensor:
    """A ``(post, pre)`` 0/1 mask, each synapse present with probability ``p``.

    ``autapses=False`` removes the diagonal (only meaningful for square masks).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"connection probability must be in [0, 1]; got {p}")
    mask = (torch.rand(n_post, n_pre, generator=generator) < p).float()
    if not autapses and n_post == n_pre:
        mask.fill_diagonal_(0.0)
    return mask
