"""Where IL-2 enters from blood and leaves through lymph: exchange sites in the lymph node.

Each exchange voxel adds k_ex (c_target - c) to the field equation (kinetics.py), a linear
exchange with a well-mixed compartment at concentration c_target:

  high endothelial venules (HEVs), the node's blood vessels in the T-cell zone: c_target = the
      plasma IL-2 level (vessels.blood_il2, pM: IL-2 therapy), k_ex = vessels.hev_exchange (1/s);
      HEV voxels are drawn seeded and uniformly from the T zone at vessels.hev_density voxels per
      mm^3 of T zone;
  lymph, the subcapsular and medullary sinuses: every capsule and medulla voxel drains with
      k_ex = vessels.lymph_drainage (1/s) towards c_target = 0 (efferent lymph carries IL-2 away).

k_ex = P S/V for a vessel wall of permeability P and surface S per voxel volume V: for a 15 kDa
protein P ~ 1e-3 um/s, and a 20 um vessel crossing a 10 um voxel gives S/V ~ 0.6 /um, so
k_ex ~ 6e-4 /s (an order-of-magnitude estimate; the default 0 switches exchange off).
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

    @property
    def active(self) -> bool:
        return (self.hev_density_per_mm3 > 0 and self.hev_exchange_per_s > 0) or self.lymph_drainage_per_s > 0


def exchange_fields(vessels: Vessels, grid: Grid, node, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(k_ex in 1/s, c_target in pM), each of grid.shape, from the node's compartments."""
    rate = np.zeros(grid.shape)
    target = np.zeros(grid.shape)
    if vessels.lymph_drainage_per_s > 0:
        sinus = node.mask("capsule", grid) | node.mask("medulla", grid)
        rate[sinus] = vessels.lymph_drainage_per_s
    if vessels.hev_density_per_mm3 > 0 and vessels.hev_exchange_per_s > 0:
        t_zone = np.flatnonzero(node.mask("t_zone", grid))
        count = min(len(t_zone), round(vessels.hev_density_per_mm3 * len(t_zone) * grid.voxel_volume_um3 / 1e9))
        hev = np.random.default_rng(seed + SEED_OFFSET).choice(t_zone, size=count, replace=False)
        rate.reshape(-1)[hev] = vessels.hev_exchange_per_s
        target.reshape(-1)[hev] = vessels.blood_il2_pM
    return rate, target
