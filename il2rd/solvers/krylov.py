"""Preconditioned conjugate gradients, jitted, reporting its residual and iteration count.

jax.scipy.sparse.linalg.cg reports neither, and il2rd must never return a field from a
solve that did not converge without saying so. `linear_solve` wraps `pcg` in
`jax.lax.custom_linear_solve`, so solutions can be differentiated (and transposed) through
the solve instead of through its iterations.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class SolveInfo(NamedTuple):
    residual_norm: jax.Array  # ||b - A x||_2 at exit, in b's units
    iterations: jax.Array


def _dot(a, b):
    return jnp.vdot(a, b).real


def norm(x):
    """||x||_2 computed as m ||x / m||_2, m = max|x|: no square overflows (float32 holds fields
    up to 3e38 pM, but their squares only up to 1.8e19) or underflows."""
    m = jnp.max(jnp.abs(x))
    safe = jnp.where(m > 0, m, 1.0)
    return m * jnp.sqrt(_dot(x / safe, x / safe))


def pcg(matvec: Callable, b, precond: Callable, x0, tol_abs, maxiter: int):
    """Solve A x = b for symmetric positive definite A, stopping at ||b - A x|| <= tol_abs.

    precond(r) applies an SPD approximation of A^-1. Each iteration applies it once, at the top
    of the loop body (the first direction is z0 = precond(r0) itself): one copy of the
    preconditioner in the compiled program, not two, which halves the compile time of a
    multigrid V-cycle. The system is solved for b / ||b|| (the operator is linear), so that the
    inner products of large fields cannot overflow.
    """
    beta = norm(b)
    beta = jnp.where(beta > 0, beta, 1.0)
    x, info = _pcg(matvec, b / beta, precond, x0 / beta, tol_abs / beta, maxiter)
    return x * beta, SolveInfo(info.residual_norm * beta, info.iterations)


def _pcg(matvec: Callable, b, precond: Callable, x0, tol_abs, maxiter: int):
    r0 = b - matvec(x0)
    state0 = (x0, r0, jnp.zeros_like(r0), jnp.ones((), r0.dtype), jnp.sqrt(_dot(r0, r0)), jnp.asarray(0))

    def cond(state):
        _, _, _, _, rnorm, it = state
        return (rnorm > tol_abs) & (it < maxiter)

    def body(state):
        x, r, p, rz_old, _, it = state
        z = precond(r)
        rz = _dot(r, z)
        p = z + jnp.where(it == 0, 0.0, rz / rz_old).astype(r.dtype) * p
        ap = matvec(p)
        alpha = rz / _dot(p, ap)
        x = x + alpha * p
        r = r - alpha * ap
        return x, r, p, rz, jnp.sqrt(_dot(r, r)), it + 1

    x, _, _, _, rnorm, it = jax.lax.while_loop(cond, body, state0)
    return x, SolveInfo(rnorm, it)


def linear_solve(matvec: Callable, b, precond: Callable, rtol, maxiter: int):
    """x = A^-1 b by PCG to ||b - A x|| <= rtol ||b||, differentiable through custom_linear_solve.

    A must be symmetric (it is, for every operator in il2rd). Returns (x, SolveInfo).
    """

    def solve(mv, rhs):
        return pcg(mv, rhs, precond, jnp.zeros_like(rhs), rtol * norm(rhs), maxiter)

    return jax.lax.custom_linear_solve(matvec, b, solve, symmetric=True, has_aux=True)
