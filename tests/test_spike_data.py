"""Spike encoders, the Yin-Yang dataset, the evidence-accumulation task and spiking datasets."""

import math

import numpy as np
import pytest
import torch

from bionn.tasks import (
    ENCODERS,
    TASKS,
    YIN_YANG_CLASSES,
    EvidenceAccumulation,
    delta_encode,
    encode,
    latency_encode,
    load_yin_yang,
    make_task,
    poisson_encode,
    poisson_spikes,
    spiking_dataset,
)
from bionn.tasks.datasets import DATASETS, load_dataset, load_mnist1d


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- encoders
class TestPoisson:
    def test_shape_dtype_binary(self):
        s = poisson_encode(torch.rand(3, 2, 5), steps=7, generator=gen())
        assert s.shape == (3, 7, 2, 5) and s.dtype == torch.float32
        assert set(s.unique().tolist()) <= {0.0, 1.0}

    def test_rates_match_expectation(self):
        # 200 neurons x 2000 steps of 1 ms per intensity: the count is Binomial(n, p)
        x = torch.tensor([0.0, 0.1, 0.5, 1.0]).repeat(200, 1)  # (200, 4)
        s = poisson_encode(x, steps=2000, max_rate=100.0, dt=1.0, generator=gen(1))
        n = 200 * 2000
        for j, xi in enumerate([0.0, 0.1, 0.5, 1.0]):
            p = xi * 100.0 * 1.0 / 1000.0
            count = s[:, :, j].sum().item()
            sd = math.sqrt(n * p * (1 - p))
            assert abs(count - n * p) <= 5 * sd + 1e-9, (xi, count, n * p)
        # rate in Hz = spikes / (steps * dt / 1000)
        rate = s[:, :, 2].sum(1).mean().item() / (2000 * 1.0 / 1000.0)
        assert abs(rate - 50.0) < 1.0

    def test_dt_scales_probability(self):
        x = torch.full((500, 1), 1.0)
        s = poisson_encode(x, steps=400, max_rate=50.0, dt=5.0, generator=gen(2))
        p = 50.0 * 5.0 / 1000.0
        n = s.numel()
        assert abs(s.sum().item() - n * p) < 5 * math.sqrt(n * p * (1 - p))

    def test_deterministic_under_seed(self):
        x = torch.rand(4, 6, generator=gen(3))
        a = poisson_encode(x, 50, generator=gen(7))
        torch.manual_seed(123)  # the global RNG does not matter
        b = poisson_encode(x, 50, generator=gen(7))
        c = poisson_encode(x, 50, generator=gen(8))
        assert torch.equal(a, b) and not torch.equal(a, c)

    def test_poisson_spikes_from_rates(self):
        rates = torch.zeros(2, 100, 3)
        rates[:, :, 1] = 1000.0  # p = 1 at dt = 1 ms
        s = poisson_spikes(rates, dt=1.0, generator=gen())
        assert s[:, :, 1].all() and not s[:, :, 0].any()

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            ({"x": torch.tensor([[1.5]])}, "x must be intensities in \\[0, 1\\]"),
            ({"x": torch.tensor([[-0.1]])}, "x must be intensities in \\[0, 1\\]"),
            ({"steps": 0}, "steps must be an int >= 1"),
            ({"max_rate": 2000.0}, "max_rate \\* dt / 1000 must be <= 1"),
            ({"dt": 0.0}, "dt must be > 0"),
            ({"x": torch.tensor([1.0, float("nan")])}, "x must be finite"),
        ],
    )
    def test_bad_arguments_named(self, kwargs, match):
        args = {"x": torch.rand(2, 3), "steps": 10, **kwargs}
        with pytest.raises(ValueError, match=match):
            poisson_encode(**args)

    def test_bad_types_named(self):
        with pytest.raises(TypeError, match="generator must be a torch.Generator"):
            poisson_encode(torch.rand(2, 3), 10, generator=0)
        with pytest.raises(TypeError, match="x must be a torch.Tensor"):
            poisson_encode([0.1, 0.2], 10)
        with pytest.raises(ValueError, match="rates must be >= 0 Hz"):
            poisson_spikes(torch.tensor([-1.0]))


class TestLatency:
    def test_ordering_one_spike_threshold(self):
        x = torch.tensor([[1.0, 0.9, 0.5, 0.2, 0.005, 0.0]])
        for mapping in ("linear", "log"):
            s = latency_encode(x, steps=200, mapping=mapping, tau=20.0, threshold=0.01)
            assert s.shape == (1, 200, 6) and s.dtype == torch.float32
            counts = s.sum(1)[0]
            assert counts.tolist() == [1, 1, 1, 1, 0, 0], mapping
            first = s[0].argmax(0)[:4]
            assert (first[1:] >= first[:-1]).all(), (mapping, first)  # stronger -> earlier
            assert first[0] < first[3]

    def test_linear_times(self):
        s = latency_encode(torch.tensor([[1.0, 0.5, 0.25]]), steps=101, dt=1.0)
        assert s[0].argmax(0).tolist() == [0, 50, 75]  # t = 100 (1 - x) ms
        s = latency_encode(torch.tensor([[0.5]]), steps=50, dt=2.0, t_max=40.0)
        assert s[0].argmax(0).tolist() == [10]  # t = 40 * 0.5 = 20 ms = step 10

    def test_log_times_and_window(self):
        tau, theta = 10.0, 0.2
        x = torch.tensor([[1.0, 0.5, 0.21]])
        t = tau * torch.log(x / (x - theta))  # 2.23, 5.11, 30.4 ms
        s = latency_encode(x, steps=20, dt=1.0, mapping="log", tau=tau, threshold=theta)
        assert s[0].argmax(0)[:2].tolist() == torch.floor(t[0, :2]).long().tolist()
        assert s[0, :, 2].sum() == 0  # beyond the 20 ms window: no spike

    def test_image_shape(self):
        s = latency_encode(torch.rand(2, 1, 4, 4, generator=gen()), steps=10)
        assert s.shape == (2, 10, 1, 4, 4) and (s.sum(1) <= 1).all()

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            ({"mapping": "exp"}, "mapping must be 'linear' or 'log'"),
            ({"threshold": 1.0}, "threshold must be in \\[0, 1\\)"),
            ({"tau": -1.0}, "tau must be > 0"),
            ({"x": torch.tensor([[2.0]])}, "x must be intensities"),
            ({"x": torch.tensor(0.5)}, "x must have at least 1 dimensions"),
        ],
    )
    def test_bad_arguments_named(self, kwargs, match):
        args = {"x": torch.rand(2, 3), "steps": 10, **kwargs}
        with pytest.raises(ValueError, match=match):
            latency_encode(**args)


class TestDelta:
    def test_ramp_crossing(self):
        ramp = torch.linspace(0, 1, 101).reshape(1, 101, 1)  # +0.01 per step
        s = delta_encode(ramp, threshold=0.1)
        assert s.shape == (1, 101, 2, 1) and s.dtype == torch.float32
        on = s[0, :, 0, 0]
        assert on.sum() == 10 and s[0, :, 1].sum() == 0
        # one on spike every theta / slope = 10 steps
        assert torch.nonzero(on).flatten().tolist() == list(range(10, 101, 10))
        down = delta_encode(ramp.flip(1), threshold=0.1)
        assert down[0, :, 1].sum() == 10 and down[0, :, 0].sum() == 0

    def test_ramp_delta_mode(self):
        slow = torch.linspace(0, 1, 101).reshape(1, 101, 1)
        assert delta_encode(slow, threshold=0.1, mode="delta").sum() == 0
        fast = torch.linspace(0, 1, 6).reshape(1, 6, 1)  # +0.2 per step
        s = delta_encode(fast, threshold=0.1, mode="delta")
        assert s[0, :, 0, 0].tolist() == [0, 1, 1, 1, 1, 1]

    def test_channels(self):
        x = torch.tensor([0.0, 0.3, 0.0]).reshape(1, 3, 1)
        both = delta_encode(x, threshold=0.25, mode="delta")
        assert both[0, :, 0, 0].tolist() == [0, 1, 0] and both[0, :, 1, 0].tolist() == [0, 0, 1]
        assert delta_encode(x, 0.25, mode="delta", channels="on")[0, :, 0].tolist() == [0, 1, 0]
        assert delta_encode(x, 0.25, mode="delta", channels="any")[0, :, 0].tolist() == [0, 1, 1]

    def test_counts_track_signal(self):
        t = torch.linspace(0, 2 * math.pi, 400)
        x = torch.sin(t).reshape(1, -1, 1)
        s = delta_encode(x, threshold=0.05)
        net = (s[0, :, 0, 0] - s[0, :, 1, 0]).cumsum(0) * 0.05
        assert (net - (x[0, :, 0] - x[0, 0, 0])).abs().max() < 0.05 + 1e-6

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            ({"threshold": 0.0}, "threshold must be > 0"),
            ({"mode": "sigma"}, "mode must be 'crossing' or 'delta'"),
            ({"channels": "off"}, "channels must be 'on_off', 'on' or 'any'"),
            ({"x": torch.rand(5)}, "x must have at least 2 dimensions"),
        ],
    )
    def test_bad_arguments_named(self, kwargs, match):
        args = {"x": torch.rand(2, 5, 3), **kwargs}
        with pytest.raises(ValueError, match=match):
            delta_encode(**args)


def test_encode_registry():
    assert set(ENCODERS) == {"poisson", "latency", "delta"}
    x = torch.rand(2, 3, generator=gen())
    assert torch.equal(encode(x, "latency", steps=5), latency_encode(x, 5))
    with pytest.raises(ValueError, match="unknown encoder 'rank'; allowed: poisson, latency, delta"):
        encode(x, "rank")


# --------------------------------------------------------------------------- Yin-Yang
def _yy_class(x: np.ndarray, y: np.ndarray, r_small=0.1, r_big=0.5) -> np.ndarray:
    """The defining inequalities, written out independently of the loader."""
    d_r = np.sqrt((x - 0.75) ** 2 + (y - 0.5) ** 2)
    d_l = np.sqrt((x - 0.25) ** 2 + (y - 0.5) ** 2)
    dot = (d_r < r_small) | (d_l < r_small)
    one = (d_r <= r_small) | ((d_l > r_small) & (d_l <= 0.25)) | ((y > 0.5) & (d_r > 0.25))
    return np.where(dot, 2, np.where(one, 1, 0))


class TestYinYang:
    def test_registry_and_shapes(self):
        assert DATASETS["yin_yang"] is load_yin_yang
        d = load_dataset("yin_yang", n_train=600, n_test=300, val_size=60, seed=1)
        assert d.x_train.shape == (540, 4) and d.x_val.shape == (60, 4)
        assert d.x_test.shape == (300, 4) and d.input_shape == (4,)
        assert d.n_classes == 3 and d.name == "yin_yang"
        assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
        assert YIN_YANG_CLASSES == ("yin", "yang", "dot")

    def test_class_balance(self):
        d = load_yin_yang(n_train=3001, n_test=999, seed=3)
        for y in (d.y_train, d.y_test):
            counts = torch.bincount(y, minlength=3)
            assert counts.max() - counts.min() <= 1

    def test_geometry(self):
        d = load_yin_yang(n_train=3000, n_test=300, seed=0)
        x = d.x_train.double().numpy()
        # inputs are (x, y, 1 - x, 1 - y), inside the big circle
        np.testing.assert_allclose(x[:, 2:], 1.0 - x[:, :2], atol=1e-6)
        assert (np.hypot(x[:, 0] - 0.5, x[:, 1] - 0.5) <= 0.5 + 1e-6).all()
        assert (x[:, :2] >= 0).all() and (x[:, :2] <= 1).all()
        assert (_yy_class(x[:, 0], x[:, 1]) == d.y_train.numpy()).all()
        # dots are small discs of radius 0.1 around (0.25, 0.5) and (0.75, 0.5)
        dots = x[d.y_train.numpy() == 2]
        dist = np.minimum(np.hypot(dots[:, 0] - 0.25, dots[:, 1] - 0.5),
                          np.hypot(dots[:, 0] - 0.75, dots[:, 1] - 0.5))
        assert (dist < 0.1).all()
        # far from the centre line, the top of the disc is class 1 and the bottom class 0
        y = d.y_train.numpy()
        assert (y[x[:, 1] > 0.8] == 1).all() and (y[x[:, 1] < 0.2] == 0).all()
        assert (y[x[:, 1] > 0.8] == 1).sum() > 50

    def test_determinism(self):
        a = load_yin_yang(n_train=300, n_test=30, seed=5)
        b = load_yin_yang(n_train=300, n_test=30, seed=5)
        c = load_yin_yang(n_train=300, n_test=30, seed=6)
        assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
        assert not torch.equal(a.x_train, c.x_train)
        # the test set does not depend on the training-set size
        assert torch.equal(load_yin_yang(n_train=900, n_test=30, seed=5).x_test, a.x_test)

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            ({"n_train": 2}, "n_train must be an int >= 3"),
            ({"r_small": 0.3}, "r_small must lie in \\(0, r_big / 2\\)"),
            ({"r_big": -1.0}, "r_big must be > 0"),
            ({"val_size": 5000}, "val_size must be smaller"),
        ],
    )
    def test_bad_arguments_named(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            load_yin_yang(**kwargs)

    def test_published_accuracies(self):
        """Linear 64.3 % and 4-120-3 ANN 98.7 % (Kriener et al. 2022), here on 2000 held-out
        points after full-batch Adam (about 3 s on one core). The best linear classifier
        on this distribution scores about 66 % (measured on 50 000 points), so the bound is
        64.3 +- 4 points."""
        torch.set_num_threads(1)
        d = load_yin_yang(n_train=5000, n_test=2000, seed=42)

        def fit(model: torch.nn.Module, steps: int, lr: float) -> float:
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            for _ in range(steps):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(d.x_train), d.y_train).backward()
                opt.step()
            with torch.no_grad():
                return (model(d.x_test).argmax(1) == d.y_test).float().mean().item()

        torch.manual_seed(0)
        linear = fit(torch.nn.Linear(4, 3), 300, 0.05)
        mlp = fit(torch.nn.Sequential(torch.nn.Linear(4, 120), torch.nn.ReLU(),
                                      torch.nn.Linear(120, 3)), 800, 0.02)
        assert abs(linear - 0.643) <= 0.04, linear
        assert mlp >= 0.97, mlp


# --------------------------------------------------------------------------- evidence accumulation
class TestEvidenceAccumulation:
    def test_registry_and_defaults(self):
        assert TASKS["evidence_accumulation"] is EvidenceAccumulation
        task = make_task("evidence_accumulation")
        assert task.dt == 1.0 and task.n_input == 40 and task.n_output == 2
        assert len(task.input_names) == 40 and task.input_names[10] == "right 1"
        assert task.output_names == ("left", "right")
        assert task.n_steps_range() == (2250, 2250)

    def test_cue_counts_and_majority_label(self):
        task = EvidenceAccumulation()
        b = task.sample(64, gen(0))
        assert b.inputs.shape == (64, 2250, 40) and b.inputs.dtype == torch.float32
        assert set(b.inputs.unique().tolist()) <= {0.0, 1.0}
        assert (b.info["n_left"] + b.info["n_right"] == 7).all()
        assert torch.equal(b.labels, (b.info["n_right"] > b.info["n_left"]).long())
        assert torch.equal(b.info["evidence"], (b.info["n_right"] - b.info["n_left"]).float())
        # the cue population that fires in each 100 ms cue window gives the counts
        left = right = 0
        for k in range(7):
            window = slice(50 + 150 * k, 150 + 150 * k)
            l_spk = b.inputs[:, window, 0:10].sum((1, 2))
            r_spk = b.inputs[:, window, 10:20].sum((1, 2))
            assert ((l_spk > 0) ^ (r_spk > 0)).float().mean() > 0.95  # one side per cue
            left = left + (l_spk > r_spk).long()
            right = right + (r_spk > l_spk).long()
        agree = (left == b.info["n_left"]) & (right == b.info["n_right"])
        assert agree.float().mean() > 0.9
        # gaps between cues and the delay carry no cue spikes
        for k in range(7):
            assert b.inputs[:, 150 * k : 150 * k + 50, 0:20].sum() == 0
        assert b.inputs[:, 1050:2100, 0:30].sum() == 0

    def test_favoured_side_statistics(self):
        b = EvidenceAccumulation(dt=10.0, population=1).sample(2000, gen(1))
        n_fav = torch.where(b.info["favoured"] == 1, b.info["n_right"], b.info["n_left"])
        assert abs(n_fav.float().mean().item() / 7 - 0.7) < 0.02
        assert abs(b.labels.float().mean().item() - 0.5) < 0.05

    def test_input_rates(self):
        task = EvidenceAccumulation()
        b = task.sample(200, gen(2))
        x = b.inputs
        noise_hz = x[:, :, 30:40].mean().item() * 1000.0
        assert abs(noise_hz - 10.0) < 0.5
        recall_hz = x[:, 2100:2250, 20:30].mean().item() * 1000.0
        assert abs(recall_hz - 40.0) < 2.0
        assert x[:, :2100, 20:30].sum() == 0
        # a cue window: the active side at 40 Hz, the other silent
        side = torch.stack([x[:, 50:150, 0:10].sum((1, 2)), x[:, 50:150, 10:20].sum((1, 2))], 1)
        active_hz = side.max(1).values.float().mean().item() / (10 * 100) * 1000.0
        assert abs(active_hz - 40.0) < 2.5

    def test_mask_targets_recall_period(self):
        b = EvidenceAccumulation().sample(8, gen(3))
        recall = torch.zeros(2250)
        recall[2100:] = 1
        assert torch.equal(b.mask, recall.expand(8, -1))
        assert (b.info["decision_start"] == 2100).all() and (b.info["decision_end"] == 2250).all()
        onehot = torch.nn.functional.one_hot(b.labels, 2).float()
        assert torch.equal(b.targets[:, 2100:], onehot[:, None].expand(8, 150, 2))
        assert b.targets[:, :2100].sum() == 0

    def test_accuracy(self):
        task = EvidenceAccumulation()
        b = task.sample(32, gen(4))
        assert task.accuracy(b.targets, b).all()
        assert not task.accuracy(b.targets.flip(-1), b).any()
        # only the recall period counts: wrong answers before it do not matter
        out = b.targets.clone()
        out[:, :2100] = torch.nn.functional.one_hot(1 - b.labels, 2).float()[:, None]
        assert task.accuracy(out, b).all()
        with pytest.raises(ValueError, match="outputs must have shape"):
            task.accuracy(b.targets[:, :10], b)

    def test_variable_delay_and_dt(self):
        task = EvidenceAccumulation(dt=10.0, delay=(500.0, 1500.0))
        b = task.sample(16, gen(5))
        start, end = b.info["decision_start"], b.info["decision_end"]
        assert ((start >= 105 + 50) & (start <= 105 + 150)).all()
        assert (end - start == 15).all() and b.inputs.shape[1] == int(end.max())
        assert torch.equal(b.mask.sum(1), torch.full((16,), 15.0))
        pad = torch.arange(b.inputs.shape[1])[None] >= end[:, None]
        assert b.inputs[pad].sum() == 0
        assert task.accuracy(b.targets, b).all()

    def test_deterministic_under_seed(self):
        task = EvidenceAccumulation(population=2)
        a, b, c = task.sample(4, gen(9)), task.sample(4, gen(9)), task.sample(4, gen(10))
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
        assert not torch.equal(a.inputs, c.inputs)

    @pytest.mark.parametrize(
        "kwargs, exc, match",
        [
            ({"n_cues": 6}, ValueError, "n_cues must be odd"),
            ({"cue_interval": 50.0}, ValueError, "cue_interval .* must be >= cue_duration"),
            ({"p_favoured": 0.3}, ValueError, "p_favoured must be in \\[0.5, 1\\]"),
            ({"rate": 2000.0}, ValueError, "rate \\* dt / 1000 must be <= 1"),
            ({"delay": (800.0, 100.0)}, ValueError, "needs low <= high"),
            ({"dt": 0}, ValueError, "dt must be > 0"),
            ({"population": 0}, ValueError, "population must be an int >= 1"),
            ({"recall_duration": 0.5}, ValueError, "recall_duration = 0.5 ms is shorter than dt"),
            ({"n_cues": 7.0}, TypeError, "n_cues must be an int"),
        ],
    )
    def test_bad_arguments_named(self, kwargs, exc, match):
        with pytest.raises(exc, match=match):
            EvidenceAccumulation(**kwargs)
        with pytest.raises(exc, match=match):
            make_task("evidence_accumulation", **kwargs)


# --------------------------------------------------------------------------- spiking datasets
class TestSpikingDataset:
    def test_mnist1d_poisson(self):
        d = spiking_dataset("mnist1d", "poisson", steps=30, num_samples=200, val_size=20,
                            encoder_params={"max_rate": 500.0})
        base = load_mnist1d(num_samples=200, val_size=20)
        assert d.x_train.shape == (140, 30, 40) and d.x_val.shape == (20, 30, 40)
        assert d.x_test.shape == (40, 30, 40) and d.input_shape == (30, 40)
        assert torch.equal(d.y_train, base.y_train) and torch.equal(d.y_test, base.y_test)
        assert d.n_classes == 10 and d.name == "mnist1d_poisson"
        assert set(d.x_train.unique().tolist()) == {0.0, 1.0}
        # the spike probability is 500 Hz * 1 ms * u, u = (x - min) / (max - min) on train
        u = (base.x_train - base.x_train.min()) / (base.x_train.max() - base.x_train.min())
        p = d.x_train.mean(1).flatten()
        bins = torch.bucketize(u.flatten(), torch.linspace(0, 1, 11)[1:-1])
        for k in range(10):
            sel = bins == k
            if sel.sum() > 200:
                assert abs(p[sel].mean() - 0.5 * u.flatten()[sel].mean()) < 0.02, k
        again = spiking_dataset("mnist1d", "poisson", steps=30, num_samples=200, val_size=20,
                                encoder_params={"max_rate": 500.0})
        assert torch.equal(again.x_train, d.x_train)

    def test_digits_latency(self):
        pytest.importorskip("sklearn")
        d = spiking_dataset("digits", "latency", steps=16, standardize=False)
        base = load_dataset("digits", standardize=False)
        assert d.x_train.shape == (len(base.x_train), 16, 1, 8, 8)
        assert d.x_test.shape == (len(base.x_test), 16, 1, 8, 8)
        assert torch.equal(d.y_test, base.y_test)
        # pixel value v / 16 spikes at step floor(15 * (1 - v / 16)); blank pixels never
        first = d.x_test.argmax(1)
        on = base.x_test > 0.01
        expect = torch.floor(15 * (1 - base.x_test) + 1e-9).long()
        assert torch.equal(first[on], expect[on]) and d.x_test.sum(1)[~on].sum() == 0
        assert (d.x_train.sum(1) <= 1).all()
        assert d.input_shape == (16, 1, 8, 8) and d.name == "digits_latency"

    def test_delta_reads_samples_as_time_series(self):
        base = load_mnist1d(num_samples=100)
        d = spiking_dataset(base, "delta", steps=None, encoder_params={"threshold": 0.05})
        assert d.x_train.shape == (80, 40, 2, 1) and d.input_shape == (40, 2, 1)
        with pytest.raises(ValueError, match="steps must be None for the 'delta' encoder"):
            spiking_dataset(base, "delta", steps=10)

    def test_yin_yang_and_bad_arguments(self):
        d = spiking_dataset("yin_yang", "latency", steps=20, n_train=30, n_test=9)
        assert d.x_train.shape == (30, 20, 4)
        with pytest.raises(ValueError, match="encoder: unknown encoder 'rank'"):
            spiking_dataset("yin_yang", "rank")
        with pytest.raises(ValueError, match="unknown dataset 'nope'"):
            spiking_dataset("nope")
        with pytest.raises(TypeError, match="need a dataset name, not a Dataset"):
            spiking_dataset(load_yin_yang(n_train=30, n_test=9), n_train=5)
        with pytest.raises(TypeError, match="encoder_params must not set 'generator'"):
            spiking_dataset("yin_yang", encoder_params={"generator": gen()})
        with pytest.raises(ValueError, match="GiB"):
            spiking_dataset("yin_yang", steps=1000, max_gib=0.001)
