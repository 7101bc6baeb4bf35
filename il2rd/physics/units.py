"""Units: the one place where il2rd converts between them.

il2rd works in micrometres (um), seconds (s), picomolar (pM) and molecules throughout.

    1 M  = 6.022e23 molecules / L = 6.022e8 molecules / um^3   (1 L = 1e15 um^3)
    1 pM = 6.022e-4 molecules / um^3

A cell that secretes q molecules/s into a voxel of volume V um^3 raises the voxel's
concentration at q / (6.022e-4 V) pM/s; a cell that takes up U molecules/s lowers it
at the same rate.
"""

from __future__ import annotations

AVOGADRO_PER_MOL = 6.02214076e23
UM3_PER_LITRE = 1.0e15

MOLECULES_PER_UM3_PER_PM = AVOGADRO_PER_MOL * 1.0e-12 / UM3_PER_LITRE
"""1 pM expressed in molecules/um^3 (6.022e-4)."""

SECONDS_PER_HOUR = 3600.0
UM3_PER_MM3 = 1.0e9


def pM_to_molecules_per_um3(c_pM):
    """Concentration in pM -> number density in molecules/um^3."""
    return c_pM * MOLECULES_PER_UM3_PER_PM


def molecules_per_um3_to_pM(n_per_um3):
    """Number density in molecules/um^3 -> concentration in pM."""
    return n_per_um3 / MOLECULES_PER_UM3_PER_PM


def cell_rate_to_voxel_rate_pM_per_s(rate_molecules_per_s, voxel_volume_um3):
    """A per-cell rate (molecules/s) spread over one voxel, as a concentration rate (pM/s).

        r_voxel = q / (6.022e-4 * V)
    """
    return rate_molecules_per_s / (MOLECULES_PER_UM3_PER_PM * voxel_volume_um3)


def voxel_rate_to_cell_rate_molecules_per_s(rate_pM_per_s, voxel_volume_um3):
    """Inverse of :func:`cell_rate_to_voxel_rate_pM_per_s`."""
    return rate_pM_per_s * MOLECULES_PER_UM3_PER_PM * voxel_volume_um3


def kon_per_molar_per_s_to_um3_per_s(kon_per_M_per_s):
    """Association rate per receptor: 1/(M s) -> um^3/s (3.1e7 /M/s = 0.0515 um^3/s)."""
    return kon_per_M_per_s / (AVOGADRO_PER_MOL / UM3_PER_LITRE)


def per_hour_to_per_s(rate_per_h):
    return rate_per_h / SECONDS_PER_HOUR
