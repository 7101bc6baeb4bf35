"""Two receptor classes per cell from its IL-2Ra, IL-2Rb and gc chains (il2rd/physics/receptors.py):
stoichiometry, uptake through the field, pSTAT5 at equal occupancy, spread of each chain, CD25
up-regulation turning intermediate into high-affinity receptors, and bad input."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from compose import compose_config
from scipy.optimize import brentq

from helpers import PM_IN_MOLECULES_PER_UM3
from il2rd import cells
from il2rd.analysis import readouts
from il2rd.physics import units
from il2rd.config import ConfigError, parse
from il2rd.cells.dynamics import coefficients_at, pstat5_of
from il2rd.physics.receptors import Signalling, receptor_classes
from il2rd.scenario import Scenario
from il2rd.simulate import run
from test_dynamics import H, kinetics_of

INF = math.inf
ONLY_NK = ["~cell_types.il2_producer", "~cell_types.treg", "~cell_types.naive_t"]


@pytest.mark.parametrize("ra, rb, gc, high, intermediate", [
    (2e4, INF, INF, 2e4, 0.0),      # IL-2Rb unset: every IL-2Ra high affinity, nothing else
    (25, 8000, 8000, 25, 7975),     # NK: few complete trimers, many dimers
    (25, 8000, 5000, 25, 4975),     # gc the scarcer chain
    (2e4, 750, 1.3e4, 750, 0.0),    # human Treg: IL-2Rb caps the trimers, no free dimers
    (0, 350, INF, 0, 350),          # no IL-2Ra: intermediate only
    (100, 0, 1e4, 0, 0),            # no IL-2Rb: no functional receptor at all
])
def test_chains_make_high_and_intermediate_receptors(ra, rb, gc, high, intermediate):
    h, i = receptor_classes(np.float64(ra), np.float64(rb), np.float64(gc))
    assert (h, i) == (high, intermediate)
    hj, ij = receptor_classes(jnp.asarray(ra), jnp.asarray(rb), jnp.asarray(gc))  # the coupled solver's path
    assert (float(hj), float(ij)) == (high, intermediate)


def test_pstat5_of_two_classes_is_the_high_affinity_curve_at_equal_occupancy():
    """pSTAT5(c) of a cell with R_h receptors of K_h and R_i of K_i equals Busse's curve for
    R_h + R_i high-affinity receptors at the concentration c' that gives the same bound
    fraction; c' found here by root finding on the occupancy, independently of receptors.py."""
    s = Signalling()
    high, low, k_high, k_low = 25.0, 7975.0, 43.0, 1035.0
    total = high + low
    for c in (0.3, 3.0, 30.0, 300.0, 3000.0):
        theta = (high * c / (k_high + c) + low * c / (k_low + c)) / total
        equivalent = brentq(lambda x: x / (s.reference_km_pM + x) - theta, 0.0, 1e9, xtol=1e-14, rtol=1e-14)
        busse = equivalent**3 / (float(s.ec50_pM(total)) ** 3 + equivalent**3)
        assert float(s.pstat5(c, high, k_high, low, k_low)) == pytest.approx(busse, rel=1e-9)
    # one class (the old form) is the special case; no receptors, no signal
    c = np.array([1.0, 10.0, 100.0])
    np.testing.assert_allclose(s.pstat5(c, 0.0, None, 8000.0, 1035.0), s.pstat5(c, 8000.0, 1035.0), rtol=1e-12)
    assert np.all(s.pstat5(c, 0.0, 43.0, 0.0, 1035.0) == 0)
    # a saturated sub-grid cell reads an infinite surface IL-2: full signal, not NaN (numpy and float32 jax)
    assert float(s.pstat5(np.inf, 25.0, 43.0, 7975.0, 1035.0)) == 1.0
    assert float(s.pstat5(jnp.float32(jnp.inf), jnp.float32(25.0), 43.0, jnp.float32(7975.0), 1035.0)) == 1.0


def test_a_few_high_affinity_receptors_make_a_cell_respond_to_less_il2():
    """Mechanism: at a given c, adding IL-2Ra to an IL-2Rb-rich cell (NK-like) raises its uptake
    and its pSTAT5; at c >> 1 nM both are set by the IL-2Rb/gc pairs alone."""
    s = Signalling()
    c = np.array([1.0, 10.0, 100.0])
    without = s.pstat5(c, 0.0, 43.0, 8000.0, 1035.0)
    with_cd25 = s.pstat5(c, *(lambda h, i: (h, 43.0, i, 1035.0))(*receptor_classes(2000.0, 8000.0, INF)))
    assert np.all(with_cd25 > without)


def test_uniform_tissue_of_two_class_consumers_has_the_exact_uniform_field(tmp_path):
    """Every voxel of a periodic lattice holds a cell that secretes q and takes up through both
    classes, so the field is uniform and solves the algebraic balance
        q = k_int (R_h c/(K_h + c) + R_i c/(K_i + c)) + k_d c 6.022e-4 V      (molecules/s)."""
    q, ra, rb, gc, k_int, decay, h = 5.0, 25.0, 8000.0, 6000.0, 1.1e-3, 2.8e-5, 10.0
    cfg = compose_config(
        *ONLY_NK, "grid.shape=[4,4,4]", "grid.boundary=periodic", "precision=float64", "solver.rtol=1e-11",
        f"+cell_types.nk.secretion={q}", f"+cell_types.nk.receptors={ra}", f"+cell_types.nk.il2rb={rb}",
        f"+cell_types.nk.gc={gc}", "+cell_types.nk.count=64", f"physics.decay={decay}", "output.attribution=false",
        "physics.cell_radius=null")  # point sinks: both classes as such (the closure folds them into one law)
    s = parse(cfg)
    result = run(cfg, output_dir=tmp_path)
    high, low = ra, gc - ra
    volume_molecules_per_pM = PM_IN_MOLECULES_PER_UM3 * h**3
    exact = brentq(lambda c: k_int * (high * c / (43.0 + c) + low * c / (1035.0 + c)) + decay * c * volume_molecules_per_pM - q,
                   0.0, 1e7, xtol=1e-12, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(result.field_pM), exact, rtol=1e-9)
    nk = {t.name: t for t in result.summary.types}["nk"]
    assert (nk.mean_receptors, nk.mean_receptors_intermediate) == (high, low)
    assert nk.mean_pstat5 == pytest.approx(float(s.problem.signalling.pstat5(exact, high, 43.0, low, 1035.0)), rel=1e-9)


def test_each_chain_spreads_log_normally_and_ra_draws_do_not_move():
    """receptor_cv spreads each chain with E[R] = m and sd/mean = cv; adding IL-2Rb to a type
    leaves its IL-2Ra draws exactly as they were (a stream per chain)."""
    base = [*ONLY_NK, "grid.shape=[40,40,40]", "+cell_types.nk.receptors=30", "+cell_types.nk.count=40000",
            "+cell_types.nk.receptor_cv=0.5"]
    alone = Scenario.build(parse(compose_config(*base))).population
    chained = Scenario.build(parse(compose_config(*base, "+cell_types.nk.il2rb=8000", "+cell_types.nk.gc=6000"))).population
    np.testing.assert_array_equal(alone.receptors, chained.receptors)
    assert np.all(np.isinf(alone.il2rb))  # unset: not limiting
    for chain, mean in (("receptors", 30.0), ("il2rb", 8000.0), ("gc", 6000.0)):
        values = getattr(chained, chain)
        assert values.mean() == pytest.approx(mean, rel=0.02)
        assert values.std() / values.mean() == pytest.approx(0.5, rel=0.05)
    assert abs(np.corrcoef(chained.il2rb, chained.gc)[0, 1]) < 0.03  # independent chains


def test_cd25_up_regulation_turns_intermediate_into_high_affinity_receptors():
    """With IL-2Rb fixed, raising IL-2Ra moves receptors from the intermediate to the high class
    until IL-2Rb runs out; the total R_h + R_i = min(IL-2Rb, gc) stays, and pSTAT5 rises."""
    from helpers import coefficients

    shape = (4, 4, 4)
    n = 3
    cells_ = kinetics_of(n, basal=25.0, il2rb=8000.0, gc=6000.0, voxel=np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]]), shape=shape)
    coef = coefficients(shape, km=np.full(shape, 43.0)).replace(vmax_intermediate_pM_per_s=jnp.zeros(shape),
                                                                km_intermediate_pM=jnp.full(shape, 1035.0))
    il2ra = jnp.asarray([25.0, 3000.0, 9000.0])
    now = coefficients_at(coef, cells_, il2ra, 0.0)
    index = tuple(np.asarray(cells_.voxel).T)
    per_receptor = units.cell_rate_to_voxel_rate_pM_per_s(float(cells_.k_int_per_s[0]), H**3)  # alpha = 1
    high = np.asarray(now.vmax_pM_per_s)[index] / per_receptor
    low = np.asarray(now.vmax_intermediate_pM_per_s)[index] / per_receptor
    np.testing.assert_allclose(high, [25.0, 3000.0, 6000.0], rtol=1e-12)
    np.testing.assert_allclose(high + low, 6000.0, rtol=1e-12)
    field = jnp.full(shape, 20.0)
    p = np.asarray(pstat5_of(field, il2ra, cells_))
    assert p[0] < p[1] < p[2]


def test_library_nk_cells_take_up_and_signal_through_both_classes():
    """The library's NK cells (25 IL-2Ra, 8000 IL-2Rb and gc) get both classes in the field
    coefficients, and the readout columns report them."""
    s = parse(compose_config("scenario=nk_source", "grid.shape=[32,32,32]", "node.capsule_thickness=10",
                             "node.t_zone_depth=30", "node.follicles.count=2", "node.follicles.radius=40",
                             "node.follicles.spread=70", "cell_types.treg.count=100", "cell_types.cd4_activated.count=20",
                             "cell_types.cd8_activated.count=10", "cell_types.dc.count=25", "cell_types.b_cell.count=320",
                             "cell_types.nk.count=20", "precision=float64",
                             "physics.cell_radius=null"))  # point sinks: each class its own voxel fields
    scenario = Scenario.build(s)
    pop = scenario.population
    nk = pop.type_index == pop.type_names.index("nk")
    index = tuple(pop.voxel[nk].T)
    volume = PM_IN_MOLECULES_PER_UM3 * s.problem.grid.voxel_volume_um3 * s.problem.volume_fraction
    coef = scenario.coefficients
    np.testing.assert_allclose(np.asarray(coef.vmax_pM_per_s)[index] * volume, 1.1e-3 * 25, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(coef.vmax_intermediate_pM_per_s)[index] * volume, 1.1e-3 * 7975, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(coef.km_intermediate_pM)[index], 1035.0)
    field = np.random.default_rng(1).uniform(0, 2000, s.problem.grid.shape)
    columns = readouts.cell_columns(field, scenario)
    c = field[index]
    np.testing.assert_allclose(columns["uptake"][nk], 1.1e-3 * (25 * c / (43 + c) + 7975 * c / (1035 + c)), rtol=1e-12)
    np.testing.assert_allclose(columns["receptors_intermediate"][nk], 7975)


def test_collapsed_law_keeps_the_slope_and_the_maximum():
    """The sub-grid closure's single law per cell: same V, same V/K as the two classes."""
    laws = cells.UptakeLaws(*(np.array(v, float) for v in ([25.0], [7975.0], [1.1e-3 * 25], [43.0], [1.1e-3 * 7975], [1035.0])))
    v, k = laws.collapsed()
    assert v[0] == pytest.approx(1.1e-3 * 8000)
    assert v[0] / k[0] == pytest.approx(1.1e-3 * (25 / 43 + 7975 / 1035))


@pytest.mark.parametrize("overrides, key, value", [
    (["+cell_types.nk.gc=5000"], "cell_types.nk.gc", 5000),
    (["+cell_types.nk.il2rb=-1"], "cell_types.nk.il2rb", -1),
    (["+cell_types.nk.il2rb=8000", "+cell_types.nk.gc=-3"], "cell_types.nk.gc", -3),
    (["+cell_types.nk.km_intermediate=0"], "cell_types.nk.km_intermediate", 0),
])
def test_bad_chains_are_refused_naming_key_and_value(overrides, key, value):
    with pytest.raises(ConfigError) as err:
        parse(compose_config(*ONLY_NK, "grid.shape=[8,8,8]", "+cell_types.nk.count=10", *overrides))
    assert err.value.key == key and err.value.value == value
