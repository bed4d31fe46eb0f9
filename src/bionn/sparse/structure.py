"""The fixed pattern of a sparse ``(post, pre)`` matrix: CSR plus its transpose's row pointers.

Values live apart from the structure (a plain 1-D tensor, trainable or not),
stored in CSR order: sorted by postsynaptic row, then presynaptic column.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

_KEPT = ("crow", "col", "t_crow")  # what a model keeps (the transpose order is computed)


def _compressed(index: Tensor, n: int) -> Tensor:
    ptr = torch.zeros(n + 1, dtype=torch.long, device=index.device)
    ptr[1:] = torch.cumsum(torch.bincount(index, minlength=n), 0)
    return ptr


@dataclass(frozen=True)
class SparseStructure:
    """Pattern of a sparse ``(post, pre)`` matrix (CSR) and of its transpose.

    Attributes:
        shape: ``(n_post, n_pre)``.
        crow: ``(n_post + 1,)`` row pointers (CSR).
        col: ``(nnz,)`` presynaptic index of every stored entry (CSR order).
        t_crow: ``(n_pre + 1,)`` row pointers of the transpose (CSC of the matrix).
        transpose_cache: where :attr:`t_col` and :attr:`t_perm` are kept once computed
            (by device); a model passes one dict to every structure it builds, so that
            they are computed once per model.

    Computed on first use (a stable sort of ``col``) and kept in ``transpose_cache``:

    * :attr:`t_col`: ``(nnz,)`` postsynaptic index of every entry in transpose order;
    * :attr:`t_perm`: ``(nnz,)`` CSR position of every entry in transpose order, so that
      ``values[t_perm]`` are the values of ``W^T`` in its CSR order.

    Only PyTorch's path of :func:`bionn.sparse.spmm` reads them (CUDA, or no C++
    compiler); the compiled CPU passes need ``crow``, ``col`` and ``t_crow`` only.
    Indices are int32 (int64 beyond 2**31 - 1 entries or neurons): 4 bytes per stored
    entry plus the row pointers, and 8 more per entry once the transpose order is
    computed. :attr:`row` (the postsynaptic index of every entry) is computed on demand.
    Build it with :meth:`from_edges`; it is immutable and moved with :meth:`to`.

    Example:
        >>> import torch
        >>> s, order = SparseStructure.from_edges(torch.tensor([1, 0]), torch.tensor([0, 2]), (2, 3))
        >>> s.nnz, s.row.tolist(), s.col.tolist(), order.tolist()
        (2, [0, 1], [2, 0], [1, 0])
    """

    shape: tuple[int, int]
    crow: Tensor
    col: Tensor
    t_crow: Tensor
    transpose_cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_edges(cls, post: Tensor, pre: Tensor, shape: tuple[int, int]) -> tuple[SparseStructure, Tensor]:
        """Structure from edge lists, and ``order`` such that ``values_csr = values[order]``.

        Args:
            post, pre: ``(nnz,)`` integer indices (``0 <= post < n_post``, ``0 <= pre < n_pre``).
            shape: ``(n_post, n_pre)``.

        Raises:
            ValueError: on out-of-range or duplicate ``(post, pre)`` pairs (sum duplicates first).
        """
        n_post, n_pre = int(shape[0]), int(shape[1])
        post = torch.as_tensor(post).long().flatten()
        pre = torch.as_tensor(pre).long().flatten()
        if post.shape != pre.shape:
            raise ValueError(f"post and pre must have the same length; got {post.numel()} and {pre.numel()}")
        if post.numel():
            if int(post.min()) < 0 or int(post.max()) >= n_post:
                raise ValueError(f"post indices must lie in [0, {n_post}); got [{int(post.min())}, {int(post.max())}]")
            if int(pre.min()) < 0 or int(pre.max()) >= n_pre:
                raise ValueError(f"pre indices must lie in [0, {n_pre}); got [{int(pre.min())}, {int(pre.max())}]")
        key = post * n_pre + pre
        key_sorted, order = torch.sort(key, stable=True)
        if key_sorted.numel() > 1 and bool((key_sorted[1:] == key_sorted[:-1]).any()):
            k = int(key_sorted[1:][key_sorted[1:] == key_sorted[:-1]][0])
            raise ValueError(f"duplicate synapse (post={k // n_pre}, pre={k % n_pre}); sum duplicates first")
        row, col = post[order], pre[order]
        big = max(post.numel(), n_post, n_pre) >= 2**31 - 1
        idx = torch.int64 if big else torch.int32
        s = cls((n_post, n_pre), _compressed(row, n_post).to(idx), col.to(idx),
                _compressed(col, n_pre).to(idx))
        return s, order

    def keep_in(self, module: nn.Module) -> None:
        """Register this pattern on ``module`` as non-persistent buffers ``_s_crow``,
        ``_s_col`` and ``_s_t_crow`` (moved with it, not in its state dict), with one
        transpose cache for every structure :meth:`kept_in` builds from them."""
        for k in _KEPT:
            module.register_buffer(f"_s_{k}", getattr(self, k), persistent=False)
        module._s_transpose = {}

    @classmethod
    def kept_in(cls, module: nn.Module, shape: tuple[int, int]) -> SparseStructure:
        """The pattern that :meth:`keep_in` registered on ``module`` (on its device)."""
        return cls(shape, *(getattr(module, f"_s_{k}") for k in _KEPT), module._s_transpose)

    def _transpose_order(self) -> tuple[Tensor, Tensor]:
        """``(t_col, t_perm)``, computed once per device and kept in ``transpose_cache``."""
        key = str(self.col.device)
        got = self.transpose_cache.get(key)
        if got is None or got[1].numel() != self.nnz:
            # CSR order is sorted by row, so a stable sort by column gives the transpose's
            # CSR order (by column, then row)
            t_perm = torch.sort(self.col, stable=True).indices
            got = (self.row[t_perm], t_perm.to(self.col.dtype))
            self.transpose_cache[key] = got
        return got

    @property
    def t_col(self) -> Tensor:
        """``(nnz,)`` postsynaptic index of every entry in transpose order (computed once)."""
        return self._transpose_order()[0]

    @property
    def t_perm(self) -> Tensor:
        """``(nnz,)`` CSR position of every entry in transpose order (computed once)."""
        return self._transpose_order()[1]

    @property
    def nnz(self) -> int:
        return int(self.col.numel())

    @property
    def row(self) -> Tensor:
        """``(nnz,)`` postsynaptic index of every stored entry (CSR order), computed."""
        n_post = self.shape[0]
        return torch.repeat_interleave(torch.arange(n_post, dtype=self.col.dtype, device=self.device),
                                       self.crow.diff(), output_size=self.nnz)

    @property
    def device(self) -> torch.device:
        return self.col.device

    def to(self, device: torch.device | str) -> SparseStructure:
        """The same structure with its index tensors on ``device``."""
        return SparseStructure(self.shape, *(getattr(self, k).to(device) for k in _KEPT))

    def csr(self, values: Tensor) -> Tensor:
        """A ``torch.sparse_csr_tensor`` of the matrix with these (CSR-ordered) values."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.sparse_csr_tensor(self.crow, self.col, values, self.shape, check_invariants=False)

    def csr_t(self, values: Tensor, *, out: Tensor | None = None) -> Tensor:
        """A ``torch.sparse_csr_tensor`` of the transpose ``W^T`` (``values`` in CSR order of ``W``).

        ``out``: an ``(nnz,)`` buffer that receives the values in transpose order (else a new one).
        """
        t_values = torch.index_select(values, 0, self.t_perm, out=out) if out is not None else \
            values.index_select(0, self.t_perm)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.sparse_csr_tensor(self.t_crow, self.t_col, t_values,
                                           (self.shape[1], self.shape[0]), check_invariants=False)

    def to_dense(self, values: Tensor) -> Tensor:
        """The dense ``(post, pre)`` matrix (for checks on small networks)."""
        out = torch.zeros(self.shape, dtype=values.dtype, device=values.device)
        out[self.row.long(), self.col.long()] = values
        return out
