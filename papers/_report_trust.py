"""Report step 2b, trust: every fit's verdict, the rankings and the motif headline, read
from the saved fit files (the fitting room's :func:`~valuedyn.fitting.classify_fit`,
:func:`~valuedyn.fitting.rank_fits` and :func:`~valuedyn.fitting.motif_headline`).

Rules the report follows from here on:
- a fit is trustworthy (passes the gate, no cause) or carries its named causes
  (*not identified*, *misspecified*, *sampler failed*), shown next to it;
- a winner is named only among comparable fits (trustworthy, or separate modes that each
  pass the gate, entered through their stacked modes); otherwise the comparison is
  *undecided* and the report says why; *clearly* needs d_elpd > 2 dse and reliable PSIS;
- the motif headline of a trajectory comes from the overshoot fit of
  ``event:place_plant`` (a model that can both rise and decay: a monotone model's "no
  decay" would be built in, not found), with its verdict.
"""

from __future__ import annotations

from pathlib import Path

#: the behaviour and model of the motif headline
MOTIF_BEHAVIOUR = "event:place_plant"
MOTIF_MODEL = "overshoot"


def ranking_verdict(ranking) -> dict:
    """The report's per-behaviour verdict dict from a :class:`~valuedyn.fitting.Ranking`.

    ``clearly`` is None when there is nothing to compare (no or one comparable fit)."""
    table = ranking.table
    verdict = {"winner": ranking.winner, "runner_up": None, "d_elpd": None, "dse": None, "clearly": None,
               "weights": {}, "text": ranking.text, "excluded": dict(ranking.excluded)}
    if ranking.winner is not None and table is None:
        verdict["weights"] = {ranking.winner: 1.0}
    if table is not None and len(table) >= 2:
        runner = table.index[1]
        verdict.update(runner_up=str(runner), d_elpd=abs(float(table.loc[runner, "d_elpd"])),
                       dse=float(table.loc[runner, "dse"]), clearly=bool(ranking.clearly),
                       weights={str(m): float(w) for m, w in zip(table.index, table["weight"])})
    return verdict


def judge_sections(sections, progress=None) -> None:
    """Attach ``verdicts`` (model -> Verdict) and ``ranking`` to every section and replace
    its ``verdict`` by the trust-aware one (in place)."""
    from valuedyn.fitting import classify_fit, rank_fits

    iterator = sections if progress is None else progress(sections, desc="verdicts", unit="behaviour")
    for section in iterator:
        section.verdicts = {m: classify_fit(section.fits[m], name=m) for m in section.fitted}
        if not section.fitted:
            continue
        table = getattr(section, "table", None)  # the comparison: leave-future-out scores when --lfo ran
        lfo = (None if table is None or "lfo_pointwise" not in getattr(table, "columns", ())
               else {str(m): table.loc[m, "lfo_pointwise"] for m in table.index})
        section.ranking = rank_fits({m: section.fits[m] for m in section.fitted}, section.verdicts, lfo=lfo)
        section.verdict = ranking_verdict(section.ranking)


#: the events that say what agents do around plants, in the order the sentence names them
PLANT_EVENTS = ("collect_sapling", "place_plant", "eat_plant")


def plant_uses(dataset) -> str:
    """One sentence from the data (not a fit): what the agents do with plants over the last
    tenth of the run's updates (saplings collected, plants placed and eaten per finished
    episode, pooled over seeds) and how placing a plant is paid (the file's stored reward:
    every plant, or the first of an episode only). Empty when the file lacks event totals."""
    import numpy as np

    from valuedyn.fitting import training_config

    if dataset is None or "event_total" not in dataset or "episodes_finished" not in dataset:
        return ""
    updates = np.asarray(dataset["update"].values)
    last = slice(len(updates) - max(1, len(updates) // 10), len(updates))
    episodes = float(np.asarray(dataset["episodes_finished"].isel(update=last)).sum())
    if episodes <= 0:
        return ""
    names = [str(e) for e in np.asarray(dataset["event"].values)]
    per_episode = [f"{float(np.asarray(dataset['event_total'].sel(event=e).isel(update=last)).sum()) / episodes:.2f} "
                   f"{e}" for e in PLANT_EVENTS if e in names]
    config = training_config(dataset.attrs)  # the trainer's stored config (None for an imported log)
    if config is None or "reward_every" not in config:
        paid = "the file does not store how placing a plant is rewarded"
    elif "place_plant" in (config["reward_every"] or ()):
        paid = "every plant placed is rewarded (--reward-every place_plant), so many plants are worth placing"
    else:
        paid = "only the first plant of an episode is rewarded (the achievement's first unlock)"
    return (f"What the agents do with plants over the last tenth of the run (updates {int(updates[last.start])}-"
            f"{int(updates[-1])}, per finished episode, all seeds): {', '.join(per_episode)}; {paid}.")


def motif_answers(sections, loaded: dict[Path, object]) -> dict[Path, tuple[str, str, str | None]]:
    """Trajectory -> (the motif paragraph, or why there is none; the answer in a few
    words for the report's summary, without the paragraph's evidence; why the question is
    not decided, in a few words, or None when it is: the run or the data leave it open,
    nothing answered it, or the answer comes from a fit that is not trustworthy)."""
    from valuedyn.fitting import motif_headline

    answers = {}
    for path in loaded:
        section = next((s for s in sections if s.trajectory == path and s.behaviour == MOTIF_BEHAVIOUR), None)
        dataset = loaded[path]
        if dataset is not None and "event_total" not in dataset:  # an imported log without event totals: say what it lacked
            answers[path] = (f"Not answered: the log of {path.name} lacked event totals, so plants placed per episode "
                             f"({MOTIF_BEHAVIOUR}) are not in the file.", "not answered (the log lacked event totals)",
                             "the log lacked event totals")
            continue
        if section is None or MOTIF_MODEL not in section.fitted:
            answers[path] = (f"No {MOTIF_MODEL} fit of {MOTIF_BEHAVIOUR} in this report, so the motif question "
                             f"(does it rise and then decay?) is not answered here; fit it with --behaviours "
                             f"{MOTIF_BEHAVIOUR} --models {MOTIF_MODEL} ...", f"not answered (no {MOTIF_MODEL} fit)",
                             f"no {MOTIF_MODEL} fit")
            continue
        verdict = section.verdicts.get(MOTIF_MODEL)
        headline = motif_headline(section.fits[MOTIF_MODEL], verdict)
        p = f"P(decay) {headline.decay_probability:.2f}"
        undecided = None
        if headline.can_tell == "run too short":
            undecided = "the run ends while the level still rises"
            short = f"undecided: {undecided} ({p})"
        elif headline.can_tell == "open":
            undecided = "the data leave the decay open"
            short = f"undecided: {undecided} ({p})"
        elif headline.decay_probability >= 0.9:
            short = f"rises, then decays ({p})"
        else:
            short = f"rises, no decay after the peak ({p})"
        if verdict is not None and not verdict.trustworthy:
            short += f"; its {MOTIF_MODEL} fit is {verdict.label}"
            undecided = undecided or f"its {MOTIF_MODEL} fit is {verdict.label}"  # an answer from it is no decision
        uses = plant_uses(dataset)
        answers[path] = (headline.text + (f" {uses}" if uses else ""), short, undecided)
    return answers


def motif_headlines(sections, loaded: dict[Path, object]) -> dict[Path, str]:
    """Trajectory -> the motif paragraph (or why there is none)."""
    return {path: text for path, (text, _, _) in motif_answers(sections, loaded).items()}
