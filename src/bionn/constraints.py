"""Constraints that hold by construction, as ``torch.nn.utils.parametrize`` parametrizations.

A constrained weight is stored as an unconstrained raw tensor; the weight the
model uses is a function of it, recomputed whenever the weight is read. So
Dale's law, fixed sparsity and frozen synapses hold after every optimizer step,
for any optimizer, without an "enforce" call. Masks and signs are buffers.

All weights are ``(post, pre)``, like ``nn.Linear.weight``.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from bionn.constraints import constrain
    >>> layer = nn.Linear(4, 3)
    >>> sign = torch.tensor([1.0, 1.0, 1.0, -1.0])      # presynaptic cell types
    >>> mask = torch.ones(3, 4); mask[0, 0] = 0          # no synapse 0 -> 0
    >>> _ = constrain(layer, "weight", sign=sign, mask=mask)
    >>> bool((layer.weight[:, 3] <= 0).all() and layer.weight[0, 0] == 0)
    True
"""

from __future__ import annotations

import ctypes
import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from bionn._core import native

__all__ = [
    "Dale",
    "Mask",
    "GradScale",
    "LowerBound",
    "raw_parameter",
    "constrain",
    "ei_sign",
    "resolve_sign",
    "init_weight",
    "balance_ei",
    "spectral_radius",
    "WEIGHT_INITS",
]


class Dale(nn.Module):
    """Dale's law: ``W = magnitude(W_raw) * sign``, one sign per presynaptic unit.

    Each presynaptic unit is excitatory (+1), inhibitory (-1) or unsigned (0:
    its weights are free, ``W = W_raw``), so every outgoing weight of an E unit
    is >= 0 and of an I unit <= 0. ``magnitude`` is ``abs`` (keeps a gradient
    on both sides of zero, unlike the rectification ``[W_raw]_+`` whose negative
    entries never recover) or ``softplus`` (strictly positive, smooth).

    The one sign mechanism for every weight: ``dim`` is the weight's presynaptic
    axis and ``sign`` broadcasts along it, so the same class constrains a dense
    ``(post, pre)`` matrix (``dim=-1``), a convolution kernel
    ``(out, in, kh, kw)`` (``dim=1``) and the values of a sparse matrix
    (``dim=0`` with one sign per synapse, ``sign[pre_of_synapse]``).

    :meth:`project_` rewrites ``W_raw`` in place as ``|W_raw| sign`` (the same ``W``); until
    ``W_raw`` next changes, the forward returns it as it is (detached under ``no_grad``), with
    no pass and no graph node.
    Its gradient is then the one the parametrization gives, ``(g sign) sgn(W_raw) = g``.

    Args:
        sign: ``(pre,)`` tensor of +1 (E), -1 (I) and, with ``allow_unsigned``, 0.
        magnitude: ``"abs"`` or ``"softplus"``.
        dim: the presynaptic axis of the weight.
        allow_unsigned: accept 0 entries (free weights).

    With ``magnitude="abs"``, no unsigned units and a float32 CPU weight, ``|W_raw| sign``
    and its gradient ``(g sign) sgn(W_raw)`` each run as one compiled pass (built on first
    use, :mod:`bionn._core.native`), bit for bit what PyTorch's five operations give; under
    ``torch.func`` transforms, tracing or ``torch.compile`` the operations run instead.

    Example:
        >>> import torch
        >>> d = Dale(torch.tensor([1.0, -1.0, 0.0]), dim=1, allow_unsigned=True)
        >>> w = d(torch.full((2, 3, 1, 1), -0.5))
        >>> w[0, :, 0, 0].tolist()
        [0.5, -0.5, -0.5]
    """

    MAGNITUDES = ("abs", "softplus")

    def __init__(self, sign: Tensor, magnitude: str = "abs", dim: int = -1,
                 allow_unsigned: bool = False) -> None:
        super().__init__()
        sign = torch.as_tensor(sign, dtype=torch.get_default_dtype()).flatten()
        ok = (sign == 1) | (sign == -1) | ((sign == 0) if allow_unsigned else False)
        if not bool(torch.as_tensor(ok).all()):
            bad = ~torch.as_tensor(ok)
            allowed = "+1, -1 and 0 (unsigned)" if allow_unsigned else "+1 (excitatory) and -1 (inhibitory)"
            raise ValueError(
                f"sign must contain only {allowed}; "
                f"got {sign[bad][:5].tolist()} at positions {bad.nonzero().flatten()[:5].tolist()}"
            )
        if magnitude not in self.MAGNITUDES:
            raise ValueError(f"magnitude must be one of {self.MAGNITUDES}; got {magnitude!r}")
        self.magnitude, self.dim = magnitude, int(dim)
        self.register_buffer("sign", sign)
        self.has_unsigned = bool((sign == 0).any())
        #: (raw, its version) after :meth:`project_` left raw equal to W with no zero entry
        self._projected: tuple[Tensor, int] | None = None

    def _view(self, t: Tensor, like: Tensor) -> Tensor:
        dim = self.dim % like.dim()
        if like.shape[dim] != t.shape[0]:
            raise ValueError(
                f"sign has {t.shape[0]} entries but the weight has {like.shape[dim]} "
                f"presynaptic units along dim {self.dim} (weights are (post, pre))"
            )
        shape = [1] * like.dim()
        shape[dim] = t.shape[0]
        return t.view(shape)

    def _mag(self, raw: Tensor) -> Tensor:
        return raw.abs() if self.magnitude == "abs" else F.softplus(raw)

    @torch.no_grad()
    def project_(self, raw: Tensor) -> bool:
        """Rewrite ``raw`` in place as ``|raw| sign`` (``W`` is unchanged) and return whether
        the next forward can return ``raw`` itself: only with ``magnitude="abs"``, no
        unsigned unit and no zero (or NaN) entry, where ``sgn(raw) = sign`` makes the
        gradient ``(g sign) sgn(raw)`` equal ``g``. Any in-place change to ``raw`` (an
        optimizer step; PyTorch counts them, except writes through ``raw.data``) returns the
        forward to ``|raw| sign``.

        Under SGD, projecting after every step trains exactly as the parametrization does.
        A stateful optimizer (momentum, Adam) does too, until a weight reaches zero, if the
        first projection comes before the optimizer holds any state (its state is then kept
        in the projected weight's signs); at zero the projection reflects the raw weight to
        its sign's side while the optimizer's state keeps pushing it towards zero, where
        the unprojected raw weight would carry on past zero and the weight grow back.

        Example:
            >>> d = Dale(torch.tensor([1.0, -1.0]))
            >>> raw = torch.nn.Parameter(torch.tensor([[0.5, 0.25]]))
            >>> d.project_(raw), raw.tolist(), d(raw) is raw
            (True, [[0.5, -0.25]], True)
        """
        self._projected = None
        if self.magnitude != "abs" or self.has_unsigned or raw.numel() == 0:
            return False
        if _dale_pass_applies(raw, self.sign):
            bad = _dale_library().bionn_dale_project(*_dims(raw.shape, self.dim % raw.dim()),
                                                    raw.data_ptr(), self.sign.data_ptr())
        else:
            raw.abs_().mul_(self._view(self.sign, raw))
            bad = int((~(raw.abs() > 0)).sum())
        if bad == 0:
            self._projected = (raw, raw._version)
        return bad == 0

    def forward(self, raw: Tensor) -> Tensor:
        p = getattr(self, "_projected", None)  # (absent on a Dale pickled before it existed)
        if p is not None and p[0] is raw and p[1] == raw._version and native.plain_eager(raw):
            # under no_grad a weight that does not require grad, as the computed one would be
            return raw if torch.is_grad_enabled() else raw.detach()
        if self.magnitude == "abs" and not self.has_unsigned and _dale_pass_applies(raw, self.sign):
            return _AbsTimesSign.apply(raw, self.sign, self.dim % raw.dim())
        sign = self._view(self.sign, raw)
        w = self._mag(raw) * sign
        if self.has_unsigned:
            w = torch.where(sign == 0, raw, w)
        return w

    def right_inverse(self, weight: Tensor) -> Tensor:
        mag = weight.abs() if self.magnitude == "abs" else _softplus_inverse(weight.abs().clamp_min(1e-6))
        if self.has_unsigned:
            mag = torch.where(self._view(self.sign, weight) == 0, weight, mag)
        return mag

    def extra_repr(self) -> str:
        return f"magnitude={self.magnitude!r}, dim={self.dim}"


# One compiled pass each way for W = |W_raw| sign (the common Dale case): PyTorch's
# abs, product and, backward, product, sgn, product are five passes with five fresh
# allocations. Products with +-1 are exact, so the result is bit for bit PyTorch's.
_DALE_SOURCE = r"""
#include <cstdint>

namespace {
inline float sgn(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }  // torch.sgn: 0 for NaN
}

extern "C" {

// raw, w, g, out viewed as (outer, P, inner); sign has P entries
void bionn_dale_forward(int64_t outer, int64_t P, int64_t inner, const float* __restrict raw,
                        const float* __restrict sign, float* __restrict w) {
    if (inner == 1) {
        for (int64_t o = 0; o < outer; ++o) {
            const float* __restrict r = raw + o * P;
            float* __restrict y = w + o * P;
            for (int64_t p = 0; p < P; ++p) y[p] = __builtin_fabsf(r[p]) * sign[p];
        }
        return;
    }
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t p = 0; p < P; ++p) {
            const float s = sign[p];
            const float* __restrict r = raw + (o * P + p) * inner;
            float* __restrict y = w + (o * P + p) * inner;
            for (int64_t k = 0; k < inner; ++k) y[k] = __builtin_fabsf(r[k]) * s;
        }
}

// raw <- |raw| sign in place; returns how many entries are zero or NaN
int64_t bionn_dale_project(int64_t outer, int64_t P, int64_t inner, float* raw,
                           const float* __restrict sign) {
    int64_t bad = 0;
    if (inner == 1) {
        for (int64_t o = 0; o < outer; ++o) {
            float* __restrict r = raw + o * P;
            for (int64_t p = 0; p < P; ++p) {
                const float a = __builtin_fabsf(r[p]);
                bad += !(a > 0.0f);
                r[p] = a * sign[p];
            }
        }
        return bad;
    }
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t p = 0; p < P; ++p) {
            const float s = sign[p];
            float* __restrict r = raw + (o * P + p) * inner;
            for (int64_t k = 0; k < inner; ++k) {
                const float a = __builtin_fabsf(r[k]);
                bad += !(a > 0.0f);
                r[k] = a * s;
            }
        }
    return bad;
}

// out = (g sign) sgn(raw): the gradient of |raw| sign
void bionn_dale_backward(int64_t outer, int64_t P, int64_t inner, const float* __restrict raw,
                         const float* __restrict sign, const float* __restrict g,
                         float* __restrict out) {
    if (inner == 1) {
        for (int64_t o = 0; o < outer; ++o) {
            const float* __restrict r = raw + o * P;
            const float* __restrict gg = g + o * P;
            float* __restrict y = out + o * P;
            for (int64_t p = 0; p < P; ++p) y[p] = (gg[p] * sign[p]) * sgn(r[p]);
        }
        return;
    }
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t p = 0; p < P; ++p) {
            const float s = sign[p];
            const int64_t base = (o * P + p) * inner;
            for (int64_t k = 0; k < inner; ++k)
                out[base + k] = (g[base + k] * s) * sgn(raw[base + k]);
        }
}

}
"""

#: tensors up to this many elements take the compiled pass at any thread count; larger
#: ones only on one thread (PyTorch's element-wise kernels split them across threads)
_DALE_PASS_SERIAL_LIMIT = 1 << 20


@lru_cache(maxsize=1)
def _dale_library() -> ctypes.CDLL | None:
    lib = native.load(_DALE_SOURCE, "dale")
    if lib is None:
        return None
    native.declare(lib, [ctypes.c_int64] * 3 + [ctypes.c_void_p] * 3, "bionn_dale_forward")
    native.declare(lib, [ctypes.c_int64] * 3 + [ctypes.c_void_p] * 4, "bionn_dale_backward")
    native.declare(lib, [ctypes.c_int64] * 3 + [ctypes.c_void_p] * 2, "bionn_dale_project",
                   restype=ctypes.c_int64)
    return lib


def _dale_pass_applies(raw: Tensor, sign: Tensor) -> bool:
    """Float32, contiguous, CPU, not too large for one thread, a compiler, and plain eager
    execution (no ``torch.func`` transform, dispatch mode, tracing or ``torch.compile``,
    which the compiled pass cannot take part in)."""
    return (native.plain_eager(raw, sign) and raw.dtype == torch.float32 and sign.dtype == torch.float32
            and raw.device.type == "cpu" and raw.is_contiguous() and sign.is_contiguous()
            and raw.numel() > 0
            and (raw.numel() <= _DALE_PASS_SERIAL_LIMIT or torch.get_num_threads() == 1)
            and _dale_library() is not None)


def _dims(shape: torch.Size, dim: int) -> tuple[int, int, int]:
    return (math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1:]))


class _AbsTimesSign(torch.autograd.Function):
    """``|raw| * sign`` along ``dim`` with its gradient ``(g * sign) * sgn(raw)``, each one
    compiled pass (a double backward uses PyTorch's operations)."""

    @staticmethod
    def forward(ctx, raw: Tensor, sign: Tensor, dim: int) -> Tensor:  # noqa: D102
        ctx.save_for_backward(raw, sign)
        ctx.dim = dim
        w = torch.empty_like(raw)
        _dale_library().bionn_dale_forward(*_dims(raw.shape, dim), raw.data_ptr(),
                                           sign.data_ptr(), w.data_ptr())
        return w

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None, None]:  # noqa: D102
        raw, sign = ctx.saved_tensors
        if torch.is_grad_enabled():  # a double backward: differentiable operations
            shape = [1] * raw.dim()
            shape[ctx.dim] = sign.shape[0]
            return (g * sign.view(shape)) * raw.sgn(), None, None
        g = g.contiguous()
        out = torch.empty_like(raw)
        _dale_library().bionn_dale_backward(*_dims(raw.shape, ctx.dim), raw.data_ptr(),
                                            sign.data_ptr(), g.data_ptr(), out.data_ptr())
        return out, None, None


class Mask(nn.Module):
    """Fixed connectivity: ``W = W_raw * mask``; masked synapses are exactly zero
    and receive no gradient, so no synapse can appear during learning.

    Args:
        mask: ``(post, pre)`` tensor of 0 (no synapse) and 1 (synapse), or any
            shape that broadcasts against the weight (e.g. ``(out, 1, 1, 1)`` rows
            of a convolution kernel).
    """

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.get_default_dtype())
        if not ((mask == 0) | (mask == 1)).all():
            raise ValueError("mask must contain only 0 (no synapse) and 1 (synapse)")
        self.register_buffer("mask", mask)

    def forward(self, raw: Tensor) -> Tensor:
        return raw * self.mask

    def right_inverse(self, weight: Tensor) -> Tensor:
        return weight


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # noqa: D102
        (scale,) = ctx.saved_tensors
        return grad * scale, None


class GradScale(nn.Module):
    """Per-synapse gradient scale: the forward value is unchanged, the gradient that
    reaches the raw weight is multiplied by ``scale`` (0 = frozen synapse,
    1 = normal learning, in between = slower learning).

    A frozen synapse (scale 0) receives an exactly zero gradient, so it never
    moves under SGD, momentum, Adam or RMSprop (without weight decay). With
    plain SGD a scale ``s`` multiplies the synapse's learning rate by ``s``;
    adaptive optimizers (Adam) normalise gradient magnitudes away, so there
    intermediate scales only change the relative size of the update within
    Adam's running statistics, and the freeze/learn distinction is what holds.

    Args:
        scale: tensor broadcastable to the weight, values in [0, 1].
    """

    def __init__(self, scale: Tensor) -> None:
        super().__init__()
        scale = torch.as_tensor(scale, dtype=torch.get_default_dtype())
        if scale.numel() and (scale.min() < 0 or scale.max() > 1 or not torch.isfinite(scale).all()):
            raise ValueError(
                f"grad_scale must lie in [0, 1]; got values in "
                f"[{scale.min().item():g}, {scale.max().item():g}]"
            )
        self.register_buffer("scale", scale)

    def forward(self, raw: Tensor) -> Tensor:
        return _ScaleGrad.apply(raw, self.scale)

    def right_inverse(self, weight: Tensor) -> Tensor:
        return weight


def raw_parameter(module: nn.Module, name: str) -> nn.Parameter:
    """The trained leaf behind ``module.name``: the raw tensor under its
    parametrizations (``parametrizations[name].original``), or the Parameter itself."""
    if parametrize.is_parametrized(module, name):
        return module.parametrizations[name].original
    return getattr(module, name)


def _softplus_inverse(y: Tensor) -> Tensor:
    return y + torch.log(-torch.expm1(-y))


class LowerBound(nn.Module):
    """Keeps a parameter above a bound: ``x = low + softplus(x_raw)``.

    Used for learnable time constants, ``tau > dt`` so that ``alpha = dt / tau < 1``.
    """

    def __init__(self, low: float) -> None:
        super().__init__()
        self.low = float(low)

    def forward(self, raw: Tensor) -> Tensor:
        return self.low + F.softplus(raw)

    def right_inverse(self, value: Tensor) -> Tensor:
        gap = (value - self.low).clamp_min(1e-4)
        return _softplus_inverse(gap)

    def extra_repr(self) -> str:
        return f"low={self.low:g}"


def constrain(
    module: nn.Module,
    name: str,
    *,
    sign: Tensor | None = None,
    mask: Tensor | None = None,
    grad_scale: Tensor | None = None,
) -> nn.Module:
    """Register the constraints of one weight of ``module`` as parametrizations.

    The order is the gradient scale (on the raw weight), then Dale's law, then the mask,
    so the effective weight is ``mask * |raw| * sign`` and the raw weight's
    gradient is scaled by ``grad_scale``.

    Args:
        module: the module holding the weight.
        name: the attribute name of the weight, shaped ``(post, pre)``.
        sign: ``(pre,)`` +1/-1 per presynaptic neuron (Dale's law), or None.
        mask: ``(post, pre)`` 0/1 connectivity, or None.
        grad_scale: ``(post, pre)`` scale in [0, 1] of each synapse's gradient, or None.

    Returns:
        ``module``, for chaining.
    """
    weight = getattr(module, name)
    shape = tuple(weight.shape)
    if sign is not None:
        sign = torch.as_tensor(sign).flatten()
        if sign.shape[0] != shape[-1]:
            raise ValueError(
                f"sign for {name} has {sign.shape[0]} entries; expected {shape[-1]} "
                f"(one per presynaptic neuron of a {shape} (post, pre) weight)"
            )
    for label, t in (("mask", mask), ("grad_scale", grad_scale)):
        if t is not None and tuple(torch.as_tensor(t).shape) != shape:
            raise ValueError(
                f"{label} for {name} has shape {tuple(torch.as_tensor(t).shape)}; "
                f"expected {shape} (post, pre)"
            )
    if grad_scale is not None:
        parametrize.register_parametrization(module, name, GradScale(grad_scale))
    if sign is not None:
        parametrize.register_parametrization(module, name, Dale(sign))
    if mask is not None:
        parametrize.register_parametrization(module, name, Mask(mask))
    return module


def ei_sign(n: int, e_fraction: float) -> Tensor:
    """Cell-type signs for ``n`` neurons, the first ``round(e_fraction * n)``
    excitatory (+1), the rest inhibitory (-1)."""
    if not 0.0 < e_fraction < 1.0:
        raise ValueError(f"e_fraction must be in (0, 1); got {e_fraction}")
    n_e = int(round(e_fraction * n))
    if n_e == 0 or n_e == n:
        raise ValueError(
            f"e_fraction={e_fraction} of n={n} neurons leaves no "
            f"{'excitatory' if n_e == 0 else 'inhibitory'} neuron"
        )
    sign = torch.ones(n)
    sign[n_e:] = -1.0
    return sign


def resolve_sign(n: int, sign: Tensor | None = None, e_fraction: float | None = None,
                 ) -> Tensor | None:
    """The ``(n,)`` cell-type signs a model is given as ``sign`` or ``e_fraction``
    (:func:`ei_sign`), or None for neither; both at once, or a sign of another length,
    is a ``ValueError``."""
    if sign is not None and e_fraction is not None:
        raise ValueError("give either sign or e_fraction, not both")
    if e_fraction is not None:
        return ei_sign(n, e_fraction)
    if sign is None:
        return None
    sign = torch.as_tensor(sign, dtype=torch.get_default_dtype()).flatten()
    if sign.numel() != n:
        raise ValueError(f"sign must have one entry per neuron ({n}); got {sign.numel()}")
    return sign


WEIGHT_INITS = ("uniform", "normal", "gamma", "orthogonal", "zero")


def init_weight(
    shape: tuple[int, int],
    distribution: str = "uniform",
    generator: torch.Generator | None = None,
    gamma_shape: float = 2.0,
) -> Tensor:
    """Draw a ``(post, pre)`` weight.

    - ``uniform``: U(-1/sqrt(pre), 1/sqrt(pre)) (PyTorch/NN4N default; spectral radius ~ 0.58).
    - ``normal``: N(0, 1/pre) (spectral radius ~ 1 for a square matrix).
    - ``gamma``: Gamma(k=gamma_shape, theta=1/(k sqrt(pre)))  magnitudes (Song et al. 2016), all >= 0.
    - ``orthogonal``: a random orthogonal matrix (square) or semi-orthogonal.
    - ``zero``: zeros.
    """
    post, pre = shape
    if distribution == "uniform":
        bound = 1.0 / math.sqrt(pre)
        return (torch.rand(shape, generator=generator) * 2 - 1) * bound
    if distribution == "normal":
        return torch.randn(shape, generator=generator) / math.sqrt(pre)
    if distribution == "gamma":
        if not gamma_shape > 0:
            raise ValueError(f"gamma_shape must be > 0; got {gamma_shape!r}")
        # torch's Gamma sampler takes no generator: seed numpy's exact sampler from it.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        g = np.random.default_rng(seed).gamma(gamma_shape, 1.0, size=shape)
        return torch.as_tensor(g, dtype=torch.get_default_dtype()) / (gamma_shape * math.sqrt(pre))
    if distribution == "orthogonal":
        a = torch.randn((max(shape), min(shape)), generator=generator)
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r))
        return q if post >= pre else q.T
    if distribution == "zero":
        return torch.zeros(shape)
    raise ValueError(f"weight init must be one of {WEIGHT_INITS}; got {distribution!r}")


def balance_ei(magnitude: Tensor, sign: Tensor, mask: Tensor | None = None) -> Tensor:
    """Scale inhibitory columns of a non-negative magnitude matrix so that each
    row's summed inhibition equals its summed excitation (on average over rows),
    as in Song et al. 2016."""
    m = magnitude.abs() if mask is None else magnitude.abs() * mask
    exc = m[:, sign > 0].sum()
    inh = m[:, sign < 0].sum()
    if inh <= 0 or exc <= 0:
        return m
    out = m.clone()
    out[:, sign < 0] *= exc / inh
    return out


def spectral_radius(weight: Tensor) -> float:
    """Largest absolute eigenvalue of a square matrix."""
    return float(torch.linalg.eigvals(weight.detach().double().cpu()).abs().max())
