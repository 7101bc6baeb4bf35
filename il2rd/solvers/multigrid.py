"""Geometric multigrid: the V-cycle that preconditions every CG solve.

The operators il2rd solves are A = -D lap + diag(a(x)), a >= 0 varying from voxel to voxel
(decay k_d, 1/dt, receptor uptake du/dc; 1/s). One V-cycle approximates A^-1 r:

    level l:  x  = omega Dinv_l r                                 (damped Jacobi, pre-smoothing)
              x += P cycle_{l+1}( R (r - A_l x) )                 (coarse-grid correction)
              x += omega Dinv_l (r - A_l x)                       (post-smoothing)
    coarsest: the exact inverse of its mean operator (-D lap + mean(a))^-1 (precond.py)

with Dinv_l = 1 / (D diag(-lap_l) + a_l). Coarse lattices halve every axis longer than one voxel
(spacing 2h, same boundary kinds: rediscretised, not Galerkin) while those axes stay even and
at least MIN_COARSE_VOXELS long. Restriction R is the mean of the 2 (per coarsened axis)
children, prolongation P = 2^d R^T is piecewise constant, a_{l+1} = R a_l. Pre- and
post-smoothing mirror each other and P is a multiple of R^T, so the cycle is symmetric and CG
stays valid.

Why: the mean-operator inverse alone (a single level) costs about 13 matvecs per application
at 128^3 (dense per-axis transforms) and its iteration count grows with the lattice; the
V-cycle costs a few matvecs and holds CG at about 12 iterations per Newton solve from 64^3 to
256^3 (benchmarks/results/cpu.md, 2 CPU cores: the steady solve 3.3x faster at 128^3, 5.9x at
256^3 than with the mean-operator inverse alone). A lattice that cannot be halved (an odd or
short axis) gets one level, which is exactly the mean-operator preconditioner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..physics import grid as grid_mod
from ..physics.grid import Grid
from .precond import MeanOperatorInverse

MIN_COARSE_VOXELS = 4  # the shortest coarsened axis; below it the coarse solve is the mean operator


def _coarsened_axes(grid: Grid) -> tuple[int, ...]:
    return tuple(a for a, n in enumerate(grid.shape) if n > 1)


def can_coarsen(grid: Grid) -> bool:
    """Whether `grid` has a coarser level: every axis longer than one voxel is even with a half
    of at least MIN_COARSE_VOXELS, and every face has a coarse counterpart (Boundary.coarsened:
    not a fixed face on a single-voxel axis, whose ghost term depends on the spacing, which
    coarsening doubles)."""
    for axis, n in enumerate(grid.shape):
        if any(face.coarsened(n == 1) is None for face in grid.axis_faces(axis)):
            return False
        if n > 1 and (n % 2 or n // 2 < MIN_COARSE_VOXELS):
            return False
    return bool(_coarsened_axes(grid))


def hierarchy(grid: Grid) -> tuple[Grid, ...]:
    """The lattice and its coarser levels, finest first."""
    grids = [grid]
    while can_coarsen(grids[-1]):
        g = grids[-1]
        faces = tuple(face.coarsened(g.shape[i // 2] == 1) for i, face in enumerate(g.faces))
        grids.append(Grid(tuple(n // 2 if n > 1 else 1 for n in g.shape), 2 * g.spacing_um, faces))
    return tuple(grids)


def restrict(r, axes: tuple[int, ...]):
    """Mean of the children along `axes`, by strided slices (a reshape-and-mean compiles to a
    strided reduction 16x slower on XLA:CPU)."""
    for axis in axes:
        n = r.shape[axis]
        r = jax.lax.slice_in_dim(r, 0, n, 2, axis) + jax.lax.slice_in_dim(r, 1, n, 2, axis)
    return r * (0.5 ** len(axes))


def prolong(e, axes: tuple[int, ...]):
    """Piecewise constant: every child takes its parent's value (P = 2^d R^T)."""
    for axis in axes:
        e = jnp.repeat(e, 2, axis=axis)
    return e


def laplacian_diagonal(grid: Grid, dtype):
    """Diagonal of -lap (1/um^2) with the grid's ghost rules, as three broadcast 1-D constants
    (a full 3-D constant would be baked into the compiled program). On a one-voxel axis the lone
    entry is what grid.laplacian gives: 0 for zero-flux or periodic ghosts, 2 per fixed face."""
    parts = [jnp.asarray(np.diag(grid.axis_second_difference(axis)), dtype) for axis in range(3)]
    return (parts[0][:, None, None] + parts[1][None, :, None] + parts[2][None, None, :]) / grid.spacing_um**2


def _materialise(x):
    """x, written to memory. XLA:CPU otherwise fuses a whole level into a few loop fusions that
    recompute each sweep once per stencil neighbour (one V-cycle at 128^3: 100-260 ms instead of
    ~15 ms). optimization_barrier does not stop that on XLA:CPU; a conditional with a
    data-dependent predicate is a fusion boundary. Both branches return x unless x is NaN."""
    first = x.reshape(-1)[0]
    return jax.lax.cond(first == first, lambda y: y, lambda y: y * 0, x)


@dataclass(frozen=True)
class Multigrid:
    """Static V-cycle description (hashable): the levels, smoothing sweeps and Jacobi damping."""

    grids: tuple[Grid, ...]
    sweeps: int = 1
    damping: float = 0.8

    @classmethod
    def for_grid(cls, grid: Grid, sweeps: int = 1, damping: float = 0.8) -> "Multigrid":
        return cls(hierarchy(grid), sweeps, damping)

    def preconditioner(self, diffusion_um2_per_s, absorption_per_s) -> Callable:
        """r -> V-cycle(r) ~ (-D lap + diag(a))^-1 r for this operator; a has the field's shape."""
        D = diffusion_um2_per_s
        absorption = [absorption_per_s]
        for g in self.grids[:-1]:
            absorption.append(restrict(absorption[-1], _coarsened_axes(g)))
        inverse_diagonal = [1.0 / (D * laplacian_diagonal(g, a.dtype) + a) for g, a in zip(self.grids, absorption)]
        coarsest = MeanOperatorInverse.for_grid(self.grids[-1])
        sigma = jnp.mean(absorption[-1])
        omega = self.damping

        def operator(level, v):
            return -D * grid_mod.laplacian(v, self.grids[level]) + absorption[level] * v

        def cycle(level, r):
            if level == len(self.grids) - 1:
                return coarsest(r, D, sigma)
            smooth = lambda x: _materialise(x + omega * inverse_diagonal[level] * (r - operator(level, x)))  # noqa: E731
            x = _materialise(omega * inverse_diagonal[level] * r)
            for _ in range(self.sweeps - 1):
                x = smooth(x)
            axes = _coarsened_axes(self.grids[level])
            x = _materialise(x + prolong(cycle(level + 1, _materialise(restrict(r - operator(level, x), axes))), axes))
            for _ in range(self.sweeps):
                x = smooth(x)
            return x

        return lambda r: cycle(0, r)
