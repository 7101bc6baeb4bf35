"""Resolution-independent uptake: a sub-grid closure for a spherical cell in a cubic voxel.

The problem
-----------
A cell is a sphere of radius a (um); the lattice has voxels of edge h (um). In a bath c_inf with
no decay, a sphere whose receptors take up IL-2 at the linear rate k (um^3/s; in il2rd's terms
k = k_int R / K_M, K_M in molecules/um^3) takes up (Berg & Purcell; ../shared/science.md, result 5)

    U_sphere = c_inf k S / (S + k),     S = 4 pi D a   (um^3/s, the sphere's diffusive capacity)

and, if it also secretes q, captures the fraction f = k / (S + k) of its own secretion.

A plain voxel model puts a point sink of rate k in one voxel. With the 7-point Laplacian on an
infinite lattice the voxel value is c_0 = c_inf - U g / (D h) and

    U_voxel = c_inf k / (1 + k g / (D h)),

where g = G(0) is the lattice Green's function of the simple cubic lattice at the origin
(-Delta G = delta with unit spacing):

    g = W / 6 = sqrt(6) Gamma(1/24) Gamma(5/24) Gamma(7/24) Gamma(11/24) / (192 pi^3) = 0.252731...

(W = 1.516386 is Watson's simple-cubic integral). One voxel can absorb at most D h / g = 3.957 D h,
below the sphere's 4 pi D a = 12.57 D a when h < 4 pi g a = 3.18 a (15.9 um at a = 5 um): at
h = 8 or 10 um no rescaling of k in one voxel reaches the diffusion limit (the plain model is
49 % / 37 % low there), while at h = 20 um the plain model is 26 % high.

The method (and why)
--------------------
Everything follows from exact lattice Green's function values. Besides g we need only the
nearest-neighbour value g1 = G(1, 0, 0) = g - 1/6 (harmonicity at the origin) and the identity
G(0) + 4 G(1, 1, 0) + G(2, 0, 0) = 6 g1 (harmonicity at (1, 0, 0)).

The cell's sink is spread over a 7-point stencil: its voxel (weight w0) and its 6 face neighbours
(weight w1 = (1 - w0)/6 each). Each stencil voxel j takes up locally, at rate w_j kappa c_j, so the
field equation keeps its diagonal (per-voxel) uptake and il2rd's solvers need no change. For the
isolated cell in an infinite lattice the 2 x 2 symmetric reduction (centre, faces) gives, with
beta = kappa / (D h),

    U_lattice / (c_inf D h) = beta (1 + beta w0 w1) / (1 + beta (g1 + w0/6) + beta^2 w0 w1 g1)  (*)

whose diffusion limit (beta -> oo, any w0 in (0, 1)) is 1/g1 = 11.62 D h: the whole cross absorbs.
Its weak-sink resistance is w^T G w / (D h) = (g1 + w0^2/6) / (D h).

1. Small voxels, h < 4 pi g a (the cross is needed): keep the cell's total rate, kappa = k, and
   choose the shape w0 so that (*) equals U_sphere exactly. Writing T = U_sphere/(c_inf D h),
   M = beta (1 - T g1), C = 6 T (1 - S g1 / (D h)) / (S / (D h)), w0 is the positive root of

       M w0^2 - (M - T) w0 - C = 0,

   which lies in (0, 1] for 4 pi g1 a <= h <= 4 pi g a. Weak cells get the resistance-matched
   shape w0 = sqrt(6 (D h / S - g1)) (0.498 at h = 8, 0.662 at h = 10 for a = 5 um); stronger cells
   concentrate towards their voxel (w0 -> 1 as k -> oo). Because the total rate is the cell's own
   k, secreting with the same weights reproduces the autocrine capture k/(S + k) exactly too
   (reciprocity: the captured fraction is 1 - U_lattice/(c_inf kappa)), and the homogenised
   uptake of many weak cells (result 4 of science.md) is unchanged.
2. Large voxels, h >= 4 pi g a: one voxel suffices (w0 = 1) with the effective rate

       1 / kappa = 1 / k + 1 / S - g / (D h)      (kappa <= k),

   i.e. the lattice's own resistance g/(D h) is replaced by the sphere's 1/S. A local sink cannot
   have more resistance than one voxel, so the cell's own secretion, put into the voxel, would be
   captured as (4 pi g a / h) k/(S + k) only (21 % low at h = 20 um, a = 5 um, for every k). The
   missing sub-voxel resistance R = 1/S - g/(D h) (:func:`sub_voxel_resistance_s_per_um3`) sits
   between the voxel value c_0 and the surface: c_s = c_0 + (q - U) R, so a linear cell takes up

       U = k c_s = kappa (c_0 + q R),

   its voxel law at c_0 plus the own capture kappa R q, which is exact (it captures k/(S + k) of
   its secretion, and sees the sphere's surface value). il2rd carries that term in the field
   equation (kinetics.own_capture_rate: the voxel law at c_0 + q R less the law at c_0, the same
   for saturating cells) and in what the cell takes up and sees (coupling.own_capture,
   coupling.surface_pM).
3. h < 4 pi g1 a (1.08 a): even the cross cannot absorb like the sphere; rejected (ValueError).
   A cell that fits in its voxel (h >= 2a) never gets here.

Both cases are exact for an isolated linear cell in an infinite lattice (to round-off); in a
finite box the far boundary adds the same small resistance to the lattice and to the sphere.

Saturating uptake U = V c/(K_M + c) (V = k_int R molecules/s, k = V/K_M): the linear slope is
corrected as above (stencil voxel j has slope V_j/K_j = w_j kappa), and the maximum is split as
V_j = v_j V with sum v_j = 1, so U -> V at c >> K_M on any lattice. The split v follows the flux
of the linear regime (centre : each face = w0 : w1 (1 + beta w0/6), from c_1/c_0 = 1 + beta w0/6),
so that all stencil voxels approach saturation together as the sphere's surface does; this halves
the error of the transition against the naive v = w. K_j = K_M (v_j / w_j)(k / kappa).
The transition between the two limits is still not exact: per-voxel Michaelis-Menten cannot
carry the sphere's resistance once the cell saturates. Largest error over c, isolated cell,
a = 5 um (tests/test_subgrid.py measures these with steady_field):

    k/S                   0.1     1      3      10     100
    h = 8 um              0.0%   -0.9%  -4.0%  -10.5% -22.4%   (near c ~ (k/S) K_M)
    h = 10 um             0.0%   -0.8%  -3.5%   -8.7% -18.4%
    h = 20 um            -0.5%   -3.9%  -8.0%  -14.8% -24.9%
    (one voxel, no correction: 8 / 33 / 43 / 48 / 50 % low at h = 8; 2 / 12 / 19 / 23 / 26 % high at h = 20)

Exact saturating route (outer iteration, linear solves only): give each cell the linear law with
K_M replaced by K_eff = K_M + c_s (so k_eff = V / (K_M + c_s)), build the fields with
coupling.voxel_fields and solve with uptake 'linear'; read each cell's U and c_s = U / k_eff
(coupling.cell_uptake), its far field c_far = c_s + U / S (tests/sphere.py far_field_pM),
and update K_eff = K_M + c_s(c_far) from the exact sphere (tests/sphere.py linearised_km_pM). Because the
linear correction is exact for any rate, the fixed point is the exact Michaelis-Menten sphere; for
an isolated cell 3 solves from K_eff = K_M reach 3e-4 at h = 8, 10, 20 um and k/S up to 100
(tests/test_subgrid.py). For many interacting cells it is a block-Jacobi iteration over cells
whose convergence has not been studied here. A single-solve exact law would need a new uptake law
in kinetics.py (e.g. for one voxel the smaller root of R U^2 - (K + c_0 + V R) U + V c_0 = 0,
R = 1/S - g/(D h)).

Two or more cells whose stencils share a voxel add their slopes and their maxima there; the voxel's
K_M is the ratio of the two sums (coupling.voxel_fields), exact at both limits. The correction is
calibrated on an isolated cell: in packed tissue (cells one voxel apart) the lattice, like any
cell-per-voxel model, resolves neither the cells' mutual shielding nor their shapes.

What a cell sees: the receptors see the surface concentration, not the voxel value. Read it back
from the cell's own law: for a cell alone on its voxels, the inversion of its uptake c_s = U / k
(linear) or c_s = K_M U / (V - U) (saturating; tests/sphere.py surface_concentration_pM), computed as its
arms' occupancy f / (1 - f) so that it stays finite where U -> V (coupling.surface_pM); each cell's
uptake is its share of the voxels its stencil reaches (coupling.cell_uptake).

Scope: 3-D lattices (the sphere and g are 3-D; on a 2-D lattice, nz = 1, the plain model stays:
config/cell_types.py makes physics.cell_radius=per_type point sinks there). Stencil arms that leave the
lattice through a non-periodic face are folded into the cell's own voxel, which keeps the cell's
total rate, maximum and secretion but is not calibrated.

In a run: the closure is the default (physics.cell_radius = per_type), each cell with its own
type's radius a (the arguments radius_um broadcast per cell). Several cells may sit in one voxel
(cells.cells_per_voxel); each keeps its own stencil centred there and their slopes, maxima and
secretions add, as for overlapping stencils. On voxels h >= 4 pi g a a secreting cell's own
capture (case 2) is its own term: cells sharing its voxel see the voxel's value, which holds its
secretion as if spread over the voxel (q g/(D h) of it, where a neighbour at distance r in the
same voxel would see q/(4 pi D r): on the default T zone at 20 um this leaves Tregs' pSTAT5+
fraction about 8 % below 10 um's, benchmarks/coarsening.py). Saturating secreting cells carry
the closure's transition error on their own IL-2 as well (tests/test_subgrid.py: at 20 um at
most 0.5 / 3.9 / 11.8 % low for k/S = 0.1 / 1 / 10).

This module holds the closure's formulas for one cell: the exact sphere and lattice results
(numpy, the references the tests compare with) and the weights of :func:`effective_uptake` (JAX,
jittable, in the caller's dtype). Where the cells' stencils lie and how their weights become the
lattice's fields, what each cell takes up and sees, is coupling.py, for every cell at once.

Units: um, s, pM, molecules (il2rd/physics/units.py); rates k, kappa, S in um^3/s.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from . import units

WATSON_SIMPLE_CUBIC = (
    math.sqrt(6.0) / (32.0 * math.pi**3)
    * math.gamma(1 / 24) * math.gamma(5 / 24) * math.gamma(7 / 24) * math.gamma(11 / 24)
)
"""Watson's integral for the simple cubic lattice, 1.516386059..."""

LATTICE_GREEN_ORIGIN = WATSON_SIMPLE_CUBIC / 6.0
"""g = G(0, 0, 0) of -Delta G = delta on the unit simple cubic lattice, 0.252731009858663."""

LATTICE_GREEN_NEIGHBOUR = LATTICE_GREEN_ORIGIN - 1.0 / 6.0
"""g1 = G(1, 0, 0) = g - 1/6 = 0.086064343191996 (harmonicity of G at the origin)."""

STENCIL_OFFSETS = np.array(
    [[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.int64
)
"""The 7 voxel offsets of a cell's stencil: its own voxel first, then the 6 face neighbours."""


class SubgridUptake(NamedTuple):
    """Per-cell corrected parameters (arrays broadcast over cells; the last axis of the (..., 7)
    arrays runs over STENCIL_OFFSETS).

    stencil_weights: w_j, summing to 1: the linear uptake rate of the cell is spread as w_j kappa,
        and its secretion is spread with the same weights.
    rate_um3_per_s: kappa, the cell's total corrected linear rate (um^3/s).
    vmax_weights: v_j, summing to 1: the saturating uptake's maximum k_int R is spread as v_j V.
    km_factors: what multiplies the cell's K_M in stencil voxel j, (v_j / w_j)(k / kappa), so that
        voxel j's slope V_j / K_j is w_j kappa (1 where w_j = 0).
    """

    stencil_weights: np.ndarray
    rate_um3_per_s: np.ndarray
    vmax_weights: np.ndarray
    km_factors: np.ndarray


def sphere_capacity_um3_per_s(diffusion_um2_per_s, radius_um):
    """S = 4 pi D a (um^3/s): the diffusion-limited uptake of a sphere per unit bath concentration."""
    return 4.0 * np.pi * diffusion_um2_per_s * radius_um


def single_voxel_limit_um(radius_um):
    """The smallest voxel edge (4 pi g a, um) at which one voxel can absorb like the sphere."""
    return 4.0 * np.pi * LATTICE_GREEN_ORIGIN * radius_um


def cross_limit_um(radius_um):
    """The smallest voxel edge (4 pi g1 a, um) at which the 7-point cross can."""
    return 4.0 * np.pi * LATTICE_GREEN_NEIGHBOUR * np.asarray(radius_um, np.float64)


def centre_weight(spacing_um, diffusion_um2_per_s, radius_um, rate_um3_per_s):
    """w0: the stencil's centre weight (1 for h >= 4 pi g a), see the module docstring. JAX, so
    that it runs inside jitted code: the caller checks h against the closure's limit
    (:func:`check_voxel`)."""
    h, d, a, k = jnp.broadcast_arrays(*(jnp.asarray(v) for v in (spacing_um, diffusion_um2_per_s, radius_um, rate_um3_per_s)))
    g1 = LATTICE_GREEN_NEIGHBOUR
    sigma = sphere_capacity_um3_per_s(d, a) / (d * h)  # S / (D h)
    beta = k / (d * h)
    # divided by beta so that beta -> 0 is regular: m = M/beta, t = T/beta, c = C/beta
    t = sigma / (sigma + beta)
    m = 1.0 - beta * t * g1
    c = 6.0 * t * (1.0 - sigma * g1) / sigma
    w0 = ((m - t) + jnp.sqrt((m - t) ** 2 + 4.0 * m * c)) / (2.0 * m)
    return jnp.where(h >= single_voxel_limit_um(a), 1.0, jnp.clip(w0, 0.0, 1.0))


def effective_uptake(spacing_um, diffusion_um2_per_s, radius_um, rate_um3_per_s) -> SubgridUptake:
    """Corrected stencil weights, total rate kappa (um^3/s), V split and K_M factors for cells of
    radius a (um) and linear rate k (um^3/s; k = k_int R / K_M for saturating cells), on voxels of
    edge h (um) with diffusion D (um^2/s).

    Vectorised: the arguments broadcast against each other (e.g. k of shape (n_cells,)); JAX
    arrays, jittable (coupling.py applies it to every cell; h must pass :func:`check_voxel`).
    For an isolated cell in an infinite lattice, (*) with these parameters equals k S/(S + k)."""
    h, d, a, k = jnp.broadcast_arrays(*(jnp.asarray(v) for v in (spacing_um, diffusion_um2_per_s, radius_um, rate_um3_per_s)))
    w0 = centre_weight(h, d, a, k)
    w1 = (1.0 - w0) / 6.0
    k_over_kappa = 1.0 + k * sub_voxel_resistance_s_per_um3(h, d, a)
    kappa = k / k_over_kappa
    # V split like the linear-regime flux (centre c_0 : faces c_1 = 1 : 1 + beta w0 / 6), so that all
    # stencil voxels approach saturation together, as the sphere's surface does
    beta = kappa / (d * h)
    v0 = w0 / (1.0 + beta * w0 * w1)
    v1 = (1.0 - v0) / 6.0
    face_factor = jnp.where(w1 > 0, v1 / jnp.where(w1 > 0, w1, 1.0), 1.0)
    stack = lambda centre, face: jnp.concatenate([centre[..., None], jnp.repeat(face[..., None], 6, axis=-1)], axis=-1)  # noqa: E731
    return SubgridUptake(
        stencil_weights=stack(w0, w1),
        rate_um3_per_s=kappa,
        vmax_weights=stack(v0, v1),
        km_factors=stack(v0 / w0, face_factor) * k_over_kappa[..., None],
    )


def sub_voxel_resistance_s_per_um3(spacing_um, diffusion_um2_per_s, radius_um):
    """R = 1/S - g/(D h) (s/um^3) of a cell on one voxel (h >= 4 pi g a), 0 on the 7-point cross:
    the resistance between the voxel's value and the sphere's surface that one voxel leaves out,
    c_s = c_0 + (q - U) R for a cell that secretes q and takes up U. JAX."""
    h, d, a = jnp.broadcast_arrays(*(jnp.asarray(v) for v in (spacing_um, diffusion_um2_per_s, radius_um)))
    large = h >= single_voxel_limit_um(a)
    resistance = 1.0 / sphere_capacity_um3_per_s(d, a) - LATTICE_GREEN_ORIGIN / (d * h)
    return jnp.where(large, jnp.maximum(resistance, 0.0), 0.0)


def linear_rate_um3_per_s(vmax_molecules_per_s, km_pM):
    """k = V / K_M (um^3/s), 0 for a cell without receptors."""
    v, km = jnp.asarray(vmax_molecules_per_s), jnp.asarray(km_pM)
    return jnp.where(v > 0, v / units.pM_to_molecules_per_um3(km), 0.0)


def check_voxel(spacing_um: float, radius_um):
    """Refuse (ValueError) a voxel edge h below the closure's limit 4 pi G(1,0,0) a of any radius a
    (um): even the 7-point stencil cannot absorb like the sphere there."""
    a = np.asarray(radius_um, np.float64)
    if np.any(spacing_um < cross_limit_um(a)):
        raise ValueError(
            f"voxel edge {spacing_um:g} um is below 4 pi G(1,0,0) a = {float(np.max(cross_limit_um(a))):g} um: "
            "even the 7-point stencil cannot absorb like the sphere"
        )
