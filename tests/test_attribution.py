"""Source attribution (il2rd/attribution.py) against what must hold mathematically: the shares
add up to each cell's uptake, a single source owns everything, with linear uptake each source's
share field is exactly the field that source makes alone (superposition), IL-2 fed through
fixed faces is attributed to the boundary; and mechanism checks on placement."""

import h5py
import jax.numpy as jnp
import numpy as np
import pytest
from compose import compose_config

from il2rd import config
from il2rd.attribution import BOUNDARY, attribute, source_fields, type_field
from il2rd.cells import seen_and_uptake
from il2rd.scenario import Scenario
from il2rd.simulate import run
from il2rd.solvers.steady import SolverOptions, steady_field

TIGHT = ["precision=float64", "solver.rtol=1e-11"]


def scenario_of(*overrides):
    return Scenario.build(config.parse(compose_config(*overrides)))


def steady(sc):
    c, info = steady_field(sc.grid, sc.coefficients, options=sc.settings.options)
    assert bool(info.converged)
    return c


def test_shares_add_up_to_each_cells_uptake():
    # two secreting types and a fed boundary: three sources
    sc = scenario_of("grid.shape=[20,20,12]", "+cell_types.treg.secretion=2.0", "grid.boundary=fixed",
                     "grid.boundary_value=3.0", *TIGHT)
    c = steady(sc)
    a = attribute(c, sc)
    assert a.sources == ("il2_producer", "treg", BOUNDARY)
    _, uptake = seen_and_uptake(c, sc.grid, sc.population, sc.coefficients)
    total = a.by_cell_molecules_per_s.sum(axis=1)
    assert np.all(a.by_cell_molecules_per_s >= -1e-12 * uptake.max())
    assert np.max(np.abs(total - uptake) / uptake) < 1e-6
    assert a.closure < 1e-6
    # and by responder type
    for t, name in enumerate(sc.population.type_names):
        assert a.matrix_molecules_per_s[:, t].sum() == pytest.approx(uptake[sc.population.type_index == t].sum(), rel=1e-6)


def test_a_single_source_type_owns_all_uptake():
    sc = scenario_of("grid.shape=[16,16,8]", *TIGHT)
    c = steady(sc)
    a = attribute(c, sc)
    assert a.sources == ("il2_producer",)
    _, uptake = seen_and_uptake(c, sc.grid, sc.population, sc.coefficients)
    assert np.all(uptake > 0)
    np.testing.assert_allclose(a.by_cell_molecules_per_s[:, 0] / uptake, 1.0, rtol=1e-6)


def test_linear_uptake_shares_are_the_fields_each_source_makes_alone():
    """With linear uptake the field equation is linear: source k's share field is the steady
    field of a run in which only type k secretes."""
    base = ["grid.shape=[16,16,10]", "physics.uptake=linear", "+cell_types.treg.secretion=3.0", *TIGHT]
    sc = scenario_of(*base)
    c = steady(sc)
    fields, _ = source_fields(c, jnp.asarray(type_field(sc.grid, sc.population)), sc.grid, sc.coefficients,
                              (0, 1), False, SolverOptions(rtol=1e-11))
    for k, silenced in ((0, "cell_types.treg.secretion=0"), (1, "cell_types.il2_producer.secretion=0")):
        alone = scenario_of(*base, silenced)
        assert np.array_equal(alone.population.voxel, sc.population.voxel)
        c_alone = steady(alone)
        assert float(jnp.max(jnp.abs(fields[k] - c_alone)) / jnp.max(c_alone)) < 1e-8


def test_boundary_feeding_is_attributed_to_the_boundary():
    sc = scenario_of("grid.shape=[16,16,8]", "cell_types.il2_producer.secretion=0", "grid.boundary=fixed",
                     "grid.boundary_value=5.0", *TIGHT)
    c = steady(sc)
    a = attribute(c, sc)
    assert a.sources == (BOUNDARY,)
    # net inflow through the faces = uptake + decay: exactly what the balance says comes in
    from il2rd import readouts

    s = readouts.summarise(c, readouts.cell_columns(c, sc), sc)
    assert a.output_molecules_per_s[0] == pytest.approx(-s.boundary_outflux_molecules_per_s, rel=1e-6)


def _csv(tmp_path, rows, name="cells.csv"):
    path = tmp_path / name
    path.write_text("x,y,z,type\n" + "".join(f"{x},{y},{z},{t}\n" for x, y, z, t in rows))
    return path


def test_a_responder_takes_more_from_the_nearer_source(tmp_path):
    """Two producer types with equal secretion on either side of a Treg: the nearer one supplies
    more of its IL-2; moving that source away lowers its share."""
    h = 10.0
    common = ["grid.shape=[30,10,10]", *TIGHT, "+cell_types.far.secretion=10.0", "cell_types.treg.density=null",
              "cell_types.naive_t.density=null", "cell_types.il2_producer.density=null"]

    def share_of_near(distance_voxels):
        rows = [((10 + 0.5) * h, 55, 55, "treg"), ((10 - distance_voxels + 0.5) * h, 55, 55, "il2_producer"),
                ((10 + 8 + 0.5) * h, 55, 55, "far")]
        sc = scenario_of(*common, f"cells.csv={_csv(tmp_path, rows, f'c{distance_voxels}.csv')}")
        a = attribute(steady(sc), sc)
        treg = sc.population.type_names.index("treg")
        column = a.matrix_molecules_per_s[:, treg]
        return column[a.sources.index("il2_producer")] / column.sum()

    near, further = share_of_near(2), share_of_near(6)
    assert near > 0.5 > further


def test_steady_run_writes_the_attribution(tmp_path):
    overrides = ["grid.shape=[12,12,6]", "output.progress=false", "+cell_types.treg.secretion=1.0"]
    result = run(compose_config(*overrides), tmp_path)
    a = result.attribution
    with h5py.File(result.path) as f:
        g = f["attribution"]
        assert [s.decode() for s in g["source"][:]] == list(a.sources) == ["il2_producer", "treg"]
        assert [s.decode() for s in g["responder"][:]] == list(a.responders)
        np.testing.assert_allclose(g["uptake_molecules_per_s"][:], a.matrix_molecules_per_s)
        assert g["by_cell_molecules_per_s"].shape == (len(f["cells/cell"]), 2)
        uptake = f["cells/uptake"][-1]
        np.testing.assert_allclose(g["by_cell_molecules_per_s"][:].sum(axis=1), uptake, rtol=2e-3, atol=1e-6 * uptake.max())
    assert "IL-2 by source" in a.format()


def test_autocrine_is_a_lower_bound_that_the_window_makes_nearly_exact():
    """The local-window autocrine uptake against sigma_i s_i [A^-1]_ii from full-lattice solves."""
    sc = scenario_of("grid.shape=[20,20,12]", "+cell_types.treg.secretion=1.0", *TIGHT)
    c = steady(sc)
    a = attribute(c, sc)
    from il2rd import grid as grid_mod
    from il2rd import units
    from il2rd.attribution import uptake_per_il2
    from il2rd.solvers.krylov import pcg

    coef = sc.coefficients
    sigma = uptake_per_il2(c, coef)
    absorption = coef.decay_per_s + sigma

    def A(v):
        return -coef.diffusion_um2_per_s * grid_mod.laplacian(v, sc.grid) + absorption * v

    pop = sc.population
    rng = np.random.default_rng(0)
    for i in rng.choice(np.flatnonzero(pop.type_index != pop.type_names.index("naive_t")), 6, replace=False):
        v = tuple(pop.voxel[i])
        unit = jnp.zeros(sc.grid.shape).at[v].set(1.0)
        x, _ = pcg(A, unit, lambda r: r, jnp.zeros_like(unit), 1e-13, 10000)
        exact = units.voxel_rate_to_cell_rate_molecules_per_s(
            float(sigma[v]) * float(coef.secretion_pM_per_s[v]) * float(x[v]), sc.grid.voxel_volume_um3)
        assert a.autocrine_molecules_per_s[i] <= exact * (1 + 1e-9)
        assert a.autocrine_molecules_per_s[i] == pytest.approx(exact, rel=max(a.autocrine_window_change, 1e-6))
        # and it is part of what the cell takes up from its own type
        own = a.sources.index(pop.type_names[pop.type_index[i]])
        assert a.autocrine_molecules_per_s[i] <= a.by_cell_molecules_per_s[i, own] * (1 + 1e-9)
    assert np.all(a.autocrine_molecules_per_s[pop.type_index == pop.type_names.index("naive_t")] == 0)


def test_attribution_can_be_switched_off(tmp_path):
    result = run(compose_config("grid.shape=[12,12,6]", "output.progress=false", "output.attribution=false"), tmp_path)
    assert result.attribution is None
    with h5py.File(result.path) as f:
        assert "attribution" not in f
