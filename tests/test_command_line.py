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
