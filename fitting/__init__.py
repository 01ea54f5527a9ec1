"""valuedyn.fitting: the bridge between trajectories and models.

numpyro inference (MAP start, NUTS chains over the CPU cores), diagnostics, posterior
predictive checks, model comparison (PSIS-LOO, stacking, leave-future-out) and
simulation-based calibration. Nothing model-specific lives here: a model (from
``valuedyn.models``), an observation model and a data selection make a numpyro model.

Sub-rooms by role, imports flowing one way (tested by ``tests/fitting/test_import_graph.py``)::

    pipeline/    plans, cache keys, the batch runner, the command-line front ends
       |
    analyses/    conditions, diversity, the motif headline
       |
    judge/       predictive checks, modes, verdicts and rankings, comparison, observation choice, SBC
       |
    inference/   selection, observation models, the numpyro model, NUTS and its gate, the fit, the store
       |
    settings.py  every command's config and the sampler settings, declared once (no JAX)

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

from valuedyn.fitting.pipeline._cache import slug
from valuedyn.fitting.pipeline._plan import (
    PLANT_MOTIF,
    FitJob,
    applicable_models,
    default_behaviours,
    learned_achievements,
    plan_fits,
)
from valuedyn.fitting.settings import (
    CheckConfig,
    CompareConfig,
    ConditionsConfig,
    FitBatchConfig,
    FitConfig,
    FitSettings,
    SBCConfig,
)


def __getattr__(name):  # keep `import valuedyn.fitting` free of JAX until it is needed
    lazy = {
        "fit_trajectory": ("valuedyn.fitting.inference._fit", "fit_trajectory"),
        "infer": ("valuedyn.fitting.inference._fit", "infer"),
        "check_fit": ("valuedyn.fitting.judge._check", "check_fit"),
        "compare_fits": ("valuedyn.fitting.judge._compare", "compare_fits"),
        "CompareResult": ("valuedyn.fitting.judge._compare", "CompareResult"),
        "run_sbc": ("valuedyn.fitting.judge._sbc", "run_sbc"),
        "load_fit": ("valuedyn.fitting.inference._store", "load_fit"),
        "save_fit": ("valuedyn.fitting.inference._store", "save_fit"),
        "fit_attrs": ("valuedyn.fitting.inference._store", "fit_attrs"),
        "select_behaviour": ("valuedyn.fitting.inference._select", "select_behaviour"),
        "Selection": ("valuedyn.fitting.inference._select", "Selection"),
        "simulate_trajectory": ("valuedyn.fitting.inference._simulate", "simulate_trajectory"),
        "diversity_headline": ("valuedyn.fitting.analyses._diversity", "diversity_headline"),
        "fit_timescale": ("valuedyn.fitting.analyses._diversity", "fit_timescale"),
        "first_found_updates": ("valuedyn.fitting.analyses._diversity", "first_found_updates"),
        "simulate_diversity_trajectory": ("valuedyn.fitting.analyses._diversity", "simulate_diversity_trajectory"),
        "run_plan": ("valuedyn.fitting.pipeline._batch", "run_plan"),
        "BatchResult": ("valuedyn.fitting.pipeline._batch", "BatchResult"),
        "FitOutcome": ("valuedyn.fitting.pipeline._batch", "FitOutcome"),
        "Comparison": ("valuedyn.fitting.pipeline._batch", "Comparison"),
        "progress_bar": ("valuedyn.fitting.pipeline._batch", "progress_bar"),
        "prepare_jax": ("valuedyn.fitting.pipeline._jax_setup", "prepare_jax"),
        "fit_conditions": ("valuedyn.fitting.analyses._conditions", "fit_conditions"),
        "find_conditions": ("valuedyn.fitting.analyses._conditions", "find_conditions"),
        "group_conditions": ("valuedyn.fitting.analyses._conditions", "group_conditions"),
        "fit_conditions_cached": ("valuedyn.fitting.pipeline._cache", "fit_conditions_cached"),
        "condition_effects": ("valuedyn.fitting.analyses._conditions", "condition_effects"),
        "conditions_attrs": ("valuedyn.fitting.analyses._conditions", "conditions_attrs"),
        "classify_fit": ("valuedyn.fitting.judge._trust", "classify_fit"),
        "Verdict": ("valuedyn.fitting.judge._trust", "Verdict"),
        "rank_fits": ("valuedyn.fitting.judge._trust", "rank_fits"),
        "Ranking": ("valuedyn.fitting.judge._trust", "Ranking"),
        "find_modes": ("valuedyn.fitting.judge._modes", "find_modes"),
        "stacked_fit": ("valuedyn.fitting.judge._modes", "stacked_fit"),
        "motif_headline": ("valuedyn.fitting.analyses._headline", "motif_headline"),
        "Headline": ("valuedyn.fitting.analyses._headline", "Headline"),
        "choose_observation": ("valuedyn.fitting.judge._overdispersion", "choose_observation"),
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
