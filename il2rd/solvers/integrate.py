"""The one host loop: a stepper (steppers.py) from its first snapshot to its last, in jitted
chunks of at most CHUNK_STEPS steps, with the checks and the observer call in between.

Between chunks: stop on NaN/Inf (naming when and where) and on a nonlinear solve that met neither
of its bounds (saying what helps), move the progress bar, honour a Ctrl-C (interrupts.py). At each
snapshot time: on_snapshot(t_s, state, info=...) with the solver columns of the worst solve since
the previous snapshot. Observers only observe; the physics is all in the stepper.
"""

from __future__ import annotations

import logging
import math

import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from . import steppers
from ..interrupts import interrupt
from ..io.layout import SOLVER_COLUMNS
from .steady import NewtonInfo
from .transient import explicit_stable_dt, steps_for_interval

log = logging.getLogger("il2rd")

CHUNK_STEPS = 64  # time steps per jitted call: the granularity of progress and NaN checks
MANY_SUBSTEPS = 10**6  # a forward-Euler run taking more steps than this is warned about


class SimulationError(RuntimeError):
    """The numerics failed (no convergence, NaN/Inf); snapshots written so far are kept."""


class OutOfMemory(SimulationError):
    """The device or host ran out of memory while solving."""


def check_field(c, when: str, grid) -> None:
    """Stop on NaN/Inf, naming when and where (and which batch member, for a batch)."""
    if bool(jnp.all(jnp.isfinite(c))):
        return
    bad = np.argwhere(~np.isfinite(np.asarray(c)))[0]
    member, bad = (f" in batch member {int(bad[0])}", bad[1:]) if len(bad) == 4 else ("", bad)
    where = (bad + 0.5) * grid.spacing_um
    raise SimulationError(
        f"non-finite IL-2 appeared {when}{member}, first at voxel "
        f"{tuple(int(i) for i in bad)} (x, y, z = {', '.join(f'{w:g}' for w in where)} um)"
    )


def check_solve(info, t: float, options) -> None:
    """Stop on a nonlinear solve that met neither bound (solvers/steady.py), saying why and what helps."""
    if bool(jnp.all(info.converged)):
        return
    worst = int(jnp.argmax(jnp.ravel(jnp.where(info.converged, -jnp.inf, info.backward_error))))
    pick = lambda v: np.ravel(np.asarray(v))[worst]  # noqa: E731  (one member of a batch)
    newton = int(pick(info.newton_iterations))
    if newton >= options.max_newton:
        advice = f"raise solver.max_newton (now {options.max_newton})"
    else:  # the residual stopped falling above both bounds
        advice = (f"the residual stopped falling: raise solver.max_iter (now {options.max_krylov} CG iterations "
                  "per step), or use precision=float64 if the backward error is near the float32 floor")
    raise SimulationError(
        f"the nonlinear solve at t = {t:g} s did not converge: relative residual {float(pick(info.relative_residual)):.3g} "
        f"(solver.rtol = {options.rtol:g}), backward error {float(pick(info.backward_error)):.3g} "
        f"after {newton} Newton steps ({int(pick(info.krylov_iterations))} CG iterations): {advice}"
    )


def solver_columns(info) -> dict:
    """The /solver/* values of a NewtonInfo (io/layout.py SOLVER_COLUMNS); a batch's stay arrays."""
    return {name: np.asarray(getattr(info, name)) for name in SOLVER_COLUMNS}


def integrate(stepper: steppers.Stepper, times_s: list[float], dt_s: float, on_snapshot, *, start=None,
              batched: bool = False, progress: bool = True):
    """Run `stepper` through the snapshot times (s), steps of at most dt_s between them, calling
    on_snapshot(t_s, state, info=solver_columns(...)) at each; returns the last state.

    start: (t_s, state) of a snapshot already written, to continue from (resume): the snapshot
    times after t_s follow. batched: `stepper` is a stack (steppers.stack) and so is its state."""
    grid, options, dtype = stepper.grid, stepper.options, stepper.coef.dtype
    advance = steppers.advance_batch if batched else steppers.advance
    if start is None:
        state, info = (steppers.initialize_batch if batched else steppers.initialize)(stepper, jnp.asarray(times_s[0], dtype))
        check_field(stepper.field(state), f"in the initial state at t = {times_s[0]:g} s" if stepper.kind.transient
                    else "in the steady solve", grid)
        check_solve(info, times_s[0], options)
        on_snapshot(times_s[0], state, info=solver_columns(info))
        interrupt.check()
    else:
        t_start, state = start
        times_s = [t_start] + [t for t in times_s if t > t_start * (1 + 1e-12)]
    if not stepper.kind.transient:
        return state
    # each member's own sub-steps, the most any member needs: the stacked coefficients' maxima
    # combined across members (one's D, another's uptake) would ask for more than any member alone
    members = [steppers.member(stepper, i) for i in range(len(stepper.coef.decay_per_s))] if batched else [stepper]
    bar = tqdm(total=times_s[-1], initial=times_s[0], unit="s sim", disable=not progress, desc=f"il2rd {stepper.kind}",
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s simulated [{elapsed}<{remaining}]")
    try:
        for t0, t1 in zip(times_s[:-1], times_s[1:]):
            n_steps, dt = steps_for_interval(t1 - t0, dt_s)
            sub = max(member.substeps(dt) for member in members)
            if sub > 1 and t0 == times_s[0]:
                total = sub * math.ceil((times_s[-1] - times_s[0]) / dt_s)
                (log.warning if total > MANY_SUBSTEPS else log.info)(
                    "solver.dt = %g s is above the forward-Euler stability limit %.3g s: taking %d sub-steps "
                    "per step, %d in all%s", dt_s, min(explicit_stable_dt(grid, member.coef) for member in members), sub, total,
                    "; solver.kind=implicit has no such limit" if total > MANY_SUBSTEPS else "")
            n_steps, dt = n_steps * sub, dt / sub
            t, done, interval = t0, 0, NewtonInfo.trivial(dtype)
            while done < n_steps:
                n = min(CHUNK_STEPS, n_steps - done)
                state, info = advance(stepper, state, jnp.asarray(t, dtype), jnp.asarray(dt, dtype), n)
                check_field(stepper.field(state), f"between t = {t:g} s and t = {t + n * dt:g} s", grid)
                check_solve(info, t, options)
                t, done, interval = t + n * dt, done + n, interval.worst(info)
                bar.update(n * dt)
                interrupt.check()
            on_snapshot(t1, state, info=solver_columns(interval))
            interrupt.check()
    finally:
        bar.close()
    return state
