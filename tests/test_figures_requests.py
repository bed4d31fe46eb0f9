"""Figure requests: probabilities for cross-entropy runs, channel names, psychometric curves,
the CANN colour scale, E/I rasters, log sweep axes, integer epochs, single-seed tables."""

from __future__ import annotations

import math

import matplotlib.colors as mcolors
import numpy as np
import pytest
import torch

from bionn.spiking import SpikeEvents
from bionn.tasks import TASKS, make_task
from bionn.viz import (
    plot_bump,
    plot_example_trials,
    plot_psychometric,
    plot_raster,
    plot_training_curve,
)
from bionn.viz._common import E_COLOR, I_COLOR

# the NeuroGym-style tasks (fixation in channel 0); evidence accumulation has spike inputs
NATIVE = [name for name in TASKS if name not in ("neurogym", "evidence_accumulation")]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


# --- 1. cross-entropy outputs as probabilities ------------------------------------------------------


def test_example_trials_show_softmax_probabilities_of_logits():
    task = make_task("perceptual_decision_making", dt=20)
    batch = task.sample(3, torch.Generator().manual_seed(0))
    logits = 40.0 * torch.randn(*batch.targets.shape, generator=torch.Generator().manual_seed(1))
    fig = plot_example_trials(batch.inputs, batch.targets, logits, None, n_trials=2,
                              outputs_as="probability")
    ax = np.array(fig.axes).reshape(2, 2)[1, 0]
    assert ax.get_ylabel() == "P(channel) (softmax)"
    solid = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    ys = np.stack([ln.get_ydata() for ln in solid])
    assert len(solid) == 3 and ys.min() >= 0.0 and ys.max() <= 1.0
    np.testing.assert_allclose(ys.sum(0), 1.0, atol=1e-6)  # a distribution at every step
    assert ax.get_ylim() == pytest.approx((-0.03, 1.03))
    # The default draws the raw values.
    raw = np.array(plot_example_trials(batch.inputs, batch.targets, logits, None,
                                       n_trials=2).axes).reshape(2, 2)[1, 0]
    assert raw.get_ylabel() == "output"
    assert max(np.abs(ln.get_ydata()).max() for ln in raw.get_lines()) > 1.0
    with pytest.raises(ValueError, match="outputs_as"):
        plot_example_trials(batch.inputs, batch.targets, logits, None, outputs_as="logits")


# --- 2. channel names ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NATIVE)
def test_native_tasks_name_every_channel(name):
    task = make_task(name)
    assert task.input_names is not None and len(task.input_names) == task.n_input
    assert task.output_names is not None and len(task.output_names) == task.n_output
    if name != "flip_flop":  # the flip-flop has no fixation period
        assert task.output_names[0] == "fixation" and task.input_names[0].endswith("fixation")
    assert all(isinstance(n, str) and n for n in (*task.input_names, *task.output_names))


def test_channel_names_follow_task_parameters():
    task = make_task("anti_saccade", n_directions=4)
    assert task.input_names == ("fixation", "direction 0°", "direction 90°", "direction 180°",
                                "direction 270°", "pro cue", "anti cue")
    assert task.output_names[1:] == ("saccade 0°", "saccade 90°", "saccade 180°", "saccade 270°")
    assert make_task("delayed_match_to_sample", n_stimuli=3).input_names == (
        "fixation", "stimulus 0", "stimulus 1", "stimulus 2")


def test_example_trials_legends_use_channel_names():
    task = make_task("perceptual_decision_making", dt=20)
    b = task.sample(2, torch.Generator().manual_seed(0))
    fig = plot_example_trials(b.inputs, b.targets, b.targets, torch.rand(2, b.inputs.shape[1], 8),
                              n_trials=1, input_names=task.input_names,
                              output_names=task.output_names)
    axes = fig.axes
    assert _legend_texts(axes[0]) == ["fixation", "stimulus 1", "stimulus 2"]
    assert _legend_texts(axes[1])[2:5] == ["fixation", "choice 1", "choice 2"]
    # Many inputs are a heat map: the names label its rows.
    task = make_task("anti_saccade", dt=20)
    b = task.sample(1, torch.Generator().manual_seed(0))
    fig = plot_example_trials(b.inputs, b.targets, None, None, input_names=task.input_names,
                              output_names=task.output_names)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(task.input_names)
    assert "saccade 45°" in _legend_texts(fig.axes[1])
    with pytest.raises(ValueError, match="input_names has 2 names but there are 11 input"):
        plot_example_trials(b.inputs, b.targets, None, None, input_names=["a", "b"])


def test_run_passes_probabilities_and_names_and_writes_the_psychometric_curve(
        tmp_path, monkeypatch, capsys):
    from bionn import viz
    from bionn.experiment import trainer
    from bionn.experiment.cli import main

    seen = {}
    real = viz.plot_example_trials

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(viz, "plot_example_trials", spy)
    # a perfect observer: every trial responds with its correct channel
    monkeypatch.setattr(trainer, "_choices", lambda task, out, batch: batch.labels.cpu())
    out = tmp_path / "r"
    assert main(["run", "model.n_hidden=16", "training.batch_size=8", "training.eval_trials=64",
                 "training.eval_every=2", "training.checkpoint_every=2",
                 "training.example_trials=1", "training.steps=2", "loss.task=cross_entropy",
                 "--out", str(out), "--quiet"]) == 0
    assert seen["outputs_as"] == "probability"
    assert seen["output_names"] == ("fixation", "choice 1", "choice 2")
    assert seen["input_names"] == ("fixation", "stimulus 1", "stimulus 2")
    assert (out / "figures/psychometric.png").read_bytes()[:4] == b"\x89PNG"


def test_run_without_choices_skips_the_psychometric_curve(tmp_path, capsys):
    from bionn.experiment.cli import main

    out = tmp_path / "r"
    assert main(["run", "task.name=go_no_go", "model.n_hidden=16", "training.batch_size=8",
                 "training.eval_trials=32", "training.eval_every=2",
                 "training.checkpoint_every=2", "training.example_trials=1", "training.steps=2",
                 "--out", str(out), "--quiet"]) == 0
    assert (out / "figures/example_trials.png").is_file()
    assert not (out / "figures/psychometric.png").exists()


# --- 3. psychometric curves ------------------------------------------------------------------------


def test_psychometric_points_and_fitted_curve():
    rng = np.random.default_rng(0)
    levels = np.array([-0.5, -0.2, -0.05, 0.0, 0.05, 0.2, 0.5])
    coh = rng.choice(levels, 2000)
    chose = rng.random(2000) < 1 / (1 + np.exp(-8 * coh))
    fig = plot_psychometric(coh, chose, xlabel="coherence", ylabel="P(choice 1)")
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("coherence", "P(choice 1)")
    points = next(ln for ln in ax.get_lines() if ln.get_marker() == "o")
    np.testing.assert_allclose(points.get_xdata(), levels)
    p = np.asarray(points.get_ydata())
    assert p.min() >= 0 and p.max() <= 1 and p[0] < 0.2 and p[-1] > 0.8
    curve = max(ax.get_lines(), key=lambda ln: len(ln.get_xdata()))  # the 200-point fit
    y = np.asarray(curve.get_ydata())
    assert len(y) == 200 and y.min() >= 0 and y.max() <= 1 and (np.diff(y) > 0).all()
    assert abs(np.interp(0.0, curve.get_xdata(), y) - 0.5) < 0.1
    # one curve per group, named in the legend; many levels are binned
    fig = plot_psychometric(rng.normal(size=600), rng.random(600) < 0.5,
                            groups=rng.integers(0, 2, 600), group_names={0: "motion", 1: "colour"},
                            max_levels=8)
    assert _legend_texts(fig.axes[0]) == ["motion", "colour"]
    assert all(len(ln.get_xdata()) <= 8 for ln in fig.axes[0].get_lines()
               if ln.get_marker() == "o")
    with pytest.raises(ValueError, match="evidence has 3 trials but chose has 2"):
        plot_psychometric([0.1, 0.2, 0.3], [True, False])


@pytest.mark.parametrize("name", ["perceptual_decision_making", "context_dependent_integration",
                                  "parametric_working_memory"])
def test_psychometric_data_signs_evidence_by_the_correct_side(name):
    from bionn.experiment.trainer import _choices, psychometric_data

    task = make_task(name, dt=20)
    b = task.sample(200, torch.Generator().manual_seed(0))
    choices = _choices(task, b.targets, b)  # the targets respond correctly
    assert torch.equal(choices, b.labels)
    data = psychometric_data(b.info, choices, b.labels, task.output_names)
    ev, chose = data["evidence"], data["chose"]
    nonzero = ev != 0
    assert torch.equal(chose[nonzero], ev[nonzero] > 0)  # correct responses: sign = choice
    assert data["ylabel"] == f"P({task.output_names[1]})"
    if name == "perceptual_decision_making":
        torch.testing.assert_close(ev, b.info["coherence"].double())
    elif name == "parametric_working_memory":
        torch.testing.assert_close(ev, (b.info["f1"] - b.info["f2"]).double())
    else:
        assert set(data["group_names"].values()) == {"motion context", "colour context"}
        cued = torch.where(b.info["context"] == 0, b.info["coherence_motion"],
                           b.info["coherence_color"])
        torch.testing.assert_close(ev, cued.double())
    fig = plot_psychometric(ev, chose, **{k: v for k, v in data.items()
                                           if k not in ("evidence", "chose")})
    assert fig.axes[0].get_ylabel() == data["ylabel"]


@pytest.mark.parametrize("name", ["go_no_go", "delayed_match_to_sample", "anti_saccade"])
def test_psychometric_data_is_none_without_graded_evidence(name):
    from bionn.experiment.trainer import psychometric_data

    task = make_task(name, dt=20)
    b = task.sample(64, torch.Generator().manual_seed(0))
    assert psychometric_data(b.info, b.labels, b.labels, task.output_names) is None


# --- 4. the CANN colour scale ----------------------------------------------------------------------


def _bump(t, x, centre, height):
    return height * np.exp(-((x[None] - centre) ** 2) / 0.5)


def test_bump_colour_scale_shows_the_persistent_bump():
    t = np.arange(0.0, 100.0, 0.5)
    x = np.linspace(-math.pi, math.pi, 65)[:-1]
    cue = t <= 50.0
    height = np.where(cue, 10.0, 0.1 + 2.0 * np.exp(-(t - 50.0) / 2.0))  # transient, then 0.1
    u = _bump(t, x, 0.0, 1.0) * height[:, None]
    stim = np.where(cue, 0.0, np.nan)
    fig = plot_bump(t, x, u, stimulus=stim)
    vmin, vmax = fig.axes[0].collections[0].get_clim()
    persistent = u[-1].max()
    assert vmax < 10.0 / 10  # the transient peak saturates ...
    assert persistent >= vmin + 0.9 * (vmax - vmin)  # ... the lasting bump fills the scale
    assert "t > 50 ms" in fig.axes[1].get_ylabel()
    # No stimulus end known: the full range, as before.
    fig = plot_bump(t, x, u)
    assert fig.axes[0].collections[0].get_clim() == pytest.approx((u.min(), u.max()))
    # A bump that dies out: nothing to fit, the full range.
    dead = u * cue[:, None]
    assert plot_bump(t, x, dead, stimulus=stim).axes[0].collections[0].get_clim()[1] == (
        pytest.approx(dead.max()))


def test_simulated_cann_bump_is_visible_after_the_cue(tmp_path, monkeypatch, capsys):
    from bionn.experiment.cli import main
    from bionn.viz import spiking

    figs = []
    real = spiking.plot_bump
    monkeypatch.setattr(spiking, "plot_bump", lambda *a, **k: figs.append(real(*a, **k))
                        or figs[-1])
    assert main(["simulate", "cann", "network.params.n=64", "--out", str(tmp_path / "c"),
                 "--quiet"]) == 0  # template matching: cues until 70 ms, then none until 100
    with np.load(tmp_path / "c/traces.npz", allow_pickle=False) as z:
        u = z["cann.u"][0]
    vmin, vmax = figs[0].axes[0].collections[0].get_clim()
    assert vmax < u.max() / 10  # the driven bump during the cue saturates
    assert u[-1].max() >= vmin + 0.8 * (vmax - vmin)  # the bump left at the end is bright


# --- 5. E/I rasters --------------------------------------------------------------------------------


def _poisson(n: int, p: float, steps: int = 1000, seed: int = 0) -> SpikeEvents:
    g = torch.Generator().manual_seed(seed)
    tr, st, ne = (torch.rand(1, steps, n, generator=g) < p).nonzero().unbind(1)
    return SpikeEvents(tr, st, ne, n, steps, 1, 0.1)


def test_raster_splits_a_mixed_group_into_coloured_e_and_i_blocks():
    sp = _poisson(100, 0.01)
    sign = torch.tensor([1.0] * 80 + [-1.0] * 20)
    fig = plot_raster({"P": sp}, sign={"P": sign})
    ax, ax_rate = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["E", "I"]
    e_line, i_line = [ln for ln in ax.get_lines() if ln.get_marker() == "|"]
    assert mcolors.to_rgba(e_line.get_color()) == mcolors.to_rgba(E_COLOR)
    assert mcolors.to_rgba(i_line.get_color()) == mcolors.to_rgba(I_COLOR)
    assert np.asarray(e_line.get_ydata()).max() < 80 <= np.asarray(i_line.get_ydata()).min()
    assert e_line.get_ydata().size + i_line.get_ydata().size == sp.count()
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["I (20 neurons)", "E (80 neurons)"]
    assert [mcolors.to_rgba(h.get_color()) for h in legend.legend_handles] == [
        mcolors.to_rgba(I_COLOR), mcolors.to_rgba(E_COLOR)]
    assert _legend_texts(ax_rate) == ["E", "I"]
    # interleaved types are still drawn as ordered blocks, E first
    fig = plot_raster({"P": sp}, sign={"P": torch.tensor([1.0, -1.0] * 50)}, max_neurons=10)
    assert _legend_texts(fig.axes[0]) == ["I (10 of 50 neurons)", "E (10 of 50 neurons)"]
    with pytest.raises(ValueError, match="sign\\['P'\\] has 3 entries"):
        plot_raster({"P": sp}, sign={"P": [1, 1, -1]})


def test_simulate_reads_cell_types_from_the_projections():
    from bionn.experiment.simulate import _cell_signs
    from bionn.spiking.networks import coba, cuba, ei_balanced

    g = torch.Generator().manual_seed(0)
    for build in (coba, cuba):
        signs = _cell_signs(build(400, generator=g))
        assert list(signs) == ["P"]
        assert torch.equal(signs["P"], torch.tensor([1.0] * 320 + [-1.0] * 80))
    assert _cell_signs(ei_balanced(20, 20, generator=g)) == {}  # one type per group already


# --- 6. log sweep axes -----------------------------------------------------------------------------


def _sweep_figure(monkeypatch, values, key="training.optimizer.lr", log_keys=None):
    from bionn.experiment import sweep
    from bionn.viz import _common

    figs = []
    monkeypatch.setattr(_common, "save_figure", lambda fig, path: figs.append(fig))
    rows = [{"trial": f"t{i}{s}", key: v, "seed": s, "accuracy": 0.5 + 0.1 * s,
             "status": "finished", "error": None} for i, v in enumerate(values) for s in (0, 1)]
    sweep._figure(rows, [key], "accuracy", None, log_keys)
    return figs[0].axes[0]


def test_sweep_figure_uses_a_log_axis_for_log_spaced_values(monkeypatch):
    from bionn.experiment.sweep import _log_spaced

    assert _log_spaced([1e-3, 3e-3, 1e-2]) and _log_spaced([32, 64, 128, 256])
    assert not _log_spaced([1, 2, 3]) and not _log_spaced([0.1, 0.2, 0.3, 0.4])
    assert not _log_spaced([-1, 1, 10]) and not _log_spaced([1e-3, 2e-3])
    ax = _sweep_figure(monkeypatch, [1e-3, 3e-3, 1e-2])
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.001", "0.003", "0.01"]
    assert _sweep_figure(monkeypatch, [1, 2, 3]).get_xscale() == "linear"
    # a loguniform draw is plotted on a log axis whatever values came out
    assert _sweep_figure(monkeypatch, [0.002, 0.004], log_keys={"training.optimizer.lr"}
                         ).get_xscale() == "log"


# --- 7. integer epoch ticks ------------------------------------------------------------------------


def test_training_curve_of_epochs_has_integer_ticks():
    records = [{"epoch": e, "step": 50 * e, "loss": 1.0 / e, "accuracy": 0.3 * e}
               for e in (1, 2, 3)]
    fig = plot_training_curve(records)
    for ax in fig.axes:
        assert ax.get_xlabel() == "epoch"
        ticks = ax.get_xticks()
        assert len(ticks) >= 2 and np.allclose(ticks, np.round(ticks))
        np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), [1, 2, 3])
    ax = plot_training_curve([{"step": s, "loss": 1.0} for s in (1, 2)]).axes[0]
    assert ax.get_xlabel() == "step" and np.allclose(ax.get_xticks(), np.round(ax.get_xticks()))


# --- 8. no "± 0" for one seed ----------------------------------------------------------------------


def test_tables_print_no_spread_for_a_single_seed():
    from bionn.experiment.compare import format_table
    from bionn.experiment.sweep import _tables

    one = [{"method": "bp", "accuracy_mean": 0.9, "accuracy_sd": 0.0, "weight_angle_mean": None,
            "grad_angle_mean": None, "n_seeds": 1, "accuracys": [0.9]}]
    two = [{**one[0], "accuracy_mean": 0.85, "accuracy_sd": 0.07, "n_seeds": 2,
            "accuracys": [0.8, 0.9]}]
    assert "| bp | 0.900 |" in format_table(one) and "±" not in format_table(one)
    assert "| bp | 0.850 ± 0.070 |" in format_table(two)
    rows = [{"trial": "a", "lr": 0.1, "seed": 0, "accuracy": 0.9, "status": "finished",
             "error": None},
            {"trial": "b", "lr": 0.2, "seed": 0, "accuracy": 0.8, "status": "finished",
             "error": None},
            {"trial": "c", "lr": 0.2, "seed": 1, "accuracy": 0.6, "status": "finished",
             "error": None}]
    _, md, _ = _tables(rows, ["lr"], "accuracy", "max")
    lines = md.splitlines()
    assert "| 0.1 | 0.9 |  | 1 |" in lines  # one seed: no sd
    assert "| 0.2 | 0.7 | 0.1414 | 2 |" in lines
