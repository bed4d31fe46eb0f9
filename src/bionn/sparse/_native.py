"""The sparse product's forward and backward as compiled passes over the CSR entries.

The forward sums each row's entries in CSR order, ``y[:, i] = sum_k values_k x[:, j_k]``,
on ``x`` transposed to ``(neuron, batch)``, rows split between threads (bit for bit
``torch.sparse.mm``'s result on the data tested, and the same at any thread count).

For ``y = x W^T`` with ``W`` stored in CSR order (row ``i`` = postsynaptic, column ``j``
= presynaptic), one loop over the stored entries ``k = (i, j)`` computes both gradients:

    dvalues_k  = sum_b g[b, i] x[b, j]
    dx[b, j]  += values_k g[b, i]

reading each index, value and activation row once, with the activations transposed to
``(neuron, batch)`` so that a synapse touches two contiguous rows of ``batch`` numbers.
It needs neither the transpose's indices nor a copy of the values in transpose order.

On one thread one pass computes both (two passes, one per gradient, where the
transposed ``x`` and ``dx`` together exceed half the last-level cache). On several, the
value gradient is split by rows and ``dx`` by ranges of presynaptic neurons (balanced by
synapse count): each ``dx`` job scans every entry and handles those whose column it owns,
so ``dx[:, j]`` is always summed over rows in ascending order and the result is bit for
bit the same at any thread count. The threads are Python threads around a ``ctypes``
call (which releases the GIL).

Memory: the value gradient (made at every step) is :func:`bionn._core.native.empty_mapped`
(its own mapping, not glibc's heap, which it fragmented), the transposed activations a
workspace kept by the calling thread.
"""

from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cache, lru_cache

import torch
from torch import Tensor

from bionn._core import native

_SOURCE = r"""
#include <cstdint>
#include <cstring>

namespace {

// 32-byte vectors (GCC/Clang vector extensions): 8 floats or 4 doubles
typedef float f8 __attribute__((vector_size(32)));
typedef double d4 __attribute__((vector_size(32)));
template <typename T> struct Vec;
template <> struct Vec<float> { typedef f8 type; static constexpr int W = 8; };
template <> struct Vec<double> { typedef d4 type; static constexpr int W = 4; };

typedef float f4 __attribute__((vector_size(16)));
typedef float f2 __attribute__((vector_size(8)));
typedef double d2 __attribute__((vector_size(16)));

// the lanes of a vector summed in a fixed pairwise order, halves first:
// ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)) for 8 floats
inline float hsum(f8 a) {
    const f4 h = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    const f2 q = __builtin_shufflevector(h, h, 0, 1) + __builtin_shufflevector(h, h, 2, 3);
    return q[0] + q[1];
}
inline double hsum(d4 a) {
    const d2 h = __builtin_shufflevector(a, a, 0, 1) + __builtin_shufflevector(a, a, 2, 3);
    return h[0] + h[1];
}

// a chunk of n <= W numbers, zero-padded
template <typename T>
inline typename Vec<T>::type load(const T* p, int64_t n) {
    typename Vec<T>::type v = {};
    std::memcpy(&v, p, sizeof(T) * n);
    return v;
}

// sum_b a[b] c[b]: chunk products summed lane-wise, then the lanes in a fixed order
template <typename T, int BB>
inline T dot(const T* __restrict a, const T* __restrict c, int64_t B_rt) {
    constexpr int W = Vec<T>::W;
    const int64_t B = BB > 0 ? BB : B_rt;
    if (B < W) {  // short batches: a plain sum
        T s = a[0] * c[0];
        for (int64_t b = 1; b < B; ++b) s += a[b] * c[b];
        return s;
    }
    typename Vec<T>::type acc = load(a, W) * load(c, W);
    int64_t b = W;
    for (; b + W <= B; b += W) acc += load(a + b, W) * load(c + b, W);
    if (b < B) acc += load(a + b, B - b) * load(c + b, B - b);
    return hsum(acc);
}

// d[b] += w a[b]
template <typename T, int BB>
inline void axpy(T* __restrict d, T w, const T* __restrict a, int64_t B_rt) {
    constexpr int W = Vec<T>::W;
    const int64_t B = BB > 0 ? BB : B_rt;
    int64_t b = 0;
    for (; b + W <= B; b += W) {
        typename Vec<T>::type r = load(d + b, W) + w * load(a + b, W);
        std::memcpy(d + b, &r, sizeof(r));
    }
    for (; b < B; ++b) d[b] += w * a[b];
}

struct Job {
    int64_t r0, r1, B, lo, hi;  // rows [r0, r1), columns [lo, hi), batch B
    const int32_t* crow;
    const int32_t* col;
};

template <typename T, int BB, bool DV, bool DX, bool RANGED>
void rows(const Job& job, const T* __restrict v, const T* __restrict gt,
          const T* __restrict xt, T* __restrict dv, T* __restrict dxt) {
    const int64_t B = BB > 0 ? BB : job.B;
    const int32_t* __restrict crow = job.crow;
    const int32_t* __restrict col = job.col;
    for (int64_t i = job.r0; i < job.r1; ++i) {
        const T* __restrict gi = gt + i * B;
        const int64_t end = crow[i + 1];
        for (int64_t k = crow[i]; k < end; ++k) {
            const int64_t j = col[k];
            if (RANGED && (j < job.lo || j >= job.hi)) continue;
            if (DV) dv[k] = dot<T, BB>(gi, xt + j * B, B);
            if (DX) axpy<T, BB>(dxt + j * B, v[k], gi, B);
        }
    }
}

template <typename T, bool DV, bool DX, bool RANGED>
void by_batch(const Job& job, const T* v, const T* gt, const T* xt, T* dv, T* dxt) {
    switch (job.B) {
        case 1: return rows<T, 1, DV, DX, RANGED>(job, v, gt, xt, dv, dxt);
        case 4: return rows<T, 4, DV, DX, RANGED>(job, v, gt, xt, dv, dxt);
        case 8: return rows<T, 8, DV, DX, RANGED>(job, v, gt, xt, dv, dxt);
        case 16: return rows<T, 16, DV, DX, RANGED>(job, v, gt, xt, dv, dxt);
        default: return rows<T, 0, DV, DX, RANGED>(job, v, gt, xt, dv, dxt);
    }
}

template <typename T>
void entry(const Job& job, int64_t n_cols, const T* v, const T* gt, const T* xt, T* dv, T* dxt) {
    if (dv && dxt) by_batch<T, true, true, false>(job, v, gt, xt, dv, dxt);  // always all columns
    else if (dv) by_batch<T, true, false, false>(job, v, gt, xt, dv, dxt);
    else if (dxt && (job.lo > 0 || job.hi < n_cols)) by_batch<T, false, true, true>(job, v, gt, xt, dv, dxt);
    else if (dxt) by_batch<T, false, true, false>(job, v, gt, xt, dv, dxt);
}

// the forward: yt[i] = sum_k values_k xt[col_k] over the entries of row i, for rows [r0, r1)
template <typename T, int BB>
void forward_rows(int64_t r0, int64_t r1, int64_t B_rt, const int32_t* __restrict crow,
                  const int32_t* __restrict col, const T* __restrict v,
                  const T* __restrict xt, T* __restrict yt) {
    const int64_t B = BB > 0 ? BB : B_rt;
    for (int64_t i = r0; i < r1; ++i) {
        T* __restrict y = yt + i * B;
        for (int64_t b = 0; b < B; ++b) y[b] = T(0);
        const int64_t end = crow[i + 1];
        for (int64_t k = crow[i]; k < end; ++k) axpy<T, BB>(y, v[k], xt + int64_t(col[k]) * B, B);
    }
}

template <typename T>
void forward(int64_t r0, int64_t r1, int64_t B, const int32_t* crow, const int32_t* col,
             const T* v, const T* xt, T* yt) {
    switch (B) {
        case 1: return forward_rows<T, 1>(r0, r1, B, crow, col, v, xt, yt);
        case 4: return forward_rows<T, 4>(r0, r1, B, crow, col, v, xt, yt);
        case 8: return forward_rows<T, 8>(r0, r1, B, crow, col, v, xt, yt);
        case 16: return forward_rows<T, 16>(r0, r1, B, crow, col, v, xt, yt);
        default: return forward_rows<T, 0>(r0, r1, B, crow, col, v, xt, yt);
    }
}

// out (C, R) = in (R, C)^T, in blocks that stay in the L1 cache
template <typename T>
void transpose(int64_t R, int64_t C, const T* __restrict in, T* __restrict out) {
    constexpr int64_t BLK = 64;
    for (int64_t c0 = 0; c0 < C; c0 += BLK) {
        const int64_t c1 = c0 + BLK < C ? c0 + BLK : C;
        for (int64_t r0 = 0; r0 < R; r0 += BLK) {
            const int64_t r1 = r0 + BLK < R ? r0 + BLK : R;
            for (int64_t r = r0; r < r1; ++r)
                for (int64_t c = c0; c < c1; ++c) out[c * R + r] = in[r * C + c];
        }
    }
}

}  // namespace

extern "C" {
void bionn_transpose_f32(int64_t R, int64_t C, const float* in, float* out) { transpose(R, C, in, out); }
// xt: (n_cols, B); yt: (n_rows, B), rows [r0, r1) written
void bionn_spmm_forward_f32(int64_t r0, int64_t r1, int64_t B, const int32_t* crow,
                            const int32_t* col, const float* v, const float* xt, float* yt) {
    forward<float>(r0, r1, B, crow, col, v, xt, yt);
}
void bionn_spmm_forward_f64(int64_t r0, int64_t r1, int64_t B, const int32_t* crow,
                            const int32_t* col, const double* v, const double* xt, double* yt) {
    forward<double>(r0, r1, B, crow, col, v, xt, yt);
}
void bionn_transpose_f64(int64_t R, int64_t C, const double* in, double* out) { transpose(R, C, in, out); }

// gt: (n_rows, B); xt, dxt: (n_cols, B); v, dv: (nnz,); dv or dxt may be null. Handles the
// entries of rows [r0, r1); with dxt alone, only those whose column lies in [lo, hi).
// dxt must hold zeros (or a sum to add to).
void bionn_spmm_backward_f32(int64_t r0, int64_t r1, int64_t n_cols, int64_t B, const int32_t* crow,
                             const int32_t* col, const float* v, const float* gt, const float* xt,
                             float* dv, float* dxt, int64_t lo, int64_t hi) {
    entry<float>(Job{r0, r1, B, lo, hi, crow, col}, n_cols, v, gt, xt, dv, dxt);
}
void bionn_spmm_backward_f64(int64_t r0, int64_t r1, int64_t n_cols, int64_t B, const int32_t* crow,
                             const int32_t* col, const double* v, const double* gt,
                             const double* xt, double* dv, double* dxt, int64_t lo, int64_t hi) {
    entry<double>(Job{r0, r1, B, lo, hi, crow, col}, n_cols, v, gt, xt, dv, dxt);
}
}
"""

#: synapses per thread below which one more thread does not pay for itself
_SYNAPSES_PER_THREAD = 1 << 18


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    lib = native.load(_SOURCE, "spmm")
    if lib is None:
        return None
    native.declare(lib, [ctypes.c_int64] * 4 + [ctypes.c_void_p] * 7 + [ctypes.c_int64] * 2,
                   "bionn_spmm_backward_f32", "bionn_spmm_backward_f64")
    native.declare(lib, [ctypes.c_int64] * 3 + [ctypes.c_void_p] * 5,
                   "bionn_spmm_forward_f32", "bionn_spmm_forward_f64")
    native.declare(lib, [ctypes.c_int64] * 2 + [ctypes.c_void_p] * 2,
                   "bionn_transpose_f32", "bionn_transpose_f64")
    return lib


_THREAD = threading.local()


@lru_cache(maxsize=1)
def _fuse_limit_bytes() -> int:
    """Bytes of the transposed ``x`` and ``dx`` up to which one pass computes both
    gradients: half the last-level cache (16 MB where the system does not say). Above it
    (the optic lobe at 10x: 2 x 14 MB on a 32 MB cache) two passes, each with one table in
    the cache, measured faster (31 against 40 ms, a one-off timing)."""
    try:
        size = os.sysconf("SC_LEVEL3_CACHE_SIZE")
    except (ValueError, OSError, AttributeError):
        size = 0
    return size // 2 if size and size > 0 else 16 << 20


def _workspace(numel: int, dtype: torch.dtype) -> Tensor:
    """This thread's scratch buffer for the transposed activations, grown to the largest
    size asked for and kept. The forward and the backward share it: each uses it only
    within its own call (its results are fresh tensors). Measured at the optic-lobe size:
    a fresh heap buffer at every step made the peak memory vary between runs
    (48.6-56.9 MB, against 51.7 MB every time with this one; one-off runs of the
    benchmark's worker), and a fresh mapping cost
    1 ms per step in page faults."""
    work = getattr(_THREAD, "work", None)
    if work is None or work.dtype != dtype or work.numel() < numel:
        work = _THREAD.work = torch.empty(numel, dtype=dtype)
    return work[:numel]


@cache
def _function(name: str, dtype: torch.dtype):
    """The compiled function ``bionn_{name}_f32`` or ``_f64`` for ``dtype``."""
    return getattr(_library(), f"bionn_{name}_{'f32' if dtype == torch.float32 else 'f64'}")


def _transposed(a: Tensor, out: Tensor | None = None) -> Tensor:
    """``a.t()`` (2-D) made contiguous by the compiled blocked transpose, into ``out``."""
    a = a.contiguous()
    if out is None:
        out = torch.empty(a.shape[1], a.shape[0], dtype=a.dtype)
    _function("transpose", a.dtype)(a.shape[0], a.shape[1], a.data_ptr(), out.data_ptr())
    return out


def _threads(nnz: int) -> int:
    """Threads for a pass over ``nnz`` entries: PyTorch's count, at most one per
    ``_SYNAPSES_PER_THREAD`` entries."""
    return max(1, min(torch.get_num_threads(), nnz // _SYNAPSES_PER_THREAD))


def _run(jobs: list[tuple]) -> None:
    """Each job's arguments to ``jobs[i][0]``, on the pool's threads; waits for all."""
    for f in [_pool().submit(*job) for job in jobs]:
        f.result()


_POOL: dict[int, ThreadPoolExecutor] = {}


def _pool() -> ThreadPoolExecutor:
    """The threads of this process (a child made by ``fork`` does not inherit the
    parent's threads, so it gets a pool of its own instead of one that never runs)."""
    pid = os.getpid()
    if pid not in _POOL:
        _POOL.clear()
        _POOL[pid] = ThreadPoolExecutor(thread_name_prefix="bionn-spmm")
    return _POOL[pid]


def applies(crow: Tensor, col: Tensor, values: Tensor, *activations: Tensor) -> bool:
    """Whether the compiled passes take these tensors (``activations``: ``x`` for the
    forward, ``g`` and ``x`` for the backward): CPU, float32 or float64, one dtype,
    contiguous int32 indices, plain eager execution, and a compiler."""
    return (values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64)
            and all(a.dtype == values.dtype for a in activations)
            and crow.dtype == torch.int32 and col.dtype == torch.int32
            and crow.is_contiguous() and col.is_contiguous()
            and native.plain_eager(values, *activations) and _library() is not None)


def _cuts(ptr: Tensor, parts: int) -> list[int]:
    """``parts + 1`` boundaries in ``[0, len(ptr) - 1]`` splitting the entries counted by
    the pointer array ``ptr`` into about equal parts (fewer where rows are long)."""
    n, total = ptr.numel() - 1, int(ptr[-1])
    inner = torch.searchsorted(ptr.to(torch.int64), torch.linspace(0, total, parts + 1)[1:-1].to(torch.int64))
    return [0, *sorted({int(c) for c in inner.tolist()} - {0, n}), n]


def forward(crow: Tensor, col: Tensor, values: Tensor, x: Tensor) -> Tensor:
    """``y = x W^T`` (``(batch, n_post)``) for ``x`` of shape ``(batch, n_pre)``: each row's
    entries summed in CSR order, rows split between threads. Call only where
    :func:`applies`."""
    n_rows, (B, n_cols) = crow.numel() - 1, x.shape
    if B == 0 or n_rows == 0 or col.numel() == 0:
        return x.new_zeros(B, n_rows)
    work = _workspace((n_cols + n_rows) * B, x.dtype)
    xt = _transposed(x, work[:n_cols * B].view(n_cols, B))
    yt = work[n_cols * B:].view(n_rows, B)
    fn = _function("spmm_forward", x.dtype)
    values = values.contiguous()
    data = (crow.data_ptr(), col.data_ptr(), values.data_ptr(), xt.data_ptr(), yt.data_ptr())
    threads = _threads(col.numel())
    if threads == 1:
        fn(0, n_rows, B, *data)
    else:
        rows = _cuts(crow, threads)
        _run([(fn, r0, r1, B, *data) for r0, r1 in zip(rows[:-1], rows[1:], strict=True)])
    return _transposed(yt)


def backward(crow: Tensor, col: Tensor, t_crow: Tensor, values: Tensor, g: Tensor, x: Tensor,
             need_values: bool, need_x: bool) -> tuple[Tensor | None, Tensor | None]:
    """``(dvalues, dx)`` of ``y = x W^T`` for ``g = dL/dy`` (``(batch, n_post)``) and
    ``x`` (``(batch, n_pre)``). Either gradient may be skipped (None). Call only where
    :func:`applies`.

    On one thread, one pass computes both. On ``T`` threads, the value gradient is split
    by postsynaptic rows (each entry's sum is the same whoever computes it) and ``dx`` by
    presynaptic columns (balanced with ``t_crow``, the transpose's row pointers): every job
    scans all entries and accumulates only its own columns, in ascending row order, so the
    result is bit for bit the same at any thread count.
    """
    n_rows, n_cols, B = crow.numel() - 1, x.shape[1], x.shape[0]
    nnz = col.numel()
    dtype = values.dtype
    if B == 0 or nnz == 0:  # nothing to sum (and the loops assume one sample at least)
        return (values.new_zeros(nnz) if need_values else None,
                x.new_zeros(B, n_cols) if need_x else None)
    fn = _function("spmm_backward", dtype)
    # the value gradient (nnz numbers, made at every step) in its own mapping; the
    # transposed activations in this thread's workspace, kept between calls
    dv = native.empty_mapped(nnz, dtype) if need_values else None
    work = _workspace((n_rows + 2 * n_cols) * B, dtype)
    gt = _transposed(g, work[:n_rows * B].view(n_rows, B))
    xt = _transposed(x, work[n_rows * B:(n_rows + n_cols) * B].view(n_cols, B))
    values = values.contiguous()
    dxt = work[(n_rows + n_cols) * B:].view(n_cols, B).zero_() if need_x else None
    ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731
    data = (crow.data_ptr(), col.data_ptr(), values.data_ptr(), gt.data_ptr(), xt.data_ptr())
    threads = _threads(nnz)
    fuse = not (need_values and need_x) or 2 * xt.numel() * xt.element_size() <= _fuse_limit_bytes()
    if threads == 1 and fuse:
        fn(0, n_rows, n_cols, B, *data, ptr(dv), ptr(dxt), 0, n_cols)
    elif threads == 1:  # x and dx together overflow the cache: one pass for each
        fn(0, n_rows, n_cols, B, *data, ptr(dv), None, 0, n_cols)
        fn(0, n_rows, n_cols, B, *data, None, ptr(dxt), 0, n_cols)
    else:
        dx_jobs = (threads // 2 if need_values else threads) if need_x else 0
        jobs = []
        if need_values:
            rows = _cuts(crow, threads - dx_jobs)
            jobs += [(fn, r0, r1, n_cols, B, *data, ptr(dv), None, 0, n_cols)
                     for r0, r1 in zip(rows[:-1], rows[1:], strict=True)]
        if need_x:
            cols = _cuts(t_crow, dx_jobs)
            jobs += [(fn, 0, n_rows, n_cols, B, *data, None, ptr(dxt), lo, hi)
                     for lo, hi in zip(cols[:-1], cols[1:], strict=True)]
        _run(jobs)
    return dv, (_transposed(dxt) if need_x else None)
