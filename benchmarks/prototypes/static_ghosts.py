"""Prototype: il2rd.grid.laplacian with static ghost slices instead of jnp.take(c, jnp.array([i])).

NOT part of il2rd: a measured proposal for the lead developer (issue 6). Run

    python benchmarks/prototypes/static_ghosts.py [--sizes 64 128 256] [--repeats 5]

il2rd.grid._ghosts takes the first/last layer with `jnp.take(c, jnp.array([0]), axis)`. Under jit
that lowers to a gather with a runtime index, which XLA turns into a dynamic-slice plus a
NaN-fill select for out-of-range indices (the index arrays even become loop-carried parameters
of a fori_loop). The fused stencil kernel then computes every neighbour through dynamic index
arithmetic. `lax.slice_in_dim` with the same bounds is a static slice: XLA folds the
concatenate + slice into plain offsets. The results are bitwise identical (checked below).

The drop-in replacement is `laplacian_static` below (same signature and semantics, every
boundary kind); in il2rd it is a two-line change in grid._ghosts:

    first = jax.lax.slice_in_dim(c, 0, 1, axis=axis)
    last = jax.lax.slice_in_dim(c, n - 1, n, axis=axis)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import scenario, timed, wait_quiet  # noqa: E402
from il2rd import grid as grid_mod  # noqa: E402
from il2rd.grid import Grid  # noqa: E402
from il2rd.solvers.krylov import pcg  # noqa: E402
from il2rd import kinetics  # noqa: E402


def _ghosts_static(c, axis: int, kinds, values, homogeneous: bool):
    n = c.shape[axis]
    first = jax.lax.slice_in_dim(c, 0, 1, axis=axis)
    last = jax.lax.slice_in_dim(c, n - 1, n, axis=axis)
    out = []
    for kind, inside, opposite, value in ((kinds[0], first, last, values[0]), (kinds[1], last, first, values[1])):
        if kind == "zero_flux":
            out.append(inside)
        elif kind == "periodic":
            out.append(opposite)
        elif kind == "fixed":
            out.append(-inside if homogeneous else 2.0 * value - inside)
        else:
            raise ValueError(kind)
    return out


def laplacian_static(c, grid: Grid, face_values_pM=None):
    """il2rd.grid.laplacian with static ghost slices (identical arithmetic, same order)."""
    homogeneous = face_values_pM is None
    inv_h2 = 1.0 / grid.spacing_um**2
    total = jnp.zeros_like(c)
    for axis in range(3):
        kinds = grid.axis_boundary(axis)
        if c.shape[axis] == 1 and kinds == ("zero_flux", "zero_flux"):
            continue
        vals = (None, None) if homogeneous else (face_values_pM[2 * axis], face_values_pM[2 * axis + 1])
        lo, hi = _ghosts_static(c, axis, kinds, vals, homogeneous)
        padded = jnp.concatenate([lo, c, hi], axis=axis)
        n = c.shape[axis]
        below = grid_mod.jax_slice(padded, axis, 0, n)
        above = grid_mod.jax_slice(padded, axis, 2, n + 2)
        total = total + (above - 2.0 * c + below) * inv_h2
    return total


def tendency(c, grid, coef, lap):
    return (coef.diffusion_um2_per_s * lap(c, grid, coef.face_values_pM) - coef.decay_per_s * c + coef.secretion_pM_per_s
            - kinetics.uptake_rate(c, coef))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    # identical results on every boundary kind
    rng = np.random.default_rng(0)
    for kinds in (("zero_flux",) * 6, ("fixed",) * 6, ("periodic",) * 6, ("fixed", "zero_flux", "periodic", "periodic", "zero_flux", "fixed")):
        g = Grid((9, 7, 5), 2.0, kinds)
        c = jnp.asarray(rng.random(g.shape))
        fv = jnp.asarray(rng.random(6))
        for faces in (None, fv):
            a = jax.jit(lambda c: grid_mod.laplacian(c, g, faces))(c)
            b = jax.jit(lambda c: laplacian_static(c, g, faces))(c)
            assert np.array_equal(np.asarray(a), np.asarray(b)), kinds
    print("bitwise identical to il2rd.grid.laplacian on zero_flux / fixed / periodic / mixed faces")

    print(f"{'lattice':>8} {'dtype':<8} {'kernel':<30} {'il2rd':>10} {'static':>10} {'gain':>6}")
    for n in args.sizes:
        for dtype in (jnp.float32, jnp.float64):
            grid, coef = scenario(n, dtype)
            dt = jnp.asarray(0.5, dtype)
            steps = max(5, int(2.5e8 // n**3))
            c0 = jnp.ones(grid.shape, dtype)
            b = coef.secretion_pM_per_s
            results = {}
            for name, lap in (("il2rd", grid_mod.laplacian), ("static", laplacian_static)):
                step = jax.jit(lambda c, coef, dt: jax.lax.fori_loop(
                    0, steps, lambda i, c: c + dt * tendency(c, grid, coef, lap), c))
                A = lambda v, lap=lap: -coef.diffusion_um2_per_s * lap(v, grid) + kinetics.jacobian_diagonal(jnp.zeros_like(v), coef) * v  # noqa: E731
                cg = jax.jit(lambda b, A=A: pcg(A, b, lambda r: r, jnp.zeros_like(b), 1e-6 * jnp.linalg.norm(b), 5000))
                wait_quiet(timeout=20)
                t1, _ = timed(step, c0, coef, dt, repeats=args.repeats)
                t2, (x, info) = timed(cg, b, repeats=args.repeats)
                results[name] = (steps * n**3 / t1["best_s"], t2["best_s"] / int(info.iterations))
            for k, label, unit in ((0, "explicit step (Gvox/s)", 1e-9), (1, "plain CG iteration (ms)", 1e3)):
                a, s = results["il2rd"][k] * unit, results["static"][k] * unit
                gain = s / a if k == 0 else a / s
                print(f"{n:>6}^3 {jnp.dtype(dtype).name:<8} {label:<30} {a:10.3f} {s:10.3f} {gain:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
