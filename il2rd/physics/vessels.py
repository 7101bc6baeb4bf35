"""Where IL-2 enters from blood and afferent lymph and leaves through lymph: exchange sites in the lymph node.

Each exchange voxel adds k_ex (c_target - c) to the field equation (kinetics.py), a linear
exchange with a well-mixed compartment at concentration c_target:

  high endothelial venules (HEVs), the node's postcapillary venules in the T-cell zone: c_target =
      the plasma IL-2 level (vessels.blood_il2, pM: IL-2 therapy), k_ex = vessels.hev_exchange (1/s);
      HEV voxels are drawn seeded and uniformly from the T zone at vessels.hev_density voxels per
      mm^3 of T zone;
  blood capillaries, spread through the whole node (denser around the T-zone units, in the
      follicles and the medulla: Kelly 1975, J Anat, mouse popliteal node; Belisle & Sainte-Marie 1990, Am J Anat
      189:111): every node voxel exchanges with plasma at k_ex = vessels.capillary_exchange (1/s),
      the node average P S/V of its capillaries (a vessel network finer than the lattice);
  lymph, the subcapsular and medullary sinuses: every capsule and medulla voxel drains with
      k_ex = vessels.lymph_drainage (1/s) towards c_target = 0 (efferent lymph carries IL-2 away);
  afferent lymph, arriving in the subcapsular sinus: every capsule voxel (node compartment
      "capsule", capsule + subcapsular sinus) exchanges with k_ex = vessels.afferent_exchange (1/s)
      towards c_target = vessels.afferent_lymph_il2 (pM), the IL-2 of the lymph the node drains.

The afferent exchange is the mixing-tank equation of a well-mixed sinus of volume V_s refreshed by
the lymph flow L (um^3/s) through the node: V_s dc/dt = L (c_lymph - c) + (exchange with the
tissue below), i.e. k_ex = L / V_s per unit volume. Summed over the sinus the inflow is
L (c_lymph - c) <= L c_lymph molecules/s (c >= 0): the node can never receive more IL-2 through its
lymph than the lymph flow carries, however fast the tissue below consumes it. During IL-2 therapy
plasma IL-2 leaks into the drained tissue and reaches the lymph at c_lymph = R c_plasma,
R = PS/(PS + L) (Joyner, Carter & Renkin 1973, Lymphology 6:181); the numbers are in
configs/scenario/therapy_low.yaml.

Where several act in one voxel their rates add, k_ex = sum_i k_i, and the voxel exchanges towards
their rate-weighted target, c_target = sum_i k_i c_i / k_ex, so that k_ex (c_target - c) =
sum_i k_i (c_i - c).

k_ex = P S/V for a vessel wall of permeability P and surface S per voxel volume V (per interstitial
volume alpha V when physics.volume_fraction = alpha < 1: divide the rates by alpha). For a 15 kDa
protein P ~ 1e-3 um/s through continuous endothelium, and a 20 um vessel crossing a 10 um voxel
gives S/V ~ 0.6 /um, so an HEV voxel has k_ex ~ 6e-4 /s; afferent lymph, L ~ 1 nL/s through a 0.4 mm^3 mouse
node, gives k_ex = L / V_s ~ 0.02 /s over a 0.05 mm^3 capsule compartment (order-of-magnitude
estimates, with their references in configs/scenario/therapy_low.yaml; the defaults 0 switch exchange off).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grid import Grid

SEED_OFFSET = 7919  # HEV draws use their own stream: adding vessels never moves a cell


@dataclass(frozen=True)
class Vessels:
    blood_il2_pM: float = 0.0
    hev_density_per_mm3: float = 0.0  # HEV voxels per mm^3 of T zone
    hev_exchange_per_s: float = 0.0
    lymph_drainage_per_s: float = 0.0
    capillary_exchange_per_s: float = 0.0  # every node voxel, towards the plasma level
    afferent_lymph_pM: float = 0.0  # IL-2 in the afferent lymph
    afferent_exchange_per_s: float = 0.0  # capsule voxels, towards the afferent lymph level: L / V_capsule

    @property
    def active(self) -> bool:
        return ((self.hev_density_per_mm3 > 0 and self.hev_exchange_per_s > 0) or self.lymph_drainage_per_s > 0
                or self.capillary_exchange_per_s > 0 or self.afferent_exchange_per_s > 0)


def exchange_fields(vessels: Vessels, grid: Grid, node, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(k_ex in 1/s, c_target in pM), each of grid.shape, from the node's compartments."""
    rate = np.zeros(grid.shape)
    inflow = np.zeros(grid.shape)  # sum_i k_i c_i, pM/s
    if vessels.lymph_drainage_per_s > 0:
        sinus = node.mask("capsule", grid) | node.mask("medulla", grid)
        rate[sinus] += vessels.lymph_drainage_per_s  # towards 0: no inflow
    if vessels.afferent_exchange_per_s > 0:
        capsule = node.mask("capsule", grid)  # the subcapsular sinus, where afferent lymph arrives
        rate[capsule] += vessels.afferent_exchange_per_s
        inflow[capsule] += vessels.afferent_exchange_per_s * vessels.afferent_lymph_pM
    if vessels.capillary_exchange_per_s > 0:
        inside = node.mask("node", grid)
        rate[inside] += vessels.capillary_exchange_per_s
        inflow[inside] += vessels.capillary_exchange_per_s * vessels.blood_il2_pM
    if vessels.hev_density_per_mm3 > 0 and vessels.hev_exchange_per_s > 0:
        t_zone = np.flatnonzero(node.mask("t_zone", grid))
        count = min(len(t_zone), round(vessels.hev_density_per_mm3 * len(t_zone) * grid.voxel_volume_um3 / 1e9))
        hev = np.random.default_rng(seed + SEED_OFFSET).choice(t_zone, size=count, replace=False)
        rate.reshape(-1)[hev] += vessels.hev_exchange_per_s
        inflow.reshape(-1)[hev] += vessels.hev_exchange_per_s * vessels.blood_il2_pM
    target = np.divide(inflow, rate, out=np.zeros(grid.shape), where=rate > 0)
    return rate, target
