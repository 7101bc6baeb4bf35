"""Exchange with blood and lymph (il2rd/vessels.py): the uniform exact solution, where the sites
are, the balance with exchange, the maximum principle, and attribution to the blood."""

import jax.numpy as jnp
import numpy as np
import pytest
from compose import compose_config
from helpers import coefficients
from test_presets import QUIET, SMALL_NODE

from il2rd import config
from il2rd.attribution import BLOOD, attribute
from il2rd.grid import Grid
from il2rd.scenario import Scenario
from il2rd.simulate import run
from il2rd.solvers.steady import SolverOptions, steady_field

VESSELS = ["vessels.blood_il2=30", "vessels.hev_density=2e4", "vessels.hev_exchange=6e-4", "vessels.lymph_drainage=1e-3"]
TIGHT = ["precision=float64", "solver.rtol=1e-10"]


def test_uniform_exchange_gives_the_well_mixed_level():
    """k_ex everywhere towards c_b, decay k_d, no cells, zero flux: c = k_ex c_b / (k_d + k_ex)."""
    grid = Grid((8, 8, 8), 10.0)
    coef = coefficients(grid.shape, decay=2.8e-5).replace(exchange_per_s=jnp.full(grid.shape, 6e-4),
                                                           exchange_target_pM=jnp.full(grid.shape, 30.0))
    c, info = steady_field(grid, coef, options=SolverOptions(rtol=1e-12))
    assert bool(info.converged)
    np.testing.assert_allclose(np.asarray(c), 6e-4 * 30.0 / (2.8e-5 + 6e-4), rtol=1e-10)


def test_exchange_sites_sit_in_their_compartments():
    settings = config.parse(compose_config("scenario=no_il2", *SMALL_NODE, *QUIET, *VESSELS))
    sc = Scenario.build(settings)
    rate = np.asarray(sc.coefficients.exchange_per_s)
    target = np.asarray(sc.coefficients.exchange_target_pM)
    node, grid = settings.node, settings.grid
    hev = target > 0
    assert np.all(node.mask("t_zone", grid)[hev]) and np.all(rate[hev] == 6e-4)
    expected = round(2e4 * node.mask("t_zone", grid).sum() * grid.voxel_volume_um3 / 1e9)
    assert hev.sum() == expected > 0
    sinus = node.mask("capsule", grid) | node.mask("medulla", grid)
    assert np.all(rate[sinus & ~hev] == 1e-3) and np.all(rate[~sinus & ~hev] == 0)


def test_blood_feeds_the_node_with_the_balance_closed_and_never_above_the_plasma_level(tmp_path):
    result = run(compose_config("scenario=no_il2", *SMALL_NODE, *QUIET, *VESSELS, *TIGHT), tmp_path)
    s = result.summary
    assert s.exchange_molecules_per_s > 0 and s.uptake_molecules_per_s > 0
    assert s.exchange_molecules_per_s == pytest.approx(s.uptake_molecules_per_s + s.decay_molecules_per_s, rel=1e-6)
    assert 0 < s.max_il2_pM <= 30.0
    a = result.attribution
    assert a.sources == (BLOOD,)
    assert a.matrix_molecules_per_s.sum() == pytest.approx(s.uptake_molecules_per_s, rel=1e-6)


def test_more_hev_exchange_raises_the_il2_everywhere():
    fields = []
    for k in (3e-4, 1.2e-3):
        sc = Scenario.build(config.parse(compose_config("scenario=no_il2", *SMALL_NODE, *QUIET, *TIGHT, *VESSELS,
                                                        f"vessels.hev_exchange={k}")))
        c, info = steady_field(sc.grid, sc.coefficients, options=sc.settings.options)
        fields.append(np.asarray(c))
    assert np.all(fields[1] >= fields[0]) and fields[1].mean() > fields[0].mean()


def test_attribution_splits_secreted_and_blood_il2(tmp_path):
    sc = Scenario.build(config.parse(compose_config("scenario=cd4_source", *SMALL_NODE, *QUIET, *VESSELS, *TIGHT)))
    c, _ = steady_field(sc.grid, sc.coefficients, options=sc.settings.options)
    a = attribute(c, sc)
    assert a.sources == ("cd4_activated", BLOOD)
    from il2rd import readouts

    columns = readouts.cell_columns(c, sc)
    np.testing.assert_allclose(a.by_cell_molecules_per_s.sum(axis=1), columns["uptake"], rtol=1e-6, atol=1e-12)
