"""The quasi-steady field: the root of F(c) = -D lap(c) + k_d c + u(c) - s.

Inexact Newton-Krylov. Each Newton step solves J delta = -F(c), with
J = -D lap + diag(k_d + du/dc) symmetric positive definite, by conjugate gradients
preconditioned with one geometric-multigrid V-cycle (multigrid.py; or, by option, the exact
inverse of the mean operator, precond.py), and then clips the
new iterate at c >= 0. Saturating uptake is concave in c, so from c = 0 the Newton iterates
approach the solution from below (up to the tolerance of each linear solve): no overshoot,
no negative field.

Stopping rule: Newton runs until the relative residual ||F(c)||_2 <= rtol ||F(0)||_2 (F(0) =
-(s + boundary and exchange terms) is the right-hand side), or until it stalls (STALL_STEPS
round-off-sized steps in a row that do not lower the best residual by 10 %), or for max_newton
steps. It has converged if the relative residual met rtol, or if the normwise backward error

    eta = ||F(c)||_2 / (||J||_inf ||c||_2 + ||F(0)||_2) <= ROUNDOFF_ULPS eps

says it stopped at the working precision's round-off floor (Rigal & Gaches 1967; Higham,
Accuracy and Stability of Numerical Algorithms, ch. 7): c is then the exact solution of a problem
whose operator and right-hand side differ from the given ones by a few units of round-off, and
no field stored in that precision does better. The floor matters in float32: rounding a large,
smooth field to float32 alone leaves ||F|| ~ eps ||J|| ||c||, far above 1e-6 ||F(0)|| when
sources are few and consumers weak, so the relative residual alone rejected the easiest problems
while their fields agreed with float64 to 1e-7. The floor is a verdict, never a reason to stop
early: a smooth error can hide below eps ||J|| ||c|| (measured: 5e-4 in a dense tissue), so
Newton goes on while it still makes progress. ||J||_inf = D max row sum of -lap + max(k_d +
du/dc + k_ex) bounds the 2-norm of the symmetric J from above and is tight on large lattices.
Norms are taken of x / max|x|, so no square overflows float32. A solve that stops otherwise
(max_newton, or a stall above the floor) reports converged False, and the caller must not use the
field silently.

Derivatives with respect to any coefficient (D, k_d, secretion, receptors, ...) come from the
implicit function theorem through `jax.lax.custom_root`: dc = -J^-1 dF, one extra CG solve,
never differentiating through the Newton iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..compilation import jit
from ..physics import grid as grid_mod, kinetics
from ..physics.grid import Grid
from ..physics.kinetics import FieldCoefficients
from .krylov import linear_solve, norm, pcg
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
# The round-off floor of the backward error, in units of the precision's eps. Measured where float32
# Newton stalls: eta = 0.12 - 0.5 eps (sparse and dense tissue, one source, random problems);
# 4 eps leaves room and is still 5e-7 in float32.
ROUNDOFF_ULPS = 4.0


class NewtonInfo(NamedTuple):
    """How a nonlinear solve ended. relative_residual: ||F(c)|| / ||F(0)||; backward_error:
    ||F(c)|| / (||J|| ||c|| + ||F(0)||) (module docstring); converged: either met its bound."""

    relative_residual: jax.Array
    backward_error: jax.Array
    newton_iterations: jax.Array
    krylov_iterations: jax.Array
    converged: jax.Array

    @classmethod
    def trivial(cls, dtype) -> "NewtonInfo":
        """The info of a step that solved nothing (an explicit step): exact, no iterations."""
        zero, none = jnp.zeros((), dtype), jnp.asarray(0, jnp.int32)
        return cls(zero, zero, none, none, jnp.asarray(True))

    def worst(self, other: "NewtonInfo") -> "NewtonInfo":
        """The combined info of two solves: worst accuracy, most Newton steps of either, CG
        iterations added up, converged only if both did."""
        return NewtonInfo(jnp.maximum(self.relative_residual, other.relative_residual),
                          jnp.maximum(self.backward_error, other.backward_error),
                          jnp.maximum(self.newton_iterations, other.newton_iterations),
                          self.krylov_iterations + other.krylov_iterations,
                          self.converged & other.converged)


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
    norm0 = norm(F(jnp.zeros_like(c_init)))
    floor = ROUNDOFF_ULPS * jnp.finfo(c_init.dtype).eps
    laplacian_norm = coef.diffusion_um2_per_s * grid.laplacian_norm_inf()

    def scale(c):  # ||J(c)||_inf ||c|| + ||F(0)||, the backward error's denominator
        return (laplacian_norm + jnp.max(kinetics.jacobian_diagonal(c, coef))) * norm(c) + norm0

    target = options.rtol * norm0

    def cond(state):
        _, _, res, _, it, _, stalls = state
        return (res > target) & (it < options.max_newton) & (stalls < STALL_STEPS) & jnp.isfinite(res)

    def body(state):
        c, f, res, best, it, krylov_its, stalls = state
        absorption = kinetics.jacobian_diagonal(c, coef)
        delta, info = pcg(
            lambda v: kinetics.apply_jacobian(v, c, grid, coef),
            -f,
            preconditioner(grid, options, coef.diffusion_um2_per_s, absorption),
            jnp.zeros_like(c),
            jnp.maximum(options.forcing * res, 0.5 * target),
            options.max_krylov,
        )
        c_new = jnp.maximum(c + delta, 0.0)
        f_new = F(c_new)
        res_new = norm(f_new)
        # Newton's residual need not fall every step on this concave problem, so a step counts
        # as stalled only when it is also tiny (round-off level): several of those in a row
        # mean the residual sits at its round-off floor
        tiny_step = norm(c_new - c) <= jnp.sqrt(jnp.finfo(c.dtype).eps) * norm(c_new)
        improved = (res_new < 0.9 * best) | ~tiny_step
        stalls = jnp.where(improved, 0, stalls + 1)
        best = jnp.minimum(best, res_new)
        return c_new, f_new, res_new, best, it + 1, krylov_its + info.iterations, stalls

    f_init = F(c_init)
    res_init = norm(f_init)
    state = (c_init, f_init, res_init, res_init, jnp.asarray(0), jnp.asarray(0), jnp.asarray(0))
    c, _, res, _, it, krylov_its, _ = jax.lax.while_loop(cond, body, state)
    tiny = jnp.finfo(norm0.dtype).tiny
    relative, backward = res / jnp.maximum(norm0, tiny), res / jnp.maximum(scale(c), tiny)
    return c, NewtonInfo(relative, backward, it, krylov_its, (res <= target) | (backward <= floor))


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
    residual, backward, newton_its, krylov_its, converged = aux
    return c, NewtonInfo(residual, backward, newton_its.astype(jnp.int32), krylov_its.astype(jnp.int32), converged > 0.5)


steady_field = jit(solve_steady, static_argnames=("grid", "options"))
