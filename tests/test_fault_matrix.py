"""The fault and bad-input matrix of issue 13, driven through the command line.

Every case runs ``python -m bionn ...`` in a subprocess, in a folder prepared by the
case, and checks what the issue asks of every command: the exit status (2 bad input,
1 a fault during work, 130 interrupted, 0 done), no Python traceback, the field / file /
value named in the message, and that every file present before the command is
byte-identical after it (a refusal writes nothing at all). The bad config files
themselves (alias bombs, binary, empty, oversized, non-finite, booleans) are the matrix
of ``tests/test_bad_config.py``; loaders are tested in-process in
``tests/test_connectome.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
DIGITS = str(CONFIGS / "ca_digits_mlp.yaml")
TINY = ["training.steps=2", "training.eval_every=2", "training.checkpoint_every=2",
        "training.eval_trials=50", "training.batch_size=8", "model.n_hidden=16"]


def bionn(argv: list[str], cwd: Path, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bionn", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, **kw)


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*")) if "__pycache__" not in p.parts}


# -- prepared folders ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict[str, Path]:
    """A finished tiny rate run and a finished one-epoch classification run, copied into
    the cases that need an earlier run."""
    root = tmp_path_factory.mktemp("earlier")
    runs = {"rate": root / "rate", "classify": root / "classify"}
    for argv in (["run", *TINY, "--out", str(runs["rate"]), "--quiet"],
                 ["run", DIGITS, "training.epochs=1", "--out", str(runs["classify"]), "--quiet"]):
        proc = bionn(argv, root)
        assert proc.returncode == 0, proc.stderr
    return runs


def fake_run(folder: Path) -> None:
    """A folder that looks like 5000 epochs of somebody's results."""
    folder.mkdir()
    (folder / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": i, "loss": 1.0 / i}) + "\n" for i in range(1, 5001)))
    (folder / "final.json").write_text('{"accuracy": 0.97}\n')
    (folder / "config.yaml").write_text("experiment: {name: theirs}\n")
    (folder / "checkpoint.pt").write_bytes(os.urandom(256))


def edge_list(folder: Path, rows: str) -> None:
    (folder / "edges.csv").write_text("pre,post,weight\n" + rows)
    (folder / "conn.yaml").write_text(
        "experiment: {name: conn}\ntask: {name: perceptual_decision_making}\n"
        "model: {kind: connectome, connectome: {source: edges.csv}}\n"
        "training: {steps: 2, eval_every: 2, eval_trials: 20, batch_size: 4}\n")


def sweep_file(folder: Path, metric: str = "accuracy") -> None:
    (folder / "sweep.yaml").write_text(
        f"base: {CONFIGS / 'ei_ctrnn_pdm.yaml'}\noverrides: {json.dumps(TINY)}\n"
        f"grid: {{training.optimizer.lr: [0.001]}}\nmetric: {metric}\n")


@dataclass
class Case:
    """One row of the matrix: ``argv`` runs in a folder that ``setup`` prepared."""

    id: str
    argv: list[str]
    status: int
    words: list[str]
    setup: Callable[[Path, dict[str, Path]], None] | None = None
    check: Callable[[Path, subprocess.CompletedProcess], None] | None = None
    interrupt: tuple[int, str] | None = None  # (signal, file whose appearance triggers it)
    continues: bool = False  # a resume that goes on writing into the earlier run's files
    env: dict[str, str] = field(default_factory=dict)


def copy(kind: str, name: str = "prev") -> Callable[[Path, dict[str, Path]], None]:
    return lambda tmp, runs: shutil.copytree(runs[kind], tmp / name)


def damage(how: str) -> Callable[[Path, dict[str, Path]], None]:
    def setup(tmp: Path, runs: dict[str, Path]) -> None:
        shutil.copytree(runs["rate"], tmp / "prev")
        ck = tmp / "prev" / "checkpoint.pt"
        data = ck.read_bytes()
        ck.write_bytes({"truncated": data[: len(data) // 2], "random": os.urandom(len(data)),
                        "empty": b""}[how])
    return setup


def diverged(tmp: Path, proc: subprocess.CompletedProcess) -> None:
    final = json.loads((tmp / "dv" / "final.json").read_text())
    assert final["status"] == "diverged" and final["diverged_at_step"] >= 1


def interrupted(tmp: Path, proc: subprocess.CompletedProcess) -> None:
    assert (tmp / "run" / "checkpoint.pt").is_file()
    assert "Continue with: bionn run --out run --resume" in proc.stderr
    resumed = bionn(["run", "--out", str(tmp / "run"), "--resume", "training.epochs=1",
                     "--quiet"], tmp)
    # the checkpoint is whole: --resume reads it (and refuses the shortened budget by name,
    # or finishes)
    assert "Traceback" not in resumed.stderr and "damaged" not in resumed.stderr


def modes_follow_umask(tmp: Path, proc: subprocess.CompletedProcess) -> None:
    out = tmp / "run"
    for p in out.rglob("*"):
        if p.is_file():
            assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    assert json.loads(proc.stdout.strip().splitlines()[-1])["out"] == "run"


def quiet_sweep(tmp: Path, proc: subprocess.CompletedProcess) -> None:
    assert len(list((tmp / "o" / "runs").glob("*/final.json"))) == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) <= 2, proc.stderr  # Ray says nothing under --quiet


def unchanged_final(tmp: Path, proc: subprocess.CompletedProcess) -> None:
    assert "already finished" in proc.stderr


CASES = [
    # -- data loss: one output-folder policy ---------------------------------------------------
    Case("run-into-an-earlier-run", ["run", DIGITS, "--out", "prev"], 2,
         ["prev", "--resume", "--overwrite"], setup=lambda t, r: fake_run(t / "prev")),
    Case("compare-into-an-earlier-run", ["compare", DIGITS, "--methods", "bp", "--out", "prev"], 2,
         ["prev", "--resume", "--overwrite"], setup=lambda t, r: fake_run(t / "prev")),
    Case("simulate-into-an-earlier-run", ["simulate", "cuba", "--out", "prev"], 2,
         ["prev", "--overwrite"], setup=lambda t, r: fake_run(t / "prev")),
    Case("sweep-into-an-earlier-run", ["sweep", "sweep.yaml", "--out", "prev"], 2,
         ["prev", "--resume", "--overwrite"],
         setup=lambda t, r: (fake_run(t / "prev"), sweep_file(t))),
    Case("overwrite-of-a-folder-that-is-not-bionn-output",
         ["run", "--out", "notes", "--overwrite"], 2, ["notes", "does not look like", "notes.txt"],
         setup=lambda t, r: ((t / "notes").mkdir(), (t / "notes" / "notes.txt").write_text("x"))),
    Case("resume-and-overwrite-together", ["run", "--out", "prev", "--resume", "--overwrite"], 2,
         ["--resume", "--overwrite"], setup=copy("rate")),
    Case("sweep-folder-locked-by-a-live-sweep", ["sweep", "sweep.yaml", "--out", "sw", "--resume"],
         2, ["sweep.lock", "pid"],
         setup=lambda t, r: (sweep_file(t), (t / "sw").mkdir(), (t / "sw" / "sweep.lock").write_text(
             json.dumps({"pid": os.getpid(), "host": os.uname().nodename}) + "\n"))),
    Case("sweep-quiet-into-a-relative-folder", ["sweep", "sweep.yaml", "--out", "o", "--quiet"], 0,
         ['"n_finished": 1'], setup=lambda t, r: sweep_file(t), check=quiet_sweep),
    Case("sweep-metric-not-in-final-json", ["sweep", "sweep.yaml", "--out", "sw"], 2,
         ["metric", "'acc'", "accuracy"], setup=lambda t, r: sweep_file(t, metric="acc")),
    # -- NaN reported as a result -------------------------------------------------------------
    Case("simulation-state-overflows", ["simulate", "cuba", "network.params.n=400",
                                        "network.params.we=1.0e+38", "run.duration=50",
                                        "--out", "sim", "--quiet"], 1,
         ["non-finite", "syn.s", "t = ", "network.params.we", "No spikes"],
         check=lambda t, p: (not (t / "sim" / "measures.json").exists()) or pytest.fail("measures")),
    Case("connectome-edge-list-with-nan-count", ["run", "conn.yaml", "--out", "c"], 2,
         ["edges.csv", "weight", "nan"], setup=lambda t, r: edge_list(t, "0,1,1\n1,2,nan\n")),
    Case("connectome-edge-list-with-inf-count", ["run", "conn.yaml", "--out", "c"], 2,
         ["edges.csv", "weight", "inf"], setup=lambda t, r: edge_list(t, "0,1,inf\n1,2,1\n")),
    Case("connectome-negative-count", ["run", "conn.yaml", "--out", "c"], 2,
         ["edges.csv", "-3", "sign"], setup=lambda t, r: edge_list(t, "0,1,-3\n1,2,1\n")),
    Case("connectome-64-bit-ids-are-labels", ["run", "conn.yaml", "--out", "c", "--quiet"], 0,
         ['"status": "finished"'],
         setup=lambda t, r: edge_list(t, "99999999999,720575940620000000,2\n"
                                         "720575940620000000,3,1\n3,99999999999,1\n")),
    # -- resources ------------------------------------------------------------------------------
    Case("model-too-large-for-memory", ["run", "model.n_hidden=10000000", "--out", "big"], 2,
         ["model.n_hidden", "GB", "available", "--force"]),
    Case("model-too-large-with-force", ["run", "model.n_hidden=10000000", "--force", "--out", "big"],
         2, ["model", "allocate"]),
    # -- faults during work: a message, exit 1, checkpoint kept ---------------------------------
    Case("rate-run-diverges", ["run", "training.optimizer.lr=1e4", "training.steps=60",
                               "--out", "dv", "--quiet"], 1,
         ["training stopped at step", "not finite", "training.optimizer.lr", "diverged"],
         check=diverged),
    Case("classification-run-diverges", ["run", DIGITS, "training.optimizer.lr=1e6",
                                         "training.epochs=2", "--out", "dv", "--quiet"], 1,
         ["training stopped at step", "not finite", "training.optimizer.lr", "diverged"],
         check=diverged),
    *[Case(f"resume-from-a-{how}-checkpoint", ["run", "--out", "prev", "--resume",
                                               "training.steps=4"], 1,
           ["checkpoint.pt", "damaged"], setup=damage(how)) for how in ("truncated", "random",
                                                                         "empty")],
    Case("out-is-a-file", ["run", "--out", "afile"], 2, ["afile", "file"],
         setup=lambda t, r: (t / "afile").write_text("mine\n")),
    Case("out-under-a-file", ["simulate", "cuba", "--out", "afile/sim"], 2, ["afile"],
         setup=lambda t, r: (t / "afile").write_text("mine\n")),
    Case("out-cannot-be-created", ["sweep", "sweep.yaml", "--out", "/proc/bionn-sweep"], 2,
         ["/proc/bionn-sweep"], setup=lambda t, r: sweep_file(t)),
    Case("out-not-writable", ["compare", DIGITS, "--methods", "bp", "--out", "ro/cmp"], 2, ["ro"],
         setup=lambda t, r: ((t / "ro").mkdir(), (t / "ro").chmod(0o500))),
    *[Case(f"classification-run-{name}", ["run", DIGITS, "training.epochs=400", "--out", "run",
                                          "--quiet"], 130, ["interrupted", "--resume"],
           interrupt=(sig, "run/metrics.jsonl"), check=interrupted)
      for name, sig in (("sigint", signal.SIGINT), ("sigterm", signal.SIGTERM))],
    Case("simulate-sigint", ["simulate", "coba", "run.duration=100000", "--out", "sim"], 130,
         ["interrupted"], interrupt=(signal.SIGINT, "sim/config.yaml")),
    Case("missing-data-root", ["run", str(CONFIGS / "ca_cifar10_resnet20.yaml"),
                               "data.root=nowhere", "--out", "c"], 2,
         ["cifar10", "nowhere", "data_batch_1", "never downloads"]),
    Case("resume-a-classification-run", ["run", "--out", "prev", "--resume", "training.epochs=2",
                                         "--quiet"], 0, ['"epochs": 2'],
         setup=copy("classify"), continues=True),
    # -- smaller defects ----------------------------------------------------------------------
    Case("resume-a-finished-run-changes-nothing", ["run", "--out", "prev", "--resume"], 0,
         ['"status": "finished"'], setup=copy("rate"), check=unchanged_final),
    Case("resume-with-a-changed-config-names-the-field",
         ["run", "--out", "prev", "--resume", "model.e_fraction=0.5"], 2,
         ["model.e_fraction", "0.5"], setup=copy("rate")),
    Case("files-follow-the-umask", ["run", *TINY, "--out", "run", "--quiet"], 0, ['"out"'],
         check=modes_follow_umask),
    # -- friction ------------------------------------------------------------------------------
    Case("version", ["--version"], 0, ["bionn 0."]),
    Case("device-unknown-name", ["run", "--device", "gpu", "--out", "r"], 2,
         ["--device", "'gpu'", "cuda:N"]),
    Case("device-absent-gpu", ["simulate", "cuba", "--device", "cuda:7", "--out", "r"], 2,
         ["--device", "'cuda:7'"], env={"CUDA_VISIBLE_DEVICES": ""}),
    Case("list-networks", ["list", "networks"], 0, ["coba", "cuba"]),
    Case("simulate-unknown-network-lists-them", ["simulate", "nope", "--out", "r"], 2,
         ["nope", "coba", "sim_cuba"]),
    Case("model-dt-is-the-task-dt", ["run", "model.dt=10", "--out", "r"], 2,
         ["model.dt", "task.dt"]),
    Case("neurogym-regression-task-with-cross-entropy",
         ["run", "task.name=neurogym", "task.params.env_id=ReachingDelayResponse-v0",
          "loss.task=cross_entropy", "--out", "r"], 2, ["loss.task", "mse"]),
    Case("neurogym-reward-only-task", ["run", "task.name=neurogym", "task.params.env_id=Bandit-v0",
                                       "--out", "r"], 2, ["Bandit-v0", "reward"]),
]

NEEDS = {"neurogym-regression-task-with-cross-entropy": "neurogym",
         "neurogym-reward-only-task": "neurogym", "sweep-into-an-earlier-run": "ray",
         "sweep-folder-locked-by-a-live-sweep": "ray", "sweep-metric-not-in-final-json": "ray",
         "out-cannot-be-created": "ray", "sweep-quiet-into-a-relative-folder": "ray"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault_matrix(case: Case, tmp_path: Path, finished: dict[str, Path]) -> None:
    if case.id in NEEDS:
        pytest.importorskip(NEEDS[case.id], reason=f"{NEEDS[case.id]} is an optional extra")
    if case.id == "out-not-writable" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    if case.setup is not None:
        case.setup(tmp_path, finished)
    before = snapshot(tmp_path)
    env = {**os.environ, **case.env}
    old_umask = os.umask(0o022)
    try:
        if case.interrupt is None:
            proc = bionn(case.argv, tmp_path, env=env)
        else:
            proc = _interrupt(case, tmp_path, env)
    finally:
        os.umask(old_umask)
        if (tmp_path / "ro").exists():
            (tmp_path / "ro").chmod(0o700)
    out = proc.stdout + proc.stderr
    assert proc.returncode == case.status, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    for word in case.words:
        assert word in out, f"{word!r} not in:\n{out[-3000:]}"
    after = snapshot(tmp_path)
    for name, content in before.items():
        if case.continues and name.endswith((".pt", ".json", ".jsonl", ".png", ".yaml")):
            assert name in after, f"{name} was removed"
            continue
        assert after.get(name, "missing") == content, f"{name} changed or was removed"
    if case.status == 2:
        assert after == before, f"a refusal wrote {sorted(set(after) - set(before))}"
    if case.check is not None:
        case.check(tmp_path, proc)


def _interrupt(case: Case, tmp: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    sig, trigger = case.interrupt
    proc = subprocess.Popen([sys.executable, "-m", "bionn", *case.argv], cwd=tmp, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not ((tmp / trigger).is_file() and (tmp / trigger).stat().st_size > 0):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            stdout, stderr = proc.communicate()
            pytest.fail(f"{trigger} never appeared (exit {proc.returncode}):\n{stderr[-2000:]}")
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=240)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


# -- in-process checks of the same guarantees ----------------------------------------------------
def test_out_of_memory_during_work_exits_1_with_a_message(tmp_path, monkeypatch, capsys):
    from bionn.experiment import cli
    from bionn.experiment.runner import Runner

    def fit(self):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 4000000000000 bytes")

    monkeypatch.setattr(Runner, "fit", fit)
    assert cli.main(["run", *TINY, "--out", str(tmp_path / "r"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "out of memory during the work" in err and "4000000000000 bytes" in err


def test_other_runtime_errors_are_not_called_out_of_memory(tmp_path, monkeypatch):
    from bionn.experiment import cli
    from bionn.experiment.runner import Runner

    monkeypatch.setattr(Runner, "fit", lambda self: (_ for _ in ()).throw(RuntimeError("shape")))
    with pytest.raises(RuntimeError, match="shape"):
        cli.main(["run", *TINY, "--out", str(tmp_path / "r"), "--quiet"])


def test_connectome_memory_estimate_refuses_before_any_work(tmp_path, monkeypatch):
    from bionn._core.errors import ConfigError
    from bionn.experiment import config
    from bionn.experiment.runner import load_run_config

    edge_list(tmp_path, "".join(f"{i},{i + 1},1\n" for i in range(2000)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config, "available_memory", lambda: 10_000_000)  # 10 MB
    with pytest.raises(ConfigError) as e:
        load_run_config("conn.yaml", [])
    assert "2001 neurons and 2000 connections" in str(e.value) and "--force" in str(e.value)
    assert load_run_config("conn.yaml", ["experiment.force=true"]).experiment.force


def test_device_and_force_flags_set_the_config_and_not_the_identity(tmp_path, capsys):
    from bionn.experiment import cli
    from bionn.experiment.runner import MACHINE_KEYS, config_fingerprint, load_run_config

    assert cli.main(["run", *TINY, "--device", "cpu", "--force", "--out", str(tmp_path / "r"),
                     "--quiet"]) == 0
    saved = load_run_config(str(tmp_path / "r" / "config.yaml"), [])
    assert saved.experiment.device == "cpu" and saved.experiment.force
    plain = load_run_config(None, TINY)
    assert config_fingerprint(saved, ()) == config_fingerprint(plain, ())
    assert set(MACHINE_KEYS) == {"experiment.device", "experiment.threads", "experiment.force"}
