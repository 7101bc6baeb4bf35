"""Reaction terms of the IL-2 field: secretion, bulk decay and receptor uptake per voxel.

    dc/dt = D lap(c) - k_d c + s(x) - u(x, c) + k_ex(x) (c_target(x) - c)        (pM/s)

k_ex, c_target: exchange with blood (high endothelial venules, c_target = the plasma level) or
lymph (sinuses, c_target = 0), vessels.py.
s = q / (6.022e-4 V): secretion of the cell in the voxel (q molecules/s, V voxel volume um^3).
u: uptake by the cell's receptors, quasi-steady binding with internalisation, summed over its
two receptor classes (high affinity, IL-2Ra/b/gc, and intermediate, IL-2Rb/gc: cells.py):

    U(c) = k_int R c / (K_M + c)          molecules/s   ('saturating'), per class
    U(c) = k_int R c / K_M                molecules/s   ('linear', the c << K_M limit)
    u    = U / (6.022e-4 V) = v_max c / (K_M + c),  v_max = k_int R / (6.022e-4 V)   (pM/s)

K_M = (k_off + k_int)/k_on is the Michaelis constant of uptake, not the equilibrium K_D
(../shared/science.md): bound receptors are internalised before they can dissociate.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import jax.numpy as jnp

from . import grid as grid_mod
from .. import pytree
from .grid import Grid
from ..pytree import STATIC

UPTAKE_LAWS = ("saturating", "linear")


@pytree.dataclass
@dataclass(frozen=True)
class FieldCoefficients:
    """Everything the field equation needs besides the grid; a pytree, so it can be vmapped
    over parameter sets and differentiated.

    diffusion_um2_per_s, decay_per_s: scalars; secretion_pM_per_s, vmax_pM_per_s, km_pM:
    fields of shape grid.shape (km_pM is 1 where no cell sits, to keep c/(K_M + c) finite);
    vmax_intermediate_pM_per_s, km_intermediate_pM: the same for the intermediate-affinity
    receptors (fields, or 0 and 1 when no cell has any);
    vmax_own_pM_per_s, km_own_pM, own_offset_pM: the laws of secreting cells whose own IL-2
    reaches their receptors before the lattice's voxel value does (:func:`own_capture_rate`;
    fields, or 0, 1, 0 where no cell has it);
    face_values_pM: the six fixed-face values; exchange_per_s, exchange_target_pM: exchange with
    blood or lymph, + k_ex (c_target - c) in the field equation (fields or 0: vessels.py);
    uptake: 'saturating' | 'linear' (static).
    """

    diffusion_um2_per_s: Any
    decay_per_s: Any
    secretion_pM_per_s: Any
    vmax_pM_per_s: Any
    km_pM: Any
    face_values_pM: Any
    exchange_per_s: Any = 0.0
    exchange_target_pM: Any = 0.0
    vmax_intermediate_pM_per_s: Any = 0.0
    km_intermediate_pM: Any = 1.0
    vmax_own_pM_per_s: Any = 0.0
    km_own_pM: Any = 1.0
    own_offset_pM: Any = 0.0
    uptake: str = field(default="saturating", metadata=STATIC)

    def replace(self, **changes) -> "FieldCoefficients":
        return replace(self, **changes)

    @property
    def dtype(self):
        return self.secretion_pM_per_s.dtype


def _classes(coef: FieldCoefficients):
    """(v_max, K_M) of the two receptor classes."""
    return (coef.vmax_pM_per_s, coef.km_pM), (coef.vmax_intermediate_pM_per_s, coef.km_intermediate_pM)


def _has_own(coef: FieldCoefficients) -> bool:
    """Whether the own-capture term has fields (it is the scalar 0 where no cell has it)."""
    return jnp.ndim(coef.vmax_own_pM_per_s) > 0


def uptake_rate(c, coef: FieldCoefficients):
    """u(c) = sigma(c) c + d(c) in pM/s (:func:`uptake_per_il2`, :func:`own_capture_rate`); c is
    clipped at 0 so that a rounding-level negative never secretes."""
    c = jnp.maximum(c, 0.0)
    return uptake_per_il2(c, coef) * c + own_capture_rate(c, coef)


def own_capture_rate(c, coef: FieldCoefficients):
    """d(c) (pM/s): what secreting cells take up of their own IL-2 before it reaches the lattice.

    A cell on one voxel (the sub-grid closure at h >= 4 pi g a, subgrid.py) sees at its surface
    c_s = c + (q - U) R, R = 1/S - g/(D h) the sub-voxel resistance, so its uptake is its voxel law
    at c + delta, delta = q R (own_offset_pM), not at c. The lattice keeps the law at c in
    v_max, K_M; the difference is this term, with the cell's own law (v_own, K_own):

        d = v_own [(c + delta)/(K_own + c + delta) - c/(K_own + c)]
          = v_own K_own delta / ((K_own + c)(K_own + c + delta))      ('saturating')
        d = v_own delta / K_own                                        ('linear')

    In the linear regime U = kappa (c + q R) is exact for an isolated cell (it captures
    k/(S + k) of its secretion, the sphere's fraction). 0 where no such cell sits."""
    if not _has_own(coef):
        return 0.0
    return own_capture_law(c, coef.vmax_own_pM_per_s, coef.km_own_pM, coef.own_offset_pM, coef.uptake)


def own_capture_law(c, vmax, km, offset, uptake: str):
    """d(c) of :func:`own_capture_rate` for a law v_own = vmax, K_own = km, delta = offset (any units
    of rate; c, km, offset in pM)."""
    if uptake == "linear":
        return vmax * offset / km
    c = jnp.maximum(c, 0.0)
    return vmax * km * offset / ((km + c) * (km + c + offset))


def uptake_per_il2(c, coef: FieldCoefficients):
    """sigma = (u(c) - d(c))/c (1/s): uptake per unit IL-2 at the field c, finite where c = 0
    (d: :func:`own_capture_rate`, the part that does not scale with c)."""
    if coef.uptake == "linear":
        return sum(vmax / km for vmax, km in _classes(coef))
    c = jnp.maximum(c, 0.0)
    return sum(vmax / (km + c) for vmax, km in _classes(coef))


def uptake_slope(c, coef: FieldCoefficients):
    """du/dc (1/s), the diagonal of the uptake's Jacobian. The own-capture term d(c) falls with c;
    a cell's whole uptake v (c + delta)/(K + c + delta) rises, and so does the sum (held >= 0
    where voxels share one combined law)."""
    if coef.uptake == "linear":
        return uptake_per_il2(c, coef)
    c = jnp.maximum(c, 0.0)
    slope = sum(vmax * km / (km + c) ** 2 for vmax, km in _classes(coef))
    if not _has_own(coef):
        return slope
    k, delta = coef.km_own_pM, coef.own_offset_pM
    own = coef.vmax_own_pM_per_s * k * (1.0 / (k + c + delta) ** 2 - 1.0 / (k + c) ** 2)
    return jnp.maximum(slope + own, 0.0)


def max_uptake_slope(coef: FieldCoefficients):
    """The largest du/dc over all c >= 0 (at c = 0): sum of v_max / K_M, in 1/s. Also for a
    stacked batch, where a class without cells holds one scalar per member."""
    slopes = [vmax / km for vmax, km in _classes(coef)]
    ndim = max(jnp.ndim(s) for s in slopes)
    return jnp.max(sum(jnp.reshape(s, jnp.shape(s) + (1,) * (ndim - jnp.ndim(s))) for s in slopes))


def tendency(c, grid: Grid, coef: FieldCoefficients):
    """dc/dt (pM/s) of the field equation."""
    return (
        coef.diffusion_um2_per_s * grid_mod.laplacian(c, grid, coef.face_values_pM)
        - coef.decay_per_s * c
        + coef.secretion_pM_per_s
        - uptake_rate(c, coef)
        + coef.exchange_per_s * (coef.exchange_target_pM - c)
    )


def residual(c, grid: Grid, coef: FieldCoefficients):
    """F(c) = -dc/dt; the steady field is its root."""
    return -tendency(c, grid, coef)


def absorption_per_s(c, coef: FieldCoefficients):
    """k_d + sigma(c) + k_ex (1/s): the diagonal of the field operator A frozen at c, for which
    A c = s - d(c) + (what faces and vessels feed in) holds exactly (attribution.py; d the
    own capture, :func:`own_capture_rate`)."""
    return coef.decay_per_s + uptake_per_il2(c, coef) + coef.exchange_per_s


def jacobian_diagonal(c, coef: FieldCoefficients):
    """The non-diffusive part of dF/dc: k_d + du/dc + k_ex (1/s)."""
    return coef.decay_per_s + uptake_slope(c, coef) + coef.exchange_per_s


def apply_jacobian(v, c, grid: Grid, coef: FieldCoefficients):
    """dF/dc at c applied to v: -D lap0(v) + (k_d + du/dc) v (symmetric positive definite)."""
    return -coef.diffusion_um2_per_s * grid_mod.laplacian(v, grid) + jacobian_diagonal(c, coef) * v
