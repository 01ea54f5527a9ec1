"""The ``valuedyn`` command line: one subcommand per step, one frozen config each.

Each subcommand is declared in :data:`COMMANDS` as ``module:ConfigClass:run_function``;
its module is imported only when that subcommand runs, so ``valuedyn --help`` is fast.
``run_function(config) -> int`` returns the exit status. A :class:`ValuedynError`
becomes a one-line message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from valuedyn._config import add_config_arguments, config_from_namespace
from valuedyn._errors import ValuedynError

# name -> (one-line help, "module:ConfigClass:run_function")
COMMANDS: dict[str, tuple[str, str]] = {}


def _resolve(target: str):
    module_name, config_name, run_name = target.split(":")
    module = importlib.import_module(module_name)
    return getattr(module, config_name), getattr(module, run_name)


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="valuedyn",
        description="Train PPO agents on Craftax, record behavioural development, fit dynamical models to it.",
    )
    parser.add_argument("--version", action="version", version=_version_line())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (summary, _) in COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def _version_line() -> str:
    from valuedyn import __version__

    return f"valuedyn {__version__}"


def build_parser(name: str) -> tuple[argparse.ArgumentParser, type, object]:
    summary, target = COMMANDS[name]
    config_cls, run = _resolve(target)
    parser = argparse.ArgumentParser(prog=f"valuedyn {name}", description=(config_cls.__doc__ or summary).strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, config_cls)
    return parser, config_cls, run


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--version"]:
        print(_version_line())
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = _top_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; known commands: {', '.join(COMMANDS)}")
        parser.print_help()
        return 0 if argv else 2
    name = argv[0]
    parser, config_cls, run = build_parser(name)
    namespace = parser.parse_args(argv[1:])
    try:
        config = config_from_namespace(config_cls, namespace)
        return int(run(config) or 0)
    except ValuedynError as err:
        print(f"valuedyn {name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"valuedyn {name}: interrupted; files already written are complete", file=sys.stderr)
        return 130


def _register(name: str, summary: str, target: str) -> None:
    COMMANDS[name] = (summary, target)


_register("train", "train PPO agents on Craftax and record behavioural development", "valuedyn.data._train_cli:TrainConfig:run_train")
_register("import", "import learning curves logged by another trainer (CSV, JSONL, TensorBoard) as a trajectory file", "valuedyn.data._import:ImportConfig:run_import")
_register("models", "list the registered dynamical models, or show one's equations and analysis", "valuedyn.models._cli:ModelsConfig:run_models")
_register("fit", "fit a model to one behaviour of a trajectory file (numpyro NUTS)", "valuedyn.fitting.pipeline._cli:FitConfig:run_fit")
_register("check", "posterior predictive checks of a fit file", "valuedyn.fitting.pipeline._cli:CheckConfig:run_check")
_register("compare", "compare fits of the same data (PSIS-LOO, stacking, leave-future-out)", "valuedyn.fitting.pipeline._cli:CompareConfig:run_compare")
_register("fit-batch", "fit, check and compare a plan of fits (trajectories x behaviours x models), locally or on Dask", "valuedyn.fitting.pipeline._batch_cli:FitBatchConfig:run_fit_batch")
_register("conditions", "compare training conditions: effects of differing settings on a model's parameters", "valuedyn.fitting.pipeline._conditions_cli:ConditionsConfig:run_conditions")
_register("sbc", "simulation-based calibration of a model and observation model", "valuedyn.fitting.pipeline._cli:SBCConfig:run_sbc")
_register("figures", "rebuild the figures a paper folder declares, from saved files", "valuedyn.papers._cli:FiguresConfig:run_figures")
_register("report", "the main job: fit, check and compare models on trajectories and write a report", "valuedyn.papers._cli:ReportConfig:run_report")
_register("probe", "developmental-interpretability measures over a run's checkpoints", "valuedyn.data._probe_cli:ProbeConfig:run_probe")


#: commands whose process ends as soon as they return (see :func:`entry`); not ``train``
#: and ``probe``, whose multi-host runs need ``jax.distributed``'s shutdown at exit
PROMPT_EXIT = frozenset(COMMANDS) - {"train", "probe"}


def entry() -> None:
    """The console script and ``python -m valuedyn``: :func:`main`, then the process ends
    at once for :data:`PROMPT_EXIT` commands. The interpreter's teardown (JAX's backends
    and thread pools, a gigabyte of arrays freed one by one) took 2.3 s after a
    ``valuedyn fit`` of the core case, a tenth of its sampling; by the time a command
    returns, each file it wrote is complete and closed (atomic writes), its worker pools
    joined and its Dask cluster closed."""
    import os

    # the command line writes figures to files: Agg; importing valuedyn.papers never switches
    # the backend (a notebook shows its figures inline)
    os.environ.setdefault("MPLBACKEND", "Agg")
    code = main()
    command = next((a for a in sys.argv[1:2] if a in COMMANDS), None)
    if command in PROMPT_EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
