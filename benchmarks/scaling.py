"""Section d: time and peak memory of il2rd's steady solve against lattice size and cell count.

Every case runs in its own Python process (`python benchmarks/scaling.py --worker ...`), so its
peak resident memory (ru_maxrss) belongs to that case alone; the process's resident memory after
importing JAX and running one tiny computation (the baseline) is reported beside it. On a GPU the
device's peak_bytes_in_use is reported too.

  size   the scenario (1 % sources, 20 % saturating consumers) on n^3 voxels
  cells  n_cells cells placed by il2rd.cells.placement.place_random on 128^3 voxels (producers : Treg-like
         consumers = 1 : 20), coefficients scattered by il2rd.cells.field_coefficients (that
         host-side setup is timed separately)
Both to relative residual 1e-6, float32 (il2rd's default precision) unless --dtype says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def worker(args):
    from common import cells_scenario, device_peak_mb, peak_rss_mb, scenario, timed  # noqa: F401 (imports JAX)
    import jax.numpy as jnp

    from il2rd.solvers.steady import SolverOptions, steady_field

    jnp.ones(8).block_until_ready()
    baseline = peak_rss_mb()
    dtype = jnp.dtype(args.dtype)
    t0 = time.perf_counter()
    if args.kind == "size":
        grid, coef = scenario(args.n, dtype)
    else:
        grid, coef = cells_scenario(args.n, args.cells, dtype)
    coef.secretion_pM_per_s.block_until_ready()
    setup = time.perf_counter() - t0
    t, (c, info) = timed(steady_field, grid, coef, options=SolverOptions(rtol=args.rtol), repeats=args.repeats)
    out = dict(kind=args.kind, n=args.n, voxels=args.n**3, cells=args.cells, dtype=dtype.name, setup_s=setup, seconds=t["best_s"],
               compile_s=t["compile_s"], newton=int(info.newton_iterations), cg=int(info.krylov_iterations),
               residual=float(info.relative_residual), converged=bool(info.converged), baseline_rss_MB=baseline,
               peak_rss_MB=peak_rss_mb(), device_peak_MB=device_peak_mb(), field_MB=args.n**3 * dtype.itemsize / 2**20)
    print("RESULT " + json.dumps(out), flush=True)


def run_case(kind: str, n: int, cells: int, dtype: str, repeats: int, rtol: float, timeout: float) -> dict:
    from common import log, wait_quiet

    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--kind", kind, "--n", str(n), "--cells", str(cells), "--dtype", dtype,
           "--repeats", str(repeats), "--rtol", str(rtol)]
    wait_quiet(timeout=20)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"  {kind} n={n} cells={cells}: timed out after {timeout:.0f} s")
        return dict(kind=kind, n=n, cells=cells, error=f"timed out after {timeout:.0f} s")
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[7:])
            log(f"  {kind:<5} {n:>4}^3 cells {cells:>8}: {r['seconds']:8.3f} s (setup {r['setup_s']:.2f} s, compile {r['compile_s']:.1f} s) "
                f"Newton {r['newton']} CG {r['cg']}  peak RSS {r['peak_rss_MB']:.0f} MB (baseline {r['baseline_rss_MB']:.0f})")
            return r
    log(f"  {kind} n={n} cells={cells}: failed\n{p.stderr[-2000:]}")
    return dict(kind=kind, n=n, cells=cells, error=p.stderr[-500:])


def fit_exponent(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2:
        return None
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def run(sizes, cells, cells_n: int, dtype: str, repeats: int, rtol: float = 1e-6, timeout: float = 600) -> dict:
    from common import log

    log(f"[scaling] sizes {list(sizes)}, cells {list(cells)} at {cells_n}^3, {dtype}")
    by_size = [run_case("size", n, 0, dtype, repeats, rtol, timeout) for n in sizes]
    by_cells = [run_case("cells", cells_n, int(k), dtype, repeats, rtol, timeout) for k in cells]
    ok = [r for r in by_size if "seconds" in r]
    large = [r for r in ok if r["voxels"] >= 64**3]
    fits = dict(
        time_vs_voxels_all=fit_exponent([r["voxels"] for r in ok], [r["seconds"] for r in ok]),
        time_vs_voxels_from_64=fit_exponent([r["voxels"] for r in large], [r["seconds"] for r in large]),
        memory_increment_vs_voxels_from_64=fit_exponent([r["voxels"] for r in large],
                                                        [max(r["peak_rss_MB"] - r["baseline_rss_MB"], 1e-3) for r in large]),
        cg_iterations_vs_voxels=fit_exponent([r["voxels"] for r in ok], [max(r["cg"], 1) for r in ok]),
    )
    okc = [r for r in by_cells if "seconds" in r]
    fits["time_vs_cells"] = fit_exponent([r["cells"] for r in okc], [r["seconds"] for r in okc])
    log("  fitted exponents: " + ", ".join(f"{k} {v:.2f}" for k, v in fits.items() if v is not None))
    return dict(dtype=dtype, rtol=rtol, cells_n=cells_n, by_size=by_size, by_cells=by_cells, exponents=fits)


def plot(result: dict, path: str, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=80)
    ok = [r for r in result["by_size"] if "seconds" in r]
    okc = [r for r in result["by_cells"] if "seconds" in r]
    ax = axes[0]
    if ok:
        v = np.array([r["voxels"] for r in ok], float)
        t = np.array([r["seconds"] for r in ok])
        m = np.array([r["peak_rss_MB"] - r["baseline_rss_MB"] for r in ok])
        ax.loglog(v, t, "o-", label="steady solve time (s)")
        ref = int(np.argmin(np.abs(v - 64**3)))  # anchor the linear guide at 64^3, where the fit starts
        ax.loglog(v, t[ref] * v / v[ref], "k:", label="slope 1 (linear)")
        ax2 = ax.twinx()
        ax2.loglog(v, np.maximum(m, 1), "s--", color="C1", label="peak RSS above baseline (MB)")
        ax2.set_ylabel("MB", color="C1")
        ax.set_xlabel("voxels")
        ax.set_ylabel("seconds")
        e = result["exponents"]["time_vs_voxels_from_64"]
        ax.set_title(f"lattice size (time ~ N^{e:.2f} from 64^3)" if e else "lattice size")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="upper left")
    ax = axes[1]
    if okc:
        k = np.array([r["cells"] for r in okc], float)
        ax.semilogx(k, [r["seconds"] for r in okc], "o-", label="steady solve (s)")
        ax.semilogx(k, [r["setup_s"] for r in okc], "^-", label="placement + coefficients (s)")
        ax.set_xlabel(f"cells on {result['cells_n']}^3 voxels")
        ax.set_ylabel("seconds")
        ax.set_ylim(bottom=0)
        ax3 = ax.twinx()
        ax3.semilogx(k, [r["cg"] for r in okc], "s--", color="C2", label="CG iterations")
        ax3.set_ylabel("CG iterations", color="C2")
        ax3.set_ylim(bottom=0)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax3.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
        ax.set_title("number of cells")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true")
    p.add_argument("--kind", choices=("size", "cells"), default="size")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--cells", type=int, default=0)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--rtol", type=float, default=1e-6)
    args = p.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if args.worker:
        worker(args)
    else:
        print(json.dumps(run_case(args.kind, args.n, args.cells, args.dtype, args.repeats, args.rtol, 600), indent=1))


if __name__ == "__main__":
    main()
