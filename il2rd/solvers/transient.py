"""Time stepping of dc/dt = D lap(c) - k_d c + s - u(c).

implicit  Backward Euler, first order in dt, stable and non-negative at any dt:
          (c' - c)/dt = D lap(c') - k_d c' + s - u(c')
          is a steady problem with decay k_d + 1/dt and secretion s + c/dt, solved by the
          same Newton-Krylov solver (steady.py), warm-started from c.
explicit  Forward Euler, first order. Stable and non-negative when
          dt (D max(-lap) + k_d + max du/dc) <= 1; a requested step above that limit is
          split into equal sub-steps below it (with a 10 % margin), never taken as is.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ..physics import kinetics
from ..physics.grid import Grid
from ..physics.kinetics import FieldCoefficients
from .steady import SolverOptions, solve_steady

STABILITY_MARGIN = 0.9


def explicit_stable_dt(grid: Grid, coef: FieldCoefficients) -> float:
    """Largest forward-Euler step (s) that keeps the scheme stable and non-negative, x 0.9."""
    rate = (
        float(jnp.max(coef.diffusion_um2_per_s)) * grid.max_diagonal()
        + float(jnp.max(coef.decay_per_s))
        + float(jnp.max(coef.exchange_per_s))
        + float(kinetics.max_uptake_slope(coef))
    )
    return STABILITY_MARGIN / rate if rate > 0 else math.inf


def explicit_substeps(grid: Grid, coef: FieldCoefficients, dt: float) -> int:
    """How many equal forward-Euler sub-steps one step of dt seconds needs."""
    return max(1, math.ceil(dt / explicit_stable_dt(grid, coef)))


def implicit_step(c, grid: Grid, coef: FieldCoefficients, dt, options: SolverOptions):
    """One backward-Euler step of dt seconds from c (pM): the root c' of
    -D lap c' + (k_d + 1/dt) c' + u(c') + k_ex (c' - c_target) = s + c/dt, warm-started from c, and
    its NewtonInfo (relative residual against ||s + c/dt + boundary terms||). Also the coupled
    solver's field step (dynamics.py), with that step's coefficients."""
    shifted = coef.replace(
        decay_per_s=coef.decay_per_s + 1.0 / dt,
        secretion_pM_per_s=coef.secretion_pM_per_s + c / dt,
    )
    return solve_steady(grid, shifted, c, options)


def explicit_step(c, grid: Grid, coef: FieldCoefficients, dt):
    return c + dt * kinetics.tendency(c, grid, coef)


def steps_for_interval(interval_s: float, dt_s: float) -> tuple[int, float]:
    """Split an interval into the fewest equal steps no longer than dt: (n, interval / n)."""
    n = max(1, int(np.ceil(interval_s / dt_s - 1e-9)))
    return n, interval_s / n
