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

The notebook API (``__all__``; each name's docstring has an example that runs as a
doctest, ``tests/test_api.py``): fits are ``az.InferenceData`` objects in memory, nothing
is written or printed unless asked::

    from valuedyn.fitting import *
    run = shipped_trajectories()[0]                    # or any trajectory file
    ds = load_trajectory(run)                          # xarray.Dataset [seed, update, ...]
    behaviours_of(ds), models_for("unlock:place_plant")
    idata = fit(run, "unlock:place_plant", "logistic_onset", settings=FitSettings(chains=2, draws=300, warmup=300))
    checks = check(idata)                              # posterior predictive checks (kept in idata.attrs)
    judged = verdict(idata)                            # trustworthy, or named causes with evidence
    save_fit(idata, "fit.nc"); idata = load_fit("fit.nc"); fit_attrs(idata)["diagnostics"]
    compare({"a": idata_a, "b": idata_b}).table        # PSIS-LOO (az.compare), stacking weights
    rank({"a": idata_a, "b": idata_b}).text            # among trustworthy fits only
    posterior_medians(idata); model_analysis(idata)    # what a model's analysis takes, and the analysis
    az.plot_ppc(idata); az.loo_pit(idata, y="y")       # fits are ArviZ-native: its functions run unaided

Many fits at once (``valuedyn fit-batch``; the report runs its fits this way)::

    jobs, notes = plan_fits(run, ["event:place_plant"], ["overshoot", "logistic_onset"],
                            settings=FitSettings(chains=2, draws=300, warmup=300))
    result = run_plan(jobs, "fits")                        # local process pool, cached by content
    result = run_plan(jobs, "fits", scheduler="tcp://scheduler:8786")  # a Dask cluster

The names the report and the command line use beyond that list (``fit_trajectory``,
``classify_fit``, ``fit_conditions_cached``, ...) stay importable from here; they are the
rooms' interface to each other, not the notebook API. (``judge`` names the sub-room, so
the API's verdict is :func:`verdict`.)
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


#: the API's functions (fitting/pipeline/_api.py), loaded on first use
_API_FUNCTIONS = ("shipped_trajectories", "load_trajectory", "behaviours_of", "models_for", "fit", "save_fit", "load_fit",
                  "fit_attrs", "check", "verdict", "compare", "rank", "posterior_medians", "fit_parameters",
                  "model_analysis", "for_arviz")


def __getattr__(name):  # keep `import valuedyn.fitting` free of JAX until it is needed
    lazy = {
        **{name: ("valuedyn.fitting.pipeline._api", name) for name in _API_FUNCTIONS},
        "fit_trajectory": ("valuedyn.fitting.inference._fit", "fit_trajectory"),
        "infer": ("valuedyn.fitting.inference._fit", "infer"),
        "check_fit": ("valuedyn.fitting.judge._check", "check_fit"),
        "compare_fits": ("valuedyn.fitting.judge._compare", "compare_fits"),
        "CompareResult": ("valuedyn.fitting.judge._compare", "CompareResult"),
        "run_sbc": ("valuedyn.fitting.judge._sbc", "run_sbc"),
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
        # what papers/ reads beside the notebook API (papers imports nothing private of fitting/)
        "elpd_clearly_ahead": ("valuedyn.fitting.judge._compare", "elpd_clearly_ahead"),
        "FAMILY_OBSERVATIONS": ("valuedyn.fitting.inference._observation", "FAMILY_OBSERVATIONS"),
        "STOP_ESS": ("valuedyn.fitting.inference._diagnostics", "STOP_ESS"),
        "stop_check_interval": ("valuedyn.fitting.inference._diagnostics", "stop_check_interval"),
        "require_part": ("valuedyn.fitting.inference._select", "require_part"),
        "format_env_steps": ("valuedyn.fitting.inference._select", "format_env_steps"),
        "summarise_effect": ("valuedyn.fitting.analyses._conditions", "summarise_effect"),
        "training_config": ("valuedyn.fitting.analyses._conditions", "training_config"),
        "fitted_curves": ("valuedyn.fitting.analyses._diversity", "fitted_curves"),
        "memory_file_for": ("valuedyn.fitting.inference._select_memory", "memory_file_for"),
        "memory_train_config": ("valuedyn.fitting.inference._select_memory", "memory_train_config"),
        "open_memory": ("valuedyn.fitting.inference._select_memory", "open_memory"),
    }
    if name in lazy:
        import importlib

        module, attr = lazy[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'valuedyn.fitting' has no attribute {name!r}")


#: the notebook API: learnable in one sitting, each with a doctested example
__all__ = [
    # data
    "shipped_trajectories",
    "load_trajectory",
    "behaviours_of",
    "models_for",
    # one fit, in memory
    "FitSettings",
    "fit",
    "save_fit",
    "load_fit",
    "fit_attrs",
    # judging fits
    "check",
    "verdict",
    "compare",
    "rank",
    "for_arviz",
    # what a model's analysis takes
    "posterior_medians",
    "fit_parameters",
    "model_analysis",
    # many fits
    "plan_fits",
    "run_plan",
]
