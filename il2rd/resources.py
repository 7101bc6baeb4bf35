"""How much memory a run needs, and how much this process may use.

A run's peak host memory grows with its lattice as B bytes per voxel on top of a fixed start-up
cost (JAX, XLA's compiled code):

    peak = START_UP_BYTES + n_voxels * (B[solver, precision] + B_attribution + B_closure)   bytes

B was measured with benchmarks/memory.py (the real command at 40^3 and 80^3 voxels, peak resident
memory, B = delta peak / delta voxels), per solver kind and precision, plus what the sub-grid
closure and the source attribution add.

The memory a process may use is the smallest of the machine's physical memory, its cgroup's limit
(containers, systemd, most batch systems) and SLURM's allocation (SLURM_MEM_PER_NODE, or
SLURM_MEM_PER_CPU x the CPUs of the job).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .solvers import kinds

# Bytes per voxel measured with benchmarks/memory.py on the CPU backend (40^3 -> 80^3 voxels,
# 2026-12-01): steady 260 (float32) and ~360 (float64), implicit 396 and 584, explicit 284
# (float32), coupled 414 with its attribution; the attribution adds 25 and the sub-grid closure
# (physics.cell_radius = 4 um) 513 (float32). Entries marked "scaled" were not measured: float64
# from float32 x 1.5, as measured for steady and implicit.
BYTES_PER_VOXEL = {
    ("steady", "float32"): 260, ("steady", "float64"): 360,
    ("implicit", "float32"): 400, ("implicit", "float64"): 590,
    ("explicit", "float32"): 290, ("explicit", "float64"): 430,  # float64 scaled
    ("coupled", "float32"): 390, ("coupled", "float64"): 590,  # float64 scaled
    ("tissue", "float32"): 390, ("tissue", "float64"): 590,  # not measured: taken as coupled (the walk is per cell)
}
ATTRIBUTION_BYTES_PER_VOXEL = {"float32": 25, "float64": 40}  # steady/coupled with output.attribution (float64 scaled)
CLOSURE_BYTES_PER_VOXEL = {"float32": 520, "float64": 780}  # physics.cell_radius: the stencils (float64 scaled)
START_UP_BYTES = 450 * 2**20  # JAX, XLA and Python before the first array (measured: 420 - 550 MiB at 40^3)


def _attributed(solver_kind: str) -> bool:
    """Whether runs of this solver.kind get a source attribution (kinds.SolverKind.attributable; an
    unknown kind, which config refuses later: no)."""
    return solver_kind in kinds.KINDS and kinds.KINDS[solver_kind].attributable


def run_bytes(n_voxels: int, solver_kind: str, precision: str, closure: bool = False, attribution: bool = False) -> int:
    """Estimated peak memory of one run of n_voxels (unknown kinds and precisions: the smallest)."""
    per_voxel = BYTES_PER_VOXEL.get((solver_kind, precision), min(BYTES_PER_VOXEL.values()))
    if attribution and _attributed(solver_kind):
        per_voxel += ATTRIBUTION_BYTES_PER_VOXEL.get(precision, 0)
    if closure:
        per_voxel += CLOSURE_BYTES_PER_VOXEL.get(precision, 0)
    return START_UP_BYTES + n_voxels * per_voxel


def physical_memory_bytes() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def cgroup_limit_bytes(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """This process's cgroup memory limit (v2 memory.max, or v1 memory.limit_in_bytes); None if none."""
    candidates = [root / "memory.max", root / "memory" / "memory.limit_in_bytes"]
    try:  # v2: the process's own cgroup, which may sit below the root
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                candidates.insert(0, root / line[3:].lstrip("/") / "memory.max")
    except OSError:
        pass
    for path in candidates:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        value = int(text)
        return None if value >= 2**60 else value  # v1 writes "no limit" as a huge number
    return None


def slurm_limit_bytes(env=os.environ) -> int | None:
    """SLURM's memory allocation of this job (its variables are in MiB); None outside SLURM."""
    try:
        if env.get("SLURM_MEM_PER_NODE"):
            return int(env["SLURM_MEM_PER_NODE"]) * 2**20
        if env.get("SLURM_MEM_PER_CPU"):
            cpus = int(env.get("SLURM_CPUS_PER_TASK") or env.get("SLURM_CPUS_ON_NODE") or 1)
            return int(env["SLURM_MEM_PER_CPU"]) * cpus * 2**20
    except ValueError:
        return None
    return None


def memory_limit() -> tuple[int, str]:
    """(bytes this process may use, what sets that limit)."""
    limits = [(physical_memory_bytes(), "this machine's physical memory"),
              (cgroup_limit_bytes(), "this process's cgroup limit"),
              (slurm_limit_bytes(), "the SLURM job's allocation")]
    return min(((b, why) for b, why in limits if b is not None), key=lambda x: x[0])


def memory_problem(n_voxels: int, solver_kind: str, precision: str, closure: bool, attribution: bool) -> str | None:
    """Why a run of n_voxels would not fit, with what to try instead (None if it fits)."""
    need = run_bytes(n_voxels, solver_kind, precision, closure, attribution)
    limit, why = memory_limit()
    if need <= limit:
        return None
    tips = ["a smaller grid.shape", "devices.shard=true over several devices"]
    if precision == "float64":
        tips.insert(0, "precision=float32")
    if attribution and _attributed(solver_kind):
        tips.insert(0, "output.attribution=false")
    fits = math.floor((limit - START_UP_BYTES) / max(1, (need - START_UP_BYTES) / n_voxels))
    return (f"has {n_voxels:.3g} voxels; a {solver_kind} run in {precision} needs about {need / 2**30:.3g} GiB "
            f"(measured: benchmarks/memory.py) but {why} is {limit / 2**30:.3g} GiB, enough for about "
            f"{max(fits, 0):.3g} voxels; try {', or '.join(tips)}")
