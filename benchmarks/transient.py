"""Section c: transient throughput, simulated seconds per wall-clock second, from c = 0.

  il2rd explicit  steppers.advance of ForwardEuler at its stability limit
                  dt = 0.9 / (D max(-lap) + k_d + max du/dc)  (explicit_stable_dt)
  il2rd implicit  steppers.advance of BackwardEuler at il2rd's default dt = 10 s (and 60 s),
                  each step a Newton-Krylov solve to rtol 1e-6
  py-pde          EulerSolver (numba, float64) at the same dt as il2rd's explicit: the same
                  scheme has the same stability limit
Each run covers the same simulated interval from c = 0 (the first minutes, when the field builds
up, the part a transient run spends its time on).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import peers
from common import log, scenario, timed, wait_quiet
from il2rd.solvers.steady import SolverOptions
from il2rd.solvers.transient import explicit_stable_dt
from il2rd.solvers.steppers import advance, build

IMPLICIT_DT = (10.0, 60.0)


def run(n: int, interval_s: float, repeats: int, with_pypde: bool) -> dict:
    log(f"[transient] {n}^3, {interval_s:g} simulated s from c = 0")
    rows, notes = [], []
    options = SolverOptions(rtol=1e-6)
    for dtype in (jnp.float32, jnp.float64):
        name = jnp.dtype(dtype).name
        grid, coef = scenario(n, dtype)
        dt = explicit_stable_dt(grid, coef)
        steps = int(np.ceil(interval_s / dt))
        c0 = jnp.zeros(grid.shape, dtype)
        wait_quiet(timeout=20)
        t, _ = timed(advance, build("explicit", coef, grid, options), c0, 0.0, jnp.asarray(dt, dtype), steps, repeats=repeats)
        rows.append(dict(solver="il2rd explicit Euler", dtype=name, dt_s=dt, steps=steps, simulated_s=steps * dt,
                         seconds=t["best_s"], compile_s=t["compile_s"], sim_s_per_wall_s=steps * dt / t["best_s"]))
        for idt in IMPLICIT_DT:
            k = int(np.ceil(interval_s / idt))
            t, (c, info) = timed(advance, build("implicit", coef, grid, options), c0, 0.0, jnp.asarray(idt, dtype), k, repeats=repeats)
            rows.append(dict(solver=f"il2rd implicit Euler (dt {idt:g} s)", dtype=name, dt_s=idt, steps=k, simulated_s=k * idt,
                             seconds=t["best_s"], compile_s=t["compile_s"], sim_s_per_wall_s=k * idt / t["best_s"],
                             cg=int(info.krylov_iterations), converged=bool(info.converged)))
    if with_pypde and peers.available()["py_pde"]:
        grid, coef = scenario(n, jnp.float64)
        dt = explicit_stable_dt(grid, coef)
        steps = int(np.ceil(interval_s / dt))
        prob = peers.PyPDEProblem(grid, coef)
        stepper, solver, compile_s = prob.euler_stepper(dt)
        wait_quiet(timeout=20)
        best = np.inf
        for _ in range(max(1, min(repeats, 2))):
            _, wall, taken = prob.run_steps(stepper, solver, dt, steps)
            best = min(best, wall)
        rows.append(dict(solver="py-pde forward Euler (numba)", dtype="float64", dt_s=dt, steps=int(taken), simulated_s=taken * dt,
                         seconds=best, compile_s=compile_s, sim_s_per_wall_s=taken * dt / best))
    elif with_pypde:
        notes.append("py-pde is not installed here: py-pde row skipped")
    for r in rows:
        log(f"  {r['solver']:<34} {r['dtype']:<8} dt {r['dt_s']:7.3f} s  {r['steps']:5d} steps  {r['seconds']:8.3f} s  "
            f"{r['sim_s_per_wall_s']:10.1f} sim s / wall s")
    return dict(n=n, interval_s=interval_s, rows=rows, notes=notes)
