"""Prototype: a geometric multigrid V-cycle as the CG preconditioner of il2rd's steady solver.

NOT part of il2rd: a measured proposal for the lead developer (issue 6). Run

    python benchmarks/prototypes/multigrid.py [--n 128] [--dtype float32] [--repeats 3]

It compares, on the benchmark scenario (1 % sources, 20 % saturating consumers) and on lattices
with 1e3 ... 1e6 cells, the current preconditioner (exact inverse of the mean operator, dense
eigenbasis per axis: ~8 matvecs of work per application at 128^3) against this V-cycle, both
inside an exact copy of il2rd's Newton loop (same forcing, same stopping rule, same clipping),
and reports time, Newton / CG iterations and the final relative residual.

The operator at every Newton step is A = -D lap + diag(a(x)), a = k_d + du/dc >= 0.

V-cycle (symmetric, so CG stays valid):
  * levels: halve every axis while all axes are even and the coarse lattice has >= 4 voxels
    per axis; coarse spacing 2h, same boundary kinds (rediscretised, not Galerkin).
  * transfer: restriction R = mean of the 2x2x2 children, prolongation P = 8 R^T
    (piecewise constant), so R = P^T / 8 and the cycle is symmetric.
  * coarse coefficients: a_c = R a (the mean absorption of the children).
  * smoother: `nu` damped-Jacobi sweeps (omega) before and after the coarse correction.
  * coarsest level: the exact inverse of its mean operator (il2rd's MeanOperatorInverse, a
    few tiny dense products), which captures the near-null constant mode of weakly absorbing
    lattices with zero-flux faces.
Everything is jnp, inside the jitted Newton loop: no host round-trips.

Measured on the development machine (AMD EPYC family 26, 2 cores, jax 0.10.2), float32, rtol 1e-6,
same Newton loop, best of 3 (python benchmarks/prototypes/multigrid.py):
  steady, scenario   64^3: mean-op 0.065 s (28 CG)  MG 0.021 s (12 CG)   3.1x
                    128^3: mean-op 0.70 s  (26 CG)  MG 0.27 s  (12 CG)   2.6x (plain CG 0.24 s, 50 CG)
                    256^3: mean-op 11.7 s  (28 CG)  MG 2.15 s  (12 CG)   5.5x; time ~ N^1.11 (mean-op N^1.25)
  steady, 128^3, 1e3 / 1e4 / 1e5 / 1e6 cells: MG 1.3x / 2.0x / 2.2x / 1.9x faster than mean-op;
                    plain CG 3.3x slower / 1.2x slower / 2.2x faster / 3.3x faster (it needs 662 CG
                    iterations at 1e3 cells: only the MG is fast at every cell density)
  float64 128^3 scenario: mean-op 1.23 s, MG 0.54 s, plain CG 0.44 s; linear PCG alone:
                    mean-op 0.89 s, MG 0.34 s, plain 0.30 s (SciPy Jacobi CG 0.65 s)
  implicit Euler 128^3, dt 10 s, 12 steps: il2rd 3.48 s; MG 1.70 s (2.0x); plain CG 0.90 s (3.9x),
                    the shifted operator (k_d + 1/dt) being well conditioned
Known weak spot: with piecewise-constant transfers the V(1,1) cycle needs 25 CG iterations on
weakly absorbing lattices (1e3 cells); linear interpolation or a W-cycle should cut that.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from il2rd import grid as grid_mod  # noqa: E402
from il2rd import kinetics  # noqa: E402
from il2rd.grid import Grid  # noqa: E402
from il2rd.kinetics import FieldCoefficients  # noqa: E402
from il2rd.solvers.krylov import pcg  # noqa: E402
from il2rd.solvers.precond import MeanOperatorInverse  # noqa: E402
from il2rd.solvers.steady import STALL_STEPS, NewtonInfo, SolverOptions, steady_field  # noqa: E402

MIN_COARSE = 4


def _axis_diagonal(n: int, kinds: tuple[str, str]) -> np.ndarray:
    """Diagonal of -d^2/dx^2 (h = 1) on n cell-centred voxels with il2rd's ghost rules."""
    d = np.full(n, 2.0)
    if n == 1:
        return np.array([2.0 * sum(k == "fixed" for k in kinds)])
    for side, kind in enumerate(kinds):
        i = 0 if side == 0 else n - 1
        d[i] += {"zero_flux": -1.0, "fixed": 1.0, "periodic": 0.0}[kind]
    return d


def laplacian_diagonal(grid: Grid, dtype):
    """Diagonal of -lap (1/um^2) as three broadcast 1-D constants (small programs)."""
    parts = [jnp.asarray(_axis_diagonal(n, grid.axis_boundary(a)), dtype) for a, n in enumerate(grid.shape)]
    return (parts[0][:, None, None] + parts[1][None, :, None] + parts[2][None, None, :]) / grid.spacing_um**2


def restrict(r):
    """Mean of the 2x2x2 children, by strided slices (a reshape-and-mean over the 6-D view
    compiles to a strided reduction 16x slower on XLA:CPU)."""
    s = r[0::2] + r[1::2]
    s = s[:, 0::2] + s[:, 1::2]
    return (s[:, :, 0::2] + s[:, :, 1::2]) * 0.125


def prolong(e):
    """Piecewise-constant: every child takes its parent's value (P = 8 R^T)."""
    return jnp.repeat(jnp.repeat(jnp.repeat(e, 2, axis=0), 2, axis=1), 2, axis=2)


def materialise(x):
    """x, written to memory. XLA:CPU otherwise fuses a whole V-cycle level into a few loop
    fusions that recompute each sweep once per stencil neighbour and each restricted residual
    once per child (measured: one V-cycle at 128^3 took 100-260 ms instead of ~15 ms).
    jax.lax.optimization_barrier does not stop that on XLA:CPU (it is expanded before fusion);
    a conditional with a data-dependent predicate is a fusion boundary. Both branches return x
    unless x[0] is NaN, when the field is NaN-poisoned anyway."""
    first = x.reshape(-1)[0]
    return jax.lax.cond(first == first, lambda y: y, lambda y: y * 0, x)


def hierarchy(grid: Grid) -> tuple[Grid, ...]:
    grids = [grid]
    while True:
        g = grids[-1]
        if any(n % 2 or n // 2 < MIN_COARSE for n in g.shape):
            break
        grids.append(Grid(tuple(n // 2 for n in g.shape), 2 * g.spacing_um, g.boundary))
    return tuple(grids)


@dataclass(frozen=True)
class Multigrid:
    """Static V-cycle description (hashable): the grids, sweeps and damping."""

    grids: tuple[Grid, ...]
    nu: int = 1
    omega: float = 0.8

    @classmethod
    def for_grid(cls, grid: Grid, nu: int = 1, omega: float = 0.8) -> "Multigrid":
        return cls(hierarchy(grid), nu, omega)

    def setup(self, diffusion, absorption):
        """Per-level absorption a_l and inverse diagonals, for one operator -D lap + diag(a)."""
        levels = []
        a = absorption
        for level, g in enumerate(self.grids):
            if level:
                a = restrict(a)
            dinv = 1.0 / (diffusion * laplacian_diagonal(g, a.dtype) + a)
            levels.append((a, dinv))
        coarse_inverse = MeanOperatorInverse.for_grid(self.grids[-1])
        return levels, coarse_inverse

    def apply(self, r, diffusion, state):
        levels, coarse_inverse = state

        def op(level, v):
            return -diffusion * grid_mod.laplacian(v, self.grids[level]) + levels[level][0] * v

        def cycle(level, r):
            if level == len(self.grids) - 1:
                return coarse_inverse(r, diffusion, jnp.mean(levels[level][0]))
            keep = materialise
            dinv = levels[level][1]
            x = keep(self.omega * dinv * r)
            for _ in range(self.nu - 1):
                x = keep(x + self.omega * dinv * (r - op(level, x)))
            coarse = cycle(level + 1, keep(restrict(r - op(level, x))))
            x = keep(x + prolong(coarse))
            for _ in range(self.nu):
                x = keep(x + self.omega * dinv * (r - op(level, x)))
            return x

        return cycle(0, r)


def _norm(x):
    return jnp.sqrt(jnp.vdot(x, x).real)


def newton(grid: Grid, coef: FieldCoefficients, options: SolverOptions, precond: str, nu: int = 1, omega: float = 0.8, c_init=None):
    """il2rd.solvers.steady._newton verbatim, with the preconditioner swapped
    ('mg' | 'mean' | 'none' = plain CG)."""
    if c_init is None:
        c_init = jnp.zeros(grid.shape, coef.dtype)
    mg = Multigrid.for_grid(grid, nu, omega)
    inverse_mean = MeanOperatorInverse.for_grid(grid)
    F = lambda c: kinetics.residual(c, grid, coef)  # noqa: E731
    norm0 = _norm(F(jnp.zeros_like(c_init)))
    target = options.rtol * norm0
    f_init = F(c_init)
    D = coef.diffusion_um2_per_s

    def cond(state):
        _, _, norm, _, it, _, stalls = state
        return (norm > target) & (it < options.max_newton) & (stalls < STALL_STEPS) & jnp.isfinite(norm)

    def body(state):
        c, f, norm, best, it, krylov_its, stalls = state
        diagonal = kinetics.jacobian_diagonal(c, coef)
        if precond == "mg":
            mg_state = mg.setup(D, diagonal)
            M = lambda r: mg.apply(r, D, mg_state)  # noqa: E731
        elif precond == "none":
            M = lambda r: r  # noqa: E731
        else:
            sigma = jnp.mean(diagonal)
            M = lambda r: inverse_mean(r, D, sigma)  # noqa: E731
        delta, info = pcg(
            lambda v: kinetics.apply_jacobian(v, c, grid, coef), -f, M, jnp.zeros_like(c),
            jnp.maximum(options.forcing * norm, 0.5 * target), options.max_krylov,
        )
        c_new = jnp.maximum(c + delta, 0.0)
        f_new = F(c_new)
        norm_new = _norm(f_new)
        tiny_step = _norm(c_new - c) <= jnp.sqrt(jnp.finfo(c.dtype).eps) * _norm(c_new)
        improved = (norm_new < 0.9 * best) | ~tiny_step
        stalls = jnp.where(improved, 0, stalls + 1)
        best = jnp.minimum(best, norm_new)
        return c_new, f_new, norm_new, best, it + 1, krylov_its + info.iterations, stalls

    norm_init = _norm(f_init)
    state = (c_init, f_init, norm_init, norm_init, jnp.asarray(0), jnp.asarray(0), jnp.asarray(0))
    c, _, norm, _, it, krylov_its, _ = jax.lax.while_loop(cond, body, state)
    return c, NewtonInfo(norm / norm0, it, krylov_its, norm <= target)


newton_jit = jax.jit(newton, static_argnames=("grid", "options", "precond", "nu", "omega"))


@partial(jax.jit, static_argnames=("grid", "n_steps", "options", "precond"))
def implicit_advance(c, grid: Grid, coef: FieldCoefficients, dt, n_steps: int, options: SolverOptions, precond: str):
    """n_steps backward-Euler steps exactly as il2rd.solvers.transient.implicit_step (decay + 1/dt,
    secretion + c/dt, warm start from c), each solved by the Newton copy above."""

    def step(carry, _):
        c, cg, ok = carry
        shifted = coef.replace(decay_per_s=coef.decay_per_s + 1.0 / dt, secretion_pM_per_s=coef.secretion_pM_per_s + c / dt)
        c, info = newton(grid, shifted, options, precond, c_init=c)
        return (c, cg + info.krylov_iterations, ok & info.converged), None

    (c, cg, ok), _ = jax.lax.scan(step, (c, jnp.asarray(0), jnp.asarray(True)), None, length=n_steps)
    return c, cg, ok


def linear_pcg(grid: Grid, coef: FieldCoefficients, rtol: float, precond: str, nu: int = 1, omega: float = 0.8):
    """One PCG solve of the linear-uptake system A c = s (A = J(0)) to rtol; returns (c, its)."""
    c0 = jnp.zeros(grid.shape, coef.dtype)
    diagonal = kinetics.jacobian_diagonal(c0, coef)
    D = coef.diffusion_um2_per_s
    if precond == "mg":
        mg = Multigrid.for_grid(grid, nu, omega)
        st = mg.setup(D, diagonal)
        M = lambda r: mg.apply(r, D, st)  # noqa: E731
    elif precond == "mean":
        inv = MeanOperatorInverse.for_grid(grid)
        sigma = jnp.mean(diagonal)
        M = lambda r: inv(r, D, sigma)  # noqa: E731
    else:
        M = lambda r: r  # noqa: E731
    b = coef.secretion_pM_per_s
    x, info = pcg(lambda v: kinetics.apply_jacobian(v, c0, grid, coef), b, M, c0, rtol * _norm(b), 20000)
    return x, info.iterations


linear_pcg_jit = jax.jit(linear_pcg, static_argnames=("grid", "rtol", "precond", "nu", "omega"))


def timed(f, *args, repeats=3, **kw):
    t0 = time.perf_counter()
    out = jax.block_until_ready(f(*args, **kw))
    first = time.perf_counter() - t0
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(f(*args, **kw))
        best = min(best, time.perf_counter() - t0)
    return best, first, out


def main():
    from common import cells_scenario, scenario  # benchmarks/common.py

    from il2rd.solvers.transient import advance_jit

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cells", type=float, nargs="*", default=[1e3, 1e4, 1e5, 1e6])
    p.add_argument("--sizes", type=int, nargs="*", default=[64, 128, 256], help="scenario sizes for the scaling comparison")
    p.add_argument("--skip", nargs="*", default=[], choices=["cases", "implicit", "sizes"])
    args = p.parse_args()
    dtype = jnp.dtype(args.dtype)
    options = SolverOptions(rtol=1e-6)
    print(f"{dtype.name}, rtol 1e-6; time best of {args.repeats} warm calls", flush=True)

    def newton_row(label, name, f):
        t, _, (c, info) = timed(f, repeats=args.repeats)
        print(f"{label:<36} {name:<34} {t:8.3f} {int(info.newton_iterations):6d} {int(info.krylov_iterations):5d} "
              f"{float(info.relative_residual):9.1e}", flush=True)
        return t

    if "cases" not in args.skip:
        cases = [(f"{args.n}^3 scenario (1 % src, 20 % cons.)", scenario(args.n, dtype))]
        cases += [(f"{args.n}^3 {int(k):.0e} cells", cells_scenario(args.n, int(k), dtype)) for k in args.cells]
        print(f"{'case':<36} {'solver':<34} {'time s':>8} {'Newton':>6} {'CG':>5} {'residual':>9}")
        for label, (grid, coef) in cases:
            newton_row(label, "il2rd steady_field (mean-op)", lambda: steady_field(grid, coef, options=options))
            newton_row(label, "copy of Newton + mean-op", lambda: newton_jit(grid, coef, options, "mean"))
            newton_row(label, "copy of Newton + plain CG", lambda: newton_jit(grid, coef, options, "none"))
            newton_row(label, "copy of Newton + MG V(1,1)", lambda: newton_jit(grid, coef, options, "mg", 1))
            newton_row(label, "copy of Newton + MG V(2,2)", lambda: newton_jit(grid, coef, options, "mg", 2))
            lin = coef.replace(uptake="linear")
            for pre in ("mean", "none", "mg"):
                t, _, (x, its) = timed(linear_pcg_jit, grid, lin, 1e-6, pre, repeats=args.repeats)
                r = float(_norm(kinetics.residual(x, grid, lin)) / _norm(lin.secretion_pM_per_s))
                print(f"{label:<36} {'linear PCG, precond ' + pre:<34} {t:8.3f} {'-':>6} {int(its):5d} {r:9.1e}", flush=True)

    if "implicit" not in args.skip:
        grid, coef = scenario(args.n, dtype)
        print(f"\nimplicit Euler at {args.n}^3, dt 10 s, 12 steps (120 simulated s) from c = 0, rtol 1e-6 per step")
        c0 = jnp.zeros(grid.shape, dtype)
        dt = jnp.asarray(10.0, dtype)
        t, _, (c_ref, info) = timed(advance_jit, c0, grid, coef, dt, 12, "implicit", options, repeats=args.repeats)
        print(f"  il2rd advance_jit (mean-op)        {t:8.3f} s  CG {int(info.krylov_iterations):5d}  {120 / t:7.1f} sim s / wall s", flush=True)
        for pre in ("mean", "none", "mg"):
            t, _, (c, cg, ok) = timed(implicit_advance, c0, grid, coef, dt, 12, options, pre, repeats=args.repeats)
            diff = float(_norm(c - c_ref) / _norm(c_ref))
            print(f"  copy, precond {pre:<5}               {t:8.3f} s  CG {int(cg):5d}  {120 / t:7.1f} sim s / wall s  "
                  f"|c - il2rd| / |il2rd| = {diff:.1e}  converged {bool(ok)}", flush=True)

    if "sizes" not in args.skip:
        print("\nscaling of the steady solve (scenario)")
        rows = {"mean": [], "mg": []}
        for n in args.sizes:
            grid, coef = scenario(n, dtype)
            for pre in ("mean", "mg"):
                t, _, (c, info) = timed(newton_jit, grid, coef, options, pre, repeats=max(1, args.repeats - 1))
                rows[pre].append(t)
                print(f"  {n:>4}^3 {pre:<5} {t:8.3f} s  Newton {int(info.newton_iterations)} CG {int(info.krylov_iterations)}  "
                      f"residual {float(info.relative_residual):.1e}", flush=True)
        v = np.array(args.sizes, float) ** 3
        for pre, ts in rows.items():
            if len(ts) > 1:
                print(f"  time ~ N^{np.polyfit(np.log(v), np.log(ts), 1)[0]:.2f} ({pre})")


if __name__ == "__main__":
    main()
