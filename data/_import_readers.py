"""Readers of other trainers' logs: one run's log -> one table (``valuedyn import``).

Every reader returns a :class:`RunTable`: the log's numeric columns by name, one row per
logging step, in the order the log holds them, and the logging step of each row.

- CSV (a Weights & Biases run history exported as CSV, or any table with a header row)
  and JSONL (one JSON object per line, the same keys): the step is the column ``_step``
  (W&B's logging step, counted from 0) where the log has it, else the row's position
  (0, 1, ...). A cell that is empty, ``NaN`` or ``null`` is missing, never 0.
- TensorBoard: a run is a folder of event files (``events.out.tfevents.*``, subfolders
  included) or one such file. Each scalar tag is a column and each event's step a row;
  tags logged at different steps leave the other tags' cells missing at that step.
  Scalars written either way are read: TensorFlow 2 / ``tensorboard.summary.Writer``
  (tensors) and PyTorch / tensorboardX (``simple_value``). Needs the optional extra
  ``valuedyn[tensorboard]`` (TensorBoard's own event reader).

A reader checks what only it can see (an unreadable file, an empty log, a step logged
twice for one TensorBoard tag, steps going backwards); the importer checks the rest.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from valuedyn._errors import ValuedynError

FORMATS = ("csv", "jsonl", "tensorboard")

#: the column holding W&B's logging step; TensorBoard's event step is put there too.
STEP_COLUMN = "_step"


@dataclasses.dataclass
class RunTable:
    """One run's log. ``columns``: name -> float64 ``[rows]`` (NaN = not logged), in the
    log's column order; ``step``: int64 ``[rows]`` logging step per row (the ``_step``
    column where the log has one, else the row position); ``step_source`` says which."""

    path: Path
    format: str
    columns: dict[str, np.ndarray]
    step: np.ndarray
    step_source: str
    non_numeric: dict[str, str] = dataclasses.field(default_factory=dict)  # column -> first non-numeric cell

    @property
    def rows(self) -> int:
        return len(self.step)


def detect_format(path: Path, requested: str = "auto") -> str:
    """The format of one run: ``requested`` unless it is ``auto``, else by what ``path`` is."""
    if requested != "auto":
        return requested
    name = path.name.lower()
    if path.is_dir() or "tfevents" in name:
        return "tensorboard"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    raise ValuedynError(
        f"cannot tell the format of {path} from its name; pass --format with one of {', '.join(FORMATS)} "
        "(CSV: *.csv, JSONL: *.jsonl, TensorBoard: a folder of event files)"
    )


def read_run(path: str | Path, format: str = "auto") -> RunTable:
    """Read one run's log (a file, or a TensorBoard folder) into a :class:`RunTable`."""
    path = Path(path)
    if not path.exists():
        raise ValuedynError(f"run log {path} does not exist; check the path")
    fmt = detect_format(path, format)
    if fmt != "tensorboard" and path.is_dir():
        raise ValuedynError(f"run log {path} is a folder; a {fmt} run is one file (a TensorBoard run is a folder: --format tensorboard)")
    reader = {"csv": _read_csv, "jsonl": _read_jsonl, "tensorboard": _read_tensorboard}[fmt]
    table = reader(path)
    if table.rows == 0:
        raise ValuedynError(f"run log {path} is empty: it holds no logged row; check the file (a run still starting?)")
    return table


# ---------------------------------------------------------------------------
# CSV and JSONL: rows of named values
# ---------------------------------------------------------------------------


def _as_number(value) -> float | None:
    """A cell as float (NaN where empty), or None where it is not a number."""
    if value is None or isinstance(value, bool):
        return math.nan if value is None else None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "" or text.lower() in ("nan", "null", "none"):
            return math.nan
        try:
            return float(text)
        except ValueError:
            return None
    return None


def _table_from_records(path: Path, fmt: str, names: list[str], records: list[dict]) -> RunTable:
    columns: dict[str, np.ndarray] = {}
    non_numeric: dict[str, str] = {}
    for name in names:
        values = np.full(len(records), np.nan)
        for row, record in enumerate(records):
            number = _as_number(record.get(name))
            if number is None:
                non_numeric.setdefault(name, f"row {row + 1}: {str(record.get(name))[:40]!r}")
            else:
                values[row] = number
        columns[name] = values
    if STEP_COLUMN in columns:
        raw = columns.pop(STEP_COLUMN)
        finite = np.isfinite(raw)
        bad = np.flatnonzero(~finite | (np.where(finite, raw, 0.0) != np.round(np.where(finite, raw, 0.0))))
        if STEP_COLUMN in non_numeric or bad.size:
            where = non_numeric.get(STEP_COLUMN) or f"row {int(bad[0]) + 1}"
            raise ValuedynError(
                f"run log {path}: column {STEP_COLUMN!r} must hold a whole logging step in every row; {where} does not"
            )
        step, source = raw.astype(np.int64), f"column {STEP_COLUMN!r}"
    else:
        step, source = np.arange(len(records), dtype=np.int64), "row position (the log has no '_step' column)"
    return RunTable(path, fmt, columns, step, source, non_numeric)


def _read_csv(path: Path) -> RunTable:
    import csv

    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = [row for row in reader if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValuedynError(f"cannot read {path} as CSV ({type(err).__name__}: {err}); check the file") from None
    if header is None:
        return RunTable(path, "csv", {}, np.zeros(0, np.int64), "empty")
    header = [h.strip() for h in header]
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise ValuedynError(f"run log {path}: the header names columns {duplicated} twice; each column needs one name")
    for number, row in enumerate(rows, start=2):
        if len(row) > len(header):
            raise ValuedynError(f"run log {path}: line {number} holds {len(row)} cells but the header names {len(header)} columns")
    records = [dict(zip(header, row)) for row in rows]
    return _table_from_records(path, "csv", header, records)


def _read_jsonl(path: Path) -> RunTable:
    records, names = [], {}
    try:
        with open(path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValuedynError(f"run log {path}: line {number} is not JSON ({err.msg}); one JSON object per line") from None
                if not isinstance(record, dict):
                    raise ValuedynError(f"run log {path}: line {number} is a {type(record).__name__}, not a JSON object of named values")
                records.append(record)
                names.update(dict.fromkeys(record))
    except (OSError, UnicodeDecodeError) as err:
        raise ValuedynError(f"cannot read {path} as JSONL ({type(err).__name__}: {err}); check the file") from None
    return _table_from_records(path, "jsonl", list(names), records)


# ---------------------------------------------------------------------------
# TensorBoard: scalar events per tag
# ---------------------------------------------------------------------------


def tensorboard_available() -> bool:
    try:
        import tensorboard.backend.event_processing.event_file_loader  # noqa: F401
    except ImportError:
        return False
    return True


def event_files(path: Path) -> list[Path]:
    """The event files of a TensorBoard run (a folder, searched with its subfolders, or one file)."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*tfevents*") if p.is_file())


def _read_tensorboard(path: Path) -> RunTable:
    if not tensorboard_available():
        raise ValuedynError(
            "reading TensorBoard event files needs the optional extra: pip install 'valuedyn[tensorboard]' "
            "(or export the run's scalars as CSV)"
        )
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    files = event_files(path)
    if not files:
        raise ValuedynError(f"run log {path} holds no TensorBoard event file (events.out.tfevents.*); check the folder")
    series: dict[str, dict[int, float]] = {}
    plugin_of: dict[str, str] = {}  # TF2 writers put a tag's metadata on its first value only
    for file in files:
        try:
            events = list(EventFileLoader(str(file)).Load())
        except Exception as err:  # the loader raises many types for a damaged record
            raise ValuedynError(f"cannot read TensorBoard event file {file} ({type(err).__name__}: {err}); the file is damaged") from None
        for event in events:
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
                    plugin_of.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
                if plugin_of.get(value.tag) != "scalars" or not value.HasField("tensor"):
                    continue  # histograms, images, text: not learning curves
                array = tensor_util.make_ndarray(value.tensor)
                if array.size != 1 or array.dtype.kind not in "iuf":
                    continue
                steps = series.setdefault(value.tag, {})
                if event.step in steps:
                    raise ValuedynError(
                        f"run log {path}: tag {value.tag!r} is logged twice at step {event.step} ({file.name}); duplicated steps "
                        "(a restarted run appending to the same folder?): keep one event file per logging step"
                    )
                if steps and event.step < max(steps):
                    raise ValuedynError(
                        f"run log {path}: tag {value.tag!r} goes back from step {max(steps)} to {event.step} ({file.name}); "
                        "steps must increase (a restarted run?): keep the events of one run"
                    )
                steps[event.step] = float(array.reshape(()))
    all_steps = np.array(sorted({s for steps in series.values() for s in steps}), dtype=np.int64)
    position = {int(s): i for i, s in enumerate(all_steps)}
    columns = {}
    for tag, steps in series.items():
        values = np.full(len(all_steps), np.nan)
        for s, v in steps.items():
            values[position[s]] = v
        columns[tag] = values
    return RunTable(path, "tensorboard", columns, all_steps, "TensorBoard event step")
