"""The quasi-steady field: the root of F(c) = -D lap(c) + k_d c + u(c) - s.

Inexact Newton-Krylov. Each Newton step solves J delta = -F(c), with
J = -D lap + diag(k_d + du/dc) symmetric positive definite, by conjugate gradients
preconditioned with one geometric-multigrid V-cycle (multigrid.py; or, by option, the exact
inverse of the mean operator, precond.py), and then clips the
new iterate at c >= 0. Saturating uptake is concave in c, so from c = 0 the Newton iterates
approach the solution from below (up to the tolerance of each linear solve): no overshoot,
no negative field.

Stopping rule: ||F(c)||_2 <= rtol ||F(0)||_2, the relative residual (F(0) = -(s + boundary
terms) is the right-hand side). If that is not reached in max_newton steps, or Newton stops
making progress (STALL_STEPS round-off-sized steps in a row that do not lower the best
residual by 10 %: the round-off floor, e.g. of a large field stored in float32), the returned
info says so, and the caller must not use the field silently.

Derivatives with respect to any coefficient (D, k_d, secretion, receptors, ...) come from the
implicit function theorem through `jax.lax.custom_root`: dc = -J^-1 dF, one extra CG solve,
never differentiating through the Newton iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import grid as grid_mod
from .. import kinetics
from ..grid import Grid
from ..kinetics import FieldCoefficients
from .krylov import linear_solve, pcg
from .multigrid import Multigrid
from .precond import MeanOperatorInverse

PRECONDITIONERS = ("multigrid", "mean_operator")


@dataclass(frozen=True)
class SolverOptions:
    """Static solver settings. rtol: relative residual to reach; max_newton: Newton steps;
    max_krylov: CG iterations per linear solve; forcing: inexact-Newton factor eta (each linear
    solve reduces its residual to eta ||F||, or to what the final tolerance needs);
    preconditioner: one of PRECONDITIONERS."""

    rtol: float = 1e-6
    max_newton: int = 50
    max_krylov: int = 2000
    forcing: float = 0.1
    preconditioner: str = "multigrid"


STALL_STEPS = 3  # consecutive Newton steps without progress before giving up


class NewtonInfo(NamedTuple):
    relative_residual: jax.Array
    newton_iterations: jax.Array
    krylov_iterations: jax.Array
    converged: jax.Array


def _norm(x):
    return jnp.sqrt(jnp.vdot(x, x).real)


def preconditioner(grid: Grid, options: SolverOptions, diffusion_um2_per_s, absorption_per_s):
    """r -> approximately (-D lap + diag(a))^-1 r, a = absorption_per_s (field-shaped, >= 0)."""
    if options.preconditioner == "multigrid":
        return Multigrid.for_grid(grid).preconditioner(diffusion_um2_per_s, absorption_per_s)
    if options.preconditioner == "mean_operator":
        inverse_mean, sigma = MeanOperatorInverse.for_grid(grid), jnp.mean(absorption_per_s)
        return lambda r: inverse_mean(r, diffusion_um2_per_s, sigma)
    raise ValueError(f"preconditioner {options.preconditioner!r}; allowed: {PRECONDITIONERS}")


def _newton(c_init, grid: Grid, coef: FieldCoefficients, options: SolverOptions):
    F = lambda c: kinetics.residual(c, grid, coef)  # noqa: E731
    norm0 = _norm(F(jnp.zeros_like(c_init)))
    target = options.rtol * norm0
    f_init = F(c_init)

    def cond(state):
        _, _, norm, _, it, _, stalls = state
        return (norm > target) & (it < options.max_newton) & (stalls < STALL_STEPS) & jnp.isfinite(norm)

    def body(state):
        c, f, norm, best, it, krylov_its, stalls = state
        absorption = kinetics.jacobian_diagonal(c, coef)
        delta, info = pcg(
            lambda v: kinetics.apply_jacobian(v, c, grid, coef),
            -f,
            preconditioner(grid, options, coef.diffusion_um2_per_s, absorption),
            jnp.zeros_like(c),
            jnp.maximum(options.forcing * norm, 0.5 * target),
            options.max_krylov,
        )
        c_new = jnp.maximum(c + delta, 0.0)
        f_new = F(c_new)
        norm_new = _norm(f_new)
        # Newton's residual need not fall every step on this concave problem, so a step counts
        # as stalled only when it is also tiny (round-off level): several of those in a row
        # mean the residual sits at its round-off floor (e.g. a large field in float32)
        tiny_step = _norm(c_new - c) <= jnp.sqrt(jnp.finfo(c.dtype).eps) * _norm(c_new)
        improved = (norm_new < 0.9 * best) | ~tiny_step
        stalls = jnp.where(improved, 0, stalls + 1)
        best = jnp.minimum(best, norm_new)
        return c_new, f_new, norm_new, best, it + 1, krylov_its + info.iterations, stalls

    norm_init = _norm(f_init)
    state = (c_init, f_init, norm_init, norm_init, jnp.asarray(0), jnp.asarray(0), jnp.asarray(0))
    c, _, norm, _, it, krylov_its, _ = jax.lax.while_loop(cond, body, state)
    relative = norm / jnp.maximum(norm0, jnp.finfo(norm0.dtype).tiny)
    return c, NewtonInfo(relative, it, krylov_its, norm <= target)


def _tangent_solve(g, y, options: SolverOptions, grid: Grid, diffusion):
    """Solve J x = y for the linearised residual g (symmetric) with the Newton solve's
    preconditioner. Its absorption is read off g itself: g(1) + D lap0(1) = k_d + du/dc."""
    ones = jnp.ones_like(y)
    absorption = g(ones) + diffusion * grid_mod.laplacian(ones, grid)
    x, _ = linear_solve(g, y, preconditioner(grid, options, diffusion, absorption), options.rtol, options.max_krylov)
    return x


def solve_steady(grid: Grid, coef: FieldCoefficients, c0=None, options: SolverOptions = SolverOptions()):
    """Steady field c (pM, shape grid.shape) and NewtonInfo. c0: initial guess (default 0)."""
    if c0 is None:
        c0 = jnp.zeros(grid.shape, coef.dtype)

    def newton_with_float_info(f, c_init):
        # custom_root's aux must be floating point (integer/bool aux tangents break JAX's JVP
        # rule, jax-ml/jax#24295); the counts are cast back below
        c, info = _newton(c_init, grid, coef, options)
        return c, tuple(jnp.asarray(v, c.dtype) for v in info)

    c, aux = jax.lax.custom_root(
        lambda c: kinetics.residual(c, grid, coef),
        c0,
        newton_with_float_info,
        lambda g, y: _tangent_solve(g, y, options, grid, jax.lax.stop_gradient(coef.diffusion_um2_per_s)),
        has_aux=True,
    )
    residual, newton_its, krylov_its, converged = aux
    return c, NewtonInfo(residual, newton_its.astype(jnp.int32), krylov_its.astype(jnp.int32), converged > 0.5)


steady_field = jax.jit(solve_steady, static_argnames=("grid", "options"))


@partial(jax.jit, static_argnames=("grid", "options"))
def steady_field_batch(grid: Grid, coef: FieldCoefficients, options: SolverOptions = SolverOptions()):
    """steady_field vmapped over coefficients stacked along a leading batch axis."""
    return jax.vmap(lambda k: solve_steady(grid, k, None, options))(coef)
