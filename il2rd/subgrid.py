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

   i.e. the lattice's own resistance g/(D h) is replaced by the sphere's 1/S. The autocrine
   fraction then comes out as (4 pi g a / h) k/(S + k) (the exact lattice value is
   kappa g/(D h) / (1 + kappa g/(D h)), 21 % low at h = 20 um, a = 5 um, for every k): a local sink
   cannot have more resistance than one voxel, so bath uptake and self-capture cannot both match.
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
:func:`voxel_fields` and solve with uptake 'linear'; read each cell's U and c_s = U / k_eff
(:func:`cell_uptake_molecules_per_s`), its far field c_far = c_s + U / S (:func:`far_field_pM`),
and update K_eff = K_M + c_s(c_far) from the exact sphere (:func:`linearised_km_pM`). Because the
linear correction is exact for any rate, the fixed point is the exact Michaelis-Menten sphere; for
an isolated cell 3 solves from K_eff = K_M reach 3e-4 at h = 8, 10, 20 um and k/S up to 100
(tests/test_subgrid.py). For many interacting cells it is a block-Jacobi iteration over cells
whose convergence has not been studied here. A single-solve exact law would need a new uptake law
in kinetics.py (e.g. for one voxel the smaller root of R U^2 - (K + c_0 + V R) U + V c_0 = 0,
R = 1/S - g/(D h)).

Two or more cells whose stencils share a voxel add their slopes and their maxima there; the voxel's
K_M is the ratio of the two sums (:func:`voxel_fields`), exact at both limits. The correction is
calibrated on an isolated cell: in packed tissue (cells one voxel apart) the lattice, like any
cell-per-voxel model, resolves neither the cells' mutual shielding nor their shapes.

What a cell sees: the receptors see the surface concentration, not the voxel value. Read it back
from the cell's own law and its uptake: c_s = U / k (linear) or c_s = K_M U / (V - U) (saturating,
:func:`surface_concentration_pM`), with each cell's uptake shared out of the voxels its stencil
reaches (:func:`cell_uptake_molecules_per_s`).

Scope: 3-D lattices (the sphere and g are 3-D; on a 2-D lattice, nz = 1, the plain model stays:
config.py makes physics.cell_radius=per_type point sinks there). Stencil arms that leave the
lattice through a non-periodic face are folded into the cell's own voxel, which keeps the cell's
total rate, maximum and secretion but is not calibrated.

In a run: the closure is the default (physics.cell_radius = per_type), each cell with its own
type's radius a (the arguments radius_um broadcast per cell). Several cells may sit in one voxel
(cells.cells_per_voxel); each keeps its own stencil centred there and their slopes, maxima and
secretions add, as for overlapping stencils. On voxels h >= 4 pi g a a producer's self-capture is
the (4 pi g a / h) k/(S + k) of case 2 (about 20 % low at 20 um, 5 um cells); the sphere's would
need the sub-voxel resistance R = 1/S - g/(D h) in series with its secretion as well, i.e. a
fraction kappa R of q taken up before it reaches the lattice, which is not built.

Arrays: the closure's formulas take numpy arrays (float64, the readouts and the steady set-up) or
JAX arrays (in their own dtype, inside the jitted coupled step of dynamics.py, where each cell's
IL-2Ra and so its law and stencil weights change every step); one implementation serves both
(:func:`stencil_fields`, :func:`stencil_cell_uptake`). The stencils' voxels never move: they are
placed once on the host (:func:`folded_stencils`).

Units: um, s, pM, molecules (il2rd/units.py); rates k, kappa, S in um^3/s.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from . import units
from .receptors import _xp

WATSON_SIMPLE_CUBIC = (
    math.sqrt(6.0) / (32.0 * math.pi**3)
    * math.gamma(1 / 24) * math.gamma(5 / 24) * math.gamma(7 / 24) * math.gamma(11 / 24)
)
"""Watson's integral for the simple cubic lattice, 1.516386059..."""

LATTICE_GREEN_ORIGIN = WATSON_SIMPLE_CUBIC / 6.0
"""g = G(0, 0, 0) of -Delta G = delta on the unit simple cubic lattice, 0.252731009858663."""

LATTICE_GREEN_NEIGHBOUR = LATTICE_GREEN_ORIGIN - 1.0 / 6.0
"""g1 = G(1, 0, 0) = g - 1/6 = 0.086064343191996 (harmonicity of G at the origin)."""

def _arrays(*values):
    """(xp, arrays): jax.numpy and the values as JAX arrays (their own dtype) if any is one, else
    numpy and float64 arrays."""
    xp = _xp(*values)
    return xp, [xp.asarray(v) if xp is jnp else np.asarray(v, np.float64) for v in values]


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
    _, (d, a) = _arrays(diffusion_um2_per_s, radius_um)
    return 4.0 * np.pi * d * a


def single_voxel_limit_um(radius_um):
    """The smallest voxel edge (4 pi g a, um) at which one voxel can absorb like the sphere."""
    return 4.0 * np.pi * LATTICE_GREEN_ORIGIN * _arrays(radius_um)[1][0]


def cross_limit_um(radius_um):
    """The smallest voxel edge (4 pi g1 a, um) at which the 7-point cross can."""
    return 4.0 * np.pi * LATTICE_GREEN_NEIGHBOUR * np.asarray(radius_um, np.float64)


def sphere_uptake_um3_per_s(diffusion_um2_per_s, radius_um, rate_um3_per_s):
    """U_sphere / c_inf = k S / (S + k) (um^3/s) for a linear consumer sphere in a bath."""
    s = sphere_capacity_um3_per_s(diffusion_um2_per_s, radius_um)
    k = np.asarray(rate_um3_per_s, np.float64)
    return k * s / (s + k)


def sphere_autocrine_fraction(diffusion_um2_per_s, radius_um, rate_um3_per_s):
    """The fraction k / (S + k) of its own secretion that a linear consumer sphere captures."""
    s = sphere_capacity_um3_per_s(diffusion_um2_per_s, radius_um)
    k = np.asarray(rate_um3_per_s, np.float64)
    return k / (s + k)


def sphere_saturating_uptake_molecules_per_s(c_inf_pM, diffusion_um2_per_s, radius_um, vmax_molecules_per_s, km_pM):
    """Exact uptake (molecules/s) of a Michaelis-Menten sphere, U = V c_s/(K_M + c_s), in a bath.

    The surface concentration obeys c_s = c_inf - U / S (molecules/um^3), so U is the smaller root
    of U^2/S - U (K + c_inf + V/S) + V c_inf = 0 (K, c_inf in molecules/um^3)."""
    s = sphere_capacity_um3_per_s(diffusion_um2_per_s, radius_um)
    c = units.pM_to_molecules_per_um3(np.asarray(c_inf_pM, np.float64))
    k_m = units.pM_to_molecules_per_um3(np.asarray(km_pM, np.float64))
    v = np.asarray(vmax_molecules_per_s, np.float64)
    b = k_m + c + v / s
    return 2.0 * v * c / (b + np.sqrt(np.maximum(b * b - 4.0 * v * c / s, 0.0)))


def lattice_uptake_um3_per_s(spacing_um, diffusion_um2_per_s, rate_um3_per_s, centre_weight):
    """U_lattice / c_inf (um^3/s) of a stencil sink (total rate kappa, centre weight w0, faces
    (1 - w0)/6) in an infinite decay-free lattice: formula (*) of the module docstring.
    centre_weight = 1 is the plain one-voxel model, U = kappa / (1 + kappa g / (D h))."""
    dh = np.asarray(diffusion_um2_per_s, np.float64) * np.asarray(spacing_um, np.float64)
    beta = np.asarray(rate_um3_per_s, np.float64) / dh
    w0 = np.asarray(centre_weight, np.float64)
    w0w1 = w0 * (1.0 - w0) / 6.0
    g1 = LATTICE_GREEN_NEIGHBOUR
    return dh * beta * (1.0 + beta * w0w1) / (1.0 + beta * (g1 + w0 / 6.0) + beta**2 * w0w1 * g1)


def lattice_autocrine_fraction(spacing_um, diffusion_um2_per_s, rate_um3_per_s, centre_weight):
    """Fraction of its own secretion that a stencil cell captures when it secretes with the same
    weights as it takes up: 1 - U_lattice / (c_inf kappa) (reciprocity of the symmetric operator)."""
    kappa = np.asarray(rate_um3_per_s, np.float64)
    u = lattice_uptake_um3_per_s(spacing_um, diffusion_um2_per_s, kappa, centre_weight)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(kappa > 0, 1.0 - u / np.where(kappa > 0, kappa, 1.0), 0.0)


def centre_weight(spacing_um, diffusion_um2_per_s, radius_um, rate_um3_per_s):
    """w0: the stencil's centre weight (1 for h >= 4 pi g a), see the module docstring.
    numpy, or jax.numpy for JAX arrays (whose values cannot be checked here: the config checks h)."""
    xp, arrays = _arrays(spacing_um, diffusion_um2_per_s, radius_um, rate_um3_per_s)
    h, d, a, k = xp.broadcast_arrays(*arrays)
    if xp is np:
        _check(h, a, k)
    g1 = LATTICE_GREEN_NEIGHBOUR
    sigma = sphere_capacity_um3_per_s(d, a) / (d * h)  # S / (D h)
    beta = k / (d * h)
    # divided by beta so that beta -> 0 is regular: m = M/beta, t = T/beta, c = C/beta
    t = sigma / (sigma + beta)
    m = 1.0 - beta * t * g1
    c = 6.0 * t * (1.0 - sigma * g1) / sigma
    w0 = ((m - t) + xp.sqrt((m - t) ** 2 + 4.0 * m * c)) / (2.0 * m)
    return xp.where(h >= single_voxel_limit_um(a), 1.0, xp.clip(w0, 0.0, 1.0))


def effective_uptake(spacing_um, diffusion_um2_per_s, radius_um, rate_um3_per_s) -> SubgridUptake:
    """Corrected stencil weights, total rate kappa (um^3/s), V split and K_M factors for cells of
    radius a (um) and linear rate k (um^3/s; k = k_int R / K_M for saturating cells), on voxels of
    edge h (um) with diffusion D (um^2/s).

    Vectorised: the arguments broadcast against each other (e.g. k of shape (n_cells,)); numpy,
    or jax.numpy where k is a JAX array (the coupled step).
    For an isolated cell in an infinite lattice, (*) with these parameters equals k S/(S + k)."""
    xp, arrays = _arrays(spacing_um, diffusion_um2_per_s, radius_um, rate_um3_per_s)
    h, d, a, k = xp.broadcast_arrays(*arrays)
    w0 = centre_weight(h, d, a, k)
    w1 = (1.0 - w0) / 6.0
    large = h >= single_voxel_limit_um(a)
    extra_resistance = 1.0 / sphere_capacity_um3_per_s(d, a) - LATTICE_GREEN_ORIGIN / (d * h)  # s/um^3, >= 0 when large
    k_over_kappa = xp.where(large, 1.0 + k * xp.where(large, extra_resistance, 0.0), 1.0)
    kappa = k / k_over_kappa
    # V split like the linear-regime flux (centre c_0 : faces c_1 = 1 : 1 + beta w0 / 6), so that all
    # stencil voxels approach saturation together, as the sphere's surface does
    beta = kappa / (d * h)
    v0 = w0 / (1.0 + beta * w0 * w1)
    v1 = (1.0 - v0) / 6.0
    face_factor = xp.where(w1 > 0, v1 / xp.where(w1 > 0, w1, 1.0), 1.0)
    stack = lambda centre, face: xp.concatenate([centre[..., None], xp.repeat(face[..., None], 6, axis=-1)], axis=-1)  # noqa: E731
    return SubgridUptake(
        stencil_weights=stack(w0, w1),
        rate_um3_per_s=kappa,
        vmax_weights=stack(v0, v1),
        km_factors=stack(v0 / w0, face_factor) * k_over_kappa[..., None],
    )


def voxel_fields(shape, voxel, spacing_um, diffusion_um2_per_s, radius_um, vmax_molecules_per_s, km_pM,
                 secretion_molecules_per_s, periodic=(False, False, False)):
    """Corrected per-voxel fields for kinetics.FieldCoefficients from per-cell values (n,):

        secretion_pM_per_s = sum_cells w_j q / (6.022e-4 h^3)
        vmax_pM_per_s      = sum_cells v_j V / (6.022e-4 h^3)
        km_pM              = vmax_pM_per_s h^3 / sum_cells w_j kappa   (1 where no cell reaches)

    Overlapping stencils add their rates and maxima; the combined K_M keeps both the summed linear
    slope and the summed maximum exact (sum V_i c/(K_i + c) is then approximated by one
    Michaelis-Menten term). Returns (secretion, vmax, km), each of `shape` (numpy, float64)."""
    flat, inside = folded_stencils(voxel, shape, periodic)
    return stencil_fields(shape, flat, inside, spacing_um, diffusion_um2_per_s, radius_um, vmax_molecules_per_s, km_pM,
                          secretion_molecules_per_s)


def stencil_fields(shape, flat, inside, spacing_um, diffusion_um2_per_s, radius_um, vmax_molecules_per_s, km_pM,
                   secretion_molecules_per_s):
    """:func:`voxel_fields` for stencils already placed by :func:`folded_stencils` (flat (n, 7)
    voxel indices, inside (n, 7)): the weights of arms outside the lattice are folded into the
    cell's own voxel (:func:`fold_weights`), the scatter adds overlapping stencils. numpy, or
    jax.numpy for JAX arrays: the jitted coupled step rebuilds the fields each step from the cells'
    current laws V (molecules/s), K_M (pM) and secretion q (molecules/s), each (n,) or a scalar;
    spacing_um must be a number (h^3 converts molecules/s to pM/s)."""
    xp, (v, km, q) = _arrays(vmax_molecules_per_s, km_pM, secretion_molecules_per_s)
    n = flat.shape[0]
    p = effective_uptake(spacing_um, diffusion_um2_per_s, radius_um, _linear_rate_um3_per_s(v, km))
    volume = float(spacing_um) ** 3
    to_pM = lambda f: units.cell_rate_to_voxel_rate_pM_per_s(f, volume)  # noqa: E731
    w = fold_weights(xp.broadcast_to(p.stencil_weights, (n, 7)), inside)
    vw = fold_weights(xp.broadcast_to(p.vmax_weights, (n, 7)), inside)
    size = math.prod(tuple(shape))
    scatter = lambda weights, values: _scatter_add(  # noqa: E731
        size, flat, weights * xp.broadcast_to(values, (n,))[:, None]).reshape(tuple(shape))
    secretion = to_pM(scatter(w, q))
    vmax = to_pM(scatter(vw, v))
    rate = scatter(w, p.rate_um3_per_s)  # um^3/s
    km_field = xp.where(rate > 0, vmax * volume / xp.where(rate > 0, rate, 1.0), 1.0)
    return secretion, vmax, km_field


def surface_concentration_pM(uptake_molecules_per_s, vmax_molecules_per_s, km_pM, law="saturating"):
    """The IL-2 a cell's receptors see (pM): the concentration at which its own law gives its
    uptake, c_s = K_M U / V (linear) or K_M U / (V - U) (saturating). 0 for a cell without
    receptors; inf if U >= V (saturating). numpy or jax.numpy, by the inputs."""
    xp, (u, v, k_m) = _arrays(uptake_molecules_per_s, vmax_molecules_per_s, km_pM)
    if law == "linear":
        out = k_m * u / xp.where(v > 0, v, 1.0)
    elif law == "saturating":
        out = xp.where(u < v, k_m * u / xp.where(u < v, v - u, 1.0), np.inf)
    else:
        raise ValueError(f"law {law!r}; allowed: 'saturating', 'linear'")
    return xp.where(v > 0, out, 0.0)


def cell_uptake_molecules_per_s(c_pM, voxel, spacing_um, diffusion_um2_per_s, radius_um, vmax_molecules_per_s,
                                km_pM, law="saturating", periodic=(False, False, False)):
    """Each cell's uptake (molecules/s) from a steady field c (pM) built with :func:`voxel_fields`,
    and the IL-2 its receptors see (pM, :func:`surface_concentration_pM`).

    The uptake of a stencil voxel (one Michaelis-Menten term for all the cells that reach it) is
    shared among those cells in proportion to their own terms V_ij c/(K_ij + c) there
    (:func:`uptake_sharing`), so the cells' uptakes add up to the field's. For a linear, isolated
    cell on small voxels the seen IL-2 is the stencil average sum_j w_j c_j; on large voxels it is
    c_0 kappa / k (below the voxel value)."""
    c = np.asarray(c_pM, np.float64)
    flat, inside = folded_stencils(voxel, c.shape, periodic)
    return stencil_cell_uptake(c, flat, inside, spacing_um, diffusion_um2_per_s, radius_um, vmax_molecules_per_s, km_pM, law)


def stencil_cell_uptake(c_pM, flat, inside, spacing_um, diffusion_um2_per_s, radius_um, vmax_molecules_per_s, km_pM,
                        law="saturating"):
    """:func:`cell_uptake_molecules_per_s` for stencils already placed by :func:`folded_stencils`:
    (uptake molecules/s, seen pM), each (n,). numpy, or jax.numpy for JAX arrays (what each cell
    sees in the coupled step, as readouts.cell_columns reads it)."""
    xp, (c, v, km) = _arrays(c_pM, vmax_molecules_per_s, km_pM)
    c = xp.maximum(c, 0.0)
    n = flat.shape[0]
    v, km = v * xp.ones(n), km * xp.ones(n)
    share = stencil_sharing(c, flat, spacing_um, diffusion_um2_per_s, radius_um, v, km, law)
    # the field's uptake in each voxel, from the same combined coefficients voxel_fields builds
    _, vmax_f, km_f = stencil_fields(c.shape, flat, inside, spacing_um, diffusion_um2_per_s, radius_um, v, km, 0.0)
    vmax_f = units.voxel_rate_to_cell_rate_molecules_per_s(vmax_f, float(spacing_um) ** 3)
    field = (vmax_f * c / (km_f if law == "linear" else km_f + c)).reshape(-1)
    uptake = xp.sum(share * field[flat], axis=1)
    return uptake, surface_concentration_pM(uptake, v, km, law)


def uptake_sharing(c_pM, voxel, spacing_um, diffusion_um2_per_s, radius_um, vmax_molecules_per_s, km_pM,
                   law="saturating", periodic=(False, False, False)):
    """Which part of each stencil voxel's uptake belongs to each cell: (flat, share), both (n, 7).

    flat[i, j]: the flat (C-order) index in c's shape of cell i's stencil voxel j (arms outside the
    lattice act in the cell's own voxel); share[i, j] = p_ij, cell i's fraction of that voxel's
    uptake, in proportion to its own Michaelis-Menten term there:

        p_ij = sigma_ij / sum_{cells i' reaching j} sigma_i'j,
        sigma_ij = V_ij / (K_ij + c_j)  ('saturating'),  V_ij / K_ij  ('linear')     (per unit IL-2)

    (V_ij = v_j V_i, K_ij = K_i x km_factor_j: :func:`effective_uptake`); 0 where no cell with
    receptors reaches. With sigma_j the voxel's uptake per unit IL-2 (pM/s per pM), cell i takes
    up sum_j p_ij sigma_j x_j of any part x of the field (pM): of the whole field in
    :func:`cell_uptake_molecules_per_s`, of one source's part in attribution.py."""
    c = np.maximum(np.asarray(c_pM, np.float64), 0.0)
    flat, _ = folded_stencils(voxel, c.shape, periodic)
    n = len(flat)
    v = np.asarray(vmax_molecules_per_s, np.float64) * np.ones(n)
    km = np.asarray(km_pM, np.float64) * np.ones(n)
    return flat, stencil_sharing(c, flat, spacing_um, diffusion_um2_per_s, radius_um, v, km, law)


def stencil_sharing(c_pM, flat, spacing_um, diffusion_um2_per_s, radius_um, vmax_molecules_per_s, km_pM,
                    law="saturating"):
    """share (n, 7) of :func:`uptake_sharing` for stencils already placed (flat (n, 7) from
    :func:`folded_stencils`), c >= 0, V and K_M (n,); numpy or jax.numpy, by the inputs."""
    xp, (c, v, km) = _arrays(c_pM, vmax_molecules_per_s, km_pM)
    n = flat.shape[0]
    p = effective_uptake(spacing_um, diffusion_um2_per_s, radius_um, _linear_rate_um3_per_s(v, km))
    v_arm = xp.broadcast_to(p.vmax_weights, (n, 7)) * v[:, None]
    k_arm = xp.broadcast_to(p.km_factors, (n, 7)) * km[:, None]
    own = v_arm / (k_arm if law == "linear" else k_arm + c.reshape(-1)[flat])
    total = _scatter_add(c.size, flat, own)[flat]  # sum over the cells reaching j
    return xp.where(total > 0, own / xp.where(total > 0, total, 1.0), 0.0)


def secretion_stencils(voxel, shape, spacing_um, diffusion_um2_per_s, radius_um, vmax_molecules_per_s, km_pM,
                       periodic=(False, False, False)):
    """Each cell's secretion stencil as :func:`voxel_fields` spreads it: (idx (n, 7, 3), weights
    (n, 7)), the voxels of its stencil and the fraction of its secretion q that goes to each,
    arms outside the lattice folded into its own voxel (weight 0 there, idx its own voxel)."""
    voxel = np.asarray(voxel, np.int64).reshape(-1, 3)
    k = _linear_rate_um3_per_s(np.asarray(vmax_molecules_per_s, np.float64) * np.ones(len(voxel)), km_pM)
    w = np.broadcast_to(effective_uptake(spacing_um, diffusion_um2_per_s, radius_um, k).stencil_weights, (len(voxel), 7))
    return _folded(voxel, shape, w, periodic)


def far_field_pM(uptake_molecules_per_s, surface_pM, diffusion_um2_per_s, radius_um):
    """The concentration far from the cell that its uptake and surface concentration imply for a
    sphere, c_far = c_s + U / S (pM)."""
    s = sphere_capacity_um3_per_s(diffusion_um2_per_s, radius_um)
    return np.asarray(surface_pM, np.float64) + units.molecules_per_um3_to_pM(np.asarray(uptake_molecules_per_s, np.float64) / s)


def linearised_km_pM(far_field_pM_, diffusion_um2_per_s, radius_um, vmax_molecules_per_s, km_pM):
    """K_M + c_s (pM), with c_s the exact surface concentration of a Michaelis-Menten sphere in the
    far field c_far: the K_M that turns the cell's law into the linear rate k_eff = V / (K_M + c_s)
    it actually has there. Used by the exact saturating route (module docstring)."""
    s = sphere_capacity_um3_per_s(diffusion_um2_per_s, radius_um)
    u = sphere_saturating_uptake_molecules_per_s(far_field_pM_, diffusion_um2_per_s, radius_um, vmax_molecules_per_s, km_pM)
    surface = np.asarray(far_field_pM_, np.float64) - units.molecules_per_um3_to_pM(u / s)
    return np.asarray(km_pM, np.float64) + np.maximum(surface, 0.0)


def stencil_voxels(voxel, shape, periodic=(False, False, False)):
    """(n, 7, 3) voxel indices of each cell's stencil and an (n, 7) mask of those inside the
    lattice (periodic axes wrap). Arms outside a non-periodic face are meant to be folded back
    into the cell's own voxel (:func:`scatter_stencil` does that)."""
    voxel = np.asarray(voxel, np.int64).reshape(-1, 3)
    idx = voxel[:, None, :] + STENCIL_OFFSETS[None, :, :]
    n = np.asarray(shape, np.int64)
    per = np.asarray(periodic, bool)
    idx = np.where(per, idx % n, idx)
    inside = np.all((idx >= 0) & (idx < n), axis=-1)
    return idx, inside


def folded_stencils(voxel, shape, periodic=(False, False, False)):
    """(flat, inside), both (n, 7), numpy: the flat (C-order) index in `shape` of each cell's
    stencil voxels, arms outside a non-periodic face replaced by the cell's own voxel, and the
    mask of the arms inside the lattice. Cells do not move, so the coupled step gets these once,
    from the host (dynamics.cell_kinetics)."""
    idx, inside = _folded_voxels(voxel, shape, periodic)
    flat = np.ravel_multi_index(tuple(idx.reshape(-1, 3).T), tuple(shape)).reshape(-1, 7)
    return flat, inside


_CENTRE_ARM = np.arange(7) == 0


def fold_weights(stencil_weights, inside):
    """Stencil weights (n, 7) with the weight of arms outside the lattice (inside False) moved
    to the cell's own voxel (arm 0): a cell keeps its total rate, maximum and secretion at a
    face. numpy or jax.numpy, by the inputs."""
    xp = _xp(stencil_weights, inside)
    w = xp.where(inside, stencil_weights, 0.0)
    return w + xp.where(_CENTRE_ARM, (1.0 - w.sum(axis=1))[:, None], 0.0)


def scatter_stencil(shape, voxel, stencil_weights, per_cell_values, periodic=(False, False, False)):
    """Sum per_cell_values[i] * stencil_weights[i, j] onto the voxels of each cell's stencil
    (a field of `shape`); overlapping stencils add, arms outside the lattice go to the cell's voxel."""
    flat, inside = folded_stencils(voxel, shape, periodic)
    w = fold_weights(np.asarray(stencil_weights, np.float64).reshape(-1, 7), inside)
    return _scatter_add(math.prod(tuple(shape)), flat, w * np.asarray(per_cell_values, np.float64).reshape(-1, 1)).reshape(tuple(shape))


def _scatter_add(size, flat, values):
    """A flat field of `size` voxels with values (n, 7) added at flat (n, 7) (repeats add):
    np.bincount, or .at[].add for JAX arrays."""
    if _xp(flat, values) is np:  # bincount: the repeat-adding scatter, much faster than np.add.at
        return np.bincount(flat.reshape(-1), weights=values.reshape(-1), minlength=size).astype(np.float64)
    return jnp.zeros(size, values.dtype).at[flat.reshape(-1)].add(values.reshape(-1))


def _folded_voxels(voxel, shape, periodic):
    """(idx (n, 7, 3), inside (n, 7)): each cell's stencil voxels, arms outside the lattice
    replaced by the cell's own voxel, and which arms lie inside."""
    idx, inside = stencil_voxels(np.asarray(voxel, np.int64).reshape(-1, 3), shape, periodic)
    return np.where(inside[..., None], idx, idx[:, :1, :]), inside


def _folded(voxel, shape, stencil_weights, periodic):
    """(idx, weights) of each cell's stencil with the weight of arms outside the lattice moved to
    its own voxel (the arm's idx becomes the cell's voxel, its weight 0)."""
    idx, inside = _folded_voxels(voxel, shape, periodic)
    return idx, fold_weights(np.asarray(stencil_weights, np.float64).reshape(-1, 7), inside)


def _linear_rate_um3_per_s(vmax_molecules_per_s, km_pM):
    """k = V / K_M (um^3/s), 0 for a cell without receptors (numpy or jax.numpy)."""
    xp, (v, km) = _arrays(vmax_molecules_per_s, km_pM)
    return xp.where(v > 0, v / units.pM_to_molecules_per_um3(km), 0.0)


def _check(h, a, k):
    if np.any(~np.isfinite(k)) or np.any(k < 0):
        raise ValueError("rate_um3_per_s must be finite and >= 0")
    if np.any(h < cross_limit_um(a)):
        raise ValueError(
            f"voxel edge {np.min(h):g} um is below 4 pi G(1,0,0) a = {float(np.max(cross_limit_um(a))):g} um: "
            "even the 7-point stencil cannot absorb like the sphere"
        )
