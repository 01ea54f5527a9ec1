"""Where a fit's time goes: :class:`FitTimer` splits one fit's wall-clock seconds into
phases (imports and reading, compiling, MAP and Laplace, warmup, sampling, outputs,
diagnostics, checks, writing) and counts the compilations and persistent-cache hits, for
the fit file's ``timings`` attribute and ``valuedyn fit --verbose``.

Compiling is measured through ``jax.monitoring``: every trace, lowering and backend
compile (a persistent-cache read included) reports its duration. What the fit's main
thread spends on them (or waiting for a kernel compiling on a thread,
:meth:`FitTimer.waiting_for_compile`) is ``compiling`` and is taken out of the phase it
fell in, so the phases add up to the wall time; compiling on other threads, overlapping
the MAP, is ``compiling_background`` (not part of the sum).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time

#: the phases of a fit in the order they run (``compiling`` collects what each of them
#: spent tracing, lowering and compiling on the main thread)
PHASES = ("imports_reading", "compiling", "map_laplace", "warmup", "sampling", "outputs", "diagnostics", "checks",
          "writing")

_TRACE = "/jax/core/compile/jaxpr_trace_duration"
_LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_COMPILE = "/jax/core/compile/backend_compile_duration"
_CACHE_REQUEST = "/jax/compilation_cache/compile_requests_use_cache"
_CACHE_HIT = "/jax/compilation_cache/cache_hits"

_ACTIVE: list = [None]  # the timer of the fit running in this process (one at a time)
_LISTENING = [False]
_LOCK = threading.Lock()


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``), None where unknown: the
    imports before any of the fit's code ran belong to its time too."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = float(fields[19])  # field 22 of stat(5), counted after the command's name
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def _listen() -> None:
    """Register the ``jax.monitoring`` listeners once per process."""
    with _LOCK:
        if _LISTENING[0]:
            return
        _LISTENING[0] = True
    from jax import monitoring

    def on_duration(event, duration, **_):
        timer = _ACTIVE[0]
        if timer is not None and event in (_TRACE, _LOWER, _COMPILE):
            timer._compiled(event, float(duration))

    def on_event(event, **_):
        timer = _ACTIVE[0]
        if timer is not None and event in (_CACHE_REQUEST, _CACHE_HIT):
            timer._counted(event)

    monitoring.register_event_duration_secs_listener(on_duration)
    monitoring.register_event_listener(on_event)


class FitTimer:
    """Wall-clock seconds per phase of one fit (see the module docstring).

    ``since_process_start``: count the process's age at creation as ``imports_reading``
    (a command's fit; the report's in-process fits start their clock at zero)."""

    def __init__(self, since_process_start: bool = False):
        self.seconds = {name: 0.0 for name in PHASES}
        self.compiling_background = 0.0
        self.compiles = 0  # backend compiles (persistent-cache reads included)
        self.cache_requests = 0
        self.cache_hits = 0
        self._main = threading.main_thread() if since_process_start else threading.current_thread()
        self._compiling_main = 0.0  # main-thread compiling so far
        self._start = time.perf_counter()
        age = process_age() if since_process_start else None
        self._offset = age or 0.0
        self._phase_start = self._start
        self.seconds["imports_reading"] = self._offset
        self.last: dict | None = None  # the latest record()

    # ------------------------------------------------------------------ recording
    def _compiled(self, event: str, duration: float) -> None:
        with _LOCK:
            if event == _COMPILE:
                self.compiles += 1
            if threading.current_thread() is self._main:
                self._compiling_main += duration
            else:
                self.compiling_background += duration

    def _counted(self, event: str) -> None:
        with _LOCK:
            if event == _CACHE_REQUEST:
                self.cache_requests += 1
            else:
                self.cache_hits += 1

    @contextlib.contextmanager
    def waiting_for_compile(self):
        """The main thread waits here for a kernel compiling on another thread: count it
        as compiling."""
        start = time.perf_counter()
        try:
            yield
        finally:
            with _LOCK:
                self._compiling_main += time.perf_counter() - start

    def mark(self, phase: str) -> None:
        """End the phase that was running (its seconds, less the main thread's compiling
        inside it, go to ``phase``) and start the next."""
        now = time.perf_counter()
        with _LOCK:
            compiling, self._compiling_main = self._compiling_main, 0.0
        self.seconds["compiling"] += compiling
        self.seconds[phase] += max(0.0, now - self._phase_start - compiling)
        self._phase_start = now

    # ------------------------------------------------------------------ results
    def record(self) -> dict:
        """``{"seconds": phase -> s (rounded to ms), "total": s, "compiling_background": s,
        "compiles": n, "cache_requests": n, "cache_misses": n}``: what the fit file stores."""
        self.mark("imports_reading")
        seconds = {name: round(value, 3) for name, value in self.seconds.items()}
        self.last = {
            "seconds": seconds,
            "total": round(sum(self.seconds.values()), 3),
            "compiling_background": round(self.compiling_background, 3),
            "compiles": self.compiles,
            "cache_requests": self.cache_requests,
            "cache_misses": self.cache_requests - self.cache_hits,
        }
        return self.last


@contextlib.contextmanager
def timing(since_process_start: bool = False):
    """Make a :class:`FitTimer` the active one for the block (nested calls reuse the outer);
    the fit's code :func:`mark`\ s the end of each phase."""
    if _ACTIVE[0] is not None:
        yield _ACTIVE[0]
        return
    _listen()
    timer = FitTimer(since_process_start)
    _ACTIVE[0] = timer
    try:
        yield timer
    finally:
        _ACTIVE[0] = None


def active() -> FitTimer | None:
    """The timer of the fit running now, if any."""
    return _ACTIVE[0]


def mark(phase: str) -> None:
    """:meth:`FitTimer.mark` of the active timer; nothing without one."""
    timer = _ACTIVE[0]
    if timer is not None:
        timer.mark(phase)


@contextlib.contextmanager
def waiting_for_compile():
    timer = _ACTIVE[0]
    if timer is None:
        yield
        return
    with timer.waiting_for_compile():
        yield


def format_timings(record: dict) -> str:
    """One line of a fit's ``timings`` record (:meth:`FitTimer.record`), for ``--verbose``."""
    parts = [f"{name.replace('_', ' ')} {value:.1f} s" for name, value in record["seconds"].items() if value >= 0.05]
    return (f"time: {record['total']:.1f} s: " + ", ".join(parts)
            + f" (+ {record['compiling_background']:.1f} s compiling on threads; {record['compiles']} compiles, "
              f"{record['cache_misses']} of {record['cache_requests']} missed the persistent cache)")


def timings_json(record: dict) -> str:
    return json.dumps(record)
