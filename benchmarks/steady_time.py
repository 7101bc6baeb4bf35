"""Time to a steady IL-2 field: 1 % sources (10 molecules/s) and 20 % saturating consumers
(Treg-like, 2e4 receptors) on n^3 lattices at 10 um, to solver.rtol, float32 and float64.

    python benchmarks/steady_time.py [--sizes 64 128] [--repeats 3] [--json FILE]

Reports the best of `repeats` warm solves (compilation excluded, reported separately), the
Newton and CG iterations, and the machine. Ratios, not absolute times, are what transfer
between machines.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from il2rd import units  # noqa: E402
from il2rd.grid import Grid  # noqa: E402
from il2rd.kinetics import FieldCoefficients  # noqa: E402
from il2rd.solvers.steady import SolverOptions, steady_field  # noqa: E402


def scenario(n: int, dtype, seed: int = 0, spacing_um: float = 10.0):
    grid = Grid((n, n, n), spacing_um)
    u = np.random.default_rng(seed).random(grid.shape)
    volume = grid.voxel_volume_um3
    secretion = np.where(u < 0.01, units.cell_rate_to_voxel_rate_pM_per_s(10.0, volume), 0.0)
    vmax = np.where((u >= 0.01) & (u < 0.21), units.cell_rate_to_voxel_rate_pM_per_s(1.1e-3 * 2e4, volume), 0.0)
    a = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    coef = FieldCoefficients(a(10.0), a(2.8e-5), a(secretion), a(vmax), a(np.where(vmax > 0, 43.0, 1.0)), a(np.zeros(6)))
    return grid, coef


def measure(n: int, dtype, rtol: float, repeats: int) -> dict:
    grid, coef = scenario(n, dtype)
    options = SolverOptions(rtol=rtol)
    t0 = time.perf_counter()
    c, info = steady_field(grid, coef, options=options)
    c.block_until_ready()
    first = time.perf_counter() - t0
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        c, info = steady_field(grid, coef, options=options)
        c.block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return dict(
        n=n, dtype=jnp.dtype(dtype).name, rtol=rtol, seconds=best, first_call_seconds=first,
        newton=int(info.newton_iterations), cg=int(info.krylov_iterations),
        relative_residual=float(info.relative_residual), converged=bool(info.converged),
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rtol", type=float, default=1e-6)
    p.add_argument("--json")
    args = p.parse_args()
    machine = f"{platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, jax {jax.__version__}"
    print(f"machine: {machine}")
    rows = []
    for n in args.sizes:
        for dtype in (jnp.float32, jnp.float64):
            r = measure(n, dtype, args.rtol, args.repeats)
            rows.append(r)
            print(f"{n:>4}^3 {r['dtype']:<8} {r['seconds']:8.3f} s  (first call {r['first_call_seconds']:.2f} s)  "
                  f"Newton {r['newton']:>2}  CG {r['cg']:>4}  residual {r['relative_residual']:.2e}  converged {r['converged']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(machine=machine, results=rows), handle, indent=2)


if __name__ == "__main__":
    main()
