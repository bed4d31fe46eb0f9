"""Spiking measures against synthetic spike trains with known answers, and dense re-computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from bionn.spiking import SimulationResult, SpikeEvents
from bionn.spiking.measures import (
    fano_factor,
    isi_cv,
    mean_rate,
    neuron_rates,
    population_rate,
    power_spectrum,
    spectrum_peak,
    summarize,
    synchrony,
)


def events(raster: torch.Tensor, dt: float, shuffle: bool = True) -> SpikeEvents:
    """SpikeEvents of a ``(batch, steps, neurons)`` boolean raster, in scrambled order."""
    b, t, n = raster.shape
    idx = raster.nonzero()
    if shuffle and idx.shape[0] > 1:
        idx = idx[torch.randperm(idx.shape[0], generator=torch.Generator().manual_seed(1))]
    return SpikeEvents(idx[:, 0], idx[:, 1], idx[:, 2], n, t, b, dt)


def poisson(rate_hz, n=400, steps=4000, dt=0.5, batch=1, seed=0) -> SpikeEvents:
    g = torch.Generator().manual_seed(seed)
    p = torch.as_tensor(rate_hz, dtype=torch.float64) * dt * 1e-3
    return events(torch.rand(batch, steps, n, generator=g, dtype=torch.float64) < p, dt)


def clock(period_ms, n=50, steps=2000, dt=1.0, batch=1, phases=None, jitter=0.0, seed=0):
    """Every neuron spikes every ``period_ms``; per-neuron phase offsets (ms), optional jitter."""
    g = torch.Generator().manual_seed(seed)
    raster = torch.zeros(batch, steps, n, dtype=torch.bool)
    phases = torch.zeros(n) if phases is None else torch.as_tensor(phases, dtype=torch.float64)
    for b in range(batch):
        for i in range(n):
            t = torch.arange(float(phases[i]), steps * dt, period_ms, dtype=torch.float64)
            if jitter:
                t = t + jitter * torch.randn(t.shape, generator=g, dtype=torch.float64)
            s = (t / dt).round().long().clamp(0, steps - 1)
            raster[b, s, i] = True
    return events(raster, dt)


def empty(n=10, steps=1000, batch=2, dt=0.1) -> SpikeEvents:
    z = torch.zeros(0, dtype=torch.long)
    return SpikeEvents(z, z, z, n, steps, batch, dt)


# --- rates ---------------------------------------------------------------------------------------


def test_rates_exact_for_hand_built_events():
    # 2 trials, 3 neurons, 200 steps of 0.5 ms = 100 ms
    trial = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    step = torch.tensor([9, 59, 119, 199, 0, 39, 40])  # times 5, 30, 60, 100 | 0.5, 20, 20.5 ms
    neuron = torch.tensor([0, 0, 1, 2, 2, 2, 2])
    sp = SpikeEvents(trial, step, neuron, 3, 200, 2, 0.5)
    assert neuron_rates(sp).tolist() == [[20.0, 10.0, 10.0], [0.0, 0.0, 30.0]]
    assert mean_rate(sp) == pytest.approx(7 / (3 * 2 * 0.1))
    # (20, 60] ms: steps 40..119 -> trial 0: neuron 0 @30, neuron 1 @60; trial 1: neuron 2 @20.5
    assert neuron_rates(sp, t_start=20.0, t_stop=60.0).tolist() == [
        [25.0, 25.0, 0.0],
        [0.0, 0.0, 25.0],
    ]
    assert mean_rate(sp, t_start=20.0, t_stop=60.0) == pytest.approx(3 / (3 * 2 * 0.04))


def test_population_rate_raw_smoothed_and_per_trial():
    # trial 0: 1 spike per step among 10 neurons -> 100 Hz per neuron at dt 1 ms; trial 1 silent
    st = torch.arange(100)
    sp = SpikeEvents(torch.zeros(100, dtype=torch.long), st, st % 10, 10, 100, 2, 1.0)
    t, r = population_rate(sp, width=0, trial=0)
    assert t.tolist() == [float(i + 1) for i in range(100)]
    assert torch.equal(r, torch.full((100,), 100.0, dtype=torch.float64))
    _, r1 = population_rate(sp, width=0, trial=1)
    assert torch.equal(r1, torch.zeros(100, dtype=torch.float64))
    _, rm = population_rate(sp, width=0)  # mean over trials
    assert torch.allclose(rm, torch.full((100,), 50.0, dtype=torch.float64))
    # a constant rate stays constant under either kernel, edges included
    for window in ("gaussian", "flat"):
        _, rs = population_rate(sp, width=5.0, window=window, trial=0)
        assert torch.allclose(rs, torch.full((100,), 100.0, dtype=torch.float64), atol=1e-9)


def test_population_rate_smoothing_conserves_spikes_and_has_the_width():
    sp = SpikeEvents(torch.tensor([0]), torch.tensor([499]), torch.tensor([0]), 4, 1000, 1, 0.1)
    for window, width in (("gaussian", 2.0), ("flat", 4.0)):
        t, r = population_rate(sp, width=width, window=window)
        # integral of the rate (Hz * ms / 1000) = spikes per neuron = 1/4
        assert float(r.sum()) * 0.1e-3 == pytest.approx(0.25, rel=1e-9)
        centre = float((t * r).sum() / r.sum())
        assert centre == pytest.approx(50.0, abs=1e-9)
        spread = float(((t - centre) ** 2 * r).sum() / r.sum()) ** 0.5
        expected = width if window == "gaussian" else 4.1 / math.sqrt(12)  # 41 samples of 0.1 ms
        assert spread == pytest.approx(expected, rel=0.02)
    with pytest.raises(ValueError, match="window"):
        population_rate(sp, window="hann")


def test_poisson_rates_match_the_set_rates():
    rates = torch.linspace(5.0, 40.0, 400, dtype=torch.float64)
    sp = poisson(rates, batch=2)  # 2 s, 2 trials
    assert mean_rate(sp) == pytest.approx(float(rates.mean()), rel=0.03)
    est = neuron_rates(sp).mean(0)
    slope = float((est * rates).sum() / (rates * rates).sum())
    assert slope == pytest.approx(1.0, abs=0.03)
    dense = sp.dense().to(torch.float64).sum(1) / (sp.n_steps * sp.dt * 1e-3)
    assert torch.allclose(neuron_rates(sp), dense)


# --- irregularity and variability ----------------------------------------------------------------


def test_poisson_cv_fano_about_one_synchrony_about_zero():
    sp = poisson(20.0, n=400, steps=4000, dt=0.5, batch=2)  # 2 s x 2 trials, ~80 spikes/neuron
    cv, mean_cv = isi_cv(sp)
    assert cv.shape == (400,)
    assert not torch.isnan(cv).any()
    assert 0.93 < mean_cv < 1.05
    ff, mean_ff = fano_factor(sp, window=100.0)
    assert ff.shape == (400,)
    assert 0.92 < mean_ff < 1.08
    chi = synchrony(sp, bin=5.0)
    assert chi < 0.1  # ~ 1/sqrt(400)
    assert chi == pytest.approx(1 / math.sqrt(400), abs=0.03)


def test_regular_trains_have_zero_cv_and_fano_and_staggered_phases_zero_synchrony():
    # 50 neurons at 40 Hz, phases spread evenly over the 25 ms period (dt 1 ms)
    sp = clock(25.0, n=50, steps=2000, phases=torch.arange(50) % 25)
    cv, mean_cv = isi_cv(sp)
    assert torch.all(cv == 0.0) and mean_cv == 0.0
    ff, mean_ff = fano_factor(sp, window=100.0)
    assert torch.all(ff == 0.0) and mean_ff == 0.0
    assert mean_rate(sp) == pytest.approx(40.0)
    # every 5 ms bin holds exactly 10 spikes: the population signal is flat
    assert synchrony(sp, bin=5.0) == pytest.approx(0.0, abs=1e-9)


def test_isi_cv_matches_numpy_and_ignores_cross_trial_intervals():
    sp = poisson(torch.linspace(2.0, 60.0, 30), n=30, steps=3000, dt=0.5, batch=3, seed=3)
    cv, mean_cv = isi_cv(sp, min_spikes=5)
    times, tr, ne = sp.times.numpy(), sp.trial.numpy(), sp.neuron.numpy()
    for i in range(30):
        isis = np.concatenate([np.diff(np.sort(times[(ne == i) & (tr == b)])) for b in range(3)])
        if isis.size >= 4:
            assert float(cv[i]) == pytest.approx(isis.std(ddof=1) / isis.mean(), rel=1e-9)
        else:
            assert math.isnan(float(cv[i]))
    assert mean_cv == pytest.approx(float(cv[~cv.isnan()].mean()))
    # one interval in trial 0, none in trial 1: not enough (no interval spans the trials)
    sp2 = SpikeEvents(torch.tensor([0, 0, 1]), torch.tensor([5, 9, 1]),
                      torch.tensor([0, 0, 0]), 1, 20, 2, 1.0)
    assert math.isnan(isi_cv(sp2)[1])
    sp3 = SpikeEvents(torch.tensor([0, 0, 1, 1]), torch.tensor([5, 9, 1, 4]),
                      torch.tensor([0, 0, 0, 0]), 1, 20, 2, 1.0)
    cv3, _ = isi_cv(sp3)  # intervals 4 and 3; a 5 -> 1 "interval" across trials would break this
    assert float(cv3[0]) == pytest.approx(np.std([4.0, 3.0], ddof=1) / 3.5)
    with pytest.raises(ValueError, match="min_spikes"):
        isi_cv(sp, min_spikes=2)


def test_fano_factor_matches_numpy_dense_counts():
    sp = poisson(torch.linspace(1.0, 50.0, 40), n=40, steps=2500, dt=0.4, batch=2, seed=5)
    ff, _ = fano_factor(sp, window=50.0, t_start=10.0)  # (10, 1000] ms -> 19 full windows + rest
    d = sp.dense().numpy()[:, 25:, :]  # steps 25.. -> times > 10 ms
    w = 125
    k = d.shape[1] // w
    counts = d[:, : k * w].reshape(2, k, w, 40).sum(2).reshape(2 * k, 40).astype(float)
    mean = counts.mean(0)
    expect = np.where(mean > 0, counts.var(0, ddof=1) / np.where(mean > 0, mean, 1), np.nan)
    np.testing.assert_allclose(ff.numpy(), expect, rtol=1e-9)


def test_synchrony_matches_dense_golomb_chi_on_correlated_trains():
    # common-input trains: each neuron copies a shared Poisson train with prob 0.5 plus own spikes
    g = torch.Generator().manual_seed(7)
    shared = torch.rand(2, 4000, 1, generator=g) < 0.01
    own = torch.rand(2, 4000, 60, generator=g) < 0.01
    copy = torch.rand(2, 4000, 60, generator=g) < 0.5
    raster = (shared & copy) | own
    sp = events(raster, 0.25)
    chi = synchrony(sp, bin=2.0)
    x = raster.numpy().reshape(2, 500, 8, 60).sum(2).astype(float)  # 2 ms bins of 8 steps
    chis = [np.sqrt(x[b].mean(1).var() / x[b].var(0).mean()) for b in range(2)]
    assert chi == pytest.approx(float(np.mean(chis)), rel=1e-9)
    assert 0.3 < chi < 0.9


def test_fully_synchronous_40hz_population():
    sp = clock(25.0, n=100, steps=10000, dt=0.1)  # 1 s, all neurons together every 25 ms
    assert synchrony(sp) == pytest.approx(1.0, abs=1e-9)
    freq, power = spectrum_peak(sp)
    assert freq == pytest.approx(40.0, abs=1.0)  # resolution 1 Hz
    assert power > 0
    # the same with jitter, a transient to skip and a resolution that is not a divisor of 40
    # volleys mid-bin (phase 2.5 ms) so that 1 ms jitter rarely crosses a 5 ms bin edge
    sp_j = clock(25.0, n=100, steps=10000, dt=0.1, jitter=1.0, batch=2, seed=2,
                 phases=torch.full((100,), 2.5))
    f_j, _ = spectrum_peak(sp_j, t_start=130.0)  # 870 ms -> resolution 1.15 Hz
    assert abs(f_j - 40.0) <= 1000 / 870
    assert 0.85 < synchrony(sp_j, bin=5.0) < 1.0
    assert synchrony(sp_j, bin=1.0) < synchrony(sp_j, bin=5.0)  # 1 ms jitter > 1 ms bins


def test_spectrum_averages_power_over_trials_not_rates():
    # two trials at 40 Hz in antiphase: the trial-averaged *rate* would oscillate at 80 Hz
    a = clock(25.0, n=20, steps=1000, dt=1.0)
    b = clock(25.0, n=20, steps=1000, dt=1.0, phases=torch.full((20,), 12.5))
    sp = SpikeEvents(
        torch.cat([a.trial, b.trial + 1]), torch.cat([a.step, b.step]),
        torch.cat([a.neuron, b.neuron]), 20, 1000, 2, 1.0,
    )
    assert spectrum_peak(sp)[0] == pytest.approx(40.0)
    f, psd = power_spectrum(sp, trial=1)
    assert float(f[psd.argmax()]) == pytest.approx(40.0)
    # Welch segments of 200 ms: 5 Hz resolution
    fw, _ = power_spectrum(sp, segment=200.0)
    assert float(fw[1]) == pytest.approx(5.0)
    assert spectrum_peak(sp, segment=200.0)[0] == pytest.approx(40.0)


def test_spectrum_density_scaling_parseval():
    # one-sided density integrates to the variance of the (Hann-windowed, normalised) signal:
    # for white noise the mean PSD level is var / (fs / 2)
    sp = poisson(50.0, n=20, steps=20000, dt=0.5, seed=11)
    f, psd = power_spectrum(sp, width=0.0)
    _, r = population_rate(sp, width=0.0)
    fs = 1000.0 / 0.5
    level = float(r.var()) / (fs / 2)
    assert float(psd[1:-1].mean()) == pytest.approx(level, rel=0.05)


def test_spectrum_peak_range_error():
    sp = clock(25.0, n=5, steps=100, dt=1.0)  # 100 ms: 10 Hz resolution
    with pytest.raises(ValueError, match="no frequency"):
        spectrum_peak(sp, fmin=1.0, fmax=5.0)


# --- no spikes, windows, summaries ---------------------------------------------------------------


def test_no_spikes_is_graceful():
    sp = empty()
    assert mean_rate(sp) == 0.0
    assert torch.equal(neuron_rates(sp), torch.zeros(2, 10, dtype=torch.float64))
    _, r = population_rate(sp)
    assert torch.equal(r, torch.zeros(1000, dtype=torch.float64))
    cv, m = isi_cv(sp)
    assert torch.isnan(cv).all() and math.isnan(m)
    ff, m = fano_factor(sp, window=10.0)
    assert torch.isnan(ff).all() and math.isnan(m)
    assert math.isnan(synchrony(sp))
    f, p = spectrum_peak(sp)
    assert math.isnan(f) and p == 0.0
    s = summarize(sp)
    assert s["mean_rate_hz"] == 0.0 and s["n_spikes"] == 0 and s["active_fraction"] == 0.0
    for key in ("isi_cv", "fano_factor", "synchrony", "peak_hz"):
        assert s[key] is None
    json.dumps(s, allow_nan=False)


def test_empty_window_raises():
    sp = clock(25.0, n=5, steps=100, dt=1.0)
    with pytest.raises(ValueError, match="empty analysis window"):
        mean_rate(sp, t_start=100.0)
    with pytest.raises(ValueError, match="empty analysis window"):
        summarize(sp, t_start=50.0, t_stop=40.0)


def test_summarize_result_skips_the_transient():
    # 0-100 ms: every neuron bursts at 500 Hz; then regular 20 Hz, staggered
    n, dt, steps = 40, 0.5, 4000
    raster = torch.zeros(1, steps, n, dtype=torch.bool)
    raster[0, 0:200:4, :] = True
    for i in range(n):
        raster[0, 200 + 2 * i :: 100, i] = True  # period 50 ms, phases 1 ms apart
    e = events(raster, dt)
    i_ev = poisson(10.0, n=10, steps=steps, dt=dt, seed=4)
    res = SimulationResult(dt=dt, duration=steps * dt, spikes={"E": e, "I": i_ev})
    out = summarize(res, t_start=100.0)
    assert set(out) == {"E", "I"}
    s = out["E"]
    assert s["t_start_ms"] == 100.0 and s["t_stop_ms"] == 2000.0
    assert s["mean_rate_hz"] == pytest.approx(20.0)
    assert s["isi_cv"] == 0.0 and s["fano_factor"] == 0.0
    assert s["n_neurons"] == 40 and s["n_trials"] == 1 and s["active_fraction"] == 1.0
    assert s["peak_hz"] == pytest.approx(20.0, abs=1000 / 1900)
    with_transient = summarize({"E": e})["E"]
    assert with_transient["mean_rate_hz"] == pytest.approx((50 + 38) / 2.0)
    assert all(isinstance(v, (int, float)) or v is None for v in s.values())
    json.dumps(out, allow_nan=False)
    assert out["I"]["mean_rate_hz"] == pytest.approx(10.0, rel=0.15)
    with pytest.raises(TypeError):
        summarize([e])
