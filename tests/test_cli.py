"""The top-level command line: dispatch, unknown commands, the CPU deadlock guard."""

import os
import subprocess
import sys

from valuedyn.cli import COMMANDS, main


def test_unknown_command_is_refused_with_the_known_ones(capsys):
    try:
        main(["trian"])
    except SystemExit as exit_:
        assert exit_.code == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'" in err and "train" in err


def test_every_subcommand_builds_its_parser():
    from valuedyn.cli import build_parser

    for name in COMMANDS:
        parser, config_cls, run = build_parser(name)
        assert callable(run) and config_cls.__doc__


def _xla_flags_after_guard(env):
    code = "import os; from valuedyn.cli import avoid_cpu_eigen_deadlock as g; g(); print(os.environ.get('XLA_FLAGS', ''))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_cpu_eigen_guard_adds_the_flag_once_and_keeps_user_flags():
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "VALUEDYN_CPU_EIGEN_THREADS")}
    assert _xla_flags_after_guard(env) == "--xla_cpu_multi_thread_eigen=false"
    flags = _xla_flags_after_guard(dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    assert flags.split() == ["--xla_force_host_platform_device_count=2", "--xla_cpu_multi_thread_eigen=false"]
    assert _xla_flags_after_guard(dict(env, XLA_FLAGS="--xla_cpu_multi_thread_eigen=true")) == "--xla_cpu_multi_thread_eigen=true"
    assert _xla_flags_after_guard(dict(env, VALUEDYN_CPU_EIGEN_THREADS="1")) == ""
