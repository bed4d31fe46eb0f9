"""The experiment runner: output folder, reproducibility, resume and the CLI contract."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bionn.experiment import ConfigError, Runner, load_config
from bionn.experiment.checkpoint import load_checkpoint, read_jsonl
from bionn.experiment.cli import main

SMALL = ["model.n_hidden=24", "training.batch_size=16", "training.eval_trials=64",
         "training.eval_every=4", "training.checkpoint_every=4", "training.example_trials=2"]


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in read_jsonl(out / "metrics.jsonl")]


def test_run_writes_the_output_folder(tmp_path, capsys):
    rc = main(["run", *SMALL, "training.steps=6", "--out", str(tmp_path / "r"), "--quiet"])
    assert rc == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert set(summary) >= {"accuracy", "loss", "out"} and "out_dir" not in summary
    assert summary["out"] == str(tmp_path / "r") and 0 <= summary["accuracy"] <= 1
    out = tmp_path / "r"
    for name in ["config.yaml", "metrics.jsonl", "checkpoint.pt", "final.json",
                 "figures/training_curve.png", "figures/recurrent_weights.png",
                 "figures/example_trials.png", "figures/accuracy_by_condition.png"]:
        assert (out / name).is_file(), name
    assert (out / "figures/example_trials.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert "eval_accuracy" in records[3] and "eval_accuracy" not in records[2]
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["step"] == 6
    # The resolved config holds every default and reloads to the same run.
    assert load_config(out / "config.yaml") == load_config(None, [*SMALL, "training.steps=6"])


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    runs = []
    for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
        cfg = load_config(None, [*SMALL, "training.steps=5", f"experiment.seed={seed}"])
        Runner(cfg, tmp_path / name, progress=False).fit()
        runs.append(_losses(tmp_path / name))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_resume_extends_a_finished_run_exactly(tmp_path):
    full = load_config(None, [*SMALL, "training.steps=10"])
    Runner(full, tmp_path / "full", progress=False).fit()
    Runner(load_config(None, [*SMALL, "training.steps=6"]), tmp_path / "part", progress=False).fit()
    Runner(full, tmp_path / "part", resume=True, progress=False).fit()
    assert _losses(tmp_path / "part") == pytest.approx(_losses(tmp_path / "full"), rel=1e-6, abs=0)
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "checkpoint.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)


def test_existing_run_is_not_overwritten_and_resume_checks_config(tmp_path):
    cfg = load_config(None, [*SMALL, "training.steps=2"])
    Runner(cfg, tmp_path / "r", progress=False).fit()
    with pytest.raises(ConfigError, match="--resume"):
        Runner(cfg, tmp_path / "r", progress=False)
    other = load_config(None, [*SMALL, "training.steps=4", "training.optimizer.lr=0.1"])
    with pytest.raises(ConfigError, match="differs"):
        Runner(other, tmp_path / "r", resume=True, progress=False).fit()
    with pytest.raises(ConfigError, match="no checkpoint"):
        Runner(cfg, tmp_path / "empty", resume=True, progress=False)


def test_cli_reports_config_errors_without_traceback(tmp_path, capsys):
    rc = main(["run", "model.tau=-1", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "model.tau" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists(), "no work (no folder) before validation passes"


def _bionn(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "bionn.experiment.cli", "run", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_interrupt_then_resume_loses_nothing(tmp_path):
    args = [*SMALL, "training.steps=60", "training.checkpoint_every=1000", "--quiet"]
    ref = _bionn(*args, "--out", str(tmp_path / "ref"))
    ref_out, ref_err = ref.communicate(timeout=600)
    assert ref.returncode == 0, ref_err

    proc = _bionn(*args, "--out", str(tmp_path / "cut"))
    metrics = tmp_path / "cut" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(read_jsonl(metrics)) < 10:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "--resume" in err
    cut_step = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"]
    assert 10 <= cut_step < 60, "the interrupt must land mid-run for this test to mean anything"

    res = _bionn("--out", str(tmp_path / "cut"), "--resume", "--quiet")
    res_out, res_err = res.communicate(timeout=600)
    assert res.returncode == 0, res_err
    assert _losses(tmp_path / "cut") == pytest.approx(_losses(tmp_path / "ref"), rel=1e-6, abs=0)
    assert [r["step"] for r in read_jsonl(metrics)] == list(range(1, 61))
    assert json.loads(res_out.strip().splitlines()[-1])["accuracy"] == pytest.approx(
        json.loads(ref_out.strip().splitlines()[-1])["accuracy"])


def test_cli_resume_uses_the_saved_config_with_overrides(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["run", *SMALL, "training.steps=4", "--out", out, "--quiet"]) == 0
    assert main(["run", "--out", out, "--resume", "training.steps=7", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 7
    assert [r["step"] for r in read_jsonl(tmp_path / "r" / "metrics.jsonl")] == list(range(1, 8))
    assert load_config(tmp_path / "r" / "config.yaml").model.n_hidden == 24


@pytest.mark.parametrize("method", ["fa", "kp", "wm"])
def test_ctrnn_run_with_feedback_alignment_logs_angles_and_resumes(tmp_path, method):
    full = load_config(None, [*SMALL, "training.steps=8", f"model.method={method}"])
    Runner(full, tmp_path / "full", progress=False).fit()
    records = read_jsonl(tmp_path / "full" / "metrics.jsonl")
    evals = [r for r in records if "eval_accuracy" in r]
    keys = {f"{k}/{p}" for k in ("weight_angle", "grad_angle")
            for p in ("input", "recurrent", "readout")}
    assert all(keys <= set(r) for r in evals)
    assert evals[-1]["grad_angle/readout"] < 1e-3  # the readout's dW is exact under FA
    assert 0 < evals[-1]["grad_angle/recurrent"] < 180
    assert (tmp_path / "full" / "figures" / "alignment.png").is_file()
    # resume restores B with the weights: the continued run equals the uninterrupted one
    half = load_config(None, [*SMALL, "training.steps=4", f"model.method={method}"])
    Runner(half, tmp_path / "half", progress=False).fit()
    Runner(full, tmp_path / "half", resume=True, progress=False).fit()
    assert _losses(tmp_path / "half") == _losses(tmp_path / "full")


def test_ctrnn_run_differs_between_methods(tmp_path):
    losses = {}
    for method in ("bp", "fa"):
        cfg = load_config(None, [*SMALL, "training.steps=4", f"model.method={method}"])
        Runner(cfg, tmp_path / method, progress=False).fit()
        losses[method] = _losses(tmp_path / method)
    # same init and first batch: the same forward (up to the converted operator's float order)
    assert losses["bp"][0] == pytest.approx(losses["fa"][0], rel=1e-6)
    assert losses["bp"][1:] != losses["fa"][1:]


SD = "synaptic_diversity={fuzzy_learning_rates: true, crystallization: true, " \
     "volume_dependent_lr: {base_lr: 1.0}, rejuvenation: {every: 3, replacement: small}}"


def test_ctrnn_run_with_synaptic_diversity_resumes_exactly(tmp_path):
    full = load_config(None, [*SMALL, "training.steps=8", SD])
    Runner(full, tmp_path / "full", progress=False).fit()
    plain = load_config(None, [*SMALL, "training.steps=8"])
    Runner(plain, tmp_path / "plain", progress=False).fit()
    assert _losses(tmp_path / "full")[0] == _losses(tmp_path / "plain")[0]  # same init
    assert _losses(tmp_path / "full")[1:] != _losses(tmp_path / "plain")[1:]
    half = load_config(None, [*SMALL, "training.steps=4", SD])
    Runner(half, tmp_path / "half", progress=False).fit()
    Runner(full, tmp_path / "half", resume=True, progress=False).fit()
    assert _losses(tmp_path / "half") == _losses(tmp_path / "full")
    ckpt = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["model"]
    w = ckpt["parametrizations.weight_rec.original"]
    sign = ckpt["sign"]
    eff = w.abs() * sign  # Dale still holds on the effective weights
    assert (eff[:, sign > 0] >= 0).all() and (eff[:, sign < 0] <= 0).all()


def test_ctrnn_synaptic_diversity_errors_before_any_folder(tmp_path, capsys):
    out = tmp_path / "r"
    rc = main(["run", *SMALL, "synaptic_diversity={weight_splitting: {gamma: 3}}",
               "--out", str(out), "--quiet"])
    assert rc == 2 and not out.exists()
    assert "weight_splitting" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="synaptic_diversity"):
        load_config(None, ["synaptic_diversity={fuzzy_learning_rates: {nu: -1}}"])


def test_bptt_checkpoint_is_exact_and_truncated_keeps_the_forward(tmp_path):
    quiet = [*SMALL, "model.preact_noise=0", "training.steps=4"]
    runs = {}
    for name, extra in {"full": [], "ckpt": ["training.bptt={mode: checkpoint, chunk: 7}"],
                        "trunc": ["training.bptt={mode: truncated, chunk: 7}"],
                        "trunc_long": ["training.bptt={mode: truncated, chunk: 1000}"]}.items():
        Runner(load_config(None, [*quiet, *extra]), tmp_path / name, progress=False).fit()
        runs[name] = _losses(tmp_path / name)
    assert runs["ckpt"] == pytest.approx(runs["full"], rel=1e-5)  # exact gradients
    assert runs["trunc_long"] == pytest.approx(runs["full"], rel=1e-5)  # one chunk = full BPTT
    assert runs["trunc"][0] == pytest.approx(runs["full"][0], rel=1e-6)  # same forward and loss
    assert runs["trunc"][1:] != pytest.approx(runs["full"][1:], rel=1e-4)  # truncated gradients
    with pytest.raises(ConfigError, match="bptt"):
        load_config(None, ["training.bptt={mode: tbptt}"])


ROOT = Path(__file__).parents[1]
DIGITS = str(ROOT / "configs" / "ca_digits_mlp.yaml")


def test_rate_and_classification_runs_go_through_the_one_loop(tmp_path, monkeypatch, capsys):
    from bionn.experiment import runner

    calls = []
    loop = runner.Runner._fit

    def spy(self):
        calls.append(type(self.job).__name__)
        return loop(self)

    monkeypatch.setattr(runner.Runner, "_fit", spy)
    assert main(["run", *SMALL, "training.steps=2", "--out", str(tmp_path / "rate"), "--quiet"]) == 0
    assert main(["run", DIGITS, "training.epochs=1", "training.steps=2", "model.params.hidden=[8]",
                 "--out", str(tmp_path / "clf"), "--quiet"]) == 0
    assert calls == ["RateJob", "ClassifyJob"]
    for kind in ("rate", "clf"):  # one writer: the same files and summary fields
        final = json.loads((tmp_path / kind / "final.json").read_text())
        assert {"name", "seed", "method", "steps", "wall_s", "device", "out",
                "figures"} <= set(final)
        assert (tmp_path / kind / "figures" / "training_curve.png").is_file()


def test_non_finite_loss_stops_with_the_step_and_quantity(tmp_path, monkeypatch, capsys):
    from bionn.experiment.trainer import RateJob

    step_fn = RateJob.train_step

    def poisoned(self, net, model, step):
        out = step_fn(self, net, model, step)
        if step == 2:
            out["task"] = out["task"] * float("nan")
        return out

    monkeypatch.setattr(RateJob, "train_step", poisoned)
    out = tmp_path / "r"
    assert main(["run", *SMALL, "training.steps=6", "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "training stopped at step 3: task = nan (not finite)" in err
    assert "training.optimizer.lr" in err and "Traceback" not in err
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2]


def test_compare_on_a_rate_config(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", str(ROOT / "configs" / "ei_ctrnn_pdm.yaml"), "--methods", "bp,fa",
            "--seeds", "0,1", "--out", str(out), "--quiet", *SMALL, "training.steps=4"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["metric"] == "accuracy"
    rows = {r["method"]: r for r in result["table"]}
    assert list(rows) == ["bp", "fa"] and rows["fa"]["n_seeds"] == 2
    assert all(0 <= a <= 1 for r in rows.values() for a in r["accuracys"])
    assert rows["fa"]["grad_angle_mean"] is not None and rows["bp"]["weight_angle_mean"] is None
    assert "| held-out accuracy |" in (out / "comparison.md").read_text()
    assert (out / "comparison.csv").read_text().startswith("method,accuracy_mean,accuracy_sd")
    assert (out / "alignment.png").is_file() and (out / "fa" / "seed1" / "final.json").is_file()
    # again with --resume: finished runs are read back, the table is the same
    assert main([*argv, "--resume"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["table"] == result["table"]


def test_connectome_kind_runs_from_an_edge_list(tmp_path):
    edges = tmp_path / "edges.csv"
    rows = ["pre,post,weight,sign"] + [f"{i},{(i * 7 + 3) % 12},{1 + i % 3},{1 if i % 4 else -1}"
                                       for i in range(12)] + [f"{i},{(i + 1) % 12},1,1" for i in range(12)]
    edges.write_text("\n".join(rows) + "\n")
    section = (f"model={{kind: connectome, connectome: {{source: {edges}}}, tau: 50.0, "
               "weight_sharing: edge, preact_noise: 0.0}")
    cfg = load_config(None, [section, "training.steps=2", "training.batch_size=8",
                             "training.eval_trials=16", "training.example_trials=1"])
    assert cfg.model.kind == "connectome" and cfg.model.gain == 0.5  # ConnectomeRNN's default
    summary = Runner(cfg, tmp_path / "run", progress=False).fit()
    assert summary["steps"] == 2 and 0 <= summary["accuracy"] <= 1
    with pytest.raises(ConfigError, match="connectome.source"):
        load_config(None, ["model={kind: connectome, connectome: {source: missing.csv}}"])
    with pytest.raises(ConfigError, match="model.n_hidden: unknown key"):
        load_config(None, ["model={kind: connectome, n_hidden: 5}"])


def _edge_list(path: Path) -> Path:
    rows = ["pre,post,weight,sign"] + [f"{i},{(i * 7 + 3) % 12},{1 + i % 3},{1 if i % 4 else -1}"
                                       for i in range(12)] + [f"{i},{(i + 1) % 12},1,1" for i in range(12)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _spatial_args(epochs: int) -> list[str]:
    return [str(ROOT / "configs" / "spatial_contour.yaml"), "data.params.n_train=48",
            "data.params.n_test=16", "data.val_size=0", "model.params.channels=2",
            "model.params.steps=3", "model.params.readout_steps=1", f"training.epochs={epochs}",
            "training.batch_size=16", "training.metrics.alignment_every=0"]


@pytest.mark.parametrize("kind", ["ctrnn", "connectome", "spatial"])
def test_every_model_of_the_core_runs_and_resumes_exactly(tmp_path, kind, capsys):
    """`bionn run` with a config, and `--resume`, for CTRNN, ConnectomeRNN and SpatialNetwork."""
    if kind == "spatial":
        full, part = _spatial_args(2), _spatial_args(1)
        key = "loss"
    else:
        extra = [] if kind == "ctrnn" else [
            f"model={{kind: connectome, connectome: {{source: {_edge_list(tmp_path / 'e.csv')}}}, "
            "tau: 50.0, weight_sharing: edge, preact_noise: 0.0}"]
        base = [*extra, *([] if kind != "ctrnn" else ["model.n_hidden=16"]), "training.batch_size=8",
                "training.eval_trials=16", "training.eval_every=2", "training.checkpoint_every=2",
                "training.example_trials=1", "model.method=fa"]
        full, part, key = [*base, "training.steps=4"], [*base, "training.steps=2"], "loss"
    assert main(["run", *full, "--out", str(tmp_path / "full"), "--quiet"]) == 0
    assert main(["run", *part, "--out", str(tmp_path / "part"), "--quiet"]) == 0
    assert main(["run", *full, "--out", str(tmp_path / "part"), "--resume", "--quiet"]) == 0
    capsys.readouterr()
    a = [r[key] for r in read_jsonl(tmp_path / "full" / "metrics.jsonl")]
    b = [r[key] for r in read_jsonl(tmp_path / "part" / "metrics.jsonl")]
    assert len(a) == len(b) > 0 and b == pytest.approx(a, rel=1e-6, abs=0)
    summary = json.loads((tmp_path / "part" / "final.json").read_text())
    assert summary["steps"] > 0


def test_version_flag(capsys):
    from bionn import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"bionn {__version__}"


@pytest.mark.parametrize("damage", ["truncated", "random", "empty"])
def test_damaged_checkpoint_on_resume_is_named_and_nothing_changes(tmp_path, damage, capsys):
    out = tmp_path / "r"
    args = [*SMALL, "training.steps=2"]
    assert main(["run", *args, "--out", str(out), "--quiet"]) == 0
    ckpt = out / "checkpoint.pt"
    good = ckpt.read_bytes()
    ckpt.write_bytes({"truncated": good[:300], "random": os.urandom(4000), "empty": b""}[damage])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["run", *SMALL, "training.steps=4", "--out", str(out), "--resume", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "damaged" in err and "checkpoint.pt" in err and "weights_only" not in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("command", [
    ["run", "training.steps=1"],
    ["simulate", "cuba", "run.duration=5"],
    ["compare", str(ROOT / "configs" / "ei_ctrnn_pdm.yaml"), "--methods", "bp", "--seeds", "0"],
])
@pytest.mark.parametrize("where", ["file", "under_file"])
def test_out_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, command, where):
    afile = tmp_path / "results"
    afile.write_text("keep me\n")
    out = afile if where == "file" else afile / "sub"
    assert main([*command, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and str(afile) in err and "Traceback" not in err
    assert afile.read_text() == "keep me\n" and sorted(tmp_path.iterdir()) == [afile]


def test_divergence_writes_the_last_good_state_and_exits_1(tmp_path, capsys, monkeypatch):
    from bionn.experiment.trainer import RateJob

    original = RateJob.train_step

    def diverging(self, net, model, step):
        out = original(self, net, model, step)
        return {**out, "task": float("nan")} if step == 6 else out  # the 7th step blows up

    monkeypatch.setattr(RateJob, "train_step", diverging)
    out = tmp_path / "d"
    rc = main(["run", *SMALL, "training.steps=20", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err and "step 7" in err and "diverged" in err
    final = json.loads((out / "final.json").read_text())
    assert final["status"] == "diverged" and final["diverged_at_step"] == 7
    assert final["steps"] == 4 and 0 <= final["accuracy"] <= 1  # the step-4 checkpoint
    for name in ("training_curve.png", "example_trials.png", "recurrent_weights.png"):
        assert (out / "figures" / name).is_file()
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4


@pytest.mark.parametrize("what, expected", [("tasks", "perceptual_decision_making"),
                                            ("networks", "coba"), ("configs", "sim_cuba"),
                                            ("methods", "kp"), ("motifs", "E-PV-SST-VIP"),
                                            ("models", "connectome")])
def test_bionn_list(capsys, what, expected):
    assert main(["list", what]) == 0
    assert expected in capsys.readouterr().out.split()
