"""Bad configs fail before any work starts, naming the field, the value and what is allowed."""

import numpy as np
import pytest
import torch

from bionn.experiment import ConfigError, dump_config, load_config, validate_config
from bionn.experiment.config import apply_overrides, read_yaml


def test_default_config_is_valid_and_round_trips():
    cfg = load_config()
    assert cfg.model.e_fraction == 0.8 and cfg.task.name == "perceptual_decision_making"
    import yaml

    again = validate_config(yaml.safe_load(dump_config(cfg)))
    assert again == cfg


def test_overrides_are_parsed_as_yaml():
    cfg = load_config(None, ["model.n_hidden=64", "model.tau=[" + ",".join(["50"] * 64) + "]",
                             "loss.l2={recurrent: 0.01}", "training.grad_clip=null"])
    assert cfg.model.n_hidden == 64 and cfg.model.tau[0] == 50
    assert cfg.loss.l2 == {"recurrent": 0.01} and cfg.training.grad_clip is None


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.foo=1", ["model.foo", "unknown key", "n_hidden"]),
        ("bogus=1", ["bogus", "unknown key", "training"]),
        ("model.n_hidden=abc", ["model.n_hidden", "integer", "'abc'"]),
        ("model.n_hidden=-3", ["model.n_hidden", "greater than 0", "-3"]),
        ("model.tau=-5", ["model.tau", "> 0", "-5"]),
        ("task.dt=200", ["model.tau", "task.dt", "200"]),
        ("model.e_fraction=1.5", ["model.e_fraction", "less than 1", "1.5"]),
        ("model.e_fraction=0", ["model.e_fraction", "greater than 0"]),
        ("model.rec_mask=[[1,0],[0,1]]", ["model.rec_mask", "(2, 2)", "(100, 100)"]),
        ("model.activation=gelu", ["model.activation", "gelu", "relu"]),
        ("task.name=nope", ["task.name", "nope", "perceptual_decision_making"]),
        ("training.optimizer.type=lbfgs", ["training.optimizer", "adam", "lbfgs"]),
        ("training.optimizer.lr=0", ["training.optimizer", "lr must be > 0"]),
        ("training.optimizer.momentum=0.9", ["training.optimizer", "momentum", "betas"]),
        ("loss.l2={recurrent: -1}", ["l2", "recurrent", ">= 0"]),
        ("model.circuit={kind: multi_area_ei, params: {area_sizes: [50, 40]}}",
         ["model.circuit", "area_sizes", "n_hidden=100"]),
        ("model.circuit={kind: ring}", ["model.circuit.kind", "multi_area"]),
        ("model.method=dfa", ["model.method", "dfa", "CTRNN", "kp"]),
        ("model.method=xyz", ["method", "xyz", "usf"]),
        ("model.options={init: bogus}", ["options.init", "bogus", "xavier"]),
        ("model.options={constrain_norm: true}", ["model.options.constrain_norm", "CTRNN"]),
    ],
)
def test_bad_values_name_field_value_and_allowed(override, expected):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    msg = str(info.value)
    for piece in expected:
        assert piece in msg, f"{piece!r} missing from: {msg}"
    assert "Traceback" not in msg


def test_mask_files_are_checked(tmp_path):
    good = tmp_path / "mask.npy"
    np.save(good, (np.random.default_rng(0).random((100, 100)) < 0.5).astype(np.float32))
    assert load_config(None, [f"model.rec_mask={good}"]).model.rec_mask == str(good)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((100, 99), dtype=np.float32))
    with pytest.raises(ConfigError, match=r"\(100, 99\)"):
        load_config(None, [f"model.rec_mask={bad}"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, [f"model.rec_mask={tmp_path / 'missing.npy'}"])
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises((ConfigError, ValueError)):
        load_config(None, [f"model.rec_mask={pickled}"])  # never unpickled


def test_yaml_files_are_data(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml(evil)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_yaml(listy)


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["model.n_hidden"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"model": 3}, ["model.n_hidden=4"])


def test_old_shape_fails_with_what_changed(tmp_path, capsys):
    from bionn.experiment.cli import main

    old = tmp_path / "old.yaml"
    old.write_text("name: x\nseed: 3\ndevice: cpu\n"
                   "training: {steps: 5, optimizer: adam, lr: 0.01, weight_decay: 0.0}\n")
    out = tmp_path / "run"
    for argv in (["run", str(old)], ["compare", str(old), "--methods", "bp,fa"]):
        assert main([*argv, "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "top-level `name`/`seed`/`device` moved into the `experiment:` section" in err
        assert "experiment: {name: x, seed: 3, device: cpu}" in err
        assert ("`training.optimizer: adam`, `training.lr`, `training.weight_decay` is now one "
                "mapping, `training.optimizer: {type: adam, lr: 0.01, weight_decay: 0.0}`") in err
        assert "Traceback" not in err and not out.exists()
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"base: {old}\ngrid: {{training.steps: [2, 3]}}\n")
    assert main(["sweep", str(sweep), "--out", str(out), "--quiet"]) == 2
    assert "moved into the `experiment:` section" in capsys.readouterr().err
    sim = tmp_path / "sim.yaml"
    sim.write_text("name: s\nseed: 0\nnetwork: {name: ei_balanced}\n")
    assert main(["simulate", str(sim), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "top-level `name`/`seed` moved into the `experiment:` section" in err
    assert not out.exists()


def test_every_command_shares_the_experiment_section():
    from bionn.experiment.classify import load_classify_config
    from bionn.experiment.schema import ExperimentSection
    from bionn.experiment.simulate import load_sim_config

    rate = load_config(None, ["experiment.threads=1"])
    clf = load_classify_config(None, ["experiment.seed=4"])
    sim = load_sim_config(None, ["network.name=ei_balanced", "experiment.device=cpu"])
    for cfg in (rate, clf, sim):
        assert isinstance(cfg.experiment, ExperimentSection)
    assert clf.experiment.device == sim.experiment.device.replace("cpu", "auto") == "auto"
    assert rate.experiment.threads == 1 and clf.experiment.seed == 4


def test_one_optimizer_vocabulary():
    from bionn.experiment.classify import load_classify_config
    from bionn.experiment.schema import build_optimizer

    rate = load_config(None, ["training.optimizer={type: SGD, lr: 0.1, momentum: 0.5}"])
    clf = load_classify_config(None, ["training.optimizer={type: AdamW, lr: 0.01, "
                                      "betas: [0.8, 0.9]}"])
    assert rate.training.optimizer.type == "sgd" and clf.training.optimizer.type == "adamw"
    opt = build_optimizer(rate.training.optimizer, [torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.5
    opt = build_optimizer(clf.training.optimizer, [torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.8, 0.9)
    with pytest.raises(ConfigError, match="nesterov.*not an argument of adam"):
        load_config(None, ["training.optimizer.nesterov=true"])


def test_model_section_is_the_constructors_signature():
    import inspect

    from bionn.rate import CTRNN

    params = inspect.signature(CTRNN).parameters
    cfg = load_config(None, ["model={n_hidden: 20}"])  # nothing else given: CTRNN's defaults
    for key in ("tau", "e_fraction", "preact_noise", "readout", "positive_input",
                "spectral_radius", "weight_init", "activation"):
        assert getattr(cfg.model, key) == params[key].default, key
    keys = set(params) - {"n_input", "n_output", "dt", "generator"}
    assert keys <= set(type(cfg.model).model_fields)
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.dt=5"])  # filled from task.dt, not a model key
    assert "model.dt: not a config key" in str(e.value) and "set task.dt" in str(e.value)
    assert all(k in str(e.value) for k in ("n_hidden", "preact_noise", "method", "circuit"))
    for override, words in [("model.positive_input=maybe", ["model.positive_input", "bool"]),
                            ("model.readout=inhibitory", ["model.readout", "'all'", "'excitatory'"]),
                            ("model.spectral_radius=[1, 2]", ["model.spectral_radius", "number"]),
                            ("model.kind=lstm", ["model.kind", "lstm", "connectome", "ctrnn"])]:
        with pytest.raises(ConfigError) as e:
            load_config(None, [override])
        assert all(w in str(e.value) for w in words), (words, str(e.value))


def test_builder_passes_the_section_through(monkeypatch):
    import inspect

    import bionn.rate
    from bionn.experiment.trainer import build_model

    seen = {}
    expected = set(inspect.signature(bionn.rate.CTRNN).parameters) - {"n_input"}

    class Spy(bionn.rate.CTRNN):
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(bionn.rate, "CTRNN", Spy)
    cfg = load_config(None, ["model.n_hidden=16", "model.learn_tau=true", "model.bias=false",
                             "model.postact_noise=0.02"])
    net = build_model(cfg, cfg.task.build())
    assert expected <= set(seen)
    assert (seen["learn_tau"], seen["bias"], seen["postact_noise"], seen["dt"]) == (
        True, False, 0.02, cfg.task.dt)
    assert any("tau" in name for name, _ in net.named_parameters())


def test_exponent_floats_in_overrides_and_files(tmp_path):
    cfg = load_config(None, ["training.optimizer.lr=3e-4", "task.dt=2e1", "training.steps=1e2"])
    assert cfg.training.optimizer.kwargs()["lr"] == 3e-4 and cfg.task.dt == 20.0
    assert cfg.training.steps == 100
    f = tmp_path / "c.yaml"
    f.write_text("training: {optimizer: {type: adam, lr: 1e-3}}\nloss: {l2: {recurrent: 1.0e-5}}\n")
    assert read_yaml(f)["loss"]["l2"]["recurrent"] == 1.0e-5
    assert read_yaml(f)["training"]["optimizer"]["lr"] == 1e-3
