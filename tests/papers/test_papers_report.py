"""`valuedyn report` end to end on a small synthetic trajectory, its claims against the
fit files, the fit cache, `valuedyn figures` from the report's files, and the notebook.

One module-scoped report run (real NUTS through valuedyn.fitting, tiny settings) feeds
every test here; the notebook's FAST settings are the same, so it reuses those fits.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from valuedyn.cli import main

from report_helpers import BEHAVIOURS, MODELS, report_args


@pytest.fixture(scope="module")
def report_dir(tiny_report) -> Path:
    """The papers tests' shared tiny report (conftest.py's tiny_report: built once per session)."""
    return tiny_report[0]


@pytest.fixture(scope="module")
def report_trajectory(tiny_report) -> Path:
    return tiny_report[1]


@pytest.fixture(scope="module")
def report_json(report_dir) -> dict:
    return json.loads((report_dir / "report.json").read_text())


def test_every_figure_and_table_is_written(report_dir, report_json):
    figures = report_json["figures"]
    stems = {Path(f).stem for f in figures}
    kinds = {stem.split("_fig")[1][0] for stem in stems}
    # SBC (5) only from `valuedyn sbc` files, in papers; the analysis (6) of a named winner only
    expected = {"1", "2", "3", "4"} | ({"6"} if any(r["winner"] for r in report_json["results"]) else set())
    assert kinds == expected
    assert sum("_fig1_" in s for s in stems) == len(BEHAVIOURS)
    for name in figures:
        payload = (report_dir / name).read_bytes()
        assert payload.startswith(b"\x89PNG" if name.endswith(".png") else b"%PDF")
        assert {Path(name).with_suffix(".png").name, Path(name).with_suffix(".pdf").name} <= {Path(f).name for f in figures}
    markdown = (report_dir / "report.md").read_text()
    for name in figures:
        if name.endswith(".png"):
            assert f"]({name})" in markdown  # embedded in the report
    for table in report_json["tables"]:
        assert (report_dir / table).stat().st_size > 0
    import pandas as pd

    summary = pd.read_csv(report_dir / "tables" / "summary.csv")
    assert list(summary["behaviour"]) == list(BEHAVIOURS)
    models = pd.read_csv(report_dir / "tables" / "models.csv")
    assert len(models) == len(BEHAVIOURS) * len(MODELS)
    assert report_json["config"]["chains"] == 2 and report_json["config"]["draws"] == 40
    assert report_json["provenance"]["valuedyn_version"]


def test_claims_match_the_fit_files(report_dir, report_json):
    from valuedyn.fitting import classify_fit, load_fit, rank_fits

    markdown = (report_dir / "report.md").read_text()
    assert [r["behaviour"] for r in report_json["results"]] == list(BEHAVIOURS)
    for result in report_json["results"]:
        assert sorted(result["fits"]) == sorted(MODELS) and not result["failed_fits"]
        paths = {m: report_dir / result["fits"][m]["file"] for m in MODELS}  # named relative to the report
        verdicts = {}
        for model, path in paths.items():
            idata = load_fit(path)
            assert idata.attrs["model"] == model and idata.attrs["behaviour"] == result["behaviour"]
            verdicts[model] = classify_fit(path, name=model)
            assert result["fits"][model]["trustworthy"] == verdicts[model].trustworthy
            assert result["fits"][model]["verdict"]["label"] == verdicts[model].label
            assert result["fits"][model]["check_failures"] == json.loads(idata.attrs["checks"])["flags"]
        ranking = rank_fits(paths, verdicts)
        assert result["winner"] == ranking.winner and result["text"] == ranking.text
        assert result["text"] in markdown
        if not any(v.comparable for v in verdicts.values()):
            # no trustworthy fit: no winner is named, the comparison is undecided and says why
            assert result["winner"] is None and "undecided" in result["text"]
            assert f"| {result['behaviour']} | - | undecided |" in markdown
        for model in MODELS:
            if not result["fits"][model]["trustworthy"]:
                assert f"{result['behaviour']} {model}: " in markdown.split("## Untrustworthy fits")[1]
                assert verdicts[model].label in markdown


def test_second_run_reuses_every_fit(report_dir, report_trajectory):
    fits = sorted((report_dir / "fits").glob("*.nc"))
    assert len(fits) == len(BEHAVIOURS) * len(MODELS)  # one per fit (a refit's first attempt: in first_attempts/)
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in (report_dir / "fits").rglob("*.nc")}
    status = main(report_args(report_trajectory, report_dir))
    assert status == 0
    after = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in (report_dir / "fits").rglob("*.nc")}
    assert after == before
    again = json.loads((report_dir / "report.json").read_text())
    assert again["n_fits_run"] == 0 and again["n_fits_cached"] == len(BEHAVIOURS) * len(MODELS)


def test_cache_key_follows_inputs_and_settings(report_dir, report_trajectory):
    from valuedyn.fitting import FitJob, FitSettings
    from valuedyn.fitting.pipeline._batch import FitIndex

    settings = FitSettings(chains=2, draws=40, warmup=40)
    base = FitJob(report_trajectory, "abc", "event:place_plant", "overshoot", (0, 1), settings)
    moved = FitJob(Path("elsewhere.nc"), "abc", "event:place_plant", "overshoot", (0, 1), settings)
    other_bytes = FitJob(report_trajectory, "abd", "event:place_plant", "overshoot", (0, 1), settings)
    more = FitJob(report_trajectory, "abc", "event:place_plant", "overshoot", (0, 1), FitSettings(2, 61, 40))
    assert base.cache_key() == moved.cache_key()  # paths do not matter, the bytes do
    assert base.cache_key() != other_bytes.cache_key()
    assert base.cache_key() != more.cache_key()
    # the report's fits are the runner's: their keys are the ones in the index
    sha = json.loads((report_dir / "report.json").read_text())["trajectories"][0]["sha256"]
    cache = FitIndex(report_dir / "fits")
    for model in MODELS:
        job = FitJob(report_trajectory, sha, BEHAVIOURS[0], model, (), settings)  # 2 seeds: all
        # (a fit refitted with its remedy keeps its first attempt, still cached, in first_attempts/; a
        # smooth fit of a behaviour given the OU deviation stays cached in deviation_not_chosen/)
        assert cache.entries[job.cache_key()]["file"] in (job.file_name(), f"first_attempts/{job.file_name()}",
                                                          f"deviation_not_chosen/{job.file_name()}")
    # a cached file that no longer loads is not trusted
    key, entry = next(iter(cache.entries.items()))
    assert cache.lookup(key, sha) is not None
    assert cache.lookup(key, "0" * 64) is None  # another trajectory
    broken = report_dir.parent / "broken_cache"
    shutil.copytree(report_dir / "fits", broken)
    (broken / entry["file"]).write_bytes(b"garbage")
    assert FitIndex(broken).lookup(key, sha) is None


def _paper(tmp_path: Path, report_dir: Path, trajectory: Path, figures: str) -> Path:
    paper = tmp_path / "paper"
    paper.mkdir(exist_ok=True)
    (paper / "paper.toml").write_text(
        f'title = "test"\ntrajectory = "{trajectory}"\nfits = ["{report_dir / "fits"}"]\n' + figures
    )
    return paper


ALL_FIGURES = """
[[figure]]
name = "one"
kind = "trajectories"
behaviour = "event:place_plant"
[[figure]]
name = "two"
kind = "comparison"
[[figure]]
name = "three"
kind = "timescales"
[[figure]]
name = "four"
kind = "placement_histogram"
[[figure]]
name = "five"
kind = "sbc_ranks"
sbc = "sbc.nc"
[[figure]]
name = "six"
kind = "analysis"
behaviour = "event:place_plant"
"""


@pytest.fixture(scope="module")
def sbc_file(tmp_path_factory) -> Path:
    """A real (tiny) SBC run through valuedyn.fitting."""
    from valuedyn.fitting import SBCConfig
    from valuedyn.fitting.judge._sbc import run_sbc_config

    out = tmp_path_factory.mktemp("sbc") / "sbc.nc"
    run_sbc_config(SBCConfig(model="logistic_onset", out=str(out), kind="unlock", pooling="complete",
                             simulations=3, n_seeds=1, n_updates=10, chains=1, draws=20, warmup=20,
                             max_tree_depth=6, thin_to=9, bins=5, progress=False))
    return out


def test_figures_rebuilds_a_paper_deterministically(tmp_path, report_dir, report_json, report_trajectory, sbc_file):
    paper = _paper(tmp_path, report_dir, report_trajectory, ALL_FIGURES)
    shutil.copy(sbc_file, paper / "sbc.nc")
    assert main(["figures", str(paper)]) == 0
    built = {p.name: p.read_bytes() for p in (paper / "figures").iterdir()}
    assert set(built) == {f"{n}.{ext}" for n in ("one", "two", "three", "four", "five", "six") for ext in ("png", "pdf")}
    assert main(["figures", str(paper), "--out", str(tmp_path / "again")]) == 0
    again = {p.name: p.read_bytes() for p in (tmp_path / "again").iterdir()}
    assert again == built  # same files in -> same bytes out
    # the fig-1 PNG of the paper shows the same fits as the report's
    report_png = next((report_dir / "figures").glob("*_fig1_event-place_plant.png")).read_bytes()
    assert built["one.png"] == report_png


def test_figures_refuses_a_corrupt_fit_and_writes_nothing(tmp_path, report_dir, report_trajectory, capsys):
    fits = tmp_path / "fits"
    shutil.copytree(report_dir / "fits", fits)
    victim = sorted(fits.glob("*.nc"))[0]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated
    paper = tmp_path / "paper"
    paper.mkdir()
    (paper / "paper.toml").write_text(
        f'trajectory = "{report_trajectory}"\nfits = ["{fits}"]\n[[figure]]\nname = "two"\nkind = "comparison"\n'
    )
    status = main(["figures", str(paper)])
    assert status == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and str(victim.name) in err
    assert not (paper / "figures").exists()


# ---------------------------------------------------------------- conditions of training (issue 16)
def test_one_trajectory_is_one_condition_said_in_one_line(report_dir, report_json):
    conditions = report_json["conditions"]
    assert conditions["n_conditions"] == 1 and not conditions["fits"] and not conditions["failed_fits"]
    assert "one condition" in conditions["text"] and "\n" not in conditions["text"]
    markdown = (report_dir / "report.md").read_text()
    assert f"## Across conditions\n\n{conditions['text']}\n" in markdown
    assert not list((report_dir / "fits").glob("conditions__*"))  # nothing extra fitted
