"""Many points of the default node in one batched command, as a user types it (issue 17: 256
points within 24 GiB):

    il2rd -m 'seed=range(N)' hydra/launcher=il2rd_batched hydra.sweep.dir=DIR output.progress=false

Each point is the default lymph node (128^3 voxels, 1.47 million cells) with its own seed, source
attribution on (the default). Reports the command's wall time, its peak resident memory (the
largest of its processes, from getrusage of the waited-for child), how many points finished
complete (attribute `complete` in each il2rd.h5) and the disk they took. The files go to a
temporary folder and are removed afterwards (about 28 MB per point).

    python benchmarks/default_sweep.py                   # 256 points (about 15 min on 2 cores)
    python benchmarks/default_sweep.py --points 8 --json FILE
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

LIMIT_GIB = 24.0


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=256)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    exe = shutil.which("il2rd") or str(Path(sys.executable).with_name("il2rd"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "sweep"
        command = [exe, "-m", f"seed=range({args.points})", "hydra/launcher=il2rd_batched",
                   f"hydra.sweep.dir={folder}", "output.progress=false"]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
        files = sorted(folder.glob("*/il2rd.h5"))
        complete = 0
        for path in files:
            with h5py.File(path, "r") as f:
                complete += bool(f.attrs.get("complete", False))
        disk_gib = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**30
    shown = ["il2rd", *command[1:4], "hydra.sweep.dir=DIR", *command[5:]]
    result = dict(machine=machine(), command=shlex.join(shown),
                  points=args.points, returncode=done.returncode, complete=complete, wall_s=wall,
                  per_point_s=wall / max(args.points, 1), peak_rss_gib=peak_gib, limit_gib=LIMIT_GIB,
                  disk_gib=disk_gib,
                  stderr_tail=done.stderr.strip().splitlines()[-3:])
    print(f"{args.points} points of the default node, batched: {complete} complete, {wall / 60:.1f} min "
          f"({result['per_point_s']:.1f} s per point), peak RSS {peak_gib:.1f} GiB (limit {LIMIT_GIB:g}), "
          f"{disk_gib:.1f} GiB on disk, exit {done.returncode}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
