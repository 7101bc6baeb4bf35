"""The exact results the tests compare il2rd's sub-grid closure with: a sphere of radius a in an
infinite bath (linear and Michaelis-Menten), the 7-point stencil sink in an infinite lattice
(formula (*) of il2rd/physics/subgrid.py's docstring), a cell's surface concentration and far
field, and the exact saturating route's K_eff."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from il2rd.physics import units
from il2rd.physics.subgrid import LATTICE_GREEN_NEIGHBOUR, sphere_capacity_um3_per_s


def sphere_uptake_um3_per_s(diffusion_um2_per_s, radius_um, rate_um3_per_s):
    """U_sphere / c_inf = k S / (S + k) (um^3/s) for a linear consumer sphere in a bath."""
    s = sphere_capacity_um3_per_s(diffusion_um2_per_s, np.asarray(radius_um, np.float64))
    k = np.asarray(rate_um3_per_s, np.float64)
    return k * s / (s + k)


def sphere_autocrine_fraction(diffusion_um2_per_s, radius_um, rate_um3_per_s):
    """The fraction k / (S + k) of its own secretion that a linear consumer sphere captures."""
    s = sphere_capacity_um3_per_s(diffusion_um2_per_s, np.asarray(radius_um, np.float64))
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


def surface_concentration_pM(uptake_molecules_per_s, vmax_molecules_per_s, km_pM, law="saturating"):
    """The IL-2 a cell's receptors see (pM): the concentration at which its own law gives its
    uptake, c_s = K_M U / V (linear) or K_M U / (V - U) (saturating). 0 for a cell without
    receptors; inf if U >= V (saturating). JAX arrays."""
    u, v, k_m = (jnp.asarray(x) for x in (uptake_molecules_per_s, vmax_molecules_per_s, km_pM))
    if law == "linear":
        out = k_m * u / jnp.where(v > 0, v, 1.0)
    elif law == "saturating":
        out = jnp.where(u < v, k_m * u / jnp.where(u < v, v - u, 1.0), np.inf)
    else:
        raise ValueError(f"law {law!r}; allowed: 'saturating', 'linear'")
    return jnp.where(v > 0, out, 0.0)


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
