"""Sparse matrix times dense activations, with gradients on the stored values only.

``y = W x`` for a fixed sparsity pattern (a :class:`SparseStructure`) and a 1-D
tensor of values. The backward pass computes

    dL/dx        = W^T g                               (CSR product with the transpose)
    dL/dvalues_k = sum_b g[b, post_k] * x[b, pre_k]     (stored entries only)

so time is O(nnz * batch) and the extra memory O(nnz): no ``(N, N)`` matrix and
no ``(batch, nnz)`` intermediate. On the CPU (float32/float64, int32 indices, a C++
compiler) the forward is one compiled pass over the rows and the backward one compiled
pass over the CSR entries that computes both gradients (:mod:`bionn.sparse._native`): no
copy of the values in transpose order. Elsewhere (CUDA, no compiler) the forward is
``torch.sparse.mm`` and the backward the CSR product with the transpose and
``sampled_addmm``. Every
output element is summed in one fixed order, so both paths are bitwise deterministic at
any thread count. With ``create_graph=True`` the backward is made of differentiable
gathers instead (O(batch * nnz) memory), so second derivatives work.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bionn.sparse import _native
from bionn.sparse.structure import SparseStructure

_CHUNK = 1 << 16


def value_grad(structure: SparseStructure, g: Tensor, x: Tensor, *, method: str = "auto",
               values: Tensor | None = None, out: Tensor | None = None) -> Tensor:
    """``d_k = sum_b g[b, post_k] x[b, pre_k]`` for every stored entry ``k`` (CSR order).

    Args:
        structure: the pattern.
        g: ``(batch, n_post)``; x: ``(batch, n_pre)``.
        method: ``"sampled"`` (``torch.sparse.sampled_addmm``), ``"chunked"`` (gathers
            in chunks of 65,536 entries) or ``"auto"`` (sampled, chunked where unsupported).
        values: the matrix values (their storage carries the pattern for ``sampled_addmm``).
        out: an ``(nnz,)`` contiguous buffer of ``g``'s dtype to write into (else a new one).

    Example:
        >>> import torch
        >>> s, _ = SparseStructure.from_edges(torch.tensor([0, 1]), torch.tensor([1, 0]), (2, 2))
        >>> value_grad(s, torch.tensor([[1., 2.]]), torch.tensor([[3., 4.]])).tolist()
        [4.0, 6.0]
    """
    if method in ("auto", "sampled"):
        try:
            carrier = values if values is not None and values.dtype == g.dtype else \
                torch.zeros(structure.nnz, dtype=g.dtype, device=g.device)
            out = torch.empty(structure.nnz, dtype=g.dtype, device=g.device) if out is None else out
            # out= writes straight into `out` with the structure's own (int32) indices
            torch.sparse.sampled_addmm(structure.csr(carrier.detach()), g.t(), x, beta=0.0,
                                       out=structure.csr(out))
            return out
        except (RuntimeError, NotImplementedError):
            if method == "sampled":
                raise
    elif method != "chunked":
        raise ValueError(f"method must be 'auto', 'sampled' or 'chunked'; got {method!r}")
    gt, xt = g.t().contiguous(), x.t().contiguous()
    row = structure.row
    out = torch.empty(structure.nnz, dtype=g.dtype, device=g.device) if out is None else out
    for s in range(0, structure.nnz, _CHUNK):
        e = min(structure.nnz, s + _CHUNK)
        prod = gt.index_select(0, row[s:e]) * xt.index_select(0, structure.col[s:e])
        torch.sum(prod, 1, out=out[s:e])
    return out


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values: Tensor, structure: SparseStructure, x: Tensor) -> Tensor:  # noqa: D102
        ctx.structure = structure
        ctx.save_for_backward(values, x)
        if _native.applies(structure.crow, structure.col, values, x):
            return _native.forward(structure.crow, structure.col, values, x)
        return torch.sparse.mm(structure.csr(values), x.t()).t().contiguous()

    @staticmethod
    def backward(ctx, g: Tensor):  # noqa: D102
        values, x = ctx.saved_tensors
        s: SparseStructure = ctx.structure
        g = g.contiguous()
        need_values, need_x = ctx.needs_input_grad[0], ctx.needs_input_grad[2]
        if torch.is_grad_enabled():  # create_graph: differentiable gathers, O(batch nnz) memory
            row, col = s.row.long(), s.col.long()
            d_values = (g[:, row] * x[:, col]).sum(0) if need_values else None
            d_x = g.new_zeros(x.shape).index_add(1, col, g[:, row] * values) if need_x else None
            return d_values, None, d_x
        if _native.applies(s.crow, s.col, values, g, x):
            d_values, d_x = _native.backward(s.crow, s.col, s.t_crow, values, g, x, need_values, need_x)
            return d_values, None, d_x
        d_values = d_x = buf = None
        if need_x:
            # values in transpose order go to a buffer that then receives the value gradient:
            # one (nnz,) allocation per backward, not two
            buf = torch.empty(values.numel(), dtype=values.dtype, device=values.device)
            d_x = torch.sparse.mm(s.csr_t(values, out=buf), g.t()).t().contiguous()
        if need_values:
            d_values = value_grad(s, g, x, values=values, out=buf if g.dtype == values.dtype else None)
        return d_values, None, d_x


def spmm(values: Tensor, structure: SparseStructure, x: Tensor) -> Tensor:
    """``y = x W^T``: the sparse ``(post, pre)`` matrix ``W`` applied to ``x``.

    Args:
        values: ``(nnz,)`` matrix entries in the structure's CSR order (may require grad).
        structure: the fixed pattern (:class:`SparseStructure`), on ``x``'s device.
        x: ``(..., n_pre)`` activations (batch-first; any leading dims).

    Returns:
        ``(..., n_post)``, ``y[..., i] = sum_k values_k x[..., pre_k]`` over entries with ``post_k = i``.

    The gradient reaches ``values`` only at stored entries (an ``(nnz,)`` tensor)
    and ``x`` through ``W^T``; see the module docstring. Works on CPU and CUDA
    (``torch.sparse`` CSR kernels), float32 and float64.

    Example:
        >>> import torch
        >>> s, order = SparseStructure.from_edges(torch.tensor([0, 1, 1]), torch.tensor([1, 0, 2]), (2, 3))
        >>> v = torch.tensor([2.0, 3.0, -1.0], requires_grad=True)
        >>> y = spmm(v, s, torch.tensor([[1.0, 10.0, 100.0]]))
        >>> y.tolist()
        [[20.0, -97.0]]
        >>> y.sum().backward(); v.grad.tolist()
        [10.0, 1.0, 100.0]
    """
    n_post, n_pre = structure.shape
    if values.shape != (structure.nnz,):
        raise ValueError(f"values must have shape ({structure.nnz},) (one per stored entry); "
                         f"got {tuple(values.shape)}")
    if x.shape[-1] != n_pre:
        raise ValueError(f"x has {x.shape[-1]} features in its last dim; the matrix has {n_pre} "
                         "presynaptic columns (weights are (post, pre))")
    if x.dtype != values.dtype:
        raise TypeError(f"x ({x.dtype}) and values ({values.dtype}) must have the same dtype")
    lead = x.shape[:-1]
    y = _SpMM.apply(values, structure, x.reshape(-1, n_pre))
    return y.reshape(*lead, n_post)
