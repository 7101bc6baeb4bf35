"""Global balance at steady state (science.md exact result 3):

    total secretion = total uptake + bulk decay + boundary outflux

for every boundary kind, with random sources (1 %) and saturating consumers (20 %) in physical
units. The balance is exact for the discrete equations (the Laplacian sums to the net face flux),
so the imbalance is bounded by the solver's residual: |imbalance| <= sum |F(c)| h^3
<= sqrt(N) ||F(c)||_2 h^3 <= sqrt(N) rtol ||F(0)||_2 h^3.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from helpers import coefficients, np_tendency, random_cells
from il2rd.physics import grid as grid_mod
from il2rd.physics.grid import Grid
from il2rd.solvers import steady
from il2rd.solvers.steady import SolverOptions, steady_field

RTOL = 1e-8
D, K_DECAY, H = 10.0, 2.8e-5, 10.0  # um^2/s, 1/s (0.1/h), um

CASES = {
    # name: (shape, boundary kinds, face values pM)
    "zero_flux": ((28, 28, 28), ("zero_flux",) * 6, [0.0] * 6),
    "fixed_zero": ((28, 28, 28), ("fixed",) * 6, [0.0] * 6),
    "fixed_serum": ((28, 28, 28), ("fixed",) * 6, [5.0] * 6),
    "periodic": ((28, 28, 28), ("periodic",) * 6, [0.0] * 6),
    "mixed": ((32, 24, 28), ("fixed", "fixed", "periodic", "periodic", "zero_flux", "fixed"), [0.0, 3.0, 0.0, 0.0, 0.0, 1.0]),
    "mixed_other": ((24, 32, 24), ("zero_flux", "fixed", "fixed", "zero_flux", "periodic", "periodic"), [0.0, 2.0, 0.5, 0.0, 0.0, 0.0]),
    "two_d": ((64, 64, 1), ("fixed", "zero_flux", "periodic", "periodic", "fixed", "fixed"), [0.0, 0.0, 0.0, 0.0, 7.0, 7.0]),
}


def budget(c, grid, coef):
    """(secretion, uptake, decay, outflux), all in pM um^3/s, from the numpy side except the
    outflux, which is il2rd's own readout (grid.boundary_outflux) under test."""
    c = np.asarray(c, np.float64)
    volume = grid.voxel_volume_um3
    secretion = np.asarray(coef.secretion_pM_per_s).sum() * volume
    vmax, km = np.asarray(coef.vmax_pM_per_s), np.asarray(coef.km_pM)
    uptake = np.sum(vmax * c / (km + c)) * volume
    decay = float(coef.decay_per_s) * c.sum() * volume
    outflux = float(grid_mod.boundary_outflux(jnp.asarray(c), grid, coef.diffusion_um2_per_s, coef.face_values_pM))
    return secretion, uptake, decay, outflux


@pytest.mark.parametrize("case", sorted(CASES))
def test_global_balance(case):
    shape, kinds, faces = CASES[case]
    grid = Grid(shape, H, kinds)
    secretion, vmax, km = random_cells(shape, H, seed=sorted(CASES).index(case))
    coef = coefficients(shape, D, K_DECAY, secretion, vmax, km, faces, "saturating")
    c, info = steady_field(grid, coef, options=SolverOptions(rtol=RTOL))

    # the solver says it converged, and what it says is true
    assert bool(info.converged)
    assert float(info.relative_residual) <= RTOL
    f0 = np.linalg.norm(np_tendency(np.zeros(shape), grid, coef))
    f = np.linalg.norm(np_tendency(c, grid, coef))
    assert f / f0 == pytest.approx(float(info.relative_residual), rel=1e-3, abs=1e-14)
    assert np.all(np.asarray(c) >= 0)
    assert np.all(np.isfinite(np.asarray(c)))

    sec, up, dec, out = budget(c, grid, coef)
    imbalance = sec - up - dec - out
    scale = sec + up + dec + abs(out)
    print(f"{case}: secretion {sec:.6g} = uptake {up:.6g} + decay {dec:.6g} + outflux {out:.6g}; "
          f"relative imbalance {imbalance / scale:.2e}; Newton {int(info.newton_iterations)}, "
          f"CG {int(info.krylov_iterations)}, residual {float(info.relative_residual):.2e}")
    assert abs(imbalance) <= np.sqrt(grid.n_voxels) * f * grid.voxel_volume_um3 * (1 + 1e-6)
    assert abs(imbalance) <= 1e-4 * scale
    # every term that the case exercises is really there (the balance is not trivially 0 = 0)
    assert up > 0.1 * sec
    if "fixed" in grid.boundary:
        assert abs(out) > 1e-3 * scale
    else:
        assert out == 0.0


def test_serum_without_cells_fills_the_box_uniformly():
    """Fixed faces at c_b, no cells, no decay: c = c_b everywhere, no outflux."""
    shape = (12, 10, 8)
    grid = Grid(shape, H, ("fixed",) * 6)
    coef = coefficients(shape, D, 0.0, faces=[4.0] * 6)
    c, info = steady_field(grid, coef, options=SolverOptions(rtol=1e-12))
    np.testing.assert_allclose(np.asarray(c), 4.0, rtol=1e-10)
    assert abs(float(grid_mod.boundary_outflux(c, grid, coef.diffusion_um2_per_s, coef.face_values_pM))) < 1e-6


def test_serum_inflow_feeds_consumers():
    """Consumers only, serum at the faces: inflow through the faces = uptake + decay."""
    shape = (20, 20, 20)
    grid = Grid(shape, H, ("fixed",) * 6)
    _, vmax, km = random_cells(shape, H, seed=7, source_fraction=0.0)
    coef = coefficients(shape, D, K_DECAY, 0.0, vmax, km, [10.0] * 6, "saturating")
    c, info = steady_field(grid, coef, options=SolverOptions(rtol=RTOL))
    assert bool(info.converged)
    sec, up, dec, out = budget(c, grid, coef)
    assert sec == 0.0 and out < 0  # net inflow
    assert -out == pytest.approx(up + dec, rel=1e-6)
    assert np.all(np.asarray(c) <= 10.0 + 1e-9)  # maximum principle: sinks only


def test_float32_stops_at_its_round_off_floor_and_reports_it():
    """float32 cannot reach rtol = 1e-10; it stops where its backward error reaches the round-off
    floor (solvers/steady.py), says which bound it met, and reports the residual and backward error
    of the field it returns (recomputed here in float64 by the independent numpy operator)."""
    shape = (28, 28, 28)
    grid = Grid(shape, H, ("fixed",) * 6)
    secretion, vmax, km = random_cells(shape, H, seed=1)
    coef = coefficients(shape, D, K_DECAY, secretion, vmax, km, [1.0] * 6, "saturating", jnp.float32)
    c, info = steady_field(grid, coef, options=SolverOptions(rtol=1e-10))
    assert c.dtype == jnp.float32
    assert bool(info.converged)
    c64 = np.asarray(c, np.float64)
    f, f0 = np.linalg.norm(np_tendency(c64, grid, coef)), np.linalg.norm(np_tendency(np.zeros(shape), grid, coef))
    uptake_slope = np.asarray(coef.vmax_pM_per_s, np.float64) * np.asarray(coef.km_pM, np.float64) / (
        np.asarray(coef.km_pM, np.float64) + c64) ** 2
    j_norm = D * 12 / H**2 + K_DECAY + uptake_slope.max()  # ||J||_inf of the 3-D 7-point operator
    backward = f / (j_norm * np.linalg.norm(c64) + f0)
    print(f"float32 at rtol 1e-10: relative residual {float(info.relative_residual):.3g} (actual {f / f0:.3g}), "
          f"backward error {float(info.backward_error):.3g} (actual {backward:.3g})")
    assert float(info.relative_residual) > 1e-10  # rtol was out of reach ...
    assert backward <= steady.ROUNDOFF_ULPS * np.finfo(np.float32).eps  # ... the floor was met
    assert float(info.relative_residual) == pytest.approx(f / f0, rel=0.1)  # float32 evaluation of the same norms
    assert float(info.backward_error) == pytest.approx(backward, rel=0.1)
    assert np.all(c64 >= 0)


@pytest.mark.parametrize("limit", [dict(max_newton=1), dict(max_newton=3, max_krylov=1)])
def test_a_solve_cut_short_is_reported_not_hidden(limit):
    """A genuine failure (too few Newton steps or CG iterations for either bound) says converged
    False in float32 as in float64, with the residual of the field it returns."""
    shape = (20, 20, 20)
    grid = Grid(shape, H, ("fixed",) * 6)
    secretion, vmax, km = random_cells(shape, H, seed=1)
    for dtype in (jnp.float32, jnp.float64):
        coef = coefficients(shape, D, K_DECAY, secretion, vmax, km, [1.0] * 6, "saturating", dtype)
        c, info = steady_field(grid, coef, options=SolverOptions(**limit))
        assert not bool(info.converged), dtype
        actual = np.linalg.norm(np_tendency(np.asarray(c, np.float64), grid, coef)) / np.linalg.norm(
            np_tendency(np.zeros(shape), grid, coef))
        assert float(info.relative_residual) == pytest.approx(actual, rel=0.1)
        assert actual > 1e-6
