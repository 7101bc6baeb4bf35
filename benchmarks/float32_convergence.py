"""How often the default precision converges, and how close it comes to float64 (issue 12 item 1).

Random well-posed steady problems at the shipped solver settings (rtol 1e-6): lattices 12^3 - 32^3
at 5 - 20 um, every boundary kind, one source to 5 % sources, no consumers to 80 % (10 - 3e4
receptors), saturating and linear uptake, D 1 - 100 um^2/s, decay 0 - 1e-3 /s (0 only with fixed
faces or enough consumers). Each is solved in float32 and in float64; the report counts converged
solves and gives the float32 field's error against float64, normwise (max |dc| / max c) and
pointwise where c > 1e-6 max c.

    python benchmarks/float32_convergence.py [--n 200] [--seed 0]
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np

import common  # noqa: F401  (switches x64 on: float32 and float64 side by side)
from il2rd.physics import units
from il2rd.physics.grid import BOUNDARY_KINDS, Grid
from il2rd.physics.kinetics import FieldCoefficients
from il2rd.solvers.steady import SolverOptions, steady_field


def problem(rng):
    n = int(rng.choice([12, 16, 20, 24, 32]))
    h = float(rng.choice([5.0, 10.0, 20.0]))
    boundary = tuple(rng.choice(BOUNDARY_KINDS, 6)) if rng.random() < 0.5 else (str(rng.choice(BOUNDARY_KINDS)),) * 6
    boundary = tuple(str(b) for b in boundary)
    for axis in range(3):  # a periodic face needs its partner periodic too
        if "periodic" in boundary[2 * axis: 2 * axis + 2]:
            boundary = boundary[:2 * axis] + ("periodic", "periodic") + boundary[2 * axis + 2:]
    grid = Grid((n, n, n), h, boundary)
    volume, voxels = h**3, n**3
    secretion, vmax, km = np.zeros(voxels), np.zeros(voxels), np.ones(voxels)
    order = rng.permutation(voxels)
    n_src = 1 if rng.random() < 0.3 else max(1, int(rng.uniform(0.001, 0.05) * voxels))
    n_con = int(rng.choice([0.0, rng.uniform(0.01, 0.8)]) * voxels)
    secretion[order[:n_src]] = units.cell_rate_to_voxel_rate_pM_per_s(10 ** rng.uniform(0, 2.6), volume)
    consumers = order[n_src:n_src + n_con]
    vmax[consumers] = units.cell_rate_to_voxel_rate_pM_per_s(1.1e-3 * 10 ** rng.uniform(1, 4.5), volume)
    km[consumers] = 43.0
    fixed = "fixed" in boundary
    decay = 0.0 if (fixed or n_con > voxels // 10) and rng.random() < 0.3 else 10 ** rng.uniform(-6, -3)
    uptake = str(rng.choice(["saturating", "linear"]))
    if decay == 0.0 and not fixed and uptake == "saturating":
        decay = 2.8e-5  # saturating uptake alone may not remove all the secretion
    faces = np.where(np.asarray(boundary) == "fixed", rng.choice([0.0, 10.0]), 0.0)

    def coefficients(dtype):
        field = lambda a: jnp.asarray(a.reshape(grid.shape), dtype)  # noqa: E731
        return FieldCoefficients(jnp.asarray(10 ** rng_d, dtype), jnp.asarray(decay, dtype), field(secretion),
                                 field(vmax), field(km), jnp.asarray(faces, dtype), uptake=uptake)

    rng_d = rng.uniform(0, 2)
    return grid, coefficients


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    converged = {"float32": 0, "float64": 0}
    normwise, pointwise = [], []
    for _ in range(args.n):
        grid, coefficients = problem(rng)
        fields = {}
        for name, dtype in (("float32", jnp.float32), ("float64", jnp.float64)):
            c, info = steady_field(grid, coefficients(dtype), options=SolverOptions())
            converged[name] += bool(info.converged)
            fields[name] = np.asarray(c, np.float64)
        c32, c64 = fields["float32"], fields["float64"]
        scale = max(c64.max(), 1e-300)
        inside = c64 > 1e-6 * scale
        normwise.append(np.abs(c32 - c64).max() / scale)
        pointwise.append(np.max(np.abs(c32[inside] - c64[inside]) / c64[inside]) if inside.any() else 0.0)
    normwise, pointwise = np.array(normwise), np.array(pointwise)
    print(f"{args.n} random problems (seed {args.seed}): converged float32 {converged['float32']}/{args.n}, "
          f"float64 {converged['float64']}/{args.n}")
    print(f"float32 vs float64, normwise: median {np.median(normwise):.1e}, max {normwise.max():.1e}")
    print(f"float32 vs float64, pointwise where c > 1e-6 max c: median {np.median(pointwise):.1e}, "
          f"max {pointwise.max():.1e}, above 1e-4: {int((pointwise > 1e-4).sum())}")


if __name__ == "__main__":
    main()
