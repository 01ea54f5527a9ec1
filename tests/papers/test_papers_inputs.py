"""Figures from a trajectory alone, behaviour selection, and bad input (no fitting needed)."""

from __future__ import annotations

import numpy as np
import pytest

from valuedyn._errors import ValuedynError
from valuedyn.cli import main
from valuedyn.data import open_trajectory
from valuedyn.papers import plot_placement_histogram, render_figure
from valuedyn.fitting import default_behaviours, learned_achievements


@pytest.fixture(scope="module")
def trajectory(synthetic_trajectory):
    return open_trajectory(synthetic_trajectory)


def _pixels(png: bytes) -> np.ndarray:
    import io

    import matplotlib.image

    return matplotlib.image.imread(io.BytesIO(png), format="png")


def test_placement_histogram_is_deterministic_and_drawn(trajectory):
    first = render_figure(plot_placement_histogram(trajectory, "place_plant"))
    second = render_figure(plot_placement_histogram(trajectory, "plant"))  # short label, same figure
    assert first["png"] == second["png"]
    assert first["pdf"] == second["pdf"]
    other = render_figure(plot_placement_histogram(trajectory, "place_table"))
    assert not np.array_equal(_pixels(first["png"]), _pixels(other["png"]))  # the data shows


def test_placement_histogram_refuses_an_unknown_placement(trajectory):
    with pytest.raises(ValuedynError, match="placement 'furnace' is not in the trajectory"):
        plot_placement_histogram(trajectory, "furnace")


def test_learned_achievements_follow_the_rule(trajectory):
    learned = learned_achievements(trajectory, 0.5)
    names = [name for name, _ in learned]
    # recompute the rule directly: pooled rate below 0.5 in the first tenth, >= 0.5 in the last tenth
    unlocks = trajectory["achievement_unlocks"].sum("seed")
    episodes = trajectory["episodes_finished"].sum("seed")
    n = trajectory.sizes["update"]
    w = max(1, round(0.1 * n))
    early = unlocks.isel(update=slice(0, w)).sum("update") / episodes.isel(update=slice(0, w)).sum()
    late = unlocks.isel(update=slice(n - w, n)).sum("update") / episodes.isel(update=slice(n - w, n)).sum()
    expected = {str(a) for a in trajectory["achievement"].values if early.sel(achievement=a) < 0.5 <= late.sel(achievement=a)}
    assert set(names) == expected
    assert "place_plant" in names and "collect_diamond" not in names  # the synthetic curves
    steps = [step for _, step in learned]
    assert steps == sorted(steps)


def test_default_behaviours_put_the_plant_motif_first(trajectory):
    behaviours = default_behaviours(trajectory, 0.5)
    assert behaviours[:2] == ["event:place_plant", "unlock:place_plant"]
    assert len(behaviours) == len(set(behaviours))
    assert all(b.startswith("unlock:") for b in behaviours[2:])


def test_report_refuses_a_missing_trajectory(tmp_path, capsys):
    status = main(["report", str(tmp_path / "nope.nc"), "--out", str(tmp_path / "out")])
    assert status == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_report_refuses_a_corrupt_trajectory(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.nc"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"not really" * 20)
    status = main(["report", str(corrupt), "--out", str(tmp_path / "out")])
    assert status == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_report_refuses_an_unknown_behaviour(synthetic_trajectory, tmp_path, capsys):
    status = main(["report", str(synthetic_trajectory), "--out", str(tmp_path / "out"), "--behaviours", "unlock:fly"])
    assert status == 2
    assert "'fly' is not in this file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--workers", "-1", "--workers must be >= 0"),
    ("--max-tree-depth", "0", "--max-tree-depth must lie in 1..15"),
    ("--max-tree-depth", "16", "--max-tree-depth must lie in 1..15"),
    ("--chains", "0", "must be >= 1"),
    ("--time-budget", "-5", "--time-budget must be >= 0"),
    ("--learned-threshold", "1.5", "--learned-threshold must lie in (0, 1)"),
])
@pytest.mark.parametrize("command", ["report", "fit-batch"])
def test_bad_options_are_refused_before_any_work(command, option, value, message, tmp_path, capsys):
    # a missing trajectory as well: the option must be refused first, before any input is read
    out = ["--out", str(tmp_path / "out")] if command == "report" else ["--fits-dir", str(tmp_path / "out")]
    status = main([command, str(tmp_path / "nope.nc"), *out, option, value])
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and "does not exist" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_figures_refuses_an_unknown_paper_folder(tmp_path, capsys):
    status = main(["figures", str(tmp_path / "no_such_paper")])
    assert status == 2
    err = capsys.readouterr().err
    assert "has no paper.toml" in err and "plant_motif" in err


def test_figures_refuses_an_unknown_figure_kind(tmp_path, synthetic_trajectory, capsys):
    paper = tmp_path / "paper"
    paper.mkdir()
    (paper / "paper.toml").write_text(
        f'trajectory = "{synthetic_trajectory}"\n[[figure]]\nname = "x"\nkind = "violin"\n'
    )
    status = main(["figures", str(paper)])
    assert status == 2
    assert "unknown kind 'violin'" in capsys.readouterr().err
    assert not (paper / "figures").exists()


def test_figures_from_a_trajectory_only_paper(tmp_path, synthetic_trajectory):
    paper = tmp_path / "paper"
    paper.mkdir()
    (paper / "paper.toml").write_text(
        f'trajectory = "{synthetic_trajectory}"\nout = "build"\n'
        '[[figure]]\nname = "plants"\nkind = "placement_histogram"\nplacement = "place_plant"\n'
    )
    assert main(["figures", str(paper)]) == 0
    png = (paper / "build" / "plants.png").read_bytes()
    assert (paper / "build" / "plants.pdf").read_bytes().startswith(b"%PDF")
    assert main(["figures", str(paper), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "plants.png").read_bytes() == png
