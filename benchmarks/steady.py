"""Section b: time to a steady field, il2rd against SciPy, py-pde and its own transient solvers.

Problems (the scenario of common.scenario: n^3 voxels of 10 um, zero-flux faces, 1 % sources,
20 % saturating consumers, D = 10 um^2/s, k_d = 2.8e-5 /s), all to relative residual 1e-6:

  nonlinear  F(c) = -D lap c + k_d c + v_max c/(K_M + c) - s = 0   (what il2rd solves)
  linear     A x = b,  A = -D lap + diag(k_d + v_max/K_M),  b = s
             = the linear-uptake scenario = the first Newton system J(0) delta = -F(0) of the
             nonlinear problem. Every linear solver (il2rd PCG, SciPy CG, SciPy direct) gets
             the same A and b, and every answer's residual ||b - A x|| / ||b|| is recomputed
             in float64 with the same SciPy matrix.

il2rd rows: steady_field (Newton-Krylov, multigrid V-cycle preconditioner) on both problems; its
PCG alone (krylov.pcg + one V-cycle per iteration, and + the mean-operator inverse, one solve to
1e-6 each) on the linear one; explicit Euler
(steppers.advance of ForwardEuler) and backward Euler (transient.implicit_step) run from c = 0 until the
steady residual is <= 1e-6, inside one jitted while_loop each.
Peers: SciPy CG (plain and Jacobi) and SuperLU on the linear problem, a SciPy Newton-CG (same
inexact Newton as il2rd, Jacobi CG, float64) on the nonlinear one, py-pde's forward Euler on the
nonlinear PDE (numba backend, float64) for the number of steps il2rd's forward Euler needs at
the same dt (identical scheme, so identical iterates up to round-off; its final residual is
checked).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import peers
from common import log, scenario, timed, wait_quiet
from il2rd.physics import kinetics
from il2rd.solvers import steppers
from il2rd.solvers.krylov import pcg
from il2rd.solvers.multigrid import Multigrid
from il2rd.solvers.precond import MeanOperatorInverse
from il2rd.solvers.steady import SolverOptions, preconditioner, steady_field
from il2rd.solvers.transient import explicit_stable_dt, implicit_step

RTOL = 1e-6
IMPLICIT_DT = (10.0, 100.0)  # s: il2rd's default transient dt, and a longer one
IMPLICIT_STEP_RTOL = 1e-7  # each backward-Euler solve; at 1e-6 (relative to s + c/dt) the steady residual floors at ~1.2e-6
EXPLICIT_CHUNK = 10  # steps between residual checks


def _norm(x):
    return jnp.sqrt(jnp.vdot(x, x).real)


@partial(jax.jit, static_argnames=("grid", "rtol", "kind"))
def il2rd_linear_pcg(grid, coef, rtol, kind="multigrid"):
    """One PCG solve of A x = s, preconditioned as il2rd's Newton does (kind: a preconditioner)."""
    c0 = jnp.zeros(grid.shape, coef.dtype)
    M = preconditioner(grid, SolverOptions(preconditioner=kind), coef.diffusion_um2_per_s, kinetics.jacobian_diagonal(c0, coef))
    b = coef.secretion_pM_per_s
    return pcg(lambda v: kinetics.apply_jacobian(v, c0, grid, coef), b, M, c0, rtol * _norm(b), 20000)


@partial(jax.jit, static_argnames=("grid", "chunk", "max_chunks", "rtol"))
def explicit_to_steady(grid, coef, dt, chunk, max_chunks, rtol):
    f0 = _norm(kinetics.residual(jnp.zeros(grid.shape, coef.dtype), grid, coef))

    def cond(s):
        _, k, r = s
        return (r > rtol) & (k < max_chunks)

    def body(s):
        c, k, _ = s
        c, _ = steppers.advance(steppers.build("explicit", coef, grid, SolverOptions()), c, 0.0, dt, chunk)
        return c, k + 1, _norm(kinetics.residual(c, grid, coef)) / f0

    c, k, r = jax.lax.while_loop(cond, body, (jnp.zeros(grid.shape, coef.dtype), 0, jnp.asarray(jnp.inf, coef.dtype)))
    return c, k * chunk, r


@partial(jax.jit, static_argnames=("grid", "max_steps", "rtol", "options"))
def implicit_to_steady(grid, coef, dt, max_steps, rtol, options):
    f0 = _norm(kinetics.residual(jnp.zeros(grid.shape, coef.dtype), grid, coef))

    def cond(s):
        _, k, r, _, _, _ = s
        return (r > rtol) & (k < max_steps)

    def body(s):
        c, k, _, newton, cg, ok = s
        c, info = implicit_step(c, grid, coef, dt, options)
        return (c, k + 1, _norm(kinetics.residual(c, grid, coef)) / f0, newton + info.newton_iterations,
                cg + info.krylov_iterations, ok & info.converged)

    zero = jnp.zeros((), jnp.int32)
    init = (jnp.zeros(grid.shape, coef.dtype), 0, jnp.asarray(jnp.inf, coef.dtype), zero, zero, jnp.asarray(True))
    return jax.lax.while_loop(cond, body, init)


def cg_profile(n: int, dtype, repeats: int, A=None) -> dict:
    """Where a PCG iteration's time goes: il2rd's matvec (apply_jacobian), its preconditioners
    (multigrid V-cycle, MeanOperatorInverse), one dot product, each timed K times in a jitted fori_loop; SciPy's
    CSR matvec and Jacobi application on the same problem for comparison."""
    grid, coef = scenario(n, dtype, uptake="linear")
    c0 = jnp.zeros(grid.shape, dtype)
    diagonal = kinetics.jacobian_diagonal(c0, coef)
    inverse = MeanOperatorInverse.for_grid(grid)
    sigma = jnp.mean(diagonal)
    K = 20
    kernels = {
        "matvec (apply_jacobian)": lambda v: 0.5 * kinetics.apply_jacobian(v, c0, grid, coef),
        "preconditioner (multigrid V-cycle)": Multigrid.for_grid(grid).preconditioner(coef.diffusion_um2_per_s, diagonal),
        "preconditioner (MeanOperatorInverse)": lambda v: inverse(v, coef.diffusion_um2_per_s, sigma),
        "dot product + scale": lambda v: v * (1.0 / jnp.sqrt(jnp.vdot(v, v))),
    }
    out = dict(n=n, dtype=jnp.dtype(dtype).name)
    v0 = coef.secretion_pM_per_s + 1.0
    for name, f in kernels.items():
        loop = jax.jit(lambda v, f=f: jax.lax.fori_loop(0, K, lambda i, v: f(v), v))
        t, _ = timed(loop, v0, repeats=repeats)
        out[name] = t["best_s"] / K
    if A is not None:
        import time as _time

        Ad = A.astype(np.dtype(jnp.dtype(dtype).name))
        x = np.ones(Ad.shape[0], Ad.dtype)
        dinv = 1.0 / Ad.diagonal()
        for name, f in (("SciPy matvec (CSR)", lambda: Ad @ x), ("SciPy Jacobi application", lambda: dinv * x)):
            best = np.inf
            for _ in range(5):
                t0 = _time.perf_counter()
                f()
                best = min(best, _time.perf_counter() - t0)
            out[name] = best
    log("  profile " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in out.items() if isinstance(v, float)))
    return out


def _row(solver, problem, dtype, t, **extra):
    r = dict(solver=solver, problem=problem, dtype=dtype, seconds=t["best_s"], compile_s=t.get("compile_s"), first_s=t.get("first_s"))
    r.update(extra)
    log(f"  {solver:<44} {problem:<9} {dtype:<8} {t['best_s']:9.4f} s  " + " ".join(f"{k}={v}" for k, v in extra.items() if k not in ("note",)))
    return r


def run_size(n: int, repeats: int, direct_max: int, with_pypde: bool, scipy_repeats: int, implicit_dts=IMPLICIT_DT,
             profile_sizes=(128,)) -> dict:
    log(f"[steady] {n}^3")
    rows = []
    notes = []
    options = SolverOptions(rtol=RTOL)
    have = peers.available()
    A = b = None
    if have["scipy"]:
        _, coef64 = scenario(n, jnp.float64, uptake="linear")
        grid = scenario(n, jnp.float64)[0]
        minus_lap = peers.minus_laplacian(grid)
        A, b = peers.linear_system(grid, coef64, minus_lap)
        err = peers.check_operator(A, grid, coef64)
        notes.append(f"SciPy matrix vs il2rd apply_jacobian: max relative difference {err:.1e}")
    for dtype in (jnp.float32, jnp.float64):
        name = jnp.dtype(dtype).name
        grid, coef = scenario(n, dtype)
        lin = coef.replace(uptake="linear")
        wait_quiet(timeout=20)
        t, (c, info) = timed(steady_field, grid, coef, options=options, repeats=repeats)
        rows.append(_row("il2rd steady_field", "nonlinear", name, t, newton=int(info.newton_iterations), cg=int(info.krylov_iterations),
                         residual=float(info.relative_residual), converged=bool(info.converged)))
        t, (c, info) = timed(steady_field, grid, lin, options=options, repeats=repeats)
        extra = dict(newton=int(info.newton_iterations), cg=int(info.krylov_iterations), residual=float(info.relative_residual),
                     converged=bool(info.converged))
        if A is not None:
            extra["residual_f64"] = peers.relative_residual(A, b, c)
        rows.append(_row("il2rd steady_field", "linear", name, t, **extra))
        for kind, label in (("multigrid", "multigrid V-cycle"), ("mean_operator", "mean-operator preconditioner")):
            t, (x, pinfo) = timed(il2rd_linear_pcg, grid, lin, RTOL, kind, repeats=repeats)
            extra = dict(cg=int(pinfo.iterations))
            if A is not None:
                extra["residual_f64"] = peers.relative_residual(A, b, x)
            rows.append(_row(f"il2rd PCG ({label})", "linear", name, t, **extra))

        # il2rd's transient solvers run to steady state
        dt = jnp.asarray(explicit_stable_dt(grid, coef), dtype)
        max_chunks = 20000 // EXPLICIT_CHUNK
        t, (c, steps, r) = timed(explicit_to_steady, grid, coef, dt, EXPLICIT_CHUNK, max_chunks, RTOL, repeats=repeats)
        rows.append(_row("il2rd explicit Euler to steady", "nonlinear", name, t, dt_s=float(dt), steps=int(steps), residual=float(r),
                         converged=bool(r <= RTOL)))
        if dtype == jnp.float64:
            explicit_steps_f64 = int(steps)
        step_options = SolverOptions(rtol=IMPLICIT_STEP_RTOL)
        for idt in implicit_dts:
            t, (c, k, r, newton, cg, ok) = timed(implicit_to_steady, grid, coef, jnp.asarray(idt, dtype), 2000, RTOL, step_options,
                                                 repeats=repeats)
            rows.append(_row(f"il2rd implicit Euler to steady (dt {idt:g} s)", "nonlinear", name, t, dt_s=idt, steps=int(k),
                             newton=int(newton), cg=int(cg), residual=float(r), converged=bool(r <= RTOL)))

    grid, coef64 = scenario(n, jnp.float64)
    if have["scipy"]:
        wait_quiet(timeout=20)
        for dtype in (np.float32, np.float64):
            for jac in (False, True):
                t, (x, its, info) = timed(peers.cg, A, b, RTOL, jac, dtype, repeats=scipy_repeats, warmup=False)
                rows.append(_row(f"SciPy CG ({'Jacobi' if jac else 'no preconditioner'})", "linear", np.dtype(dtype).name, t, cg=its,
                                 residual_f64=peers.relative_residual(A, b, x), converged=bool(info == 0)))
        if n <= direct_max:
            x, tf, ts, nnz = peers.direct(A, b)
            rows.append(_row("SciPy direct (SuperLU splu)", "linear", "float64", dict(best_s=tf + ts), factor_s=tf, solve_s=ts,
                             nnz_LU=int(nnz), residual_f64=peers.relative_residual(A, b, x)))
        elif direct_max <= 0:
            notes.append("SciPy direct solve skipped (--quick)")
        else:
            notes.append(f"SciPy direct solve skipped at {n}^3 (run only up to {direct_max}^3; SuperLU took 3.6 s and 0.5 GB at 32^3, "
                         "23 s and 2.4 GB at 48^3 on the development machine; its fill grows ~N^1.6, so 64^3 needs minutes and "
                         "~8 GB, 128^3 hours and far more than 24 GB)")
        t, (c, newton, its, rel) = timed(peers.newton_cg, grid, coef64, RTOL, minus_lap=minus_lap, repeats=scipy_repeats, warmup=False)
        rows.append(_row("SciPy Newton-CG (Jacobi), il2rd's Newton", "nonlinear", "float64", t, newton=newton, cg=its, residual=rel,
                         converged=bool(rel <= RTOL)))
    else:
        notes.append("SciPy is not installed here: SciPy rows skipped")

    if with_pypde and have["py_pde"]:
        prob = peers.PyPDEProblem(grid, coef64)
        err = prob.check_rate(lambda c: np.asarray(kinetics.tendency(jnp.asarray(c), grid, coef64)))
        notes.append(f"py-pde evolution rate vs il2rd tendency: max relative difference {err:.1e}")
        dt = explicit_stable_dt(grid, coef64)
        stepper, solver, compile_s = prob.euler_stepper(dt)
        wait_quiet(timeout=20)
        best, data = np.inf, None
        for _ in range(max(1, min(repeats, 2))):
            data, wall, taken = prob.run_steps(stepper, solver, dt, explicit_steps_f64)
            best = min(best, wall)
        r = float(_norm(kinetics.residual(jnp.asarray(data), grid, coef64)) / _norm(kinetics.residual(jnp.zeros(grid.shape), grid, coef64)))
        rows.append(_row("py-pde forward Euler to steady (numba)", "nonlinear", "float64", dict(best_s=best, compile_s=compile_s),
                         dt_s=dt, steps=int(taken), residual=r, converged=bool(r <= RTOL)))
    elif with_pypde:
        notes.append("py-pde is not installed here: py-pde rows skipped")
    profile = []
    if n in profile_sizes:
        profile = [cg_profile(n, d, repeats, A) for d in (jnp.float32, jnp.float64)]
    for note in notes:
        log("  note: " + note)
    return dict(n=n, rows=rows, notes=notes, profile=profile)


def run(sizes, repeats: int, direct_max: int, with_pypde: bool, scipy_repeats: int, implicit_dts=IMPLICIT_DT) -> list[dict]:
    return [run_size(n, repeats, direct_max, with_pypde, scipy_repeats, implicit_dts) for n in sizes]
