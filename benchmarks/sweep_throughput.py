"""Sweep throughput: N parameter points of a steady n^3 scenario, three ways, in one run.

    python benchmarks/sweep_throughput.py [--points 64] [--size 64] [--batch-size 16]
                                          [--process-points 8] [--json FILE]

1. batched:        il2rd.sweep.run_batched, vmapped batches of --batch-size, one process
2. one at a time:  il2rd.simulate.run for each point, one process (compiled once)
3. one process per point: the `il2rd` command per point (JAX start-up and compilation every
   time); measured on --process-points points, reported per point

Each way writes every point's complete il2rd.h5, so the times include building the scenario,
per-cell readouts and HDF5 output, not only the solve; the solve alone is timed too
(vmapped batch against a loop of single solves). Peak memory per batched point: the growth of
peak RSS between batches of 1 and of --batch-size points, each in a fresh process.
The points vary D, Treg receptor number and seed (same shapes, so one batch group).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax


def overrides(n_points: int, size: int) -> list[list[str]]:
    grid = itertools.product([5.0, 10.0, 20.0, 40.0], [3e3, 1e4, 3e4, 1e5], range(max(1, n_points // 16)))
    return [[f"grid.shape=[{size},{size},{size}]", "output.progress=false", f"physics.diffusion={d}",
             f"cell_types.treg.receptors={r}", f"seed={s}"] for d, r, s in itertools.islice(grid, n_points)]


def compose_all(sets):
    from hydra import compose, initialize_config_dir

    from il2rd.cli import config_dir
    from il2rd.config.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return [compose("config", overrides=o) for o in sets]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_rss_mib(n_points: int, size: int, batch_size: int) -> float:
    """Peak RSS of a fresh process that solves n_points as batches of batch_size."""
    code = f"""
import resource, sys, tempfile
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
from sweep_throughput import compose_all, overrides
from il2rd.sweep import run_batched
cfgs = compose_all(overrides({n_points}, {size}))
tmp = Path(tempfile.mkdtemp())
run_batched(cfgs, [tmp / str(i) for i in range(len(cfgs))], batch_size={batch_size}, progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=64)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--process-points", type=int, default=8)
    p.add_argument("--json")
    args = p.parse_args()

    from il2rd import config
    from il2rd.solvers import steppers
    from il2rd.scenario import Scenario
    from il2rd.simulate import run
    from il2rd.sweep import run_batched

    sets = overrides(args.points, args.size)
    cfgs = compose_all(sets)
    tmp = Path(tempfile.mkdtemp())
    machine = f"{cpu_name()}, {jax.device_count()} x {jax.devices()[0].device_kind}, jax {jax.__version__}"
    print(f"machine: {machine}; {args.points} points of a steady {args.size}^3 scenario")

    # warm both code paths (compilation excluded from every timing below)
    run(cfgs[0], tmp / "warm")
    run_batched(cfgs[: args.batch_size], [tmp / "warmb" / str(i) for i in range(args.batch_size)], args.batch_size, False)

    t_batched, _ = timed(lambda: run_batched(cfgs, [tmp / "b" / str(i) for i in range(len(cfgs))], args.batch_size, False))
    t_single, _ = timed(lambda: [run(c, tmp / "s" / str(i)) for i, c in enumerate(cfgs)])

    exe = shutil.which("il2rd") or str(Path(sys.executable).with_name("il2rd"))
    k = min(args.process_points, len(sets))
    t_procs, _ = timed(lambda: [subprocess.run([exe, *o, f"hydra.run.dir={tmp / 'p' / str(i)}"], check=True,
                                               capture_output=True) for i, o in enumerate(sets[:k])])

    # the solve alone: one vmapped batch against a loop of single solves
    scenarios = [Scenario.build(config.parse(c)) for c in cfgs[: args.batch_size]]
    singles = [steppers.for_scenario(s) for s in scenarios]
    stacked = steppers.stack(singles)
    jax.block_until_ready(steppers.initialize_batch(stacked, 0.0))
    t_solve_batch, _ = timed(lambda: jax.block_until_ready(steppers.initialize_batch(stacked, 0.0)))
    t_solve_loop, _ = timed(lambda: [jax.block_until_ready(steppers.initialize(s, 0.0)) for s in singles])

    rss_1 = peak_rss_mib(args.batch_size, args.size, 1)
    rss_b = peak_rss_mib(args.batch_size, args.size, args.batch_size)
    results = dict(
        machine=machine, points=args.points, size=args.size, batch_size=args.batch_size,
        batched_runs_per_s=args.points / t_batched,
        one_at_a_time_runs_per_s=args.points / t_single,
        process_per_point_runs_per_s=k / t_procs,
        solve_only_batched_per_s=args.batch_size / t_solve_batch,
        solve_only_loop_per_s=args.batch_size / t_solve_loop,
        peak_rss_batch_of_1_mib=rss_1, peak_rss_batch_of_n_mib=rss_b,
        peak_mib_per_batched_point=(rss_b - rss_1) / max(args.batch_size - 1, 1),
    )
    r = results
    print(f"batched ({args.batch_size} per batch): {r['batched_runs_per_s']:.2f} runs/s")
    print(f"one at a time, one process:   {r['one_at_a_time_runs_per_s']:.2f} runs/s  "
          f"(batched / this = {r['batched_runs_per_s'] / r['one_at_a_time_runs_per_s']:.2f}x)")
    print(f"one process per point ({k}):  {r['process_per_point_runs_per_s']:.2f} runs/s  "
          f"(batched / this = {r['batched_runs_per_s'] / r['process_per_point_runs_per_s']:.2f}x)")
    print(f"solve only: batch {r['solve_only_batched_per_s']:.2f} /s, loop {r['solve_only_loop_per_s']:.2f} /s "
          f"({r['solve_only_batched_per_s'] / r['solve_only_loop_per_s']:.2f}x)")
    print(f"peak RSS: batch of 1 {rss_1:.0f} MiB, batch of {args.batch_size} {rss_b:.0f} MiB, "
          f"{r['peak_mib_per_batched_point']:.1f} MiB per batched point")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
