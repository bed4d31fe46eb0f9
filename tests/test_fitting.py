"""bionn.analysis.fitting: metrics on hand-computed examples, Recording layouts and loaders,
fit (BPTT, FORCE, full-FORCE) against a teacher network, CURBD on a three-region teacher."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bionn import CTRNN
from bionn._core import ConfigError
from bionn.analysis.fitting import (
    ForceNetwork,
    Recording,
    co_smoothing_bits_per_spike,
    curbd,
    fit,
    load_recording,
    pvar,
    r2_per_neuron,
    region_currents,
    save_recording,
)
from bionn.recurrent import RateState


# --------------------------------------------------------------------------- metrics
def test_pvar_of_target_is_one_and_of_neuron_mean_is_zero():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(4, 30, 5, generator=g) + torch.arange(5.0)
    assert pvar(y, y) == 1.0
    mean = y.reshape(-1, 5).mean(0).expand_as(y)
    assert abs(pvar(mean, y)) < 1e-12
    # pooled over neurons: SSE / SS summed over every neuron, trial and time
    pred = y + 0.5 * torch.randn(y.shape, generator=g)
    y64, p64 = y.double(), pred.double()
    ss = ((y64 - y64.reshape(-1, 5).mean(0)) ** 2).sum()
    assert math.isclose(pvar(pred, y), 1 - float(((y64 - p64) ** 2).sum() / ss), rel_tol=1e-12)
    # Perich's CURBD code: 1 - (||A - R||_F / (sqrt(N T) std(A)))^2, std around the grand mean
    a, r = y64.reshape(-1, 5), p64.reshape(-1, 5)
    perich = 1 - (float(torch.linalg.norm(a - r)) / (math.sqrt(a.numel()) * float(a.std(unbiased=False)))) ** 2
    assert math.isclose(pvar(pred, y, center="all"), perich, rel_tol=1e-12)
    assert pvar(np.asarray(pred), np.asarray(y)) == pvar(pred, y)  # numpy accepted


def test_r2_per_neuron_by_hand():
    y = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]])
    pred = torch.tensor([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]])  # neuron 1 predicted by its mean
    assert r2_per_neuron(pred, y).tolist() == [1.0, 0.0]
    pred2 = torch.tensor([[2.0, 0.0], [3.0, 2.0], [4.0, 4.0]])  # SSE 2 of SS 8
    assert r2_per_neuron(pred2, y)[0].item() == pytest.approx(0.75)


def test_metrics_refuse_bad_arguments():
    with pytest.raises(ValueError, match="pred has shape .* target has shape"):
        pvar(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="target does not vary"):
        pvar(torch.zeros(3, 2), torch.ones(3, 2))
    with pytest.raises(ValueError, match="center"):
        pvar(torch.zeros(3, 2), torch.rand(3, 2), center="time")
    with pytest.raises(ValueError, match="pred_rates must be non-negative"):
        co_smoothing_bits_per_spike(-torch.ones(3, 2), torch.ones(3, 2), 10.0)
    with pytest.raises(ValueError, match="spikes must be non-negative integer"):
        co_smoothing_bits_per_spike(torch.ones(3, 2), torch.full((3, 2), 0.5), 10.0)
    with pytest.raises(ValueError, match="dt must be"):
        co_smoothing_bits_per_spike(torch.ones(3, 2), torch.ones(3, 2), 0)
    with pytest.raises(ValueError, match="target holds NaN"):
        pvar(torch.zeros(2, 1), torch.tensor([[1.0], [math.nan]]))


def test_bits_per_spike_by_hand_and_true_rates_beat_mean_rate():
    # one neuron, two bins of 10 ms with counts 0 and 2: null mean count 1 per bin
    s = torch.tensor([[0.0], [2.0]], dtype=torch.float64)
    lam = torch.tensor([[0.5], [1.5]], dtype=torch.float64)  # expected counts per bin -> rates in Hz = lam * 100
    ll = lambda lm: float((s * lm.log() - lm - torch.lgamma(s + 1)).sum())  # noqa: E731
    want = (ll(lam) - ll(torch.ones_like(s))) / (2 * math.log(2))
    got = co_smoothing_bits_per_spike(lam * 100.0, s, 10.0)
    assert got == pytest.approx(want, rel=1e-12) and got > 0
    # Poisson spikes from known rates: the true rates score > 0, each neuron's mean rate 0
    g = torch.Generator().manual_seed(1)
    t = torch.linspace(0, 6.28, 200)
    hz = 40 * (1 + torch.sin(t[None, :, None] + torch.arange(6.0))) + 1  # (1, 200, 6) Hz
    hz = hz.expand(30, -1, -1)
    spikes = torch.poisson(hz * 0.005, generator=g)  # dt = 5 ms
    assert co_smoothing_bits_per_spike(hz, spikes, 5.0) > 0.2
    mean_hz = spikes.reshape(-1, 6).mean(0) * 1000 / 5.0
    assert co_smoothing_bits_per_spike(mean_hz.expand_as(spikes), spikes, 5.0) == pytest.approx(0, abs=1e-12)
    # held-out neurons only
    both = co_smoothing_bits_per_spike(hz, spikes, 5.0, neurons=[0, 3])
    assert both == pytest.approx(co_smoothing_bits_per_spike(hz[..., [0, 3]], spikes[..., [0, 3]], 5.0))


# --------------------------------------------------------------------------- data
def test_recording_layouts_convert_to_batch_first():
    a = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # neurons x time x trials
    rec = Recording(a, dt=10, layout="neurons x time x trials")
    assert rec.data.shape == (3, 5, 2) and (rec.n_trials, rec.n_time, rec.n_neurons) == (3, 5, 2)
    assert torch.equal(rec.data[1, 4, 0], a[0, 4, 1])
    one = Recording(a[:, :, 0], dt=10, layout="neurons time")  # one trial
    assert one.data.shape == (1, 5, 2) and torch.equal(one.data[0], a[:, :, 0].T)
    inp = torch.zeros(4, 5, 3)  # inputs in the same layout: channels x time x trials
    rec = Recording(a, 10, inputs=inp, layout=("neurons", "time", "trials"))
    assert rec.inputs.shape == (3, 5, 4) and rec.n_input == 4
    avg = rec.trial_average()
    assert avg.n_trials == 1 and torch.allclose(avg.data[0], rec.data.mean(0))
    assert rec.trials([2, 0]).data.shape == (2, 5, 2)
    assert rec.input_sequence(4) is rec.inputs
    assert Recording(a, 10, layout="neurons time trials").input_sequence(7).shape == (3, 5, 7)


def test_recording_refuses_bad_arguments():
    with pytest.raises(ValueError, match="data has 3 axes .* layout 'neurons time' names 2"):
        Recording(torch.zeros(2, 3, 4), 10, layout="neurons time")
    with pytest.raises(ValueError, match="layout must name"):
        Recording(torch.zeros(2, 3, 4), 10, layout="cells time trials")
    with pytest.raises(ValueError, match="data has 2 axes"):
        Recording(torch.zeros(2, 3), 10)
    with pytest.raises(ValueError, match="dt must be"):
        Recording(torch.zeros(2, 3, 4), -1)
    with pytest.raises(ValueError, match="kind must be"):
        Recording(torch.zeros(2, 3, 4), 10, kind="spikes")
    with pytest.raises(ValueError, match="kind='counts' needs non-negative integer"):
        Recording(torch.full((2, 3, 4), 0.5), 10, kind="counts")
    with pytest.raises(ValueError, match="inputs has"):
        Recording(torch.zeros(2, 3, 4), 10, inputs=torch.zeros(2, 5, 1))
    with pytest.raises(ValueError, match="data holds NaN"):
        Recording(torch.full((2, 3, 4), math.nan), 10)
    with pytest.raises(ValueError, match="regions has 1 labels for 4"):
        Recording(torch.zeros(2, 3, 4), 10, regions=["a"])
    with pytest.raises(ValueError, match="recording.inputs has 1 channels"):
        Recording(torch.zeros(2, 3, 4), 10, inputs=torch.zeros(2, 3, 1)).input_sequence(2)


def test_npy_npz_h5_round_trips(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = torch.rand(3, 7, 4, generator=g)  # bionn layout
    inputs = torch.rand(3, 7, 2, generator=g)
    rec = Recording(data, 5.0, inputs=inputs, regions=["a", "a", "b", "b"])
    for name in ("r.npz", "r.h5"):
        back = load_recording(save_recording(tmp_path / name, rec))
        assert torch.equal(back.data, rec.data) and torch.equal(back.inputs, rec.inputs)
        assert back.dt == 5.0 and back.kind == "rates" and back.regions == ("a", "a", "b", "b")
    # the issue's layout: neurons x time x trials, in a .npy (dt given) and an .npz with its layout
    issue = data.permute(2, 1, 0).numpy()
    np.save(tmp_path / "n.npy", issue)
    assert torch.allclose(load_recording(tmp_path / "n.npy", dt=5, layout="neurons time trials").data, data)
    np.savez(tmp_path / "c.npz", counts=np.ones((4, 7, 3)), dt=2.0, layout="neurons x time x trials")
    c = load_recording(tmp_path / "c.npz")
    assert c.kind == "counts" and c.data.shape == (3, 7, 4) and c.dt == 2.0
    import h5py

    with h5py.File(tmp_path / "a.hdf5", "w") as f:
        f.create_dataset("rates", data=issue)
        f.attrs["dt"] = 5.0
        f.attrs["layout"] = "neurons time trials"
    back = load_recording(tmp_path / "a.hdf5")
    assert torch.allclose(back.data, data) and back.inputs is None
    assert load_recording(tmp_path / "a.hdf5", dt=1.0).dt == 1.0  # arguments override the file


def test_loaders_refuse_bad_files_naming_file_and_field(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 4)))
    with pytest.raises(ConfigError, match=r"x\.npy: dt: .*pass dt="):
        load_recording(tmp_path / "x.npy")
    np.savez(tmp_path / "nodata.npz", activity=np.zeros((2, 3, 4)), dt=1.0)
    with pytest.raises(ConfigError, match=r"nodata\.npz: data: missing.*activity"):
        load_recording(tmp_path / "nodata.npz")
    np.savez(tmp_path / "nodt.npz", data=np.zeros((2, 3, 4)))
    with pytest.raises(ConfigError, match=r"nodt\.npz: dt: missing"):
        load_recording(tmp_path / "nodt.npz")
    np.savez(tmp_path / "badlayout.npz", data=np.zeros((2, 3, 4)), dt=1.0, layout="a b c")
    with pytest.raises(ConfigError, match=r"badlayout\.npz: layout: layout must name"):
        load_recording(tmp_path / "badlayout.npz")
    np.savez(tmp_path / "badin.npz", data=np.zeros((2, 3, 4)), inputs=np.zeros((2, 9, 1)), dt=1.0)
    with pytest.raises(ConfigError, match=r"badin\.npz: inputs: inputs has"):
        load_recording(tmp_path / "badin.npz")
    np.savez(tmp_path / "strdt.npz", data=np.zeros((2, 3, 4)), dt="fast")
    with pytest.raises(ConfigError, match=r"strdt\.npz: dt: must be a number"):
        load_recording(tmp_path / "strdt.npz")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ConfigError, match=r"junk\.h5: not a readable HDF5"):
        load_recording(tmp_path / "junk.h5")
    (tmp_path / "r.mat").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"r\.mat: unknown recording format"):
        load_recording(tmp_path / "r.mat")
    with pytest.raises(ConfigError, match="no such file"):
        load_recording(tmp_path / "missing.npz")
    with pytest.raises(ConfigError, match=r"key\.npz: rates: not in the file"):
        np.savez(tmp_path / "key.npz", data=np.zeros((1, 2, 3)), dt=1.0)
        load_recording(tmp_path / "key.npz", key="rates")


def _write_nwb(path, trials, units):
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile

    nwb = NWBFile(session_description="test", identifier="bionn-test",
                  session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc))
    for spikes in units:
        nwb.add_unit(spike_times=spikes)
    for start, stop in trials:
        nwb.add_trial(start_time=start, stop_time=stop)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


def test_nwb_spike_times_binned_into_trials(tmp_path):
    pytest.importorskip("pynwb", reason="NWB reading needs pynwb (pip install 'bionn[fit]')")
    units = [[0.005, 0.012, 0.015, 1.031], [0.041, 1.002, 1.003, 1.004, 2.0]]
    _write_nwb(tmp_path / "s.nwb", [(0.0, 0.05), (1.0, 1.062)], units)  # the second trial is longer
    rec = load_recording(tmp_path / "s.nwb", dt=10.0)
    assert rec.kind == "counts" and rec.data.shape == (2, 5, 2)  # 5 whole bins of the shortest trial
    want = torch.zeros(2, 5, 2)
    want[0, 0, 0], want[0, 1, 0], want[1, 3, 0] = 1, 2, 1  # 5, 12+15, 1031 ms
    want[0, 4, 1], want[1, 0, 1] = 1, 3  # 41 ms; 1002-1004 ms (2.0 s lies after the trial)
    assert torch.equal(rec.data, want)
    assert torch.equal(load_recording(tmp_path / "s.nwb", dt=10.0, units=[1]).data, want[..., 1:])
    with pytest.raises(ConfigError, match=r"s\.nwb: dt: give the bin width"):
        load_recording(tmp_path / "s.nwb")
    with pytest.raises(ConfigError, match=r"s\.nwb: units: unit index 5 out of range"):
        load_recording(tmp_path / "s.nwb", dt=10.0, units=[5])
    _write_nwb(tmp_path / "notrials.nwb", [], units)
    with pytest.raises(ConfigError, match=r"notrials\.nwb: trials: .*no trials table"):
        load_recording(tmp_path / "notrials.nwb", dt=10.0)


# --------------------------------------------------------------------------- fit: the oracle
N_TEACHER, N_REC, HELD_OUT = 40, 15, (2, 6, 9, 13)
TRAIN = [i for i in range(16) if i not in HELD_OUT]


def _teacher_recording(seed: int = 0) -> tuple[Recording, torch.Tensor]:
    """A random tanh network (g = 1.2, 40 units, dt 10 ms, tau 50 ms) on 16 trials of a
    pulse of graded amplitude and a sine of varied amplitude; 15 of its units recorded."""
    gen = torch.Generator().manual_seed(seed)
    teacher = ForceNetwork(2, N_TEACHER, dt=10.0, tau=50.0, g=1.2, generator=gen)
    T, K = 60, 16
    x = torch.zeros(K, T, 2)
    x[:, 5:20, 0] = torch.linspace(-1, 1, K)[:, None] * 1.5
    x[:, :, 1] = torch.sin(torch.arange(K) * 2.4)[:, None] * torch.sin(2 * torch.pi * torch.arange(T) / 40)
    with torch.no_grad():
        rates = teacher(x)[1]
    recorded = torch.randperm(N_TEACHER, generator=gen)[:N_REC]
    return Recording(rates[..., recorded], 10.0, inputs=x), recorded


@pytest.mark.parametrize("method", ["bptt", "force", "full_force"])
def test_student_reproduces_teacher_on_held_out_trials(method):
    rec, _ = _teacher_recording()
    gen = torch.Generator().manual_seed(100)
    units = torch.arange(N_REC) * 2  # recorded neurons -> every other student unit
    if method == "bptt":
        student = CTRNN(2, 50, 1, dt=10, tau=50, activation="tanh", generator=gen)
        res = fit(student, rec, units, steps=150, lr=2e-2, train_trials=TRAIN)
    else:
        student = ForceNetwork(2, 100, dt=10, tau=50, g=1.5, generator=gen)
        res = fit(student, rec, units, method=method, steps=10, train_trials=TRAIN)
    assert res.test_trials.tolist() == list(HELD_OUT)
    assert res.model is student and res.prediction.shape == rec.data.shape
    assert res.curve[-1] < res.curve[0]
    assert res.pvar_train >= 0.95 and res.pvar_test >= 0.95, res.metrics
    with torch.no_grad():  # the fitted model itself, run free, gives the prediction
        free = student(rec.inputs)[1][..., units]
    assert pvar(free[list(HELD_OUT)], rec.data[list(HELD_OUT)]) == pytest.approx(res.pvar_test, abs=1e-5)


def test_fit_trial_average_without_inputs():
    """No task input (the model gets zeros): an autonomous teacher trajectory from a random
    state, 3 noisy repeats averaged; FORCE-type fits start the target units on the data."""
    gen = torch.Generator().manual_seed(5)
    teacher = ForceNetwork(1, 40, dt=10.0, tau=50.0, g=1.2, generator=gen)
    h0 = torch.randn(1, 40, generator=gen).expand(3, 40)
    with torch.no_grad():
        r = teacher(torch.zeros(3, 60, 1), RateState(h0, torch.tanh(h0)))[1][..., :15]
    avg = Recording(r + 0.05 * torch.randn(r.shape, generator=gen), 10.0).trial_average()
    assert avg.n_trials == 1 and avg.inputs is None
    student = ForceNetwork(1, 60, dt=10, tau=50, g=1.5, generator=torch.Generator().manual_seed(3))
    res = fit(student, avg, method="full_force", steps=10, initial_state="data")
    assert res.test_trials.numel() == 0 and res.pvar_test is None and res.pvar_train > 0.95
    assert res.units.tolist() == list(range(15))
    student = CTRNN(1, 40, 1, dt=10, tau=50, activation="tanh", learn_initial_state=True,
                    generator=torch.Generator().manual_seed(3))
    assert fit(student, avg, steps=100, lr=3e-2).pvar_train > 0.95


def test_fit_spike_counts_with_poisson_loss():
    g = torch.Generator().manual_seed(2)
    rec, _ = _teacher_recording()
    hz = 20 * (1 + rec.data)  # 0..40 Hz
    counts = Recording(torch.poisson(hz * 0.01, generator=g), 10.0, inputs=rec.inputs, kind="counts")
    student = CTRNN(2, 30, 1, dt=10, tau=50, activation="softplus", generator=g)
    res = fit(student, counts, loss="poisson", steps=60, lr=3e-2, rate_scale=20.0, train_trials=TRAIN)
    assert res.curve[-1] < res.curve[0]
    assert res.metrics["bits_per_spike_train"] > 0 and "bits_per_spike_test" in res.metrics


def test_fit_refuses_bad_arguments():
    rec, _ = _teacher_recording()
    net = CTRNN(2, 20, 1, dt=10, tau=50, activation="tanh")
    with pytest.raises(ValueError, match="units has 3 indices but the recording has 15"):
        fit(net, rec, [0, 1, 2], steps=1)
    with pytest.raises(ValueError, match=r"units must lie in \[0, 20\)"):
        fit(net, rec, list(range(10, 25)), steps=1)
    with pytest.raises(ValueError, match="units must not repeat"):
        fit(net, rec, [0] * 15, steps=1)
    with pytest.raises(ValueError, match="recording has 15 neurons but the model only 10"):
        fit(CTRNN(2, 10, 1, dt=10, tau=50), rec, steps=1)
    with pytest.raises(ValueError, match="method must be one of"):
        fit(net, rec, method="sgd")
    with pytest.raises(ValueError, match=r"model's dt \(5 ms\) must equal recording.dt \(10 ms\);"):
        fit(CTRNN(2, 20, 1, dt=5, tau=50), rec)
    with pytest.raises(ValueError, match=r"must equal recording.dt \(10 ms\) / steps_per_bin \(3\)"):
        fit(CTRNN(2, 20, 1, dt=5, tau=50), rec, steps_per_bin=3)
    with pytest.raises(ValueError, match="steps_per_bin must be a positive integer"):
        fit(net, rec, steps_per_bin=0)
    with pytest.raises(ValueError, match="'force' .* cannot fit steps_per_bin=2"):
        fit(CTRNN(2, 20, 1, dt=5, tau=50, activation="tanh"), rec, method="force", steps_per_bin=2)
    with pytest.raises(ValueError, match="recording.inputs has 2 channels but the model takes n_input=3"):
        fit(CTRNN(3, 20, 1, dt=10, tau=50), rec, steps=1)
    with pytest.raises(ValueError, match="loss='poisson' fits spike counts"):
        fit(net, rec, loss="poisson")
    with pytest.raises(ValueError, match="train_trials must be distinct trial indices"):
        fit(net, rec, train_trials=[0, 99], steps=1)
    with pytest.raises(ValueError, match="train_trials must keep between 1 and 16"):
        fit(net, rec, train_trials=0, steps=1)
    with pytest.raises(ValueError, match="steps must be"):
        fit(net, rec, steps=-1)
    with pytest.raises(ValueError, match="initial_state='data' inverts tanh"):
        fit(CTRNN(2, 20, 1, dt=10, tau=50), rec, initial_state="data", steps=1)
    with pytest.raises(ValueError, match=r"writes \['weight_rec'.*constrains them"):
        fit(CTRNN(2, 20, 1, dt=10, tau=50, e_fraction=0.8), rec, method="force", steps=1)
    with pytest.raises(ValueError, match="full_force' inverts tanh"):
        fit(CTRNN(2, 20, 1, dt=10, tau=50, activation="relu"), rec, method="full_force", steps=1)
    with pytest.raises(TypeError, match="recording must be a Recording"):
        fit(net, rec.data)


# --------------------------------------------------------------------------- spiking, sub-steps
def _spiking(n: int = 30, seed: int = 0):
    from bionn.spiking import SpikingRNN

    return SpikingRNN(2, n, 1, dt=1.0, t_refractory=0.0, bias=True, input_gain=2.0,
                      generator=torch.Generator().manual_seed(seed))


def test_steps_per_bin_averages_a_rate_model_over_each_bin():
    from bionn.analysis.fitting import predict

    rec, _ = _teacher_recording()
    net = CTRNN(2, 20, 1, dt=2.5, tau=50, activation="tanh", generator=torch.Generator().manual_seed(0))
    pred = predict(net, rec, range(15), steps_per_bin=4)
    with torch.no_grad():
        rates = net(rec.inputs.repeat_interleave(4, 1))[1][..., :15]
    assert pred.shape == rec.data.shape
    assert torch.allclose(pred, rates.reshape(16, 60, 4, 15).mean(2), atol=1e-6)
    res = fit(net, rec, range(15), steps=40, lr=3e-2, steps_per_bin=4)
    assert res.pvar_train > 0.5 and res.curve[-1] < 0.5 * res.curve[0]


def test_spiking_model_is_read_as_spike_rates_per_bin():
    from bionn.analysis.fitting import predict

    rec, _ = _teacher_recording()
    hz = Recording(25 * (1 + rec.data[..., :5]), 10.0, inputs=rec.inputs)
    net = _spiking()
    with torch.no_grad():
        net.bias_rec.fill_(5.0)  # fire without input
        spikes = net(rec.inputs.repeat_interleave(10, 1))[1][..., :5]
    assert spikes.sum() > 0
    counts = spikes.reshape(16, 60, 10, 5).sum(2)
    # no filter: the spike count per 10 ms bin, in spikes/s
    assert torch.equal(predict(net, hz, steps_per_bin=10), counts * 100.0)
    # rate_tau: r_t = d r_{t-1} + (1 - d) 1000 z_t / dt, then the bin's mean
    d = math.exp(-1.0 / 20.0)
    r = torch.zeros(16, 5)
    trace = []
    for z in spikes.unbind(1):
        r = d * r + (1 - d) * 1000.0 * z
        trace.append(r)
    want = torch.stack(trace, 1).reshape(16, 60, 10, 5).mean(2)
    assert torch.allclose(predict(net, hz, steps_per_bin=10, rate_tau=20.0), want, rtol=1e-5, atol=1e-3)


def test_spiking_rnn_fitted_to_rates_and_to_counts_by_surrogate_bptt():
    rec, _ = _teacher_recording()
    hz = 25 * (1 + rec.data[..., :5])  # 0..50 spikes/s
    rates = Recording(hz, 10.0, inputs=rec.inputs)
    from bionn.analysis.fitting import predict

    before = pvar(predict(_spiking(), rates, steps_per_bin=10, rate_tau=50.0)[TRAIN], hz[TRAIN])
    res = fit(_spiking(), rates, steps=60, lr=5e-2, steps_per_bin=10, rate_tau=50.0, train_trials=TRAIN)
    assert res.curve[-1] < 0.5 * res.curve[0]
    assert res.pvar_train > before + 1.0 and res.pvar_test is not None
    g = torch.Generator().manual_seed(1)
    counts = Recording(torch.poisson(hz * 0.01, generator=g), 10.0, inputs=rec.inputs, kind="counts")
    res = fit(_spiking(), counts, loss="poisson", steps=40, lr=5e-2, steps_per_bin=10, rate_tau=50.0,
              train_trials=TRAIN)
    assert res.curve[-1] < res.curve[0] - 0.1
    assert res.prediction.shape == counts.data.shape and (res.prediction >= 0).all()
    assert "bits_per_spike_test" in res.metrics


def test_spiking_fit_refuses_what_does_not_apply():
    rec, _ = _teacher_recording()
    hz = Recording(25 * (1 + rec.data[..., :5]), 10.0, inputs=rec.inputs)
    with pytest.raises(ValueError, match="'force' .* cannot fit a spiking model"):
        fit(_spiking(), hz, method="force", steps_per_bin=10)
    with pytest.raises(ValueError, match="a spiking model starts from its own initial state"):
        fit(_spiking(), hz, initial_state="data", steps_per_bin=10)
    counts = Recording(torch.zeros(16, 60, 5), 10.0, inputs=rec.inputs, kind="counts")
    with pytest.raises(ValueError, match="poisson_link='rate'"):
        fit(_spiking(), counts, loss="poisson", poisson_link="softplus", steps_per_bin=10)
    with pytest.raises(ValueError, match="rate_tau must be >= 0"):
        fit(_spiking(), hz, steps_per_bin=10, rate_tau=-1.0)
    with pytest.raises(ValueError, match=r"model's dt \(1 ms\) must equal recording.dt \(10 ms\)"):
        fit(_spiking(), hz)


# --------------------------------------------------------------------------- CURBD
def _three_regions(n: int = 30, trials: int = 32, T: int = 100):
    """A teacher with strong recurrence within regions A, B, C (g = 1.5), A -> B strong
    (gain 1.0), B -> C weak (0.5), nothing else; trials start from random states."""
    gen = torch.Generator().manual_seed(0)
    idx = {r: torch.arange(i * n, (i + 1) * n) for i, r in enumerate("ABC")}
    J = torch.zeros(3 * n, 3 * n)
    for r in "ABC":
        J[idx[r][:, None], idx[r]] = torch.randn(n, n, generator=gen) * 1.5 / n ** 0.5
    J[idx["B"][:, None], idx["A"]] = torch.randn(n, n, generator=gen) * 1.0 / n ** 0.5
    J[idx["C"][:, None], idx["B"]] = torch.randn(n, n, generator=gen) * 0.5 / n ** 0.5
    teacher = ForceNetwork(1, 3 * n, dt=1.0, tau=10.0, generator=gen)
    with torch.no_grad():
        teacher.weight_rec.copy_(J)
        h0 = torch.randn(trials, 3 * n, generator=gen) * 1.5
        rates = teacher(torch.zeros(trials, T, 1), RateState(h0, torch.tanh(h0)))[1]
    return J, rates, idx


def test_curbd_recovers_which_region_drives_which():
    J, rates, idx = _three_regions()
    _, teacher_mag = region_currents(J, rates, idx)
    res = curbd({r: rates[..., idx[r]] for r in "ABC"}, dt=1.0, tau=10.0, passes=20, normalize=False,
                generator=torch.Generator().manual_seed(1))
    assert res.pvar > 0.99
    teacher_order = sorted((p for p in teacher_mag if p[0] != p[1]), key=lambda p: -teacher_mag[p])
    assert teacher_order[:2] == [("B", "A"), ("C", "B")]
    got = res.ranking()
    assert got[:2] == [("B", "A"), ("C", "B")], res.magnitudes
    # every absent connection carries less current than the weak one
    weak = res.magnitudes[("C", "B")]
    assert all(res.magnitudes[p] < weak for p in got[2:]), res.magnitudes
    # the currents add up to the whole recurrent input J r of each region
    total = sum(res.currents[("B", s)] for s in "ABC")
    want = res.rates @ res.model.weight_rec.detach().double()[idx["B"]].T
    torch.testing.assert_close(total, want)
    assert res.magnitude_matrix().shape == (3, 3) and res.currents[("C", "A")].shape == (32, 100, 30)


def test_curbd_array_with_labels_and_refusals():
    t = torch.linspace(0, 6, 80)[:, None]
    data = torch.cat([torch.sin(t + torch.arange(3.0)), 3 * torch.cos(t + torch.arange(2.0))], 1)
    res = curbd(data, ["v1", "v1", "v1", "m1", "m1"], passes=3, generator=torch.Generator().manual_seed(0))
    assert res.regions == ("v1", "m1") and res.data.abs().max() <= 0.999  # normalized by the peak
    assert res.currents[("m1", "v1")].shape == (80, 2) and res.rates.shape == (80, 5)
    rec = Recording(data[None], 1.0, regions=["v1"] * 3 + ["m1"] * 2)
    assert curbd(rec, passes=1).regions == ("v1", "m1")
    with pytest.raises(ValueError, match="regions: give one region label per neuron"):
        curbd(data)
    with pytest.raises(ValueError, match="regions has 2 labels for 5 neurons"):
        curbd(data, ["a", "b"])
    with pytest.raises(ValueError, match="rates must lie in"):
        curbd(data, ["a"] * 5, normalize=False)
    with pytest.raises(ValueError, match=r"every region needs the same"):
        curbd({"a": torch.zeros(5, 2), "b": torch.zeros(6, 2)})


def test_bptt_fits_a_connectome_rnn_keeping_its_signs():
    from bionn.circuits.connectome import Connectome
    from bionn.rate.connectome import ConnectomeRNN

    c = Connectome(4, pre=torch.tensor([0, 1, 2, 3]), post=torch.tensor([1, 2, 3, 0]),
                   weight=torch.tensor([2.0, 1.0, 3.0, 1.0]), sign=torch.tensor([1.0, 1.0, -1.0, 1.0]),
                   types=("a", "a", "b", "b"))
    net = ConnectomeRNN(c, 2, 1, input_neurons="all", output_neurons=[3], activation="tanh")
    g = torch.Generator().manual_seed(0)
    rec = Recording(0.5 * torch.rand(3, 20, 2, generator=g), dt=net.dt, inputs=torch.rand(3, 20, 2, generator=g))
    res = fit(net, rec, [1, 3], steps=20, train_trials=2, generator=g)
    assert res.curve[-1] < res.curve[0] and res.prediction.shape == (3, 20, 2)
    assert bool((net.recurrent_values()[net.sign < 0] < 0).all())
