"""`bionn run` under torchrun: 2 CPU processes (gloo) give the single-process loss curve."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch.distributed as dist

from bionn.experiment.checkpoint import read_jsonl
from bionn.experiment.distributed import init_from_env, mean_across_ranks

if not dist.is_available():  # pragma: no cover - depends on the torch build
    pytest.skip("torch.distributed is not available in this build", allow_module_level=True)

BASE = ["model.n_hidden=24", "model.preact_noise=0", "training.batch_size=16",
        "training.eval_trials=64", "training.eval_every=4", "training.checkpoint_every=4"]
METHODS = {
    "bp": [],
    "kp_diversity": ["model.method=kp", "synaptic_diversity={fuzzy_learning_rates: true, "
                     "crystallization: true, volume_dependent_lr: {base_lr: 1.0}}"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], nproc: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, "-m", "bionn", "run", *args, "--quiet"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               f"--master_port={_free_port()}", "-m", "bionn", "run", *args, "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["steps"] > 0  # rank 0's summary


def _losses(folder) -> list[float]:
    return [r["loss"] for r in read_jsonl(folder / "metrics.jsonl")]


@pytest.mark.parametrize("case", sorted(METHODS))
def test_two_gloo_processes_match_one_process_and_resume(tmp_path, case):
    extra = [*BASE, *METHODS[case]]
    _run([*extra, "training.steps=8", "--out", str(tmp_path / "one")], 1)
    _run([*extra, "training.steps=4", "--out", str(tmp_path / "ddp")], 2)
    _run([*extra, "training.steps=8", "--out", str(tmp_path / "ddp"), "--resume"], 2)
    one, ddp = _losses(tmp_path / "one"), _losses(tmp_path / "ddp")
    assert len(one) == len(ddp) == 8
    # same global batch, gradients averaged over ranks: equal up to float summation order
    assert ddp == pytest.approx(one, rel=1e-5, abs=0)
    evals = [r for r in read_jsonl(tmp_path / "ddp" / "metrics.jsonl") if "eval_accuracy" in r]
    assert [r["step"] for r in evals] == [4, 8]
    assert not (tmp_path / "ddp" / "rank1").exists()  # only rank 0 writes


def test_single_process_context_without_torchrun():
    ctx = init_from_env({"WORLD_SIZE": "1"})
    assert not ctx.enabled and ctx.broadcast("x") == "x"
    assert mean_across_ranks({"a": 1.0}) == {"a": 1.0}


@pytest.mark.parametrize("method", ["dfa", "wm"])
def test_classification_under_two_gloo_processes_matches_one(tmp_path, method):
    pytest.importorskip("sklearn", reason="the digits ship with scikit-learn")
    from pathlib import Path

    config = str(Path(__file__).resolve().parents[1] / "configs" / "ca_digits_mlp.yaml")
    args = [config, "training.epochs=2", f"model.method={method}", "data.val_size=50",
            "training.batch_size=33"]  # 33 over 2 ranks: uneven slices, reweighted losses
    _run([*args, "--out", str(tmp_path / "one")], 1)
    _run([*args, "--out", str(tmp_path / "ddp")], 2)
    one = read_jsonl(tmp_path / "one" / "metrics.jsonl")
    ddp = read_jsonl(tmp_path / "ddp" / "metrics.jsonl")
    assert [r["loss"] for r in ddp] == pytest.approx([r["loss"] for r in one], rel=1e-5)
    assert [r["test_error"] for r in ddp] == pytest.approx([r["test_error"] for r in one],
                                                           abs=0.3)  # at most one test image


def test_connectome_and_spatial_models_under_two_gloo_processes_match_one(tmp_path):
    """DDP for the sparse and the convolutional configurations of the recurrent core."""
    from pathlib import Path

    edges = tmp_path / "edges.csv"
    edges.write_text("pre,post,weight,sign\n" + "\n".join(
        f"{i},{(i * 5 + 1) % 10},{1 + i % 2},{1 if i % 3 else -1}" for i in range(10)) + "\n")
    connectome = [f"model={{kind: connectome, connectome: {{source: {edges}}}, tau: 50.0, "
                  "weight_sharing: edge, preact_noise: 0.0}", "training.batch_size=16",
                  "training.eval_trials=32", "training.eval_every=4", "training.steps=4",
                  "model.method=kp"]
    config = str(Path(__file__).resolve().parents[1] / "configs" / "spatial_contour.yaml")
    spatial = [config, "data.params.n_train=64", "data.params.n_test=16", "data.val_size=0",
               "model.params.channels=2", "model.params.steps=3", "model.params.readout_steps=1",
               "training.epochs=1", "training.batch_size=32", "model.method=fa"]
    for name, args in (("connectome", connectome), ("spatial", spatial)):
        _run([*args, "--out", str(tmp_path / f"{name}1")], 1)
        _run([*args, "--out", str(tmp_path / f"{name}2")], 2)
        one = [r["loss"] for r in read_jsonl(tmp_path / f"{name}1" / "metrics.jsonl")]
        ddp = [r["loss"] for r in read_jsonl(tmp_path / f"{name}2" / "metrics.jsonl")]
        assert len(one) == len(ddp) > 0 and ddp == pytest.approx(one, rel=1e-5), name
