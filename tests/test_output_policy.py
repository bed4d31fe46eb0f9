"""One output-folder policy for every command (run, simulate, compare, sweep): an empty or
new folder is used; one that holds anything is refused (exit 2, nothing changed) unless
--resume (run, compare, sweep) or --overwrite (its contents deleted first, nothing stale
left); --overwrite is refused on a folder that is not a bionn output folder."""

import json
from pathlib import Path

import pytest

from bionn._core.errors import ConfigError
from bionn.experiment.checkpoint import claim_output_folder
from bionn.experiment.cli import main

ROOT = Path(__file__).resolve().parents[1]
RATE = ["model.n_hidden=16", "training.steps=3", "training.batch_size=8",
        "training.eval_trials=32", "training.eval_every=3", "training.checkpoint_every=3",
        "training.example_trials=1"]
DIGITS = str(ROOT / "configs/ca_digits_mlp.yaml")
CLASSIFY = ["training.epochs=1", "training.steps=5", "training.batch_size=16",
            "model.params.hidden=[16]", "data.val_size=50"]
SIM = ["network.name=ei_balanced", "network.params={n_e: 40, n_i: 40}", "run.duration=30",
       "measures.t_start=5"]
CMP = [str(ROOT / "configs" / "ei_ctrnn_pdm.yaml"), "--seeds", "0", *RATE]

COMMANDS = {
    "run": ["run", DIGITS, *CLASSIFY],
    "simulate": ["simulate", "ei_balanced", *SIM],
    "compare": ["compare", *CMP, "--methods", "bp"],
}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _ok(argv: list[str], capsys) -> None:
    assert main([*argv, "--quiet"]) == 0, capsys.readouterr().err
    capsys.readouterr()


def _refused(argv: list[str], capsys) -> str:
    assert main([*argv, "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    return captured.err


@pytest.mark.parametrize("command", list(COMMANDS))
def test_second_run_into_the_same_folder_is_refused_and_changes_nothing(tmp_path, capsys, command):
    out = tmp_path / "out"
    _ok([*COMMANDS[command], "--out", str(out)], capsys)
    before = _files(out)
    err = _refused([*COMMANDS[command], "--out", str(out)], capsys)
    assert str(out) in err and "not empty" in err and "--overwrite" in err
    assert ("--resume" in err) == (command != "simulate")
    assert _files(out) == before
    # --overwrite --resume is refused too (simulate has no --resume at all)
    err = _refused([*COMMANDS[command], "--out", str(out), "--overwrite", "--resume"], capsys) \
        if command != "simulate" else None
    if err is not None:
        assert "--resume" in err and "--overwrite" in err
    assert _files(out) == before


def test_run_overwrite_starts_over_and_leaves_nothing_of_the_first_run(tmp_path, capsys):
    out = tmp_path / "out"
    _ok(["run", DIGITS, *CLASSIFY, "training.steps=8", "--out", str(out)], capsys)
    (out / "figures" / "old_figure.png").write_bytes(b"stale")
    _ok(["run", DIGITS, *CLASSIFY, "--out", str(out), "--overwrite"], capsys)
    fresh = tmp_path / "fresh"
    _ok(["run", DIGITS, *CLASSIFY, "--out", str(fresh)], capsys)
    assert set(_files(out)) == set(_files(fresh))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records) == 5
    assert json.loads((out / "final.json").read_text())["steps"] == 5


def test_compare_overwrite_leaves_no_stale_method_folder(tmp_path, capsys):
    out = tmp_path / "cmp"
    _ok(["compare", *CMP, "--methods", "bp,fa", "--out", str(out)], capsys)
    assert (out / "fa" / "seed0" / "final.json").is_file()
    _ok(["compare", *CMP, "--methods", "bp", "--out", str(out), "--overwrite"], capsys)
    assert not (out / "fa").exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "alignment.png", "bp", "comparison.csv", "comparison.md"]
    assert "| fa |" not in (out / "comparison.md").read_text()


def test_compare_resume_reads_back_finished_runs(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", *CMP, "--methods", "bp", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    final = out / "bp" / "seed0" / "final.json"
    stamp = final.stat().st_mtime_ns
    assert main([*argv, "--resume"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["table"] == first["table"] and final.stat().st_mtime_ns == stamp


def test_simulate_overwrite_leaves_no_figures_of_the_first_network(tmp_path, capsys):
    out = tmp_path / "sim"
    _ok(["simulate", "ei_balanced", *SIM, "--out", str(out)], capsys)
    first = set(_files(out))
    _ok(["simulate", "cuba", "run.duration=5", "--out", str(out), "--overwrite"], capsys)
    fresh = tmp_path / "fresh"
    _ok(["simulate", "cuba", "run.duration=5", "--out", str(fresh)], capsys)
    assert set(_files(out)) == set(_files(fresh))
    assert "cuba" in (out / "config.yaml").read_text()
    assert first  # the first run wrote files, now all replaced


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("flag", [[], ["--overwrite"]])
def test_an_unrelated_folder_is_refused_and_untouched(tmp_path, capsys, command, flag):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    (out / "data").mkdir()
    (out / "data" / "table.csv").write_text("a,b\n1,2\n")
    before = _files(out)
    err = _refused([*COMMANDS[command], "--out", str(out), *flag], capsys)
    assert str(out) in err and "notes.txt" in err
    if flag:
        assert "does not look like a bionn output folder" in err
    assert _files(out) == before and sorted(p.name for p in out.iterdir()) == ["data", "notes.txt"]


def test_a_folder_with_bionn_names_is_refused_without_overwrite(tmp_path, capsys):
    """`--out` at a folder holding final.json and config.yaml (no checkpoint) is not replaced."""
    out = tmp_path / "other"
    out.mkdir()
    (out / "final.json").write_text('{"keep": 1}\n')
    (out / "config.yaml").write_text("experiment: {name: x}\n")
    before = _files(out)
    for command in COMMANDS:
        err = _refused([*COMMANDS[command], "--out", str(out)], capsys)
        assert "config.yaml" in err and "final.json" in err
    assert _files(out) == before


def test_overwrite_refuses_the_current_home_and_root_folders(tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "config.yaml").write_text("x: 1\n")
    monkeypatch.chdir(work / "sub")
    (work / "sub" / "final.json").write_text("{}\n")
    with pytest.raises(ConfigError, match="the current folder"):
        claim_output_folder(".", "x", overwrite=True)
    with pytest.raises(ConfigError, match="above the current folder"):
        claim_output_folder(str(work), "x", overwrite=True)
    monkeypatch.setenv("HOME", str(work))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="the home folder"):
        claim_output_folder(str(work), "x", overwrite=True)
    with pytest.raises(ConfigError, match="the root folder|cannot be written"):
        claim_output_folder("/", "x", overwrite=True)
    assert (work / "config.yaml").is_file() and (work / "sub" / "final.json").is_file()


def test_policy_unit(tmp_path):
    new = tmp_path / "new"
    assert claim_output_folder(new, "x") == new and not new.exists()
    new.mkdir()
    assert claim_output_folder(new, "x") == new  # empty: used
    (new / "final.json").write_text("{}\n")
    with pytest.raises(ConfigError, match="not empty"):
        claim_output_folder(new, "x")
    assert claim_output_folder(new, "x", resume=True) == new
    with pytest.raises(ConfigError, match="does not resume"):
        claim_output_folder(new, "x", resume=True, resumable=False)
    with pytest.raises(ConfigError, match="contradict"):
        claim_output_folder(new, "x", resume=True, overwrite=True)
    (new / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "kept.txt").write_text("kept\n")
    assert claim_output_folder(new, "x", overwrite=True) == new
    assert list(new.iterdir()) == [] and (tmp_path / "elsewhere" / "kept.txt").is_file()


def test_sweep_second_run_is_refused_and_overwrite_starts_over(tmp_path, capsys):
    pytest.importorskip("ray.tune", reason="bionn sweep runs on Ray Tune (pip install bionn[sweep])")
    path = tmp_path / "s.yaml"
    path.write_text(f"base: {ROOT / 'configs' / 'ei_ctrnn_pdm.yaml'}\n"
                    f"overrides: {json.dumps(RATE)}\ngrid: {{training.optimizer.lr: [0.001]}}\n"
                    "seeds: [0]\n")
    out = tmp_path / "out"
    _ok(["sweep", str(path), "--out", str(out)], capsys)
    (out / "runs" / "stale-trial").mkdir()
    before = _files(out)
    err = _refused(["sweep", str(path), "--out", str(out)], capsys)
    assert str(out) in err and "--resume" in err and "--overwrite" in err
    _refused(["sweep", str(path), "--out", str(out), "--resume", "--overwrite"], capsys)
    assert _files(out) == before
    _ok(["sweep", str(path), "--out", str(out), "--overwrite"], capsys)
    assert not (out / "runs" / "stale-trial").exists() and (out / "sweep.md").is_file()
