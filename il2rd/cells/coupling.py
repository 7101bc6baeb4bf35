"""The cell coupling: which voxels each cell's uptake and secretion act on, and with what weights.

With the sub-grid closure (physics.cell_radius, the default) each cell i is a sphere of radius a_i
spread over a 7-voxel stencil, its own voxel and its 6 face neighbours (subgrid.STENCIL_OFFSETS),
with weights from its linear rate k_i = V_i / K_i by the closure (subgrid.effective_uptake): w_ij for
its linear rate and secretion, v_ij for its maximum. Arms that leave the lattice through a
non-periodic face act in the cell's own voxel (:func:`fold`), so a cell keeps its total rate, maximum
and secretion at a face. Overlapping stencils (neighbouring cells, several cells in one voxel) add.
A point sink (physics.cell_radius = null) is the one-voxel case: one arm of weight 1, no closure, and
its receptors see its voxel's IL-2.

A :class:`CellCoupling` is built once per scenario (:func:`build`) and is the only description of
where cells act: the set-up (cells.field_coefficients), the coupled step (dynamics.py), the
readouts and the attribution all take it. It is a JAX pytree whose arrays may be traced, and every
function here is jittable with the lattice static, so cells can change their laws and positions
(:func:`moved`) inside jitted code. Laws are passed in per call as (n,) arrays: V (molecules/s),
K_M (pM), secretion q (molecules/s).

Units: um, s, pM, molecules (il2rd/physics/units.py). The closure works in the free-medium problem of
the field per tissue volume (D = alpha D_eff, cells.closure_diffusion_um2_per_s); the fields
:func:`voxel_fields` returns are per interstitial volume, as the lattice equation takes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import jax
import jax.numpy as jnp
import numpy as np

from ..physics import kinetics, receptors, subgrid, units
from .. import pytree
from ..compilation import jit
from ..pytree import STATIC


@pytree.dataclass
@dataclass(frozen=True)
class CellCoupling:
    """flat (n, arms) int32: the flat C-order index of each cell's stencil voxels (arms outside a
    non-periodic face replaced by the cell's own voxel; 7 arms with the closure, 1 for point sinks);
    inside (n, arms) bool: the arms inside the lattice; radius_um (n,): each cell's sphere radius a
    (0 for point sinks); diffusion_um2_per_s, volume_fraction
    (scalars, traced: a batch may sweep them): the closure's D = alpha D_eff and alpha. Static: the
    lattice shape, the voxel edge h (um), the uptake law ('saturating' or 'linear') and which axes
    are periodic; closure: the sub-grid closure (False: point sinks); own_capture: whether some
    cell sits on one voxel (h >= 4 pi g a), where a secreting cell's own IL-2 reaches its receptors
    through the sub-voxel resistance (:func:`offsets_pM`, :func:`own_fields`)."""

    flat: jax.Array
    inside: jax.Array
    radius_um: jax.Array
    diffusion_um2_per_s: jax.Array
    volume_fraction: jax.Array
    shape: tuple[int, int, int] = field(metadata=STATIC)
    spacing_um: float = field(metadata=STATIC)
    uptake: str = field(metadata=STATIC)
    periodic: tuple[bool, bool, bool] = field(default=(False, False, False), metadata=STATIC)
    closure: bool = field(default=True, metadata=STATIC)
    own_capture: bool = field(default=False, metadata=STATIC)

    @property
    def n_cells(self) -> int:
        return self.flat.shape[0]

    @property
    def n_voxels(self) -> int:
        return math.prod(self.shape)

    @property
    def arms(self) -> int:
        return self.flat.shape[1]


@jit(static_argnames=("shape", "periodic"))
def stencils(voxel, shape: tuple[int, int, int], periodic: tuple[bool, bool, bool]):
    """(flat (n, 7) int32, inside (n, 7) bool) of cells at voxel (n, 3): each cell's stencil
    voxels (periodic axes wrap; arms outside a non-periodic face replaced by the cell's own voxel)
    and which arms lie in the lattice."""
    voxel = jnp.asarray(voxel, jnp.int32).reshape(-1, 3)
    n = jnp.asarray(shape, jnp.int32)
    idx = voxel[:, None, :] + jnp.asarray(subgrid.STENCIL_OFFSETS, jnp.int32)[None]
    idx = jnp.where(jnp.asarray(periodic), idx % n, idx)
    inside = jnp.all((idx >= 0) & (idx < n), axis=-1)
    idx = jnp.where(inside[..., None], idx, idx[:, :1, :])
    flat = (idx[..., 0] * shape[1] + idx[..., 1]) * shape[2] + idx[..., 2]
    return flat.astype(jnp.int32), inside


def build(voxel, shape: tuple[int, int, int], spacing_um: float, radius_um, diffusion_um2_per_s: float,
          volume_fraction: float, uptake: str, dtype, periodic: tuple[bool, bool, bool] = (False, False, False)) -> CellCoupling:
    """The coupling of cells at voxel (n, 3) with radii a (um, a number or (n,); None: point sinks)
    on a lattice of `shape` and voxel edge h = spacing_um; diffusion_um2_per_s: the closure's
    D = alpha D_eff. Refuses (ValueError) a voxel below the closure's limit 4 pi G(1,0,0) a for
    any cell (subgrid.check_voxel)."""
    voxel = np.asarray(voxel, np.int64).reshape(-1, 3)
    closure = radius_um is not None
    radius = np.broadcast_to(np.asarray(radius_um if closure else 0.0, np.float64), (len(voxel),))
    if closure and len(radius):
        subgrid.check_voxel(spacing_um, radius)
    shape = tuple(int(n) for n in shape)
    periodic = tuple(bool(p) for p in periodic)
    own_capture = closure and bool(np.any(spacing_um >= subgrid.single_voxel_limit_um(radius)))
    cp = CellCoupling(jnp.zeros((len(voxel), 7 if closure else 1), jnp.int32), jnp.zeros((len(voxel), 7 if closure else 1), bool),
                      jnp.asarray(radius, dtype), jnp.asarray(diffusion_um2_per_s, dtype), jnp.asarray(volume_fraction, dtype),
                      shape, float(spacing_um), uptake, periodic, closure, own_capture)
    return moved(cp, jnp.asarray(voxel, jnp.int32))


def moved(coupling: CellCoupling, voxel) -> CellCoupling:
    """The coupling with its cells at voxel (n, 3) (jittable: cells that move, motility.py)."""
    flat, inside = stencils(voxel, coupling.shape, coupling.periodic)
    return replace(coupling, flat=flat[:, :coupling.arms], inside=inside[:, :coupling.arms])


def fold(coupling: CellCoupling, weights):
    """Stencil weights (n, arms) with the weight of arms outside the lattice moved to the cell's own
    voxel (arm 0)."""
    w = jnp.where(coupling.inside, weights, 0.0)
    return w + jnp.where(np.arange(coupling.arms) == 0, (1.0 - w.sum(axis=1))[:, None], 0.0)


def laws(coupling: CellCoupling, vmax_molecules_per_s, km_pM) -> subgrid.SubgridUptake:
    """Each cell's closure (subgrid.effective_uptake) for its law V, K_M; the per-arm arrays
    (n, arms) as for a cell in the open lattice (:func:`fold` moves the weight of arms beyond a face
    to the cell's own voxel: the fields do, the sharing keeps each arm's own term). Point sinks: one
    arm of weight 1, the uncorrected rate k = V / K_M."""
    n = coupling.n_cells
    v, km = jnp.broadcast_to(vmax_molecules_per_s, (n,)), jnp.broadcast_to(km_pM, (n,))
    if not coupling.closure:
        one = jnp.ones((n, 1), coupling.radius_um.dtype)
        return subgrid.SubgridUptake(one, subgrid.linear_rate_um3_per_s(v, km), one, one)
    p = subgrid.effective_uptake(coupling.spacing_um, coupling.diffusion_um2_per_s, coupling.radius_um,
                                 subgrid.linear_rate_um3_per_s(v, km))
    # computed once per cell: XLA would otherwise fuse the closure's formulas into every arm's use
    p = jax.lax.optimization_barrier(p)
    full = lambda a: jnp.broadcast_to(a, (n, 7))  # noqa: E731
    return subgrid.SubgridUptake(full(p.stencil_weights), p.rate_um3_per_s, full(p.vmax_weights), full(p.km_factors))


def scatter(coupling: CellCoupling, values):
    """The field (coupling.shape) with values (n, 7) added at each cell's stencil voxels."""
    flat = jnp.zeros(coupling.n_voxels, values.dtype).at[coupling.flat.reshape(-1)].add(values.reshape(-1))
    return flat.reshape(coupling.shape)


def spread(coupling: CellCoupling, weights, values):
    """Fields (*shape, m) of per-cell values (n, m) spread over the cells' stencils with weights
    (n, m, arms) or (n, 1, arms): the centre arm on the cell's voxel, the face arms (equal, as
    :func:`laws` gives them) on its 6 face neighbours, arms beyond a non-periodic face on the cell's
    own voxel (as :func:`fold`). The same sum as :func:`scatter`, computed as one scatter onto the
    cells' own voxels and a neighbour sum of the face part, whose ghost layer repeats the edge (the
    folded arms) or wraps (periodic axes): n updates instead of 7 n."""
    weighted = weights * values[..., None]
    centre, m = weighted[..., 0], values.shape[1]
    if coupling.arms == 1:
        return jnp.zeros((coupling.n_voxels, m), values.dtype).at[coupling.flat[:, 0]].add(centre).reshape(*coupling.shape, m)
    at_cells = jnp.zeros((coupling.n_voxels, 2 * m), values.dtype).at[coupling.flat[:, 0]].add(
        jnp.concatenate([centre, weighted[..., 1]], axis=1)).reshape(*coupling.shape, 2 * m)
    total, face_field = at_cells[..., :m], at_cells[..., m:]
    for axis, n in enumerate(coupling.shape):
        width = [(1, 1) if a == axis else (0, 0) for a in range(3)] + [(0, 0)]
        padded = jnp.pad(face_field, width, mode="wrap" if coupling.periodic[axis] else "edge")
        total = total + jax.lax.slice_in_dim(padded, 0, n, axis=axis) + jax.lax.slice_in_dim(padded, 2, n + 2, axis=axis)
    return total


def voxel_fields(coupling: CellCoupling, vmax_molecules_per_s, km_pM, secretion_molecules_per_s):
    """The lattice coefficients of the cells' laws and secretions, per interstitial volume alpha h^3:

        s     = sum_i w_ij q_i / (6.022e-4 alpha h^3)                  pM/s
        v_max = sum_i v_ij V_i / (6.022e-4 alpha h^3)                  pM/s
        K_M   = alpha h^3 v_max / sum_i w_ij kappa_i                    pM (1 where no cell reaches)

    The combined K_M keeps both the summed linear slope and the summed maximum of the cells that
    reach a voxel exact (their sum of Michaelis-Menten terms is approximated by one)."""
    n = coupling.n_cells
    v, q = jnp.broadcast_to(vmax_molecules_per_s, (n,)), jnp.broadcast_to(secretion_molecules_per_s, (n,))
    p = laws(coupling, v, km_pM)
    per_cell = jnp.stack([q, v, p.rate_um3_per_s], axis=1)  # (n, 3): secretion, maximum, linear rate
    weights = jnp.stack([p.stencil_weights, p.vmax_weights, p.stencil_weights], axis=1)  # (n, 3, arms)
    fields = spread(coupling, weights, per_cell)
    volume = coupling.volume_fraction * coupling.spacing_um**3  # alpha h^3, um^3
    secretion, vmax = (units.cell_rate_to_voxel_rate_pM_per_s(fields[..., k], volume) for k in (0, 1))
    rate = fields[..., 2]  # um^3/s
    km = jnp.where(rate > 0, vmax * volume / jnp.where(rate > 0, rate, 1.0), 1.0)
    return secretion, vmax, km


def offsets_pM(coupling: CellCoupling, secretion_molecules_per_s):
    """delta_i = q_i R_i (pM, (n,)): how much IL-2 a secreting cell on one voxel has at its surface
    beyond its voxel's value from its own secretion, R_i = 1/S_i - g/(D h) the sub-voxel resistance
    (subgrid.sub_voxel_resistance_s_per_um3); 0 on the 7-point cross (small voxels), where the
    stencil carries the self-capture itself, and for cells that do not secrete."""
    q = jnp.broadcast_to(secretion_molecules_per_s, (coupling.n_cells,))
    if not coupling.own_capture:
        return jnp.zeros_like(q)
    resistance = subgrid.sub_voxel_resistance_s_per_um3(coupling.spacing_um, coupling.diffusion_um2_per_s, coupling.radius_um)
    return units.molecules_per_um3_to_pM(jnp.maximum(q, 0.0) * resistance)


def own_fields(coupling: CellCoupling, vmax_molecules_per_s, km_pM, secretion_molecules_per_s):
    """(v_own pM/s, K_own pM, delta pM): the own-capture law (kinetics.own_capture_rate) of the
    secreting cells on one voxel, in their voxels,

        v_own = sum_i V_i / (6.022e-4 alpha h^3),   K_own = alpha h^3 v_own / sum_i kappa_i,
        delta = sum_i V_i delta_i / sum_i V_i

    (V_i the cell's maximum, kappa_i its corrected linear rate, delta_i :func:`offsets_pM`; one law
    per voxel, exact for one such cell in it); the scalars 0, 1, 0 where no cell is on one voxel."""
    dtype = coupling.radius_um.dtype
    if not coupling.own_capture:
        return jnp.zeros((), dtype), jnp.ones((), dtype), jnp.zeros((), dtype)
    n = coupling.n_cells
    v = jnp.broadcast_to(vmax_molecules_per_s, (n,))
    delta = offsets_pM(coupling, secretion_molecules_per_s)
    own = (delta > 0) & (v > 0)
    rate = laws(coupling, v, km_pM).rate_um3_per_s
    per_cell = jnp.where(own[:, None], jnp.stack([v, rate, v * delta], axis=1), 0.0)
    fields = jnp.zeros((coupling.n_voxels, 3), per_cell.dtype).at[coupling.flat[:, 0]].add(per_cell)
    volume = coupling.volume_fraction * coupling.spacing_um**3
    v_sum, rate_sum, v_delta = (fields[:, k].reshape(coupling.shape) for k in range(3))
    has = v_sum > 0
    vmax = units.cell_rate_to_voxel_rate_pM_per_s(v_sum, volume)
    km = jnp.where(has, vmax * volume / jnp.where(has, rate_sum, 1.0), 1.0)
    return vmax, km, jnp.where(has, v_delta / jnp.where(has, v_sum, 1.0), 0.0)


def own_capture(coupling: CellCoupling, c_pM, vmax_molecules_per_s, km_pM, secretion_molecules_per_s, field_own_pM_per_s):
    """(n,) molecules/s: each cell's part of its voxel's own capture d (kinetics.own_capture_rate,
    field_own_pM_per_s), in proportion to its own term V_i [(c + delta_i)/(K_i + c + delta_i) -
    c/(K_i + c)] (K_i its one-voxel K_M, V_i delta_i / K_i if 'linear'); 0 for cells without one."""
    n = coupling.n_cells
    if not coupling.own_capture:
        return jnp.zeros((n,), coupling.radius_um.dtype)
    v, km = jnp.broadcast_to(vmax_molecules_per_s, (n,)), jnp.broadcast_to(km_pM, (n,))
    k = laws(coupling, v, km).km_factors[:, 0] * km
    delta = offsets_pM(coupling, secretion_molecules_per_s)
    c = jnp.maximum(c_pM, 0.0).reshape(-1)[coupling.flat[:, 0]]
    term = jnp.where((delta > 0) & (v > 0), kinetics.own_capture_law(c, v, k, delta, coupling.uptake), 0.0)
    total = jnp.zeros(coupling.n_voxels, term.dtype).at[coupling.flat[:, 0]].add(term)[coupling.flat[:, 0]]
    per_voxel = units.voxel_rate_to_cell_rate_molecules_per_s(
        jnp.broadcast_to(field_own_pM_per_s, coupling.shape).reshape(-1)[coupling.flat[:, 0]],
        coupling.volume_fraction * coupling.spacing_um**3)
    return jnp.where(total > 0, term / jnp.where(total > 0, total, 1.0), 0.0) * per_voxel


def coefficient_fields(coupling: CellCoupling, classes, secretion_molecules_per_s, intermediate: bool = False) -> dict:
    """The kinetics.FieldCoefficients fields of the cells' laws and secretions, by name (the set-up
    and every coupled step use them), for classes = (V_high, K_high, V_int, K_int), each (n,):
    with the closure the two receptor classes collapsed into one law (receptors.collapsed_law) in
    :func:`voxel_fields` and :func:`own_fields`; point sinks keep the classes apart, the
    intermediate one with fields of its own where `intermediate` (else the scalars 0 and 1)."""
    q = secretion_molecules_per_s
    if coupling.closure:
        law = (*receptors.collapsed_law(*classes), q)
        names = ("secretion_pM_per_s", "vmax_pM_per_s", "km_pM", "vmax_own_pM_per_s", "km_own_pM", "own_offset_pM")
        return dict(zip(names, (*voxel_fields(coupling, *law), *own_fields(coupling, *law))))
    v_high, k_high, v_int, k_int = classes
    fields = dict(zip(("secretion_pM_per_s", "vmax_pM_per_s", "km_pM"), voxel_fields(coupling, v_high, k_high, q)))
    if intermediate:
        _, fields["vmax_intermediate_pM_per_s"], fields["km_intermediate_pM"] = voxel_fields(coupling, v_int, k_int, 0.0)
    return fields


def sharing(coupling: CellCoupling, c_pM, vmax_molecules_per_s, km_pM):
    """p_ij (n, 7): cell i's part of the uptake of its stencil voxel j, in proportion to its own
    Michaelis-Menten term there,

        p_ij = sigma_ij / sum_{cells i' reaching j} sigma_i'j,
        sigma_ij = V_ij / (K_ij + c_j)  ('saturating'),  V_ij / K_ij  ('linear'),

    V_ij = v_ij V_i, K_ij = K_i x km_factor_j (subgrid.effective_uptake); 0 where no cell with
    receptors reaches. A cell takes up sum_j p_ij sigma_j x_j of any part x of the field
    (:func:`taken`): of the whole field in :func:`cell_uptake`, of one source's part in
    attribution.py."""
    n = coupling.n_cells
    v, km = jnp.broadcast_to(vmax_molecules_per_s, (n,)), jnp.broadcast_to(km_pM, (n,))
    p = laws(coupling, v, km)
    v_arm = p.vmax_weights * v[:, None]
    k_arm = p.km_factors * km[:, None]
    c = jnp.maximum(c_pM, 0.0).reshape(-1)[coupling.flat]
    own = v_arm / (k_arm if coupling.uptake == "linear" else k_arm + c)
    total = scatter(coupling, own).reshape(-1)[coupling.flat]
    return jnp.where(total > 0, own / jnp.where(total > 0, total, 1.0), 0.0)


def taken(coupling: CellCoupling, share, per_voxel):
    """sum_j p_ij x_j (n,): each cell's part of a per-voxel quantity x (a field's shape) through
    its stencil shares p (:func:`sharing`), e.g. x = sigma c_k, the uptake of source k's IL-2."""
    return jnp.sum(share * per_voxel.reshape(-1)[coupling.flat], axis=1)


def cell_uptake(coupling: CellCoupling, c_pM, vmax_molecules_per_s, km_pM, secretion_molecules_per_s=0.0, coef=None):
    """(uptake molecules/s, seen pM), each (n,): each cell's share (:func:`sharing`) of the uptake
    sigma c of the voxels its stencil reaches, plus its part of its voxel's own capture d
    (:func:`own_capture`), so that the cells' uptakes add up to the field's u = sigma c + d, and
    the IL-2 its receptors see (:func:`surface_pM`). secretion_molecules_per_s: each cell's q;
    coef: the field's kinetics.FieldCoefficients for these laws (its sigma and d), else built
    from the laws (:func:`voxel_fields`, :func:`own_fields`)."""
    n = coupling.n_cells
    v, km, q = (jnp.broadcast_to(a, (n,)) for a in (vmax_molecules_per_s, km_pM, secretion_molecules_per_s))
    c = jnp.maximum(c_pM, 0.0)
    if coef is None:
        _, vmax_field, km_field = voxel_fields(coupling, v, km, 0.0)
        lattice = vmax_field * c / (km_field if coupling.uptake == "linear" else km_field + c)
        own = kinetics.own_capture_law(c, *own_fields(coupling, v, km, q), coupling.uptake)
    else:
        lattice, own = kinetics.uptake_per_il2(c, coef) * c, kinetics.own_capture_rate(c, coef)
    per_voxel = units.voxel_rate_to_cell_rate_molecules_per_s(lattice, coupling.volume_fraction * coupling.spacing_um**3)
    uptake = taken(coupling, sharing(coupling, c, v, km), per_voxel) + own_capture(coupling, c, v, km, q, own)
    return uptake, surface_pM(coupling, c, v, km, q)


def surface_pM(coupling: CellCoupling, c_pM, vmax_molecules_per_s, km_pM, secretion_molecules_per_s=0.0):
    """The IL-2 each cell's receptors see (pM, (n,)): the concentration at which the cell's own law
    gives the occupancy its stencil arms have in the field,

        c_s = K_M f / (1 - f),   f = sum_j v_j c_j / (K_j + c_j),   1 - f = sum_j v_j K_j / (K_j + c_j)

    ('saturating'; the arms' maximum shares v_j add up to 1, K_j = K_M x km_factor_j), and
    c_s = K_M sum_j v_j c_j / K_j ('linear'). For a cell alone on its voxels f = U / V, so c_s is the
    inversion K_M U / (V - U) of its uptake (for a linear, isolated cell on small voxels the stencil
    average sum_j w_j c_j; on one large voxel c_0 kappa / k, below the voxel value). Written as the
    ratio of the two sums it stays finite and exact to round-off where U -> V (high-dose therapy:
    the difference V - U is 0 in float32), and it is monotone in every c_j. In voxels that cells
    share it is the cell's own law at the voxel's IL-2, where the uptake share differs by the
    combined voxel law's error (which vanishes in both limits). A secreting cell on one voxel reads
    its voxel at c_0 + delta_i (:func:`offsets_pM`): its own IL-2 behind the sub-voxel resistance.
    0 for a cell without receptors. A point sink sees its voxel's value, receptors or not."""
    if not coupling.closure:
        return jnp.maximum(c_pM, 0.0).reshape(-1)[coupling.flat[:, 0]]
    n = coupling.n_cells
    v, km = jnp.broadcast_to(vmax_molecules_per_s, (n,)), jnp.broadcast_to(km_pM, (n,))
    p = laws(coupling, v, km)
    k_arm = p.km_factors * km[:, None]
    c = jnp.maximum(c_pM, 0.0).reshape(-1)[coupling.flat]
    if coupling.own_capture:
        c = c.at[:, 0].add(offsets_pM(coupling, secretion_molecules_per_s))
    if coupling.uptake == "linear":
        seen = km * jnp.sum(p.vmax_weights * c / k_arm, axis=1)
    else:
        occupied = jnp.sum(p.vmax_weights * c / (k_arm + c), axis=1)
        free = jnp.sum(p.vmax_weights * k_arm / (k_arm + c), axis=1)
        seen = km * occupied / jnp.where(free > 0, free, 1.0)
    return jnp.where(v > 0, seen, 0.0)


cell_uptake_jit = jit(cell_uptake)
sharing_jit = jit(sharing)
taken_jit = jit(taken)
voxel_fields_jit = jit(voxel_fields)
coefficient_fields_jit = jit(coefficient_fields, static_argnames=("intermediate",))
own_capture_jit = jit(own_capture)
