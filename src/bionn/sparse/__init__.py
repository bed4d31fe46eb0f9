"""Sparse matrix operations with autograd on the stored values.

``SparseStructure`` holds a fixed ``(post, pre)`` pattern (CSR plus the
transpose permutation); :func:`spmm` multiplies it, with a 1-D tensor of
values, by dense activations, with gradients O(nnz) in memory.
"""

from bionn.sparse.ops import spmm, value_grad
from bionn.sparse.structure import SparseStructure

__all__ = ["SparseStructure", "spmm", "value_grad"]
