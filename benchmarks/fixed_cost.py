"""Benchmark: a fit's fixed cost with and without the persistent compilation cache (issue 31).

1. The package's core case (``benchmarks/core_case.py``: overshoot, 4 seeds x 300 updates,
   default ``valuedyn fit``) fitted in a fresh process with an empty compilation cache
   folder, then in a second fresh process with that folder: both wall times, their ratio
   and each fit's ``timings`` record (where the time went, from the fit file). Goals on 2
   idle cores: the second at most half the first, and under 10 s.
2. With ``--report``: the default report (``valuedyn report`` on the shipped data) fully
   cold (empty fits folder, empty cache folder), then again with its fits folder emptied
   and the cache folder kept: both wall times and the ratio (goal <= 0.6). Many minutes.

Run: ``python benchmarks/fixed_cost.py [--report] [--work DIR]``. Times on a loaded machine
are inflated; the ratio measured in one run is what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENTRY = "import sys; from valuedyn.cli import entry; sys.exit(entry())"


def _run(args: list[str], cache: Path, log: Path) -> float:
    """Wall seconds of ``valuedyn ARGS`` in a fresh process with ``cache`` as its
    compilation cache folder (stdout and stderr to ``log``)."""
    env = dict(os.environ, VALUEDYN_JAX_CACHE=str(cache))
    start = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "-c", ENTRY, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: a --strict miss; still a measured fit
        raise SystemExit(f"valuedyn {' '.join(args[:2])} failed (exit {done.returncode}); see {log}")
    return seconds


def _timings(fit: Path) -> dict:
    from valuedyn.fitting.inference._store import fit_attrs, load_fit

    return fit_attrs(load_fit(fit)).get("timings") or {}


def core_case(work: Path) -> None:
    trajectory = work / "core_case.nc"
    subprocess.run([sys.executable, str(HERE / "core_case.py"), str(trajectory)], check=True, stdout=subprocess.DEVNULL)
    cache = work / "cache_fit"
    shutil.rmtree(cache, ignore_errors=True)
    results = {}
    for name in ("cold", "warm"):
        fit = work / f"fit_{name}.nc"
        args = ["fit", str(trajectory), "--model", "overshoot", "--behaviour", "event:place_plant", "--out", str(fit),
                "--force", "--no-progress"]
        seconds = _run(args, cache, work / f"fit_{name}.log")
        results[name] = (seconds, _timings(fit))
        print(f"core case fit, {name:4s} process ({'empty' if name == 'cold' else 'kept'} cache folder): {seconds:6.1f} s",
              flush=True)
    (cold, cold_t), (warm, warm_t) = results["cold"], results["warm"]
    print(f"ratio warm / cold: {warm / cold:.2f} (goal <= 0.5, and warm < 10 s on 2 idle cores)")
    for name, record in (("cold", cold_t), ("warm", warm_t)):
        if record:
            phases = ", ".join(f"{k} {v:.1f}" for k, v in record["seconds"].items() if v >= 0.05)
            print(f"  {name} timings (s): {phases}; compiling on threads {record['compiling_background']:.1f}; "
                  f"cache misses {record['cache_misses']} of {record['cache_requests']}")
    print(f"  cache folder: {len(os.listdir(cache))} entries, "
          f"{sum(f.stat().st_size for f in cache.iterdir()) / 1e6:.1f} MB")
    (work / "fixed_cost.json").write_text(json.dumps({"core_case": {"cold_s": cold, "warm_s": warm,
                                                                    "cold_timings": cold_t, "warm_timings": warm_t}}))


def report(work: Path) -> None:
    cache = work / "cache_report"
    shutil.rmtree(cache, ignore_errors=True)
    out = work / "report"
    times = {}
    for name in ("cold", "cached"):
        shutil.rmtree(out, ignore_errors=True)  # the fits folder emptied: every fit runs again
        times[name] = _run(["report", "--out", str(out)], cache, work / f"report_{name}.log")
        print(f"default report, {name:6s} ({'empty' if name == 'cold' else 'kept'} compilation cache, no fits): "
              f"{times[name]:7.1f} s", flush=True)
    print(f"ratio cached / cold: {times['cached'] / times['cold']:.2f} (goal <= 0.6)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="also time the default report cold and cached (minutes)")
    parser.add_argument("--work", help="folder for the files (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="valuedyn-fixed-cost-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"files in {work}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    core_case(work)
    if args.report:
        report(work)


if __name__ == "__main__":
    main()
