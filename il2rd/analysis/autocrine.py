"""The autocrine part of the attribution from local solves: how much of a secreting cell's uptake
is its own secretion, where one global solve per secreting cell (attribution.py,
EXACT_AUTOCRINE_UNKNOWNS) costs too much.

A secreting cell i takes up sum_j p_ij sigma_j [A^-1 s_i]_j of its own secretion, s_i = q_i w_i its
own stencil-spread secretion (weights w_ij, sum 1; A, sigma, p as in attribution.py); for a point
sink (one arm) that is sigma_i s_i [A^-1]_ii. A^-1 s_i comes from a local solve on the cube of
half-width w voxels around the cell, with IL-2 reaching the cube's surface counted as lost (the
principal submatrix A_W of A, the lattice's own boundary conditions where the cube meets a face).
For an M-matrix such as A, A_W^-1 <= A^-1 entrywise, and s_i, p, sigma >= 0, so the local value is a
lower bound that rises to the exact one as w grows; the window change reports how much it still rose
from w - 1 to w (small where consumers are dense, since IL-2 then travels a few cells; larger in
consumer-poor tissue with its long decay length). A stencil arm that wraps through a periodic face
lies outside the window and counts as lost.

Units: um, s, pM, molecules (il2rd/physics/units.py).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..cells import coupling
from ..physics import subgrid
from ..compilation import jit
from ..physics.grid import Grid
from ..physics.kinetics import absorption_per_s
from ..solvers.krylov import pcg
from ..solvers.multigrid import laplacian_diagonal
from ..solvers.steady import SolverOptions

# the local window of the autocrine solve, (2 w + 1)^3 voxels: w = 4 is within 0.1 % of the exact
# [A^-1]_ii on the default T-zone scenario (w = 2: 1.5 %, 3: 0.45 %, 6: 0.008 %)
HALF_WIDTH_VOXELS = 4


def window_rtol(rtol: float) -> float:
    """The relative residual the window solves stop at: sqrt(solver.rtol). What they return is read
    back on the right-hand side's own stencil, an error CG reduces about as the square of the
    residual's: on the default T zone sqrt(1e-6) = 1e-3 moves each autocrine part by at most 5e-6 of
    itself against a 1e-6 residual (50x below the window's own truncation), in half the time."""
    return math.sqrt(rtol)


def local_green_stencil(absorption_per_s, grid: Grid, diffusion_um2_per_s, voxels, offsets, weights, half_width: int,
                        chunk: int = 256, rtol: float = 1e-6, maxiter: int = 1000):
    """x_W = A_W^-1 b_i read at the voxels where b_i sits (s, (n, m)): for each voxel i of
    voxels (n, 3), b_i = sum_j weights[i, j] e_(i + offsets[i, j]) (offsets (n, m, 3) within
    +-1, repeated offsets add), A = -D lap + diag(absorption) restricted to the cube W of
    half-width w around i (clipped at the lattice: weight beyond it is lost).
    Jacobi-preconditioned CG on every cube to ||b - A x|| <= rtol ||b||, `chunk` cubes per
    call of one compiled kernel whatever the number of cells (fewer cells: the next power of two;
    the last chunk is padded with empty right-hand sides). For b >= 0 each entry is a lower bound
    of [A^-1 b_i] there (module docstring)."""
    # the per-cell inputs are small: padded and cut into chunks on the host (numpy), so that the
    # only programs run are the two kernels, not one small one per slice
    dtype = np.dtype(absorption_per_s.dtype)
    voxels, offsets, weights = np.asarray(voxels, np.int32), np.asarray(offsets, np.int32), np.asarray(weights, dtype)
    n = voxels.shape[0]
    if n == 0:
        return np.zeros(weights.shape, dtype)
    diagonal, inside = _window_operator(absorption_per_s, grid, diffusion_um2_per_s, half_width)
    coupling_per_s = np.asarray(diffusion_um2_per_s / grid.spacing_um**2, dtype)
    chunk = min(chunk, 1 << (n - 1).bit_length())  # a few cells: the next power of two, not a whole chunk
    pad = -n % chunk
    padded = [np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)]) for a in (voxels, offsets, weights)]
    parts = [_window_solves(diagonal, inside, coupling_per_s, *(a[k:k + chunk] for a in padded), half_width=half_width,
                            rtol=rtol, maxiter=maxiter) for k in range(0, n + pad, chunk)]
    return np.concatenate([np.asarray(p) for p in parts])[:n]


@jit(static_argnames=("grid", "half_width"))
def _window_operator(absorption_per_s, grid: Grid, diffusion_um2_per_s, half_width: int):
    """The diagonal of A and the lattice's mask, both padded by the window's half-width (the
    diagonal with 1 and the mask with 0 beyond the lattice)."""
    diagonal = diffusion_um2_per_s * laplacian_diagonal(grid, absorption_per_s.dtype) + absorption_per_s
    return (jnp.pad(diagonal, half_width, constant_values=1.0),
            jnp.pad(jnp.ones(grid.shape, absorption_per_s.dtype), half_width))


@jit(static_argnames=("half_width", "rtol", "maxiter"))
def _window_solves(diagonal, inside, coupling_per_s, voxels, offsets, weights, half_width: int, rtol: float,
                   maxiter: int):
    """:func:`local_green_stencil` for one chunk of cubes (voxels (chunk, 3) in the unpadded lattice)."""
    w = half_width
    n = 2 * w + 1

    def neighbours(v):  # sum of the 6 face neighbours, 0 beyond the cube
        p = jnp.pad(v, 1)
        return (p[:-2, 1:-1, 1:-1] + p[2:, 1:-1, 1:-1] + p[1:-1, :-2, 1:-1] + p[1:-1, 2:, 1:-1]
                + p[1:-1, 1:-1, :-2] + p[1:-1, 1:-1, 2:])

    def one(voxel, offset, weight):
        d = jax.lax.dynamic_slice(diagonal, voxel, (n, n, n))
        m = jax.lax.dynamic_slice(inside, voxel, (n, n, n))
        at = tuple((offset + w).T)
        b = m * jnp.zeros((n, n, n), diagonal.dtype).at[at].add(weight)
        # identity beyond the lattice keeps the operator SPD with those voxels at 0
        A = lambda v: m * (d * v - coupling_per_s * neighbours(m * v)) + (1 - m) * v  # noqa: E731
        x, _ = pcg(A, b, lambda r: r / d, jnp.zeros_like(b), rtol * jnp.sqrt(jnp.vdot(b, b)), maxiter)
        return x[at]

    return jax.vmap(one)(voxels, offsets, weights)


# the window change is a diagnostic: measured on at most this many secreting cells (evenly spaced
# through the table; all of them in smaller tissues), since the second window solve costs ~half the first
WINDOW_CHANGE_SAMPLE = 1024


def stencils(c, scenario, law, share, sigma, secretes: np.ndarray, options: SolverOptions, half_width: int):
    """Each secreting cell's uptake of its own secretion,

        q_i sum_j p_ij sigma_j [A_W^-1 w_i]_j      (molecules/s; w_i its secretion stencil, sum 1),

    and the window change (module docstring), from the WINDOW_CHANGE_SAMPLE cells."""
    grid, pop, cp = scenario.grid, scenario.population, scenario.coupling
    autocrine = np.zeros(len(pop))
    mine = np.flatnonzero(secretes)
    if len(mine) == 0:
        return autocrine, 0.0
    voxels = np.asarray(pop.voxel[mine], np.int32)
    offsets, weights, read = (np.asarray(a) for a in _own_stencils(cp, *law[:2], share, sigma, mine, voxels))
    coef = scenario.coefficients
    absorption = absorption_per_s(c, coef)
    solve = lambda cells, half: np.sum(read[cells].astype(np.float64) * local_green_stencil(  # noqa: E731
        absorption, grid, coef.diffusion_um2_per_s, voxels[cells], offsets[cells], weights[cells], half,
        rtol=window_rtol(options.rtol)).astype(np.float64), axis=1)
    fraction = solve(np.arange(len(mine)), half_width)
    sample = np.unique(np.linspace(0, len(mine) - 1, min(len(mine), WINDOW_CHANGE_SAMPLE)).astype(np.int64))
    smaller = solve(sample, half_width - 1)
    autocrine[mine] = np.asarray(law[2], np.float64)[mine] * fraction
    change = float(np.max((fraction[sample] - smaller) / np.where(fraction[sample] > 0, fraction[sample], 1.0)))
    return autocrine, change


@jit
def _own_stencils(cp, vmax, km, share, sigma, mine, voxels):
    """(offsets (m, arms, 3), secretion weights w_ij (m, arms), p_ij sigma_j (m, arms)) of the secreting
    cells `mine` at `voxels`: where each spreads its secretion and reads its uptake, relative to
    its voxel. An arm wrapped through a periodic face lies outside the window: its secretion
    counts as lost (weight and read 0)."""
    stencil = jnp.asarray(subgrid.STENCIL_OFFSETS[:cp.arms], jnp.int32)[None]
    flat, inside = cp.flat[mine], cp.inside[mine]
    weights = coupling.fold(cp, coupling.laws(cp, vmax, km).stencil_weights)[mine]  # arms beyond a face: weight 0
    read = share[mine] * sigma.reshape(-1)[flat]  # 1/s
    unwrapped = voxels[:, None, :] + stencil
    lost = inside & jnp.any((unwrapped < 0) | (unwrapped >= jnp.asarray(cp.shape)), axis=-1)
    offsets = jnp.where((inside & ~lost)[..., None], stencil, 0)
    return offsets, jnp.where(lost, 0.0, weights), jnp.where(lost, 0.0, read)
