"""The right-hand sides of the source attribution (attribution.py): each source type's part s_k
of the field's secretion, and each secreting cell's own s_i, in pM/s per interstitial volume.

Each cell spreads its secretion q_i over its stencil (coupling.voxel_fields: 7 voxels with the
sub-grid closure, its own voxel as a point sink), stencils of different types overlap, and s_k is
type k's fraction of every voxel's s. A secreting cell on one voxel takes up
d_i of its own IL-2 before it reaches the lattice (coupling.own_capture); the caller takes that
off its source's right-hand side.

Units: um, s, pM, molecules (il2rd/physics/units.py).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .. import cells
from . import coupling
from ..physics import units
from ..compilation import jit
from ..physics.grid import Grid


def type_secretions(scenario, type_indices, il2ra=None, secretion_course=None, contact_handed=None, law=None) -> np.ndarray:
    """(len(type_indices), nx, ny, nz) pM/s: s_k, the part of the secretion field s =
    coef.secretion_pM_per_s made by the cells of each type k (sum over all types = s).

    Type k's cells spread over their stencils (coupling.voxel_fields, as cells.field_coefficients
    spreads them all), taken as their fraction of every voxel's s, s_k = s S_k / sum_k' S_k' (S_k:
    type k's spread alone),
    so that the s_k add up to the field's own s whatever its units. il2ra, secretion_course: a
    coupled run's final state, contact_handed its contacts' part (attribution.attribute); law: their
    :func:`stencil_law`, where the caller has it."""
    grid, pop, coef = scenario.grid, scenario.population, scenario.coefficients
    if not len(type_indices):
        return np.zeros((0, *grid.shape))
    vmax, km, q = law or stencil_law(scenario, il2ra, secretion_course, contact_handed)
    member = (pop.type_index[:, None] == np.asarray(type_indices)[None, :]).astype(np.asarray(q).dtype)
    fractions = secretion_fractions(scenario.coupling, vmax, km, q, jnp.asarray(member))
    return np.asarray(coef.secretion_pM_per_s, np.float64) * np.asarray(fractions, np.float64)


@jit
def secretion_fractions(cp, vmax, km, q, member):
    """S_m / sum S (C, *shape): the part of each voxel's secretion made by each group m of cells
    (member (n, C): 1 where cell i belongs to group m: a type, or one cell), S_m their secretion
    spread over their stencils (coupling.spread, all groups and the total in one scatter)."""
    w = coupling.laws(cp, vmax, km).stencil_weights  # before folding: spread folds at the faces
    per_cell = jnp.concatenate([q[:, None] * member, q[:, None]], axis=1)  # the last channel: all cells
    fields = coupling.spread(cp, w[:, None, :], per_cell)
    parts, total = fields[..., :-1], fields[..., -1:]
    return jnp.moveaxis(jnp.where(total > 0, parts / jnp.where(total > 0, total, 1.0), 0.0), -1, 0)


def stencil_law(scenario, il2ra=None, secretion_course=None, contact_handed=None):
    """(V molecules/s, K_M pM, q molecules/s), each (n,) in the run's dtype: each cell's collapsed
    uptake law (cells.UptakeLaws.collapsed) and secretion as the coupling spreads them.
    il2ra, secretion_course: each cell's IL-2Ra and secretion time-course factor f_i(t) at the
    field's moment where they change (solver.kind=coupled: the final state), else None (its own
    IL-2Ra, constant secretion q_i); contact_handed: what each cell hands over in contacts, not
    secreted into the field (contact.py)."""
    pop, settings = scenario.population, scenario.settings
    vmax, km = cells.collapsed_uptake(pop, settings.problem.types, il2ra)
    secretion = cells.secretion_per_cell(pop, settings.problem.types, secretion_course, contact_handed)
    dtype = scenario.coupling.radius_um.dtype
    return tuple(jnp.asarray(a, dtype) for a in (vmax, km, secretion))


def at_voxels(grid: Grid, voxel, molecules_per_s, volume_um3: float) -> np.ndarray:
    """A field (pM/s per interstitial volume) of per-cell rates (molecules/s) in the cells' voxels."""
    out = np.zeros(grid.shape)
    np.add.at(out, tuple(np.asarray(voxel).T), units.cell_rate_to_voxel_rate_pM_per_s(molecules_per_s, volume_um3))
    return out


def own_secretions(scenario, mine: np.ndarray, padded: int, law):
    """(padded, *shape) pM/s: each secreting cell's own secretion field s_i (zero fields after
    len(mine)); law: (V, K_M, q) per cell (:func:`stencil_law`, q with the secretion course and
    contacts given), its q spread over its stencil as the window's right-hand side is."""
    index = np.zeros(padded, np.int32)
    index[: len(mine)] = mine
    return own_stencil_secretions(scenario.coupling, *law, jnp.asarray(index), jnp.arange(padded) < len(mine))


@jit
def own_stencil_secretions(cp, vmax, km, q, index, valid):
    """own_secretions: cell index[k]'s q w_ij on its stencil voxels, pM/s per interstitial volume
    (as coupling.voxel_fields), for the rows where valid[k]."""
    weights = coupling.fold(cp, coupling.laws(cp, vmax, km).stencil_weights)
    values = (weights * q[:, None])[index] * valid[:, None]
    rows = jnp.zeros((index.shape[0], cp.n_voxels), values.dtype).at[jnp.arange(index.shape[0])[:, None], cp.flat[index]].add(values)
    return units.cell_rate_to_voxel_rate_pM_per_s(rows, cp.volume_fraction * cp.spacing_um**3).reshape(-1, *cp.shape)
