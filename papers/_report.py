"""``valuedyn report``: the fits of a plan, checked and compared, written up for a paper.

Steps (each shows progress on stderr), one module each:

1. inputs (:mod:`._report_inputs`): every option checked, every trajectory opened and
   validated, every behaviour and model name checked, before anything is fitted or
   written; the plan is :func:`valuedyn.fitting.plan_fits`'s;
2. fits, checks and comparisons: :func:`valuedyn.fitting.run_plan` (cached by content
   hash in ``DIR/fits/``, a local process pool or a Dask cluster with ``--scheduler``);
   :mod:`._report_results` reads its result as one section per behaviour; with
   trajectories of two or more training conditions, fitting also fits the motif across
   conditions (:mod:`._report_conditions`; one line says so when there is one condition);
3. figures (:mod:`._report_figures`): rendered in memory from the saved files;
4. report (:mod:`._report_markdown`): figures, tables, ``report.md`` and
   ``report.json`` written atomically, only once everything is rendered.

Nothing here trains, fits, checks or compares; that is valuedyn.fitting's job.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from valuedyn._config import config_to_dict, config_to_json
from valuedyn._io import file_sha256, provenance, write_text_atomic
from valuedyn.fitting import progress_bar
from valuedyn.fitting import STOP_ESS, stop_check_interval


def log(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def run_report(config) -> dict:
    """Run every step and write the report; returns the report.json content."""
    from valuedyn.papers._report_inputs import BEHAVIOUR_RULE, check_options, fit_settings, plan_report

    check_options(config)
    from valuedyn.fitting import prepare_jax, run_plan
    from valuedyn.papers._paper import render_figures, write_figures
    from valuedyn.papers._report_conditions import (
        conditions_figures, conditions_json, conditions_markdown_section, report_conditions,
    )
    from valuedyn.papers._report_diversity import diversity_results
    from valuedyn.papers._report_figures import figure_plan
    from valuedyn.papers._report_markdown import render_markdown
    from valuedyn.papers._report_results import result_tables, results_json, sections_from
    from valuedyn.papers._report_trust import judge_sections, motif_answers

    prepare_jax(config.chains)  # one CPU device per core for the chains, if JAX is not yet running
    timing: dict[str, float] = {}
    started = time.perf_counter()
    out = Path(config.out)

    log("[1/4] inputs: reading trajectories and choosing behaviours and models")
    jobs, loaded, notes = plan_report(config)
    for job in jobs:
        log(f"  {job.trajectory.name}: {job.behaviour}: {job.model}")
    timing["inputs"] = time.perf_counter() - started

    mark = time.perf_counter()
    log("[2/4] fits, checks and comparisons")
    fits_dir = Path(config.fits_dir) if config.fits_dir else out / "fits"
    result = run_plan(jobs, fits_dir, scheduler=config.scheduler,
                      workers=config.workers, time_budget=config.time_budget, lfo=config.lfo,
                      refit_remedy=config.refit_remedy,
                      choose_deviations=config.choose_deviation)
    sections, skipped = sections_from(result)
    judge_sections(sections, progress=progress_bar)  # verdicts and trust-aware rankings from the saved fits
    motif = motif_answers(sections, loaded)
    if skipped:
        notes.append(
            f"left out for time (--time-budget {config.time_budget} s; rerun with a larger budget or 0, fits made "
            f"so far are reused): {', '.join(f'{s.trajectory.name} {s.behaviour}' for s in skipped)}"
        )
        log(notes[-1])
    for section in sections:
        if section.left_out:
            notes.append(f"{section.trajectory.name} {section.behaviour}: models {', '.join(section.left_out)} left "
                         f"out for time (--time-budget {config.time_budget} s); rerun to add them, fits made so far "
                         "are reused")
            log(notes[-1])
    conditions = report_conditions(sections, loaded, config, fits_dir, started=mark, log=log)
    from valuedyn.papers._report_memory import memory_figures, memory_json, memory_markdown_section, report_memory

    memory = report_memory(loaded, config, fits_dir, started=mark, log=log)  # None: no memory probe beside a trajectory
    for behaviour, error in conditions.errors.items():
        log(f"  conditions: {behaviour}: {error}")
    timing["fit"] = time.perf_counter() - mark

    mark = time.perf_counter()
    log("[3/4] figures")
    diversity = diversity_results(sections, loaded)
    rendered: dict[str, dict[str, bytes]] = {}
    figures: dict[Path, list] = {}
    for path, specs, inputs in figure_plan(sections, loaded, diversity):
        rendered.update(render_figures(specs, inputs, progress=progress_bar))
        figures[path] = specs
    rendered.update(conditions_figures(conditions))
    rendered.update(memory_figures(memory))
    timing["figures"] = time.perf_counter() - mark

    log("[4/4] report")
    tables = result_tables(sections, out)
    trajectories = []
    for path, ds in loaded.items():
        mine = [s for s in sections if s.trajectory == path]
        seeds = mine[0].seeds if mine else ()
        trajectories.append({
            "path": path.name, "sha256": file_sha256(path), "n_seeds": int(ds.sizes["seed"]),
            "seeds_fitted": list(seeds) if seeds else [int(s) for s in ds["seed"].values],
            "n_updates": int(ds.sizes["update"]), "env_steps": float(ds["env_step"].values[-1]),
        })
    settings = fit_settings(config)
    timing["total"] = time.perf_counter() - started
    n_run = sum(not c for s in sections for c in s.cached.values())
    report = {
        "config": config_to_dict(config),
        "config_json": config_to_json(config),
        "provenance": provenance(),
        "fit_settings": {"chains": settings.chains, "draws": settings.draws, "warmup": settings.warmup,
                         "seeds": list(config.seeds), "rng_seed": settings.rng_seed,
                         "max_tree_depth": settings.max_tree_depth, "min_draws": settings.min_draws},
        "fit_settings_text": (
            f"{config.chains} chains x {config.draws} draws after {config.warmup} warmup, tree depth "
            f"{config.max_tree_depth} (models without a closed form {min(config.max_tree_depth, config.ode_max_tree_depth)}), "
            f"target acceptance {config.target_accept}"
            + (f", {config.saturated_draws} draws per chain after a warmup that saturates the tree depth"
               if config.saturated_draws else "")
            + (f"; a fit stops after {config.min_draws} draws per chain (or every {stop_check_interval(config.min_draws)} more) "
               f"once it passes the gate with bulk and tail ESS >= {STOP_ESS}" if 0 < config.min_draws < config.draws else "")
        ),
        "behaviour_rule": BEHAVIOUR_RULE.format(threshold=config.learned_threshold, max_behaviours=config.max_behaviours),
        "notes": notes,
        "trajectories": trajectories,
        "motif": {path.name: text for path, (text, _, _) in motif.items()},
        "motif_summary": {path.name: short for path, (_, short, _) in motif.items()},
        # why each motif question is not decided (None: decided), what the summary lists
        "motif_undecided": {path.name: why for path, (_, _, why) in motif.items()},
        "results": results_json(sections, out),
        "diversity": [
            {"trajectory": path.name, "chosen_fits": view.chosen, "not_stated": view.untrusted,
             "probe": view.probe.name if view.probe else None, **view.headline.as_dict()}
            for path, view in diversity.items()
        ],
        "conditions": conditions_json(conditions, out),
        "memory": memory_json(memory, out),
        "figures": sorted(f"figures/{name}.{fmt}" for name, r in rendered.items() for fmt in r),
        "tables": sorted(tables),
        "n_fits_run": n_run,
        "n_fits_cached": sum(len(s.fitted) for s in sections) - n_run,
        "n_fits_failed": sum(len(s.errors) for s in sections),
        "timing_s": timing,
    }
    markdown = render_markdown(sections, figures, notes, report, diversity, conditions_markdown_section(conditions)
                               + memory_markdown_section(memory))
    # everything is rendered: now write (each file atomically)
    write_figures(rendered, out / "figures")
    for name, text in tables.items():
        write_text_atomic(out / name, text)
    write_text_atomic(out / "report.md", markdown)
    write_text_atomic(out / "report.json", json.dumps(report, indent=1, default=str) + "\n")
    log(f"report written to {out / 'report.md'} in {timing['total']:.0f} s")
    return report
