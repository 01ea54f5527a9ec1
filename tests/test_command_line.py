"""The top-level command line: dispatch and unknown commands."""

import pytest

from valuedyn.cli import COMMANDS, build_parser, main


def test_unknown_command_is_refused_with_the_known_ones(capsys):
    try:
        main(["trian"])
    except SystemExit as exit_:
        assert exit_.code == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'" in err and "train" in err


def test_version_prints_the_installed_package_version(capsys):
    """``valuedyn --version``: the version the installed package declares (pyproject), so
    ``valuedyn.__version__`` cannot drift from it unnoticed."""
    from importlib import metadata

    import valuedyn

    assert main(["--version"]) == 0
    printed = capsys.readouterr().out
    assert printed == f"valuedyn {metadata.version('valuedyn')}\n" == f"valuedyn {valuedyn.__version__}\n"
    assert main(["--help"]) == 0 and "--version" in capsys.readouterr().out


def test_every_subcommand_builds_its_parser():
    from valuedyn.cli import build_parser

    for name in COMMANDS:
        parser, config_cls, run = build_parser(name)
        assert callable(run) and config_cls.__doc__


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_prints_its_help(command):
    """argparse formats help with %: a bare "90% coverage" in one option's help once made
    `valuedyn fit-batch --help` crash with a TypeError."""
    parser, _, _ = build_parser(command)
    text = parser.format_help()
    assert "--help" in text and len(text) > 100


def test_the_process_ends_promptly_with_its_status_and_all_its_output(tmp_path):
    """``python -m valuedyn`` (as the console script) ends the process as soon as a
    fitting or report command returns: its exit status and everything it printed, into a
    pipe (block-buffered), still come out."""
    import subprocess
    import sys

    from valuedyn.cli import PROMPT_EXIT

    assert {"fit", "report", "fit-batch"} <= PROMPT_EXIT and "train" not in PROMPT_EXIT
    listed = subprocess.run([sys.executable, "-m", "valuedyn", "models"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "overshoot" in listed.stdout and listed.stdout.endswith("\n")
    refused = subprocess.run([sys.executable, "-m", "valuedyn", "fit", str(tmp_path / "missing.nc"), "--model",
                              "overshoot", "--behaviour", "event:place_plant", "--out", str(tmp_path / "fit.nc")],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "does not exist" in refused.stderr
    assert not (tmp_path / "fit.nc").exists()
