r"""Synaptic diversity: spine-dynamics transforms for the training of any network.

The transforms of Hofmann et al. 2025 ("Concept transfer of synaptic diversity from
biological to artificial neural networks", *Nat. Commun.*; package
``pytorch-bio-transformations``, formerly BioLearn), with that package's defaults,
applied to the ``nn.Linear``/``nn.Conv1d``/``nn.Conv2d`` layers of any model and to
the connection weights of any recurrent model (CTRNN, ConnectomeRNN, spatial). Weights are ``(post, pre)``.

Gradient side (applied by the optimizer, in a ``register_step_pre_hook``, on the
gradient of each trained leaf ``w`` with gradient ``g``):

* **fuzzy learning rates** -- a fixed per-synapse factor ``f`` (a buffer, drawn once):
  ``g <- f * g``, ``f ~ U[1 - nu, 1 + nu]`` (``nu = 0.16``) or another distribution,
  clamped to ``[0.5, 2]``;
* **crystallisation** -- synapses whose update is small relative to their size, or
  whose gradient is larger than the layer's mean weight, are stabilised:
  ``f <- f * d`` where ``|g| / |w| < theta`` or ``|g| > mean|w|`` (``theta = 4.5e-5``,
  ``d = 0.6``); cumulative, on the same factor ``f`` (so it also works without fuzzy
  learning rates: ``f`` then starts at 1);
* **volume-dependent learning rate** -- larger spines are more stable:
  ``v = |w| / (|w| + 1)``, ``mu = base_lr * exp(-s v)``,
  ``g <- |N(mu, (c mu)^2)| * g`` freshly drawn each step (``base_lr = 0.1``,
  ``s = 2``, ``c = 0.2``; this divides the effective learning rate by about 10).
  ``noise_every = k`` keeps one draw of the noise for ``k`` steps (default 1: a fresh
  draw every step); the draw is the largest cost of the transforms on a CPU.

Weight side (after ``optimizer.step()``, every ``every`` steps, under ``no_grad``):

* **rejuvenation** (spine turnover, BioLearn's rule) -- per synapse a threshold
  ``tau ~ |N(0, (max|W| / dre)^2)|``; synapses with ``|w| < tau`` are replaced by
  ``U(-max|W|, max|W|)`` (``dre = 8``; about 10 % of a freshly initialised layer). With
  ``replacement='small'`` the new synapses are drawn from ``U(-max|W|/dre, max|W|/dre)``.

Structure (at conversion):

* **weight splitting** (multi-synaptic connectivity) -- ``Gamma`` consecutive output
  units form one neuron: ``y_i <- sum_{j in group(i)} a(y_j)``, so a neuron pair is
  linked by ``Gamma`` synapses (``a`` = identity by default). Not on the output layer.
  With the identity, a ``Linear`` layer computes each neuron's input once from its summed
  synapses (:class:`NeuronSum`, ``1/Gamma`` of the layer's products) and a convolution
  sums its kernels (:class:`GroupSum`); other activations use the output hook
  :class:`WeightSplitting`;
* **Dale's principle** -- :class:`bionn.constraints.Dale` (one sign per presynaptic
  neuron, ``W = |W_raw| * sign``), a parametrization, so it holds at every step. The raw
  weight is projected (``W_raw <- |W_raw| sign``, the same ``W``) at conversion and after
  every step (:meth:`bionn.constraints.Dale.project_`), so the forward reads it directly.

Plus :meth:`SynapticDiversity.regularizer`, a differentiable L1/L2 penalty of the weights.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from bionn.plasticity import BioConverter
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    >>> bio = BioConverter({"fuzzy_learning_rates": True, "rejuvenation": {"every": 2},
    ...                     "weight_splitting": {"gamma": 2}}).convert(net)
    >>> net = bio.model                  # a converted copy (inplace=True: net itself)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> _ = bio.attach(opt)              # the optimizer now applies the transforms
    >>> for _ in range(3):
    ...     opt.zero_grad(); net(torch.randn(4, 8)).sum().backward(); opt.step()
    >>> bio.steps, sum(1 for _ in net.parameters())
    (3, 4)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from torch import Tensor, nn
from torch.nn.utils import parametrize

from bionn._core.errors import ConfigError, format_errors
from bionn.constraints import Dale
from bionn.constraints import raw_parameter as _leaf
from bionn.functional import philox
from bionn.plasticity import _fused
from bionn.recurrent import recurrent_models

__all__ = [
    "BioConverter",
    "CrystallizationConfig",
    "DaleConfig",
    "FUZZY_DISTRIBUTIONS",
    "FuzzyLearningRateConfig",
    "NeuronSum",
    "RejuvenationConfig",
    "SynapseState",
    "SynapticDiversity",
    "SynapticDiversityConfig",
    "VolumeLearningRateConfig",
    "WeightSplitting",
    "WeightSplittingConfig",
    "crystallization_mask",
    "fuzzy_factors",
    "rejuvenation_mask",
    "volume_factors",
]

FUZZY_DISTRIBUTIONS = ("baseline", "uniform", "normal", "lognormal", "gamma", "beta",
                       "layer_adaptive", "weight_adaptive")
SPLIT_ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid")
STATE_NAME = "synaptic_state"


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FuzzyLearningRateConfig(_Strict):
    """Fixed per-synapse learning-rate factors (reference: ``fuzzy_learning_rates``)."""

    nu: float = Field(0.16, gt=0, allow_inf_nan=False, description="spread of the factors")
    distribution: Literal["baseline", "uniform", "normal", "lognormal", "gamma", "beta",
                          "layer_adaptive", "weight_adaptive"] = "uniform"
    min: float = Field(0.5, ge=0, allow_inf_nan=False, description="lower clamp")
    max: float = Field(2.0, gt=0, allow_inf_nan=False, description="upper clamp")


class CrystallizationConfig(_Strict):
    """Stabilisation of synapses with small relative updates (reference: ``crystallize``)."""

    threshold: float = Field(4.5e-5, gt=0, allow_inf_nan=False,
                             description="crystal_thresh: |g|/|w| below it crystallises")
    dampening: float = Field(0.6, gt=0, lt=1, allow_inf_nan=False,
                             description="dampening_factor applied to the factor")
    every: int = Field(1, ge=1, description="optimizer steps between crystallisations")


class VolumeLearningRateConfig(_Strict):
    """Learning rate falling with spine volume (reference: ``volume_dependent_lr``)."""

    base_lr: float = Field(0.1, gt=0, allow_inf_nan=False)
    stability_factor: float = Field(2.0, gt=0, allow_inf_nan=False)
    variability: float = Field(0.2, gt=0, allow_inf_nan=False, description="lr_variability")
    noise_every: int = Field(1, ge=1, description="optimizer steps between draws of the "
                                                  "per-synapse noise (1: a fresh draw every "
                                                  "step, the reference's rule; k: one draw "
                                                  "kept for k steps)")


class RejuvenationConfig(_Strict):
    """Turnover of weak synapses (reference: ``rejuvenate_weights``, BioLearn's rule)."""

    dre: float = Field(8.0, gt=0, allow_inf_nan=False,
                       description="rejuvenation_parameter_dre (larger: fewer replaced)")
    every: int = Field(100, ge=1, description="optimizer steps between rejuvenations")
    replacement: Literal["uniform", "small"] = Field(
        "uniform", description="new weights: 'uniform' U(-max|W|, max|W|) (BioLearn); 'small' "
                               "U(-max|W|/dre, max|W|/dre) (regrown spines start weak)")


class WeightSplittingConfig(_Strict):
    """Several synapses per neuron pair (reference: ``weight_splitting_Gamma``)."""

    gamma: int = Field(2, ge=2, description="units summed into one neuron")
    activation: Literal["identity", "relu", "tanh", "sigmoid"] = "identity"
    skip_output: bool = Field(True, description="leave the model's last layer unsplit")


class DaleConfig(_Strict):
    """Dale's principle on Linear/Conv layers (:class:`bionn.constraints.Dale`)."""

    e_fraction: float = Field(0.5, gt=0, lt=1, allow_inf_nan=False,
                              description="probability that a presynaptic neuron is excitatory")
    skip_input: bool = Field(True, description="leave the first layer (its inputs are data, "
                                               "not neurons) unconstrained")
    project: bool = Field(True, description="rewrite the raw weights as |W_raw| sign (the "
                                            "same W) at conversion and after every step, so "
                                            "that the forward reads them directly "
                                            "(bionn.constraints.Dale.project_); false: the "
                                            "parametrization computes W at every forward")


_SECTIONS = ("fuzzy_learning_rates", "crystallization", "volume_dependent_lr", "rejuvenation",
             "weight_splitting", "dale")


class SynapticDiversityConfig(_Strict):
    """Which transforms are on and their parameters; a section that is absent (or
    ``false``) is off, ``true`` or ``{}`` turns it on with the reference defaults.

    Example:
        >>> cfg = SynapticDiversityConfig(rejuvenation=True, crystallization={"every": 5})
        >>> cfg.enabled, cfg.rejuvenation.dre, cfg.crystallization.every
        (['crystallization', 'rejuvenation'], 8.0, 5)
    """

    fuzzy_learning_rates: FuzzyLearningRateConfig | None = None
    crystallization: CrystallizationConfig | None = None
    volume_dependent_lr: VolumeLearningRateConfig | None = None
    rejuvenation: RejuvenationConfig | None = None
    weight_splitting: WeightSplittingConfig | None = None
    dale: DaleConfig | None = None
    include_bias: bool = Field(False, description="apply the gradient- and weight-side "
                                                  "transforms to biases too")
    seed: int = Field(0, description="seed of the fuzzy factors and Dale signs")
    backend: Literal["auto", "cpp", "torch"] = Field(
        "auto", description="gradient-side rules: 'cpp' one compiled pass per tensor "
                            "(float32 CPU tensors, a C++ compiler; its own counter-based "
                            "noise), 'torch' PyTorch operations, 'auto' the compiled pass "
                            "where it applies")

    @field_validator(*_SECTIONS, mode="before")
    @classmethod
    def _switch(cls, v: Any) -> Any:
        if v is True:
            return {}
        if v is False:
            return None
        return v

    @property
    def enabled(self) -> list[str]:
        """Names of the transforms that are on."""
        return [s for s in _SECTIONS if getattr(self, s) is not None]


def _validate(config: SynapticDiversityConfig | Mapping[str, Any] | None,
              overrides: Mapping[str, Any]) -> SynapticDiversityConfig:
    if isinstance(config, SynapticDiversityConfig):
        data = config.model_dump()
        data = {k: v for k, v in data.items() if v is not None}
    else:
        data = dict(config or {})
    data.update(overrides)
    try:
        return SynapticDiversityConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_errors(e, SynapticDiversityConfig)) from None


# --------------------------------------------------------------------------------------------
# The rules as pure functions
# --------------------------------------------------------------------------------------------
def fuzzy_factors(weight: Tensor, cfg: FuzzyLearningRateConfig | None = None, *,
                  generator: torch.Generator | None = None, layer_index: int = 0,
                  n_layers: int = 1) -> Tensor:
    """Per-synapse learning-rate factors for ``weight``, clamped to ``[min, max]``.

    - ``baseline``: 1; ``uniform``: ``U[1 - nu, 1 + nu]``; ``normal``: ``1 + N(0, nu^2)``;
    - ``lognormal``: ``exp(N(-nu^2/2, nu^2))`` (mean 1);
    - ``gamma``: Gamma with mean 1 and standard deviation ``nu`` (the reference adds 1 to
      a mean-1 Gamma, so its factors average 2);
    - ``beta``: ``1 + (2 Beta(1/nu, 1/nu) - 1) nu``;
    - ``layer_adaptive``: uniform with ``nu (1 - 0.5 layer_index / n_layers)``;
    - ``weight_adaptive``: uniform with ``nu clamp(2 - |w| / mean|w|, 0.5, 1.5)``.

    Example:
        >>> f = fuzzy_factors(torch.zeros(3, 4), generator=torch.Generator().manual_seed(0))
        >>> bool(((f >= 0.84) & (f <= 1.16)).all())
        True
    """
    cfg = cfg or FuzzyLearningRateConfig()
    w = weight.detach().cpu().float()
    shape, nu, dist = w.shape, float(cfg.nu), cfg.distribution

    def uniform(spread: Tensor | float) -> Tensor:
        return 1.0 + (2.0 * torch.rand(shape, generator=generator) - 1.0) * spread

    if dist == "baseline":
        f = torch.ones(shape)
    elif dist == "uniform":
        f = uniform(nu)
    elif dist == "normal":
        f = 1.0 + nu * torch.randn(shape, generator=generator)
    elif dist == "lognormal":
        f = torch.exp(-0.5 * nu**2 + nu * torch.randn(shape, generator=generator))
    elif dist in ("gamma", "beta"):
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        if dist == "gamma":
            k = 1.0 / nu**2
            f = torch.as_tensor(rng.gamma(k, 1.0 / k, size=tuple(shape)), dtype=torch.float32)
        else:
            b = torch.as_tensor(rng.beta(1 / nu, 1 / nu, size=tuple(shape)), dtype=torch.float32)
            f = 1.0 + (2.0 * b - 1.0) * nu
    elif dist == "layer_adaptive":
        f = uniform(nu * (1.0 - 0.5 * layer_index / max(n_layers, 1)))
    else:  # weight_adaptive
        a = w.abs()
        f = uniform(nu * (2.0 - a / (a.mean() + 1e-8)).clamp(0.5, 1.5))
    return f.clamp(cfg.min, cfg.max).to(weight.dtype)


def crystallization_mask(weight: Tensor, grad: Tensor, threshold: float = 4.5e-5) -> Tensor:
    """Synapses to crystallise: ``|g| / |w| < threshold`` or ``|g| > mean|w|``.

    Written without a division (``|g| < threshold |w|``), which gives the same answer
    for ``w = 0`` (the ratio is ``inf`` or ``nan`` there, never below the threshold).

    Example:
        >>> w = torch.tensor([[1.0, 1.0, 0.0]]); g = torch.tensor([[1e-6, 0.5, 0.0]])
        >>> crystallization_mask(w, g).tolist()
        [[True, False, False]]
    """
    a, ga = weight.detach().abs(), grad.abs()
    return (ga < threshold * a) | (ga > a.mean())


def volume_factors(weight: Tensor, cfg: VolumeLearningRateConfig | None = None,
                   noise: Tensor | None = None) -> Tensor:
    """Volume-dependent learning-rate factors ``|mu + c mu xi|``,
    ``mu = base_lr exp(-s |w| / (|w| + 1))``, ``xi ~ N(0, 1)`` (``noise``, drawn from the
    global RNG when not given).

    Example:
        >>> volume_factors(torch.zeros(2), noise=torch.zeros(2)).tolist()
        [0.10000000149011612, 0.10000000149011612]
    """
    cfg = cfg or VolumeLearningRateConfig()
    a = weight.detach().abs()
    mu = torch.exp(a / (a + 1.0) * -cfg.stability_factor) * cfg.base_lr
    xi = torch.randn_like(a) if noise is None else noise
    return (mu * (1.0 + cfg.variability * xi)).abs()


def rejuvenation_mask(weight: Tensor, dre: float = 8.0, noise: Tensor | None = None) -> Tensor:
    """Weak synapses to replace: ``|w| < |xi| max|W| / dre`` with ``xi ~ N(0, 1)``
    (``noise``; the global RNG when not given).

    Example:
        >>> w = torch.tensor([0.01, -0.5, 1.0])
        >>> rejuvenation_mask(w, 8.0, noise=torch.ones(3)).tolist()   # threshold 1/8
        [True, False, False]
    """
    a = weight.detach().abs()
    xi = torch.randn_like(a) if noise is None else noise
    sigma = a.max() / dre + 1e-13
    return a < xi.abs() * sigma


# --------------------------------------------------------------------------------------------
# Modules: weight splitting, Dale on convolutions, per-layer state
# --------------------------------------------------------------------------------------------
_ACT = {"identity": None, "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


class WeightSplitting:
    """Forward hook: groups of ``gamma`` consecutive output units (the features, the last
    dimension, of a ``Linear`` layer; the channels, dim 1, of a convolution) are summed and
    the sum is given to each unit of the group, ``y_i <- sum_{j in group(i)} a(y_j)``.

    The output shape is unchanged; each downstream neuron receives ``gamma`` copies of
    every logical neuron, i.e. ``gamma`` synapses per neuron pair.

    Example:
        >>> layer = nn.Linear(2, 4)
        >>> h = layer.register_forward_hook(WeightSplitting(2))
        >>> y = layer(torch.randn(3, 2))
        >>> bool(torch.equal(y[:, 0], y[:, 1]))
        True
    """

    def __init__(self, gamma: int, activation: str = "identity") -> None:
        self.gamma = int(gamma)
        self.activation = activation

    def __call__(self, module: nn.Module, inputs: Any, out: Tensor) -> Tensor:
        act = _ACT[self.activation]
        if act is not None:
            out = act(out)
        return _group_share(out, self.gamma, -1 if isinstance(module, nn.Linear) else 1)

    def __repr__(self) -> str:
        return f"WeightSplitting(gamma={self.gamma}, activation={self.activation!r})"


def _group_sum(t: Tensor, gamma: int, dim: int) -> Tensor:
    """The sum of each group of ``gamma`` consecutive entries along ``dim``."""
    out = _fused.group_sum(t, gamma, dim)
    if out is None:
        dim %= t.dim()
        out = t.unflatten(dim, (t.shape[dim] // gamma, gamma)).sum(dim + 1)
    return out


def _group_repeat(t: Tensor, gamma: int, dim: int) -> Tensor:
    """Each entry along ``dim`` given to a group of ``gamma`` consecutive entries."""
    out = _fused.group_repeat(t.contiguous(), gamma, dim)
    return t.repeat_interleave(gamma, dim) if out is None else out


class _GroupSum(torch.autograd.Function):
    """:func:`_group_sum`; its adjoint is :class:`_GroupRepeat` (and the reverse), so
    every derivative order runs the same two passes."""

    @staticmethod
    def forward(ctx, t: Tensor, gamma: int, dim: int) -> Tensor:  # noqa: D102
        ctx.gamma, ctx.dim = gamma, dim
        return _group_sum(t, gamma, dim)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # noqa: D102
        return _GroupRepeat.apply(grad, ctx.gamma, ctx.dim), None, None


class _GroupRepeat(torch.autograd.Function):
    """:func:`_group_repeat`, the adjoint of :class:`_GroupSum`."""

    @staticmethod
    def forward(ctx, t: Tensor, gamma: int, dim: int) -> Tensor:  # noqa: D102
        ctx.gamma, ctx.dim = gamma, dim
        return _group_repeat(t, gamma, dim)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # noqa: D102
        return _GroupSum.apply(grad.contiguous(), ctx.gamma, ctx.dim), None, None


def _group_share(y: Tensor, gamma: int, dim: int = 1) -> Tensor:
    """``out_i = sum_{j in group(i)} y_j`` along ``dim``, groups of ``gamma`` consecutive
    units (differentiable to any order)."""
    return _GroupRepeat.apply(_GroupSum.apply(y, gamma, dim), gamma, dim)


class NeuronSum:
    r"""Weight splitting folded into a ``Linear`` layer's forward (identity activation): a
    neuron's ``gamma`` synapses from each input are summed before the product,

    .. math:: y_q = \Big(\sum_{j \in q} W_j\Big) x + \sum_{j \in q} b_j,
        \qquad \text{out}_i = y_{q(i)},

    for the groups ``q`` of ``gamma`` consecutive output units (the last dimension). It
    is what :class:`WeightSplitting` computes from the layer's output, with ``1/gamma`` of
    the layer's multiply-adds: each neuron's input is computed once, not once per unit.
    Every synapse ``W_j`` keeps its own value and gradient (the ``gamma`` synapses of a
    neuron pair receive the same gradient); ``layer.weight`` is unchanged.

    Installed by :class:`BioConverter` as the layer's ``forward`` (an instance attribute;
    the class's ``forward`` is untouched).

    Example:
        >>> layer = nn.Linear(3, 4)
        >>> x = torch.randn(2, 3)
        >>> hooked = WeightSplitting(2)(layer, (x,), layer(x))
        >>> bool(torch.allclose(NeuronSum(layer, 2)(x), hooked, atol=1e-6))
        True
    """

    def __init__(self, layer: nn.Linear, gamma: int) -> None:
        self.layer = layer
        self.gamma = int(gamma)

    def __call__(self, x: Tensor) -> Tensor:
        m, g = self.layer, self.gamma
        bias = None if m.bias is None else _GroupSum.apply(m.bias, g, 0)
        y = F.linear(x, _GroupSum.apply(m.weight, g, 0), bias)
        return _GroupRepeat.apply(y, g, -1)

    def __repr__(self) -> str:
        return f"NeuronSum(gamma={self.gamma})"


class GroupSum(nn.Module):
    """Weight splitting as a parametrization (identity activation): the rows of each group
    of ``gamma`` consecutive output units are summed and shared,
    ``W'_i = sum_{j in group(i)} W_j`` (and the same for the bias). A layer with ``W'``
    computes exactly what :class:`WeightSplitting` computes from ``W``, without touching
    the (larger) feature maps; used for convolutions."""

    def __init__(self, gamma: int) -> None:
        super().__init__()
        self.gamma = int(gamma)

    def forward(self, w: Tensor) -> Tensor:
        return _group_share(w, self.gamma, 0)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"


class SynapseState(nn.Module):
    """Buffers of one layer: ``<name>_lr_factor`` per transformed tensor (fuzzy learning
    rates times crystallisation). Registered on the layer as ``synaptic_state``."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def add(self, name: str, factor: Tensor) -> None:
        self.register_buffer(f"{name}_lr_factor", factor)
        self.names.append(name)

    def factor(self, name: str) -> Tensor:
        return getattr(self, f"{name}_lr_factor")

    def extra_repr(self) -> str:
        return ", ".join(self.names)


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def _tensor_names(module: nn.Module, include_bias: bool) -> list[str]:
    if isinstance(module, _LAYERS):
        return ["weight"] + (["bias"] if include_bias and module.bias is not None else [])
    return []


def _transform_units(model: nn.Module, include_bias: bool) -> list[tuple[str, nn.Module, list[str]]]:
    """``(name, holder module, tensor attributes)`` for everything the transforms act on:
    every connection of the recurrent models (through the :class:`~bionn.recurrent.RecurrentModel`
    protocol, grouped by the module that holds the weight) and every other
    ``Linear``/``Conv1d``/``Conv2d`` layer."""
    rnns = recurrent_models(model)
    units: dict[int, tuple[str, nn.Module, list[str]]] = {}
    for rn, rnn in rnns:
        for key in rnn.connection_weights():
            holder, attr = rnn.connection_holder(key)
            label = rn if holder is rnn else ".".join(p for p in (rn, key) if p)
            units.setdefault(id(holder), (label, holder, []))[2].append(attr)
        if include_bias:
            for b in getattr(rnn, "BIAS_NAMES", ()):
                if getattr(rnn, b, None) is not None:
                    units.setdefault(id(rnn), (rn, rnn, []))[2].append(b)
    inside = [n for n, _ in rnns]
    for n, m in model.named_modules():
        if any(p == "" or n == p or n.startswith(f"{p}.") for p in inside) or id(m) in units:
            continue
        names = _tensor_names(m, include_bias)
        if names:
            units[id(m)] = (n, m, names)
    return list(units.values())


@dataclass
class _Target:
    layer: str
    module: nn.Module
    name: str

    @property
    def leaf(self) -> nn.Parameter:
        return _leaf(self.module, self.name)

    @property
    def factor(self) -> Tensor:
        return getattr(self.module, STATE_NAME).factor(self.name)


@dataclass
class ConversionRow:
    """What the conversion did to one layer."""

    layer: str
    kind: str
    tensors: list[str]
    shape: tuple[int, ...]
    changes: list[str] = field(default_factory=list)


@dataclass
class DiversityReport:
    """What :meth:`BioConverter.convert` did, layer by layer (``layers``, ``names``,
    ``print(report)``: the same shape as :class:`bionn.learning.ConversionReport`)."""

    transforms: list[str]
    layers: list[ConversionRow] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [r.layer for r in self.layers]

    def __len__(self) -> int:
        return len(self.layers)

    def __str__(self) -> str:
        head = f"{'layer':<28}{'kind':<14}{'shape':<18}changes"
        lines = [f"synaptic diversity: {', '.join(self.transforms) or 'nothing'}", head]
        for r in self.layers:
            lines.append(f"{r.layer or '<model>':<28}{r.kind:<14}{str(r.shape):<18}"
                         f"{'; '.join(r.changes) or '-'}")
        return "\n".join(lines)


class SynapticDiversity:
    """A converted model's transforms: what :meth:`BioConverter.convert` returns.

    Like :func:`bionn.learning.convert`'s result it holds ``.model`` (the converted
    model) and ``.report`` (:class:`DiversityReport`). Attach to an optimizer with
    :meth:`attach` (then ``loss.backward(); opt.step()`` applies everything), or call
    :meth:`apply_gradient_transforms` between ``backward`` and ``step`` and
    :meth:`after_step` after it by hand.
    """

    def __init__(self, model: nn.Module, config: SynapticDiversityConfig,
                 targets: list[_Target], rows: list[ConversionRow]) -> None:
        self.model = model
        self.config = config
        self.targets = targets
        self.report = DiversityReport(list(config.enabled), rows)
        self.steps = 0
        self._handles: list[Any] = []
        self._noise: dict[int, Tensor] = {}  # kept volume noise (noise_every > 1), by target
        self._key: int | None = None  # the compiled pass's noise key (kept for noise_every)
        #: the path the last gradient pass ran ('cpp' or 'torch') and, for 'torch' under
        #: backend 'auto', why the compiled pass did not apply
        self.backend: str | None = None
        self.backend_reason: str | None = None
        #: the Dale parametrizations the converter put on Linear/Conv layers, projected
        #: after every step (:meth:`bionn.constraints.Dale.project_`)
        self._dale: list[tuple[Dale, _Target]] = []
        if config.dale is not None and config.dale.project:
            for t in targets:
                m = t.module
                if (isinstance(m, _LAYERS) and parametrize.is_parametrized(m, t.name)
                        and isinstance(m.parametrizations[t.name][0], Dale)):
                    self._dale.append((m.parametrizations[t.name][0], t))

    def __repr__(self) -> str:
        return (f"SynapticDiversity({', '.join(self.config.enabled)}; "
                f"{len(self.targets)} tensors, {self.steps} steps)")

    # ------------------------------------------------------------------ gradient side
    def _active(self) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[int]]:
        """Leaves (detached), gradients, factors and target indices of the targets that
        hold a gradient."""
        leaves, grads, factors, index = [], [], [], []
        for i, t in enumerate(self.targets):
            p = t.leaf
            if p.grad is not None:
                leaves.append(p.detach())
                grads.append(p.grad)
                factors.append(t.factor)
                index.append(i)
        return leaves, grads, factors, index

    @staticmethod
    def _crystallize(absw: list[Tensor], grads: list[Tensor], factors: list[Tensor],
                     c: CrystallizationConfig) -> None:
        """``f <- f * d`` where ``|g| < theta |w|`` or ``|g| > mean|w|``, for every tensor
        (list operations: one call per operation for all tensors)."""
        gabs = torch._foreach_abs(grads)
        limits = torch._foreach_mul(absw, c.threshold)
        damp = []
        for a, ga, lim in zip(absw, gabs, limits, strict=True):
            mask = torch.lt(ga, lim).logical_or_(torch.gt(ga, a.mean()))
            damp.append(torch.where(mask, c.dampening, 1.0))
        torch._foreach_mul_(factors, damp)

    def _volume(self, absw: list[Tensor], index: list[int],
                v: VolumeLearningRateConfig) -> list[Tensor]:
        """``|N(mu, (c mu)^2)|`` per synapse, ``mu = base_lr exp(-s |w|/(|w|+1))``, for
        every tensor; the noise is drawn (global RNG, one tensor after the other) at
        every step, or with ``noise_every = k`` at every k-th step and kept between."""
        # mu = base exp(-s a/(a+1)) = base exp(-s) exp(s/(a+1)); |N(mu, (c mu)^2)| = mu|N(1, c^2)|
        k = v.base_lr * math.exp(-v.stability_factor)
        mu = torch._foreach_add(absw, 1.0)
        torch._foreach_reciprocal_(mu)
        torch._foreach_mul_(mu, v.stability_factor)
        torch._foreach_exp_(mu)
        if v.noise_every == 1:
            noise = [torch.empty_like(a).normal_(k, k * v.variability).abs_() for a in absw]
        else:
            redraw = self.steps % v.noise_every == 0
            noise = []
            for i, a in zip(index, absw, strict=True):
                xi = self._noise.get(i)
                if redraw or xi is None or xi.shape != a.shape or xi.device != a.device:
                    xi = self._noise[i] = torch.empty_like(a).normal_(
                        k, k * v.variability).abs_()
                noise.append(xi)
        torch._foreach_mul_(mu, noise)
        return mu

    @torch.no_grad()
    def crystallize(self) -> None:
        """``f <- f * d`` where ``|g|/|w| < theta`` or ``|g| > mean|w|`` (needs gradients)."""
        c = self.config.crystallization or CrystallizationConfig()
        leaves, grads, factors, _ = self._active()
        if grads:
            self._crystallize(torch._foreach_abs(leaves), grads, factors, c)

    @torch.no_grad()
    def fuzzy_learning_rates(self) -> None:
        """``g <- f * g`` with the stored per-synapse factors."""
        _, grads, factors, _ = self._active()
        if grads:
            torch._foreach_mul_(grads, factors)

    @torch.no_grad()
    def volume_dependent_lr(self) -> None:
        """``g <- |mu + c mu xi| * g``, ``mu = base_lr exp(-s |w|/(|w|+1))``."""
        v = self.config.volume_dependent_lr or VolumeLearningRateConfig()
        leaves, grads, _, index = self._active()
        if grads:
            torch._foreach_mul_(grads, self._volume(torch._foreach_abs(leaves), index, v))

    @torch.no_grad()
    def apply_gradient_transforms(self) -> None:
        """Crystallisation (on its schedule), fuzzy factors and volume-dependent rates,
        in that order, on the current gradients; call between ``backward`` and ``step``.

        Crystallisation sees the gradient as backprop left it; the gradient is then
        multiplied once by ``f`` (fuzzy x crystallisation) and the volume factor.

        With ``backend`` ``'cpp'`` (or ``'auto'`` where it applies: float32 CPU tensors
        and a C++ compiler) one compiled pass per tensor does all of it
        (:mod:`bionn.plasticity._fused`), with counter-based noise keyed by one draw from
        PyTorch's global generator; on the torch path each operation runs once for all
        tensors (``torch._foreach_*``) and the noise is ``normal_`` from the global
        generator. Both are deterministic under ``torch.manual_seed``; their noise differs.
        ``self.backend`` says which ran, ``self.backend_reason`` why not the compiled pass.
        """
        cfg = self.config
        crys, vol = cfg.crystallization, cfg.volume_dependent_lr
        scale = cfg.fuzzy_learning_rates is not None or crys is not None
        crys_now = crys is not None and self.steps % crys.every == 0
        if not (scale or vol is not None):
            return  # no gradient-side transform is on
        leaves, grads, factors, index = self._active()
        if not grads:
            return
        reason = self._compiled_reason(leaves + grads + factors)
        self.backend, self.backend_reason = ("torch", reason) if reason else ("cpp", None)
        if reason is None:
            self._compiled_pass(leaves, grads, factors, index, crys_now, scale)
            return
        absw = torch._foreach_abs(leaves) if (crys_now or vol is not None) else []
        if crys_now:
            self._crystallize(absw, grads, factors, crys)
        if vol is not None:
            m = self._volume(absw, index, vol)
            if scale:
                torch._foreach_mul_(m, factors)
            torch._foreach_mul_(grads, m)
        elif scale:
            torch._foreach_mul_(grads, factors)

    def _compiled_reason(self, tensors: list[Tensor]) -> str | None:
        """None when the compiled pass runs; else why not (``backend='cpp'`` raises)."""
        backend = self.config.backend
        if backend == "torch":
            return "backend 'torch'"
        vol = self.config.volume_dependent_lr
        if not philox.eligible(*tensors):
            reason = "a tensor is not a contiguous float32 CPU tensor"
        elif vol is not None and vol.stability_factor > 87.0:
            reason = "stability_factor > 87 (exp would overflow float32)"
        elif not _fused.available():
            reason = "no C++ compiler found (set CXX or install g++)"
        else:
            return None
        if backend == "cpp":
            raise ValueError(f"synaptic diversity backend 'cpp' does not apply: {reason}; "
                             "use backend 'auto' or 'torch'")
        return reason

    def _compiled_pass(self, leaves: list[Tensor], grads: list[Tensor], factors: list[Tensor],
                       index: list[int], crystallize: bool, scale: bool) -> None:
        cfg = self.config
        c = cfg.crystallization or CrystallizationConfig()
        v = cfg.volume_dependent_lr
        if v is not None and (self._key is None or self.steps % v.noise_every == 0):
            self._key = philox.draw_key()
        vv = v or VolumeLearningRateConfig()
        k = vv.base_lr * math.exp(-vv.stability_factor)
        for w, g, f, i in zip(leaves, grads, factors, index, strict=True):
            _fused.gradient_pass(w, g, f, crystallize=crystallize, theta=c.threshold,
                                 dampening=c.dampening, scale=scale, volume=v is not None,
                                 stability=vv.stability_factor, k=k,
                                 variability=vv.variability, stream=i, key=self._key or 0)

    # ------------------------------------------------------------------ weight side
    @torch.no_grad()
    def rejuvenate(self) -> int:
        """Replace weak synapses (``|w| < |N(0, (max|W|/dre)^2)|``) by ``U(-max|W|, max|W|)``
        (``replacement='small'``: ``U(-max|W|/dre, max|W|/dre)``); returns how many were
        replaced."""
        r = self.config.rejuvenation or RejuvenationConfig()
        n = 0
        for t in self.targets:
            w = t.leaf
            if not w.requires_grad or w.numel() == 0:
                continue
            if not torch.isfinite(w).all():
                raise FloatingPointError(f"rejuvenation: {t.layer}.{t.name} holds non-finite "
                                         "values")
            top = w.abs().max()
            mask = rejuvenation_mask(w, r.dre)
            if r.replacement == "small":
                top = top / r.dre
            new = (torch.rand_like(w) * 2.0 - 1.0) * top
            w.copy_(torch.where(mask, new, w))
            n += int(mask.sum())
        return n

    def after_step(self) -> None:
        """Count the step, run the weight-side transforms that are due and project the
        Dale weights (``W_raw <- |W_raw| sign``, the same ``W``), so that the next forward
        reads them without Dale's passes (:meth:`bionn.constraints.Dale.project_`)."""
        self.steps += 1
        r = self.config.rejuvenation
        if r is not None and self.steps % r.every == 0:
            self.rejuvenate()
        for dale, t in self._dale:
            dale.project_(t.leaf)

    # ------------------------------------------------------------------ optimizer
    def attach(self, optimizer: torch.optim.Optimizer) -> SynapticDiversity:
        """Register step hooks on ``optimizer``: the gradient-side transforms run before
        each ``step()``, the weight-side ones after it. Build the optimizer after
        converting (Dale's parametrization moves the weights)."""
        owned = {id(p) for g in optimizer.param_groups for p in g["params"]}
        missing = [f"{t.layer}.{t.name}" for t in self.targets if id(t.leaf) not in owned]
        if missing:
            raise ValueError(f"the optimizer does not hold {missing[:3]}"
                             f"{' ...' if len(missing) > 3 else ''}: build it from "
                             "model.parameters() after BioConverter.convert")
        self._handles.append(optimizer.register_step_pre_hook(
            lambda opt, args, kwargs: self.apply_gradient_transforms()))
        self._handles.append(optimizer.register_step_post_hook(
            lambda opt, args, kwargs: self.after_step()))
        return self

    def detach(self) -> None:
        """Remove the optimizer hooks."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    # ------------------------------------------------------------------ regulariser
    def regularizer(self, p: int = 1) -> Tensor:
        """``sum |w|^p`` over the transformed weights (effective, after Dale), differentiable.

        Example:
            >>> net = nn.Linear(3, 2)
            >>> bio = BioConverter({}).convert(net, inplace=True)
            >>> bio.regularizer().backward()
            >>> bool(torch.equal(net.weight.grad, net.weight.detach().sign()))
            True
        """
        if p not in (1, 2):
            raise ValueError(f"p must be 1 (L1) or 2 (squared L2); got {p!r}")
        terms = [getattr(t.module, t.name) for t in self.targets if t.name.startswith("weight")]
        if not terms:
            return torch.zeros(())
        return sum((w.abs().sum() if p == 1 else w.square().sum()) for w in terms)

    def parameters(self) -> Iterator[nn.Parameter]:
        """The trained leaves the transforms act on."""
        for t in self.targets:
            yield t.leaf


class BioConverter:
    """Converts a model for synaptic-diversity training.

    Args:
        config: a :class:`SynapticDiversityConfig`, a dict of its fields, or None
            (nothing on); ``overrides`` are merged in. Bad values raise
            :class:`bionn.experiment.ConfigError` naming the field.

    :meth:`convert` registers a :class:`SynapseState` (buffers) on each
    ``Linear``/``Conv1d``/``Conv2d`` layer and on the module holding each connection of
    every recurrent model (:class:`~bionn.recurrent.RecurrentModel`: CTRNN,
    ConnectomeRNN, spatial networks), the
    weight-splitting forward hooks and Dale parametrizations, and returns a
    :class:`SynapticDiversity` whose :meth:`~SynapticDiversity.attach` hooks it into an
    optimizer. Parameters are never added.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
        >>> bio = BioConverter(dale=True, weight_splitting={"gamma": 3}).convert(net)
        >>> print(bio.report)  # doctest: +NORMALIZE_WHITESPACE
        synaptic diversity: weight_splitting, dale
        layer      kind    shape    changes
        0          Linear  (6, 4)   weight splitting gamma=3 (6 units -> 2 neurons, summed synapses)
        2          Linear  (2, 6)   Dale (4 E / 2 I presynaptic)
    """

    def __init__(self, config: SynapticDiversityConfig | Mapping[str, Any] | None = None,
                 **overrides: Any) -> None:
        self.config = _validate(config, overrides)

    def convert(self, model: nn.Module, inplace: bool = False) -> SynapticDiversity:
        """Convert a deep copy of ``model`` (``inplace=True``: ``model`` itself); use
        ``.model`` of the result. Raises ``ValueError`` when weight splitting does not fit
        a layer, before changing anything."""
        cfg = self.config
        if cfg.backend == "cpp" and not _fused.available():
            raise ValueError("backend 'cpp': no C++ compiler found to build the compiled "
                             "gradient pass (set CXX or install g++), or use backend 'auto'")
        if not inplace:
            model = copy.deepcopy(model)
        gen = torch.Generator().manual_seed(int(cfg.seed))
        units = _transform_units(model, cfg.include_bias)
        layers = [(n, m) for n, m, _ in units]
        names_of = {id(m): names for _, m, names in units}
        for n, m in layers:
            if hasattr(m, STATE_NAME):
                raise ValueError(f"layer {n or '<model>'!r} is already converted "
                                 f"(it has {STATE_NAME!r}); convert the original model")
        plain = [(n, m) for n, m in layers if isinstance(m, _LAYERS)]
        for key in ("weight_splitting", "dale"):
            if getattr(cfg, key) is not None and not plain:
                raise ValueError(f"{key}: the model has no nn.Linear/nn.Conv1d/nn.Conv2d layer "
                                 "(for a recurrent model give Dale's law to the model, e.g. "
                                 "CTRNN(e_fraction=...))")
        ws = cfg.weight_splitting
        split: list[tuple[str, nn.Module]] = []
        if ws is not None:
            split = plain[:-1] if ws.skip_output else plain
            for n, m in split:
                size = m.out_features if isinstance(m, nn.Linear) else m.out_channels
                dim = "out_features" if isinstance(m, nn.Linear) else "out_channels"
                if size % ws.gamma:
                    raise ValueError(
                        f"weight splitting: layer {n!r} ({type(m).__name__}) splits its "
                        f"output dimension {dim}={size}, which is not divisible by "
                        f"gamma={ws.gamma}")
        rows = {n: ConversionRow(n, type(m).__name__.removeprefix("Parametrized"), names_of[id(m)],
                                 tuple(getattr(m, names_of[id(m)][0]).shape))
                for n, m in layers}
        if cfg.dale is not None:
            dale_layers = plain[1:] if cfg.dale.skip_input else plain
            for n, m in dale_layers:
                w = m.weight
                sign = torch.where(torch.rand(w.shape[1], generator=gen) < cfg.dale.e_fraction,
                                   1.0, -1.0).to(w.device, w.dtype)
                # one sign per presynaptic unit: dim 1 of (out, in) and (out, in, *kernel)
                dale = Dale(sign, dim=1)
                parametrize.register_parametrization(m, "weight", dale)
                if cfg.dale.project:  # before any optimizer state exists (Dale.project_)
                    dale.project_(m.parametrizations.weight.original)
                n_e = int((sign > 0).sum())
                rows[n].changes.append(f"Dale ({n_e} E / {len(sign) - n_e} I presynaptic)")
        for n, m in split:  # after Dale: the summed synapses keep their presynaptic sign
            size = m.out_features if isinstance(m, nn.Linear) else m.out_channels
            # kernels of a grouped convolution see different inputs: sum the outputs there
            # only where the layer computes nn.Linear's product: a subclass's own forward
            # (a credit-assignment layer's feedback, say) keeps it, with the output hook
            if ws.activation == "identity" and type(m).forward is nn.Linear.forward:
                m.forward = NeuronSum(m, ws.gamma)
                how = "summed synapses"
            elif ws.activation == "identity" and not isinstance(m, nn.Linear) and m.groups == 1:
                parametrize.register_parametrization(m, "weight", GroupSum(ws.gamma))
                if m.bias is not None:
                    parametrize.register_parametrization(m, "bias", GroupSum(ws.gamma))
                how = "summed kernels"
            else:
                m.register_forward_hook(WeightSplitting(ws.gamma, ws.activation))
                how = "summed outputs"
            rows[n].changes.append(f"weight splitting gamma={ws.gamma} "
                                   f"({size} units -> {size // ws.gamma} neurons, {how})")
        fz = cfg.fuzzy_learning_rates
        targets: list[_Target] = []
        for i, (n, m) in enumerate(layers):
            state = SynapseState()
            for name in names_of[id(m)]:
                leaf = _leaf(m, name)
                if fz is not None:
                    f = fuzzy_factors(leaf, fz, generator=gen, layer_index=i,
                                      n_layers=len(layers))
                else:
                    f = torch.ones_like(leaf.detach())
                state.add(name, f.to(leaf.device, leaf.dtype))
                targets.append(_Target(n, m, name))
            m.add_module(STATE_NAME, state)
            on = [s.replace("_", " ") for s in ("fuzzy_learning_rates", "crystallization",
                                                "volume_dependent_lr", "rejuvenation")
                  if getattr(cfg, s) is not None]
            if on:
                rows[n].changes.insert(0, f"{' + '.join(on)} on "
                                          f"{', '.join(names_of[id(m)])}")
        if cfg.backend == "cpp":
            bad = [f"{t.layer}.{t.name}" for t in targets if not philox.eligible(t.leaf)]
            if bad:
                raise ValueError(f"backend 'cpp': {bad[:3]} not contiguous float32 CPU "
                                 "tensors (the compiled pass needs them); use backend "
                                 "'auto' or 'torch'")
        return SynapticDiversity(model, cfg, targets, list(rows.values()))

    def __call__(self, model: nn.Module, inplace: bool = False) -> SynapticDiversity:
        return self.convert(model, inplace)

