"""Spiking networks in the one runner: `model.kind: spiking` in the rate-run config shape,
its checks before any work, exact resume, credit-assignment methods, and the raster in the
example-trials figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bionn._core.errors import ConfigError
from bionn.experiment.cli import main
from bionn.experiment.runner import Runner, load_run_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "spiking_pdm.yaml")
TINY = ["model.n_hidden=20", "training.batch_size=8", "training.eval_trials=16",
        "training.eval_every=2", "training.checkpoint_every=2", "training.example_trials=2"]


def test_shipped_config_builds_a_dale_spiking_rnn():
    from bionn.experiment.models import build_rate_model
    from bionn.spiking import SpikingRNN

    cfg = load_run_config(CONFIG, [])
    model = build_rate_model(cfg.model, cfg.task.build(), seed=0)
    assert isinstance(model, SpikingRNN) and model.dt == cfg.task.dt == 10.0
    w = model.connection_weights()["recurrent"]
    assert (w[:, :80] >= 0).all() and (w[:, 80:] <= 0).all()


@pytest.mark.parametrize("override, words", [
    ("model.cell=Hodgkin", ["model.cell", "LIF", "ALIF"]),
    ("model.cell_options={tau_syn: 0}", ["model.cell_options", "tau_syn"]),
    ("model.cell_options={bogus: 1}", ["model.cell_options", "bogus"]),
    ("model.surrogate=step", ["model.cell_options", "surrogate", "fast_sigmoid"]),
    ("model.n_hidden=10000000", ["model.n_hidden", "GB", "--force"]),
])
def test_bad_spiking_configs_are_refused_before_any_work(override, words):
    with pytest.raises(ConfigError) as e:
        load_run_config(CONFIG, [override])
    for word in words:
        assert word in str(e.value), str(e.value)


def test_spiking_run_resumes_exactly(tmp_path):
    full, half = tmp_path / "full", tmp_path / "half"
    Runner(load_run_config(CONFIG, [*TINY, "training.steps=4"]), full, progress=False).fit()
    Runner(load_run_config(CONFIG, [*TINY, "training.steps=2"]), half, progress=False).fit()
    Runner(load_run_config(CONFIG, [*TINY, "training.steps=4"]), half, resume=True,
           progress=False).fit()

    def losses(folder: Path) -> list[float]:
        return [json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]

    assert losses(full) == losses(half)
    a = torch.load(full / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(half / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method", ["fa", "kp"])
def test_spiking_run_with_a_credit_assignment_method(tmp_path, capsys, method):
    out = tmp_path / method
    assert main(["run", CONFIG, *TINY, "training.steps=2", f"model.method={method}",
                 "--out", str(out), "--quiet"]) == 0
    final = json.loads((out / "final.json").read_text())
    assert final["method"] == method and final["status"] == "finished"
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert any(k.startswith("weight_angle/") for k in record)


def test_example_trials_of_a_spiking_run_are_a_raster(tmp_path):
    from bionn.viz import plot_example_trials

    x, y = torch.rand(2, 30, 3), torch.rand(2, 30, 3)
    z = (torch.rand(2, 30, 50) < 0.2).float()
    sign = torch.ones(50)
    sign[40:] = -1
    fig = plot_example_trials(x, y, y, z, n_trials=2, dt=10.0, sign=sign)
    ax = fig.axes[4]  # first trial's activity row
    assert ax.get_ylabel() == "neuron (spikes)"
    assert len(ax.collections) == 40  # one tick collection per unit shown
    colours = {tuple(c.get_color()[0]) for c in ax.collections}
    assert len(colours) == 2  # E and I
    rates = plot_example_trials(x, y, y, torch.rand(2, 30, 50), n_trials=2, dt=10.0)
    assert rates.axes[4].get_ylabel() == "activity"


SPIKING_CLASSIFIER = ("model.params={hidden: [16], steps: 5, V_th: 1.0, V_reset: 0.0, "
                      "synapse: delta, t_refractory: 0.0}")


@pytest.mark.parametrize("method", ["bp", "fa"])
def test_classification_run_with_a_spiking_classifier(tmp_path, capsys, method):
    out = tmp_path / method
    assert main(["run", "data.dataset=yin_yang", "data.params={n_train: 200, n_test: 100}",
                 "model.architecture=spiking", SPIKING_CLASSIFIER, f"model.method={method}",
                 "training.epochs=1", "--out", str(out), "--quiet"]) == 0
    final = json.loads((out / "final.json").read_text())
    assert final["architecture"] == "spiking" and 0 <= final["test_accuracy"] <= 1


@pytest.mark.parametrize("params, words", [
    ("{encoding: morse}", ["encoding", "morse"]),
    ("{reduce: median}", ["reduce", "median"]),
    ("{hidden: [8, 8], recurrent: true}", ["one hidden size"]),
    ("{encoding: population, population: 1}", ["population", "integer >= 2", "1"]),
    ("{encoding: population, population_range: [2, -2]}", ["population_range", "lo < hi"]),
    ("{encoding: population, population_range: [-2, 0, 2]}", ["population_range", "[lo, hi]"]),
    ("{encoding: population, population_width: 0}", ["population_width", "> 0"]),
    ("{encoding: poisson, sequence: true}", ["sequence", "current or population", "poisson"]),
])
def test_spiking_classifier_arguments_are_checked(params, words):
    from bionn.experiment.models import spiking_classifier

    kwargs = __import__("yaml").safe_load(params)
    with pytest.raises(ValueError) as e:
        spiking_classifier(4, 3, **kwargs)
    for word in words:
        assert word in str(e.value)


def test_spiking_classifier_encodings_and_sequence():
    from bionn.experiment.models import spiking_classifier

    x = torch.rand(5, 4)
    for encoding in ("current", "poisson", "latency"):
        net = spiking_classifier(4, 3, hidden=[8], steps=6, encoding=encoding)
        assert net.encode(x).shape == (5, 6, 4) and net(x).shape == (5, 3)
    seq = spiking_classifier(40, 10, hidden=[12], steps=2, sequence=True, recurrent=True,
                             e_fraction=0.75)
    assert seq.encode(torch.rand(3, 40)).shape == (3, 80, 1) and seq(torch.rand(3, 40)).shape == (3, 10)


def test_population_code_of_a_sequence():
    from bionn.experiment.models import spiking_classifier

    net = spiking_classifier(40, 10, hidden=[12], steps=3, sequence=True, recurrent=True,
                             encoding="population", population=5, population_range=[-2.0, 2.0],
                             population_width=0.5)
    assert net.layers[0].n_input == 5
    x = torch.randn(4, 40)
    x[0, 0], x[0, 1] = 1.0, 7.0  # on the centre c_3 = 1; far above the range
    h = net.encode(x)
    assert h.shape == (4, 120, 5) and net(x).shape == (4, 10)
    assert torch.equal(h[:, 0], h[:, 2]) and torch.equal(h[:, 0], h[:, 1])  # held for 3 steps
    # I_k = exp(-(x - c_k)^2 / (2 sigma^2)), c = -2, -1, 0, 1, 2 and sigma = 0.5 * 1
    c = torch.linspace(-2.0, 2.0, 5)
    torch.testing.assert_close(h[:, ::3], torch.exp(-0.5 * ((x[..., None] - c) / 0.5) ** 2))
    assert h[0, 0, 3] == 1.0 and h[0, 0].argmax() == 3 and h[0, 3].argmax() == 4
    assert ((h > 0) & (h <= 1)).any() and (h >= 0).all() and (h <= 1).all()
    static = spiking_classifier(4, 3, hidden=[8], steps=6, encoding="population", population=3)
    assert static.encode(torch.rand(2, 4)).shape == (2, 6, 12) and static(torch.rand(2, 4)).shape == (2, 3)


@pytest.mark.parametrize("name", ["spiking_yinyang", "spiking_mnist1d"])
def test_shipped_spiking_classification_configs_run_briefly(name, tmp_path):
    from bionn.experiment.classify import is_classify_config, load_classify_config

    path = ROOT / "configs" / f"{name}.yaml"
    assert is_classify_config(path)
    cfg = load_classify_config(path, ["training.epochs=1", "training.steps=3",
                                      "model.params.hidden=[16]"])
    summary = Runner(cfg, tmp_path / name, progress=False).fit()
    assert summary["status"] == "finished" and 0.0 <= summary["test_accuracy"] <= 1.0


def test_spiking_run_writes_the_firing_rate_distribution(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", CONFIG, *TINY, "training.steps=2", "--out", str(out), "--quiet"]) == 0
    for name in ("firing_rates.png", "example_trials.png", "membrane_traces.png"):
        assert (out / "figures" / name).is_file(), name


def test_traces_match_the_forward_run():
    from bionn.spiking import SpikingRNN

    torch.manual_seed(0)
    net = SpikingRNN(3, 12, 2, cell="ALIF", dt=1.0, e_fraction=0.75, t_refractory=0.0,
                     input_gain=4.0).double()
    x = torch.rand(2, 30, 3, dtype=torch.float64)
    tr = net.traces(x)
    with torch.no_grad():
        _, spikes = net(x)
    assert torch.equal(tr["spikes"], spikes) and spikes.sum() > 0
    b0 = tr["threshold"][:, 0]
    assert torch.allclose(b0, net.cell.neuron.V_th.expand_as(b0).to(b0.dtype))  # b starts at 0
    assert (tr["threshold"][:, 1:] >= tr["threshold"][:, :1]).all()  # adaptation raises it


def test_rate_run_has_no_firing_rate_figure(tmp_path, capsys):
    out = tmp_path / "rate"
    assert main(["run", "training.steps=2", "training.eval_every=2", "training.eval_trials=16",
                 "model.n_hidden=16", "--out", str(out), "--quiet"]) == 0
    assert not (out / "figures" / "firing_rates.png").exists()


def test_spiking_run_with_synaptic_diversity_resumes_exactly(tmp_path):
    sd = ("synaptic_diversity={fuzzy_learning_rates: true, crystallization: true, "
          "volume_dependent_lr: {base_lr: 1.0}, rejuvenation: {every: 3, replacement: small}}")
    full, half = tmp_path / "full", tmp_path / "half"
    Runner(load_run_config(CONFIG, [*TINY, "training.steps=4", sd]), full, progress=False).fit()
    Runner(load_run_config(CONFIG, [*TINY, "training.steps=2", sd]), half, progress=False).fit()
    Runner(load_run_config(CONFIG, [*TINY, "training.steps=4", sd]), half, resume=True,
           progress=False).fit()
    losses = [[json.loads(x)["loss"] for x in (f / "metrics.jsonl").read_text().splitlines()]
              for f in (full, half)]
    assert len(losses[0]) == 4 and losses[0] == losses[1]
    w = torch.load(full / "checkpoint.pt", weights_only=True)["model"]
    plain = tmp_path / "plain"
    Runner(load_run_config(CONFIG, [*TINY, "training.steps=4"]), plain, progress=False).fit()
    v = torch.load(plain / "checkpoint.pt", weights_only=True)["model"]
    assert any(not torch.equal(w[k], v[k]) for k in w if k in v)  # the transforms acted


def test_spiking_run_checkpointed_bptt_equals_full_bptt(tmp_path):
    runs = {}
    for mode in ("full", "checkpoint"):
        out = tmp_path / mode
        Runner(load_run_config(CONFIG, [*TINY, "training.steps=3",
                                        f"training.bptt={{mode: {mode}, chunk: 17}}"]),
               out, progress=False).fit()
        runs[mode] = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    for k, v in runs["full"].items():
        torch.testing.assert_close(runs["checkpoint"][k], v, rtol=1e-5, atol=1e-6)


def test_spiking_run_truncated_bptt_keeps_the_forward(tmp_path):
    outs = {}
    for mode in ("full", "truncated"):
        out = tmp_path / mode
        Runner(load_run_config(CONFIG, [*TINY, "training.steps=1",
                                        f"training.bptt={{mode: {mode}, chunk: 17}}"]),
               out, progress=False).fit()
        outs[mode] = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["loss"]
    assert outs["truncated"] == pytest.approx(outs["full"], rel=1e-5)  # same forward, same loss
