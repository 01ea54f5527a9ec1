"""The notebook API (``valuedyn.fitting.__all__``): fits as ``az.InferenceData`` objects.

Each function here works on objects in memory: :func:`fit` returns an InferenceData and
writes nothing (:func:`save_fit` writes one when asked), :func:`check`, :func:`verdict`,
:func:`compare` and :func:`rank` take InferenceData (or fit-file paths), and nothing
prints unless ``progress`` asks for bars. They call the same code as the command line
(``valuedyn fit``, ``check``, ``compare``, ``report``): one inference path.

Every docstring's example runs as a doctest (``tests/test_api.py``) on the shipped run,
with tiny sampler settings (2 chains x (60 + 60) draws, 2 seeds): enough to show the
shapes, far too few for conclusions.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from valuedyn._errors import ValuedynError
from valuedyn.fitting.settings import FitSettings

#: the trajectory files shipped with the package (``valuedyn/data/*.nc``, campaign runs aside)
SHIPPED = "craftax_classic_8seeds_1M_h100.nc"


def shipped_trajectories() -> list[Path]:
    """Paths of the trajectory files shipped with the package (8 seeds x 16 updates of
    Craftax-Classic PPO, 1M env steps per seed), sorted.

    >>> from valuedyn.fitting import shipped_trajectories
    >>> [path.name for path in shipped_trajectories()]
    ['craftax_classic_8seeds_1M_h100.nc']
    """
    import valuedyn.data

    return sorted(Path(valuedyn.data.__file__).parent.glob("*.nc"))


def load_trajectory(path):
    """A trajectory file as a validated ``xarray.Dataset`` in memory (dims ``seed``,
    ``update``, ``achievement``, ``event``, ``action``; counts per update, coordinate
    ``env_step`` on ``update``). A missing or off-contract file is a ValuedynError.

    >>> from valuedyn.fitting import load_trajectory, shipped_trajectories
    >>> ds = load_trajectory(shipped_trajectories()[0])
    >>> dict(ds.sizes)["seed"], dict(ds.sizes)["update"]
    (8, 16)
    >>> ds["achievement_unlocks"].dims
    ('seed', 'update', 'achievement')
    """
    from valuedyn.data import open_trajectory

    return open_trajectory(path)


def behaviours_of(dataset) -> list[str]:
    """The behaviour patterns a trajectory (a Dataset or a path) offers, one per kind whose
    part it holds: ``unlock:ACHIEVEMENT``, ``event:EVENT``, ``action:ACTION``,
    ``diversity:actions``, ``diversity:events`` (put a name of that dimension for the
    capitals, e.g. ``unlock:place_plant``).

    >>> from valuedyn.fitting import behaviours_of, shipped_trajectories
    >>> behaviours_of(shipped_trajectories()[0])[:3]
    ['unlock:ACHIEVEMENT', 'event:EVENT', 'action:ACTION']
    """
    from valuedyn.fitting.inference._select import offered_behaviours

    return offered_behaviours(_dataset(dataset))


def models_for(behaviour: str, *, ode_models: bool = True) -> list[str]:
    """Names of the registered models that apply to ``behaviour``'s kind (``KIND:NAME``),
    those without a closed form left out with ``ode_models=False``.

    >>> from valuedyn.fitting import models_for
    >>> "logistic_onset" in models_for("unlock:place_plant")
    True
    >>> "diversify_then_minimize" in models_for("unlock:place_plant")
    False
    """
    from valuedyn.fitting.pipeline._plan import applicable_models

    return applicable_models(behaviour, ode_models=ode_models)


class _Fitted(Exception):
    """Carries a fit's InferenceData out of ``fit_trajectory`` just before its one write."""


def fit(trajectory, behaviour: str, model: str, *, settings: FitSettings | None = None, observation: str = "auto",
        seeds=(), progress: bool = False):
    """Fit ``model`` to one ``behaviour`` of ``trajectory`` (a path, or a Dataset such as
    :func:`~valuedyn.fitting.inference._simulate.simulate_trajectory`'s) with NUTS and
    return the fit as an ``az.InferenceData``; no file is written, nothing is printed
    (``progress=True``: the sampler's bars on stderr).

    ``settings``: the sampler settings (:class:`FitSettings`, default the report's);
    ``observation``: the observation model (``auto``: the family's default); ``seeds``:
    the seed labels to fit (empty: all). The groups are those of a fit file: ``posterior``
    (per-seed parameters [chain, draw, seed], the ``level`` [chain, draw, seed, update]),
    ``observed_data`` ``y`` [obs], ``posterior_predictive`` and ``log_likelihood`` ``y``
    [chain, draw, obs] (``obs``: the observed cells only, coordinates ``obs_seed`` and
    ``obs_update``), ``prior`` and ``prior_predictive`` (200 prior draws, one chain),
    ``sample_stats``, ``constant_data`` (``mask`` [seed, update]: the observed cells);
    ArviZ's functions run on it unaided. ``attrs`` hold the diagnostics and provenance
    (decoded by :func:`fit_attrs`). Bad input is a ValuedynError before any sampling.

    >>> from valuedyn.fitting import FitSettings, fit, shipped_trajectories
    >>> quick = FitSettings(chains=2, draws=60, warmup=60, min_draws=0)
    >>> idata = fit(shipped_trajectories()[0], "unlock:place_plant", "logistic_onset", settings=quick, seeds=(0, 1))
    >>> idata.posterior["t0"].dims, idata.posterior["t0"].shape
    (('chain', 'draw', 'seed'), (2, 60, 2))
    >>> idata.observed_data["y"].dims, idata.prior_predictive["y"].dims
    (('obs',), ('chain', 'draw', 'obs'))
    """
    from valuedyn.fitting.inference._fit import fit_trajectory

    settings = FitSettings() if settings is None else settings
    with tempfile.TemporaryDirectory(prefix="valuedyn-fit-") as folder:
        if not isinstance(trajectory, (str, Path)):  # a Dataset in memory: fitted from a file like any other
            from valuedyn.fitting.inference._simulate import write_trajectory

            path = Path(folder) / "trajectory.nc"
            write_trajectory(trajectory, path)
        else:
            path = Path(trajectory)
        config = settings.fit_config(trajectory=path, behaviour=behaviour, model=model, observation=observation,
                                     seeds=tuple(seeds), out=Path(folder) / "never_written.nc")
        config = dataclasses.replace(config, progress=bool(progress), force=False)

        def hand_over(idata):
            raise _Fitted(idata)

        try:
            fit_trajectory(config, before_write=hand_over)
        except _Fitted as fitted:
            return fitted.args[0]
    raise ValuedynError("the fit ended without its InferenceData; this is a bug in valuedyn.fitting")


def _fit_of(fit_or_path):
    """An InferenceData: ``fit_or_path`` itself, or the fit file it names loaded."""
    from valuedyn.fitting.inference._store import load_fit as _load

    return _load(fit_or_path) if isinstance(fit_or_path, (str, Path)) else fit_or_path


def _dataset(dataset_or_path):
    return load_trajectory(dataset_or_path) if isinstance(dataset_or_path, (str, Path)) else dataset_or_path


def save_fit(idata, path) -> Path:
    """Write a fit to ``path`` (ArviZ InferenceData netCDF, atomically: a kill leaves the
    old file or the new one) and return the path.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from valuedyn.fitting import FitSettings, fit, load_fit, save_fit, shipped_trajectories
    >>> quick = FitSettings(chains=2, draws=60, warmup=60, min_draws=0)
    >>> idata = fit(shipped_trajectories()[0], "unlock:place_plant", "logistic_onset", settings=quick, seeds=(0, 1))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = save_fit(idata, Path(folder) / "fit.nc")
    ...     load_fit(path).posterior["t0"].shape
    (2, 60, 2)
    """
    from valuedyn.fitting.inference._store import save_fit as _save

    return _save(idata, path)


def load_fit(path):
    """A fit file as an ``az.InferenceData`` (a missing or foreign file is a ValuedynError).

    >>> from valuedyn.fitting import load_fit
    >>> load_fit("no_such_fit.nc")
    Traceback (most recent call last):
    ...
    valuedyn._errors.ValuedynError: fit file no_such_fit.nc does not exist...
    """
    from valuedyn.fitting.inference._store import load_fit as _load

    return _load(path)


def fit_attrs(idata) -> dict:
    """A fit's attributes with every JSON one decoded: ``model``, ``behaviour``,
    ``observation_model``, ``pooling``, ``config`` (the FitConfig), ``diagnostics`` (``rhat_max``,
    ``ess_bulk_min``, ``divergences``, ``trustworthy``, ``reasons``), ``selection``, and once judged ``checks`` /
    ``verdict``.

    >>> from valuedyn.fitting import FitSettings, fit, fit_attrs, shipped_trajectories
    >>> quick = FitSettings(chains=2, draws=60, warmup=60, min_draws=0)
    >>> idata = fit(shipped_trajectories()[0], "unlock:place_plant", "logistic_onset", settings=quick, seeds=(0, 1))
    >>> attrs = fit_attrs(idata)
    >>> attrs["model"], attrs["behaviour"], attrs["config"]["chains"]
    ('logistic_onset', 'unlock:place_plant', 2)
    >>> sorted(k for k in ("rhat_max", "ess_bulk_min", "divergences") if k in attrs["diagnostics"])
    ['divergences', 'ess_bulk_min', 'rhat_max']
    """
    from valuedyn.fitting.inference._store import fit_attrs as _attrs

    return _attrs(idata)


def check(idata, *, seed: int = 0) -> dict:
    """The posterior predictive checks of a fit (coverage of the observed rates by the
    replicates' intervals, development statistics with their p-values, flags), stored in
    ``idata.attrs["checks"]`` in memory (no file is written; :func:`save_fit` keeps them).

    >>> from valuedyn.fitting import FitSettings, check, fit, shipped_trajectories
    >>> quick = FitSettings(chains=2, draws=60, warmup=60, min_draws=0)
    >>> idata = fit(shipped_trajectories()[0], "unlock:place_plant", "logistic_onset", settings=quick, seeds=(0, 1))
    >>> checks = check(idata)
    >>> {"coverage", "p_values", "flags"} <= set(checks), "checks" in idata.attrs
    (True, True)
    """
    from valuedyn.fitting.judge._check import attach_checks

    return attach_checks(idata, seed=seed)


def verdict(fit, name: str | None = None):
    """The verdict of a fit (an InferenceData or a fit-file path): trustworthy, or named
    causes (not identified by these data, misspecified, sampler failed) each with its
    evidence and, for a sampler failure, a remedy. A
    :class:`~valuedyn.fitting.judge._trust.Verdict` (``.label``, ``.trustworthy``,
    ``.comparable``, ``.causes``, ``.format()``). Nothing is written.

    >>> from valuedyn.fitting import FitSettings, fit, shipped_trajectories, verdict
    >>> quick = FitSettings(chains=2, draws=60, warmup=60, min_draws=0)
    >>> idata = fit(shipped_trajectories()[0], "unlock:place_plant", "logistic_onset", settings=quick, seeds=(0, 1))
    >>> judged = verdict(idata)
    >>> judged.trustworthy == (judged.label == "trustworthy"), judged.format().startswith(judged.name)
    (True, True)
    """
    from valuedyn.fitting.judge._trust import classify_fit

    return classify_fit(fit, name)


def compare(fits: dict, *, lfo: bool = False, progress: bool = False):
    """Compare fits of the same data (name -> InferenceData or fit-file path) by PSIS-LOO
    (``az.compare``, stacking weights) and, with ``lfo``, leave-future-out (refits each
    model). A :class:`~valuedyn.fitting.judge._compare.CompareResult`: ``.table`` (a
    DataFrame indexed by the names given, best first: ``elpd_loo``, ``se``, ``d_elpd``, ``dse``, ``weight``,
    ``pareto_k_bad``), ``.warnings``, ``.format()``. Fits of different data are refused.

    >>> from valuedyn.fitting import FitSettings, compare, fit, shipped_trajectories
    >>> quick = FitSettings(chains=2, draws=60, warmup=60, min_draws=0)
    >>> run = shipped_trajectories()[0]
    >>> a = fit(run, "unlock:place_plant", "logistic_onset", settings=quick, seeds=(0, 1))
    >>> b = fit(run, "unlock:place_plant", "logistic_onset", settings=FitSettings(chains=2, draws=60, warmup=60,
    ...                                                                             min_draws=0, rng_seed=1), seeds=(0, 1))
    >>> result = compare({"first": a, "second": b})
    >>> sorted(result.table.index), list(result.table.columns[:2])
    (['first', 'second'], ['rank', 'elpd_loo'])
    """
    from valuedyn.fitting.judge._compare import compare_fits

    if not fits:
        raise ValuedynError("compare needs at least one fit: pass {name: InferenceData or path}")
    with tempfile.TemporaryDirectory(prefix="valuedyn-compare-") as folder:
        paths = []
        for name, one in fits.items():  # the comparison reads fit files; a fit in memory is put in one for it
            if isinstance(one, (str, Path)):
                paths.append(Path(one))
            else:
                paths.append(save_fit(one, Path(folder) / f"{name}.nc"))
        result = compare_fits(paths, lfo=lfo, progress=progress)
    # the comparison names fits after their models (model:file when one repeats): named here by the caller's keys
    result.table = result.table.rename(index=dict(zip(result.paths, fits)))
    result.paths = {name: str(one) for name, one in fits.items() if isinstance(one, (str, Path))}
    return result


def rank(fits: dict, verdicts: dict | None = None):
    """Rank fits of the same data (name -> InferenceData or path) by PSIS-LOO among the
    trustworthy ones only; ``verdicts`` (name -> :func:`verdict`'s) are judged here when not
    given. A :class:`~valuedyn.fitting.judge._trust.Ranking`: ``.winner`` (None when
    undecided), ``.clearly`` (clearly ahead), ``.text``, ``.table``, ``.excluded`` (name -> why).

    >>> from valuedyn.fitting import FitSettings, fit, rank, shipped_trajectories
    >>> quick = FitSettings(chains=2, draws=60, warmup=60, min_draws=0)
    >>> idata = fit(shipped_trajectories()[0], "unlock:place_plant", "logistic_onset", settings=quick, seeds=(0, 1))
    >>> ranking = rank({"logistic_onset": idata})
    >>> ranking.winner in (None, "logistic_onset"), isinstance(ranking.text, str)
    (True, True)
    """
    from valuedyn.fitting.judge._trust import classify_fit, rank_fits

    if verdicts is None:
        verdicts = {name: classify_fit(one, name) for name, one in fits.items()}
    return rank_fits(fits, verdicts)


def for_arviz(idata):
    """The fit itself: a fit (in memory or read by :func:`load_fit`) is ArviZ-native, so
    ``az.loo_pit``, ``az.plot_loo_pit``, ``az.plot_ppc``, ``az.summary`` and ``az.compare``
    run on it unaided: observed data, posterior predictive and log-likelihood all on one
    dimension ``obs``, the observed cells only (masked updates dropped, never counted as
    zeros), with coordinates ``obs_seed`` and ``obs_update`` naming each cell. Kept for
    code written when the stored layout differed; a fit in that older layout (an
    InferenceData read without :func:`load_fit`) is put on this one, in place.

    >>> import arviz as az
    >>> from valuedyn.fitting import FitSettings, fit, fit_attrs, for_arviz, shipped_trajectories
    >>> quick = FitSettings(chains=2, draws=60, warmup=60, min_draws=0)
    >>> idata = fit(shipped_trajectories()[0], "unlock:place_plant", "logistic_onset", settings=quick, seeds=(0, 1))
    >>> view = for_arviz(idata)
    >>> view.observed_data["y"].dims, view.posterior_predictive["y"].dims, view.log_likelihood["y"].dims
    (('obs',), ('chain', 'draw', 'obs'), ('chain', 'draw', 'obs'))
    >>> pit = az.loo_pit(view, y="y")
    >>> pit.shape == view.observed_data["y"].shape and bool(((pit >= 0) & (pit <= 1)).all())
    True
    """
    from valuedyn.fitting.inference._store import obs_layout

    return obs_layout(idata)


def posterior_medians(idata) -> dict[str, float]:
    """Posterior median of each of the fitted model's parameters over chains, draws and
    seeds (the model's units: ``tau`` for times, ``1/tau`` for rates, level units for
    levels), as :meth:`valuedyn.models.Model.analysis` takes them.

    >>> from valuedyn.fitting import FitSettings, fit, fit_parameters, posterior_medians, shipped_trajectories
    >>> quick = FitSettings(chains=2, draws=60, warmup=60, min_draws=0)
    >>> idata = fit(shipped_trajectories()[0], "unlock:place_plant", "logistic_onset", settings=quick, seeds=(0, 1))
    >>> medians = posterior_medians(idata)
    >>> sorted(medians) == sorted(fit_parameters(idata))
    True
    >>> 0.0 <= medians["t0"] <= 1.0
    True
    """
    import numpy as np

    return {name: float(np.median(np.asarray(idata.posterior[name].values))) for name in fit_parameters(idata)}


def fit_parameters(idata) -> list[str]:
    """Names of the fitted model's parameters, in the model's order.

    >>> from valuedyn.fitting import fit_parameters
    >>> import arviz as az
    >>> fit_parameters(az.InferenceData(attrs={"model": "overshoot"}))
    ['t0', 'alpha', 'ratio', 'floor', 'optimum', 'excess']
    """
    from valuedyn.models import get_model

    return [p.name for p in get_model(str(idata.attrs["model"])).parameters]


def model_analysis(idata):
    """The fitted model's analysis (:class:`valuedyn.models.Analysis`: vector field, fixed
    points with eigenvalues and timescales in tau) at the fit's :func:`posterior_medians`.

    >>> from valuedyn.fitting import FitSettings, fit, model_analysis, shipped_trajectories
    >>> quick = FitSettings(chains=2, draws=60, warmup=60, min_draws=0)
    >>> idata = fit(shipped_trajectories()[0], "unlock:place_plant", "logistic_onset", settings=quick, seeds=(0, 1))
    >>> analysis = model_analysis(idata)
    >>> analysis.model, analysis.params is not None
    ('logistic_onset', True)
    """
    from valuedyn.models import get_model

    return get_model(str(idata.attrs["model"])).analysis(posterior_medians(idata))
