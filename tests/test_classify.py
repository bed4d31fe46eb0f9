"""Classification runs (``bionn run`` with a ``data`` section) and ``bionn compare``."""

import csv
import json
from pathlib import Path

import pytest

from bionn.experiment.checkpoint import load_checkpoint, read_jsonl
from bionn.experiment.classify import (
    is_classify_config,
    load_classify_config,
    train_classifier,
)
from bionn.experiment.cli import main
from bionn.experiment.config import ConfigError
from dataset_files import write_cifar, write_idx

ROOT = Path(__file__).parents[1]
CA_CONFIGS = sorted((ROOT / "configs").glob("ca_*.yaml"))
DIGITS = str(ROOT / "configs/ca_digits_mlp.yaml")
TINY = ["training.epochs=1", "training.steps=5", "training.batch_size=16",
        "model.params.hidden=[16]", "data.val_size=50"]


def test_shipped_ca_configs_validate():
    assert len(CA_CONFIGS) >= 2
    for path in CA_CONFIGS:
        assert is_classify_config(path)
        cfg = load_classify_config(path)
        assert cfg.model.method in ("bp", "fa", "dfa", "usf", "brsf", "frsf", "wm", "kp")


@pytest.mark.parametrize(("override", "words"), [
    ("model.method=backprop", ["model.method", "backprop", "allowed", "kp"]),
    ("data.dataset=imagenet", ["data.dataset", "imagenet", "digits", "mnist1d"]),
    ("training.optimiser=x", ["training.optimiser", "unknown key", "optimizer"]),
    ("model.architecture=vgg", ["model.architecture", "vgg", "allowed"]),
    ("model.options.gain=2", ["gain", "init", "scale"]),
    ("data.params.bogus=1", ["data.params", "bogus", "allowed"]),
    ("training.optimizer.type=lbfgs", ["training.optimizer", "lbfgs", "sgd"]),
])
def test_bad_configs_raise_before_any_folder(override, words, tmp_path, capsys):
    with pytest.raises(ConfigError) as e:
        load_classify_config(DIGITS, [override])
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    out = tmp_path / "never"
    assert main(["run", DIGITS, override, "--out", str(out), "--quiet"]) == 2
    assert "invalid config" in capsys.readouterr().err
    assert not out.exists()


def test_file_dataset_needs_root():
    with pytest.raises(ConfigError, match="data.root"):
        load_classify_config(None, ["data.dataset=mnist"])


def test_run_dispatches_and_writes_the_folder(tmp_path, capsys):
    out = tmp_path / "r"
    rc = main(["run", DIGITS, *TINY, "model.method=fa", "--out", str(out), "--quiet"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["out"] == str(out) and summary["method"] == "fa" and summary["steps"] == 5
    assert 0 <= summary["test_error"] <= 100
    for name in ["config.yaml", "metrics.jsonl", "final.json", "checkpoint.pt",
                 "figures/training_curve.png", "figures/alignment.png"]:
        assert (out / name).is_file(), name
    rec = read_jsonl(out / "metrics.jsonl")[-1]
    assert {"loss", "accuracy", "eval_accuracy", "test_accuracy", "test_error",
            "weight_angle", "grad_angle"} <= set(rec)
    assert rec["grad_angle/net.2"] == pytest.approx(0.0, abs=1e-6)  # output layer is exact
    assert "model" in load_checkpoint(out / "checkpoint.pt")
    assert load_classify_config(out / "config.yaml").model.method == "fa"


def test_methods_train(tmp_path):
    for method in ("bp", "dfa", "wm", "kp"):
        cfg = load_classify_config(DIGITS, [*TINY, f"model.method={method}"])
        summary = train_classifier(cfg, tmp_path / method, progress=False)
        assert summary["steps"] == 5
        if method == "bp":
            assert summary["grad_angle"] == pytest.approx(0.0, abs=1e-4)
        if method == "dfa":
            assert summary["weight_angle"] is None and summary["grad_angle"] is not None


def test_compare_writes_the_table(tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(["compare", DIGITS, "--methods", "bp,fa,usf", "--seeds", "0,1", "--out", str(out),
               "--quiet", *TINY])
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["out"] == str(out)
    assert [r["method"] for r in result["table"]] == ["bp", "fa", "usf"]
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["method"] for r in rows] == ["bp", "fa", "usf"] and rows[0]["n_seeds"] == "2"
    assert "| fa |" in (out / "comparison.md").read_text()
    assert (out / "alignment.png").is_file() and (out / "usf/seed1/final.json").is_file()


def test_compare_rejects_unknown_methods(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", DIGITS, "--methods", "bp,hebb", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "hebb" in err and "dfa" in err and not out.exists()


def test_rate_rnn_run_is_unchanged(tmp_path):
    assert not is_classify_config(ROOT / "configs/ei_ctrnn_pdm.yaml")


@pytest.mark.parametrize(("config", "writer", "method"), [
    ("ca_mnist_lenet.yaml", "idx", "fa"),
    ("ca_cifar10_resnet20.yaml", "cifar", "usf"),
])
def test_file_dataset_configs_run_on_local_files(tmp_path, config, writer, method, capsys):
    if writer == "idx":
        root = tmp_path / "mnist"
        root.mkdir()
        write_idx(root, n_train=40, n_test=10)
    else:
        root = write_cifar(tmp_path, n=8)
    out = tmp_path / "run"
    rc = main(["run", str(ROOT / "configs" / config), f"data.root={root}", "data.val_size=8",
               f"model.method={method}", "training.epochs=1", "training.steps=2",
               "training.batch_size=8", "experiment.device=cpu", "training.metrics.alignment_batch=8",
               "--out", str(out), "--quiet"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["method"] == method and summary["steps"] == 2
    assert (out / "figures/alignment.png").is_file()


def test_file_dataset_config_names_the_missing_files(tmp_path, capsys):
    rc = main(["run", str(ROOT / "configs/ca_mnist_lenet.yaml"), f"data.root={tmp_path}",
               "--out", str(tmp_path / "run"), "--quiet"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in err and str(tmp_path) in err
    assert not (tmp_path / "run").exists()


def test_classification_resume_is_exact(tmp_path):
    import torch

    from bionn.experiment.runner import Runner

    base = [*TINY[2:], "training.batch_size=64", "model.method=wm",
            "training.lr_schedule={milestones: [1], gamma: 0.5}"]  # 22 steps per epoch
    full = load_classify_config(DIGITS, [*base, "training.epochs=2"])
    Runner(full, tmp_path / "full", progress=False).fit()
    # one epoch, then resume to two; and 30 steps (mid-epoch), then resume to the end
    Runner(load_classify_config(DIGITS, [*base, "training.epochs=1"]), tmp_path / "epoch",
           progress=False).fit()
    Runner(full, tmp_path / "epoch", resume=True, progress=False).fit()
    Runner(load_classify_config(DIGITS, [*base, "training.epochs=2", "training.steps=30"]),
           tmp_path / "mid", progress=False).fit()
    Runner(full, tmp_path / "mid", resume=True, progress=False).fit()

    def epochs(folder):
        return [r for r in read_jsonl(folder / "metrics.jsonl") if r["step"] % 22 == 0]

    ref = epochs(tmp_path / "full")
    assert [r["epoch"] for r in ref] == [1, 2] and ref[1]["lr"] == 0.01  # 0.02 halved after epoch 1
    weights = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["model"]
    for run in ("epoch", "mid"):
        got = epochs(tmp_path / run)
        for a, b in zip(got, ref, strict=True):
            assert {k: v for k, v in a.items() if k != "time_s"} == {
                k: v for k, v in b.items() if k != "time_s"}
        state = load_checkpoint(tmp_path / run / "checkpoint.pt")["model"]
        for k in weights:
            torch.testing.assert_close(state[k], weights[k], rtol=0, atol=0)
    assert json.loads((tmp_path / "mid" / "final.json").read_text())["steps"] == 44


def test_classification_run_is_not_overwritten_and_cli_resumes(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["run", DIGITS, *TINY, "--out", out, "--quiet"]) == 0
    assert main(["run", DIGITS, *TINY, "--out", out, "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["run", "--out", out, "--resume", "training.steps=8", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 8 and summary["dataset"] == "digits"
