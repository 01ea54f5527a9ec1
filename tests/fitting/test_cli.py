"""fit -> check -> compare through files and the command line; bad input exits 2."""

import json

import numpy as np
import pytest

from valuedyn.cli import main
from valuedyn.fitting import fit_attrs, load_fit

from fitting_helpers import SETTINGS, make_trajectory

FLAGS = ["--chains", str(SETTINGS["chains"]), "--warmup", str(SETTINGS["warmup"]), "--draws", str(SETTINGS["draws"]),
         "--observation", SETTINGS["observation"], "--no-progress"]


def _fit_args(trajectory, model, out, *extra):
    return ["fit", str(trajectory), "--model", model, "--behaviour", "unlock:place_table", "--out", str(out),
            "--pooling", "none", "--seed", "3", *FLAGS, *extra]


@pytest.fixture(scope="module")
def round_trip(logistic_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    fits = [folder / "logistic.nc", folder / "overshoot.nc"]
    assert main(_fit_args(logistic_file, "logistic_onset", fits[0])) == 0
    assert main(_fit_args(logistic_file, "overshoot", fits[1])) == 0
    return folder, fits


def test_check_stores_checks_in_the_fit_file(round_trip, capsys):
    _, fits = round_trip
    assert main(["check", str(fits[0])]) == 0
    printed = capsys.readouterr().out
    assert "peak_height" in printed and "onset_time" in printed and "coverage" in printed
    checks = fit_attrs(load_fit(fits[0]))["checks"]
    assert set(checks["p_values"]) == {"peak_height", "peak_time", "final_level", "overshoot_ratio", "onset_time"}
    # the data were simulated from this model: the intervals cover about what they claim
    assert 0.35 <= checks["coverage"]["50"] <= 0.65 and 0.8 <= checks["coverage"]["90"] <= 0.98
    assert checks["loo_pit"]["n"] == int(load_fit(fits[0]).constant_data["mask"].values.sum())


def test_compare_ranks_the_true_model_and_scores_the_future(round_trip, capsys):
    folder, fits = round_trip
    out = folder / "compare.json"
    assert main(["compare", str(fits[0]), str(fits[1]), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "elpd_lfo" in printed and "weight" in printed
    table = json.loads(out.read_text())["table"]
    assert set(table) == {"logistic_onset", "overshoot"}
    weights = [row["weight"] for row in table.values()]
    assert sum(weights) == pytest.approx(1.0, abs=1e-6)
    for row in table.values():
        assert np.isfinite(row["elpd_lfo"]) and row["lfo_n"] > 0
    # without --force the comparison table is not replaced
    assert main(["compare", str(fits[0]), str(fits[1]), "--out", str(out), "--no-lfo"]) == 2


def test_compare_refuses_fits_of_different_data(round_trip, overshoot_file, tmp_path, capsys):
    _, fits = round_trip
    other = tmp_path / "other.nc"
    assert main(_fit_args(overshoot_file, "logistic_onset", other)) == 0
    capsys.readouterr()
    assert main(["compare", str(fits[0]), str(other), "--no-lfo"]) == 2
    assert "same data" in capsys.readouterr().err


def test_bad_input_exits_2_and_writes_nothing(logistic_file, tmp_path, capsys):
    out = tmp_path / "fit.nc"
    not_a_trajectory = tmp_path / "junk.nc"
    not_a_trajectory.write_text("not netCDF")
    masked = make_trajectory("logistic_onset", {"t0": np.array([0.3]), "k": np.array([10.0]), "floor": np.array([0.1]),
                                                "ceiling": np.array([0.5])}, tmp_path / "masked.nc", masked_updates=120)
    cases = [
        (_fit_args(tmp_path / "missing.nc", "logistic_onset", out), "does not exist"),
        (_fit_args(not_a_trajectory, "logistic_onset", out), "cannot read"),
        (_fit_args(logistic_file, "no_such_model", out), "known models"),
        (_fit_args(logistic_file, "logistic_onset", out)[:4] + ["--behaviour", "unlock:nothing", "--out", str(out)] + FLAGS,
         "valid names"),
        (_fit_args(logistic_file, "logistic_onset", out, "--updates", "500:600"), "at least 1 seed and 2 updates"),
        (_fit_args(masked, "logistic_onset", out), "every selected update is masked"),
        (["check", str(tmp_path / "missing_fit.nc")], "does not exist"),
        (["check", str(logistic_file)], "not a valuedyn fit file"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
        assert not out.exists()
    out.write_text("precious")
    assert main(_fit_args(logistic_file, "logistic_onset", out)) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "precious"


def test_fit_refuses_an_existing_out_before_jax_starts(tmp_path):
    """A mistyped --out fails at once: the check runs before JAX is imported (seconds)."""
    import subprocess
    import sys

    out = tmp_path / "fit.nc"
    out.write_text("precious")
    script = (
        "import sys; from valuedyn.cli import main; "
        f"rc = main(['fit', {str(tmp_path / 'run.nc')!r}, '--model', 'overshoot', '--behaviour', 'event:place_plant', "
        f"'--out', {str(out)!r}]); print(rc, 'jax' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], (done.stdout, done.stderr)
    assert "already exists" in done.stderr and out.read_text() == "precious"


def test_a_fit_file_is_read_once_per_process_and_each_reader_gets_its_own_copy(round_trip, monkeypatch):
    from valuedyn.fitting.inference import _store

    _, fits = round_trip
    reads = []
    real_read = _store._read_fit
    monkeypatch.setattr(_store, "_read_fit", lambda path: reads.append(path) or real_read(path))
    first = load_fit(fits[1])  # read (the module's earlier tests may have read it: then a copy)
    first.attrs["model"] = "changed by a reader"
    first.posterior["t0"].values[:] = -1.0
    second = load_fit(fits[1])
    assert second.attrs["model"] == "overshoot" and np.all(second.posterior["t0"].values > 0)
    assert len(reads) <= 1
    before = len(reads)
    # a rewrite (atomic: a new file) is read afresh, not served from memory
    _store.save_fit(first, fits[1].with_name("rewritten.nc"))
    fits[1].with_name("rewritten.nc").replace(fits[1])
    third = load_fit(fits[1])
    assert len(reads) == before + 1
    assert third.attrs["model"] == "changed by a reader" and np.all(third.posterior["t0"].values == -1.0)


def test_a_fit_written_with_its_checks_holds_what_check_fit_computes(logistic_file, tmp_path):
    """``fit_trajectory(..., before_write=attach_checks)`` (the batch runner's workers) writes
    the fit once with the checks stored; they are those ``check_fit`` computes from the file."""
    from valuedyn._config import config_from_namespace
    from valuedyn.cli import build_parser
    from valuedyn.fitting import check_fit, fit_trajectory
    from valuedyn.fitting.judge._check import attach_checks

    out = tmp_path / "checked.nc"
    parser, config_cls, _ = build_parser("fit")
    config = config_from_namespace(config_cls, parser.parse_args(_fit_args(logistic_file, "logistic_onset", out)[1:]))
    fit_trajectory(config, before_write=attach_checks)
    stored = fit_attrs(load_fit(out))["checks"]
    assert set(stored["p_values"]) == {"peak_height", "peak_time", "final_level", "overshoot_ratio", "onset_time"}
    fresh = json.loads(json.dumps(check_fit(out)))
    # the same checks; numbers equal up to summation order (in-memory arrays vs the file's)
    assert _flat(stored).keys() == _flat(fresh).keys()
    for key, value in _flat(stored).items():
        if isinstance(value, float):
            assert value == pytest.approx(_flat(fresh)[key], rel=1e-9, abs=1e-12, nan_ok=True), key
        else:
            assert value == _flat(fresh)[key], key


def _flat(tree, prefix=""):
    """Nested dicts and lists -> {"a/b/0": leaf}."""
    if isinstance(tree, dict):
        return {k: v for name, sub in tree.items() for k, v in _flat(sub, f"{prefix}{name}/").items()}
    if isinstance(tree, list):
        return {k: v for i, sub in enumerate(tree) for k, v in _flat(sub, f"{prefix}{i}/").items()}
    return {prefix: tree}
