"""Resolution-independent uptake (il2rd/physics/subgrid.py) against exact mathematics.

An isolated cell (radius a = 5 um) sits in a decay-free box whose faces are held at the bath
concentration; il2rd's own steady_field solves the lattice. References:

- the sphere in a bath: U = c_inf k S/(S + k), S = 4 pi D a; autocrine capture k/(S + k); the
  Michaelis-Menten sphere from its quadratic;
- the finite box: its far faces add a small negative resistance rho (um^-3 s) in series with both
  the sphere and the lattice sink. rho is a property of the box alone: it is read from a point
  source in the same box, rho = (g - G_box(0)) / (D h), with g the exact (Watson) lattice Green's
  function at the origin, and checked to lie between 1/(4 pi D L) for the nearest face and the
  farthest corner. Every comparison is made both against the box-corrected sphere (tight) and
  against the infinite-bath sphere (the 5 % the issue asks for).

The uncorrected one-voxel model fails the same comparisons (up to 50 % off), so these tests can fail.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np
import pytest

import sphere
from helpers import closure, closure_cell_uptake, closure_fields, scatter_stencil

from il2rd.cells import coupling
from il2rd.physics import subgrid, units
from il2rd.physics.grid import Grid
from il2rd.physics.kinetics import FieldCoefficients, uptake_rate
from il2rd.solvers.steady import SolverOptions, steady_field

D = 10.0  # um^2/s
RADIUS = 5.0  # um
N = 32  # voxels per axis (even, so multigrid coarsens)
CELL = (16, 16, 16)
SPACINGS = (8.0, 10.0, 20.0)
STRENGTHS = (0.01, 0.1, 1.0, 10.0, 100.0)  # k / (4 pi D a)
KM_PM = 43.0
PM = units.MOLECULES_PER_UM3_PER_PM
OPTIONS = SolverOptions(rtol=1e-10)
S = 4 * math.pi * D * RADIUS


def _coef(vmax, km, secretion, face_pM, law):
    field = lambda v: jnp.asarray(np.broadcast_to(v, (N,) * 3), jnp.float64)  # noqa: E731
    return FieldCoefficients(
        diffusion_um2_per_s=jnp.asarray(D, jnp.float64),
        decay_per_s=jnp.asarray(0.0, jnp.float64),
        secretion_pM_per_s=field(secretion),
        vmax_pM_per_s=field(vmax),
        km_pM=field(km),
        face_values_pM=jnp.full(6, face_pM, jnp.float64),
        uptake=law,
    )


def _grid(h):
    return Grid((N,) * 3, float(h), ("fixed",) * 6)


def _solve_uptake(h, vmax_pM_per_s, km_pM, secretion_pM_per_s, face_pM, law):
    """Total uptake (molecules/s) of the steady field, and the field."""
    coef = _coef(vmax_pM_per_s, km_pM, secretion_pM_per_s, face_pM, law)
    c, info = steady_field(_grid(h), coef, options=OPTIONS)
    assert bool(info.converged)
    return float(jnp.sum(uptake_rate(c, coef))) * h**3 * PM, c


@functools.lru_cache(maxsize=None)
def box_resistance(h):
    """rho (s/um^3): how much less resistance to the faces the box has than the infinite lattice."""
    secretion = np.zeros((N,) * 3)
    secretion[CELL] = units.cell_rate_to_voxel_rate_pM_per_s(1.0, h**3)  # 1 molecule/s
    _, c = _solve_uptake(h, 0.0, 1.0, secretion, 0.0, "linear")
    green_box = float(c[CELL]) * PM * D * h  # dimensionless G_box(0)
    return (subgrid.LATTICE_GREEN_ORIGIN - green_box) / (D * h)


def box_capacity(h):
    """The sphere's capacity with the box's far field: 1/(1/S - rho) (um^3/s)."""
    return 1.0 / (1.0 / S - box_resistance(h))


def linear_fields(h, k, corrected, secretion_molecules_per_s=0.0):
    """(vmax_pM_per_s, km_pM, secretion_pM_per_s) of one linear cell (km = 1 pM)."""
    volume = h**3
    if corrected:
        p = subgrid.effective_uptake(h, D, RADIUS, k)
        rate = scatter_stencil((N,) * 3, [CELL], p.stencil_weights, [p.rate_um3_per_s])
        sec = scatter_stencil((N,) * 3, [CELL], p.stencil_weights, [secretion_molecules_per_s])
    else:
        rate = np.zeros((N,) * 3)
        rate[CELL] = k
        sec = np.zeros((N,) * 3)
        sec[CELL] = secretion_molecules_per_s
    return rate / volume, 1.0, units.cell_rate_to_voxel_rate_pM_per_s(sec, volume)


# ------------------------------------------------------------------------------------------
# The constants and the closed forms (no lattice solve)


def _green_integral(n):
    """G(n) = int_0^oo prod_i exp(-2t) I_{n_i}(2t) dt for -Delta G = delta on the unit lattice."""
    from scipy.integrate import quad
    from scipy.special import ive

    f = lambda t: ive(n[0], 2 * t) * ive(n[1], 2 * t) * ive(n[2], 2 * t)  # noqa: E731
    return sum(quad(f, lo, hi, limit=400, epsabs=1e-15, epsrel=1e-12)[0] for lo, hi in ((0, 50), (50, 2000), (2000, np.inf)))


def test_lattice_green_constants():
    assert subgrid.WATSON_SIMPLE_CUBIC == pytest.approx(1.516386059151978, rel=1e-14)
    assert subgrid.LATTICE_GREEN_ORIGIN == pytest.approx(_green_integral((0, 0, 0)), rel=1e-9)
    assert subgrid.LATTICE_GREEN_NEIGHBOUR == pytest.approx(_green_integral((1, 0, 0)), rel=1e-8)
    # harmonicity at (1, 0, 0), used to reduce the 7 x 7 stencil problem to 2 x 2
    assert _green_integral((0, 0, 0)) + 4 * _green_integral((1, 1, 0)) + _green_integral((2, 0, 0)) == pytest.approx(
        6 * subgrid.LATTICE_GREEN_NEIGHBOUR, rel=1e-8
    )


@pytest.mark.parametrize("h", [6.0, 8.0, 10.0, 12.0, 15.0, 16.0, 20.0, 40.0])
def test_corrected_parameters_reproduce_the_sphere_in_the_infinite_lattice(h):
    k = S * np.logspace(-3, 3, 25)
    p = subgrid.effective_uptake(h, D, RADIUS, k)
    assert np.allclose(p.stencil_weights.sum(-1), 1.0) and np.all(p.stencil_weights >= 0)
    assert np.allclose(p.vmax_weights.sum(-1), 1.0) and np.all(p.vmax_weights >= 0)
    lattice = sphere.lattice_uptake_um3_per_s(h, D, p.rate_um3_per_s, p.stencil_weights[:, 0])
    np.testing.assert_allclose(lattice, sphere.sphere_uptake_um3_per_s(D, RADIUS, k), rtol=1e-12)
    # every stencil voxel's slope V_j/K_j is w_j kappa
    np.testing.assert_allclose(
        p.vmax_weights * k[:, None] / p.km_factors, p.stencil_weights * p.rate_um3_per_s[:, None], rtol=1e-12
    )
    if h < subgrid.single_voxel_limit_um(RADIUS):  # small voxels: total rate kept, autocrine exact
        np.testing.assert_allclose(p.rate_um3_per_s, k, rtol=1e-14)
        auto = sphere.lattice_autocrine_fraction(h, D, p.rate_um3_per_s, p.stencil_weights[:, 0])
        np.testing.assert_allclose(auto, sphere.sphere_autocrine_fraction(D, RADIUS, k), rtol=1e-11)
    else:
        assert np.all(p.stencil_weights[:, 0] == 1.0) and np.all(p.rate_um3_per_s <= k)


def test_too_small_voxels_are_rejected():
    with pytest.raises(ValueError, match="cannot absorb"):
        subgrid.check_voxel(5.0, RADIUS)


def test_surface_concentration_inverts_the_uptake_laws():
    c = np.array([0.1, 10.0, 43.0, 1e3])
    v = 11.0
    assert np.allclose(sphere.surface_concentration_pM(v * c / (KM_PM + c), v, KM_PM), c)
    assert np.allclose(sphere.surface_concentration_pM(v * c / KM_PM, v, KM_PM, "linear"), c)
    assert sphere.surface_concentration_pM(0.0, 0.0, KM_PM) == 0.0


def test_overlapping_stencils_add_slopes_and_maxima():
    h, shape = 10.0, (6, 6, 6)
    voxel = np.array([[2, 2, 2], [3, 2, 2], [0, 0, 0]])  # two neighbours, one in a corner
    vmax = np.array([11.0, 1.1, 5.0])
    km = np.array([43.0, 430.0, 43.0])
    secretion, vmax_f, km_f = closure_fields(shape, voxel, h, D, RADIUS, vmax, km, [10.0, 0.0, 0.0])
    volume = h**3
    assert units.voxel_rate_to_cell_rate_molecules_per_s(vmax_f.sum(), volume) == pytest.approx(vmax.sum())
    assert units.voxel_rate_to_cell_rate_molecules_per_s(secretion.sum(), volume) == pytest.approx(10.0)
    k = vmax / units.pM_to_molecules_per_um3(km)
    slope = np.where(vmax_f > 0, vmax_f / km_f, 0.0).sum() * volume  # um^3/s
    assert slope == pytest.approx(float(subgrid.effective_uptake(h, D, RADIUS, k).rate_um3_per_s.sum()))
    assert np.all(km_f[vmax_f == 0] == 1.0)


# ------------------------------------------------------------------------------------------
# The lattice (il2rd's steady_field)


@pytest.mark.parametrize("h", SPACINGS)
def test_box_resistance_is_the_far_field(h):
    rho_dh = box_resistance(h) * D * h  # in lattice units
    nearest_face = N // 2 - 0.5  # voxels from the cell's centre
    farthest_corner = math.sqrt(3) * (N // 2 + 0.5)
    assert 1 / (4 * math.pi * farthest_corner) < rho_dh < 1 / (4 * math.pi * nearest_face)


@pytest.mark.parametrize("h", SPACINGS)
def test_isolated_linear_cell_matches_the_sphere(h):
    errors = {}
    for corrected in (True, False):
        for strength in STRENGTHS:
            k = strength * S
            c_inf = 1.0  # pM
            uptake, _ = _solve_uptake(h, *linear_fields(h, k, corrected), c_inf, "linear")
            sphere_box = c_inf * PM * k * box_capacity(h) / (box_capacity(h) + k)
            exact = c_inf * PM * sphere.sphere_uptake_um3_per_s(D, RADIUS, k)
            errors[corrected, strength] = (uptake / sphere_box - 1, uptake / exact - 1)
            if not corrected:  # the plain model obeys the one-voxel formula (with the box's rho)
                plain = c_inf * PM / (1 / k + subgrid.LATTICE_GREEN_ORIGIN / (D * h) - box_resistance(h))
                assert uptake == pytest.approx(plain, rel=1e-5)
    for strength in STRENGTHS:
        box_error, error = errors[True, strength]
        assert abs(box_error) < 1e-3, (h, strength, box_error)
        assert abs(error) < 0.05, (h, strength, error)
    assert max(abs(errors[False, s][1]) for s in STRENGTHS) > 0.2  # without the correction: 26 - 50 % off


@pytest.mark.parametrize("h", [8.0, 10.0])
def test_autocrine_capture_of_a_secreting_consumer(h):
    q = 10.0  # molecules/s
    worst_plain = 0.0
    for strength in STRENGTHS:
        k = strength * S
        uptake, _ = _solve_uptake(h, *linear_fields(h, k, True, q), 0.0, "linear")
        fraction = uptake / q
        assert fraction == pytest.approx(k / (k + box_capacity(h)), rel=1e-3)
        assert fraction == pytest.approx(sphere.sphere_autocrine_fraction(D, RADIUS, k), rel=0.05)
        plain, _ = _solve_uptake(h, *linear_fields(h, k, False, q), 0.0, "linear")
        worst_plain = max(worst_plain, abs(plain / q / sphere.sphere_autocrine_fraction(D, RADIUS, k) - 1))
    assert worst_plain > 0.5  # one voxel alone: up to 97 % (h = 8) / 58 % (h = 10) too much


def _own_capture_run(h, k, q, law):
    """One secreting consumer (linear rate k um^3/s, K_M = KM_PM, secretion q molecules/s) through
    the run's own path (coupling.voxel_fields, coupling.own_fields), in the box with c = 0 faces:
    (the field's total uptake, the cell's uptake and seen IL-2 by coupling.cell_uptake)."""
    cp = closure((N,) * 3, [CELL], h, D, RADIUS, law)
    v, km, sec = (jnp.asarray([x], jnp.float64) for x in (k * units.pM_to_molecules_per_um3(KM_PM), KM_PM, q))
    secretion, vmax, km_field = coupling.voxel_fields(cp, v, km, sec)
    own = coupling.own_fields(cp, v, km, sec)
    coef = _coef(vmax, km_field, secretion, 0.0, law).replace(vmax_own_pM_per_s=own[0], km_own_pM=own[1], own_offset_pM=own[2])
    c, info = steady_field(_grid(h), coef, options=OPTIONS)
    assert bool(info.converged)
    uptake, seen = coupling.cell_uptake(cp, c, v, km, sec, coef)
    return float(jnp.sum(uptake_rate(c, coef))) * h**3 * PM, float(uptake[0]), float(seen[0])


@pytest.mark.parametrize("h", [16.0, 20.0, 30.0])
def test_autocrine_capture_on_large_voxels_through_the_sub_voxel_resistance(h):
    """h >= 4 pi g a: one voxel carries the bath uptake, and the own capture d = kappa R q
    (kinetics.own_capture_rate, R = 1/S - g/(D h)) the rest of the self-capture: a linear secreting
    consumer captures k/(k + S_box) of its secretion (S_box the sphere's capacity with the box's
    far field), and sees its surface value (q - U)/S_box, as the exact sphere; without the own
    capture one voxel captured (4 pi g a / h) k/(S + k), 21 % low at h = 20 um."""
    q = 10.0
    assert h >= subgrid.single_voxel_limit_um(RADIUS)
    for strength in (0.01, 0.1, 1.0, 10.0):
        k = strength * S
        total, uptake, seen = _own_capture_run(h, k, q, "linear")
        assert total / q == pytest.approx(k / (k + box_capacity(h)), rel=1e-6)
        assert uptake == pytest.approx(total, rel=1e-12)
        assert seen == pytest.approx(units.molecules_per_um3_to_pM((q - total) / box_capacity(h)), rel=1e-6)
        kappa = float(subgrid.effective_uptake(h, D, RADIUS, k).rate_um3_per_s)
        lattice_only = kappa * (subgrid.LATTICE_GREEN_ORIGIN / (D * h) - box_resistance(h))
        if h >= 20.0:  # one voxel alone captured 4 pi g a / h of it (0.99 at 16 um)
            assert total / q > (1 + 0.2) * lattice_only / (1 + lattice_only)


@pytest.mark.parametrize("h", [16.0, 20.0])
def test_saturating_own_capture_is_within_the_closures_transition_error(h):
    """The same cell with Michaelis-Menten receptors, weak to strong (k/S 0.1 - 10), unsaturated to
    saturated by its own IL-2: its uptake (and so its occupancy U/V, what it signals at) within
    the closure's transition bound of the exact sphere with the box's far field (U = V c_s/(K_M +
    c_s), c_s = (q - U)/S_box), and its seen IL-2 within 1 % while unsaturated. Measured at 20 um,
    k/S = 0.1 / 1 / 10: at most 0.5 / 3.9 / 11.8 % low; seen near saturation, c_s = K_M f/(1 - f),
    amplifies that (17 % low at f = 0.95 for k/S = 1)."""
    from scipy.optimize import brentq

    k_m = units.pM_to_molecules_per_um3(KM_PM)
    for strength in (0.1, 1.0, 10.0):
        k = strength * S
        for q in (1.0, 30.0, 100.0, 300.0, 2000.0):
            total, uptake, seen = _own_capture_run(h, k, q, "saturating")
            surface = lambda u: (q - u) / box_capacity(h)  # noqa: E731
            exact = brentq(lambda u: u - k * k_m * surface(u) / (k_m + surface(u)), 0.0, q)
            assert total == pytest.approx(exact, rel=TRANSITION_BOUND[strength]), (strength, q)
            assert uptake == pytest.approx(total, rel=1e-12)
            if q == 1.0:
                assert seen == pytest.approx(units.molecules_per_um3_to_pM(surface(exact)), rel=0.01), strength


def saturating_uptake(h, k, c_inf_pM, corrected):
    vmax = k * units.pM_to_molecules_per_um3(KM_PM)  # molecules/s
    if corrected:
        _, vmax_f, km_f = closure_fields((N,) * 3, [CELL], h, D, RADIUS, [vmax], [KM_PM], [0.0])
    else:
        vmax_f, km_f = np.zeros((N,) * 3), np.ones((N,) * 3)
        vmax_f[CELL], km_f[CELL] = units.cell_rate_to_voxel_rate_pM_per_s(vmax, h**3), KM_PM
    uptake, _ = _solve_uptake(h, vmax_f, km_f, 0.0, c_inf_pM, "saturating")
    radius_box = box_capacity(h) / (4 * math.pi * D)
    exact_box = sphere.sphere_saturating_uptake_molecules_per_s(c_inf_pM, D, radius_box, vmax, KM_PM)
    exact = sphere.sphere_saturating_uptake_molecules_per_s(c_inf_pM, D, RADIUS, vmax, KM_PM)
    return uptake, exact_box, exact, vmax


# largest |error| over c of the transition, per k/S, with margin over the measured values
# (k/S = 0.1 / 1 / 10 / 100: h = 8: 0.0 / 0.9 / 10.5 / 22.4 %; h = 10: 0.0 / 0.8 / 8.7 / 18.4 %;
#  h = 20: 0.5 / 3.9 / 14.8 / 24.9 %)
TRANSITION_BOUND = {0.1: 0.01, 1.0: 0.05, 10.0: 0.16, 100.0: 0.26}


@pytest.mark.parametrize("h", SPACINGS)
def test_saturating_cell_limits_and_transition(h):
    plain_worst = 0.0
    for strength, bound in TRANSITION_BOUND.items():
        k = strength * S
        # diffusion-limited regime (c << K_M): the correction acts on the effective rate
        uptake, exact_box, exact, vmax = saturating_uptake(h, k, 1e-3 * KM_PM, True)
        assert uptake == pytest.approx(exact_box, rel=2e-3)
        assert uptake == pytest.approx(exact, rel=0.05)
        plain, _, exact_plain, _ = saturating_uptake(h, k, 1e-3 * KM_PM, False)
        plain_worst = max(plain_worst, abs(plain / exact_plain - 1))
        # saturation (c >> K_M (1 + k/S)): uptake -> k_int R at any spacing
        uptake, _, exact, vmax = saturating_uptake(h, k, 1e4 * (1 + strength) * KM_PM, True)
        assert uptake == pytest.approx(vmax, rel=2e-3) and uptake == pytest.approx(exact, rel=1e-3)
        # the transition: the documented, bounded error
        worst = 0.0
        for c in KM_PM * np.array([1.0, 0.3 * strength, strength, 3.0 * strength]):
            uptake, exact_box, _, _ = saturating_uptake(h, k, c, True)
            worst = max(worst, abs(uptake / exact_box - 1))
        assert worst < bound, (h, strength, worst)
    assert plain_worst > 0.2


@pytest.mark.parametrize("h", SPACINGS)
def test_each_cell_reads_its_uptake_and_surface_concentration(h):
    """Per-cell attribution adds up to the field's uptake; what the cell sees is the sphere's
    surface concentration c_inf S/(S + k), not its voxel's value."""
    for strength in (0.1, 10.0):
        k = strength * S
        vmax = k * units.pM_to_molecules_per_um3(KM_PM)
        _, vmax_f, km_f = closure_fields((N,) * 3, [CELL], h, D, RADIUS, [vmax], [KM_PM], [0.0])
        total, c = _solve_uptake(h, vmax_f, km_f, 0.0, 1.0, "linear")
        uptake, seen = closure_cell_uptake(c, [CELL], h, D, RADIUS, vmax, KM_PM, "linear")
        assert uptake[0] == pytest.approx(total, rel=1e-12)
        assert seen[0] == pytest.approx(box_capacity(h) / (box_capacity(h) + k), rel=1e-3)
        assert seen[0] == pytest.approx(S / (S + k), rel=0.05)
    if h == 20.0:  # one voxel: the strong consumer's surface sees c_0 kappa/k, a third of its voxel value
        assert seen[0] < 0.5 * float(c[CELL])


def test_attribution_between_overlapping_cells_conserves_uptake():
    h, shape = 10.0, (8, 8, 8)
    voxel = np.array([[3, 3, 3], [4, 3, 3], [3, 4, 3], [0, 0, 0]])
    vmax = np.array([11.0, 2.0, 0.5, 5.0])
    km = np.array([43.0, 43.0, 1000.0, 43.0])
    c = np.random.default_rng(1).uniform(1.0, 200.0, shape)
    _, vmax_f, km_f = closure_fields(shape, voxel, h, D, RADIUS, vmax, km, 0.0)
    field_total = units.voxel_rate_to_cell_rate_molecules_per_s(np.sum(vmax_f * c / (km_f + c)), h**3)
    uptake, seen = closure_cell_uptake(c, voxel, h, D, RADIUS, vmax, km)
    assert uptake.sum() == pytest.approx(field_total, rel=1e-12)
    assert np.all((uptake > 0) & (uptake < vmax)) and np.all(seen > 0)


@pytest.mark.parametrize("h", [8.0, 20.0])  # the two regimes of the closure: the 7-voxel cross and one voxel
def test_exact_saturating_route_by_linearised_outer_iteration(h):
    """Linear solves with K_eff = K_M + c_s, c_s updated from the sphere's far field, converge to
    the exact Michaelis-Menten sphere, including the transition the per-voxel law misses."""
    for strength in (1.0, 10.0, 100.0):
        k = strength * S
        vmax = k * units.pM_to_molecules_per_um3(KM_PM)
        for c_inf in KM_PM * strength * np.array([0.3, 1.0, 3.0]):
            radius_box = box_capacity(h) / (4 * math.pi * D)
            exact_box = sphere.sphere_saturating_uptake_molecules_per_s(c_inf, D, radius_box, vmax, KM_PM)
            km_eff = KM_PM
            for _ in range(3):
                _, vmax_f, km_f = closure_fields((N,) * 3, [CELL], h, D, RADIUS, [vmax], [km_eff], [0.0])
                _, c = _solve_uptake(h, vmax_f, km_f, 0.0, c_inf, "linear")
                uptake, surface = closure_cell_uptake(c, [CELL], h, D, RADIUS, vmax, km_eff, "linear")
                far = sphere.far_field_pM(uptake, surface, D, RADIUS)
                km_eff = sphere.linearised_km_pM(far, D, RADIUS, vmax, KM_PM)[0]
            assert uptake[0] == pytest.approx(exact_box, rel=1e-3), (h, strength, c_inf)
            assert uptake[0] == pytest.approx(
                sphere.sphere_saturating_uptake_molecules_per_s(c_inf, D, RADIUS, vmax, KM_PM), rel=0.05)


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("spacing_um, alpha, tortuosity", [(8.0, 1.0, 1.0), (10.0, 1.0, 1.0), (20.0, 1.0, 1.0), (10.0, 0.3, 1.6)])
def test_a_default_run_reads_out_the_sphere_uptake(tmp_path, spacing_um, alpha, tortuosity, precision):
    """Through the run path with NO closure flag (physics.cell_radius defaults to the type's
    radius, 5 um): one strong linear consumer (k = 10 x 4 pi D a) in the box of the tests above,
    faces at 1 pM. Its uptake readout is the box-corrected sphere's within 1e-3 (float64) / 3e-3
    (float32; the field is 1 pM, its rounding 6e-8) and the infinite-bath sphere's within 5 %;
    point sinks (physics.cell_radius=null) are far off at 8 um. In tissue (interstitial fraction
    alpha, tortuosity lambda) the sphere's capacity is 4 pi alpha (D / lambda^2) a, c per
    interstitial volume."""
    from compose import compose_config

    from il2rd.simulate import run

    d = 10.0
    d_closure = alpha * d / tortuosity**2
    capacity = 4 * np.pi * d_closure * RADIUS
    k = 10 * capacity  # um^3/s
    km_pM, k_int = 43.0, 1.1e-3
    receptors = k * units.pM_to_molecules_per_um3(km_pM) / k_int
    centre = (CELL[0] + 0.5) * spacing_um
    csv = tmp_path / "cell.csv"
    csv.write_text(f"x,y,z,type\n{centre},{centre},{centre},treg\n")
    common = [f"grid.shape=[{N},{N},{N}]", f"grid.spacing={spacing_um}", "grid.boundary=fixed", "grid.boundary_value=1.0",
              "physics.decay=0", "physics.uptake=linear", f"cells.csv={csv}", f"cell_types.treg.receptors={receptors}",
              f"cell_types.treg.km={km_pM}", f"cell_types.treg.k_int={k_int}", f"precision={precision}",
              f"solver.rtol={1e-10 if precision == 'float64' else 1e-5}",
              "output.progress=false", "output.attribution=false", f"physics.volume_fraction={alpha}",
              f"physics.tortuosity={tortuosity}"]
    bath = units.pM_to_molecules_per_um3(1.0)
    # the box's far field in series with the sphere: rho scales as 1/D (box_resistance is for D = 10)
    rho = box_resistance(spacing_um) * d / d_closure
    box = 1.0 / (1.0 / capacity - rho)
    corrected = run(compose_config(*common), tmp_path / "corrected")
    uptake = {t.name: t.total_uptake_molecules_per_s for t in corrected.summary.types}["treg"]
    assert uptake == pytest.approx(bath * k * box / (box + k), rel=1e-3 if precision == "float64" else 3e-3)
    assert uptake == pytest.approx(bath * k * capacity / (capacity + k), rel=0.05)
    if spacing_um == 8.0:
        plain = run(compose_config(*common, "physics.cell_radius=null"), tmp_path / "plain")
        assert abs({t.name: t.total_uptake_molecules_per_s for t in plain.summary.types}["treg"] / (bath * k * capacity / (capacity + k)) - 1) > 0.2
