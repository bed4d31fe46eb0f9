"""Spiking and rate neuron models with BrainPy-Models' equations and defaults.

Defaults are those of ``bpmodels`` 0.2.3 (see ``docs/spiking.md`` for where
later BrainPy versions differ and which parameter selects their behaviour).
Every model takes ``(batch, n)`` state tensors and a :class:`Drive`.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from bionn.functional.spiking import lif_exact_step
from bionn.spiking.base import Drive, NeuronGroup, State, tensor_key


class LIF(NeuronGroup):
    """Leaky integrate-and-fire neuron.

    ``tau dV/dt = -(V - V_rest) + R I``; at ``V >= V_th``: spike, ``V <- V_reset``
    and V is held for ``t_refractory`` ms. Defaults from bpmodels 0.2.3
    (``t_refractory = 5``; BrainPy 2.x uses 0, brainmodels 1.0 uses 1).
    The equation is linear, so the default ``exp_euler`` update is exact.

    Example:
        >>> import torch
        >>> lif = LIF(2)
        >>> s = lif.init_state(batch=1)
        >>> for _ in range(300):
        ...     s = lif(s, Drive(current=torch.tensor([[25.0, 0.0]])), 0.1)
        >>> s["V"].shape, bool(s["V"][0, 1] == 0.0)
        (torch.Size([1, 2]), True)
    """

    variables = ("V",)
    defaults: ClassVar[dict[str, float]] = {
        "V_rest": 0.0, "V_reset": -5.0, "V_th": 20.0, "R": 1.0, "tau": 10.0, "t_refractory": 5.0,
    }
    initial_values: ClassVar[dict] = {"V": "V_rest"}
    default_method = "exp_euler"
    methods = ("exp_euler", "exact", "euler", "rk2", "heun", "rk4")
    has_refractory = True

    def derivatives(self, state: State, drive: Drive) -> State:
        v = state["V"]
        return {"V": (-(v - self.V_rest) + self.R * drive.at(v)) / self.tau}

    def linear(self, state: State, drive: Drive) -> State:
        return {"V": -(1.0 + self.R * drive.conductance) / self.tau + torch.zeros_like(state["V"])}

    def integrate(self, state: State, drive: Drive, dt: float) -> State:
        if self.method not in ("exp_euler", "exact"):
            return super().integrate(state, drive, dt)
        # Exact for a drive constant over the step: relax to V_inf at rate (1 + R g) / tau.
        v = state["V"]
        g = drive.conductance
        if isinstance(g, float) and g == 0.0:
            v_inf = self.V_rest + self.R * drive.current
            decay = torch.exp(-dt / self.tau)
        else:
            leak = 1.0 + self.R * g
            v_inf = (self.V_rest + self.R * drive.current) / leak
            decay = torch.exp(-dt / self.tau * leak)
        new = dict(state)
        new["V"] = v_inf + (v - v_inf) * decay
        return new

    def spike_and_reset(self, old: State, new: State, dt: float) -> State:
        return self.threshold_reset(old, new, dt, v_th=self.V_th, v_reset=self.V_reset,
                                    t_ref=self.t_refractory)

    def forward(self, state: State, drive: Drive, dt: float) -> State:
        consts = self._fast_constants(dt)
        if consts is None:
            return super().forward(state, drive, dt)
        v, ref, spike = lif_exact_step(state["V"], state["refractory"], drive.current,
                                       drive.conductance, dt=dt, **consts)
        return {**state, "V": v, "refractory": ref, "spike": spike}

    def _fast_constants(self, dt: float) -> dict | None:
        """Python-float parameters for the fused exact step (None: use the generic path)."""
        if self.method not in ("exp_euler", "exact"):
            return None
        names = ("V_rest", "V_reset", "V_th", "R", "tau", "t_refractory")
        tensors = [getattr(self, k) for k in names]
        key = (dt,) + tuple(tensor_key(t) for t in tensors)
        cached = self.__dict__.get("_fast_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        if any(t.numel() != 1 for t in tensors):
            consts = None
        else:
            v_rest, v_reset, v_th, r, tau, t_ref = (float(t) for t in tensors)
            consts = {"v_rest": v_rest, "v_reset": v_reset, "v_th": v_th, "r": r, "tau": tau,
                      "refractory_steps": int(round(t_ref / dt))}
        self.__dict__["_fast_cache"] = (key, consts)
        return consts


NEURONS: dict[str, type[NeuronGroup]] = {
    "LIF": LIF,
}
