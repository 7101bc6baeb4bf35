"""Contact delivery: IL-2 handed from a source cell to the cells it touches, not through the field.

A DC-T cell synapse, or CD25 presenting IL-2 in trans, delivers IL-2 to the touching cell before
it can diffuse away (Wuest et al. 2011, Nat Med 17:604; Sabatos et al. 2008, Immunity 29:238). Per source type
(cell_types.<name>.contact = phi, .partners), each living cell i hands the part

    want_i = phi_i q_i f_i(t)                                              molecules/s

of its secretion to the cells of its partner types in reach, its own voxel and its 6 face
neighbours (its stencil; not itself), split in proportion to their receptors' maximum uptake
V_j = k_int (R_high + R_int) as receptors competing for the IL-2 at the contact would take it:

    offered_ij = want_i V_j / W_i,    W_i = sum_{j in reach of i} V_j.

A cell takes at most V_j from contacts (what its receptors can internalise): with A_j = sum_i
offered_ij it takes r_j offered_ij, r_j = min(1, V_j / A_j). What a source hands is then
handed_i = sum_j r_j offered_ij; the rest of its secretion, q_i f_i(t) - handed_i (all of it where
no partner is in reach), goes into the field. So secretion = what enters the field + what is
handed over, and what is handed over is taken up by the partners: IL-2 is conserved by
construction. The handed amount depends on where the cells are, their receptors and the
secretion course, not on the field: the step and the snapshot of the same state agree on it
exactly (the field balance of dynamics.coupled_step holds with the field's share).

The partner's receptors see the handed IL-2 as extra occupancy: with its field occupancy
f = c_s / (K + c_s) (c_s the IL-2 it sees in the field, coupling.surface_pM; K its collapsed K_M)
and d = received / V, it signals as at

    c_s' = K (f + d) / (1 - f - d),  with f + d at most MAX_OCCUPANCY

(the field and the contact are treated as independent routes to the same receptors; where both
are strong the cap stands for their saturation). The handed IL-2 counts as the partner's uptake
(readouts, the balance) and, in the attribution, as the source type's IL-2 taken up by it.

All functions are jittable with the lattice static; they take the per-cell arrays of the step
(positions as voxels, the living cells' V, their secretion), so cells that move, divide and die
(cell_steppers.Tissue) hand IL-2 to whoever they touch now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import coupling
from .. import pytree
from ..pytree import STATIC

MAX_OCCUPANCY = 0.999  # the occupancy at which contact plus field signalling is capped


@pytree.dataclass
@dataclass(frozen=True)
class Contact:
    """fraction (n,): phi of each cell (0 for types that hand nothing); type_index (n,) int32;
    accepts (n_types, n_types) bool: accepts[s, p], whether type p may receive from type s.
    Static: the source types (those with phi > 0, in type order), the lattice shape and its
    periodic axes."""

    fraction: jax.Array
    type_index: jax.Array
    accepts: jax.Array
    sources: tuple[int, ...] = field(metadata=STATIC)
    shape: tuple[int, int, int] = field(metadata=STATIC)
    periodic: tuple[bool, bool, bool] = field(default=(False, False, False), metadata=STATIC)


class Delivery(NamedTuple):
    """handed (n,): molecules/s each cell hands over; received (n, len(Contact.sources)):
    molecules/s each cell takes up from each contact source type."""

    handed: jax.Array
    received: jax.Array


def build(population, types: dict, shape, periodic, dtype) -> Contact | None:
    """The Contact of a population (cells.Population) and its cell types (config CellType), None
    where no type hands IL-2 over."""
    names = list(population.type_names)
    fraction = np.array([types[n].contact_fraction for n in names], np.float64)
    sources = tuple(int(k) for k in np.flatnonzero(fraction > 0))
    if not sources:
        return None
    accepts = np.zeros((len(names), len(names)), bool)
    for s in sources:
        partners = types[names[s]].contact_partners
        accepts[s] = [partners is None or n in partners for n in names]
    return Contact(jnp.asarray(fraction[population.type_index], dtype), jnp.asarray(population.type_index, jnp.int32),
                   jnp.asarray(accepts), sources, tuple(int(n) for n in shape), tuple(bool(p) for p in periodic))


def delivery(contact: Contact, voxel, vmax_molecules_per_s, secretion_molecules_per_s) -> Delivery:
    """What each cell hands over and receives (module docstring) for cells at voxel (n, 3) with
    maximum uptake V (n,) and current secretion q f(t) (n,), molecules/s; a slot without a living
    cell has V = 0 and q = 0, and takes part in nothing."""
    n = vmax_molecules_per_s.shape[0]
    n_voxels = int(np.prod(contact.shape))
    reach, inside = coupling.stencils(voxel, contact.shape, contact.periodic)
    # each voxel of the reach once: arms outside the lattice stand for the cell's own voxel (arm 0)
    arm = jnp.where(inside, reach, n_voxels)
    own = reach[:, 0]
    v = jnp.maximum(vmax_molecules_per_s, 0.0)
    per_voxel = lambda x: jnp.zeros(n_voxels + 1, v.dtype).at[own].add(x)  # noqa: E731  (slot n_voxels: outside)
    in_reach = lambda field: jnp.sum(field.at[n_voxels].set(0.0)[arm], axis=1)  # noqa: E731  (sum over the reach)
    densities, partners, asked = [], [], jnp.zeros(n, v.dtype)
    for s in contact.sources:  # what each source type offers: want_i / W_i to each partner's V_j
        v_ok = jnp.where(contact.accepts[s][contact.type_index] & (v > 0), v, 0.0)
        gives = (contact.type_index == s) & (contact.fraction > 0)
        want = jnp.where(gives, contact.fraction * jnp.maximum(secretion_molecules_per_s, 0.0), 0.0)
        width = in_reach(per_voxel(v_ok)) - v_ok  # W_i, not counting itself
        density = jnp.where(width > 0, want / jnp.where(width > 0, width, 1.0), 0.0)
        offers = jnp.zeros(n_voxels + 1, v.dtype).at[arm.reshape(-1)].add(jnp.repeat(density, 7)).at[n_voxels].set(0.0)
        offered = offers[own] - density  # sum of want_i / W_i over the sources that reach j, not itself
        asked = asked + v_ok * offered  # A_j over all source types
        densities.append(density)
        partners.append((v_ok, offered))
    ratio = jnp.where(asked > v, v / jnp.where(asked > 0, asked, 1.0), 1.0)  # r_j: at most V_j from all contacts
    handed, received = jnp.zeros(n, v.dtype), []
    for density, (v_ok, offered) in zip(densities, partners):
        received.append(ratio * v_ok * offered)
        handed = handed + density * (in_reach(per_voxel(v_ok * ratio)) - v_ok * ratio)
    return Delivery(handed, jnp.stack(received, axis=1))


def seen_with_contact(seen_pM, received_molecules_per_s, vmax_molecules_per_s, km_pM):
    """The IL-2 (pM) at which a cell's own law gives its field occupancy f = c_s / (K + c_s) plus
    the contact's d = received / V (module docstring), f + d at most MAX_OCCUPANCY; c_s where
    nothing is received."""
    d = received_molecules_per_s / jnp.where(vmax_molecules_per_s > 0, vmax_molecules_per_s, 1.0)
    f = jnp.minimum(seen_pM / (km_pM + seen_pM) + d, MAX_OCCUPANCY)
    return jnp.where(received_molecules_per_s > 0, km_pM * f / (1.0 - f), seen_pM)

