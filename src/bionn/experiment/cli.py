"""The ``bionn`` command line.

    bionn run [CONFIG.yaml] [key=value ...] [--out DIR] [--resume | --overwrite] [--quiet]
    bionn simulate CONFIG.yaml|NETWORK|RUN_DIR [key=value ...] [--out DIR] [--overwrite] [--quiet]
    bionn compare CONFIG.yaml --methods bp,fa,... [--seeds 0,1] [key=value ...] [--out DIR]
                  [--resume | --overwrite]
    bionn sweep SWEEP.yaml [--out DIR] [--resume | --overwrite]
    bionn analyze RUN_DIR [--out DIR] [--overwrite] [--trials N] [--initial K] [--seed S] [--quiet]
    bionn fit CONFIG.yaml [key=value ...] [--out DIR] [--overwrite] [--quiet]
    bionn list tasks|networks|configs|methods|motifs|models

Every command that computes takes ``--device auto|cpu|cuda|cuda:N`` (the config's
``experiment.device``) and ``--force`` (``experiment.force: true``: skip the memory estimate).

With no config, ``run`` trains the embedded default (an 80% E / 20% I CTRNN on
perceptual decision making). A config with a top-level ``data`` section trains a
classifier by backprop or a credit-assignment method (:mod:`bionn.experiment.classify`);
both go through the one training loop (:class:`bionn.experiment.runner.Runner`). Every
config has the same shape: an ``experiment: {name, seed, device, threads}`` section and
the command's sections. The last stdout line is one JSON object with the final metrics
and the output folder. Exit status: 0 done, 1 training stopped on a non-finite value,
2 invalid config, 130 interrupted (a checkpoint was written; continue with --resume).
Every command uses an output folder that does not exist or is empty; one that holds
anything is refused (exit 2) unless ``--resume`` (run, compare, sweep) or ``--overwrite``
(its contents are deleted first): :func:`bionn.experiment.checkpoint.claim_output_folder`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from bionn._core.errors import ConfigError
from bionn.experiment.checkpoint import CheckpointError, claim_output_folder
from bionn.experiment.schema import pick_device


def cmd_run(args: argparse.Namespace) -> int:
    from bionn.experiment.distributed import init_from_env
    from bionn.experiment.runner import Runner, load_run_config

    config_path = args.config
    overrides = list(args.overrides)
    if config_path is not None and "=" in config_path and not Path(config_path).exists():
        overrides.insert(0, config_path)
        config_path = None
    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: --resume continues the "
                          "run in --out, --overwrite deletes it; give one")
    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out DIR, the folder of the run to continue")
    if args.resume and config_path is None:
        # Resume from the run's own resolved config; overrides (e.g. training.steps) apply on top.
        saved = Path(args.out) / "config.yaml"
        config_path = str(saved) if saved.exists() else None
    cfg = load_run_config(config_path, overrides)
    ctx = init_from_env()  # torchrun: one process per rank, DistributedDataParallel
    try:
        # rank 0 alone checks (and with --overwrite empties) the folder; every rank gets its answer
        claimed: tuple[str, object] = ("", None)
        if ctx.rank == 0:
            try:
                claimed = ("ok", claim_output_folder(args.out, cfg.experiment.name,
                                                     resume=args.resume, overwrite=args.overwrite))
            except ConfigError as e:
                claimed = ("error", str(e))
        status, value = ctx.broadcast(claimed)
        if status == "error":
            raise ConfigError(str(value))
        out = Path(value)
        runner = Runner(cfg, out, resume=args.resume, progress=not args.quiet, ctx=ctx)
        try:
            summary = runner.fit()
        except KeyboardInterrupt as e:
            if ctx.rank == 0:
                print(f"{e or 'interrupted'}. Continue with: bionn run --out {out} --resume",
                      file=sys.stderr)
            return 130
    finally:
        ctx.close()
    if ctx.rank == 0:
        print(f"results in {out}/ (metrics.jsonl, final.json, checkpoint.pt, figures/)",
              file=sys.stderr)
        print(json.dumps(summary))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from bionn.experiment.simulate import cmd_simulate as simulate

    return simulate(args)


def cmd_compare(args: argparse.Namespace) -> int:
    from bionn.experiment.compare import cmd_compare as compare

    return compare(args)


def cmd_sweep(args: argparse.Namespace) -> int:
    from bionn.experiment.sweep import cmd_sweep as sweep

    return sweep(args)


def listing(what: str) -> list[str]:
    """The names ``bionn list WHAT`` prints, from the registries themselves."""
    if what == "tasks":
        from bionn.tasks import TASKS

        return sorted(TASKS)
    if what == "networks":
        from bionn.spiking.networks import NETWORKS

        return sorted(NETWORKS)
    if what == "methods":
        from bionn.learning import METHODS

        return list(METHODS)
    if what == "motifs":
        from bionn.circuits import list_motifs

        return list_motifs()
    if what == "models":
        from bionn.experiment.models import MODEL_KINDS

        return sorted(MODEL_KINDS)
    from bionn.experiment.simulate import shipped_configs

    return [p.stem for p in shipped_configs()]


LISTS = ("tasks", "networks", "configs", "methods", "motifs", "models")


def cmd_list(args: argparse.Namespace) -> int:
    print("\n".join(listing(args.what)))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from bionn.experiment.analyze import cmd_analyze as analyze

    return analyze(args)


def cmd_fit(args: argparse.Namespace) -> int:
    from bionn.experiment.fit import cmd_fit as fit_command

    return fit_command(args)


COMMANDS = {"run": cmd_run, "simulate": cmd_simulate, "compare": cmd_compare, "sweep": cmd_sweep,
            "analyze": cmd_analyze, "fit": cmd_fit, "list": cmd_list}


def build_parser() -> argparse.ArgumentParser:
    from bionn import __version__

    parser = argparse.ArgumentParser(prog="bionn", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"bionn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train a model from a YAML config (default: the embedded E/I CTRNN)")
    run.add_argument("config", nargs="?", help="YAML config file (omit for the embedded default)")
    run.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. model.n_hidden=128")
    run.add_argument("--out", help="output folder (default runs/<name>-<time>)")
    run.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    run.add_argument("--overwrite", action="store_true",
                     help="delete the contents of --out (an earlier bionn output) before running")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    from bionn.experiment.simulate import add_parser as add_simulate

    add_simulate(sub)
    from bionn.experiment.compare import add_parser as add_compare

    add_compare(sub)
    from bionn.experiment.sweep import add_parser as add_sweep

    add_sweep(sub)
    from bionn.experiment.analyze import add_parser as add_analyze

    add_analyze(sub)
    from bionn.experiment.fit import add_parser as add_fit

    add_fit(sub)
    for name in ("run", "simulate", "compare", "sweep", "fit"):
        p = sub.choices[name]
        p.add_argument("--device", help="where to compute: auto (CUDA when present, else the "
                       "CPU), cpu, cuda or cuda:N; sets experiment.device (every trial's, for sweep)")
        p.add_argument("--force", action="store_true",
                       help="skip the memory estimate made before any work (experiment.force)")
    lst = sub.add_parser("list", help="list the names bionn knows: " + ", ".join(LISTS))
    lst.add_argument("what", choices=LISTS)
    return parser


def command_line_settings(args: argparse.Namespace) -> list[str]:
    """``--device`` and ``--force`` as the config overrides they stand for."""
    settings = []
    if getattr(args, "device", None) is not None:
        pick_device(args.device, "--device")  # an unknown name or a GPU this machine lacks
        settings.append(f"experiment.device={args.device}")
    if getattr(args, "force", False):
        settings.append("experiment.force=true")
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow the options (``--out DIR training.epochs=1``)
    bad = [a for a in extra if a.startswith("-") or "=" not in a]
    if bad or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(bad or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    # SIGTERM ends a command like Ctrl-C (the runner finishes its step and checkpoints)
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        settings = command_line_settings(args)
        if args.command == "sweep":
            args.settings = settings  # applied to every trial's config, not to the sweep file
        elif settings:
            args.overrides = [*args.overrides, *settings]
        return COMMANDS[args.command](args)
    except ConfigError as e:
        print(f"bionn {args.command}: {e}", file=sys.stderr)
        return 2
    except (FloatingPointError, CheckpointError) as e:  # non-finite guard, damaged checkpoint
        print(f"bionn {args.command}: {e}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as e:
        if not _out_of_memory(e):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"bionn {args.command}: out of memory during the work ({first[:300]}); lower the "
              "model size or the batch size (without --force the memory estimate refuses "
              "configs it can tell will not fit); what the command had finished is kept",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a command without its own checkpointing (e.g. simulate)
        again = ("continue with --resume (same --out), or start over with --overwrite"
                 if args.command in ("compare", "sweep")
                 else "run it again with --overwrite (same --out) to start over")
        print(f"\nbionn {args.command}: interrupted; nothing was written beyond what the command "
              f"had finished (config.yaml, completed recording chunks, finished runs and their "
              f"checkpoints); {again}", file=sys.stderr)
        return 130
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


def _out_of_memory(e: BaseException) -> bool:
    """A failed allocation, on the CPU (``MemoryError``, the allocator's RuntimeError) or
    a GPU (``torch.OutOfMemoryError``)."""
    if isinstance(e, MemoryError):
        return True
    import torch

    text = str(e)
    return isinstance(e, torch.OutOfMemoryError) or "can't allocate memory" in text \
        or "out of memory" in text.lower()


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
