"""Local learning rules that change a projection's weights during a simulation.

A rule is attached with ``Projection(..., plasticity=rule)``. The projection
then keeps per-trial weights ``ps["w"]`` of shape ``(batch, n_pre, K)`` in
the padded out-edge (ELL) layout of :class:`~bionn.spiking.Projection`, and
the network calls, after the synapse kinetics of every step,

    ps = rule.update(ps, proj, pre_spikes, post_spikes, dt, pre_state, post_state)

where ``ps`` is the projection's state dict (``"w"``, ``"syn.*"`` and the
rule's own ``"rule.*"`` entries created by :meth:`PlasticityRule.initial_state`),
``pre_spikes`` are the (delayed) presynaptic spikes arriving this step and
``post_spikes`` this step's postsynaptic spikes. Rules are functional: they
return a new dict with new tensors. ELL padding slots (``proj.edge_mask``
false) are never changed.

Defaults are those of ``bpmodels`` 0.2.3 (BrainPy-Models); where BrainPy 2.x
differs, the class docstring says how to get its behaviour.

Example:
    >>> import torch
    >>> from bionn.circuits.connect import all_to_all
    >>> from bionn.spiking import Exponential, Projection
    >>> rule = STDP()
    >>> p = Projection("A", "B", all_to_all(1, 1), Exponential(), weight=5.0, plasticity=rule)
    >>> ps = p.initial_state(batch=1, device=None, dtype=torch.float64)
    >>> yes, no = torch.tensor([[True]]), torch.tensor([[False]])
    >>> ps = rule.update(ps, p, yes, no, 0.1, {}, {})      # pre spike: A_s = 0.5
    >>> ps = rule.update(ps, p, no, yes, 0.1, {}, {})      # post spike 0.1 ms later: w += A_s
    >>> round(float(ps["w"][0, 0, 0]), 4)  # 5 + 0.5 exp(-0.1 / 10)
    5.495
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["BCM", "Oja", "PLASTICITY_RULES", "PlasticityRule", "STDP"]

State = dict[str, Tensor]


def _check_positive(owner: str, name: str, value: Any, unit: str = "") -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: {name} must be a number; got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{owner}: {name} must be a finite number > 0{unit}; got {value!r}")
    return v


def _check_number(owner: str, name: str, value: Any, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        allowed = "a number or None" if optional else "a number"
        raise TypeError(f"{owner}: {name} must be {allowed}; got {value!r}") from None
    if math.isnan(v):
        raise ValueError(f"{owner}: {name} must not be NaN")
    return v


class PlasticityRule(nn.Module):
    """Base class: weight bounds, validation and the ELL bookkeeping.

    Subclasses implement :meth:`initial_state` (the rule's state, without the
    ``"rule."`` prefix) and :meth:`update`.

    Args:
        w_min, w_max: weight bounds (``None``: unbounded on that side).
    """

    def __init__(self, *, w_min: float | None = None, w_max: float | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.w_min = _check_number(name, "w_min", w_min, optional=True)
        self.w_max = _check_number(name, "w_max", w_max, optional=True)
        if self.w_min is not None and self.w_max is not None and self.w_min > self.w_max:
            raise ValueError(f"{name}: w_min ({self.w_min}) must be <= w_max ({self.w_max})")

    def initial_state(self, proj, batch: int, device, dtype) -> State:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(
        self,
        ps: State,
        proj,
        pre_spikes: Tensor | None,
        post_spikes: Tensor | None,
        dt: float,
        pre_state: Mapping[str, Tensor],
        post_state: Mapping[str, Tensor],
    ) -> State:
        raise NotImplementedError  # pragma: no cover - abstract

    # helpers -------------------------------------------------------------
    def clip(self, w: Tensor) -> Tensor:
        """Clamp to ``[w_min, w_max]`` (sides that are None are open)."""
        if self.w_min is None and self.w_max is None:
            return w
        return w.clamp(self.w_min, self.w_max)

    def _weights(self, ps: State, proj) -> Tensor:
        if "w" not in ps:
            raise KeyError(
                f"{type(self).__name__}: projection {getattr(proj, 'name', '?')} state has no "
                "per-trial weights 'w'; attach the rule with Projection(..., plasticity=rule)"
            )
        return ps["w"]

    def _param_repr(self, **extra: Any) -> str:
        items = {**extra, "w_min": self.w_min, "w_max": self.w_max}
        return ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v!r}" for k, v in items.items()
        )


class STDP(PlasticityRule):
    """Trace-based spike-timing-dependent plasticity (bpmodels ``get_STDP``, after Stimberg 2014).

        dA_s/dt = -A_s / tau_s        (presynaptic trace, one per pre neuron)
        dA_t/dt = -A_t / tau_t        (postsynaptic trace, one per post neuron)
        pre spike j:   A_s[j] += delta_A_s;  w_ij <- clip(w_ij - A_t[i], w_min, w_max)
        post spike i:  A_t[i] += delta_A_t;  w_ij <- clip(w_ij + A_s[j], w_min, w_max)

    Each step the traces decay exactly, then the spikes are applied. Both
    weight updates start from the old ``w`` (bpmodels scalar mode): the
    depression uses ``A_t`` before this step's post spikes, the potentiation
    ``A_s`` including this step's pre spikes, and when both fire in one step
    the potentiation wins. So a pre spike followed ``Delta t`` later by a post
    spike adds ``delta_A_s exp(-Delta t / tau_s)``; the reverse order
    subtracts ``delta_A_t exp(-Delta t / tau_t)``. (bpmodels' vector mode
    applied the two in sequence with the previous step's traces; bpmodels
    also forced ``w >= 0`` before clipping, the same for ``w_min >= 0``.)

    Defaults (bpmodels 0.2.3): ``tau_s = tau_t = 10`` ms,
    ``delta_A_s = delta_A_t = 0.5``, ``w_min = 0``, ``w_max = 20``. bpmodels
    bundled an exponential conductance synapse (``tau_decay = 10``,
    ``g_max = 0.1``, ``E = 0``); here that is the projection's synapse, e.g.
    ``Projection(..., Exponential(tau_decay=10., g_max=0.1), output="conductance",
    E=0., plasticity=STDP())``. The synapse sees the weight before this
    step's change, as in bpmodels (``g += w`` before the update).

    BrainPy 2.x ``bp.dyn.STDP_Song2000`` has the same form with
    ``tau_s = 16.8``, ``tau_t = 33.7``, ``A1 = delta_A_s = 0.96``,
    ``A2 = delta_A_t = 0.53`` and no bounds: :meth:`song2000`.

    Args:
        tau_s, tau_t: trace time constants in ms (> 0).
        delta_A_s, delta_A_t: trace increments per pre / post spike.
        w_min, w_max: weight bounds (None: unbounded).

    Example:
        >>> rule = STDP.song2000()
        >>> rule.tau_s, rule.tau_t, rule.w_max
        (16.8, 33.7, None)
    """

    def __init__(
        self,
        *,
        tau_s: float = 10.0,
        tau_t: float = 10.0,
        delta_A_s: float = 0.5,
        delta_A_t: float = 0.5,
        w_min: float | None = 0.0,
        w_max: float | None = 20.0,
    ) -> None:
        super().__init__(w_min=w_min, w_max=w_max)
        self.tau_s = _check_positive("STDP", "tau_s", tau_s, " ms")
        self.tau_t = _check_positive("STDP", "tau_t", tau_t, " ms")
        self.delta_A_s = _check_number("STDP", "delta_A_s", delta_A_s)
        self.delta_A_t = _check_number("STDP", "delta_A_t", delta_A_t)

    @classmethod
    def song2000(cls, **overrides: Any) -> STDP:
        """BrainPy 2.x ``STDP_Song2000``: tau 16.8 / 33.7 ms, A1 0.96, A2 0.53, unbounded."""
        params = {
            "tau_s": 16.8,
            "tau_t": 33.7,
            "delta_A_s": 0.96,
            "delta_A_t": 0.53,
            "w_min": None,
            "w_max": None,
        }
        params.update(overrides)
        return cls(**params)

    def extra_repr(self) -> str:
        return self._param_repr(
            tau_s=self.tau_s, tau_t=self.tau_t, delta_A_s=self.delta_A_s, delta_A_t=self.delta_A_t
        )

    def initial_state(self, proj, batch: int, device, dtype) -> State:
        return {
            "A_s": torch.zeros(batch, proj.n_pre, device=device, dtype=dtype),
            "A_t": torch.zeros(batch, proj.n_post, device=device, dtype=dtype),
        }

    def update(
        self,
        ps: State,
        proj,
        pre_spikes: Tensor | None,
        post_spikes: Tensor | None,
        dt: float,
        pre_state: Mapping[str, Tensor],
        post_state: Mapping[str, Tensor],
    ) -> State:
        if pre_spikes is None or post_spikes is None:
            raise ValueError(f"STDP on projection {proj.name} needs spiking pre and post groups")
        w = self._weights(ps, proj)
        a_s = ps["rule.A_s"] * math.exp(-dt / self.tau_s)
        a_t_old = ps["rule.A_t"] * math.exp(-dt / self.tau_t)
        pre = pre_spikes.to(torch.bool)
        post_f = post_spikes.to(a_t_old.dtype)
        a_s = a_s + self.delta_A_s * pre.to(a_s.dtype)
        a_t = a_t_old + self.delta_A_t * post_f
        depressed = self.clip(w - proj.gather_post(a_t_old).to(w.dtype))
        potentiated = self.clip(w + a_s.to(w.dtype)[..., None])
        post_at = proj.gather_post(post_f) > 0  # padding reads 0: never a post spike
        pre_at = pre[..., None] & proj.edge_mask
        new_w = torch.where(post_at, potentiated, torch.where(pre_at, depressed, w))
        out = dict(ps)
        out.update({"w": new_w, "rule.A_s": a_s, "rule.A_t": a_t})
        return out


class _RateRule(PlasticityRule):
    """Shared rate estimation for rate-based rules.

    The rate of a group is its ``rate_var`` state variable when given, else
    ``"r"`` or ``"a_e"`` when the group has one (rate models), else the
    exponentially filtered spike train

        r <- r exp(-dt / tau_rate) + 1000 / tau_rate * spike        (Hz)

    whose mean is the firing rate in Hz (each spike adds an area of one
    spike). Presynaptic spikes are the delayed ones arriving at the synapse.
    """

    RATE_VARS = ("r", "a_e")

    def __init__(
        self, *, tau_rate: float, rate_var: str | None, w_min: float | None, w_max: float | None
    ) -> None:
        super().__init__(w_min=w_min, w_max=w_max)
        name = type(self).__name__
        self.tau_rate = _check_positive(name, "tau_rate", tau_rate, " ms")
        if rate_var is not None and not isinstance(rate_var, str):
            raise TypeError(
                f"{name}: rate_var must be a state variable name or None; got {rate_var!r}"
            )
        self.rate_var = rate_var

    def initial_state(self, proj, batch: int, device, dtype) -> State:
        return {
            "r_pre": torch.zeros(batch, proj.n_pre, device=device, dtype=dtype),
            "r_post": torch.zeros(batch, proj.n_post, device=device, dtype=dtype),
        }

    def _rate(
        self,
        previous: Tensor,
        spikes: Tensor | None,
        group: Mapping[str, Tensor],
        dt: float,
        side: str,
        proj,
    ) -> Tensor:
        keys = (self.rate_var,) if self.rate_var is not None else self.RATE_VARS
        for key in keys:
            if key in group:
                return group[key].to(previous.dtype)
        if self.rate_var is not None:
            raise KeyError(
                f"{type(self).__name__}: the {side} group of projection {proj.name} has no "
                f"variable {self.rate_var!r}; variables: {sorted(group)}"
            )
        if spikes is None:
            raise ValueError(
                f"{type(self).__name__}: the {side} group of projection {proj.name} has neither "
                f"a rate variable {list(self.RATE_VARS)} nor spikes"
            )
        return previous * math.exp(-dt / self.tau_rate) + spikes.to(previous.dtype) * (
            1000.0 / self.tau_rate
        )

    def _rates(self, ps: State, proj, pre_spikes, post_spikes, dt, pre_state, post_state):
        r_pre = self._rate(ps["rule.r_pre"], pre_spikes, pre_state, dt, "pre", proj)
        r_post = self._rate(ps["rule.r_post"], post_spikes, post_state, dt, "post", proj)
        return r_pre, r_post

    def _apply(
        self, ps: State, proj, w: Tensor, dw: Tensor, dt: float, **rule_state: Tensor
    ) -> State:
        new_w = torch.where(proj.edge_mask, self.clip(w + dt * dw.to(w.dtype)), w)
        out = dict(ps)
        out["w"] = new_w
        out.update({f"rule.{k}": v for k, v in rule_state.items()})
        return out


class BCM(_RateRule):
    """Bienenstock-Cooper-Munro rule (bpmodels ``BCM``).

        dw_ij/dt = learning_rate * r_i (r_i - r_theta_i) * r_j,   w clipped to [w_min, w_max]

    with ``r_i`` the post rate, ``r_j`` the pre rate and ``r_theta`` the
    running mean of the post rate: the mean over all steps so far, this one
    included (bpmodels: cumulative sum / (t / dt + 1)), or, with
    ``tau_theta``, an exponential running mean with that time constant (the
    sliding threshold of later BCM variants). Weights grow while the post
    rate is above its threshold and shrink below it. Rates as in the
    rate-estimation note of this module: a rate variable (``"r"``,
    ``"a_e"`` or ``rate_var``) or the spike train filtered with ``tau_rate``
    (in Hz). One Euler step ``w += dt dw/dt`` per simulation step.

    bpmodels computed the post rate inside the rule as ``sum_j w_ij r_j`` (a
    linear rate neuron); here the post group's own rate is used. Its
    declared ``r_0`` was unused and is omitted.

    Defaults (bpmodels 0.2.3): ``learning_rate = 0.005``, ``w_min = 0``,
    ``w_max = 2``; ``tau_rate = 100`` ms (bionn).

    Example:
        >>> BCM(learning_rate=0.01).extra_repr()
        'learning_rate=0.01, tau_rate=100, tau_theta=None, w_min=0, w_max=2'
    """

    def __init__(
        self,
        *,
        learning_rate: float = 0.005,
        w_min: float | None = 0.0,
        w_max: float | None = 2.0,
        tau_rate: float = 100.0,
        tau_theta: float | None = None,
        rate_var: str | None = None,
    ) -> None:
        super().__init__(tau_rate=tau_rate, rate_var=rate_var, w_min=w_min, w_max=w_max)
        self.learning_rate = _check_number("BCM", "learning_rate", learning_rate)
        self.tau_theta = (
            None if tau_theta is None else _check_positive("BCM", "tau_theta", tau_theta, " ms")
        )

    def extra_repr(self) -> str:
        return self._param_repr(
            learning_rate=self.learning_rate, tau_rate=self.tau_rate, tau_theta=self.tau_theta
        )

    def initial_state(self, proj, batch: int, device, dtype) -> State:
        state = super().initial_state(proj, batch, device, dtype)
        state["theta"] = torch.zeros(batch, proj.n_post, device=device, dtype=dtype)
        state["steps"] = torch.zeros(batch, 1, device=device, dtype=dtype)
        return state

    def update(
        self,
        ps: State,
        proj,
        pre_spikes: Tensor | None,
        post_spikes: Tensor | None,
        dt: float,
        pre_state: Mapping[str, Tensor],
        post_state: Mapping[str, Tensor],
    ) -> State:
        w = self._weights(ps, proj)
        r_pre, r_post = self._rates(ps, proj, pre_spikes, post_spikes, dt, pre_state, post_state)
        steps = ps["rule.steps"] + 1.0
        theta = ps["rule.theta"]
        if self.tau_theta is None:
            theta = theta + (r_post - theta) / steps
        else:
            theta = theta + (r_post - theta) * (1.0 - math.exp(-dt / self.tau_theta))
        phi = r_post * (r_post - theta)
        dw = self.learning_rate * proj.gather_post(phi) * r_pre[..., None]
        return self._apply(
            ps, proj, w, dw, dt, r_pre=r_pre, r_post=r_post, theta=theta, steps=steps
        )


class Oja(_RateRule):
    """Oja's rule (bpmodels ``get_Oja``).

        dw_ij/dt = gamma (r_i r_j - r_i^2 w_ij)

    Hebbian growth with a decay that normalises each post neuron's incoming
    weight vector: for a linear post neuron ``r_i = sum_j w_ij r_j`` it
    converges to the unit-norm principal component of the inputs. Rates as in
    the rate-estimation note of this module (a rate variable or filtered
    spikes in Hz); one Euler step per simulation step, so keep
    ``gamma dt r^2`` small.

    Defaults (bpmodels 0.2.3): ``gamma = 0.005``; bpmodels declared
    ``w_max = 1``, ``w_min = 0`` but never applied them, so here the bounds
    default to None (unbounded) and are applied only when given.
    ``tau_rate = 100`` ms (bionn).

    Example:
        >>> Oja().extra_repr()
        'gamma=0.005, tau_rate=100, w_min=None, w_max=None'
    """

    def __init__(
        self,
        *,
        gamma: float = 0.005,
        w_min: float | None = None,
        w_max: float | None = None,
        tau_rate: float = 100.0,
        rate_var: str | None = None,
    ) -> None:
        super().__init__(tau_rate=tau_rate, rate_var=rate_var, w_min=w_min, w_max=w_max)
        self.gamma = _check_number("Oja", "gamma", gamma)

    def extra_repr(self) -> str:
        return self._param_repr(gamma=self.gamma, tau_rate=self.tau_rate)

    def update(
        self,
        ps: State,
        proj,
        pre_spikes: Tensor | None,
        post_spikes: Tensor | None,
        dt: float,
        pre_state: Mapping[str, Tensor],
        post_state: Mapping[str, Tensor],
    ) -> State:
        w = self._weights(ps, proj)
        r_pre, r_post = self._rates(ps, proj, pre_spikes, post_spikes, dt, pre_state, post_state)
        post_at = proj.gather_post(r_post)
        dw = self.gamma * (post_at * r_pre[..., None] - post_at.square() * w)
        return self._apply(ps, proj, w, dw, dt, r_pre=r_pre, r_post=r_post)


PLASTICITY_RULES: dict[str, type[PlasticityRule]] = {"STDP": STDP, "BCM": BCM, "Oja": Oja}
