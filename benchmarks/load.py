"""Load runs (issue 7, "Load"): a big lattice within the memory budget, and a long sweep with
nothing lost.

    python benchmarks/load.py [big|sweep|all] [--size 256] [--cells 1e6] [--precision float32]
                              [--budget-gib 24] [--runs 500] [--sweep-shape 16] [--launcher basic]
                              [--out DIR] [--keep] [--json FILE]

big    The shipped scenario (three cell types in the shipped proportions, 1 : 10 : 59) on a
       --size^3 lattice of 10 um voxels, with the densities scaled so that the lattice holds
       --cells cells (1e6 on 256^3 = 16.8 mm^3, about 6 % of the voxels occupied), solved to
       steady state on the CPU by il2rd.simulate.run (parse, placement, solve, readouts, HDF5).
       Runs in a child process of its own, whose peak resident set size (ru_maxrss) is the
       number reported and checked against --budget-gib.
sweep  `il2rd -m 'seed=range(N)' grid.shape=[n,n,n] solver.kind=implicit ...`: a Hydra multirun
       of --runs small transient runs (5 snapshots each) through the real command, in one child
       process (Hydra's basic launcher; --launcher il2rd_batched for the vmapped one). Afterwards
       every job's folder must hold a complete il2rd.h5 (complete = True, n_snapshots = 5, the
       job's own seed, all snapshots finite, no il2rd.failed marker): anything else is counted
       as lost.

Prints one JSON document (also written to --json) with the machine, the commands, wall times,
peak memory and the checks; exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 2**30
SHIPPED_DENSITIES = {"il2_producer": 1.0e4, "treg": 1.0e5, "naive_t": 5.9e5}  # cells/mm^3, configs/config.yaml
SWEEP_SNAPSHOTS = ["solver.kind=implicit", "time.end=40", "time.snapshot_every=10", "solver.dt=10"]  # t = 0..40
SWEEP_N_SNAPSHOTS = 5


def machine() -> dict:
    info = dict(python=platform.python_version(), platform=platform.platform(), cpus=os.cpu_count())
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) * 1024 / GIB, 1)
    except OSError:
        pass
    try:
        info["affinity_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    return info


def il2rd_command() -> str:
    beside = Path(sys.executable).parent / "il2rd"
    return str(beside) if beside.is_file() else (shutil.which("il2rd") or "il2rd")


# ------------------------------------------------------------------------------------------- big
def big_overrides(size: int, n_cells: float, precision: str) -> list[str]:
    volume_mm3 = (size * 10.0 / 1000.0) ** 3
    total = sum(SHIPPED_DENSITIES.values())
    densities = {name: n_cells * d / total / volume_mm3 for name, d in SHIPPED_DENSITIES.items()}
    return [f"grid.shape=[{size},{size},{size}]", "grid.spacing=10", f"precision={precision}", "solver.kind=steady",
            "output.progress=false",
            *(f"cell_types.{name}.density={d!r}" for name, d in densities.items())]


def run_big_here(args) -> dict:
    """In this (child) process: one steady run via simulate.run; its wall time and peak RSS."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import h5py
    import jax
    from hydra import compose, initialize_config_dir

    from il2rd.cli import config_dir
    from il2rd.config.schema import register_configs
    from il2rd.simulate import run

    overrides = big_overrides(args.size, args.cells, args.precision)
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    out = Path(args.out) / "big"
    started = time.perf_counter()
    result = run(cfg, output_dir=out)
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
    s = result.summary
    with h5py.File(result.path, "r") as f:
        n_cells = int(f["cells/x"].shape[0])
        complete = bool(f.attrs.get("complete", False))
    report = dict(
        overrides=overrides, device=str(jax.devices()[0]), wall_s=round(wall, 2), peak_rss_gib=round(peak / GIB, 3),
        budget_gib=args.budget_gib, within_budget=peak <= args.budget_gib * GIB, cells=n_cells,
        voxels=args.size**3, complete=complete, file_mib=round(result.path.stat().st_size / 2**20, 1),
        mean_il2_pM=s.mean_il2_pM, max_il2_pM=s.max_il2_pM,
        per_type={t.name: dict(count=t.count, mean_il2_pM=t.mean_il2_pM) for t in s.types},
        balance=dict(secreted=s.secretion_molecules_per_s, taken_up=s.uptake_molecules_per_s,
                     decayed=s.decay_molecules_per_s, outflux=s.boundary_outflux_molecules_per_s),
    )
    report["ok"] = report["within_budget"] and complete and abs(n_cells - args.cells) <= 0.01 * args.cells
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return report


# ----------------------------------------------------------------------------------------- sweep
def check_job(folder: Path, seed: int) -> str | None:
    """None if the job's file is complete, else what is wrong with it."""
    import h5py
    import numpy as np

    if (folder / "il2rd.failed").exists():
        return f"failed: {(folder / 'il2rd.failed').read_text().strip()}"
    path = folder / "il2rd.h5"
    if not path.is_file():
        return "no il2rd.h5"
    try:
        with h5py.File(path, "r") as f:
            n = int(f.attrs["n_snapshots"])
            if not bool(f.attrs.get("complete", False)):
                return f"not complete ({n} snapshots)"
            if n != SWEEP_N_SNAPSHOTS or f["time"].shape[0] < n:
                return f"{n} snapshots, expected {SWEEP_N_SNAPSHOTS}"
            if int(f.attrs["seed"]) != seed:
                return f"seed {int(f.attrs['seed'])}, expected {seed}"
            if not np.all(np.isfinite(f["fields/il2"][:n])):
                return "non-finite field"
    except Exception as err:  # noqa: BLE001 - any failure to read it counts as lost
        return f"unreadable: {err}"
    return None


def run_sweep(args) -> dict:
    n = args.sweep_shape
    sweep_dir = Path(args.out) / "sweep"
    command = [il2rd_command(), "-m", f"seed=range({args.runs})", f"grid.shape=[{n},{n},{n}]", *SWEEP_SNAPSHOTS,
               "output.progress=false", f"hydra.sweep.dir={sweep_dir}"]
    if args.launcher != "basic":
        command.append(f"hydra/launcher={args.launcher}")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.setdefault("JAX_PLATFORMS", "cpu")
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    # Hydra numbers the jobs 0..N-1 in sweep order: job i ran seed=i
    problems = {}
    for seed in range(args.runs):
        problem = check_job(sweep_dir / str(seed), seed)
        if problem:
            problems[seed] = problem
    extra = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
                   and p.name not in {str(i) for i in range(args.runs)}) if sweep_dir.is_dir() else []
    report = dict(
        command=" ".join(command), exit_code=proc.returncode, runs=args.runs, wall_s=round(wall, 1),
        per_run_s=round(wall / args.runs, 3), complete=args.runs - len(problems), lost=len(problems),
        lost_examples=dict(list(problems.items())[:10]), unexpected_folders=extra[:10],
        peak_rss_gib_largest_child=round(children / GIB, 3),
        stderr_tail=proc.stderr[-1500:] if proc.returncode or problems else "",
    )
    report["ok"] = proc.returncode == 0 and not problems
    if not args.keep:
        shutil.rmtree(sweep_dir, ignore_errors=True)
    return report


# ------------------------------------------------------------------------------------------ main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="all", choices=["big", "sweep", "all", "_big_child"])
    parser.add_argument("--size", type=int, default=256, help="lattice edge, voxels (default 256)")
    parser.add_argument("--cells", type=float, default=1e6, help="cells on the lattice (default 1e6)")
    parser.add_argument("--precision", default="float32", choices=["float32", "float64"])
    parser.add_argument("--budget-gib", type=float, default=24.0)
    parser.add_argument("--runs", type=int, default=500, help="runs in the sweep (default 500)")
    parser.add_argument("--sweep-shape", type=int, default=16, help="lattice edge of each sweep run (default 16)")
    parser.add_argument("--launcher", default="basic", help="Hydra launcher of the sweep (basic | il2rd_batched | ...)")
    parser.add_argument("--out", default=None, help="where to write (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the files written")
    parser.add_argument("--json", default=None, help="also write the report here")
    args = parser.parse_args()

    if args.what == "_big_child":  # the big run, alone in this process so that ru_maxrss is its own
        print(json.dumps(run_big_here(args)))
        return 0

    temporary = args.out is None
    args.out = args.out or tempfile.mkdtemp(prefix="il2rd-load-")
    report = dict(machine=machine())
    try:
        if args.what in ("big", "all"):
            child = [sys.executable, __file__, "_big_child", f"--size={args.size}", f"--cells={args.cells}",
                     f"--precision={args.precision}", f"--budget-gib={args.budget_gib}", f"--out={args.out}"]
            if args.keep:
                child.append("--keep")
            env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
            proc = subprocess.run(child, env=env, capture_output=True, text=True)
            if proc.returncode == 0:
                report["big"] = json.loads(proc.stdout.strip().splitlines()[-1])
            else:
                peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
                report["big"] = dict(ok=False, exit_code=proc.returncode, peak_rss_gib=round(peak / GIB, 3),
                                     stderr_tail=proc.stderr[-3000:])
            report["big"]["command"] = " ".join(child)
        if args.what in ("sweep", "all"):
            report["sweep"] = run_sweep(args)
    finally:
        if temporary and not args.keep:
            shutil.rmtree(args.out, ignore_errors=True)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if all(part.get("ok", True) for part in report.values() if isinstance(part, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
