"""Report step 1, inputs: which trajectories, behaviours, models and seeds the report fits.

The plan itself (validation, default behaviours, applicable models) is
:func:`valuedyn.fitting.plan_fits`; here only the report's defaults are added (the runs
shipped in ``data/``) and its options checked, all before any work.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from valuedyn._errors import ValuedynError

BEHAVIOUR_RULE = (
    "the plant motif (event:place_plant, unlock:place_plant) plus every achievement learned within the run: "
    "pooled over seeds, its unlock rate over the first tenth of the updates is below {threshold} and over the "
    "last tenth at or above it; in the order they are learned (the env step at which the pooled rate, "
    "smoothed over a tenth of the run, first reaches {threshold}); at most {max_behaviours} per trajectory; "
    "and the diversity of actions and of events (Hill-1) of every trajectory."
)


#: file name endings of the other netCDF files a run's folder holds beside its trajectory:
#: what `valuedyn probe` writes (``<RUN stem>.probe.nc``, ``.probeset.nc``) and
#: `valuedyn probe --memory` (``.memory.nc``); never read as trajectories
NOT_TRAJECTORY_SUFFIXES = {".probe.nc": "valuedyn probe", ".probeset.nc": "valuedyn probe",
                           ".memory.nc": "valuedyn probe --memory"}

#: the groups of an ArviZ InferenceData file (a fit, written by `valuedyn fit`)
FIT_GROUPS = ("posterior", "sample_stats", "log_likelihood")

#: how the report reads rates: the rate-unit rule of `valuedyn import`, stated in the report
RATE_UNIT_NOTE = ("unlock rates are modelled per finished episode (unlocks / episodes_finished), in the fraction "
                  "unit; an imported log's rates were read by its rule: {rule}")


def is_trajectory_name(path: Path) -> bool:
    """False for the names of probe and memory files (:data:`NOT_TRAJECTORY_SUFFIXES`)."""
    return not any(Path(path).name.endswith(suffix) for suffix in NOT_TRAJECTORY_SUFFIXES)


def refuse_non_trajectory(path: Path) -> None:
    """Refuse, in one line, a probe, memory or fit file given as a trajectory (before
    :func:`valuedyn.data.open_trajectory` would say only that a dimension is missing)."""
    path = Path(path)
    for suffix, command in NOT_TRAJECTORY_SUFFIXES.items():
        if path.name.endswith(suffix):
            raise ValuedynError(
                f"{path} is a file written by `{command}`, not a trajectory; pass the run's trajectory file "
                f"(e.g. {path.name[: -len(suffix)]}.nc)"
            )
    if path.is_file():
        import h5netcdf

        try:
            with h5netcdf.File(path, "r") as handle:
                groups = set(handle.groups)
        except Exception:  # not HDF5: open_trajectory says what is wrong with it
            return
        if groups & set(FIT_GROUPS):
            raise ValuedynError(
                f"{path} is a fit file (groups {', '.join(sorted(groups & set(FIT_GROUPS)))}), not a trajectory; "
                "pass the trajectory it was fitted to (a fit file names it in its attribute 'trajectory')"
            )


#: the folder of the package's data that the report reads without TRAJECTORY arguments: the
#: CPU campaign (``data/make_cpu_data.sh``), its two conditions of training (default reward,
#: every plant paid) on one grid of 400 updates. The 1M-step GPU run in ``data/`` is not in it:
#: it ends at update 16, before any decay could be seen, and its grid (1024 envs) is not the
#: campaign's, so it is no condition of it; ``valuedyn report data/<that file>`` reports on it.
DEFAULT_REPORT_FOLDER = "campaign"


def default_trajectories(folder: Path | None = None) -> list[Path]:
    """The trajectory files the report reads by default: ``data/campaign/*.nc`` of the
    package (:data:`DEFAULT_REPORT_FOLDER`; or ``folder/*.nc``), without the probe and
    memory files beside them (:data:`NOT_TRAJECTORY_SUFFIXES`); subfolders are not searched."""
    import valuedyn.data

    folder = Path(valuedyn.data.__file__).parent / DEFAULT_REPORT_FOLDER if folder is None else Path(folder)
    return sorted(p for p in folder.glob("*.nc") if p.is_file() and is_trajectory_name(p))


def resolve_trajectories(paths: Sequence[str]) -> list[Path]:
    """The trajectories to report on: ``paths`` (a folder stands for its trajectory files,
    as :func:`default_trajectories` finds them: ``valuedyn report data/memory``), else the
    shipped ones; each checked to be no probe, memory or fit file (:func:`refuse_non_trajectory`)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = default_trajectories(path)
            if not inside:
                raise ValuedynError(f"folder {path} holds no trajectory file (*.nc that is no probe, memory or fit "
                                    "file); pass trajectory files or a folder of them")
            found.extend(inside)
        else:
            found.append(path)
    found = found if paths else default_trajectories()
    if not found:
        import valuedyn.data

        raise ValuedynError(
            f"no trajectory given and none shipped in {Path(valuedyn.data.__file__).parent / DEFAULT_REPORT_FOLDER}; "
            "pass TRAJECTORY files, or run `valuedyn train` first"
        )
    for path in found:
        refuse_non_trajectory(path)
    return found


def fit_settings(config):
    """The report's fit settings as the fitting room's :class:`~valuedyn.fitting.FitSettings`."""
    from valuedyn.fitting import FitSettings

    return FitSettings.from_config(config)


def check_options(config) -> None:
    """Refuse every bad option before any input is read or work done (one line each)."""
    if config.max_behaviours < 1:
        raise ValuedynError(f"--max-behaviours must be >= 1; received {config.max_behaviours}")
    for name in ("max_seeds", "time_budget", "workers"):
        if getattr(config, name) < 0:
            raise ValuedynError(f"--{name.replace('_', '-')} must be >= 0 (0 = the default); received {getattr(config, name)}")
    if not 0.0 < config.learned_threshold < 1.0:
        raise ValuedynError(f"--learned-threshold must lie in (0, 1); received {config.learned_threshold}")
    fit_settings(config).validate()  # chains, draws, warmup >= 1; max tree depth 1..15
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ValuedynError(f"--out {out} is a file; pass a folder for the report")
    if config.fits_dir and Path(config.fits_dir).exists() and not Path(config.fits_dir).is_dir():
        raise ValuedynError(f"--fits-dir {config.fits_dir} is a file; pass a folder for the fit cache")


def plan_report(config):
    """Open and validate every input; returns ``(jobs, loaded trajectories, notes)``.

    Raises :class:`ValuedynError` before anything is fitted or written.
    """
    from valuedyn.data import open_trajectory
    from valuedyn.fitting import plan_fits

    jobs, loaded, notes = [], {}, []
    for path in resolve_trajectories(config.trajectories):
        ds = open_trajectory(path)  # missing / corrupt / off-contract -> ValuedynError
        loaded[path] = ds
        mine, more_notes = plan_fits(
            path, config.behaviours, config.models, seeds=config.seeds, max_seeds=config.max_seeds,
            settings=fit_settings(config), learned_threshold=config.learned_threshold,
            max_behaviours=config.max_behaviours, diversity=config.diversity,
            ode_models=config.ode_models, dataset=ds,
        )
        jobs += mine
        notes += [note for note in more_notes if not note.startswith(f"{path.name}: not fitted, ")]
        notes += import_notes(path, ds) + absent_sections(path, ds, config)
    if not jobs:
        raise ValuedynError(
            "nothing to fit: no behaviour with an applicable model "
            f"(behaviours {list(config.behaviours) or 'default'}, models {list(config.models) or 'all'}); "
            "pass --behaviours KIND:NAME or other --models"
        )
    return jobs, loaded, notes


#: optional part -> (what it holds, the report's sections that need it)
PART_SECTIONS = {
    "events": ("event totals", "the motif (plants placed per episode, event:place_plant) and the diversity of events"),
    "actions": ("action counts", "the diversity of actions"),
    "placements": ("placement histograms", "the plants-per-episode histogram"),
}


def absent_sections(path: Path, ds, config) -> list[str]:
    """One line per trajectory lacking parts the report's sections need: what the log (or
    file) lacked and which sections are left out for it (empty when nothing is lacking)."""
    from valuedyn.data._schema import absent_parts, is_imported

    absent = [part for part in PART_SECTIONS if part in absent_parts(ds)]
    if not absent:
        return []
    whose = "its log (imported) lacked" if is_imported(ds) else "the file lacks"
    names = [PART_SECTIONS[p][0] for p in absent]
    held = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    sections = "; ".join(PART_SECTIONS[p][1] for p in absent)
    return [f"{path.name}: {whose} {held}, so these sections are left out: {sections}"]


def import_notes(path: Path, ds) -> list[str]:
    """For an imported trajectory: where it came from, how its episode counts were obtained
    (its ``episodes_source``), how rates became counts (``count_rounding``) and the
    rate-unit rule (:data:`RATE_UNIT_NOTE`); nothing for a trainer file."""
    import json

    from valuedyn.data._schema import is_imported

    if not is_imported(ds):
        return []
    attrs = ds.attrs
    try:
        sources = [Path(s).name for s in json.loads(attrs.get("source_files", "[]"))]
    except (TypeError, json.JSONDecodeError):
        sources = []
    return [
        f"{path.name}: imported with `valuedyn import` from {attrs.get('source_format')} logs of {len(sources)} runs "
        f"({', '.join(sources)}), one seed each; episode counts: {attrs.get('episodes_source', 'not stated')}; "
        f"counts from rates: {attrs.get('count_rounding', 'not stated')}",
        f"{path.name}: " + RATE_UNIT_NOTE.format(
            rule=f"{attrs.get('rate_unit_rule', 'not stated')} (read as {attrs.get('rate_unit', 'not stated')})"),
    ]
