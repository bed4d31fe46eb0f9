"""Figures of spiking simulations: axes, colours, options, errors, PNGs written."""

from __future__ import annotations

import math
import struct

import matplotlib.colors as mcolors
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from bionn.spiking import SimulationResult, SpikeEvents
from bionn.viz import plot_bump, plot_raster, plot_rate_histogram, plot_voltage_traces
from bionn.viz._common import E_COLOR, I_COLOR

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_side: int = 100) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])
    assert width >= min_side and height >= min_side, (width, height)
    assert len(data) > 5_000  # more than a blank canvas


def poisson(n: int, p: float, steps: int = 2000, batch: int = 2, dt: float = 0.1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tr, st, ne = (torch.rand(batch, steps, n, generator=g) < p).nonzero().unbind(1)
    return SpikeEvents(tr, st, ne, n, steps, batch, dt)


def result() -> SimulationResult:
    g = torch.Generator().manual_seed(1)
    steps, dt = 2000, 0.1
    v = -65.0 + 15.0 * torch.rand(2, steps, 3, generator=g)
    return SimulationResult(
        dt=dt,
        duration=steps * dt,
        spikes={"E": poisson(80, 0.003, seed=2), "I": poisson(20, 0.006, seed=3)},
        traces={"E.V": v},
        trace_times=(torch.arange(steps, dtype=torch.float64) + 1) * dt,
        recorded_neurons={"E": torch.tensor([3, 5, 7])},
    )


def same_color(a, b) -> bool:
    return mcolors.to_rgba(a) == mcolors.to_rgba(b)


# --- raster ----------------------------------------------------------------------------------------


def test_raster_groups_rate_panel_and_png(tmp_path):
    res = result()
    fig = plot_raster(res.spikes, title="E/I", path=tmp_path / "raster.png")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    ax, ax_rate = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["E", "I"]
    assert ax.get_shared_x_axes().joined(ax, ax_rate)
    # E red at the bottom (rows 0..79), I blue above (80..99)
    e_line, i_line = ax.lines[:2]
    assert same_color(e_line.get_color(), E_COLOR) and same_color(i_line.get_color(), I_COLOR)
    assert e_line.get_ydata().max() < 80 <= i_line.get_ydata().min()
    assert i_line.get_ydata().max() < 100
    # trial 0 only
    sp = res.spikes["E"]
    assert len(e_line.get_xdata()) == int((sp.trial == 0).sum())
    # the rate panel: one line per group, colours matching, in Hz
    rate_lines = ax_rate.lines
    assert len(rate_lines) == 2
    assert same_color(rate_lines[0].get_color(), E_COLOR)
    assert np.mean(rate_lines[1].get_ydata()) == pytest.approx(60.0, rel=0.2)  # p 0.006 per 0.1 ms
    assert_png(tmp_path / "raster.png")


def test_raster_options():
    res = result()
    fig = plot_raster(res, population_rate=False, max_neurons=10, t_range=(50, 150), trial=1,
                      colors={"E": "green"})
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_xlim() == (50.0, 150.0)
    e_line = ax.lines[0]
    assert same_color(e_line.get_color(), "green")
    assert e_line.get_ydata().max() < 10 <= ax.lines[1].get_ydata().min()
    x = e_line.get_xdata()
    assert x.size and x.min() >= 50 and x.max() <= 150
    # a single SpikeEvents without a name, and one without any spike
    z = torch.zeros(0, dtype=torch.long)
    assert len(plot_raster(SpikeEvents(z, z, z, 5, 100, 1, 0.1)).axes) == 2
    assert len(plot_raster(res.spikes["I"]).axes) == 2


def test_raster_errors():
    res = result()
    with pytest.raises(IndexError):
        plot_raster(res, trial=2)
    with pytest.raises(TypeError):
        plot_raster([res.spikes["E"]])
    with pytest.raises(ValueError, match="t_range"):
        plot_raster(res, t_range=(10, 5))


# --- voltage traces --------------------------------------------------------------------------------


def test_voltage_traces_from_result(tmp_path):
    res = result()
    fig = plot_voltage_traces(res, "E", neurons=[5, 7], path=tmp_path / "v.png")
    assert len(fig.axes) == 2
    # the trace of neuron 5 is column 1 of the recorded (3, 5, 7), trial 0
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), res.traces["E.V"][0, :, 1].numpy())
    # spike ticks of neuron 5 in trial 0
    sp = res.spikes["E"]
    n_spk = int(((sp.neuron == 5) & (sp.trial == 0)).sum())
    assert len(fig.axes[0].collections[0].get_segments()) == n_spk
    assert fig.axes[0].get_ylabel() == "V (mV)"
    assert_png(tmp_path / "v.png")
    # group inferred; default neurons = all 3 recorded; no spikes marked
    fig = plot_voltage_traces(res, spikes=False, trial=1)
    assert len(fig.axes) == 3 and not fig.axes[0].collections


def test_voltage_traces_from_arrays_and_errors():
    t = np.arange(1, 201) * 0.5
    v = np.random.default_rng(0).normal(-60, 2, size=(200, 6))
    fig = plot_voltage_traces((t, v), "I", neurons=[0, 3, 5], t_range=(10, 50))
    assert len(fig.axes) == 3
    assert fig.axes[0].get_xlim() == (10.0, 50.0)
    assert same_color(fig.axes[0].lines[0].get_color(), I_COLOR)
    res = result()
    with pytest.raises(ValueError, match="not recorded"):
        plot_voltage_traces(res, "E", neurons=[4])
    with pytest.raises(ValueError, match="no trace"):
        plot_voltage_traces(res, "I")
    with pytest.raises(ValueError, match="traces must be"):
        plot_voltage_traces((t[:10], v), "E")


# --- bump ------------------------------------------------------------------------------------------


def test_bump_heatmap_with_wrapping_stimulus(tmp_path):
    x = torch.linspace(-math.pi, math.pi, 129)[:-1]
    t = torch.arange(0.0, 60.0, 0.5)
    z = torch.where(t < 20, 0.0, torch.where(t < 40, (t - 20) * 0.4, 8.0))  # moves past +pi
    d = torch.remainder(x[None] - z[:, None] + math.pi, 2 * math.pi) - math.pi
    u = torch.exp(-(d**2) / 0.5)
    fig = plot_bump(t, x, u, stimulus=z, period=2 * math.pi, title="tracking",
                    path=tmp_path / "bump.png")
    assert len(fig.axes) == 2  # heat map + colour bar
    ax = fig.axes[0]
    assert len(ax.collections) == 1
    y = ax.lines[0].get_ydata()
    assert np.isnan(y).sum() == 1  # broken once where it wraps from +pi to -pi
    finite = y[np.isfinite(y)]
    assert finite.min() >= -math.pi - 1e-6 and finite.max() < math.pi + 1e-6
    assert_png(tmp_path / "bump.png")
    assert len(plot_bump(t.numpy(), x.numpy(), u.numpy()).axes) == 2
    with pytest.raises(ValueError, match="activity must be"):
        plot_bump(t, x, u.T)


# --- rate histogram --------------------------------------------------------------------------------


def test_rate_histogram(tmp_path):
    rng = np.random.default_rng(0)
    rates = {"E": rng.gamma(4.0, 5.0, 400), "I": torch.tensor(rng.gamma(4.0, 10.0, 100))}
    fig = plot_rate_histogram(rates, bins=20, path=tmp_path / "hist.png")
    assert len(fig.axes) == 1
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts[0].startswith("E: mean") and "(n=400)" in texts[0]
    assert f"{rates['E'].mean():.3g}" in texts[0]
    assert_png(tmp_path / "hist.png")
    # a single array of any shape, NaN dropped
    r = rng.gamma(2.0, 10.0, (3, 50))
    r[0, 0] = np.nan
    fig = plot_rate_histogram(r)
    assert "(n=149)" in fig.axes[0].get_legend().get_texts()[0].get_text()
    assert len(plot_rate_histogram(np.full(10, 5.0)).axes) == 1  # all equal
    with pytest.raises(ValueError, match="no finite"):
        plot_rate_histogram(np.array([np.nan]))
