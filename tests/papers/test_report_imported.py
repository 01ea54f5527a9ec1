"""`valuedyn import ... && valuedyn report` on another trainer's logs (issue 32, point 4),
and the report's refusal of files that are no trajectories.

The logs are written here: two W&B-style JSONL runs of 30 updates that log unlock rates in
percent and the mean episode length, nothing else (an unlock-only import), with one rate
missing. The report runs once (module fixture) with tiny sampler settings.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from valuedyn._errors import ValuedynError
from valuedyn.cli import main

ACHIEVEMENTS = ("collect_wood", "place_table", "place_plant", "collect_diamond")
ONSET = {"collect_wood": 0.1, "place_table": 0.4, "place_plant": 0.55, "collect_diamond": None}
N_UPDATES = 30
STEPS_PER_UPDATE = 4096
MISSING = (1, 12, "place_table")  # run 1 did not log place_table at update 13
SAMPLER = ["--chains", "1", "--warmup", "60", "--draws", "60", "--min-draws", "0", "--max-tree-depth", "5",
           "--workers", "1", "--no-lfo", "--no-refit-remedy"]


def write_runs(folder) -> list:
    """Two runs' W&B histories as JSONL: unlock rates in percent drawn from rising curves."""
    rng = np.random.default_rng(0)
    paths = []
    for run in range(2):
        rows = []
        for update in range(N_UPDATES):
            tau = update / (N_UPDATES - 1)
            length = 200.0 - 100.0 * tau
            episodes = int(round(STEPS_PER_UPDATE / length))
            row = {"_step": update, "episode_length": length}
            for name in ACHIEVEMENTS:
                p = 0.01 if ONSET[name] is None else 0.02 + 0.9 / (1 + np.exp(-(tau - ONSET[name] - 0.03 * run) / 0.06))
                row[f"Achievements/{name}"] = 100.0 * rng.binomial(episodes, p) / episodes
            if (run, update) == MISSING[:2]:
                row[f"Achievements/{MISSING[2]}"] = None
            rows.append(row)
        path = folder / f"run{run}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imported")
    out = folder / "theirs.nc"
    assert main(["import", *map(str, write_runs(folder)), "--steps-per-update", str(STEPS_PER_UPDATE), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def report(imported):
    """The default report (default behaviours and diversity, at most 1 behaviour) of the import."""
    out = imported.parent / "report"
    code = main(["report", str(imported), "--out", str(out), "--models", "logistic_onset", "stagewise",
                 "--max-behaviours", "1", *SAMPLER])
    assert code == 0
    return out, json.loads((out / "report.json").read_text()), (out / "report.md").read_text()


def test_the_report_of_an_unlock_only_import_fits_compares_and_draws_its_unlock_behaviours(report, imported):
    from valuedyn.data import open_trajectory
    from valuedyn.fitting.pipeline._plan import default_behaviours

    out, data, markdown = report
    # behaviours by the same rule as for shipped runs: unlock:place_plant (the motif's unlock part) first
    expected = default_behaviours(open_trajectory(imported), 0.5)[:1]
    assert expected == ["unlock:place_plant"]
    assert [r["behaviour"] for r in data["results"]] == expected
    result = data["results"][0]
    assert sorted(result["fits"]) == ["logistic_onset", "stagewise"]  # every requested model fitted
    assert result["observation"]["model"] == "betabinomial"  # as for any unlock curve (the report's rule)
    for fit in result["fits"].values():
        assert fit["verdict"]["label"] and (out / fit["file"]).is_file()  # a verdict per fit
    assert "text" in result  # the trust-aware ranking, stated or undecided with its reason
    stem = "theirs"
    for figure in (f"{stem}_fig1_unlock-place_plant", f"{stem}_fig2_comparison", f"{stem}_fig3_timescales"):
        assert f"figures/{figure}.png" in data["figures"] and (out / "figures" / f"{figure}.png").is_file()
    assert not any("histogram" in f or "diversity" in f for f in data["figures"])  # nothing drawn from absent parts
    assert "### unlock:place_plant" in markdown and "| theirs.nc | unlock:place_plant |" in markdown


def test_sections_needing_absent_parts_are_one_line_each_saying_what_the_log_lacked(report):
    _, data, markdown = report
    lacked = [n for n in data["notes"] if "lacked" in n and "sections are left out" in n]
    assert lacked == ["theirs.nc: its log (imported) lacked event totals, action counts and placement histograms, so "
                      "these sections are left out: the motif (plants placed per episode, event:place_plant) and the "
                      "diversity of events; the diversity of actions; the plants-per-episode histogram"]
    assert f"- {lacked[0]}" in markdown
    assert data["motif"]["theirs.nc"].startswith("Not answered: the log of theirs.nc lacked event totals")
    assert "### Diversity of behaviour" not in markdown and data["diversity"] == []
    assert not any(r["behaviour"].startswith(("event:", "action:", "diversity:")) for r in data["results"])


def test_the_report_states_how_the_episode_counts_were_obtained_and_the_rate_unit_rule(report, imported):
    from valuedyn.data import open_trajectory

    _, data, markdown = report
    attrs = open_trajectory(imported).attrs
    counts = [n for n in data["notes"] if "episode counts:" in n]
    assert len(counts) == 1 and attrs["episodes_source"] in counts[0] and attrs["count_rounding"] in counts[0]
    assert "estimated" in counts[0]  # no logged count: the estimation path
    unit = [n for n in data["notes"] if "rate" in n and attrs["rate_unit_rule"] in n]
    assert len(unit) == 1 and "(read as percent)" in unit[0] and "per finished episode" in unit[0]
    assert all(f"- {n}" in markdown for n in counts + unit)


def test_a_missing_rate_is_masked_in_the_fits_not_fitted_as_zero(imported):
    from valuedyn.data import open_trajectory
    from valuedyn.fitting import select_behaviour

    ds = open_trajectory(imported)
    seed, update, name = MISSING
    assert ds["achievement_unlocks"].sel(achievement=name).values[seed, update] == 0  # the stored placeholder
    selection = select_behaviour(ds, f"unlock:{name}")
    assert not selection.mask[seed, update] and selection.exposure[seed, update] > 0
    assert selection.mask.sum() == 2 * N_UPDATES - 1


def test_asking_for_an_absent_behaviour_is_refused_in_one_line(imported, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["report", str(imported), "--out", str(out), "--behaviours", "event:place_plant", *SAMPLER])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    line = [x for x in err.strip().splitlines() if "error" in x]
    assert len(line) == 1 and "needs the 'events' part (event_total)" in line[0]
    assert "the file offers unlock:ACHIEVEMENT" in line[0]


# ---------------------------------------------------------------------------
# probe, memory and fit files are no trajectories
# ---------------------------------------------------------------------------


def test_default_trajectories_skip_probe_and_memory_files_and_subfolders(tmp_path, imported):
    from valuedyn.papers._report_inputs import default_trajectories

    run = tmp_path / "run.nc"
    shutil.copy(imported, run)
    for name in ("run.probe.nc", "run.probeset.nc", "run.memory.nc"):
        (tmp_path / name).write_bytes(b"not read")
    (tmp_path / "campaign").mkdir()
    shutil.copy(imported, tmp_path / "campaign" / "other.nc")
    assert default_trajectories(tmp_path) == [run]


@pytest.mark.parametrize("name, message", [
    ("run.probe.nc", r"written by `valuedyn probe`, not a trajectory; pass the run's trajectory file \(e.g. run.nc\)"),
    ("run.probeset.nc", "written by `valuedyn probe`, not a trajectory"),
    ("run.memory.nc", r"written by `valuedyn probe --memory`, not a trajectory"),
])
def test_a_probe_or_memory_file_given_as_a_trajectory_is_refused(tmp_path, capsys, name, message):
    import re

    path = tmp_path / name
    path.write_bytes(b"whatever it holds")
    code = main(["report", str(path), "--out", str(tmp_path / "report"), *SAMPLER])
    errors = [line for line in capsys.readouterr().err.strip().splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1 and re.search(message, errors[0]), errors
    assert not (tmp_path / "report").exists()


def test_a_fit_file_given_as_a_trajectory_is_refused(report, tmp_path, capsys):
    out, data, _ = report
    fit = out / next(iter(data["results"][0]["fits"].values()))["file"]
    with pytest.raises(ValuedynError, match="is a fit file .* not a trajectory; pass the trajectory it was fitted to"):
        from valuedyn.papers._report_inputs import resolve_trajectories

        resolve_trajectories([str(fit)])


def test_a_paper_glob_keeps_naming_one_trajectory_beside_probe_files_and_a_campaign(tmp_path, imported):
    from valuedyn.papers._paper import load_paper

    paper = tmp_path / "paper"
    (paper / "data" / "campaign").mkdir(parents=True)
    shutil.copy(imported, paper / "data" / "run.nc")
    shutil.copy(imported, paper / "data" / "campaign" / "other.nc")
    (paper / "data" / "run.probe.nc").write_bytes(b"x")
    (paper / "data" / "run.memory.nc").write_bytes(b"x")
    (paper / "paper.toml").write_text('trajectory = "data/*.nc"\n[[figure]]\nname = "h"\nkind = "placement_histogram"\n')
    assert load_paper(str(paper)).trajectory == (paper / "data" / "run.nc").resolve()


def test_the_plant_motif_paper_names_its_trajectory(tmp_path):
    import tomllib

    from valuedyn.papers._paper import PAPERS_ROOT, resolve_path

    declared = tomllib.loads((PAPERS_ROOT / "plant_motif" / "paper.toml").read_text())["trajectory"]
    assert not any(c in declared for c in "*?[")  # a named file: later runs in data/ change nothing
    assert resolve_path(declared, PAPERS_ROOT / "plant_motif").is_file()


def test_figures_of_an_import_refuse_what_its_log_lacked(imported):
    from valuedyn.data import open_trajectory
    from valuedyn.papers import plot_placement_histogram
    from valuedyn.papers._paper import FigureInputs, FigureSpec, build_figure

    ds = open_trajectory(imported)
    with pytest.raises(ValuedynError, match=r"holds no placement histograms \(its log \(imported\) lacked them\)"):
        plot_placement_histogram(ds, "plant")
    spec = FigureSpec("f", "trajectories", {"behaviour": "event:place_plant"})
    with pytest.raises(ValuedynError, match="figure 'f': behaviour 'event:place_plant' needs the 'events' part"):
        build_figure(spec, FigureInputs(trajectory=ds))
