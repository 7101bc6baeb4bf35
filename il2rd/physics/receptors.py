"""Receptor signalling readouts: pSTAT5 from the IL-2 a cell sees and its receptor number.

Busse et al. 2010 (PNAS 107:3058), Thurley-lab parameters (../shared/science.md):

    pSTAT5(c, R) = c^n / (EC50(R)^n + c^n)                      n = 3 (dimensionless, 0..1)
    EC50(R)      = E_max k^N / (k^N + R^N)                      E_max = 125 pM, k = 860, N = 1.5

so a Treg with 2e4 receptors is half-activated at about 1 pM, a naive T cell with 100 at 120 pM.

Receptor classes from the three chains (:func:`receptor_classes`). IL-2 signals and is
internalised through IL-2Rb/gc; IL-2Ra (CD25) adds the high affinity. With the chains pre-assembled
as far as the scarcest allows,

    R_high = min(R_a, R_b, R_g)                  IL-2Ra/b/gc receptors, K_M ~ 43 pM
    R_int  = min(R_b, R_g) - R_high              IL-2Rb/gc receptors without IL-2Ra, K_M ~ 1 nM

and IL-2Ra beyond the IL-2Rb/gc pairs binds IL-2 only weakly (K_D ~ 10 nM) without internalising
it, which is left out. An IL-2Rb or gc number that is not given counts as not limiting: with
IL-2Rb unset every IL-2Ra is a high-affinity receptor and there are no intermediate ones (the
convention of the mouse models whose CD25 numbers the library uses).

Busse's curve is calibrated on high-affinity receptors. A cell whose receptors bind with another
Michaelis constant (intermediate-affinity IL-2Rb/gc, K ~ 1 nM, or a mutein that lost IL-2Ra
binding) signals like a high-affinity cell with the same number of receptors R = R_high + R_int
and the same occupancy

    theta = (R_high c/(K_high + c) + R_int c/(K_int + c)) / R,

i.e. at the equivalent concentration c_equiv = K_ref theta / (1 - theta), K_ref = the reference K_M
of the curve (43 pM); for one class of constant K that is c_equiv = K_ref c / K, so
intermediate-affinity cells need about 24 times more IL-2 for the same pSTAT5.
A cell without IL-2 receptors (R = 0: DCs, B cells in the library) does not signal: pSTAT5 = 0.
A cell counts as pSTAT5-positive when pSTAT5 >= the configured threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp


# K_M = (k_off + k_int) / k_on of the two receptor classes (../shared/science.md): the defaults of
# every cell type (cells.CellType) and of the K_M EC50(R) is calibrated on (Signalling)
KM_HIGH_AFFINITY_PM = 43.0  # IL-2Ra/b/gc
KM_INTERMEDIATE_PM = 1035.0  # IL-2Rb/gc without IL-2Ra: K_D ~ 1 nM + k_int / k_on


@dataclass(frozen=True)
class Signalling:
    ec50_max_pM: float = 125.0
    ec50_k_receptors: float = 860.0
    ec50_exponent: float = 1.5
    hill: float = 3.0
    positive_threshold: float = 0.5  # pSTAT5 level (0..1) above which a cell is pSTAT5+
    reference_km_pM: float = KM_HIGH_AFFINITY_PM  # K_M of the receptors Busse's EC50(R) was calibrated on (high affinity)

    def ec50_pM(self, receptors):
        """EC50 of pSTAT5 (pM) for cells with `receptors` receptors."""
        kn = self.ec50_k_receptors**self.ec50_exponent
        return self.ec50_max_pM * kn / (kn + jnp.maximum(jnp.asarray(receptors), 0.0) ** self.ec50_exponent)

    def pstat5(self, il2_pM, receptors, km_pM=None, intermediate=0.0, km_intermediate_pM=None):
        """pSTAT5 level (0..1) of cells seeing il2_pM with `receptors` receptors of Michaelis
        constant km_pM (None: the reference, high affinity) and `intermediate` receptors of
        constant km_intermediate_pM (module docstring: signal at equal occupancy)."""
        # clipped above: an IL-2 given as inf (full occupancy) must give pSTAT5 1, not NaN
        c = jnp.clip(jnp.asarray(il2_pM), 0.0, 1e15)
        high, low = jnp.maximum(jnp.asarray(receptors), 0.0), jnp.maximum(jnp.asarray(intermediate), 0.0)
        k_high = self.reference_km_pM if km_pM is None else jnp.asarray(km_pM)
        k_low = self.reference_km_pM if km_intermediate_pM is None else jnp.asarray(km_intermediate_pM)
        total = high + low
        bound = high * c / (k_high + c) + low * c / (k_low + c)
        free = high * k_high / (k_high + c) + low * k_low / (k_low + c)  # total - bound, without cancellation
        signals = (total > 0) & (bound > 0)
        # EC50 / c_equiv = EC50 (1 - theta) / (K_ref theta); pSTAT5 = 1 / (1 + (EC50 / c_equiv)^n)
        ratio = self.ec50_pM(total) * free / (self.reference_km_pM * jnp.where(signals, bound, 1.0))
        return jnp.where(signals, 1.0 / (1.0 + ratio**self.hill), 0.0)


def receptor_classes(il2ra, il2rb, gc):
    """(R_high, R_int) receptors per cell from its IL-2Ra, IL-2Rb and gc chains (module
    docstring); inf for a chain that is not limiting."""
    pair = jnp.minimum(il2rb, gc)
    high = jnp.minimum(il2ra, pair)
    return high, jnp.where(jnp.isfinite(il2rb), pair - high, 0.0)


def collapsed_law(vmax_high, km_high_pM, vmax_intermediate, km_intermediate_pM):
    """One Michaelis-Menten law per cell, (V molecules/s, K_M pM), with the same maximum and the
    same linear slope as its two receptor classes: V = V_h + V_i, V / K_M = V_h / K_h + V_i / K_i
    (exact for c << K and c >> K, within the two curves in between; the sub-grid closure uses it)."""
    v = jnp.add(vmax_high, vmax_intermediate)
    slope = jnp.divide(vmax_high, km_high_pM) + jnp.divide(vmax_intermediate, km_intermediate_pM)
    return v, jnp.where(slope > 0, v / jnp.where(slope > 0, slope, 1.0), km_high_pM)
