"""``valuedyn import``: learning curves logged by another trainer -> a trajectory file.

Each run (one CSV or JSONL file, or one TensorBoard folder; see ``_import_readers``)
becomes one ``seed``; each logged row one ``update``. The file holds what the logs hold
and nothing made up (contract: ``_schema``): the core (``episodes_finished``,
``env_step``, provenance) and the parts found: ``unlocks`` from achievement rates,
``returns`` from mean episode returns and lengths, ``ppo`` from logged PPO statistics.

**Columns** (:data:`DEFAULT_COLUMNS`, each overridable with ``--columns KEY=COLUMN``;
``KEY=`` ignores that column). ``achievement`` is a pattern whose ``{name}`` is the
achievement's name (a column mapped to another key never counts as one): the default ``Achievements/{name}`` is what the public Craftax PPO
baseline logs through W&B, and gives the Craftax achievement names the trainer uses
(``collect_wood``, ``place_plant``, ...). ``achievement:NAME=COLUMN`` maps one more
column to achievement NAME. Every other key names one column: a per-update mean over
the finished episodes (``episode_return``, ``episode_length``), a count
(``episodes``: finished episodes per row), the env steps (``env_step``) or a PPO
statistic. The logging step (W&B's ``_step``, TensorBoard's event step) can be named as
a column, ``_step`` (e.g. ``--columns env_step=_step`` for CleanRL's TensorBoard runs,
whose step is the global env step).

**Env steps** per row: the ``env_step`` column where the log has it, else
``(step + 1) x --steps-per-update`` (the step counted from 0, one row per update, as
W&B's ``_step``).

**Rates**: percent or fraction of the finished episodes. Rule (``--rate-unit auto``):
percent if any logged rate exceeds 1, else fraction; the choice and the largest rate are
printed and stored (``rate_unit``, ``rate_unit_rule``). A rate outside [0, 100] (percent)
or [0, 1] (fraction) is refused.

**Counts**: finished episodes per row from the logged count where the log has one; else
``--episodes-per-update``; else estimated as steps per update (``--steps-per-update``, or
the env-step column's constant spacing) / the mean episode length, rounded to the nearest
integer and at least 1. Unlocks are ``round(rate x episodes)``, so the rate they give back
is within ``0.5 / episodes`` of the logged one. Both are stored (``episodes_source``,
``count_rounding``).

**Missing values** are masked, never 0: a NaN or absent cell leaves 0 in the count and
False in the variable's ``*_observed`` mask; a row whose episode count is unknown (no
count, no length), or that a run did not log (``--align union``), has
``episodes_finished = 0`` and ``episodes_finished_observed = False``.

**Several runs** must log the same achievements. Runs that logged different env steps are
refused (``--align exact``, the default) with what differs, or put on the union of their
env steps (``--align union``: the rows a run lacks are masked) or on the env steps every
run logged (``--align common``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import re
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from valuedyn._config import config_to_json, option
from valuedyn._errors import ValuedynError
from valuedyn.data._import_readers import FORMATS, STEP_COLUMN, RunTable, read_run
from valuedyn.data._schema import OBSERVED_SUFFIX

#: key -> the column it reads by default; ``achievement`` is a pattern with ``{name}``.
DEFAULT_COLUMNS: dict[str, str] = {
    "achievement": "Achievements/{name}",
    "env_step": "env_step",
    "episodes": "episodes_finished",
    "episode_return": "episode_return",
    "episode_length": "episode_length",
    "policy_loss": "policy_loss",
    "value_loss": "value_loss",
    "entropy": "entropy",
    "approx_kl": "approx_kl",
    "clip_fraction": "clip_fraction",
}

#: keys whose per-row mean becomes a real variable as it is (the PPO statistics).
PPO_KEYS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")

RATE_UNITS = ("auto", "percent", "fraction")
ALIGNMENTS = ("exact", "union", "common")
RATE_UNIT_RULE = "percent if any logged rate exceeds 1, else fraction"
COUNT_ROUNDING = (
    "achievement_unlocks = round(rate x episodes_finished), to the nearest integer (half to even), clipped to "
    "[0, episodes_finished]: the rate it gives back is within 0.5 / episodes_finished of the logged one; "
    "length_sum = round(mean length x episodes_finished); return_sum = mean return x episodes_finished"
)


@dataclasses.dataclass(frozen=True)
class ImportConfig:
    """Import learning curves logged by another trainer (W&B history as CSV or JSONL,
TensorBoard event folders) into a trajectory file: one run (file or folder) per seed, one
logged row per update. Rates become counts of finished episodes; the file holds what the
logs hold (unlocks, returns and lengths, PPO statistics where logged), nothing made up;
missing values are masked, never 0. Then: valuedyn fit TRAJECTORY --behaviour unlock:NAME ...

Columns (--columns KEY=COLUMN overrides; KEY= ignores one; '_step' names the logging step):
  achievement=Achievements/{name}   one column per achievement ({name}: its name)
  achievement:NAME=COLUMN           one more achievement column
  env_step, episodes (finished episodes per row), episode_return, episode_length (means),
  policy_loss, value_loss, entropy, approx_kl, clip_fraction: columns of those names.
Env steps: the env_step column, else (_step + 1) x --steps-per-update.
Episodes per row: the logged count, else --episodes-per-update, else steps per update /
mean episode length (rounded); the source and the rounding are stored in the file.
Rates: percent if any rate exceeds 1, else fraction (--rate-unit overrides).
Example (the public Craftax PPO baseline, 1024 envs x 64 steps, exported from W&B):
  valuedyn import run1.csv run2.csv --steps-per-update 65536 --out theirs.nc"""

    runs: tuple[str, ...] = option(help="run logs, one per seed: CSV or JSONL files, or TensorBoard folders", positional=True,
                                   metavar="RUN")
    out: str = option("trajectory.nc", "trajectory file to write", metavar="PATH")
    format: str = option("auto", "log format (auto: by the name: *.csv, *.jsonl, a folder = TensorBoard)",
                         choices=("auto",) + FORMATS)
    columns: tuple[str, ...] = option((), "column mapping overrides, KEY=COLUMN items (see above)", metavar="KEY=COLUMN")
    rate_unit: str = option("auto", f"unit of the achievement rates (auto: {RATE_UNIT_RULE})", choices=RATE_UNITS)
    steps_per_update: int = option(
        0, "env steps per update (num_envs x num_steps, e.g. 65536 = 1024 x 64); 0: from the env_step column"
    )
    episodes_per_update: int = option(
        0, "finished episodes per update, where the log has no count; 0: estimated from the mean episode length"
    )
    align: str = option(
        "exact", "runs that logged different env steps: exact refuses, union masks the rows a run lacks, common keeps "
        "the env steps every run logged", choices=ALIGNMENTS,
    )
    force: bool = option(False, "replace an existing --out instead of refusing")


# ---------------------------------------------------------------------------
# the column mapping
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ColumnMap:
    """The resolved mapping: ``pattern`` for achievement columns (None: none by pattern),
    ``named`` achievement -> column, ``single`` key -> column (None: ignored)."""

    pattern: str | None
    named: dict[str, str]
    single: dict[str, str | None]

    def to_json(self, achievements: dict[str, str], used: set[str]) -> str:
        """The mapping as used: keys whose column no run holds are recorded as None."""
        single = {key: column if key in used else None for key, column in self.single.items()}
        return json.dumps({"achievement_pattern": self.pattern, "achievements": achievements, **single}, sort_keys=True)


def parse_columns(items: Sequence[str] | Mapping[str, str]) -> ColumnMap:
    """``KEY=COLUMN`` items (or a dict) over :data:`DEFAULT_COLUMNS` -> :class:`ColumnMap`."""
    pairs = list(items.items()) if isinstance(items, Mapping) else []
    if not isinstance(items, Mapping):
        for item in items:
            key, sep, column = str(item).partition("=")
            if not sep or not key.strip():
                raise ValuedynError(f"--columns takes KEY=COLUMN items; received {item!r}; e.g. env_step=global_step")
            pairs.append((key.strip(), column.strip()))
    pattern: str | None = DEFAULT_COLUMNS["achievement"]
    named: dict[str, str] = {}
    single: dict[str, str | None] = {k: v for k, v in DEFAULT_COLUMNS.items() if k != "achievement"}
    for key, column in pairs:
        if key.startswith("achievement:"):
            name = key.partition(":")[2]
            if not name or not column:
                raise ValuedynError(f"--columns achievement:NAME=COLUMN needs a name and a column; received {key}={column}")
            named[name] = column
        elif key == "achievement":
            if column and "{name}" not in column:
                raise ValuedynError(
                    f"--columns achievement={column}: the pattern needs '{{name}}' where the achievement's name stands, "
                    "e.g. achievement=charts/achievements/{name}"
                )
            pattern = column or None
        elif key in single:
            single[key] = column or None
        else:
            raise ValuedynError(
                f"--columns: unknown key {key!r}; known keys: {', '.join(DEFAULT_COLUMNS)}, achievement:NAME"
            )
    return ColumnMap(pattern, named, single)


def _pattern_regex(pattern: str) -> re.Pattern:
    before, _, after = pattern.partition("{name}")
    return re.compile(re.escape(before) + r"(?P<name>[^/]+?)" + re.escape(after))


def achievement_columns(table: RunTable, mapping: ColumnMap) -> dict[str, str]:
    """Achievement name -> column of ``table``, in the log's column order (named ones last)."""
    found: dict[str, str] = {}
    if mapping.pattern:
        regex = _pattern_regex(mapping.pattern)
        taken = set(mapping.single.values())  # a column mapped to another key is never an achievement
        for column in table.columns:
            match = None if column in taken else regex.fullmatch(column)
            if match:
                found[match.group("name")] = column
    for name, column in mapping.named.items():
        if column not in table.columns:
            raise ValuedynError(f"run log {table.path}: --columns achievement:{name}={column} names no column of the log")
        found[name] = column
    if not found:
        shown = ", ".join(list(table.columns)[:12]) + (", ..." if len(table.columns) > 12 else "")
        raise ValuedynError(
            f"run log {table.path} has no achievement column: none matches {mapping.pattern!r} (its columns: {shown or 'none'}); "
            "pass --columns achievement=PATTERN with {name} where the name stands"
        )
    return found


def _column(table: RunTable, column: str | None) -> np.ndarray | None:
    """A column's values, the logging step for ``_step``, None where the log lacks it."""
    if column is None:
        return None
    if column == STEP_COLUMN and column not in table.columns:
        return table.step.astype(np.float64)
    if column not in table.columns:
        return None
    if column in table.non_numeric:
        raise ValuedynError(
            f"run log {table.path}: column {column!r} holds a value that is not a number ({table.non_numeric[column]}); "
            "fix the log or map another column"
        )
    return table.columns[column]


# ---------------------------------------------------------------------------
# one run: steps, rates, counts
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Run:
    table: RunTable
    achievements: dict[str, str]
    env_step: np.ndarray = None  # int64 [rows]
    env_step_source: str = ""
    rates: np.ndarray = None  # float [rows, achievements], NaN = not logged; as logged until the unit is chosen
    episodes: np.ndarray = None  # float [rows], NaN = unknown
    episodes_source: str = ""
    means: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # key -> float [rows]
    used: set[str] = dataclasses.field(default_factory=set)  # the keys whose column this run's log holds


def _check_steps(values: np.ndarray, path: Path, what: str) -> None:
    """Strictly increasing, or a one-line error naming the first repeat or step back."""
    if len(values) < 2:
        return
    diff = np.diff(values)
    repeat = np.flatnonzero(diff == 0)
    back = np.flatnonzero(diff < 0)
    if repeat.size and (not back.size or repeat[0] < back[0]):
        row = int(repeat[0]) + 1
        raise ValuedynError(
            f"run log {path}: {what} {values[row]:.0f} is logged twice (rows {row} and {row + 1}); duplicated steps: "
            "keep one row per logging step"
        )
    if back.size:
        row = int(back[0]) + 1
        raise ValuedynError(
            f"run log {path}: {what} goes back from {values[row - 1]:.0f} to {values[row]:.0f} at row {row + 1}; steps must "
            "increase (a restarted run appended to the log? keep one run per file)"
        )


def _env_steps(run: _Run, mapping: ColumnMap, steps_per_update: int) -> None:
    table = run.table
    column = mapping.single["env_step"]
    values = _column(table, column)
    if values is not None:
        finite = np.isfinite(values)
        if not finite.all() or np.any(values != np.round(values)) or np.any(values < 0):
            row = int(np.flatnonzero(~finite | (np.nan_to_num(values) != np.round(np.nan_to_num(values))) | (np.nan_to_num(values) < 0))[0])
            raise ValuedynError(
                f"run log {table.path}: env-step column {column!r} must hold a whole number >= 0 in every row; row {row + 1} "
                f"holds {values[row]}"
            )
        _check_steps(values, table.path, f"env step ({column!r})")
        run.env_step, run.env_step_source = values.astype(np.int64), f"column {column!r}"
        return
    if steps_per_update <= 0:
        raise ValuedynError(
            f"run log {table.path}: the env steps are unknown: the log has no env-step column ({column!r}); pass "
            "--steps-per-update (num_envs x num_steps, e.g. 65536 for 1024 envs x 64 steps) or --columns env_step=COLUMN"
        )
    if table.step.min() < 0:
        raise ValuedynError(f"run log {table.path}: logging step {table.step.min()} is negative; steps count from 0")
    run.env_step = (table.step + 1) * int(steps_per_update)
    run.env_step_source = f"({table.step_source} + 1) x --steps-per-update {steps_per_update}"


def _steps_per_update(run: _Run, flag: int) -> int | None:
    """Env steps per update for the episode estimate: the flag, else the env-step column's
    constant spacing (None where it varies)."""
    if flag > 0:
        return flag
    spacing = np.unique(np.diff(run.env_step))
    return int(spacing[0]) if len(spacing) == 1 else None


def _episodes(run: _Run, mapping: ColumnMap, flag_steps: int, flag_episodes: int) -> None:
    table, column = run.table, mapping.single["episodes"]
    logged = _column(table, column)
    if logged is not None:
        if flag_episodes:
            raise ValuedynError(
                f"run log {table.path} logs the finished episodes per row (column {column!r}) and --episodes-per-update "
                f"{flag_episodes} would override them; drop the flag, or pass --columns episodes= to ignore the column"
            )
        finite = np.isfinite(logged)
        bad = finite & ((logged < 0) | (np.abs(logged - np.round(logged)) > 1e-6))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValuedynError(
                f"run log {table.path}: column {column!r} must count finished episodes (a whole number >= 0); row {row + 1} "
                f"holds {logged[row]}; map the right column with --columns episodes=COLUMN"
            )
        run.episodes = np.where(finite, np.round(logged), np.nan)
        run.episodes_source = f"logged: column {column!r}"
        return
    if flag_episodes > 0:
        run.episodes = np.full(table.rows, float(flag_episodes))
        run.episodes_source = f"given: --episodes-per-update {flag_episodes}"
        return
    length_column = mapping.single["episode_length"]
    length = _column(table, length_column)
    steps = _steps_per_update(run, flag_steps)
    if length is None or steps is None:
        lacking = (f"no episode-length column ({length_column!r}) to estimate it from" if length is None else
                   "the env steps per update are unknown (the env-step column's spacing varies)")
        raise ValuedynError(
            f"run log {table.path}: the finished episodes per update are unknown: no count column ({column!r}) and "
            f"{lacking}; pass --episodes-per-update N, --steps-per-update, or --columns episodes=COLUMN"
        )
    if np.any(np.isfinite(length) & (length <= 0)):
        row = int(np.flatnonzero(np.isfinite(length) & (length <= 0))[0])
        raise ValuedynError(f"run log {table.path}: mean episode length ({length_column!r}) is {length[row]} at row {row + 1}; it must be > 0")
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = np.maximum(np.rint(steps / length), 1.0)
    run.episodes = np.where(np.isfinite(length), estimate, np.nan)
    run.episodes_source = (
        f"estimated: {steps} env steps per update / mean episode length (column {length_column!r}), rounded to the "
        "nearest integer, at least 1 (a steady-state estimate: it overcounts the first updates, while the first "
        "episodes of every environment are still running); rows without a length are masked"
    )


def _read(path: str, config: ImportConfig, mapping: ColumnMap) -> _Run:
    table = read_run(path, config.format)
    _check_steps(table.step.astype(np.float64), table.path, f"step ({table.step_source})")
    achievements = achievement_columns(table, mapping)
    run = _Run(table, achievements)
    run.used = {key for key, column in mapping.single.items() if column is not None and
                (column in table.columns or column == STEP_COLUMN)}
    run.rates = np.stack([_column(table, c) for c in achievements.values()], axis=1)
    for key in ("episode_return", "episode_length") + PPO_KEYS:
        values = _column(table, mapping.single[key])
        if values is not None:
            run.means[key] = np.where(np.isfinite(values), values, np.nan)  # an infinite mean is not a logged value
    _env_steps(run, mapping, config.steps_per_update)
    _episodes(run, mapping, config.steps_per_update, config.episodes_per_update)
    return run


# ---------------------------------------------------------------------------
# all runs: achievements, unit, alignment
# ---------------------------------------------------------------------------


def _same_achievements(runs: list[_Run]) -> list[str]:
    first = runs[0]
    names = list(first.achievements)
    for run in runs[1:]:
        if set(run.achievements) != set(names):
            only_first = sorted(set(names) - set(run.achievements))
            only_this = sorted(set(run.achievements) - set(names))
            raise ValuedynError(
                f"runs log different achievements: {first.table.path.name} has {only_first or 'none'} that "
                f"{run.table.path.name} lacks, which has {only_this or 'none'} that the first lacks; import runs of one "
                "environment and logger together"
            )
        order = [list(run.achievements).index(n) for n in names]
        run.rates = run.rates[:, order]
        run.achievements = {n: run.achievements[n] for n in names}
    return names


def _rate_unit(runs: list[_Run], names: list[str], requested: str) -> tuple[str, str]:
    """Choose the unit, check every rate lies in its range; returns (unit, the printed rule)."""
    finite = [r.rates[np.isfinite(r.rates)] for r in runs]
    largest = max((float(v.max()) for v in finite if v.size), default=float("nan"))
    if math.isnan(largest):
        raise ValuedynError(
            f"the achievement columns of {', '.join(run.table.path.name for run in runs)} hold no value in any row "
            "(all empty or NaN); there are no rates to import"
        )
    if requested == "auto":
        unit = "percent" if largest > 1 else "fraction"
        other = "fraction" if unit == "percent" else "percent"
        rule = (f"rates read as {unit} of the finished episodes (rule: {RATE_UNIT_RULE}; the largest logged rate is "
                f"{largest:g}); --rate-unit {other} overrides")
    else:
        unit, rule = requested, f"rates read as {requested} of the finished episodes (--rate-unit {requested})"
    top = 100.0 if unit == "percent" else 1.0
    for run in runs:
        bad = np.isinf(run.rates) | (np.isfinite(run.rates) & ((run.rates < 0) | (run.rates > top)))
        if bad.any():
            row, column = (int(i) for i in np.argwhere(bad)[0])
            value = run.rates[row, column]
            hint = "--rate-unit percent" if unit == "fraction" and 0 <= value <= 100 else "the achievement column mapping"
            raise ValuedynError(
                f"run log {run.table.path}: rate {value:g} in column {run.achievements[names[column]]!r} at step "
                f"{run.table.step[row]} lies outside [0, {top:g}], the range of {unit}; check {hint}"
            )
        run.rates = run.rates / top
    return unit, rule


def _describe_steps(run: _Run) -> str:
    steps = run.env_step
    spacing = np.unique(np.diff(steps))
    every = f"every {spacing[0]}" if len(spacing) == 1 else f"{len(spacing)} different spacings"
    return f"{run.table.path.name} logs {len(steps)} rows at env steps {steps[0]}..{steps[-1]} ({every})"


def _align(runs: list[_Run], how: str) -> tuple[np.ndarray, str]:
    """The common env-step axis and a note; refuses differing runs under ``exact``."""
    first = runs[0].env_step
    if all(np.array_equal(run.env_step, first) for run in runs[1:]):
        return first, "every run logged the same env steps"
    common = first
    union = first
    for run in runs[1:]:
        common = np.intersect1d(common, run.env_step)
        union = np.union1d(union, run.env_step)
    if how == "exact":
        described = "; ".join(_describe_steps(run) for run in runs)
        raise ValuedynError(
            f"runs logged different env steps ({described}; {len(common)} env steps are common to all); pass --align union "
            "(the rows a run lacks are masked) or --align common (only the env steps every run logged)"
        )
    if how == "common":
        if common.size == 0:
            raise ValuedynError("runs share no logged env step, so --align common keeps nothing; use --align union")
        return common, f"common: the {len(common)} env steps every run logged (of {len(union)} logged by any)"
    return union, f"union: the {len(union)} env steps any run logged; the rows a run did not log are masked"


# ---------------------------------------------------------------------------
# the Dataset
# ---------------------------------------------------------------------------


def _joined(runs: list[_Run], attribute: str) -> str:
    texts = [getattr(run, attribute) for run in runs]
    if len(set(texts)) == 1:
        return texts[0]
    return "; ".join(f"seed {i} ({run.table.path.name}): {text}" for i, (run, text) in enumerate(zip(runs, texts)))


def _build(runs: list[_Run], names: list[str], env_step: np.ndarray, attrs: dict):
    import xarray as xr

    n_seeds, n_updates = len(runs), len(env_step)
    episodes = np.zeros((n_seeds, n_updates), np.int64)
    episodes_seen = np.zeros((n_seeds, n_updates), bool)
    unlocks = np.zeros((n_seeds, n_updates, len(names)), np.int64)
    unlocks_seen = np.zeros_like(unlocks, bool)
    mean_keys = [k for k in ("episode_return", "episode_length") + PPO_KEYS if any(k in run.means for run in runs)]
    means = {k: np.full((n_seeds, n_updates), np.nan) for k in mean_keys}
    for s, run in enumerate(runs):
        rows = np.searchsorted(run.env_step, env_step)
        rows = np.minimum(rows, len(run.env_step) - 1)
        has_row = run.env_step[rows] == env_step
        cols = np.flatnonzero(has_row)
        rows = rows[has_row]
        known = np.isfinite(run.episodes[rows])
        n = np.where(known, run.episodes[rows], 0).astype(np.int64)
        episodes[s, cols], episodes_seen[s, cols] = n, known
        rate = run.rates[rows]
        seen = np.isfinite(rate) & known[:, None]
        counts = np.clip(np.rint(np.where(seen, rate, 0.0) * n[:, None]), 0, n[:, None])
        unlocks[s, cols], unlocks_seen[s, cols] = counts.astype(np.int64), seen
        for key in mean_keys:
            if key in run.means:
                means[key][s, cols] = run.means[key][rows]

    data_vars = {"episodes_finished": (("seed", "update"), episodes),
                 "achievement_unlocks": (("seed", "update", "achievement"), unlocks)}
    observed = {"episodes_finished": episodes_seen, "achievement_unlocks": unlocks_seen}
    for key, per_episode in (("episode_return", "return_sum"), ("episode_length", "length_sum")):
        if key in means:
            seen = np.isfinite(means[key]) & episodes_seen
            total = np.where(seen, means[key], 0.0) * episodes
            data_vars[per_episode] = (("seed", "update"), np.rint(total).astype(np.int64) if per_episode == "length_sum" else total)
            observed[per_episode] = seen
    for key in PPO_KEYS:
        if key in means:
            seen = np.isfinite(means[key])
            data_vars[key] = (("seed", "update"), np.where(seen, means[key], 0.0))
            observed[key] = seen
    for name, seen in observed.items():
        data_vars[name + OBSERVED_SUFFIX] = (data_vars[name][0], seen)
    coords = {
        "seed": np.arange(n_seeds, dtype=np.int64),
        "update": np.arange(1, n_updates + 1, dtype=np.int64),
        "env_step": ("update", env_step.astype(np.int64)),
        "achievement": list(names),
    }
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    ds["env_step"].attrs["description"] = "env steps per seed at the logged row (the end of its update)"
    ds["episodes_finished"].attrs["description"] = f"finished episodes per logged row ({attrs['episodes_source']})"
    ds["achievement_unlocks"].attrs["description"] = "finished episodes that unlocked the achievement: round(logged rate x episodes_finished)"
    for name in observed:
        ds[name + OBSERVED_SUFFIX].attrs["description"] = f"True where the log held the value of {name}; False cells hold 0 and are missing"
    return ds


def _options(config: ImportConfig) -> None:
    if not config.runs:
        raise ValuedynError("valuedyn import needs at least one run log (CSV, JSONL or a TensorBoard folder)")
    for name in ("steps_per_update", "episodes_per_update"):
        if getattr(config, name) < 0:
            raise ValuedynError(f"--{name.replace('_', '-')} must be >= 0 (0: from the log), received {getattr(config, name)}")
    paths = [Path(p).resolve() for p in config.runs]
    if len(set(paths)) != len(paths):
        raise ValuedynError("a run log is named twice; each run (seed) needs its own log")
    if config.out and Path(config.out).resolve() in paths:
        raise ValuedynError(f"--out {config.out} is one of the run logs; choose another --out")


def import_dataset(config: ImportConfig):
    """The trajectory Dataset of ``config``'s runs (validated; nothing written).

    Its attributes record the provenance and every choice made (``rate_unit_rule``,
    ``episodes_source``, ``count_rounding``, ``env_step_source``, ``alignment``);
    ``import_notes`` (JSON list) are the lines ``valuedyn import`` prints.
    """
    from valuedyn import __version__
    from valuedyn._io import git_commit, path_sha256
    from valuedyn.data._schema import validate_trajectory

    _options(config)
    mapping = parse_columns(config.columns)
    runs = [_read(path, config, mapping) for path in config.runs]
    names = _same_achievements(runs)
    unit, rule = _rate_unit(runs, names, config.rate_unit)
    env_step, alignment = _align(runs, config.align)
    formats = sorted({run.table.format for run in runs})
    attrs = {
        "config": config_to_json(config),
        "valuedyn_version": __version__,
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source_format": ",".join(formats),
        "source_files": json.dumps([str(p) for p in config.runs]),
        "source_sha256": json.dumps([path_sha256(p) for p in config.runs]),
        "column_mapping": mapping.to_json(runs[0].achievements, {key for run in runs for key in run.used}),
        "rate_unit": unit,
        "rate_unit_rule": rule,
        "episodes_source": _joined(runs, "episodes_source"),
        "count_rounding": COUNT_ROUNDING,
        "env_step_source": _joined(runs, "env_step_source"),
        "alignment": alignment,
    }
    ds = _build(runs, names, env_step, attrs)
    masked = int((~ds["achievement_unlocks_observed"].values).sum())
    notes = [
        f"{len(runs)} runs ({', '.join(formats)}) -> {len(runs)} seeds x {len(env_step)} updates x {len(names)} achievements; "
        f"parts: unlocks{', returns' if 'return_sum' in ds or 'length_sum' in ds else ''}"
        f"{', ppo' if any(k in ds for k in PPO_KEYS) else ''}",
        rule,
        f"episodes per update: {attrs['episodes_source']}",
        f"env steps: {attrs['env_step_source']}; alignment: {alignment}",
        f"masked (not logged): {masked} of {ds['achievement_unlocks'].size} unlock cells, "
        f"{int((~ds['episodes_finished_observed'].values).sum())} of {ds['episodes_finished'].size} updates",
    ]
    ds.attrs["import_notes"] = json.dumps(notes)
    validate_trajectory(ds, source="imported trajectory")
    return ds


def import_runs(
    runs: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    force: bool = False,
    format: str = "auto",
    columns: Sequence[str] | Mapping[str, str] = (),
    rate_unit: str = "auto",
    steps_per_update: int = 0,
    episodes_per_update: int = 0,
    align: str = "exact",
):
    """Runs logged by another trainer -> a trajectory ``xarray.Dataset`` (``seed`` = run).

    ``runs``: one CSV/JSONL file or TensorBoard folder per seed; ``columns``: overrides of
    :data:`DEFAULT_COLUMNS` (``KEY=COLUMN`` items or a dict); the other options are those of
    ``valuedyn import`` (:class:`ImportConfig`). Writes ``out`` atomically only when given
    (refusing an existing file unless ``force``). Raises :class:`ValuedynError` for bad
    input, before anything is written.
    """
    for name, value, allowed in (("format", format, ("auto",) + FORMATS), ("rate_unit", rate_unit, RATE_UNITS),
                                 ("align", align, ALIGNMENTS)):
        if value not in allowed:
            raise ValuedynError(f"{name} must be one of {', '.join(allowed)}; received {value!r}")
    items = tuple(f"{k}={v or ''}" for k, v in columns.items()) if isinstance(columns, Mapping) else tuple(columns)
    config = ImportConfig(
        runs=tuple(str(r) for r in runs), out=str(out) if out is not None else "", format=format, columns=items,
        rate_unit=rate_unit, steps_per_update=int(steps_per_update), episodes_per_update=int(episodes_per_update),
        align=align, force=force,
    )
    return _import(config)


def _import(config: ImportConfig):
    from valuedyn._io import refuse_overwrite, write_dataset_atomic

    if config.out:
        refuse_overwrite(config.out, config.force)
    ds = import_dataset(config)
    if config.out:
        write_dataset_atomic(ds, config.out)
    return ds


def run_import(config: ImportConfig) -> int:
    """``valuedyn import``: write the trajectory file and print what was chosen."""
    if not config.out:
        raise ValuedynError("--out is required: the trajectory file to write")
    ds = _import(config)
    for line in json.loads(ds.attrs["import_notes"]):
        print(f"valuedyn import: {line}", file=sys.stdout)
    print(f"valuedyn import: wrote {config.out}", file=sys.stdout)
    return 0
