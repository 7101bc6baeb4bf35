"""Receptor signalling readouts: pSTAT5 from the IL-2 a cell sees and its receptor number.

Busse et al. 2010 (PNAS 107:3058), Thurley-lab parameters (../shared/science.md):

    pSTAT5(c, R) = c^n / (EC50(R)^n + c^n)                      n = 3 (dimensionless, 0..1)
    EC50(R)      = E_max k^N / (k^N + R^N)                      E_max = 125 pM, k = 860, N = 1.5

so a Treg with 2e4 receptors is half-activated at about 1 pM, a naive T cell with 100 at 120 pM.

Busse's curve is calibrated on high-affinity (IL-2Ra/b/gc) receptors. A cell whose receptors bind
with another Michaelis constant K (the intermediate-affinity IL-2Rb/gc of NK and naive CD8 cells,
K ~ 1 nM, or a mutein that lost IL-2Ra binding) signals like a high-affinity cell with the same
receptor occupancy c/(K + c), i.e. at the equivalent concentration

    c_equiv = K_ref c / K,        K_ref = reference K_M of the curve (43 pM)

so intermediate-affinity cells need about 24 times more IL-2 for the same pSTAT5.
A cell without IL-2 receptors (R = 0: DCs, B cells in the library) does not signal: pSTAT5 = 0.
A cell counts as pSTAT5-positive when pSTAT5 >= the configured threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


def _xp(*arrays):
    """jax.numpy for JAX arrays (inside jitted code: the coupled solver), numpy otherwise
    (readouts, in float64)."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


@dataclass(frozen=True)
class Signalling:
    ec50_max_pM: float = 125.0
    ec50_k_receptors: float = 860.0
    ec50_exponent: float = 1.5
    hill: float = 3.0
    positive_threshold: float = 0.5  # pSTAT5 level (0..1) above which a cell is pSTAT5+
    reference_km_pM: float = 43.0  # K_M of the receptors Busse's EC50(R) was calibrated on (high affinity)

    def ec50_pM(self, receptors):
        """EC50 of pSTAT5 (pM) for cells with `receptors` receptors."""
        kn = self.ec50_k_receptors**self.ec50_exponent
        xp = _xp(receptors)
        receptors = xp.asarray(receptors) if xp is jnp else np.asarray(receptors, np.float64)
        return self.ec50_max_pM * kn / (kn + xp.maximum(receptors, 0.0) ** self.ec50_exponent)

    def pstat5(self, il2_pM, receptors, km_pM=None):
        """pSTAT5 level (0..1) of cells seeing il2_pM with `receptors` receptors of Michaelis
        constant km_pM (None: the reference, high affinity)."""
        xp = _xp(il2_pM, receptors, km_pM)
        c = xp.maximum(xp.asarray(il2_pM) if xp is jnp else np.asarray(il2_pM, np.float64), 0.0)
        if km_pM is not None:  # the high-affinity concentration with the same receptor occupancy
            c = c * (self.reference_km_pM / xp.asarray(km_pM))
        cn = c**self.hill
        return xp.where(xp.asarray(receptors) > 0, cn / (self.ec50_pM(receptors) ** self.hill + cn), 0.0)
