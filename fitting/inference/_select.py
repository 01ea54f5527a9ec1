"""Behaviour selection: which numbers of a trajectory file a fit explains.

A behaviour is ``KIND:NAME``:

=========================  =====================================  ==========================  ============
behaviour                  observation ``y[seed, update]``        exposure                    family
=========================  =====================================  ==========================  ============
``unlock:ACHIEVEMENT``     ``achievement_unlocks`` (episodes)     ``episodes_finished``       binomial
``event:EVENT``            ``event_total`` (occurrences)          ``episodes_finished``       count
``action:ACTION``          ``action_count``                       all actions of the update   binomial
``diversity:actions``      Hill-1 diversity (exp Shannon entropy) 1                           continuous
``diversity:events``       of that update's action/event counts
=========================  =====================================  ==========================  ============

An update whose exposure is 0 (no finished episode, no action, no event) is *masked*:
its cell keeps ``y = 0`` and ``mask = False`` and the likelihood skips it; nothing is
filled in or divided by zero. So is a cell the file marks unobserved
(:func:`valuedyn.data.observed_mask`, an imported log's missing value): for an action, an
update in which any action is unobserved (the exposure sums over every action); for a
diversity, an update in which any category is unobserved.

A behaviour needs its part of the file (:data:`KIND_PART`); an imported file holds only
what its log held, and a behaviour whose part is absent is refused with the behaviours the
file offers (:func:`offered_behaviours`).

Time: ``tau = (env_step - first) / (last - first)`` over the selected window, so models
run on ``tau`` in [0, 1]; ``time_origin`` (= first) and ``time_scale`` (= last - first)
convert back to env steps.

Blocks of updates (``--blocks``, :func:`aggregate_blocks`): a long run can be fitted in
blocks of consecutive updates instead of one cell per update. Development is fast early and
slow late, so blocks are 1 update wide at the start and grow geometrically (the widths are
``r^j``, rounded along their running sum, with ``r`` such that they fill the run in the
cap's number of blocks). A block sums its observed updates' counts and exposures (an
unobserved update adds nothing; a block is observed when any of its updates is); a
diversity block is the exposure-weighted mean of its observed updates' values (each weighs
1: their plain mean) with exposure 1. Each block carries its edges on the tau axis (the
span of its first update's start to its last update's end, the spans the unaggregated fit
uses), so the span-averaged likelihood (:meth:`valuedyn.models.Model.solve_binned`)
integrates the level over the block's true span; the block's ``tau`` and ``env_step`` are
its updates' means and its ``updates`` label is its first update. What that assumes: the
expected sum of a block's counts is its exposure times the level averaged over its span,
exact when the exposure is even across the block (finished episodes per update vary little
within a block); the overdispersion of a beta-binomial / negative-binomial / lognormal
observation model then describes the scatter of block totals, not of single updates.
``--blocks auto`` aggregates only a run of more than
:data:`~valuedyn.fitting.settings.BLOCKS_AUTO_CAP` (64) updates, into at most that many
blocks; ``none`` never; an integer is the cap. Why 64 (``benchmarks/bench_blocks.py``):
the cost of a long run's fit is in the beta-binomial likelihood of unlocks (one log-gamma
per cell); one gradient at 2 seeds x 726 updates took 4.0 ms unaggregated, 0.53 ms in 64
blocks (1.6 ms in 128, 0.17 ms in 32), while the widest of 64 blocks is 43 updates (6 % of
that run) and the posteriors of an unaggregated and a 64-block fit agreed to a tenth of
their sd. The choice and the edges are in
:meth:`Selection.selection_json` (the fit file's ``selection`` attribute), and
:attr:`Selection.blocks_text` says it in words.

``level_scale`` normalises count data: the largest per-update mean count (total over
finished episodes) in the selection, so model levels live near [0, 1.5]; for
probabilities (unlock, action) it is 1, for diversity the largest observed diversity.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import numpy as np

from valuedyn._errors import ValuedynError
from valuedyn.fitting.settings import blocks_cap
from valuedyn.models import BEHAVIOUR_KINDS  # the kinds of the models' applies_to, defined once there

DIVERSITY_NAMES = ("actions", "events")
#: behaviour kind (diversity: ``diversity:NAME``) -> (optional part of the trajectory, its variable)
KIND_PART = {
    "unlock": ("unlocks", "achievement_unlocks"),
    "event": ("events", "event_total"),
    "action": ("actions", "action_count"),
    "diversity:actions": ("actions", "action_count"),
    "diversity:events": ("events", "event_total"),
}
#: behaviour kind -> family of its observation model
KIND_FAMILY = {"unlock": "binomial", "action": "binomial", "event": "count", "diversity": "continuous",
               "memory": "binomial"}  # memory: the horizon, a count of lags (._select_memory)


@dataclasses.dataclass(frozen=True)
class Selection:
    """The data of one fit. Arrays are numpy; shapes ``[S, U]`` unless stated.

    ``y``: observations (int64 counts, or float diversity); ``exposure``: float;
    ``mask``: bool, True = observed; ``env_step``, ``tau``: ``[U]``; ``seeds`` and
    ``updates``: the trajectory's seed and update labels ``[S]``, ``[U]``.

    Aggregated into blocks (:func:`aggregate_blocks`), ``U`` counts blocks: ``edges``
    ``[U + 1]`` are their bounds on the tau axis, ``widths`` ``[U]`` their sizes in
    updates, ``updates`` their first updates' labels and ``blocks`` records the choice
    (the ``--blocks`` value, the cap and the updates before aggregation). Unaggregated,
    the three are None (each update's span then runs halfway to its neighbours).
    """

    behaviour: str
    kind: str
    name: str
    family: str
    seeds: np.ndarray
    updates: np.ndarray
    y: np.ndarray
    exposure: np.ndarray
    mask: np.ndarray
    env_step: np.ndarray
    tau: np.ndarray
    level_scale: float
    time_origin: float
    time_scale: float
    edges: np.ndarray | None = None
    widths: np.ndarray | None = None
    blocks: dict | None = None

    @property
    def n_observed(self) -> int:
        return int(self.mask.sum())

    @property
    def aggregated(self) -> bool:
        return self.edges is not None

    @property
    def blocks_text(self) -> str:
        """The aggregation in words, e.g. "726 updates aggregated into 64 blocks, 1 to 43
        updates wide (--blocks auto: at most 64)"; "" when every update is its own cell."""
        if not self.aggregated:
            return ""
        return (f"{self.blocks['n_updates']} updates aggregated into {len(self.widths)} blocks, "
                f"{int(self.widths.min())} to {int(self.widths.max())} updates wide "
                f"(--blocks {self.blocks['choice']}: at most {self.blocks['cap']})")

    def selection_json(self) -> str:
        """The selection as the fit file's ``selection`` attribute records it; an aggregated
        one adds ``blocks``: the choice, the cap, the updates before aggregation, each
        block's first update label, width (updates) and the tau edges ``[U + 1]``, and the text."""
        record = {
            "seeds": [int(s) for s in self.seeds],
            "updates": [int(self.updates[0]), int(self.updates[-1]) if not self.aggregated else int(self.blocks["last_update"])],
            "n_updates": int(len(self.updates)) if not self.aggregated else int(self.blocks["n_updates"]),
        }
        if self.aggregated:
            record["blocks"] = {
                **{k: v for k, v in self.blocks.items()},
                "n_blocks": int(len(self.widths)),
                "first_updates": [int(u) for u in self.updates],
                "widths": [int(w) for w in self.widths],
                "edges_tau": [float(e) for e in self.edges],
                "text": self.blocks_text,
            }
        return json.dumps(record, sort_keys=True)

    def with_mask(self, mask: np.ndarray, *, rescale: bool = True) -> "Selection":
        """The same cells with fewer observed ones (leave-future-out); the level scale is
        recomputed from what stays observed, so no future data leaks into the fit."""
        mask = np.asarray(mask, bool) & self.mask
        scale = _level_scale(self.family, self.y, self.exposure, mask) if rescale else self.level_scale
        return dataclasses.replace(self, mask=mask, level_scale=scale)


def parse_behaviour(behaviour: str) -> tuple[str, str]:
    """``"event:place_plant"`` -> ``("event", "place_plant")``; refuse a bad shape or kind."""
    if not isinstance(behaviour, str) or behaviour.count(":") != 1:
        raise ValuedynError(
            f"--behaviour must be KIND:NAME with KIND one of {', '.join(BEHAVIOUR_KINDS)}; "
            f"received {behaviour!r}; e.g. unlock:place_table or event:place_plant"
        )
    kind, name = behaviour.split(":")
    if kind not in BEHAVIOUR_KINDS:
        raise ValuedynError(
            f"behaviour kind must be one of {', '.join(BEHAVIOUR_KINDS)}; received {kind!r} in {behaviour!r}"
        )
    if not name:
        raise ValuedynError(f"behaviour {behaviour!r} names nothing after the colon; e.g. {kind}:NAME")
    return kind, name


def parse_updates(text: str | None) -> tuple[int, int] | None:
    """``"FIRST:LAST"`` (inclusive update labels) -> tuple; None = all updates."""
    if text is None or text == "":
        return None
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        first = int(parts[0]) if parts[0] else None
        last = int(parts[1]) if parts[1] else None
    except ValueError:
        raise ValuedynError(f"--updates must be FIRST:LAST (inclusive update numbers); received {text!r}") from None
    if first is not None and last is not None and last < first:
        raise ValuedynError(f"--updates {text!r} ends before it starts; give FIRST <= LAST")
    return (first, last)  # type: ignore[return-value]


def _labels(ds, dim: str) -> np.ndarray:
    if dim in ds.coords:
        return np.asarray(ds[dim].values)
    return np.arange(ds.sizes[dim])


def _names(ds, dim: str) -> list[str]:
    return [str(v) for v in _labels(ds, dim)]


def behaviour_part(behaviour: str) -> tuple[str, str]:
    """The ``(part, variable)`` of the trajectory a behaviour reads (:data:`KIND_PART`)."""
    kind, _ = parse_behaviour(behaviour)
    return KIND_PART.get(behaviour if kind == "diversity" else kind, ("", ""))


def offered_behaviours(ds) -> list[str]:
    """The behaviour patterns a trajectory file offers, one per kind whose part it holds:
    ``unlock:ACHIEVEMENT``, ``event:EVENT``, ``action:ACTION``, ``diversity:actions``,
    ``diversity:events``; e.g. an unlock-only import offers ``["unlock:ACHIEVEMENT"]``."""
    offered = [f"{kind}:{dim.upper()}" for kind, dim in (("unlock", "achievement"), ("event", "event"), ("action", "action"))
               if KIND_PART[kind][1] in ds]
    return offered + [f"diversity:{name}" for name in DIVERSITY_NAMES if KIND_PART[f"diversity:{name}"][1] in ds]


def require_part(ds, behaviour: str) -> None:
    """Refuse a behaviour whose part the file does not hold (an imported log without it)."""
    part, variable = behaviour_part(behaviour)
    if variable and variable not in ds:
        why = f" (its {ds.attrs['source_format']} log, imported, lacked it)" if "source_format" in ds.attrs else ""
        raise ValuedynError(
            f"behaviour {behaviour!r} needs the {part!r} part ({variable}), which this file does not hold{why}; "
            f"the file offers {', '.join(offered_behaviours(ds)) or 'no behaviour'}"
        )


def hill1(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hill number of order 1 (exp of Shannon entropy) over the last axis.

    Returns (diversity, has_data); diversity is 0 where the total count is 0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1)
    has = total > 0
    share = np.divide(counts, total[..., None], out=np.zeros_like(counts), where=has[..., None])
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(share > 0, share * np.log(np.where(share > 0, share, 1.0)), 0.0)
    entropy = -terms.sum(axis=-1)
    return np.where(has, np.exp(entropy), 0.0), has


def _level_scale(family: str, y: np.ndarray, exposure: np.ndarray, mask: np.ndarray) -> float:
    if family == "binomial" or not mask.any():
        return 1.0
    if family == "count":
        per_episode = y[mask] / exposure[mask]
    else:
        per_episode = y[mask]
    top = float(per_episode.max())
    return top if top > 0 else 1.0


def select_behaviour(
    ds,
    behaviour: str,
    seeds: tuple[int, ...] | None = None,
    updates: tuple[int | None, int | None] | None = None,
) -> Selection:
    """Cut one behaviour out of a (validated) trajectory Dataset.

    ``seeds``: seed labels to keep (None = all); ``updates``: inclusive (first, last)
    update labels (None = all). Raises :class:`ValuedynError` for an unknown name (listing
    the valid ones), an empty selection, or a selection with no observed update.
    """
    kind, name = parse_behaviour(behaviour)
    family = KIND_FAMILY[kind]
    if kind == "memory":  # the horizon in a memory probe file, not a trajectory (._select_memory)
        from valuedyn.fitting.inference._select_memory import memory_cells

        cells = memory_cells(ds, behaviour, name, seeds, updates)
        return Selection(behaviour=behaviour, kind=kind, name=name, family=family, **cells,
                         level_scale=_level_scale(family, cells["y"], cells["exposure"], cells["mask"]))

    seed_labels = _labels(ds, "seed")
    update_labels = _labels(ds, "update")
    if seeds:
        unknown = [s for s in seeds if s not in set(seed_labels.tolist())]
        if unknown:
            raise ValuedynError(
                f"--seeds {list(seeds)} names seeds {unknown} that the file does not hold; "
                f"its seeds are {seed_labels.tolist()}"
            )
        seed_index = np.array([int(np.nonzero(seed_labels == s)[0][0]) for s in seeds])
    else:
        seed_index = np.arange(len(seed_labels))
    keep = np.ones(len(update_labels), bool)
    if updates is not None:
        first, last = updates
        if first is not None:
            keep &= update_labels >= first
        if last is not None:
            keep &= update_labels <= last
    update_index = np.nonzero(keep)[0]
    if len(seed_index) == 0 or len(update_index) < 2:
        raise ValuedynError(
            f"the selection (seeds {list(seeds) if seeds else 'all'}, updates {updates}) holds "
            f"{len(seed_index)} seeds x {len(update_index)} updates; a fit needs at least 1 seed and 2 updates; "
            f"the file has updates {int(update_labels[0])}..{int(update_labels[-1])}"
        )
    if kind == "diversity" and name not in DIVERSITY_NAMES:
        raise ValuedynError(
            f"behaviour {behaviour!r}: diversity is computed over 'actions' or 'events'; "
            f"valid names: diversity:actions, diversity:events"
        )
    require_part(ds, behaviour)
    from valuedyn.data import observed_mask

    sub = ds.isel(seed=seed_index, update=update_index)
    episodes = np.asarray(sub["episodes_finished"].values, dtype=np.int64)

    def observed(variable: str) -> np.ndarray:
        # the file's mask of logged cells (all True in a trainer file), cut like ``sub``
        return observed_mask(ds, variable)[np.ix_(seed_index, update_index)]

    def pick(variable: str, dim: str) -> tuple[np.ndarray, np.ndarray]:
        names = _names(ds, dim)
        if name not in names:
            raise ValuedynError(
                f"behaviour {behaviour!r}: {dim} {name!r} is not in this file; valid names: {', '.join(names)}"
            )
        index = names.index(name)
        return np.asarray(sub[variable].isel({dim: index}).values, dtype=np.int64), observed(variable)[..., index]

    if kind == "unlock":
        y, seen = pick("achievement_unlocks", "achievement")
        exposure = episodes.astype(np.float64)
    elif kind == "event":
        y, seen = pick("event_total", "event")
        exposure = episodes.astype(np.float64)
    elif kind == "action":
        y, _ = pick("action_count", "action")
        # the exposure sums over every action: one unobserved action leaves it unknown
        seen = observed("action_count").all(axis=-1)
        exposure = np.asarray(sub["action_count"].values, dtype=np.int64).sum(axis=-1).astype(np.float64)
    else:
        variable = KIND_PART[behaviour][1]
        y, has = hill1(sub[variable].values)
        seen = observed(variable).all(axis=-1)  # a share needs every category
        # The event distribution counts only finished episodes; with none, there is no data.
        if name == "events":
            has &= episodes > 0
        exposure = has.astype(np.float64)
    mask = (exposure > 0) & seen
    if family != "continuous":
        y = np.where(mask, y, 0)
    else:
        y = np.where(mask, y, 0.0).astype(np.float64)
    if not mask.any():
        raise ValuedynError(
            f"behaviour {behaviour!r}: every selected update is masked (no finished episode / no data in "
            f"{len(seed_index)} seeds x {len(update_index)} updates); select later updates or other seeds"
        )
    env_step = np.asarray(sub["env_step"].values, dtype=np.float64)
    origin, scale = float(env_step[0]), float(env_step[-1] - env_step[0])
    tau = (env_step - origin) / scale
    return Selection(
        behaviour=behaviour,
        kind=kind,
        name=name,
        family=family,
        seeds=np.asarray(seed_labels[seed_index]),
        updates=np.asarray(update_labels[update_index]),
        y=y,
        exposure=exposure,
        mask=mask,
        env_step=env_step,
        tau=tau,
        level_scale=_level_scale(family, y, exposure, mask),
        time_origin=origin,
        time_scale=scale,
    )


def update_edges(tau: np.ndarray) -> np.ndarray:
    """The span of each update on the tau axis, as bounds ``[U + 1]``: halfway to the
    neighbours, the first and last spans as wide on both sides (the spans
    :meth:`valuedyn.models.Model.solve_binned` gives the points ``tau`` [U])."""
    tau = np.asarray(tau, np.float64)
    mid = 0.5 * (tau[1:] + tau[:-1])
    return np.concatenate([2.0 * tau[:1] - mid[:1], mid, 2.0 * tau[-1:] - mid[-1:]])


def block_starts(n_updates: int, n_blocks: int) -> np.ndarray:
    """Where each of ``n_blocks`` blocks of ``n_updates`` updates starts (indices ``[B + 1]``,
    the last one ``n_updates``): widths ``r^j`` (j = 0..B-1, the first 1 update) with the
    growth ``r`` >= 1 that makes them sum to ``n_updates``, cut where their running sum
    rounds, sorted so they never shrink; every block holds at least one update and the
    total is exact. ``n_blocks``
    >= ``n_updates``: one update per block."""
    if n_blocks >= n_updates:
        return np.arange(n_updates + 1)

    def total(r: float) -> float:
        return float(n_blocks) if r == 1.0 else (r**n_blocks - 1.0) / (r - 1.0)

    low, high = 1.0, 2.0
    while total(high) < n_updates:
        high *= 2.0
    for _ in range(200):  # bisection on the growth ratio
        middle = 0.5 * (low + high)
        low, high = (middle, high) if total(middle) < n_updates else (low, middle)
    ratio = 0.5 * (low + high)
    running = np.concatenate([[0.0], np.cumsum(ratio ** np.arange(n_blocks))])
    widths = np.maximum(np.diff(np.round(running * (n_updates / running[-1])).astype(np.int64)), 1)
    widths[-1] -= widths.sum() - n_updates  # the rounding's remainder (0, or a few) on the widest block
    # the rounding can leave a 2 before a 1 early on: sorted, the widths never shrink
    return np.concatenate([[0], np.cumsum(np.sort(widths))])


def aggregate_blocks(selection: Selection, blocks="auto") -> Selection:
    """``selection`` in blocks of consecutive updates as ``--blocks`` asks (``auto``,
    ``none`` or an integer cap; see the module docstring): the same selection when the
    choice leaves every update its own cell (``none``, or a run of no more updates than the
    cap). Totals are conserved: a count block's ``y`` and ``exposure`` are its observed
    updates' sums. ``level_scale`` stays the unaggregated selection's (the models' levels
    and priors keep their units)."""
    cap = blocks_cap(blocks)
    n_updates = len(selection.updates)
    if cap is None or n_updates <= cap or selection.aggregated:
        return selection
    starts = block_starts(n_updates, cap)
    first, stop = starts[:-1], starts[1:]
    widths = stop - first
    index = np.repeat(np.arange(len(widths)), widths)  # block of each update

    def block_sum(values: np.ndarray) -> np.ndarray:  # [S, U] -> [S, B]
        out = np.zeros(values.shape[:-1] + (len(widths),), values.dtype)
        np.add.at(out, (slice(None), index), values)
        return out

    mask = selection.mask
    observed_exposure = np.where(mask, selection.exposure, 0.0)
    block_mask = block_sum(mask.astype(np.int64)) > 0
    if selection.family == "continuous":  # exposure-weighted mean of the observed values, exposure 1
        total = block_sum(observed_exposure)
        y = np.divide(block_sum(np.where(mask, selection.y * selection.exposure, 0.0)), total,
                      out=np.zeros(total.shape), where=total > 0)
        exposure = block_mask.astype(np.float64)
    else:
        y = block_sum(np.where(mask, selection.y, 0)).astype(selection.y.dtype)
        exposure = block_sum(observed_exposure)
    edges = update_edges(selection.tau)[starts]
    counts = np.asarray(widths, np.float64)
    tau = np.add.reduceat(selection.tau, first) / counts
    env_step = np.add.reduceat(selection.env_step, first) / counts
    return dataclasses.replace(
        selection, updates=np.asarray(selection.updates)[first], y=y, exposure=exposure, mask=block_mask,
        env_step=env_step, tau=tau, edges=edges, widths=widths,
        blocks={"choice": str(blocks), "cap": int(cap), "n_updates": int(n_updates),
                "last_update": int(np.asarray(selection.updates)[-1])},
    )


def chosen_seeds(ds, seeds: Sequence[int] = (), max_seeds: int = 0) -> tuple[int, ...]:
    """``seeds`` if given, else the first ``max_seeds`` seed labels (empty tuple: all seeds)."""
    if seeds:
        return tuple(int(s) for s in seeds)
    labels = [int(s) for s in ds["seed"].values]
    if max_seeds and len(labels) > max_seeds:
        return tuple(labels[:max_seeds])
    return ()


def format_env_steps(value: float) -> str:
    """An env-step count for report text: 1.23M, 450k or 812."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:.2f}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:.0f}k"
    return f"{value:.0f}"
