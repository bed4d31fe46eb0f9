"""Tests of the figures module: PNGs are written, inputs validated, E/I marked."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from bionn.viz import (
    plot_example_trials,
    plot_training_curve,
    plot_weight_matrix,
    save_figure,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_side: int = 100) -> None:
    """A real, non-trivial PNG: signature, an IHDR size, and more than a blank image."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= min_side and height >= min_side, (width, height)
    assert len(data) > 5_000  # a blank canvas compresses to far less
    assert not list(path.parent.glob(f".{path.name}.*"))  # no temp file left behind


def strip_gids(fig: Figure) -> set[str]:
    return {im.get_gid() for ax in fig.axes for im in ax.images if im.get_gid()}


def records():
    recs = [
        {"step": s, "loss": 2.0 * np.exp(-s / 50), "accuracy": s / 200} for s in range(0, 200, 5)
    ]
    recs += [
        {"step": s, "eval_accuracy": s / 250, "eval_loss": 2.5 * np.exp(-s / 50)}
        for s in range(0, 200, 50)
    ]
    return recs


def trial_batch(lib: str, batch: int = 4, steps: int = 40, n_units: int = 20):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, steps, 3, generator=g)
    y = torch.zeros(batch, steps, 2)
    y[:, 30:, 0] = 1.0
    out = y + 0.1 * torch.randn(batch, steps, 2, generator=g)
    r = torch.rand(batch, steps, n_units, generator=g)
    mask = torch.ones(batch, steps)
    mask[:, :30] = 0
    arrays = (x, y, out, r, mask)
    return arrays if lib == "torch" else tuple(a.numpy() for a in arrays)


# --- save_figure ---------------------------------------------------------------------------------


def test_save_figure_atomic_and_creates_folders(tmp_path):
    fig = Figure()
    ax = fig.add_subplot()
    ax.plot(np.sin(np.linspace(0, 10, 200)))
    ax.set_title("a sine")
    out = save_figure(fig, tmp_path / "sub" / "fig.png")
    assert out == tmp_path / "sub" / "fig.png"
    assert_png(out)
    assert os.listdir(tmp_path / "sub") == ["fig.png"]
    # Overwriting replaces the file in place.
    save_figure(fig, str(out))
    assert_png(out)


def test_save_figure_failure_leaves_no_temp_file(tmp_path):
    fig = Figure()
    fig.add_subplot().plot([0, 1])
    with pytest.raises(ValueError):
        save_figure(fig, tmp_path / "fig.notaformat")
    assert os.listdir(tmp_path) == []


# --- plot_training_curve -----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["list", "jsonl"])
def test_training_curve_png(tmp_path, source):
    recs = records()
    if source == "jsonl":
        src = tmp_path / "metrics.jsonl"
        src.write_text("\n".join(json.dumps(r) for r in recs) + "\n\n")
        recs = src
    fig = plot_training_curve(recs, path=tmp_path / "curve.png")
    assert_png(tmp_path / "curve.png")
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_title() == "loss" and loss_ax.get_yscale() == "log"
    assert acc_ax.get_title() == "accuracy" and acc_ax.get_yscale() == "linear"
    # The eval series is drawn as markers only at the eval steps.
    eval_line = next(ln for ln in acc_ax.get_lines() if ln.get_label() == "eval")
    assert eval_line.get_linestyle() == "None" and eval_line.get_marker() == "o"
    np.testing.assert_array_equal(eval_line.get_xdata(), [0, 50, 100, 150])


def test_training_curve_skips_absent_keys_and_non_positive_loss():
    recs = [{"step": 0, "loss": 0.0}, {"step": 1, "loss": -1.0, "phase": "train"}]
    fig = plot_training_curve(recs, keys=("loss", "accuracy", "reward"))
    assert [ax.get_title() for ax in fig.axes] == ["loss"]
    assert fig.axes[0].get_yscale() == "linear"  # not all positive: no log scale


def test_training_curve_errors(tmp_path):
    with pytest.raises(ValueError, match="no training records"):
        plot_training_curve([])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="no training records"):
        plot_training_curve(empty)
    with pytest.raises(ValueError, match=r"numeric keys present: \['reward'\]"):
        plot_training_curve([{"step": 0, "reward": 1.0}])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 0, "loss": 1}\n{not json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        plot_training_curve(bad)


# --- plot_weight_matrix ------------------------------------------------------------------------


def ei_weight(n_e: int = 24, n_i: int = 8):
    sign = torch.tensor([1.0] * n_e + [-1.0] * n_i)
    w = torch.rand(n_e + n_i, n_e + n_i, generator=torch.Generator().manual_seed(1)) * sign
    return w, sign


@pytest.mark.parametrize("lib", ["torch", "numpy"])
def test_weight_matrix_png_and_ei_strip(tmp_path, lib):
    w, sign = ei_weight()
    if lib == "numpy":
        w, sign = w.numpy(), sign.numpy()
    fig = plot_weight_matrix(w, path=tmp_path / "w.png", sign=sign)
    assert_png(tmp_path / "w.png")
    main = next(ax for ax in fig.axes if any(im.get_gid() == "weights" for im in ax.images))
    assert main.get_xlabel() == "presynaptic"
    # Diverging colormap with limits symmetric about 0.
    im = main.images[0]
    lo, hi = im.get_clim()
    assert lo == -hi and hi == pytest.approx(float(np.abs(np.asarray(w)).max()))
    # Square matrix: the cell types are marked along both axes, from the sign vector.
    assert strip_gids(fig) >= {"ei-strip-pre", "ei-strip-post"}
    pre = next(im for ax in fig.axes for im in ax.images if im.get_gid() == "ei-strip-pre")
    np.testing.assert_array_equal(np.asarray(pre.get_array()).ravel(), np.asarray(sign))
    assert any(ax.get_ylabel() == "postsynaptic" for ax in fig.axes)
    # One dashed boundary line per axis at the E/I border (between columns 23 and 24).
    dashed = [ln for ln in main.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 2
    texts = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert {"E", "I"} <= texts


def test_weight_matrix_without_sign_has_no_strip():
    w, _ = ei_weight()
    assert "ei-strip-pre" not in strip_gids(plot_weight_matrix(w))


def test_weight_matrix_interleaved_types_and_groups(tmp_path):
    sign = torch.tensor([1.0, -1.0, 1.0, 1.0] * 10)
    groups = np.repeat([0, 1], 20)
    w = torch.randn(40, 40) * sign
    fig = plot_weight_matrix(
        w, path=tmp_path / "w.png", sign=sign, groups=groups, group_names=["PFC", "PPC"]
    )
    assert_png(tmp_path / "w.png")
    assert strip_gids(fig) >= {"ei-strip-pre", "ei-strip-post"}
    main = fig.axes[0]
    # Too many E/I blocks for boundary lines; a legend says which colour is which.
    assert not [ln for ln in main.get_lines() if ln.get_linestyle() == "--"]
    legend_texts = {
        t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().texts
    }
    assert legend_texts == {"E (30)", "I (10)"}
    # One solid area boundary per axis, and the areas named.
    assert len([ln for ln in main.get_lines() if ln.get_linestyle() == "-"]) == 2
    assert [t.get_text() for t in main.get_xticklabels()] == ["PFC", "PPC"]


def test_weight_matrix_non_square(tmp_path):
    _, sign = ei_weight()
    readout = torch.randn(3, 32)
    fig = plot_weight_matrix(readout, path=tmp_path / "readout.png", sign=sign, title="readout")
    assert_png(tmp_path / "readout.png", min_side=50)
    assert strip_gids(fig) == {"weights", "ei-strip-pre"}  # no row strip for a readout
    fig = plot_weight_matrix(torch.randn(32, 5), post_sign=sign)
    assert strip_gids(fig) == {"weights", "ei-strip-post"}


def test_weight_matrix_shape_errors():
    w, sign = ei_weight()
    with pytest.raises(ValueError, match=r"sign has 31 entries .* 32 presynaptic"):
        plot_weight_matrix(w, sign=sign[:-1])
    with pytest.raises(ValueError, match=r"sign has 32 entries .*\(3, 5\) has 5 presynaptic"):
        plot_weight_matrix(torch.randn(3, 5), sign=sign)
    with pytest.raises(ValueError, match=r"groups has 2 entries .* 32 presynaptic"):
        plot_weight_matrix(w, groups=[0, 1])
    with pytest.raises(ValueError, match="2-D"):
        plot_weight_matrix(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"\+1 \(E\) or -1 \(I\)"):
        plot_weight_matrix(torch.randn(3, 3), sign=[1, 0, -1])


# --- plot_example_trials -----------------------------------------------------------------------


@pytest.mark.parametrize("lib", ["torch", "numpy"])
def test_example_trials_png(tmp_path, lib):
    x, y, out, r, mask = trial_batch(lib)
    sign = np.array([1.0] * 16 + [-1.0] * 4)
    fig = plot_example_trials(
        x,
        y,
        out,
        r,
        path=tmp_path / "trials.png",
        mask=mask,
        n_trials=3,
        n_units=10,
        dt=20.0,
        sign=sign,
    )
    assert_png(tmp_path / "trials.png")
    axes = np.array(fig.axes).reshape(3, 3)  # rows: inputs, outputs, rates; a column per trial
    assert [ax.get_title() for ax in axes[0]] == ["trial 0", "trial 1", "trial 2"]
    assert axes[-1, 0].get_xlabel() == "time (ms)"
    # Time in ms: step * dt.
    first = axes[0, 0].get_lines()[0]
    assert first.get_xdata()[-1] == pytest.approx(39 * 20.0)
    # Targets dashed and outputs solid, matching colours per channel.
    lines = axes[1, 0].get_lines()
    dashed = [ln for ln in lines if ln.get_linestyle() == "--"]
    solid = [ln for ln in lines if ln.get_linestyle() == "-"]
    assert len(dashed) == len(solid) == 2
    assert [ln.get_color() for ln in dashed] == [ln.get_color() for ln in solid]
    # 10 units drawn, E red and I blue in proportion (8 E, 2 I).
    unit_colors = [ln.get_color() for ln in axes[2, 0].get_lines()]
    assert len(unit_colors) == 10
    assert unit_colors.count("#1f77b4") == 2 and unit_colors.count("#d62728") == 8
    # Unscored time shaded in every panel of the trial.
    assert all(len(ax.patches) == 1 for ax in axes[:, 0])


def test_example_trials_optional_rows_and_single_trial():
    x, y, out, r, _ = trial_batch("torch", batch=1)
    fig = plot_example_trials(x[0], None, out[0], None, n_trials=5)
    assert len(fig.axes) == 2  # inputs and outputs of the one trial


def test_example_trials_shape_errors():
    x, y, out, r, mask = trial_batch("torch")
    with pytest.raises(ValueError, match="sign has 5 entries but rates have 20 units"):
        plot_example_trials(x, y, out, r, sign=torch.ones(5))
    with pytest.raises(ValueError, match="outputs has"):
        plot_example_trials(x, y, out[:, :10], r)
    with pytest.raises(ValueError, match="targets have 2 channels but outputs have 1"):
        plot_example_trials(x, y, out[..., :1], r)
    with pytest.raises(ValueError, match="mask has shape"):
        plot_example_trials(x, y, out, r, mask=mask[:, :5])


# --- no global pyplot state --------------------------------------------------------------------


def test_does_not_import_pyplot(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from bionn.viz import plot_weight_matrix, plot_training_curve, plot_example_trials
        plot_weight_matrix(np.eye(4), sign=[1, 1, 1, -1], path={str(tmp_path / "w.png")!r})
        plot_training_curve([{{"step": 0, "loss": 1.0}}])
        plot_example_trials(np.ones((1, 5, 2)), None, np.ones((1, 5, 1)), np.ones((1, 5, 3)))
        assert "matplotlib.pyplot" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_accuracy_by_condition_panels_and_errors(tmp_path):
    import numpy as np

    from bionn.viz import plot_accuracy_by_condition

    rng = np.random.default_rng(0)
    coh = rng.choice([0.0, 0.1, 0.5], size=600)
    correct = rng.random(600) < 0.5 + coh
    info = {"coherence": coh, "decision_start": rng.integers(0, 50, 600), "context": rng.integers(0, 2, 600)}
    fig = plot_accuracy_by_condition(correct, info, tmp_path / "acc.png")
    assert [ax.get_xlabel() for ax in fig.axes] == ["coherence", "context"]  # timing keys skipped
    assert (tmp_path / "acc.png").read_bytes()[:4] == b"\x89PNG"
    line = fig.axes[0].lines[0]
    ys = line.get_ydata()
    assert ys[0] < 0.6 < ys[2]  # accuracy rises with coherence
    with pytest.raises(ValueError, match="has 3 values"):
        plot_accuracy_by_condition(correct, {"coherence": coh[:3]})
    with pytest.raises(ValueError, match="no condition"):
        plot_accuracy_by_condition(correct, {"decision_start": info["decision_start"]})
