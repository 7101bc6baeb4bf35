"""Time stepping: backward Euler ('implicit') and forward Euler ('explicit').

Checked against the exact solution of the semi-discrete linear system (matrix exponential of an
independently assembled operator), against a fine-dt reference for saturating uptake, against the
steady solver at late times, at huge time steps (non-negativity, no blow-up), and in float32.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm

from helpers import coefficients, dense_linear_operator, fit_order, pair_orders, random_cells
from il2rd.physics.grid import Grid
from il2rd.solvers.steady import SolverOptions, steady_field
from il2rd.solvers.transient import STABILITY_MARGIN, explicit_stable_dt, explicit_substeps
from il2rd.solvers import steppers

OPTIONS = SolverOptions(rtol=1e-11)
D, H = 10.0, 5.0
KINDS = ("fixed", "fixed", "zero_flux", "zero_flux", "periodic", "periodic")


def advance(c, grid, coef, dt, n_steps, kind, options=OPTIONS, chunk=None):
    """n_steps steps of dt; chunk (dividing n_steps) runs them as n_steps / chunk calls of chunk
    steps each, so that runs of different lengths share one compilation (n_steps is static)."""
    chunk = chunk or n_steps
    assert n_steps % chunk == 0
    c = jnp.asarray(c, coef.dtype)
    for _ in range(n_steps // chunk):
        c, info = steppers.advance(steppers.build(kind, coef, grid, options), c, 0.0, jnp.asarray(dt, coef.dtype), chunk)
        assert bool(info.converged), info
    return np.asarray(c, np.float64)


def nonlinear_problem(dtype=jnp.float64, shape=(12, 12, 12)):
    """Sources (2 %) and saturating consumers (20 %), decay, x faces fixed at 0 and 2 pM."""
    grid = Grid(shape, H, KINDS)
    secretion, vmax, km = random_cells(shape, H, seed=3, source_fraction=0.02, consumer_fraction=0.2)
    coef = coefficients(shape, D, 0.01, secretion, vmax, km, [0.0, 2.0, 0, 0, 0, 0], "saturating", dtype)
    return grid, coef


def initial_field(shape, seed=11, peak=200.0):
    """A rough non-negative start: zero in most voxels, spikes up to `peak` pM in some."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(shape) < 0.1, peak * rng.random(shape), 0.0)


@pytest.fixture(scope="module")
def nonlinear():
    grid, coef = nonlinear_problem()
    steady, info = steady_field(grid, coef, options=OPTIONS)
    assert bool(info.converged)
    return grid, coef, np.asarray(steady), initial_field(grid.shape)


# ---------------------------------------------------------------------------------------------
# Late times, and the two schemes against each other.


def test_late_time_converges_to_steady(nonlinear):
    grid, coef, steady, c0 = nonlinear
    scale = np.abs(steady).max()
    implicit = advance(c0, grid, coef, 10.0, 30, "implicit")  # 300 s
    dt = explicit_stable_dt(grid, coef)
    explicit = advance(c0, grid, coef, dt, int(math.ceil(300.0 / dt)), "explicit")
    print(f"late time: implicit {np.abs(implicit - steady).max() / scale:.2e}, "
          f"explicit {np.abs(explicit - steady).max() / scale:.2e} relative to the steady field")
    assert np.abs(implicit - steady).max() <= 1e-7 * scale
    assert np.abs(explicit - steady).max() <= 1e-7 * scale
    # and at early times the field is still far from it (the comparison above is not vacuous)
    early = advance(c0, grid, coef, 0.1, 5, "implicit")
    assert np.abs(early - steady).max() > 0.1 * scale


def test_implicit_and_explicit_agree_at_small_dt(nonlinear):
    grid, coef, steady, c0 = nonlinear
    t, dt = 2.0, 0.005
    assert dt < explicit_stable_dt(grid, coef)
    n = int(round(t / dt))
    implicit = advance(c0, grid, coef, dt, n, "implicit")
    explicit = advance(c0, grid, coef, dt, n, "explicit")
    scale = np.abs(explicit).max()
    difference = np.abs(implicit - explicit).max() / scale
    # both are O(dt) from the exact solution, so their difference halves with dt
    coarse = np.abs(advance(c0, grid, coef, 2 * dt, n // 2, "implicit") - advance(c0, grid, coef, 2 * dt, n // 2, "explicit")).max() / scale
    print(f"implicit vs explicit at t = {t} s: {difference:.2e} (dt = {dt}), {coarse:.2e} (dt = {2 * dt})")
    assert difference < 2e-3
    assert coarse / difference == pytest.approx(2.0, rel=0.05)


# ---------------------------------------------------------------------------------------------
# Orders of accuracy.


@pytest.fixture(scope="module")
def linear():
    """A small linear problem (linear uptake, decay, sources, serum on two faces) with its exact
    semi-discrete solution c(T) = c_ss + expm(-A T) (c0 - c_ss), A and b assembled by numpy."""
    shape = (8, 6, 5)
    grid = Grid(shape, H, ("fixed", "fixed", "zero_flux", "fixed", "periodic", "periodic"))
    secretion, vmax, km = random_cells(shape, H, seed=5, source_fraction=0.05, consumer_fraction=0.3)
    coef = coefficients(shape, D, 0.05, secretion, vmax, km, [1.0, 0.0, 0.0, 3.0, 0.0, 0.0], "linear")
    A, b = dense_linear_operator(grid, coef)
    c0 = initial_field(shape, seed=2)
    steady = np.linalg.solve(A, b)
    T = 2.0
    exact = steady + expm(-A * T) @ (c0.ravel() - steady)
    return grid, coef, A, b, c0, T, exact.reshape(shape)


def test_schemes_are_the_documented_recurrences(linear):
    """One step of each scheme equals (I + dt A)^-1 (c + dt b) resp. c + dt (b - A c)."""
    grid, coef, A, b, c0, _, _ = linear
    dt = 0.1
    implicit = advance(c0, grid, coef, dt, 1, "implicit").ravel()
    explicit = advance(c0, grid, coef, dt, 1, "explicit").ravel()
    expected_implicit = np.linalg.solve(np.eye(len(b)) + dt * A, c0.ravel() + dt * b)
    expected_explicit = c0.ravel() + dt * (b - A @ c0.ravel())
    np.testing.assert_allclose(implicit, expected_implicit, rtol=1e-9, atol=1e-9 * np.abs(expected_implicit).max())
    np.testing.assert_allclose(explicit, expected_explicit, rtol=1e-12, atol=1e-12 * np.abs(expected_explicit).max())


def test_backward_euler_is_first_order(linear):
    grid, coef, _, _, c0, T, exact = linear
    steps = (4, 8, 16, 32, 64)
    errors = [np.abs(advance(c0, grid, coef, T / n, n, "implicit", chunk=4) - exact).max() / np.abs(exact).max() for n in steps]
    dts = [T / n for n in steps]
    order = fit_order(dts, errors)
    print(f"backward Euler: errors {errors}, order {order:.3f}, pairs {pair_orders(dts, errors)}")
    assert 0.9 <= order <= 1.1
    assert errors[-1] < 5e-3


def test_forward_euler_is_first_order(linear):
    grid, coef, _, _, c0, T, exact = linear
    limit = explicit_stable_dt(grid, coef)
    n0 = int(math.ceil(T / limit))
    steps = tuple(n0 * 2**i for i in range(5))
    errors = [np.abs(advance(c0, grid, coef, T / n, n, "explicit", chunk=n0) - exact).max() / np.abs(exact).max() for n in steps]
    dts = [T / n for n in steps]
    order = fit_order(dts, errors)
    print(f"forward Euler: dt {dts}, errors {errors}, order {order:.3f}, pairs {pair_orders(dts, errors)}")
    assert 0.9 <= order <= 1.1
    assert errors[-1] < 5e-3


def test_first_order_with_saturating_uptake(nonlinear):
    """Both schemes against a fine reference (Richardson extrapolation of two fine forward-Euler
    runs, second order), for the nonlinear problem."""
    grid, coef, _, c0 = nonlinear
    T = 2.0
    fine = 1024
    reference = 2 * advance(c0, grid, coef, T / (2 * fine), 2 * fine, "explicit") - advance(c0, grid, coef, T / fine, fine, "explicit")
    scale = np.abs(reference).max()
    n0 = int(math.ceil(T / explicit_stable_dt(grid, coef)))
    for kind, steps, chunk in (("implicit", (4, 8, 16, 32), 4), ("explicit", tuple(n0 * 2**i for i in range(4)), n0)):
        dts = [T / n for n in steps]
        errors = [np.abs(advance(c0, grid, coef, T / n, n, kind, chunk=chunk) - reference).max() / scale for n in steps]
        order = fit_order(dts, errors)
        print(f"{kind}, saturating: dt {dts}, errors {errors}, order {order:.3f}")
        assert 0.9 <= order <= 1.1


# ---------------------------------------------------------------------------------------------
# Huge time steps.


def test_implicit_huge_steps_stay_non_negative(nonlinear):
    grid, coef, steady, _ = nonlinear
    c0 = initial_field(grid.shape, seed=4, peak=1e4)  # spikes far above the steady field
    c = c0
    for _ in range(3):
        c = advance(c, grid, coef, 1e4, 1, "implicit")
        assert np.all(np.isfinite(c))
        assert np.all(c >= 0)
    # after 3e4 s nothing is left of the start but the steady field
    assert np.abs(c - steady).max() <= 1e-6 * np.abs(steady).max()


def test_explicit_requested_huge_step_is_substepped(nonlinear):
    grid, coef, steady, _ = nonlinear
    limit = explicit_stable_dt(grid, coef)
    requested = 1e3
    m = explicit_substeps(grid, coef, requested)
    assert requested / m <= limit
    assert requested / (m - 1) > limit  # no more sub-steps than needed
    c = initial_field(grid.shape, seed=4, peak=1e4)
    top = max(c.max(), steady.max())
    for _ in range(2):  # two requested steps
        c = advance(c, grid, coef, requested / m, m, "explicit")
        assert np.all(np.isfinite(c))
        assert np.all(c >= 0)
        assert c.max() <= 2 * top  # no growth: an unstable step would multiply by ~|1 - dt rate|^m
    assert np.abs(c - steady).max() <= 1e-6 * np.abs(steady).max()


def test_explicit_limit_is_the_positivity_limit():
    """dt = explicit_stable_dt / margin is exactly where forward Euler stops being
    non-negative: a spike in the voxel with the largest rate (a strong linear consumer on the fixed
    x face, inside in y and z: diagonal (3 + 2 + 2) / h^2) lands on 0 at the limit and below 0
    just above it."""
    shape = (6, 5, 4)
    grid = Grid(shape, H, KINDS)
    vmax = np.zeros(shape)
    spot = (0, 2, 1)
    vmax[spot] = 2.0
    coef = coefficients(shape, D, 0.01, 0.0, vmax, 1.0, uptake="linear")
    limit = explicit_stable_dt(grid, coef) / STABILITY_MARGIN
    assert limit == pytest.approx(1.0 / (D * 7 / H**2 + 0.01 + 2.0), rel=1e-12)
    c0 = np.zeros(shape)
    c0[spot] = 1.0
    at = advance(c0, grid, coef, limit, 1, "explicit")
    above = advance(c0, grid, coef, 1.05 * limit, 1, "explicit")
    assert abs(at[spot]) < 1e-12
    assert np.all(at >= -1e-12)
    assert above[spot] < -0.04


# ---------------------------------------------------------------------------------------------
# float32 against float64.


def test_float32_matches_float64_steady():
    grid, coef64 = nonlinear_problem(jnp.float64, (24, 24, 24))
    _, coef32 = nonlinear_problem(jnp.float32, (24, 24, 24))
    c64, info64 = steady_field(grid, coef64, options=SolverOptions(rtol=1e-10))
    c32, info32 = steady_field(grid, coef32, options=SolverOptions(rtol=1e-5))
    assert c32.dtype == jnp.float32 and c64.dtype == jnp.float64
    assert bool(info32.converged) and bool(info64.converged)
    error = np.abs(np.asarray(c32, np.float64) - np.asarray(c64)).max() / np.abs(np.asarray(c64)).max()
    print(f"float32 steady: relative error {error:.2e}, residual {float(info32.relative_residual):.2e}")
    assert error < 1e-4
    assert np.all(np.asarray(c32) >= 0)


@pytest.mark.parametrize("kind", ["implicit", "explicit"])
def test_float32_matches_float64_transient(kind):
    grid, coef64 = nonlinear_problem(jnp.float64)
    _, coef32 = nonlinear_problem(jnp.float32)
    c0 = initial_field(grid.shape)
    dt = 0.2 if kind == "explicit" else 1.0
    assert dt <= explicit_stable_dt(grid, coef32) or kind == "implicit"
    n = 50
    c64 = advance(c0, grid, coef64, dt, n, kind, SolverOptions(rtol=1e-10))
    c32, info = steppers.advance(steppers.build(kind, coef32, grid, SolverOptions(rtol=1e-5)), jnp.asarray(c0, jnp.float32), 0.0,
                                 jnp.asarray(dt, jnp.float32), n)
    assert c32.dtype == jnp.float32
    assert bool(info.converged)
    error = np.abs(np.asarray(c32, np.float64) - c64).max() / np.abs(c64).max()
    print(f"float32 {kind}: relative error {error:.2e}")
    assert error < 1e-4
