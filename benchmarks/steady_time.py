"""Time to a steady IL-2 field: 1 % sources (10 molecules/s) and 20 % saturating consumers
(Treg-like, 2e4 receptors) on n^3 lattices at 10 um, to solver.rtol, float32 and float64.

    python benchmarks/steady_time.py [--sizes 64 128] [--repeats 3] [--json FILE]

Reports the best of `repeats` warm solves (compilation excluded, reported separately), the
Newton and CG iterations, and the machine. Ratios, not absolute times, are what transfer
between machines. The full suite, with the peers and the hardware limits, is benchmarks/run.py;
the scenario lives in benchmarks/common.py (shared with it).
"""

from __future__ import annotations

import argparse
import json

import jax.numpy as jnp

from common import machine, scenario, timed  # noqa: F401  (scenario re-exported for old callers)
from il2rd.solvers.steady import SolverOptions, steady_field


def measure(n: int, dtype, rtol: float, repeats: int) -> dict:
    grid, coef = scenario(n, dtype)
    t, (c, info) = timed(steady_field, grid, coef, options=SolverOptions(rtol=rtol), repeats=repeats)
    return dict(
        n=n, dtype=jnp.dtype(dtype).name, rtol=rtol, seconds=t["best_s"], first_call_seconds=t["first_s"],
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
    m = machine()
    print(f"machine: {m['cpu']}, {m['cores']} cores, {', '.join(m['jax_devices'])}, jax {m['versions']['jax']}")
    rows = []
    for n in args.sizes:
        for dtype in (jnp.float32, jnp.float64):
            r = measure(n, dtype, args.rtol, args.repeats)
            rows.append(r)
            print(f"{n:>4}^3 {r['dtype']:<8} {r['seconds']:8.3f} s  (first call {r['first_call_seconds']:.2f} s)  "
                  f"Newton {r['newton']:>2}  CG {r['cg']:>4}  residual {r['relative_residual']:.2e}  converged {r['converged']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(machine=m, results=rows), handle, indent=2)


if __name__ == "__main__":
    main()
