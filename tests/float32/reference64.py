"""An independent float64 reference for the float32 tier: the discrete steady and backward-Euler
problems assembled as scipy sparse matrices (ghost rules as documented in il2rd/physics/grid.py, built
here from 1-D second differences, not from il2rd's operators) and solved by Newton with a direct
sparse solve."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from helpers import np_laplacian


def _second_difference(n: int, kinds: tuple[str, str], h: float) -> sp.csr_matrix:
    """d^2/dx^2 on n cell-centred voxels: zero_flux ghost = inside, fixed ghost = -inside
    (the homogeneous part), periodic ghost = the opposite voxel."""
    m = sp.lil_matrix((n, n))
    for i in range(n):
        m[i, i] = -2.0
        if i > 0:
            m[i, i - 1] = 1.0
        if i < n - 1:
            m[i, i + 1] = 1.0
    for side, kind in enumerate(kinds):
        i, j = (0, n - 1) if side == 0 else (n - 1, 0)
        m[i, i] += {"zero_flux": 1.0, "fixed": -1.0, "periodic": 0.0}[kind]
        if kind == "periodic":
            m[i, j] += 1.0
    return m.tocsr() / h**2


def laplacian_matrix(grid) -> sp.csr_matrix:
    """The homogeneous 7-point Laplacian on C-ordered (nx, ny, nz) fields."""
    total = sp.csr_matrix((grid.n_voxels, grid.n_voxels))
    for axis, n in enumerate(grid.shape):
        kinds = (grid.boundary[2 * axis], grid.boundary[2 * axis + 1])
        if n == 1 and kinds == ("zero_flux", "zero_flux"):
            continue
        parts = [sp.identity(m, format="csr") for m in grid.shape]
        parts[axis] = _second_difference(n, kinds, grid.spacing_um)
        total = total + sp.kron(sp.kron(parts[0], parts[1]), parts[2], format="csr")
    return total


def steady_reference(grid, coef, c_prev=None, dt=None, tol=1e-13, max_newton=60):
    """The float64 root of -D lap c + k_d c + u(c) - s (plus (c - c_prev)/dt for a backward-Euler
    step), for FieldCoefficients without exchange terms."""
    f64 = lambda a: np.asarray(a, np.float64).ravel()  # noqa: E731
    D, kd = float(coef.diffusion_um2_per_s), float(coef.decay_per_s)
    s, vmax, km = f64(coef.secretion_pM_per_s), f64(coef.vmax_pM_per_s), f64(coef.km_pM)
    faces = np.asarray(coef.face_values_pM, np.float64)
    boundary = np_laplacian(np.zeros(grid.shape), grid, faces).ravel()  # the affine part of lap
    if dt is not None:
        kd, s = kd + 1.0 / dt, s + f64(c_prev) / dt
    A = -D * laplacian_matrix(grid) + kd * sp.identity(grid.n_voxels)
    linear = coef.uptake == "linear"

    def residual(c):
        u = vmax / km * c if linear else vmax * c / (km + c)
        return A @ c - D * boundary + u - s

    c = np.zeros(grid.n_voxels)
    f = residual(c)
    norm0 = np.linalg.norm(f)
    for _ in range(max_newton):
        if np.linalg.norm(f) <= tol * norm0:
            break
        slope = vmax / km if linear else vmax * km / (km + c) ** 2
        c = np.maximum(c + spla.spsolve((A + sp.diags(slope)).tocsc(), -f), 0.0)
        f = residual(c)
    return c.reshape(grid.shape)
