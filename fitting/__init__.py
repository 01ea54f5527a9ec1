"""valuedyn.fitting: the bridge between trajectories and models.

numpyro inference (MAP start, NUTS chains over the CPU cores), diagnostics, posterior
predictive checks, model comparison (PSIS-LOO, stacking, leave-future-out) and
simulation-based calibration. Nothing model-specific lives here: a model (from
``valuedyn.models``), an observation model and a data selection make a numpyro model.

Python API (the report calls these; no subprocesses)::

    from valuedyn.fitting import FitConfig, fit_trajectory, check_fit, compare_fits, load_fit
    path = fit_trajectory(FitConfig(trajectory="run.nc", model="overshoot",
                                    behaviour="event:place_plant", out="fit.nc"))
    checks = check_fit(path)              # also stored in the file's attrs["checks"]
    result = compare_fits([path_a, path_b])
    verdict = classify_fit(path)          # trustworthy, or named causes with evidence
    ranking = rank_fits({"a": path_a, "b": path_b}, {"a": verdict_a, "b": verdict_b})
    headline = motif_headline(path, verdict)   # .text: the motif paragraph

Many fits at once (``valuedyn fit-batch``; the report runs its fits this way)::

    from valuedyn.fitting import FitSettings, plan_fits, run_plan
    jobs, notes = plan_fits("run.nc", ["event:place_plant"], ["overshoot", "logistic_onset"],
                            settings=FitSettings(chains=2, draws=300, warmup=300))
    result = run_plan(jobs, "fits")                        # local process pool
    result = run_plan(jobs, "fits", scheduler="tcp://scheduler:8786")  # a Dask cluster

Conditions of training compared (``valuedyn conditions``)::

    # conditions: files whose training settings differ; effects with posteriors
    path = fit_conditions(ConditionsConfig(trajectories=("default.nc", "every_plant.nc"), model="overshoot",
                                           behaviour="event:place_plant", out="conditions.nc"))
    # what `valuedyn report` runs: the same fit at a plan's settings, cached in a fits folder
    path, reused = fit_conditions_cached(["default.nc", "every_plant.nc"], "event:place_plant", "overshoot", "fits",
                                         settings=FitSettings(chains=2, draws=300, warmup=300))
"""

from valuedyn.fitting._batch_cli import FitBatchConfig
from valuedyn.fitting._cli import CheckConfig, CompareConfig, FitConfig, SBCConfig
from valuedyn.fitting._conditions_cli import ConditionsConfig
from valuedyn.fitting._plan import (
    PLANT_MOTIF,
    FitJob,
    FitSettings,
    applicable_models,
    default_behaviours,
    learned_achievements,
    plan_fits,
    slug,
)


def __getattr__(name):  # keep `import valuedyn.fitting` free of JAX until it is needed
    lazy = {
        "fit_trajectory": ("valuedyn.fitting._fit", "fit_trajectory"),
        "infer": ("valuedyn.fitting._fit", "infer"),
        "check_fit": ("valuedyn.fitting._check", "check_fit"),
        "compare_fits": ("valuedyn.fitting._compare", "compare_fits"),
        "CompareResult": ("valuedyn.fitting._compare", "CompareResult"),
        "run_sbc": ("valuedyn.fitting._sbc", "run_sbc"),
        "load_fit": ("valuedyn.fitting._store", "load_fit"),
        "save_fit": ("valuedyn.fitting._store", "save_fit"),
        "fit_attrs": ("valuedyn.fitting._store", "fit_attrs"),
        "select_behaviour": ("valuedyn.fitting._select", "select_behaviour"),
        "Selection": ("valuedyn.fitting._select", "Selection"),
        "simulate_trajectory": ("valuedyn.fitting._simulate", "simulate_trajectory"),
        "diversity_headline": ("valuedyn.fitting._diversity", "diversity_headline"),
        "fit_timescale": ("valuedyn.fitting._diversity", "fit_timescale"),
        "first_found_updates": ("valuedyn.fitting._diversity", "first_found_updates"),
        "simulate_diversity_trajectory": ("valuedyn.fitting._diversity", "simulate_diversity_trajectory"),
        "run_plan": ("valuedyn.fitting._batch", "run_plan"),
        "BatchResult": ("valuedyn.fitting._batch", "BatchResult"),
        "FitOutcome": ("valuedyn.fitting._batch", "FitOutcome"),
        "Comparison": ("valuedyn.fitting._batch", "Comparison"),
        "progress_bar": ("valuedyn.fitting._batch", "progress_bar"),
        "prepare_jax": ("valuedyn.fitting._cli", "prepare_jax"),
        "fit_conditions": ("valuedyn.fitting._conditions", "fit_conditions"),
        "find_conditions": ("valuedyn.fitting._conditions", "find_conditions"),
        "group_conditions": ("valuedyn.fitting._conditions", "group_conditions"),
        "fit_conditions_cached": ("valuedyn.fitting._conditions", "fit_conditions_cached"),
        "condition_effects": ("valuedyn.fitting._conditions", "condition_effects"),
        "conditions_attrs": ("valuedyn.fitting._conditions", "conditions_attrs"),
        "classify_fit": ("valuedyn.fitting._trust", "classify_fit"),
        "Verdict": ("valuedyn.fitting._trust", "Verdict"),
        "rank_fits": ("valuedyn.fitting._trust", "rank_fits"),
        "Ranking": ("valuedyn.fitting._trust", "Ranking"),
        "find_modes": ("valuedyn.fitting._modes", "find_modes"),
        "stacked_fit": ("valuedyn.fitting._modes", "stacked_fit"),
        "motif_headline": ("valuedyn.fitting._headline", "motif_headline"),
        "Headline": ("valuedyn.fitting._headline", "Headline"),
        "choose_observation": ("valuedyn.fitting._overdispersion", "choose_observation"),
    }
    if name in lazy:
        import importlib

        module, attr = lazy[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'valuedyn.fitting' has no attribute {name!r}")


__all__ = [
    "PLANT_MOTIF",
    "BatchResult",
    "Comparison",
    "FitBatchConfig",
    "FitJob",
    "FitOutcome",
    "FitSettings",
    "applicable_models",
    "default_behaviours",
    "learned_achievements",
    "plan_fits",
    "prepare_jax",
    "progress_bar",
    "run_plan",
    "slug",
    "CheckConfig",
    "Headline",
    "Ranking",
    "Verdict",
    "choose_observation",
    "classify_fit",
    "find_modes",
    "motif_headline",
    "rank_fits",
    "stacked_fit",
    "CompareConfig",
    "CompareResult",
    "ConditionsConfig",
    "condition_effects",
    "conditions_attrs",
    "find_conditions",
    "fit_conditions",
    "fit_conditions_cached",
    "group_conditions",
    "FitConfig",
    "SBCConfig",
    "check_fit",
    "compare_fits",
    "fit_attrs",
    "fit_trajectory",
    "infer",
    "load_fit",
    "run_sbc",
    "save_fit",
    "select_behaviour",
    "Selection",
    "simulate_trajectory",
    "diversity_headline",
    "fit_timescale",
    "first_found_updates",
    "simulate_diversity_trajectory",
]
