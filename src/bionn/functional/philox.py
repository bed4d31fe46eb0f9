r"""Counter-based random numbers: Philox4x32-10, compiled, for per-synapse draws in a loop.

PyTorch's CPU generator (Mersenne Twister) costs 3-4 ns per number on one core, more than
the arithmetic of most per-synapse rules. Philox4x32-10 (Salmon et al. 2011, "Parallel
random numbers: as easy as 1, 2, 3"; the generator of PyTorch's CUDA random numbers and
of NumPy's ``Philox``) is a bijection of a 128-bit counter under a 64-bit key, so the
number of synapse ``i`` is a pure function of ``(key, i, stream)``: vector loops draw it
with no state, the result does not depend on vector width or chunking, and a kept draw
is the same key reused. Here the counter is ``(i // 4, stream, 0)`` for words ``i % 4``
in chunks of 64 (see ``normals`` and ``uniforms`` below) and the key is one 64-bit draw
from PyTorch's global generator (:func:`draw_key`), so ``torch.manual_seed`` governs it.

- uniforms in ``[0, 1)``: the top 24 bits of a word times ``2**-24``;
- normals: the Box-Muller transform of two words, ``(r cos 2 pi v, r sin 2 pi v)``,
  ``r = sqrt(-2 ln u)``, ``u`` in ``(0, 1]``, with single-precision Cephes polynomials for
  ``log``, ``sin`` and ``cos`` (vectorisable; within a few units in the last place).

:data:`PHILOX_CPP` is the C++ source, included by other compiled loops
(:mod:`bionn.plasticity._fused`); this module's own library (built on first use through
:mod:`bionn._core.native`, cached) serves :func:`normal`, :func:`uniform`,
:func:`philox4x32` (Random123's known answers) and :func:`sign_concordant_uniform_`
(brSF's feedback draw, :class:`bionn.learning.BRSF`). Float32, CPU.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

import torch
from torch import Tensor

from bionn._core import native

__all__ = ["PHILOX_CPP", "available", "draw_key", "eligible", "normal", "philox4x32",
           "sign_concordant_uniform_", "uniform"]

#: definitions only (wrap in a namespace); needs <cstdint>
PHILOX_CPP = r"""
constexpr int CHUNK = 64;         // synapses per block of random numbers
constexpr int BLOCKS = CHUNK / 4;  // Philox blocks per chunk (4 words each)

inline float from_bits(uint32_t b) { return __builtin_bit_cast(float, b); }
inline uint32_t to_bits(float f) { return __builtin_bit_cast(uint32_t, f); }

// Cephes logf for x > 0 (normal numbers)
inline float log_f(float x) {
    uint32_t ix = to_bits(x);
    int e = int((ix >> 23) & 0xff) - 126;
    float m = from_bits((ix & 0x7fffffu) | 0x3f000000u);   // [0.5, 1)
    bool low = m < 0.707106781186547524f;
    e -= low ? 1 : 0;
    float t = low ? (m + m - 1.0f) : (m - 1.0f);
    float z = t * t;
    float y = 7.0376836292e-2f;
    y = y * t - 1.1514610310e-1f;
    y = y * t + 1.1676998740e-1f;
    y = y * t - 1.2420140846e-1f;
    y = y * t + 1.4249322787e-1f;
    y = y * t - 1.6668057665e-1f;
    y = y * t + 2.0000714765e-1f;
    y = y * t - 2.4999993993e-1f;
    y = y * t + 3.3333331174e-1f;
    y = y * t * z;
    float fe = float(e);
    y += fe * -2.12194440e-4f;
    y += -0.5f * z;
    return t + y + fe * 0.693359375f;
}

// Cephes expf for 0 <= x <= 87 (no range clamp: it would keep the loop from vectorising)
inline float exp_f(float x) {
    int n = int(x * 1.44269504088896341f + 128.5f) - 128;   // floor(x log2(e) + 1/2)
    float fn = float(n);
    float r = x - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    return y * from_bits(uint32_t(n + 127) << 23);
}

// Philox4x32-10 of the counter (c0, c1, c2, c3) with the key (k0, k1); 32-bit words held in
// 64-bit lanes so that the products compile to 32x32->64 vector multiplies
inline void philox(uint32_t c0_, uint32_t c1_, uint32_t c2_, uint32_t c3_, uint32_t k0_,
                   uint32_t k1_, uint32_t& o0, uint32_t& o1, uint32_t& o2, uint32_t& o3) {
    const uint64_t mask = 0xffffffffull;
    uint64_t c0 = c0_, c1 = c1_, c2 = c2_, c3 = c3_, k0 = k0_, k1 = k1_;
    for (int r = 0; r < 10; ++r) {
        uint64_t p0 = (c0 & mask) * 0xD2511F53ull;
        uint64_t p1 = (c2 & mask) * 0xCD9E8D57ull;
        uint64_t n0 = ((p1 >> 32) ^ c1 ^ k0) & mask;
        uint64_t n2 = ((p0 >> 32) ^ c3 ^ k1) & mask;
        c1 = p1 & mask; c3 = p0 & mask; c0 = n0; c2 = n2;
        k0 = (k0 + 0x9E3779B9ull) & mask; k1 = (k1 + 0xBB67AE85ull) & mask;
    }
    o0 = uint32_t(c0); o1 = uint32_t(c1); o2 = uint32_t(c2); o3 = uint32_t(c3);
}

// Box-Muller: (u, v) -> (r cos(2 pi v), r sin(2 pi v)), r = sqrt(-2 ln u), u in (0, 1]
inline void box_muller(uint32_t a, uint32_t b, float& z0, float& z1) {
    float u = float((a >> 8) + 1u) * 5.9604644775390625e-8f;   // (0, 1]
    float v = float(b >> 8) * 5.9604644775390625e-8f;          // [0, 1)
    float r = __builtin_sqrtf(-2.0f * log_f(u));
    int q = int(v * 4.0f + 0.5f);                              // nearest quarter turn
    float x = (v - float(q) * 0.25f) * 6.28318530717958648f;  // [-pi/4, pi/4]
    float zz = x * x;
    float s = ((-1.9515295891e-4f * zz + 8.3321608736e-3f) * zz - 1.6666654611e-1f) * zz * x + x;
    float c = ((2.443315711809948e-5f * zz - 1.388731625493765e-3f) * zz
               + 4.166664568298827e-2f) * zz * zz - 0.5f * zz + 1.0f;
    int k = q & 3;
    float cq = k == 0 ? c : (k == 1 ? -s : (k == 2 ? -c : s));
    float sq = k == 0 ? s : (k == 1 ? c : (k == 2 ? -s : -c));
    z0 = r * cq; z1 = r * sq;
}

// the Philox words of chunk `chunk` (64 synapses) of tensor `stream`: block j of the chunk
// is the counter (BLOCKS chunk + j, stream, 0)
inline void words(uint64_t chunk, uint32_t stream, uint64_t key, uint32_t* a, uint32_t* b,
                  uint32_t* c, uint32_t* d) {
    const uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
    const uint64_t first = chunk * BLOCKS;
    for (int j = 0; j < BLOCKS; ++j) {
        uint64_t ctr = first + uint64_t(j);
        philox(uint32_t(ctr), uint32_t(ctr >> 32), stream, 0u, k0, k1, a[j], b[j], c[j], d[j]);
    }
}

// the standard normals of synapses [64 chunk, 64 chunk + 64) of tensor `stream`
inline void normals(uint64_t chunk, uint32_t stream, uint64_t key, float* out) {
    uint32_t a[BLOCKS], b[BLOCKS], c[BLOCKS], d[BLOCKS];
    words(chunk, stream, key, a, b, c, d);
    for (int j = 0; j < BLOCKS; ++j) {
        box_muller(a[j], b[j], out[j], out[BLOCKS + j]);
        box_muller(c[j], d[j], out[2 * BLOCKS + j], out[3 * BLOCKS + j]);
    }
}

// the uniforms in [0, 1) of synapses [64 chunk, 64 chunk + 64) of tensor `stream`
inline void uniforms(uint64_t chunk, uint32_t stream, uint64_t key, float* out) {
    uint32_t a[BLOCKS], b[BLOCKS], c[BLOCKS], d[BLOCKS];
    words(chunk, stream, key, a, b, c, d);
    for (int j = 0; j < BLOCKS; ++j) {
        out[j] = float(a[j] >> 8) * 5.9604644775390625e-8f;
        out[BLOCKS + j] = float(b[j] >> 8) * 5.9604644775390625e-8f;
        out[2 * BLOCKS + j] = float(c[j] >> 8) * 5.9604644775390625e-8f;
        out[3 * BLOCKS + j] = float(d[j] >> 8) * 5.9604644775390625e-8f;
    }
}
"""

_SOURCE = (r"""
#include <cstdint>

namespace {
""" + PHILOX_CPP + r"""
// out[0, n) from a generator of 64-number chunks (normals or uniforms)
template <void (*CHUNK_FILL)(uint64_t, uint32_t, uint64_t, float*)>
void fill(int64_t n, uint32_t stream, uint64_t key, float* out) {
    for (int64_t start = 0; start < n; start += CHUNK) {
        float z[CHUNK];
        CHUNK_FILL(uint64_t(start / CHUNK), stream, key, z);
        const int m = int(n - start < CHUNK ? n - start : CHUNK);
        for (int i = 0; i < m; ++i) out[start + i] = z[i];
    }
}
}  // namespace

extern "C" {

void bionn_philox4x32(const uint32_t* ctr, const uint32_t* key, uint32_t* out) {
    philox(ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1], out[0], out[1], out[2], out[3]);
}

void bionn_philox_normal(int64_t n, uint32_t stream, uint64_t key, float* out) {
    fill<normals>(n, stream, key, out);
}

void bionn_philox_uniform(int64_t n, uint32_t stream, uint64_t key, float* out) {
    fill<uniforms>(n, stream, key, out);
}

// magnitude = bound u, out = sign(w) magnitude (0 where w = 0)
void bionn_sign_concordant(int64_t n, const float* __restrict w, float* __restrict magnitude,
                           float* __restrict out, float bound, uint32_t stream, uint64_t key) {
    for (int64_t start = 0; start < n; start += CHUNK) {
        float u[CHUNK];
        uniforms(uint64_t(start / CHUNK), stream, key, u);
        const int m = int(n - start < CHUNK ? n - start : CHUNK);
        for (int i = 0; i < m; ++i) {
            const float mag = bound * u[i], wv = w[start + i];
            magnitude[start + i] = mag;
            out[start + i] = wv > 0.0f ? mag : (wv < 0.0f ? -mag : 0.0f);
        }
    }
}

}
""")


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    """The built library, or None where no compiler is found or the build fails."""
    lib = native.load(_SOURCE, "philox")
    if lib is None:
        return None
    native.declare(lib, [ctypes.c_void_p] * 3, "bionn_philox4x32")
    native.declare(lib, [ctypes.c_int64, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_void_p],
                   "bionn_philox_normal", "bionn_philox_uniform")
    native.declare(lib, [ctypes.c_int64] + [ctypes.c_void_p] * 3
                   + [ctypes.c_float, ctypes.c_uint32, ctypes.c_uint64], "bionn_sign_concordant")
    return lib


def available() -> bool:
    """Whether the compiled generator can be built here (a C++ compiler is found)."""
    return _library() is not None


def eligible(*tensors: Tensor) -> bool:
    """Whether every tensor is a contiguous float32 CPU tensor: what the compiled loops
    that draw from this generator take."""
    return all(t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous()
               for t in tensors)


def _lib() -> ctypes.CDLL:
    lib = _library()
    if lib is None:
        raise RuntimeError("the compiled Philox generator needs a C++ compiler "
                           "(set CXX or install g++)")
    return lib


def draw_key(generator: torch.Generator | None = None) -> int:
    """One 64-bit key from PyTorch's global generator (or ``generator``)."""
    return int(torch.randint(0, 2**63 - 1, (), generator=generator, dtype=torch.int64))


def philox4x32(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, ...]:
    """One block of Philox4x32-10 (four 32-bit words).

    Example (Random123's known answer):
        >>> [f"{x:08x}" for x in philox4x32((0, 0, 0, 0), (0, 0))]
        ['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']
    """
    ctr = (ctypes.c_uint32 * 4)(*counter)
    k = (ctypes.c_uint32 * 2)(*key)
    out = (ctypes.c_uint32 * 4)()
    _lib().bionn_philox4x32(ctr, k, out)
    return tuple(out)


def normal(n: int, key: int, stream: int = 0) -> Tensor:
    """``n`` standard normals (float32) of ``stream`` under ``key``.

    Example:
        >>> xi = normal(100_000, key=1)
        >>> abs(float(xi.mean())) < 0.01, round(float(xi.std()), 2)
        (True, 1.0)
    """
    out = torch.empty(n, dtype=torch.float32)
    _lib().bionn_philox_normal(n, stream, key, out.data_ptr())
    return out


def uniform(n: int, key: int, stream: int = 0) -> Tensor:
    """``n`` uniforms in ``[0, 1)`` (float32, multiples of ``2**-24``) of ``stream``.

    Example:
        >>> u = uniform(100_000, key=1)
        >>> bool(u.min() >= 0) and bool(u.max() < 1), round(float(u.mean()), 2)
        (True, 0.5)
    """
    out = torch.empty(n, dtype=torch.float32)
    _lib().bionn_philox_uniform(n, stream, key, out.data_ptr())
    return out


def sign_concordant_uniform_(weight: Tensor, magnitude: Tensor, out: Tensor, bound: float,
                             key: int, stream: int = 0) -> Tensor:
    """brSF's draw in one pass: ``magnitude = bound u``, ``u ~ U[0, 1)`` (:func:`uniform`),
    and ``out = sign(weight) magnitude``; contiguous float32 CPU tensors of one shape.
    Returns ``out``.

    Example:
        >>> w = torch.tensor([[0.5, -2.0, 0.0]])
        >>> m, b = torch.empty(1, 3), torch.empty(1, 3)
        >>> _ = sign_concordant_uniform_(w, m, b, 0.1, key=3)
        >>> torch.equal(b, torch.sign(w) * m), torch.equal(m, 0.1 * uniform(3, key=3).view(1, 3))
        (True, True)
    """
    _lib().bionn_sign_concordant(weight.numel(), weight.data_ptr(), magnitude.data_ptr(),
                                 out.data_ptr(), bound, stream, key)
    return out
