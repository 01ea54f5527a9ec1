"""The batch runner: plan -> fits, checks, comparisons, cached; locally, on Dask, after a kill.

Tiny fits (one chain, a few dozen draws, one seed each): these tests check where fits
run and what is cached, not the quality of the posteriors.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from valuedyn._errors import ValuedynError
from valuedyn.fitting import FitJob, FitSettings, load_fit, plan_fits, run_plan

TINY = FitSettings(chains=1, draws=30, warmup=30, max_tree_depth=4)
BEHAVIOUR = "unlock:place_table"
MODEL = "logistic_onset"


def _jobs(trajectory: Path, seeds: list[int]):
    jobs = []
    for seed in seeds:
        jobs += plan_fits(trajectory, [BEHAVIOUR], [MODEL], seeds=[seed], settings=TINY)[0]
    return jobs


def _posterior(path: Path) -> dict[str, np.ndarray]:
    from valuedyn.fitting import load_fit

    posterior = load_fit(path).posterior
    return {name: np.asarray(posterior[name].values) for name in posterior.data_vars}


@pytest.fixture(scope="module")
def plan(logistic_file, tmp_path_factory):
    """Two good fits and one whose trajectory is corrupted after planning (it raises on the worker)."""
    folder = tmp_path_factory.mktemp("batch")
    doomed = shutil.copy(logistic_file, folder / "doomed.nc")
    jobs = _jobs(logistic_file, [0, 1]) + _jobs(Path(doomed), [2])
    Path(doomed).write_bytes(b"\x89HDF\r\n\x1a\n" + b"corrupted after planning" * 10)
    return jobs


@pytest.fixture(scope="module")
def local_run(plan, tmp_path_factory):
    fits = tmp_path_factory.mktemp("local") / "fits"
    return run_plan(plan, fits, workers=1, show_progress=False, choose_observations=False), fits


def test_local_run_fits_checks_compares_and_indexes(local_run, plan):
    result, fits = local_run
    assert [o.status for o in result.outcomes] == ["done", "done", "failed"]
    assert "corrupt" in result.outcomes[2].error and "\n" not in result.outcomes[2].error
    index = json.loads((fits / "index.json").read_text())
    assert sorted(index) == sorted(o.key for o in result.outcomes[:2])  # the failed fit is not cached
    for outcome in result.outcomes[:2]:
        assert outcome.path == fits / outcome.job.file_name() and outcome.checks is not None
        assert "trustworthy" in outcome.diagnostics
        # the index keeps how long each fit (and its checks) took
        assert index[outcome.key]["seconds"] == round(outcome.seconds, 1) > 0
    # two fits of the same behaviour with one model each (different seeds): nothing to compare
    assert result.comparisons == []
    again = run_plan(plan[:2], fits, workers=1, show_progress=False, choose_observations=False)
    assert [o.status for o in again.outcomes] == ["cached", "cached"]


# ---------------------------------------------------------------- observation models chosen by the plan
# Unlocks scattering more than a Binomial allows (per-update rates Beta-distributed with
# concentration 20 over ~150 episodes: about 8 times the Binomial variance) are fitted with
# the beta-binomial, plain Binomial ones with the Binomial; the probe fits share this
# module's compiled samplers (TINY, one seed of 120 updates), so only the beta-binomial's
# compilation is new. With 30 draws the 90% interval covers about 0.84 even for a true
# model, so on these fits the rule decides by PSIS-LOO.


def _choose(trajectory: Path, fits: Path):
    jobs, _ = plan_fits(trajectory, [BEHAVIOUR], [MODEL], seeds=[0], settings=TINY)
    assert [job.observation for job in jobs] == ["auto"]
    return run_plan(jobs, fits, workers=1, show_progress=False, choose_observations=True)


@pytest.fixture(scope="module")
def overdispersed_run(tmp_path_factory):
    from fitting_helpers import LOGISTIC_TRUTH, make_trajectory

    folder = tmp_path_factory.mktemp("choice")
    trajectory = make_trajectory(MODEL, LOGISTIC_TRUTH, folder / "scattered.nc", seed=5,
                                 observation="betabinomial", concentration=20.0)
    return _choose(trajectory, folder / "fits"), folder / "fits"


def test_scattered_unlocks_are_fitted_with_the_beta_binomial(overdispersed_run):
    from valuedyn.papers._report_markdown import observation_line
    from valuedyn.papers._report_results import results_json, sections_from

    result, fits = overdispersed_run
    ((data, choice),) = result.observation_choices.items()
    assert data[1] == BEHAVIOUR and choice["decided"] and choice["probe_model"] == MODEL
    assert choice["chosen"] == "betabinomial", choice["reason"]
    print(choice["reason"])
    (outcome,) = result.outcomes
    assert outcome.job.observation == "betabinomial" and outcome.status == "done"  # the probe's fit, made in this run
    assert load_fit(outcome.path).attrs["observation_model"] == "betabinomial"
    for path in choice["fits"].values():  # recorded in both probe fits, both in the cache
        assert json.loads(load_fit(path).attrs["observation_choice"])["chosen"] == "betabinomial"
    index = json.loads((fits / "index.json").read_text())
    assert sorted(entry["observation"] for entry in index.values()) == ["betabinomial", "binomial"]
    # the report states the choice and its reason next to the behaviour
    (section,), _ = sections_from(result)
    assert section.observation["model"] == "betabinomial" and section.observation["chosen_by"] == "data"
    assert observation_line(section.observation).startswith("Observation model: **betabinomial**, chosen from data")
    (stated,) = results_json([section], fits.parent)
    assert stated["observation"]["model"] == "betabinomial" and stated["observation"]["reason"] == choice["reason"]
    assert result.to_dict()["observation_choices"][0]["chosen"] == "betabinomial"

    # a rerun reuses both fits and the recorded decision, without rewriting the files
    before = {p.name: p.stat().st_mtime_ns for p in fits.glob("*.nc")}
    again = run_plan([dataclasses.replace(outcome.job, observation="auto")], fits, workers=1, show_progress=False,
                     choose_observations=True)
    assert [o.status for o in again.outcomes] == ["cached"]
    assert next(iter(again.observation_choices.values()))["reason"] == choice["reason"]
    assert {p.name: p.stat().st_mtime_ns for p in fits.glob("*.nc")} == before


def test_binomial_unlocks_keep_the_binomial(logistic_file, tmp_path):
    result = _choose(logistic_file, tmp_path / "fits")
    ((_, choice),) = result.observation_choices.items()
    print(choice["reason"])
    assert choice["chosen"] == "binomial", choice["reason"]
    (outcome,) = result.outcomes
    assert outcome.job.observation == "binomial" and load_fit(outcome.path).attrs["observation_model"] == "binomial"


def test_the_cache_key_names_the_observation_model(monkeypatch):
    settings = FitSettings()
    unlock = {name: FitJob(Path("run.nc"), "abc", BEHAVIOUR, "overshoot", (), settings, name)
              for name in ("auto", "binomial", "betabinomial")}
    # the family default (the beta-binomial) is the fit an "auto" job makes; the Binomial, the
    # default before it, keeps the key it had then ("auto"), so its cached fits are still found
    # and never stand in for the new default
    assert unlock["auto"].cache_key() == unlock["betabinomial"].cache_key() != unlock["binomial"].cache_key()
    assert "__betabinomial__" in unlock["auto"].file_name() and "binomial" not in unlock["binomial"].file_name()
    old_defaults = FitSettings(chains=2, draws=300, warmup=300, max_tree_depth=6, target_accept=0.95, saturated_draws=0,
                               min_draws=0)
    binomial = FitJob(Path("run.nc"), "ab" * 32, "unlock:place_plant", "stagewise", (0, 1), old_defaults, "binomial")
    # the key an "auto" unlock job had while the Binomial was the default (measured on d1363db,
    # FIT_SEMANTICS 2); every bump of FIT_SEMANTICS since (3: Stan's warmup windows; 4: one
    # gradient kernel, numpy host noise) made every key new, and changed nothing else in it
    assert binomial.settings_key() == "ced57783270bd25ec6bd1ce741ca614228dcfe8910f29f290f3541f8de289109"
    monkeypatch.setattr("valuedyn.fitting.pipeline._cache.FIT_SEMANTICS", 3)
    assert binomial.settings_key() == "8071acee501c23f9cc8bdce485cb1a2fb12ee2b1d1f0ce229de8372bcd5cc1e6"
    monkeypatch.setattr("valuedyn.fitting.pipeline._cache.FIT_SEMANTICS", 2)
    assert binomial.settings_key() == "84e23576447d37d7da13ae87a39eae0cfb8b843a74c214eb6575ead8f79bf7a5"
    monkeypatch.undo()
    event = {name: FitJob(Path("run.nc"), "abc", "event:place_plant", "overshoot", (), settings, name)
             for name in ("auto", "negbin", "poisson")}
    assert event["auto"].cache_key() == event["negbin"].cache_key() != event["poisson"].cache_key()


def test_dask_cluster_gives_the_same_fits(local_run, plan, tmp_path):
    distributed = pytest.importorskip("distributed")
    result_local, _ = local_run
    started = time.perf_counter()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        result = run_plan(plan, tmp_path / "fits", scheduler=cluster.scheduler_address, show_progress=False,
                          choose_observations=False)
    print(f"Dask run of {len(plan)} fits on 2 workers: {time.perf_counter() - started:.1f} s")
    _assert_same_fits(result, result_local)


def test_a_process_pool_gives_the_same_fits(local_run, plan, tmp_path):
    """The default executor (spawned worker processes) runs to the end: every fit once,
    the failure reported, the same draws as in this process."""
    result_local, _ = local_run
    result = run_plan(plan, tmp_path / "fits", workers=2, show_progress=False, choose_observations=False)
    _assert_same_fits(result, result_local)


def _assert_same_fits(result, result_local) -> None:
    assert [o.status for o in result.outcomes] == ["done", "done", "failed"]
    assert "corrupt" in result.outcomes[2].error
    for ours, theirs in zip(result.outcomes[:2], result_local.outcomes[:2]):
        assert ours.key == theirs.key and ours.path.name == theirs.path.name  # same cache keys
        mine, local = _posterior(ours.path), _posterior(theirs.path)
        assert sorted(mine) == sorted(local)
        for name in mine:
            np.testing.assert_array_equal(mine[name], local[name], err_msg=name)  # same draws for the same seeds


def test_a_killed_run_is_completed_by_a_rerun(logistic_file, tmp_path):
    fits = tmp_path / "fits"
    command = [sys.executable, "-m", "valuedyn", "fit-batch", str(logistic_file), "--fits-dir", str(fits),
               "--behaviours", BEHAVIOUR, "--models", MODEL, "--seeds", "0", "--workers", "1",
               "--chains", "1", "--draws", "30", "--warmup", "30", "--max-tree-depth", "4", "--no-choose-observation",
               "--no-refit-remedy"]  # the refit of a failed fit is test_remedy.py's; here a killed fit is redone
    # two fits, one per seed, one command each: the kill lands in the second command
    runs = [command[:command.index("--seeds") + 1] + [str(seed)] + command[command.index("--seeds") + 2:]
            for seed in (0, 1)]
    env = dict(os.environ, VALUEDYN_JAX_CACHE=os.environ.get("VALUEDYN_TEST_JAX_CACHE", "/tmp/valuedyn-test-jax-cache"))
    script = " && ".join(subprocess.list2cmdline(run) for run in runs)
    process = subprocess.Popen(["bash", "-c", script], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    index = fits / "index.json"
    deadline = time.monotonic() + 600
    while not index.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert index.exists(), "the first fit never finished"
    delay = random.uniform(0.0, 3.0)
    print(f"SIGKILL {delay:.2f} s after the first fit")
    time.sleep(delay)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    # a half-written fit file under a cached name must not be picked up either
    first = fits / next(iter(json.loads(index.read_text()).values()))["file"]
    first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])
    statuses = {}
    for run in runs:
        assert subprocess.run(run, env=env, capture_output=True).returncode == 0
        (fit,) = json.loads((fits / "batch.json").read_text())["fits"]
        statuses[fit["file"]] = fit["status"]
    assert statuses[str(first)] == "done"  # refitted, not trusted
    assert set(statuses.values()) <= {"done", "cached"}
    entries = json.loads(index.read_text())
    assert sorted(fits / e["file"] for e in entries.values()) == sorted(Path(f) for f in statuses)
    from valuedyn.fitting import load_fit

    for path in statuses:
        load_fit(path)  # every indexed fit loads


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_workers_end_when_the_run_is_killed(logistic_file, tmp_path):
    """SIGKILL to fit-batch (no clean-up runs) must not leave its workers fitting."""
    command = [sys.executable, "-m", "valuedyn", "fit-batch", str(logistic_file), "--fits-dir", str(tmp_path / "fits"),
               "--behaviours", BEHAVIOUR, "--models", MODEL, "stagewise", "--workers", "2", "--chains", "1",
               "--draws", "50000", "--warmup", "50000", "--max-tree-depth", "4", "--no-choose-observation"]
    env = dict(os.environ, VALUEDYN_JAX_CACHE=os.environ.get("VALUEDYN_TEST_JAX_CACHE", "/tmp/valuedyn-test-jax-cache"))
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers = []
    while time.monotonic() < deadline and process.poll() is None:
        workers = [pid for pid in _children(process.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
        if workers:
            break
        time.sleep(0.2)
    assert workers, "no worker process started"
    time.sleep(8.0)  # the workers import JAX and start their fit
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    assert alive, "the workers ended before the kill: the plan was too short to test anything"
    process.kill()
    process.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_running(pid) for pid in workers):
        time.sleep(0.2)
    left = [pid for pid in workers if _running(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} kept running after their parent was killed"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_cache_key_of_unchanged_settings_never_changes(monkeypatch):
    from valuedyn.fitting import FitJob

    # the settings part of the key (the model's definition, the fitting code and the libraries
    # join it in cache_key: tests/fitting/test_cache_keys.py), pinned on purpose: it changes
    # only when the fit itself does (FIT_SEMANTICS 2:
    # the binned likelihood and target_accept 0.95 made every earlier cached fit stale).
    # The plan's defaults until 2026-12-01, spelled out: a FitConfig field added since
    # (saturated_draws, min_draws) is hashed only when set, so these fits keep their keys
    before = FitSettings(chains=2, draws=300, warmup=300, max_tree_depth=6, target_accept=0.95, saturated_draws=0,
                         min_draws=0)
    job = FitJob(Path("run.nc"), "ab" * 32, "event:place_plant", "overshoot", (0, 1), before)
    # the defaults before sampling could stop early (min_draws 0: every draw run)
    defaults = FitJob(Path("run.nc"), "ab" * 32, "event:place_plant", "overshoot", (0, 1),
                       FitSettings(min_draws=0, saturated_draws=200))
    stopping = FitJob(Path("run.nc"), "ab" * 32, "event:place_plant", "overshoot", (0, 1),
                      FitSettings(saturated_draws=200))
    today = FitJob(Path("run.nc"), "ab" * 32, "event:place_plant", "overshoot", (0, 1), FitSettings())
    # the same with min_draws 500 (a fit may stop once it passes the gate with a margin)
    assert stopping.settings_key() == "8a873968b2c772b6e78b2e03ee75f3aae4a1288da5f74332e23ef1cac5449e69"
    # today's: 100 draws per chain, not 200, when the warmup saturates the tree depth
    assert today.settings_key() == "4b48d43c78d9ffaf0d192cf065d082f438d4c4500f280fbbec0d52da6c93db0e"
    # FIT_SEMANTICS 4 (one gradient kernel for MAP, Hessian and chain starts; numpy host
    # noise): every key changed once, as at 3 (Stan's warmup windows, other CPU rounding)
    assert job.settings_key() == "63febc3dca71f99e0fa428f8518fbe7f1335f80c01ee7f5e7d4d6a18db633edc"
    # the defaults of 2026-12-01 (4 x (500 + 1000), depth 8, target 0.99, saturated draws 200)
    assert defaults.settings_key() == "511f9db316a81cba682edd150d227959ae66119ac47df90a67fc0a2ce8fa0dde"
    # and nothing else in the key did: under FIT_SEMANTICS 3 and 2 the keys are those measured then
    monkeypatch.setattr("valuedyn.fitting.pipeline._cache.FIT_SEMANTICS", 3)
    assert job.settings_key() == "a3f06328be31b16c2b66c3a1065b8fe05e368ab258ada30e106cec34fd96bd1d"
    assert defaults.settings_key() == "e776f61f386641cced23a19a081a711925796976de2c3fc41ada15843a13f85b"
    monkeypatch.setattr("valuedyn.fitting.pipeline._cache.FIT_SEMANTICS", 2)
    assert job.settings_key() == "2448e3b5f16b9dd6dc1f32954e920dd80ccb0d73e96292d29c98d152da36e8ec"
    assert defaults.settings_key() == "46999150572b9db6bafb95d3d1d1d2aa22828bacfc40537c29d60e9005d2f784"


def test_the_old_spelling_stays_readable(local_run, tmp_path):
    from valuedyn._config import config_from_json
    from valuedyn.cli import build_parser
    from valuedyn.fitting import FitConfig, load_fit, save_fit

    parser, _, _ = build_parser("fit")
    old_flag = parser.parse_args(["run.nc", "--model", "overshoot", "--behavior", BEHAVIOUR, "--out", "fit.nc"])
    assert old_flag.behaviour == BEHAVIOUR
    # a fit file written before the rename: attribute and stored config say "behavior"
    idata = load_fit(local_run[0].outcomes[0].path)
    idata.attrs["behavior"] = idata.attrs.pop("behaviour")
    config = json.loads(idata.attrs["config"])
    config["behavior"] = config.pop("behaviour")
    idata.attrs["config"] = json.dumps(config)
    save_fit(idata, tmp_path / "old.nc")
    again = load_fit(tmp_path / "old.nc")
    assert again.attrs["behaviour"] == BEHAVIOUR
    assert config_from_json(FitConfig, again.attrs["config"]).behaviour == BEHAVIOUR


def test_models_without_a_closed_form_are_left_out_only_when_asked():
    from valuedyn.fitting.pipeline._plan import applicable_models
    from valuedyn.models import get_model

    every = applicable_models("diversity:actions")
    solved = [m for m in every if not get_model(m).closed_form]
    assert solved  # replicator_mutator, diversify_then_minimize: the report's trade
    fast = applicable_models("diversity:actions", ode_models=False)
    assert fast == [m for m in every if m not in solved] and fast
    # a model asked for by name is fitted whatever its solver
    assert applicable_models("diversity:actions", solved, ode_models=False) == solved


def test_the_observation_model_is_chosen_on_the_most_flexible_closed_form_model():
    from valuedyn.fitting.pipeline._plan import probe_model
    from valuedyn.models import get_model

    closed = ["logistic_onset", "stagewise", "stagewise3"]
    assert probe_model(closed + ["replicator_mutator"]) == max(closed, key=lambda m: len(get_model(m).parameters))
    assert probe_model(["replicator_mutator"]) == "replicator_mutator"  # no closed-form one: the ODE model


def test_ode_models_get_their_own_tree_depth_cap():
    from types import SimpleNamespace

    settings = FitSettings.from_config(SimpleNamespace(chains=4, draws=100, warmup=50, rng_seed=3, max_tree_depth=10,
                                                       ode_max_tree_depth=6, target_accept=0.99, saturated_draws=50,
                                                       min_draws=300))
    closed = FitJob(Path("run.nc"), "ab" * 32, "event:place_plant", "overshoot", (), settings).fit_config()
    ode = FitJob(Path("run.nc"), "ab" * 32, "event:place_plant", "replicator_mutator", (), settings).fit_config()
    assert (closed.max_tree_depth, ode.max_tree_depth) == (10, 6)
    assert closed.target_accept == ode.target_accept == 0.99 and closed.seed == 3 and closed.chains == 4
    assert closed.saturated_draws == ode.saturated_draws == 50 and closed.min_draws == ode.min_draws == 300
    with pytest.raises(ValuedynError, match="--min-draws"):
        dataclasses.replace(settings, min_draws=-1).validate()
    with pytest.raises(ValuedynError, match="--ode-max-tree-depth"):
        dataclasses.replace(settings, ode_max_tree_depth=0).validate()


def test_in_process_fits_are_delivered_the_moment_each_ends(plan, tmp_path):
    """workers=1: each fit's result reaches the parent (which indexes it) before the next fit
    of its group starts, so a kill between them keeps the finished fit in the index."""
    from valuedyn.fitting.pipeline._batch import _run_groups

    group = [(i, job.fit_config(tmp_path / job.file_name())) for i, job in enumerate(plan[:2])]
    seen = []

    def on_result(result):
        job_id, status, _, _ = result
        seen.append((job_id, status, Path(group[1][1].out).exists()))

    _run_groups([group], None, workers=1, scheduler=None, on_result=on_result)
    # the first fit arrived while the second had not been written yet; then the second
    assert seen == [(0, "done", False), (1, "done", True)]
