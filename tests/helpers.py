"""Small shared helpers for the physics tests: coefficient builders, an independent numpy
reference of the discrete operator, exact solutions and convergence-order fits.

Nothing here calls il2rd's own operators: the numpy Laplacian below re-implements the ghost-cell
rules documented in il2rd/physics/grid.py, so tests that use it check il2rd against a second, separate
implementation rather than against itself.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from il2rd.physics import units
from il2rd.physics.grid import Grid
from il2rd.physics.kinetics import FieldCoefficients


# 1 pM in molecules/um^3, from its definition (Avogadro's number, 1 L = 1e15 um^3), written out
# here rather than taken from il2rd.physics.units so that exact solutions do not share il2rd's constant.
PM_IN_MOLECULES_PER_UM3 = 6.02214076e23 * 1e-12 / 1e15


def coefficients(
    shape,
    diffusion=10.0,
    decay=0.0,
    secretion=None,
    vmax=None,
    km=None,
    faces=None,
    uptake="saturating",
    dtype=jnp.float64,
) -> FieldCoefficients:
    """FieldCoefficients from plain numbers/arrays (secretion, vmax default 0; km default 1)."""
    shape = tuple(shape)
    as_field = lambda v, default: jnp.asarray(np.broadcast_to(default if v is None else v, shape), dtype)  # noqa: E731
    return FieldCoefficients(
        diffusion_um2_per_s=jnp.asarray(diffusion, dtype),
        decay_per_s=jnp.asarray(decay, dtype),
        secretion_pM_per_s=as_field(secretion, 0.0),
        vmax_pM_per_s=as_field(vmax, 0.0),
        km_pM=as_field(km, 1.0),
        face_values_pM=jnp.asarray(np.zeros(6) if faces is None else faces, dtype),
        uptake=uptake,
    )


def random_cells(shape, spacing_um, seed, source_fraction=0.01, consumer_fraction=0.2,
                 q_molecules_per_s=10.0, receptors=3000.0, k_int_per_s=1.1e-3, km_pM=43.0):
    """Secretion, vmax and km fields (pM/s, pM/s, pM) for randomly placed sources and consumers,
    at most one cell per voxel, in physical units (one cell per voxel of volume h^3)."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    order = rng.permutation(n)
    n_src = max(1, int(round(source_fraction * n)))
    n_con = int(round(consumer_fraction * n))
    volume = spacing_um**3
    secretion = np.zeros(n)
    vmax = np.zeros(n)
    km = np.ones(n)
    secretion[order[:n_src]] = units.cell_rate_to_voxel_rate_pM_per_s(q_molecules_per_s, volume)
    consumers = order[n_src:n_src + n_con]
    vmax[consumers] = units.cell_rate_to_voxel_rate_pM_per_s(k_int_per_s * receptors, volume)
    km[consumers] = km_pM
    return secretion.reshape(shape), vmax.reshape(shape), km.reshape(shape)


# ---------------------------------------------------------------------------------------------
# Independent numpy reference of the discrete operator (ghost cells as documented in grid.py).


def np_laplacian(c, grid: Grid, faces=None):
    """7-point Laplacian with ghost cells: zero_flux g = c_in, fixed g = 2 c_b - c_in,
    periodic g = c on the opposite side. faces=None: homogeneous (fixed faces at 0)."""
    c = np.asarray(c, np.float64)
    faces = np.zeros(6) if faces is None else np.asarray(faces, np.float64)
    out = np.zeros_like(c)
    for axis in range(3):
        cm = np.moveaxis(c, axis, 0)
        ghosts = []
        for side in range(2):
            kind = grid.boundary[2 * axis + side]
            inside = cm[0] if side == 0 else cm[-1]
            opposite = cm[-1] if side == 0 else cm[0]
            if kind == "zero_flux":
                ghosts.append(inside)
            elif kind == "periodic":
                ghosts.append(opposite)
            elif kind == "fixed":
                ghosts.append(2.0 * faces[2 * axis + side] - inside)
            else:
                raise ValueError(kind)
        padded = np.concatenate([ghosts[0][None], cm, ghosts[1][None]], axis=0)
        lap = (padded[2:] - 2.0 * cm + padded[:-2]) / grid.spacing_um**2
        out += np.moveaxis(lap, 0, axis)
    return out


def np_uptake(c, coef: FieldCoefficients):
    c = np.maximum(np.asarray(c, np.float64), 0.0)
    vmax = np.asarray(coef.vmax_pM_per_s, np.float64)
    km = np.asarray(coef.km_pM, np.float64)
    if coef.uptake == "linear":
        return vmax * c / km
    return vmax * c / (km + c)


def np_tendency(c, grid: Grid, coef: FieldCoefficients):
    """dc/dt of the discrete field equation, in numpy float64."""
    return (
        float(coef.diffusion_um2_per_s) * np_laplacian(c, grid, np.asarray(coef.face_values_pM, np.float64))
        - float(coef.decay_per_s) * np.asarray(c, np.float64)
        + np.asarray(coef.secretion_pM_per_s, np.float64)
        - np_uptake(c, coef)
    )


def dense_linear_operator(grid: Grid, coef: FieldCoefficients):
    """For linear uptake: (A, b) with dc/dt = -A c + b, A dense (N x N), built column by column
    from the numpy reference (small lattices only)."""
    assert coef.uptake == "linear"
    n = grid.n_voxels
    b = np_tendency(np.zeros(grid.shape), grid, coef).ravel()
    A = np.empty((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = 1.0
        A[:, j] = b - np_tendency(e.reshape(grid.shape), grid, coef).ravel()
    return A, b


# ---------------------------------------------------------------------------------------------
# Exact solutions and fits.


def point_source_pM(r_um, q_molecules_per_s, diffusion, decay_length_um):
    """c(r) = q exp(-r/lambda) / (4 pi D r), converted from molecules/um^3 to pM."""
    r = np.asarray(r_um, np.float64)
    molecules = q_molecules_per_s * np.exp(-r / decay_length_um) / (4.0 * np.pi * diffusion * r)
    return molecules / PM_IN_MOLECULES_PER_UM3


def point_source_in_box_pM(x, y, z, half_width_um, q, diffusion, decay_length_um):
    """Point source at the origin of the cube [-L, L]^3 with c = 0 on its faces, by the method of
    images (the 27 nearest images, sign (-1)^(i+j+k); the next ones sit 4L away, exp(-4L/lambda))."""
    total = 0.0
    for i in (-1, 0, 1):
        for j in (-1, 0, 1):
            for k in (-1, 0, 1):
                r = np.sqrt((x - 2 * half_width_um * i) ** 2 + (y - 2 * half_width_um * j) ** 2
                            + (z - 2 * half_width_um * k) ** 2)
                total = total + (-1) ** (i + j + k) * point_source_pM(r, q, diffusion, decay_length_um)
    return total


def fit_order(steps, errors) -> float:
    """Least-squares slope of log(error) against log(step): the observed convergence order."""
    slope, _ = np.polyfit(np.log(np.asarray(steps, float)), np.log(np.asarray(errors, float)), 1)
    return float(slope)


def pair_orders(steps, errors) -> np.ndarray:
    """Orders between successive refinements: log(e_i / e_{i+1}) / log(h_i / h_{i+1})."""
    s, e = np.asarray(steps, float), np.asarray(errors, float)
    return np.log(e[:-1] / e[1:]) / np.log(s[:-1] / s[1:])


def relative_max_error(approx, exact) -> float:
    approx, exact = np.asarray(approx, np.float64), np.asarray(exact, np.float64)
    return float(np.max(np.abs(approx - exact)) / np.max(np.abs(exact)))


def closure(shape, voxel, spacing_um, diffusion, radius_um, uptake="saturating", periodic=(False, False, False)):
    """The coupling.CellCoupling of cells at voxel (n, 3) in free medium (alpha = 1), in the
    session's precision."""
    from il2rd.cells import coupling

    return coupling.build(voxel, shape, spacing_um, radius_um, diffusion, 1.0, uptake, jnp.result_type(float), periodic)


def closure_fields(shape, voxel, spacing_um, diffusion, radius_um, vmax, km, secretion, periodic=(False, False, False)):
    """(secretion pM/s, v_max pM/s, K_M pM) fields of cells with laws V (molecules/s), K_M (pM)
    and secretion q (molecules/s) under the sub-grid closure (coupling.voxel_fields), as numpy."""
    from il2rd.cells import coupling

    cp = closure(shape, voxel, spacing_um, diffusion, radius_um, periodic=periodic)
    args = (jnp.asarray(np.asarray(a, np.float64), cp.radius_um.dtype) for a in (vmax, km, secretion))
    return tuple(np.asarray(f) for f in coupling.voxel_fields_jit(cp, *args))


def closure_cell_uptake(c, voxel, spacing_um, diffusion, radius_um, vmax, km, law="saturating", periodic=(False, False, False)):
    """(uptake molecules/s, seen pM) of each cell from the field c (coupling.cell_uptake), as numpy."""
    from il2rd.cells import coupling

    cp = closure(np.shape(c), voxel, spacing_um, diffusion, radius_um, law, periodic)
    args = (jnp.asarray(np.asarray(a, np.float64), cp.radius_um.dtype) for a in (c, vmax, km))
    return tuple(np.asarray(a) for a in coupling.cell_uptake_jit(cp, *args))


def scatter_stencil(shape, voxel, stencil_weights, per_cell_values):
    """sum_i values_i w_ij on the voxels of each cell's 7-point stencil (arms outside the lattice
    into the cell's own voxel), numpy, independent of il2rd's scatter."""
    offsets = [(0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
    field = np.zeros(shape)
    weights = np.asarray(stencil_weights, np.float64).reshape(len(voxel), 7)
    for cell, w, value in zip(np.asarray(voxel).reshape(-1, 3), weights, np.ravel(per_cell_values)):
        for offset, wj in zip(offsets, w):
            at = cell + np.asarray(offset)
            inside = np.all((at >= 0) & (at < np.asarray(shape)))
            field[tuple(at if inside else cell)] += wj * value
    return field
