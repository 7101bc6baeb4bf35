"""float32 (the default) against float64 at the same shipped settings: the stopping rule of
solvers/steady.py lets both converge, and their fields agree to 1e-4 of the local value wherever
c > 1e-6 max c, over random sparse and dense tissue (x64 session: both precisions in one process)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import coefficients, random_cells
from il2rd.physics.grid import Grid
from il2rd.solvers.steady import SolverOptions, steady_field


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("consumers,receptors", [(0.02, 2e4), (0.2, 2e4), (0.7, 100.0), (0.7, 2e4)])
def test_float32_matches_float64_pointwise(seed, consumers, receptors):
    shape = (24, 24, 24)
    grid = Grid(shape, 10.0)
    secretion, vmax, km = random_cells(shape, 10.0, seed, 0.01, consumers, receptors=receptors)
    coef = coefficients(shape, 10.0, 2.8e-5, secretion, vmax, km, None, "saturating", jnp.float64)
    c64, info64 = steady_field(grid, coef, options=SolverOptions())
    c32, info32 = steady_field(grid, jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), coef),
                               options=SolverOptions())
    assert bool(info64.converged) and bool(info32.converged)
    c64, c32 = np.asarray(c64), np.asarray(c32, np.float64)
    inside = c64 > 1e-6 * c64.max()
    assert np.max(np.abs(c32[inside] - c64[inside]) / c64[inside]) <= 1e-4
