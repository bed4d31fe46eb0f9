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
:math:`\xi_i` from a counter-based generator: Philox4x32-10 (Salmon et al. 2011, the
generator of PyTorch's CUDA random numbers and of NumPy's ``Philox``) keyed by one 64-bit
draw from PyTorch's global generator per draw of the noise, with the synapse's index and
the tensor's position as the counter, turned into normals by the Box-Muller transform.
A synapse's noise depends only on the key, the tensor and its index, so the result does
not depend on vector width or chunking, and a kept draw (``noise_every = k``) is the same
key reused, not a stored tensor. ``exp``, ``log``, ``sin`` and ``cos`` are single-precision
polynomials (Cephes), within a few units in the last place of the C library's.

Float32 tensors on the CPU only; anything else takes the torch path. The library is
built on first use (:mod:`bionn._core.native`) and cached.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

import torch
from torch import Tensor

from bionn._core import native

__all__ = ["available", "draw_key", "eligible", "gradient_pass", "philox4x32", "volume_noise"]

#: bump when the generated numbers change (part of the library's cache key)
KERNEL_VERSION = "1"

_SOURCE = r"""

#include <cstdint>

namespace {

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

// the standard normals of synapses [64 chunk, 64 chunk + 64) of tensor `stream`
inline void normals(uint64_t chunk, uint32_t stream, uint64_t key, float* out) {
    uint32_t a[BLOCKS], b[BLOCKS], c[BLOCKS], d[BLOCKS];
    const uint32_t k0 = uint32_t(key), k1 = uint32_t(key >> 32);
    const uint64_t first = chunk * BLOCKS;
    for (int j = 0; j < BLOCKS; ++j) {
        uint64_t ctr = first + uint64_t(j);
        philox(uint32_t(ctr), uint32_t(ctr >> 32), stream, 0u, k0, k1, a[j], b[j], c[j], d[j]);
    }
    for (int j = 0; j < BLOCKS; ++j) {
        box_muller(a[j], b[j], out[j], out[BLOCKS + j]);
        box_muller(c[j], d[j], out[2 * BLOCKS + j], out[3 * BLOCKS + j]);
    }
}

// one chunk of CHUNK synapses
template <bool CRYS, bool SCALE, bool VOL>
inline void chunk_pass(const float* __restrict wc, float* __restrict gc, float* __restrict fc,
                       const float* __restrict z, float mean, float theta, float damp,
                       float s, float k, float kc) {
    for (int i = 0; i < CHUNK; ++i) {
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
    float z[CHUNK], wb[CHUNK], gb[CHUNK], fb[CHUNK];
    for (int64_t start = 0; start < n; start += CHUNK) {
        if (VOL) normals(uint64_t(start / CHUNK), stream, key, z);
        const bool full = n - start >= CHUNK;
        const float* __restrict wc = w + start;
        float* __restrict gc = g + start;
        float* __restrict fc = f + start;
        if (!full) {  // the last, partial chunk: padded copies
            const int64_t m = n - start;
            for (int i = 0; i < CHUNK; ++i) {
                wb[i] = i < m ? wc[i] : 0.0f;
                gb[i] = i < m ? gc[i] : 0.0f;
                fb[i] = i < m ? fc[i] : 0.0f;
            }
            wc = wb; gc = gb; fc = fb;
        }
        chunk_pass<CRYS, SCALE, VOL>(wc, gc, fc, z, mean, theta, damp, s, k, kc);
        if (!full) {
            const int64_t m = n - start;
            for (int64_t i = 0; i < m; ++i) { g[start + i] = gb[i]; f[start + i] = fb[i]; }
        }
    }
}

}  // namespace

extern "C" {

// one Philox4x32-10 block (for the known-answer test)
void bionn_philox4x32(const uint32_t* ctr, const uint32_t* key, uint32_t* out) {
    philox(ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1], out[0], out[1], out[2], out[3]);
}

void bionn_volume_noise(int64_t n, uint32_t stream, uint64_t key, float* out) {
    float z[CHUNK];
    for (int64_t start = 0; start < n; start += CHUNK) {
        normals(uint64_t(start / CHUNK), stream, key, z);
        int64_t m = n - start < CHUNK ? n - start : CHUNK;
        for (int64_t i = 0; i < m; ++i) out[start + i] = z[i];
    }
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
"""


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    """The built library, or None where no compiler is found or the build fails."""
    if native.compiler() is None:
        return None
    try:
        lib = native.build(_SOURCE, "diversity", KERNEL_VERSION).lib
    except (RuntimeError, OSError):
        return None
    lib.bionn_philox4x32.restype = None
    lib.bionn_philox4x32.argtypes = [ctypes.c_void_p] * 3
    lib.bionn_volume_noise.restype = None
    lib.bionn_volume_noise.argtypes = [ctypes.c_int64, ctypes.c_uint32, ctypes.c_uint64,
                                       ctypes.c_void_p]
    lib.bionn_gradient_pass.restype = None
    lib.bionn_gradient_pass.argtypes = [
        ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.c_int, ctypes.c_float, ctypes.c_float,
        ctypes.c_int, ctypes.c_int, ctypes.c_float, ctypes.c_float, ctypes.c_float,
        ctypes.c_uint32, ctypes.c_uint64]
    return lib


def available() -> bool:
    """Whether the compiled pass can be built here (a C++ compiler is found)."""
    return _library() is not None


def eligible(tensors: list[Tensor]) -> bool:
    """Whether every tensor is a contiguous float32 CPU tensor (what the pass handles)."""
    return all(t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous()
               for t in tensors)


def draw_key(generator: torch.Generator | None = None) -> int:
    """One 64-bit key from PyTorch's global generator (or ``generator``)."""
    return int(torch.randint(0, 2**63 - 1, (), generator=generator, dtype=torch.int64))


def philox4x32(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, ...]:
    """One block of Philox4x32-10 (four 32-bit words), as the pass computes it.

    Example (Random123's known answer):
        >>> [f"{x:08x}" for x in philox4x32((0, 0, 0, 0), (0, 0))]
        ['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']
    """
    lib = _library()
    if lib is None:
        raise RuntimeError("the compiled synaptic-diversity pass needs a C++ compiler")
    ctr = (ctypes.c_uint32 * 4)(*counter)
    k = (ctypes.c_uint32 * 2)(*key)
    out = (ctypes.c_uint32 * 4)()
    lib.bionn_philox4x32(ctr, k, out)
    return tuple(out)


def volume_noise(n: int, key: int, stream: int = 0) -> Tensor:
    """The ``n`` standard normals the pass uses for tensor ``stream`` under ``key``.

    Example:
        >>> xi = volume_noise(100_000, key=1)
        >>> abs(float(xi.mean())) < 0.01, round(float(xi.std()), 2)
        (True, 1.0)
    """
    lib = _library()
    if lib is None:
        raise RuntimeError("the compiled synaptic-diversity pass needs a C++ compiler")
    out = torch.empty(n, dtype=torch.float32)
    lib.bionn_volume_noise(n, stream, key, out.data_ptr())
    return out


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
