"""What a run really allocates, per voxel: the table behind il2rd.resources.BYTES_PER_VOXEL.

Each case runs the real `il2rd` command at two lattice sizes in a fresh process and reads its
peak resident memory (getrusage of the child, RUSAGE_CHILDREN's ru_maxrss); the difference over
the difference in voxels is the per-voxel cost, free of JAX's and Python's fixed start-up memory:

    bytes/voxel = (peak(n1^3) - peak(n0^3)) / (n1^3 - n0^3)

    PYTHONPATH=$PWD python benchmarks/memory.py            # all cases, 32^3 and 64^3 (minutes)
    PYTHONPATH=$PWD python benchmarks/memory.py --sizes 48 96 --cases steady/float32

Host memory on the CPU backend (what il2rd.config checks against before a run); on a GPU the
device's own allocator decides, and the batched launcher checks free device memory itself.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = {  # name: overrides (transients short: the arrays, not the number of steps, set the peak)
    "steady/float32": ["solver.kind=steady", "precision=float32"],
    "steady/float64": ["solver.kind=steady", "precision=float64"],
    "steady/float32/no-attribution": ["solver.kind=steady", "precision=float32", "output.attribution=false"],
    "steady/float32/closure": ["solver.kind=steady", "precision=float32", "physics.cell_radius=4"],
    "implicit/float32": ["solver.kind=implicit", "precision=float32", "time.end=60", "time.snapshot_every=30"],
    "implicit/float64": ["solver.kind=implicit", "precision=float64", "time.end=60", "time.snapshot_every=30"],
    "explicit/float32": ["solver.kind=explicit", "precision=float32", "time.end=20", "time.snapshot_every=10"],
    "coupled/float32": ["solver.kind=coupled", "precision=float32", "time.end=60", "time.snapshot_every=30"],
}


def peak_rss_bytes(overrides: list[str], n: int) -> int:
    """Peak resident memory of one `il2rd` run on n^3 voxels, in its own process."""
    exe = shutil.which("il2rd") or str(Path(sys.executable).with_name("il2rd"))
    with tempfile.TemporaryDirectory() as tmp:
        code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        proc = subprocess.run([sys.executable, "-c", code, exe, f"grid.shape=[{n},{n},{n}]", *overrides,
                               "output.progress=false", f"output.dir={tmp}/out", f"hydra.run.dir={tmp}/hydra"],
                              capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        return int(proc.stdout.split()[-1]) * 1024  # ru_maxrss is in KiB on Linux


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=(32, 64))
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    n0, n1 = args.sizes
    results = {}
    for name in args.cases:
        low, high = peak_rss_bytes(CASES[name], n0), peak_rss_bytes(CASES[name], n1)
        per_voxel = (high - low) / (n1**3 - n0**3)
        results[name] = dict(peak_small_MiB=low / 2**20, peak_large_MiB=high / 2**20, bytes_per_voxel=per_voxel)
        print(f"{name:32s} {n0}^3: {low / 2**20:8.1f} MiB  {n1}^3: {high / 2**20:8.1f} MiB  "
              f"{per_voxel:7.0f} bytes/voxel", flush=True)
    if args.json:
        args.json.write_text(json.dumps(dict(sizes=[n0, n1], cases=results), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
