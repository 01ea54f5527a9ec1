"""`valuedyn models` and `valuedyn models NAME` through the real command line entry point."""

from valuedyn.cli import main
from valuedyn.models import get_model, list_models


def test_cli_lists_models_with_parameters(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in list_models():
        assert name in out
        for p in get_model(name).parameters:
            assert p.name in out


def test_cli_shows_equations_and_analysis(capsys):
    assert main(["models", "overshoot"]) == 0
    out = capsys.readouterr().out
    assert "dy/dt = -alpha*(-u + y)" in out and "du/dt = -beta*(-optimum + u)" in out
    assert "eigenvalues: -beta, -alpha" in out or "eigenvalues: -alpha, -beta" in out
    assert "stable" in out and "1/beta" in out and "timescales" in out
    for p in get_model("overshoot").parameters:
        assert p.name in out


def test_cli_shows_reduced_model(capsys):
    assert main(["models", "diversify_then_minimize"]) == 0
    out = capsys.readouterr().out
    assert "slow manifold" in out and "reduced model dC/dt" in out


def test_cli_unknown_model_exits_2(capsys):
    assert main(["models", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err and "overshoot" in err
