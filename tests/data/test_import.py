"""valuedyn import: learning curves logged by another trainer become a trajectory file.

Every fixture is written here, from known counts: W&B-style CSV and JSONL histories
(``_step``, ``Achievements/<name>`` in percent, ``episode_return``, ``episode_length``) and
TensorBoard event folders written with TensorBoard's own writers (tensor scalars as
TensorFlow 2 writes them, ``simple_value`` scalars as PyTorch and tensorboardX do).
"""

from __future__ import annotations

import csv
import json
import math
import time

import numpy as np
import pytest

from valuedyn._errors import ValuedynError
from valuedyn.cli import main
from valuedyn.data import (
    ImportConfig,
    absent_parts,
    import_runs,
    observed_mask,
    open_trajectory,
    present_parts,
    validate_trajectory,
)

ACHIEVEMENTS = ("collect_wood", "place_table", "place_plant")
STEPS_PER_UPDATE = 1024
LENGTHS = (128.0, 100.0, 80.0, 64.0, 50.0)  # mean episode length per update: 8, 10, 13, 16, 20 episodes


def _truth(run: int, updates: int = 5):
    """Known counts of one run: episodes per update and unlocks [update, achievement]."""
    episodes = np.rint(STEPS_PER_UPDATE / np.asarray(LENGTHS[:updates])).astype(int)
    share = np.array([[min(1.0, 0.1 * (u + 1) * (a + 1) + 0.05 * run) for a in range(len(ACHIEVEMENTS))] for u in range(updates)])
    unlocks = np.rint(share * episodes[:, None]).astype(int)
    return episodes, unlocks


def _rows(run: int, *, percent: bool = True, count: bool = False, updates: int = 5, extra=None):
    """W&B history rows of ``run``: rates of the known counts (percent by default)."""
    episodes, unlocks = _truth(run, updates)
    rows = []
    for u in range(updates):
        row = {"_step": u, "_runtime": 1.5 * u, "episode_return": 2.0 + u, "episode_length": LENGTHS[u]}
        for a, name in enumerate(ACHIEVEMENTS):
            rate = unlocks[u, a] / episodes[u]
            row[f"Achievements/{name}"] = 100.0 * rate if percent else rate
        if count:
            row["episodes_finished"] = int(episodes[u])
        rows.append(row)
    for u, changes in (extra or {}).items():
        rows[u].update(changes)
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_csv(path, rows):
    names = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, names)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in row.items()})
    return path


def write_tensorboard(folder, rows, *, simple_value: bool, step_of=lambda row: row["_step"]):
    """One TensorBoard run: ``tensorboard.summary.Writer`` (tensor scalars) or raw
    ``simple_value`` events through TensorBoard's ``EventFileWriter``."""
    pytest.importorskip("tensorboard")
    if simple_value:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        writer = EventFileWriter(str(folder))
        for row in rows:
            values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in row.items()
                      if not k.startswith("_") and v is not None]
            writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step_of(row)), summary=summary_pb2.Summary(value=values)))
        writer.close()
    else:
        from tensorboard.summary import Writer

        writer = Writer(str(folder))
        for row in rows:
            for k, v in row.items():
                if not k.startswith("_") and v is not None:
                    writer.add_scalar(k, float(v), int(step_of(row)))
        writer.close()
    return folder


def _cli(capsys, args):
    code = main(["import", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------------------
# formats
# ---------------------------------------------------------------------------


def test_wandb_csv_two_runs_estimates_episodes_and_round_trips_the_rates(tmp_path, capsys):
    runs = [write_csv(tmp_path / f"run{r}.csv", _rows(r)) for r in range(2)]
    out = tmp_path / "theirs.nc"
    code, printed, err = _cli(capsys, [*runs, "--steps-per-update", STEPS_PER_UPDATE, "--out", out])
    assert code == 0, err
    assert "rates read as percent" in printed and "percent if any logged rate exceeds 1" in printed
    assert "estimated" in printed
    ds = open_trajectory(out)  # validates against the contract
    assert dict(ds.sizes) == {"seed": 2, "update": 5, "achievement": 3}
    assert [str(a) for a in ds["achievement"].values] == list(ACHIEVEMENTS)
    np.testing.assert_array_equal(ds["env_step"].values, np.arange(1, 6) * STEPS_PER_UPDATE)
    for r in range(2):
        episodes, unlocks = _truth(r)
        np.testing.assert_array_equal(ds["episodes_finished"].values[r], episodes)  # S / mean length, rounded
        np.testing.assert_array_equal(ds["achievement_unlocks"].values[r], unlocks)
        # rates -> counts -> rates: within the rounding
        rates = np.array([[row[f"Achievements/{a}"] / 100 for a in ACHIEVEMENTS] for row in _rows(r)])
        back = ds["achievement_unlocks"].values[r] / ds["episodes_finished"].values[r][:, None]
        assert np.all(np.abs(back - rates) <= 0.5 / ds["episodes_finished"].values[r][:, None] + 1e-12)
        np.testing.assert_allclose(ds["return_sum"].values[r], (2.0 + np.arange(5)) * episodes)
    assert ds.attrs["source_format"] == "csv" and ds.attrs["rate_unit"] == "percent"
    assert "estimated" in ds.attrs["episodes_source"] and "rounded to the nearest integer" in ds.attrs["episodes_source"]
    assert "round(rate x episodes_finished)" in ds.attrs["count_rounding"]
    assert json.loads(ds.attrs["source_files"]) == [str(p) for p in runs]
    assert len(json.loads(ds.attrs["source_sha256"])) == 2
    assert json.loads(ds.attrs["column_mapping"])["achievements"]["place_plant"] == "Achievements/place_plant"
    assert present_parts(ds) == ("unlocks", "returns") and set(absent_parts(ds)) == {"events", "actions", "placements", "ppo"}
    assert "event_total" not in ds and "action_count" not in ds and "event" not in ds.dims  # nothing made up


def test_jsonl_with_a_logged_count_gives_the_counts_exactly(tmp_path):
    runs = [write_jsonl(tmp_path / f"run{r}.jsonl", _rows(r, percent=False, count=True)) for r in range(2)]
    ds = import_runs(runs, steps_per_update=STEPS_PER_UPDATE)
    assert ds.attrs["rate_unit"] == "fraction" and "logged: column 'episodes_finished'" in ds.attrs["episodes_source"]
    for r in range(2):
        episodes, unlocks = _truth(r)
        np.testing.assert_array_equal(ds["episodes_finished"].values[r], episodes)
        np.testing.assert_array_equal(ds["achievement_unlocks"].values[r], unlocks)


def test_episodes_per_update_flag_and_its_conflict_with_a_logged_count(tmp_path):
    run = write_jsonl(tmp_path / "run.jsonl", _rows(0))
    ds = import_runs([run], steps_per_update=STEPS_PER_UPDATE, episodes_per_update=40)
    assert np.all(ds["episodes_finished"].values == 40) and "--episodes-per-update 40" in ds.attrs["episodes_source"]
    counted = write_jsonl(tmp_path / "counted.jsonl", _rows(0, count=True))
    with pytest.raises(ValuedynError, match="would override them"):
        import_runs([counted], steps_per_update=STEPS_PER_UPDATE, episodes_per_update=40)


@pytest.mark.parametrize("simple_value", [False, True], ids=["tensor-scalars", "simple-value"])
def test_tensorboard_folders_two_runs(tmp_path, simple_value):
    runs = [write_tensorboard(tmp_path / f"run{r}", _rows(r), simple_value=simple_value) for r in range(2)]
    ds = import_runs(runs, steps_per_update=STEPS_PER_UPDATE)
    assert ds.attrs["source_format"] == "tensorboard" and dict(ds.sizes) == {"seed": 2, "update": 5, "achievement": 3}
    for r in range(2):
        episodes, unlocks = _truth(r)
        np.testing.assert_array_equal(ds["episodes_finished"].values[r], episodes)
        np.testing.assert_array_equal(ds["achievement_unlocks"].values[r], unlocks)


def test_cleanrl_style_tensorboard_run_with_the_env_step_as_step_and_other_names(tmp_path):
    """A mapping override: the event step is the global env step, achievements under another prefix."""
    rows = [{("charts/" + k.partition("/")[2] if k.startswith("Achievements/") else k): v for k, v in row.items()}
            for row in _rows(0)]
    for row in rows:
        row["charts/episodic_length"] = row.pop("episode_length")
    folder = write_tensorboard(tmp_path / "cleanrl", rows, simple_value=True, step_of=lambda row: (row["_step"] + 1) * 512)
    ds = import_runs([folder], columns={"env_step": "_step", "achievement": "charts/{name}", "episode_length": "charts/episodic_length"})
    np.testing.assert_array_equal(ds["env_step"].values, np.arange(1, 6) * 512)
    episodes, _ = _truth(0)
    # 512 env steps per update, from the env steps' spacing: half the episodes of 1024
    np.testing.assert_array_equal(ds["episodes_finished"].values[0], np.maximum(np.rint(512 / np.asarray(LENGTHS)), 1))
    assert json.loads(ds.attrs["column_mapping"])["env_step"] == "_step"


def test_format_flag_reads_a_file_whose_name_does_not_tell(tmp_path):
    run = write_csv(tmp_path / "history.txt", _rows(0))
    ds = import_runs([run], format="csv", steps_per_update=STEPS_PER_UPDATE)
    assert ds.attrs["source_format"] == "csv" and ds.sizes["update"] == 5


def test_column_mapping_overrides(tmp_path):
    rows = _rows(0)
    for row in rows:
        row["wood_rate"] = row.pop("Achievements/collect_wood")
    run = write_jsonl(tmp_path / "run.jsonl", rows)
    ds = import_runs([run], steps_per_update=STEPS_PER_UPDATE, columns=("achievement:collect_wood=wood_rate", "episode_return="))
    assert set(str(a) for a in ds["achievement"].values) == set(ACHIEVEMENTS)
    assert "return_sum" not in ds and "length_sum" in ds  # an ignored column is absent, not zero
    with pytest.raises(ValuedynError, match="unknown key 'episode'"):
        import_runs([run], steps_per_update=STEPS_PER_UPDATE, columns=("episode=x",))
    with pytest.raises(ValuedynError, match=r"needs '\{name\}'"):
        import_runs([run], steps_per_update=STEPS_PER_UPDATE, columns=("achievement=charts/wood",))


def test_rate_unit_rule_and_override(tmp_path):
    # fractions under 1% of the episodes: the rule reads them as fractions, the flag as percent
    rows = [{"_step": u, "episode_length": 100.0, **{f"Achievements/{a}": 0.5 for a in ACHIEVEMENTS}} for u in range(3)]
    run = write_jsonl(tmp_path / "run.jsonl", rows)
    auto = import_runs([run], steps_per_update=10_000, episodes_per_update=1000)
    percent = import_runs([run], steps_per_update=10_000, episodes_per_update=1000, rate_unit="percent")
    assert auto.attrs["rate_unit"] == "fraction" and "--rate-unit percent overrides" in auto.attrs["rate_unit_rule"]
    assert np.all(auto["achievement_unlocks"].values == 500) and np.all(percent["achievement_unlocks"].values == 5)


# ---------------------------------------------------------------------------
# missing values: masked, never 0
# ---------------------------------------------------------------------------


def test_a_missing_rate_is_masked_for_that_behaviour_only(tmp_path):
    rows = _rows(1, extra={2: {"Achievements/place_plant": None}, 3: {"episode_length": float("nan")}})
    run = write_csv(tmp_path / "run.csv", rows)
    ds = import_runs([run], steps_per_update=STEPS_PER_UPDATE)
    seen = observed_mask(ds, "achievement_unlocks")[0]
    plant = list(ACHIEVEMENTS).index("place_plant")
    assert not seen[2, plant] and seen[2, :plant].all()  # one behaviour of update 3
    assert ds["achievement_unlocks"].values[0, 2, plant] == 0  # a NaN-free placeholder, marked unobserved
    # no length at update 4: its episode count cannot be estimated: the update is masked whole
    assert not observed_mask(ds, "episodes_finished")[0, 3] and ds["episodes_finished"].values[0, 3] == 0
    assert not seen[3].any() and not observed_mask(ds, "length_sum")[0, 3]
    episodes, unlocks = _truth(1)
    keep = np.array([0, 1, 4])
    np.testing.assert_array_equal(ds["achievement_unlocks"].values[0, keep], unlocks[keep])
    # a value in a cell marked unobserved breaks the contract
    broken = ds.copy(deep=True)
    broken["achievement_unlocks"].values[0, 2, plant] = 1
    with pytest.raises(ValuedynError, match="marks unobserved; such cells hold 0"):
        validate_trajectory(broken)


def test_masked_cells_survive_the_file_and_trainer_files_observe_every_cell(tmp_path):
    run = write_jsonl(tmp_path / "run.jsonl", _rows(0, extra={1: {"Achievements/collect_wood": None}}))
    out = tmp_path / "t.nc"
    import_runs([run], steps_per_update=STEPS_PER_UPDATE, out=out)
    ds = open_trajectory(out)
    assert ds["achievement_unlocks_observed"].dtype == bool and not ds["achievement_unlocks_observed"].values[0, 1, 0]
    trainer_like = ds.drop_vars([v for v in ds.data_vars if str(v).endswith("_observed")])
    assert observed_mask(trainer_like, "achievement_unlocks").all()


# ---------------------------------------------------------------------------
# several runs: alignment on env steps, or refusal
# ---------------------------------------------------------------------------


def test_runs_with_different_env_steps_are_refused_or_aligned(tmp_path, capsys):
    every = write_jsonl(tmp_path / "every.jsonl", _rows(0))
    # the second run logged every other update: its env steps are 2048, 4096 (steps 1 and 3)
    sparse = write_jsonl(tmp_path / "sparse.jsonl", [row for row in _rows(1) if row["_step"] in (1, 3)])
    code, _, err = _cli(capsys, [every, sparse, "--steps-per-update", STEPS_PER_UPDATE, "--episodes-per-update", 10,
                                 "--out", tmp_path / "refused.nc"])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "runs logged different env steps" in err and "sparse.jsonl logs 2 rows at env steps 2048..4096 (every 2048)" in err
    assert "--align union" in err and not (tmp_path / "refused.nc").exists()

    union = import_runs([every, sparse], steps_per_update=STEPS_PER_UPDATE, episodes_per_update=10, align="union")
    np.testing.assert_array_equal(union["env_step"].values, np.arange(1, 6) * STEPS_PER_UPDATE)
    np.testing.assert_array_equal(observed_mask(union, "episodes_finished")[1], [False, True, False, True, False])
    np.testing.assert_array_equal(union["episodes_finished"].values[1], [0, 10, 0, 10, 0])  # masked rows: 0 episodes
    assert observed_mask(union, "episodes_finished")[0].all()

    common = import_runs([every, sparse], steps_per_update=STEPS_PER_UPDATE, episodes_per_update=10, align="common")
    np.testing.assert_array_equal(common["env_step"].values, [2048, 4096])
    assert observed_mask(common, "achievement_unlocks").all()


# ---------------------------------------------------------------------------
# bad input: one line, exit 2, nothing written
# ---------------------------------------------------------------------------


def _bad_runs(tmp_path):
    header_only = tmp_path / "header_only.csv"
    header_only.write_text("_step,Achievements/collect_wood\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    no_achievement = write_jsonl(tmp_path / "no_achievement.jsonl", [{"_step": 0, "episode_length": 100.0, "loss": 1.0}])
    back = write_jsonl(tmp_path / "back.jsonl", [_rows(0)[u] for u in (0, 2, 1)])
    twice = write_csv(tmp_path / "twice.csv", [_rows(0)[u] for u in (0, 1, 1, 2)])
    over_percent = write_jsonl(tmp_path / "over.jsonl", _rows(0, extra={1: {"Achievements/place_table": 130.0}}))
    negative = write_jsonl(tmp_path / "negative.jsonl", _rows(0, extra={1: {"Achievements/place_table": -2.0}}))
    other = write_jsonl(tmp_path / "other.jsonl", [{k.replace("place_plant", "eat_cow"): v for k, v in row.items()} for row in _rows(1)])
    good = write_jsonl(tmp_path / "good.jsonl", _rows(0))
    text = tmp_path / "run.txt"
    text.write_text("_step,Achievements/collect_wood\n0,1\n")
    not_json = tmp_path / "broken.jsonl"
    not_json.write_text(json.dumps(_rows(0)[0]) + "\n{not json\n")
    words = write_jsonl(tmp_path / "words.jsonl", _rows(0, extra={1: {"episode_length": "long"}}))
    no_rate = write_jsonl(tmp_path / "no_rate.jsonl", _rows(0, extra={u: {f"Achievements/{a}": None for a in ACHIEVEMENTS} for u in range(5)}))
    return {
        "no rate logged": ([no_rate], "hold no value in any row"),
        "unknown format": ([text], "cannot tell the format of .*run.txt from its name; pass --format"),
        "not JSON": ([not_json], "line 2 is not JSON"),
        "a mapped column holds words": ([words], r"column 'episode_length' holds a value that is not a number \(row 2: 'long'\)"),
        "missing file": ([tmp_path / "nowhere.jsonl"], "does not exist"),
        "empty log (header only)": ([header_only], "is empty: it holds no logged row"),
        "empty log (no byte)": ([empty], "is empty: it holds no logged row"),
        "no achievement column": ([no_achievement], r"has no achievement column: none matches 'Achievements/\{name\}'"),
        "non-monotone steps": ([back], "goes back from 2 to 1 at row 3"),
        "duplicated steps": ([twice], "step .* 1 is logged twice"),
        "rate above percent": ([over_percent], r"rate 130 .* outside \[0, 100\], the range of percent"),
        "rate below zero": ([negative], r"rate -2 .* outside \[0, 100\]"),
        "rate above fraction": ([good, "--rate-unit", "fraction"], r"outside \[0, 1\], the range of fraction; check --rate-unit percent"),
        "achievement columns differ": ([good, other], r"runs log different achievements: good.jsonl has \['place_plant'\]"),
        "env steps unknown": ([good, "--steps-per-update", "0"], "the env steps are unknown"),
    }


@pytest.mark.parametrize("case", [
    "missing file", "empty log (header only)", "empty log (no byte)", "no achievement column", "non-monotone steps",
    "duplicated steps", "rate above percent", "rate below zero", "rate above fraction", "achievement columns differ",
    "env steps unknown", "no rate logged", "unknown format", "not JSON", "a mapped column holds words",
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case):
    import re

    args, message = _bad_runs(tmp_path)[case]
    out = tmp_path / "out" / "t.nc"
    flags = [] if "--steps-per-update" in args else ["--steps-per-update", STEPS_PER_UPDATE]
    code, _, err = _cli(capsys, [*args, *flags, "--out", out])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("valuedyn import: error: ") and re.search(message, lines[0]), err
    assert not out.exists() and not (tmp_path / "out").exists()


def test_an_existing_output_is_refused_before_reading(tmp_path, capsys):
    out = tmp_path / "t.nc"
    out.write_bytes(b"precious")
    code, _, err = _cli(capsys, [write_jsonl(tmp_path / "run.jsonl", _rows(0)), "--steps-per-update", 1024, "--out", out])
    assert code == 2 and "already exists; pass --force" in err and out.read_bytes() == b"precious"


def test_help_documents_every_flag(capsys):
    import dataclasses

    with pytest.raises(SystemExit):
        main(["import", "--help"])
    text = capsys.readouterr().out
    assert "Achievements/{name}" in text and "--steps-per-update" in text
    for field in dataclasses.fields(ImportConfig):
        assert field.metadata["help"], field.name


# ---------------------------------------------------------------------------
# the contract split
# ---------------------------------------------------------------------------


def test_an_imported_file_needs_its_core_and_provenance(tmp_path):
    ds = import_runs([write_jsonl(tmp_path / "run.jsonl", _rows(0))], steps_per_update=STEPS_PER_UPDATE)
    with pytest.raises(ValuedynError, match="variable 'episodes_finished' is missing"):
        validate_trajectory(ds.drop_vars(["episodes_finished", "episodes_finished_observed"]))
    without = ds.copy()
    del without.attrs["source_sha256"]
    with pytest.raises(ValuedynError, match=r"attributes \['source_sha256'\] are missing; provenance is required"):
        validate_trajectory(without)
    # an optional part, when present, is validated as in a trainer file
    broken = ds.copy(deep=True)
    broken["achievement_unlocks"].values[0, 0, 0] = broken["episodes_finished"].values[0, 0] + 1
    with pytest.raises(ValuedynError, match="achievement_unlocks exceeds episodes_finished"):
        validate_trajectory(broken)
    # a trainer file (no source_format) still needs every variable
    trainer_like = ds.drop_vars([v for v in ds.data_vars if str(v).endswith("_observed")])
    trainer_like.attrs = {k: v for k, v in ds.attrs.items() if k != "source_format"}
    with pytest.raises(ValuedynError, match="dimension 'event' is missing"):
        validate_trajectory(trainer_like)


# ---------------------------------------------------------------------------
# end to end: import, then fit
# ---------------------------------------------------------------------------


def test_import_then_fit_the_jsonl_fixture(tmp_path, capsys):
    """End to end on the JSONL fixture, one rate missing: the fit leaves that cell out (9 of
    10 cells observed), and a behaviour whose part the log lacked is refused in one line."""
    runs = [write_jsonl(tmp_path / "run0.jsonl", _rows(0, extra={2: {"Achievements/place_table": None}})),
            write_jsonl(tmp_path / "run1.jsonl", _rows(1))]
    trajectory, fit = tmp_path / "theirs.nc", tmp_path / "fit.nc"
    code, printed, err = _cli(capsys, [*runs, "--steps-per-update", STEPS_PER_UPDATE, "--out", trajectory])
    assert code == 0, err
    sampler = ["--chains", "1", "--warmup", "100", "--draws", "100", "--min-draws", "0", "--no-progress"]
    code = main(["fit", str(trajectory), "--model", "logistic_onset", "--behaviour", "unlock:place_table", "--out", str(fit),
                 *sampler])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert fit.exists() and "unlock:place_table (2 seeds x 5 updates, 9 observed" in captured.out
    from valuedyn.fitting import load_fit

    mask = np.asarray(load_fit(fit).constant_data["mask"].values, bool)
    assert mask.shape == (2, 5) and not mask[0, 2] and mask.sum() == 9
    # leave-future-out selects through the same mask: at fraction 0.4 the future is updates 3-5
    # of both seeds (tau 0.5, 0.75, 1), less the missing cell: 5 held-out cells, not 6
    from valuedyn.fitting.judge._compare import leave_future_out

    assert leave_future_out(load_fit(fit), 0.4, progress=False)["lfo_n"] == 5
    refused = tmp_path / "refused.nc"
    code = main(["fit", str(trajectory), "--model", "overshoot", "--behaviour", "event:place_plant", "--out", str(refused),
                 *sampler])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and not refused.exists()
    assert "needs the 'events' part (event_total)" in err and "the file offers unlock:ACHIEVEMENT" in err


@pytest.mark.parametrize("writer", ["jsonl-null", "csv-nan"])
def test_the_fitting_side_honours_a_cell_masked_for_one_behaviour(tmp_path, writer):
    """The fitting room leaves out a cell that the file marks unobserved (one behaviour of
    one update: a null or NaN rate), as it leaves out an update without finished episodes,
    instead of fitting the stored placeholder 0."""
    from valuedyn.fitting import select_behaviour

    if writer == "jsonl-null":
        run = write_jsonl(tmp_path / "run.jsonl", _rows(0, extra={2: {"Achievements/place_table": None}}))
    else:
        run = write_csv(tmp_path / "run.csv", _rows(0, extra={2: {"Achievements/place_table": float("nan")}}))
    ds = import_runs([run], steps_per_update=STEPS_PER_UPDATE)
    assert ds["achievement_unlocks"].sel(achievement="place_table").values[0, 2] == 0  # the stored placeholder
    selection = select_behaviour(ds, "unlock:place_table")
    np.testing.assert_array_equal(selection.mask, [[True, True, False, True, True]])
    assert selection.exposure[0, 2] > 0  # episodes finished: only the rate is missing
    assert select_behaviour(ds, "unlock:place_plant").mask.all()  # the other behaviours of that update stay


# ---------------------------------------------------------------------------
# the fitting room reads only what the file holds
# ---------------------------------------------------------------------------


def _two_runs_one_rate_missing(tmp_path):
    """Two runs; run 1's place_table rate is missing at update 3 (its episodes finished)."""
    runs = [write_jsonl(tmp_path / "run0.jsonl", _rows(0)),
            write_jsonl(tmp_path / "run1.jsonl", _rows(1, extra={2: {"Achievements/place_table": None}}))]
    out = tmp_path / "theirs.nc"
    import_runs(runs, steps_per_update=STEPS_PER_UPDATE, out=out)
    return out


def test_plan_offers_only_the_behaviours_the_file_holds_and_says_which_are_absent(tmp_path):
    from valuedyn.fitting import FitSettings, plan_fits
    from valuedyn.fitting.pipeline._plan import default_behaviours

    path = _two_runs_one_rate_missing(tmp_path)
    ds = open_trajectory(path)
    offered = ["unlock:place_plant", "unlock:place_table", "unlock:collect_wood"]  # no event:place_plant
    assert default_behaviours(ds, 0.5) == offered
    jobs, notes = plan_fits(path, models=["logistic_onset"], settings=FitSettings(chains=1, warmup=10, draws=10))
    assert [job.behaviour for job in jobs] == offered
    assert notes == ["theirs.nc: not fitted, its log (imported) lacked the parts actions, events: "
                     "event:place_plant, diversity:events, diversity:actions"]
    _, quiet = plan_fits(path, models=["logistic_onset"], diversity=False)
    assert quiet == ["theirs.nc: not fitted, its log (imported) lacked the part events: event:place_plant"]
    with pytest.raises(ValuedynError, match="needs the 'actions' part .* the file offers unlock:ACHIEVEMENT"):
        plan_fits(path, ["diversity:actions"], ["logistic_onset"])


def test_learned_and_first_found_achievements_leave_an_unobserved_rate_out(tmp_path):
    """Pooled over seeds, place_table's rate at update 3 is 0.6 in run 0, missing in run 1:
    0.6 >= 0.5 there. Counting the placeholder 0 and run 1's episodes would give about 0.3,
    so the achievement would be learned (and found) one update later."""
    from valuedyn.fitting import first_found_updates
    from valuedyn.fitting.pipeline._plan import learned_achievements

    ds = open_trajectory(_two_runs_one_rate_missing(tmp_path))
    update_3 = int(ds["update"].values[2])
    assert dict(learned_achievements(ds, 0.5))["place_table"] == float(ds["env_step"].values[2])
    assert first_found_updates(ds, 0.5)["place_table"] == update_3
    blind = ds.drop_vars("achievement_unlocks_observed")  # the same counts read without the mask
    assert dict(learned_achievements(blind, 0.5))["place_table"] == float(ds["env_step"].values[3])
    assert first_found_updates(blind, 0.5)["place_table"] == int(ds["update"].values[3])


def test_an_imported_file_is_refused_in_a_comparison_of_conditions(tmp_path):
    from valuedyn.fitting.analyses._conditions import pool_conditions, read_config, training_config

    path = _two_runs_one_rate_missing(tmp_path)
    other = tmp_path / "other.nc"
    import_runs([write_jsonl(tmp_path / "o.jsonl", _rows(0))], steps_per_update=2 * STEPS_PER_UPDATE, out=other)
    ds = open_trajectory(path)
    assert json.loads(ds.attrs["config"]) and training_config(ds.attrs) is None  # import settings, not conditions
    for call in (lambda: read_config(path), lambda: pool_conditions([path, other], "unlock:place_table")):
        with pytest.raises(ValuedynError, match=r"imported from another trainer's logs .* not the conditions of training"):
            call()
