"""Exchange with blood and lymph (il2rd/physics/vessels.py): the uniform exact solution, where the sites
are, the balance with exchange, the maximum principle, and attribution to the blood; capillaries
(a uniform rate over the node) against the exact no-sink and well-mixed levels; afferent lymph in the
capsule against the exact no-sink level and the lymph flow's bound; and the validation."""

import jax.numpy as jnp
import numpy as np
import pytest
from compose import compose_config
from helpers import PM_IN_MOLECULES_PER_UM3, coefficients
from test_presets import QUIET, SMALL_NODE

from il2rd import config
from il2rd.analysis.attribution import CIRCULATION, attribute
from il2rd.physics.grid import Grid
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
    node, grid = settings.problem.node, settings.problem.grid
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
    assert a.sources == (CIRCULATION,)
    assert a.matrix_molecules_per_s.sum() == pytest.approx(s.uptake_molecules_per_s, rel=1e-6)


def test_more_hev_exchange_raises_the_il2_everywhere():
    fields = []
    for k in (3e-4, 1.2e-3):
        sc = Scenario.build(config.parse(compose_config("scenario=no_il2", *SMALL_NODE, *QUIET, *TIGHT, *VESSELS,
                                                        f"vessels.hev_exchange={k}")))
        c, info = steady_field(sc.grid, sc.coefficients, options=sc.settings.numerics.options)
        fields.append(np.asarray(c))
    assert np.all(fields[1] >= fields[0]) and fields[1].mean() > fields[0].mean()


def test_attribution_splits_secreted_and_blood_il2(tmp_path):
    sc = Scenario.build(config.parse(compose_config("scenario=cd4_source", *SMALL_NODE, *QUIET, *VESSELS, *TIGHT)))
    c, _ = steady_field(sc.grid, sc.coefficients, options=sc.settings.numerics.options)
    a = attribute(c, sc)
    assert a.sources == ("cd4_activated", CIRCULATION)
    from il2rd.analysis import readouts

    columns = readouts.cell_columns(c, sc)
    np.testing.assert_allclose(a.by_cell_molecules_per_s.sum(axis=1), columns["uptake"], rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Capillaries: a uniform exchange rate over every node voxel (vessels.capillary_exchange)

# the small node of test_presets.py with no cells at all (the default T-zone types placed at density 0)
NO_CELLS = ["grid.shape=[32,32,32]", "node.capsule_thickness=10", "node.t_zone_depth=30", "node.follicles.count=2",
            "node.follicles.radius=40", "node.follicles.spread=70", *QUIET, "cell_types.il2_producer.secretion=0",
            *(f"cell_types.{name}.density=0" for name in ("il2_producer", "treg", "naive_t"))]


def capillary_field(*overrides):
    sc = Scenario.build(config.parse(compose_config(*NO_CELLS, *TIGHT, "vessels.blood_il2=30", *overrides)))
    assert len(sc.population) == 0
    c, info = steady_field(sc.grid, sc.coefficients, options=sc.settings.numerics.options)
    assert bool(info.converged)
    return np.asarray(c), sc


def test_capillaries_exchange_in_every_node_voxel_and_add_to_the_other_sites():
    settings = config.parse(compose_config("scenario=no_il2", *SMALL_NODE, *QUIET, *VESSELS, *TIGHT,
                                           "vessels.capillary_exchange=5e-6"))
    sc = Scenario.build(settings)
    rate = np.asarray(sc.coefficients.exchange_per_s, np.float64)
    target = np.asarray(sc.coefficients.exchange_target_pM, np.float64)
    node, grid = settings.problem.node, settings.problem.grid
    inside, sinus = node.mask("node", grid), node.mask("capsule", grid) | node.mask("medulla", grid)
    hev = np.isclose(rate, 6e-4 + 5e-6, rtol=1e-9, atol=0)  # HEV (6e-4 /s) + capillaries
    assert hev.sum() > 0 and np.all(node.mask("t_zone", grid)[hev]) and not np.any(sinus & hev)
    assert np.all(rate[~inside] == 0)
    # rates add: k_ex = sum_i k_i, and k_ex c_target = sum_i k_i c_i (c_i = 30 pM for blood, 0 for lymph)
    np.testing.assert_allclose(rate[hev], 6e-4 + 5e-6, rtol=1e-12)
    np.testing.assert_allclose(rate[sinus], 1e-3 + 5e-6, rtol=1e-12)
    plain = inside & ~sinus & ~hev
    assert plain.sum() > 0 and np.allclose(rate[plain], 5e-6, rtol=1e-12)
    np.testing.assert_allclose((rate * target)[inside], np.where(sinus, 5e-6, np.where(hev, 6e-4 + 5e-6, 5e-6))[inside] * 30.0,
                               rtol=1e-12)


def test_capillaries_without_decay_or_cells_bring_the_whole_lattice_to_the_plasma_level():
    """No sink anywhere: the unique steady field of D lap c + k(x) (c_b - c) = 0 with zero-flux faces
    and k >= 0 somewhere is c = c_b, also outside the node where k = 0."""
    c, _ = capillary_field("physics.decay=0", "vessels.capillary_exchange=5e-6")
    np.testing.assert_allclose(c, 30.0, rtol=1e-8)


def test_capillaries_with_decay_reach_the_well_mixed_level_inside_and_never_exceed_it():
    """Exchange k towards c_b with decay k_d: k c_b / (k_d + k) where the node is uniform (its centre,
    many decay lengths sqrt(D/(k + k_d)) = 7 um from the node's edge); nowhere above it (maximum
    principle: outside the node decay alone, inside k (c_b - c) - k_d c >= 0 at a maximum); and all
    that enters from the blood decays."""
    k, k_d = 0.1, 0.1
    c, sc = capillary_field(f"physics.decay={k_d}", f"vessels.capillary_exchange={k}")
    well_mixed = k * 30.0 / (k_d + k)
    assert c.max() <= well_mixed * (1 + 1e-9)
    assert c[16, 16, 16] == pytest.approx(well_mixed, rel=1e-3)
    assert np.all(c[~sc.settings.problem.node.mask("node", sc.grid)] < well_mixed)
    coef = sc.coefficients
    inflow = float(np.sum(np.asarray(coef.exchange_per_s) * (np.asarray(coef.exchange_target_pM) - c)))
    assert inflow == pytest.approx(k_d * float(c.sum()), rel=1e-8)


@pytest.mark.parametrize("value", [-5e-6, float("nan"), float("inf")])
def test_a_bad_capillary_exchange_is_refused_naming_key_value_and_rule(value):
    with pytest.raises(config.ConfigError) as err:
        config.parse(compose_config("scenario=no_il2", *SMALL_NODE, *QUIET, f"vessels.capillary_exchange={value}"))
    message = str(err.value)
    assert message.startswith("vessels.capillary_exchange = ") and "must be a finite number >= 0 (1/s)" in message


# ---------------------------------------------------------------------------------------------
# Afferent lymph: capsule voxels (capsule + subcapsular sinus) exchange at vessels.afferent_exchange
# towards vessels.afferent_lymph_il2, a well-mixed sinus refreshed by the lymph flow L = k V_capsule

AFFERENT = ["vessels.afferent_lymph_il2=24", "vessels.afferent_exchange=0.02"]


def test_afferent_lymph_exchanges_in_capsule_voxels_only_and_adds_to_drainage():
    settings = config.parse(compose_config("scenario=no_il2", *SMALL_NODE, *QUIET, *TIGHT, *AFFERENT))
    coef = Scenario.build(settings).coefficients
    rate, target = np.asarray(coef.exchange_per_s, np.float64), np.asarray(coef.exchange_target_pM, np.float64)
    capsule = settings.problem.node.mask("capsule", settings.problem.grid)
    assert capsule.sum() > 0
    np.testing.assert_allclose(rate[capsule], 0.02, rtol=1e-12)
    np.testing.assert_allclose(target[capsule], 24.0, rtol=1e-12)
    assert np.all(rate[~capsule] == 0) and np.all(target[~capsule] == 0)
    # with drainage too: capsule k = 0.02 + 1e-3 towards 0.02 x 24 / k; the medulla drains alone
    both = config.parse(compose_config("scenario=no_il2", *SMALL_NODE, *QUIET, *TIGHT, *AFFERENT, "vessels.lymph_drainage=1e-3"))
    coef = Scenario.build(both).coefficients
    rate, target = np.asarray(coef.exchange_per_s, np.float64), np.asarray(coef.exchange_target_pM, np.float64)
    medulla = both.problem.node.mask("medulla", both.problem.grid)
    np.testing.assert_allclose(rate[capsule], 0.021, rtol=1e-12)
    np.testing.assert_allclose((rate * target)[capsule], 0.02 * 24.0, rtol=1e-12)
    assert np.all(rate[medulla] == 1e-3) and np.all(target[medulla] == 0)


def test_afferent_lymph_without_decay_or_cells_brings_the_whole_lattice_to_the_lymph_level():
    """The only exchange is towards c_lymph and nothing removes IL-2: c = c_lymph everywhere."""
    c, _ = capillary_field("physics.decay=0", *AFFERENT)  # blood_il2 acts through no vessel here
    np.testing.assert_allclose(c, 24.0, rtol=1e-8)


def test_afferent_lymph_balance_closes_and_never_exceeds_the_lymph_flow_times_its_level(tmp_path):
    """Steady state: inflow k sum_capsule (c_lymph - c) V = uptake + decay, and, c >= 0, at most
    k V_capsule c_lymph = L c_lymph molecules/s (6.022e-4 molecules/um^3 per pM). All of it is
    attributed to the exchange source, and the field never exceeds the lymph level."""
    result = run(compose_config("scenario=no_il2", *SMALL_NODE, *QUIET, *TIGHT, *AFFERENT), tmp_path)
    s = result.summary
    settings = config.parse(compose_config("scenario=no_il2", *SMALL_NODE, *QUIET, *TIGHT, *AFFERENT))
    capsule_um3 = settings.problem.node.mask("capsule", settings.problem.grid).sum() * settings.problem.grid.voxel_volume_um3 * settings.problem.volume_fraction
    most = 0.02 * capsule_um3 * 24.0 * PM_IN_MOLECULES_PER_UM3
    assert 0 < s.exchange_molecules_per_s < most
    assert s.exchange_molecules_per_s == pytest.approx(s.uptake_molecules_per_s + s.decay_molecules_per_s, rel=1e-6)
    assert 0 < s.max_il2_pM <= 24.0
    a = result.attribution
    assert a.sources == (CIRCULATION,)
    assert a.matrix_molecules_per_s.sum() == pytest.approx(s.uptake_molecules_per_s, rel=1e-6)


@pytest.mark.parametrize("key, unit", [("afferent_lymph_il2", "pM"), ("afferent_exchange", "1/s")])
@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_a_bad_afferent_lymph_value_is_refused_naming_key_value_and_rule(key, unit, value):
    with pytest.raises(config.ConfigError) as err:
        config.parse(compose_config("scenario=no_il2", *SMALL_NODE, *QUIET, f"vessels.{key}={value}"))
    message = str(err.value)
    assert message.startswith(f"vessels.{key} = ") and "must be a finite number >= 0" in message and f"({unit})" in message
