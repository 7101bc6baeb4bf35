"""The multigrid preconditioner: its hierarchy, and the properties CG needs (a symmetric,
positive-definite approximate inverse); and that it solves what the mean-operator
preconditioner solves, in fewer CG iterations that do not grow with the lattice."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from il2rd.physics import grid as grid_mod, units
from il2rd.physics.grid import Grid
from il2rd.physics.kinetics import FieldCoefficients
from il2rd.solvers.multigrid import Multigrid, hierarchy, laplacian_diagonal, prolong, restrict
from il2rd.solvers.steady import SolverOptions, steady_field

BOUNDARIES = {
    "zero_flux": ("zero_flux",) * 6,
    "fixed": ("fixed",) * 6,
    "periodic": ("periodic",) * 6,
    "mixed": ("fixed", "zero_flux", "periodic", "periodic", "zero_flux", "fixed"),
}


def test_hierarchy_halves_every_long_axis_while_even():
    assert [g.shape for g in hierarchy(Grid((32, 16, 64), 10.0))] == [(32, 16, 64), (16, 8, 32), (8, 4, 16)]
    assert [g.spacing_um for g in hierarchy(Grid((32, 16, 64), 10.0))] == [10.0, 20.0, 40.0]
    assert [g.shape for g in hierarchy(Grid((100, 100, 100), 5.0))] == [(100,) * 3, (50,) * 3, (25,) * 3]
    assert [g.shape for g in hierarchy(Grid((64, 32, 1), 10.0))] == [(64, 32, 1), (32, 16, 1), (16, 8, 1), (8, 4, 1)]
    assert len(hierarchy(Grid((31, 32, 32), 10.0))) == 1  # odd axis: one level, the mean operator


def test_transfers_are_adjoint_up_to_the_child_count():
    rng = np.random.default_rng(0)
    fine, coarse = rng.normal(size=(8, 6, 4)), rng.normal(size=(4, 3, 2))
    axes = (0, 1, 2)
    lhs = float(jnp.vdot(restrict(jnp.asarray(fine), axes), coarse))
    rhs = float(jnp.vdot(fine, prolong(jnp.asarray(coarse), axes))) / 8
    assert lhs == pytest.approx(rhs, rel=1e-12)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("shape", [(16, 16, 16), (16, 8, 1)])
def test_laplacian_diagonal_matches_the_operator(boundary, shape):
    grid = Grid(shape, 5.0, BOUNDARIES[boundary])
    diagonal = np.asarray(laplacian_diagonal(grid, jnp.float64))
    # the diagonal of -lap at voxel i is -lap(e_i)_i; probe a few voxels
    rng = np.random.default_rng(1)
    for flat in rng.choice(grid.n_voxels, 12, replace=False).tolist() + [0, grid.n_voxels - 1]:
        e = np.zeros(grid.n_voxels)
        e[flat] = 1.0
        column = -np.asarray(grid_mod.laplacian(jnp.asarray(e.reshape(shape)), grid)).reshape(-1)
        assert diagonal.reshape(-1)[flat] == pytest.approx(column[flat], rel=1e-12)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("shape", [(16, 16, 16), (32, 16, 1)])
def test_v_cycle_is_symmetric_positive_definite(boundary, shape):
    grid = Grid(shape, 10.0, BOUNDARIES[boundary])
    rng = np.random.default_rng(2)
    absorption = jnp.asarray(np.where(rng.random(shape) < 0.2, 0.05, 1e-5))  # heavy sinks on a weak background
    M = jax.jit(Multigrid.for_grid(grid).preconditioner(jnp.asarray(10.0), absorption))  # one program, not op by op
    for _ in range(3):
        u, v = (jnp.asarray(rng.normal(size=shape)) for _ in range(2))
        assert float(jnp.vdot(M(u), v)) == pytest.approx(float(jnp.vdot(u, M(v))), rel=1e-10)
        assert float(jnp.vdot(M(u), u)) > 0


def _scenario(n: int):
    """1 % sources, 20 % saturating consumers (the benchmark scenario), float64."""
    grid = Grid((n, n, n), 10.0)
    u = np.random.default_rng(n).random(grid.shape)
    volume = grid.voxel_volume_um3
    secretion = np.where(u < 0.01, units.cell_rate_to_voxel_rate_pM_per_s(10.0, volume), 0.0)
    vmax = np.where((u >= 0.01) & (u < 0.21), units.cell_rate_to_voxel_rate_pM_per_s(1.1e-3 * 2e4, volume), 0.0)
    a = lambda x: jnp.asarray(x, jnp.float64)  # noqa: E731
    return grid, FieldCoefficients(a(10.0), a(2.8e-5), a(secretion), a(vmax), a(np.where(vmax > 0, 43.0, 1.0)), a(np.zeros(6)))


def test_multigrid_solves_the_same_field_in_fewer_iterations_that_do_not_grow():
    iterations = {}
    for n in (16, 32):
        grid, coef = _scenario(n)
        options = SolverOptions(rtol=1e-8)
        c_mg, info_mg = steady_field(grid, coef, options=options)
        c_mean, info_mean = steady_field(grid, coef, options=SolverOptions(rtol=1e-8, preconditioner="mean_operator"))
        assert bool(info_mg.converged) and bool(info_mean.converged)
        assert float(jnp.max(jnp.abs(c_mg - c_mean)) / jnp.max(c_mean)) < 1e-6
        iterations[n] = int(info_mg.krylov_iterations) / int(info_mg.newton_iterations)
        assert int(info_mg.krylov_iterations) < int(info_mean.krylov_iterations)
    # per Newton step: the V-cycle holds the CG count as the lattice grows (8x the voxels)
    assert iterations[32] <= iterations[16] + 1
