"""Report: the diversity of behaviour of each trajectory, from its saved fits.

Which fit speaks for a diversity behaviour: among its trustworthy fits, the comparison's
winner if it is trustworthy, else the trustworthy fit ranked best by the comparison (the
table is ordered by ELPD), else the only trustworthy one. With no trustworthy fit the
headline says so and why, and states no timescale. Nothing here fits.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from valuedyn.papers._diversity_figures import DIVERSITY_ROWS


@dataclasses.dataclass
class DiversityResult:
    """The diversity view of one trajectory: chosen fit per behaviour, headline, probe file."""

    trajectory: Path
    chosen: dict[str, str]  # behaviour -> model of the chosen trustworthy fit
    untrusted: dict[str, str]  # behaviour -> why no fit speaks for it
    headline: object  # valuedyn.fitting DiversityHeadline
    probe: Path | None


def chosen_fit(section) -> tuple[str | None, str]:
    """``(model, "")`` of the fit that speaks for a section, or ``(None, why not)``."""
    trusted = [m for m in section.fitted if section.trustworthy(m)]
    if not trusted:
        if not section.fitted:
            return None, "none of its fits succeeded"
        reasons = "; ".join(f"{m}: {section.why_not(m)}" for m in section.fitted)
        return None, f"none of its {len(section.fitted)} fits is trustworthy ({reasons})"
    winner = section.verdict.get("winner")
    if winner in trusted:
        return winner, ""
    if section.table is not None:
        ranked = [str(m) for m in section.table.index if str(m) in trusted]
        if ranked:
            return ranked[0], ""
    return trusted[0], ""


def probe_file(trajectory: Path) -> Path | None:
    """``<stem>.probe.nc`` next to the trajectory (what `valuedyn probe RUN` writes), if present."""
    path = trajectory.with_name(f"{trajectory.stem}.probe.nc")
    return path if path.is_file() else None


def diversity_results(sections, loaded: dict[Path, object]) -> dict[Path, DiversityResult]:
    """The diversity view of every trajectory that has a fitted diversity behaviour."""
    from valuedyn.fitting import diversity_headline, load_fit

    results = {}
    for path in loaded:
        mine = {s.behaviour: s for s in sections if s.trajectory == path and s.behaviour in DIVERSITY_ROWS}
        if not mine:
            continue
        chosen, untrusted, fits = {}, {}, {}
        for behaviour in DIVERSITY_ROWS:
            if behaviour not in mine:
                untrusted[behaviour] = "it was not fitted"
                continue
            model, why = chosen_fit(mine[behaviour])
            if model is None:
                untrusted[behaviour] = why
            else:
                chosen[behaviour] = model
                fits[behaviour] = load_fit(mine[behaviour].fits[model])
        headline = diversity_headline(fits.get("diversity:events"), fits.get("diversity:actions"), untrusted=untrusted)
        results[path] = DiversityResult(path, chosen, untrusted, headline, probe_file(path))
    return results
