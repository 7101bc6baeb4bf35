"""The solvers in the precision users run (float32, x64 off): every well-posed problem
converges and agrees with an independent float64 solution (reference64.py).

Agreement: max |c32 - c64| <= 1e-4 max c64 over the lattice at the shipped rtol; and, asked for
more than float32 can reach (rtol 1e-9: Newton then stops at float32's round-off floor), pointwise to
1e-4 of the local value where c64 > 1e-6 max c64 on the physical problems (a lymph-node-like tissue
at 10 um). At the shipped rtol 1e-6 the pointwise error far from the sources is set by rtol in either
precision (4.5e-4 in one of these cases, float32 and float64 alike: test_float32_float64.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

from helpers import coefficients, np_tendency, random_cells
from il2rd.physics.grid import Grid
from il2rd.solvers.steady import ROUNDOFF_ULPS, SolverOptions, steady_field
from il2rd.solvers.transient import explicit_stable_dt
from il2rd.solvers.steppers import advance, build
from reference64 import steady_reference
from test_properties import PROPERTY_SETTINGS, scenarios

EPS32 = float(np.finfo(np.float32).eps)
OPTIONS = SolverOptions()  # the shipped defaults, rtol 1e-6


def test_x64_is_off():
    assert not jax.config.jax_enable_x64
    assert jnp.zeros(3).dtype == jnp.float32


def as_float32(coef):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), coef)


def assert_agrees(c32, c64, pointwise: bool):
    c32 = np.asarray(c32, np.float64)
    scale = c64.max()
    assert np.all(c32 >= 0)
    assert np.max(np.abs(c32 - c64)) <= 1e-4 * scale, f"normwise error {np.max(np.abs(c32 - c64)) / scale:.2e}"
    if pointwise:
        inside = c64 > 1e-6 * scale
        worst = np.max(np.abs(c32[inside] - c64[inside]) / c64[inside])
        assert worst <= 1e-4, f"pointwise error {worst:.2e} where c > 1e-6 max c"


def assert_converged(info):
    assert bool(info.converged), (f"relative residual {float(info.relative_residual):.3g}, backward error "
                                  f"{float(info.backward_error):.3g} after {int(info.newton_iterations)} Newton steps")
    assert float(info.relative_residual) <= OPTIONS.rtol or float(info.backward_error) <= ROUNDOFF_ULPS * EPS32


# the failing cases: one source in a small box, and sparse random tissue, with and without
# consumers, saturating and linear uptake (they stopped at relative residual 1e-6 - 1e-5 before)
PHYSICAL = [
    dict(shape=(16, 16, 16), source_fraction=0.0, consumer_fraction=0.0, uptake="saturating"),
    dict(shape=(32, 32, 32), source_fraction=0.0, consumer_fraction=0.0, uptake="saturating"),
    dict(shape=(24, 24, 24), source_fraction=0.005, consumer_fraction=0.02, uptake="saturating"),
    dict(shape=(24, 24, 24), source_fraction=0.01, consumer_fraction=0.2, uptake="saturating"),
    dict(shape=(24, 24, 24), source_fraction=0.01, consumer_fraction=0.7, uptake="linear"),
    dict(shape=(20, 20, 20), source_fraction=0.05, consumer_fraction=0.1, uptake="linear", boundary="fixed"),
]


# two placements of each random tissue; the one-source boxes have a single placement
CASES = [(case, seed) for case in PHYSICAL for seed in ((0,) if case["source_fraction"] == 0.0 else (0, 1))]


@pytest.mark.parametrize(("case", "seed"), CASES,
                         ids=[f"{c['shape'][0]}^3-src{c['source_fraction']}-con{c['consumer_fraction']}-{s}" for c, s in CASES])
def test_physical_problems_converge_and_match_float64(case, seed):
    shape = case["shape"]
    grid = Grid(shape, 10.0, (case.get("boundary", "zero_flux"),) * 6)
    secretion, vmax, km = random_cells(shape, 10.0, seed, case["source_fraction"], case["consumer_fraction"],
                                       receptors=2e4 if case["consumer_fraction"] < 0.5 else 100.0)
    if case["source_fraction"] == 0.0:  # one source in the middle of the box
        secretion = np.zeros(shape)
        secretion[tuple(n // 2 for n in shape)] = 10.0 / (6.02214076e-4 * 1e3)
    coef = coefficients(shape, 10.0, 2.8e-5, secretion, vmax, km, None, case["uptake"], jnp.float32)
    reference = steady_reference(grid, coef)
    c, info = steady_field(grid, coef, options=OPTIONS)
    assert c.dtype == jnp.float32
    assert_converged(info)
    assert_agrees(c, reference, pointwise=False)
    c, info = steady_field(grid, coef, options=SolverOptions(rtol=1e-9))
    assert bool(info.converged) and float(info.backward_error) <= ROUNDOFF_ULPS * EPS32
    assert_agrees(c, reference, pointwise=True)


@PROPERTY_SETTINGS
@given(scenarios())
def test_random_problems_converge_in_float32(problem):
    """Every boundary kind, 1-D to 3-D, sparse to dense consumers, D 1 - 200 um^2/s, decay 0 -
    1e-2 /s: converged in float32, and within 1e-4 of the float64 field normwise."""
    grid, coef = problem
    c, info = steady_field(grid, as_float32(coef), options=OPTIONS)
    assert_converged(info)
    assert_agrees(c, steady_reference(grid, coef), pointwise=False)


def test_implicit_steps_match_float64():
    shape = (16, 16, 16)
    grid = Grid(shape, 10.0)
    secretion, vmax, km = random_cells(shape, 10.0, 3, 0.01, 0.3)
    coef = coefficients(shape, 10.0, 2.8e-5, secretion, vmax, km, None, "saturating", jnp.float32)
    dt, n = 60.0, 3
    c, info = advance(build("implicit", coef, grid, OPTIONS), jnp.zeros(shape, jnp.float32), 0.0, jnp.float32(dt), n)
    assert_converged(info)
    ref = np.zeros(shape)
    for _ in range(n):
        ref = steady_reference(grid, coef, c_prev=ref, dt=dt)
    assert_agrees(c, ref, pointwise=False)


def test_explicit_steps_match_float64():
    shape = (16, 16, 16)
    grid = Grid(shape, 10.0, ("fixed",) * 6)
    secretion, vmax, km = random_cells(shape, 10.0, 4, 0.02, 0.3)
    coef = coefficients(shape, 10.0, 2.8e-5, secretion, vmax, km, [2.0] * 6, "saturating", jnp.float32)
    dt = 0.5 * explicit_stable_dt(grid, coef)
    c, _ = advance(build("explicit", coef, grid, OPTIONS), jnp.zeros(shape, jnp.float32), 0.0, jnp.float32(dt), 200)
    ref = np.zeros(shape)
    for _ in range(200):
        ref = ref + dt * np_tendency(ref, grid, coef)
    assert_agrees(c, ref, pointwise=False)
