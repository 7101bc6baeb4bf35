"""The default run as a user meets it: `il2rd` with no arguments, the whole process, stage by stage.

Runs the console command in a subprocess (as a user does after install), first with an empty
persistent compilation cache ("cold": every kernel compiled), then again ("warm": read from the
cache), then with the cache off (devices.compilation_cache=false), each in its own output folder.
Reports the process's wall time, the time to import il2rd's command (a separate process), and the
stages the run stores in its file (il2rd/stopwatch.py: set-up, solve, readouts, attribution, write;
JAX tracing and compiling is inside them and also given as its own total). Issue 17's targets:
<= 4 s cold and <= 2.5 s warm on 2 CPU cores.

    python benchmarks/default_run.py                 # writes benchmarks/results/default_run.{json,md}
    python benchmarks/default_run.py --out DIR --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

TARGETS_S = {"cold": 4.0, "warm": 2.5}
STAGES = ("set_up", "solve", "readouts", "attribution", "write", "compile")


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}"


def run_once(folder: Path, cache: Path, *extra: str) -> dict:
    """Wall time of one `il2rd` process and the stage times its file records."""
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache))
    started = time.perf_counter()
    subprocess.run(["il2rd", f"hydra.run.dir={folder}", *extra], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    with h5py.File(folder / "il2rd.h5", "r") as f:
        stages = {name: float(f.attrs.get(f"time_{name}_s", float("nan"))) for name in STAGES}
        run_s = float(f.attrs["wall_time_s"])
    return {"process_s": wall, "run_s": run_s, **{f"{k}_s": v for k, v in stages.items()}}


def import_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import il2rd.cli"], check=True)
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--repeats", type=int, default=1, help="warm runs (the best is reported)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = {"cold": run_once(tmp / "cold", tmp / "cache")}
        warm = [run_once(tmp / f"warm{i}", tmp / "cache") for i in range(args.repeats)]
        rows["warm"] = min(warm, key=lambda r: r["process_s"])
        rows["cache off"] = run_once(tmp / "off", tmp / "cache-unused", "devices.compilation_cache=false")
    result = {"machine": _machine(), "import_s": import_seconds(), "runs": rows, "targets_s": TARGETS_S}
    (out / "default_run.json").write_text(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    lines = [f"# The default run (`il2rd`), whole process: {result['machine']}", "",
             f"Importing il2rd's command alone: {result['import_s']:.2f} s.", "",
             "| run | process (s) | target (s) | met | run in file (s) | " + " | ".join(STAGES) + " |",
             "|---|---|---|---|---|" + "---|" * len(STAGES)]
    for name, r in rows.items():
        target = TARGETS_S.get(name)
        met = "" if target is None else ("yes" if r["process_s"] <= target else f"no, {r['process_s'] / target:.1f}x")
        lines.append(f"| {name} | {r['process_s']:.2f} | {'' if target is None else target} | {met} | {r['run_s']:.2f} | "
                     + " | ".join(f"{r[f'{s}_s']:.2f}" for s in STAGES) + " |")
    lines += ["", "Stages are exclusive (they add up to the run in the file; the process adds imports, Hydra and "
              "start-up); compile is JAX tracing and compiling, inside the other stages."]
    (out / "default_run.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
