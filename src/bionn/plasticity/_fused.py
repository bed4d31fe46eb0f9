r"""The gradient-side synaptic-diversity rules as one compiled pass per tensor.

:meth:`bionn.plasticity.SynapticDiversity.apply_gradient_transforms` multiplies each
gradient by the crystallisation-dampened fuzzy factor and the volume-dependent factor.
On the torch path that is about fifteen passes over each tensor plus a ``normal_`` draw,
whose Mersenne-Twister stream is the largest single cost (3-4 ns per synapse on one CPU
core). Here one C++ loop reads ``w``, ``g`` and ``f`` once and writes ``g`` and ``f``:

.. math::

    f_i &\leftarrow f_i\, d \quad\text{where } |g_i| < \theta |w_i|
        \text{ or } |g_i| > \overline{|w|} \quad(\text{crystallisation, when due})\\
    g_i &\leftarrow g_i\; e^{s / (|w_i| + 1)}\; |k + k c\, \xi_i|\; f_i,
        \qquad k = \mathrm{base\_lr}\, e^{-s}

(the same order of operations as the torch path), with the per-synapse normals
:math:`\xi_i` of :func:`bionn.functional.philox.normal` (Philox4x32-10 and Box-Muller) for
the key (one draw from PyTorch's global generator per draw of the noise), the tensor's
position as the stream and the synapse's index as the counter. A kept draw
(``noise_every = k``) is the same key reused, not a stored tensor. ``exp`` is a
single-precision polynomial (Cephes), within a few units in the last place.

Weight splitting's two maps are here too (:class:`bionn.plasticity.NeuronSum` and
:class:`bionn.plasticity.WeightSplitting`): :func:`group_sum` adds each group of ``gamma``
consecutive entries along a dimension (in the order ``j = 0, 1, ...``) and
:func:`group_repeat`, its adjoint, gives each group's value to its ``gamma`` members.

Float32 tensors on the CPU only; anything else takes the torch path. The library is
built on first use (:mod:`bionn._core.native`) and cached.
"""

from __future__ import annotations

import ctypes
import math
from functools import lru_cache

import torch
from torch import Tensor

from bionn._core import native
from bionn.functional import philox
from bionn.functional.philox import PHILOX_CPP

__all__ = ["available", "gradient_pass", "group_repeat", "group_sum"]

_SOURCE = (r"""
#include <cstdint>

namespace {
""" + PHILOX_CPP + r"""
// synapses [0, m) of one chunk (m <= CHUNK)
template <bool CRYS, bool SCALE, bool VOL>
inline void chunk_pass(int m, const float* __restrict wc, float* __restrict gc,
                       float* __restrict fc, const float* __restrict z, float mean,
                       float theta, float damp, float s, float k, float kc) {
    for (int i = 0; i < m; ++i) {
        float a = __builtin_fabsf(wc[i]);
        float gv = gc[i];
        float fv = fc[i];
        if (CRYS) {
            float ga = __builtin_fabsf(gv);
            bool hit = (ga < theta * a) | (ga > mean);
            fv = hit ? fv * damp : fv;
            fc[i] = fv;
        }
        float mult = 1.0f;
        if (VOL) mult = exp_f((1.0f / (a + 1.0f)) * s) * __builtin_fabsf(k + kc * z[i]);
        if (SCALE) mult = VOL ? mult * fv : fv;
        gc[i] = gv * mult;
    }
}

// g <- g * [exp(s/(|w|+1)) |k + kc xi|] * f, after f <- f d where crystallised
template <bool CRYS, bool SCALE, bool VOL>
void gradient_pass(int64_t n, const float* __restrict w, float* __restrict g,
                   float* __restrict f, float theta, float damp, float s, float k, float kc,
                   uint32_t stream, uint64_t key) {
    float mean = 0.0f;
    if (CRYS) {
        float part[16] = {0};
        int64_t i = 0;
        for (; i + 16 <= n; i += 16)
            for (int l = 0; l < 16; ++l) part[l] += __builtin_fabsf(w[i + l]);
        double acc = 0.0;
        for (int l = 0; l < 16; ++l) acc += part[l];
        for (; i < n; ++i) acc += __builtin_fabsf(w[i]);
        mean = float(acc / double(n));
    }
    float z[CHUNK];
    for (int64_t start = 0; start < n; start += CHUNK) {
        if (VOL) normals(uint64_t(start / CHUNK), stream, key, z);
        const int m = int(n - start < CHUNK ? n - start : CHUNK);
        chunk_pass<CRYS, SCALE, VOL>(m, w + start, g + start, f + start, z, mean, theta, damp,
                                     s, k, kc);
    }
}

// (outer_groups, gamma, inner) -> (outer_groups, inner): the members of each group added in
// order; G > 0 fixes gamma = G at compile time (the common small groups), G = 0 reads gamma
template <int G>
void sum_groups(int64_t outer_groups, int64_t gamma, int64_t inner,
                const float* __restrict src, float* __restrict dst) {
    const int64_t g = G > 0 ? G : gamma;
    if (inner == 1) {  // one number per unit (a layer's features): a loop over the groups
        for (int64_t q = 0; q < outer_groups; ++q) {
            float s = src[q * g] + src[q * g + 1];
            for (int64_t j = 2; j < g; ++j) s += src[q * g + j];
            dst[q] = s;
        }
        return;
    }
    for (int64_t q = 0; q < outer_groups; ++q) {
        const float* __restrict a = src + q * g * inner;
        float* __restrict d = dst + q * inner;
        for (int64_t k = 0; k < inner; ++k) {
            float s = a[k] + a[inner + k];
            for (int64_t j = 2; j < g; ++j) s += a[j * inner + k];
            d[k] = s;
        }
    }
}

// (outer_groups, inner) -> (outer_groups, gamma, inner); G as in sum_groups
template <int G>
void repeat_groups(int64_t outer_groups, int64_t gamma, int64_t inner,
                   const float* __restrict src, float* __restrict dst) {
    const int64_t g = G > 0 ? G : gamma;
    if (inner == 1) {
        for (int64_t q = 0; q < outer_groups; ++q)
            for (int64_t j = 0; j < g; ++j) dst[q * g + j] = src[q];
        return;
    }
    for (int64_t q = 0; q < outer_groups; ++q) {
        const float* __restrict a = src + q * inner;
        float* __restrict d = dst + q * g * inner;
        for (int64_t j = 0; j < g; ++j)
            for (int64_t k = 0; k < inner; ++k) d[j * inner + k] = a[k];
    }
}

}  // namespace

extern "C" {

// the sum over the members of each group: (outer_groups, gamma, inner) -> (outer_groups, inner)
void bionn_group_sum(int64_t outer_groups, int64_t gamma, int64_t inner,
                     const float* __restrict src, float* __restrict dst) {
    using Fn = void (*)(int64_t, int64_t, int64_t, const float*, float*);
    static const Fn fixed[5] = {sum_groups<0>, sum_groups<0>, sum_groups<2>, sum_groups<3>,
                                sum_groups<4>};
    (gamma <= 4 ? fixed[gamma] : sum_groups<0>)(outer_groups, gamma, inner, src, dst);
}

// each group's value given to its members: (outer_groups, inner) -> (outer_groups, gamma, inner)
void bionn_group_repeat(int64_t outer_groups, int64_t gamma, int64_t inner,
                        const float* __restrict src, float* __restrict dst) {
    using Fn = void (*)(int64_t, int64_t, int64_t, const float*, float*);
    static const Fn fixed[5] = {repeat_groups<0>, repeat_groups<0>, repeat_groups<2>,
                                repeat_groups<3>, repeat_groups<4>};
    (gamma <= 4 ? fixed[gamma] : repeat_groups<0>)(outer_groups, gamma, inner, src, dst);
}

// crystallize, scale (multiply by f), volume (multiply by the volume factor): 0 or 1
void bionn_gradient_pass(int64_t n, const float* w, float* g, float* f,
                         int crystallize, float theta, float damp,
                         int scale, int volume, float s, float k, float kc,
                         uint32_t stream, uint64_t key) {
    using Fn = void (*)(int64_t, const float*, float*, float*, float, float, float, float,
                        float, uint32_t, uint64_t);
    static const Fn table[8] = {
        gradient_pass<false, false, false>, gradient_pass<false, false, true>,
        gradient_pass<false, true, false>, gradient_pass<false, true, true>,
        gradient_pass<true, false, false>, gradient_pass<true, false, true>,
        gradient_pass<true, true, false>, gradient_pass<true, true, true>};
    table[(crystallize ? 4 : 0) + (scale ? 2 : 0) + (volume ? 1 : 0)](
        n, w, g, f, theta, damp, s, k, kc, stream, key);
}

}
""")


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    """The built library, or None where no compiler is found or the build fails."""
    lib = native.load(_SOURCE, "diversity")
    if lib is None:
        return None
    native.declare(lib, [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                         ctypes.c_int, ctypes.c_float, ctypes.c_float,
                         ctypes.c_int, ctypes.c_int, ctypes.c_float, ctypes.c_float, ctypes.c_float,
                         ctypes.c_uint32, ctypes.c_uint64], "bionn_gradient_pass")
    native.declare(lib, [ctypes.c_int64] * 3 + [ctypes.c_void_p] * 2, "bionn_group_sum",
                   "bionn_group_repeat")
    return lib


def available() -> bool:
    """Whether the compiled pass can be built here (a C++ compiler is found)."""
    return _library() is not None


def gradient_pass(weight: Tensor, grad: Tensor, factor: Tensor, *, crystallize: bool,
                  theta: float, dampening: float, scale: bool, volume: bool,
                  stability: float, k: float, variability: float, stream: int,
                  key: int) -> None:
    """One compiled pass over one tensor: ``factor`` (crystallisation, when
    ``crystallize``) and ``grad`` are updated in place; see the module docstring."""
    lib = _library()
    if lib is None:
        raise RuntimeError("the compiled synaptic-diversity pass needs a C++ compiler")
    n = weight.numel()
    if n == 0:
        return
    lib.bionn_gradient_pass(n, weight.data_ptr(), grad.data_ptr(), factor.data_ptr(),
                            int(crystallize), theta, dampening, int(scale), int(volume),
                            stability, k, k * variability, stream, key)


def _grouped_applies(t: Tensor) -> bool:
    return (philox.eligible(t) and t.numel() > 0 and native.plain_eager(t)
            and _library() is not None)


def group_sum(t: Tensor, gamma: int, dim: int) -> Tensor | None:
    """The sum over each group of ``gamma`` consecutive entries along ``dim`` (the
    members added in order), shape ``dim -> size / gamma``, as one compiled pass; None
    where it does not apply (not a contiguous float32 CPU tensor in plain eager
    execution, or no compiler: the caller then uses PyTorch)."""
    dim %= t.dim()
    if t.shape[dim] % gamma:
        raise ValueError(f"groups of {gamma} do not divide dimension {dim} of size "
                         f"{t.shape[dim]}")
    if not _grouped_applies(t):
        return None
    shape = list(t.shape)
    groups = shape[dim] // gamma
    shape[dim] = groups
    out = torch.empty(shape, dtype=t.dtype)
    _library().bionn_group_sum(math.prod(t.shape[:dim]) * groups, gamma,
                               math.prod(t.shape[dim + 1:]), t.data_ptr(), out.data_ptr())
    return out


def group_repeat(t: Tensor, gamma: int, dim: int) -> Tensor | None:
    """Each entry along ``dim`` given to a group of ``gamma`` consecutive entries, shape
    ``dim -> size * gamma`` (the adjoint of :func:`group_sum`), as one compiled pass; None
    where it does not apply."""
    if not _grouped_applies(t):
        return None
    dim %= t.dim()
    shape = list(t.shape)
    shape[dim] *= gamma
    out = torch.empty(shape, dtype=t.dtype)
    _library().bionn_group_repeat(math.prod(t.shape[:dim + 1]), gamma,
                                  math.prod(t.shape[dim + 1:]), t.data_ptr(), out.data_ptr())
    return out
