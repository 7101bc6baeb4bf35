"""Source attribution (il2rd/analysis/attribution.py) against what must hold mathematically: the shares
add up to each cell's uptake, a single source owns everything, with linear uptake each source's
share field is exactly the field that source makes alone (superposition), IL-2 fed through
fixed faces is attributed to the boundary; and mechanism checks on placement. Each for point-sink
cells (physics.cell_radius=null) and for the sub-grid closure (the default: each type's radius),
whose cells secrete and take up over overlapping 7-voxel stencils; there the autocrine part is
also checked against the sphere."""

import dataclasses

import h5py
import jax.numpy as jnp
import numpy as np
import pytest
from compose import compose_config

import sphere
from helpers import closure_fields

from il2rd.analysis import attribution, readouts
from il2rd import cells, config
from il2rd.physics import subgrid, units
from il2rd.analysis.attribution import BOUNDARY, attribute, source_fields
from il2rd.cells.secretions import type_secretions
from il2rd.scenario import Scenario
from il2rd.simulate import run
from il2rd.solvers.steady import SolverOptions, steady_field

TIGHT = ["precision=float64", "solver.rtol=1e-11"]
CLOSURE = []  # the default: spherical cells of their type's radius (5 um here) on the default 10 um voxels
POINT = ["physics.cell_radius=null"]  # each cell a point sink in its voxel
MODES = {"point": POINT, "closure": CLOSURE}


def scenario_of(*overrides):
    return Scenario.build(config.parse(compose_config(*overrides)))


def steady(sc):
    c, info = steady_field(sc.grid, sc.coefficients, options=sc.settings.numerics.options)
    assert bool(info.converged)
    return c


def uptake_of(c, sc):
    """Each cell's uptake as the run reports it (readouts.cell_columns: the voxel's uptake for
    point sinks, its share of its stencil voxels' uptake with the closure)."""
    return readouts.cell_columns(c, sc)["uptake"]


@pytest.mark.parametrize("mode", [*MODES, "closure_in_tissue", "closure_at_20_um"])
def test_shares_add_up_to_each_cells_uptake(mode):
    # two secreting types and a fed boundary: three sources; with the closure, stencils of all
    # three types overlap in most voxels (70 % of the voxels hold a cell); at 20 um about 8 cells
    # share each voxel, secreting cells of both types among them, each with its own capture
    extra = {"closure_in_tissue": [*CLOSURE, "physics.volume_fraction=0.3"],
             "closure_at_20_um": [*CLOSURE, "grid.spacing=20"]}.get(mode) or MODES[mode]
    sc = scenario_of("grid.shape=[20,20,12]", "+cell_types.treg.secretion=2.0", "grid.boundary=fixed",
                     "grid.boundary_value=3.0", *extra, *TIGHT)
    c = steady(sc)
    a = attribute(c, sc)
    assert a.sources == ("il2_producer", "treg", BOUNDARY)
    uptake = uptake_of(c, sc)
    total = a.by_cell_molecules_per_s.sum(axis=1)
    assert np.all(a.by_cell_molecules_per_s >= -1e-12 * uptake.max())
    assert np.max(np.abs(total - uptake) / uptake) < 1e-6
    assert a.closure < 1e-6
    assert (sc.coupling is not None and sc.coupling.own_capture) == (mode == "closure_at_20_um")
    # and by responder type
    for t, name in enumerate(sc.population.type_names):
        assert a.matrix_molecules_per_s[:, t].sum() == pytest.approx(uptake[sc.population.type_index == t].sum(), rel=1e-6)
    # each source's output is its cells' secretion, however it is spread over the lattice
    q = {name: sc.settings.problem.types[name].secretion_molecules_per_s * sc.population.count(name) for name in a.sources[:2]}
    np.testing.assert_allclose(a.output_molecules_per_s[:2], [q["il2_producer"], q["treg"]], rtol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_a_single_source_type_owns_all_uptake(mode):
    sc = scenario_of("grid.shape=[16,16,8]", *MODES[mode], *TIGHT)
    c = steady(sc)
    a = attribute(c, sc)
    assert a.sources == ("il2_producer",)
    uptake = uptake_of(c, sc)
    assert np.all(uptake > 0)
    np.testing.assert_allclose(a.by_cell_molecules_per_s[:, 0] / uptake, 1.0, rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_linear_uptake_shares_are_the_fields_each_source_makes_alone(mode):
    """With linear uptake the field equation is linear: source k's share field is the steady
    field of a run in which only type k secretes."""
    base = ["grid.shape=[16,16,10]", "physics.uptake=linear", "+cell_types.treg.secretion=3.0", *MODES[mode], *TIGHT]
    sc = scenario_of(*base)
    c = steady(sc)
    fields, _ = source_fields(c, jnp.asarray(type_secretions(sc, (0, 1))), sc.grid, sc.coefficients, False,
                              SolverOptions(rtol=1e-11))
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
    from il2rd.analysis import readouts

    s = readouts.summarise(c, readouts.cell_columns(c, sc), sc)
    assert a.output_molecules_per_s[0] == pytest.approx(-s.boundary_outflux_molecules_per_s, rel=1e-6)


def _csv(tmp_path, rows, name="cells.csv"):
    path = tmp_path / name
    path.write_text("x,y,z,type\n" + "".join(f"{x},{y},{z},{t}\n" for x, y, z, t in rows))
    return path


@pytest.mark.parametrize("mode", MODES)
def test_a_responder_takes_more_from_the_nearer_source(tmp_path, mode):
    """Two producer types with equal secretion on either side of a Treg: the nearer one supplies
    more of its IL-2; moving that source away lowers its share."""
    h = 10.0
    common = ["grid.shape=[30,10,10]", *TIGHT, *MODES[mode], "+cell_types.far.secretion=10.0", "cell_types.treg.density=null",
              "cell_types.naive_t.density=null", "cell_types.il2_producer.density=null"]

    def share_of_near(distance_voxels):
        rows = [((10 + 0.5) * h, 55, 55, "treg"), ((10 - distance_voxels + 0.5) * h, 55, 55, "il2_producer"),
                ((10 + 8 + 0.5) * h, 55, 55, "far")]
        sc = scenario_of(*common, f"cells.csv={_csv(tmp_path, rows, f'c{distance_voxels}.csv')}")
        assert len(sc.population) == 3
        a = attribute(steady(sc), sc)
        treg = sc.population.type_names.index("treg")
        column = a.matrix_molecules_per_s[:, treg]
        return column[a.sources.index("il2_producer")] / column.sum()

    near, further = share_of_near(2), share_of_near(6)
    assert near > 0.5 > further


@pytest.mark.parametrize("mode", MODES)
def test_steady_run_writes_the_attribution(tmp_path, mode):
    overrides = ["grid.shape=[12,12,6]", "output.progress=false", "+cell_types.treg.secretion=1.0", *MODES[mode]]
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
    sc = scenario_of("grid.shape=[20,20,12]", "+cell_types.treg.secretion=1.0", *POINT, *TIGHT)
    c = steady(sc)
    a = attribute(c, sc, exact_autocrine_unknowns=0)  # the window, not the global solves of few sources
    assert not a.autocrine_exact
    from il2rd.physics import grid as grid_mod, units
    from il2rd.analysis.attribution import uptake_per_il2
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


# ------------------------------------------------------------------------------------------
# Autocrine uptake with the sub-grid closure


def _alone(sc, i):
    """The scenario in which cell i alone secretes, over its own stencil (the same cells, A and
    uptake law otherwise)."""
    pop, settings = sc.population, sc.settings
    vmax, km = cells.collapsed_uptake(pop, settings.problem.types)
    q = cells.type_table(settings.problem.types, pop.type_names)["secretion_molecules_per_s"][pop.type_index]
    diffusion = cells.closure_diffusion_um2_per_s(sc.coefficients.diffusion_um2_per_s, settings.problem.volume_fraction)
    secretion = closure_fields(sc.grid.shape, pop.voxel[[i]], sc.grid.spacing_um, diffusion,
                                     cells.cell_radii_um(pop, settings.problem.types)[[i]],
                                     vmax[[i]], km[[i]], q[[i]], cells.periodic_axes(sc.grid))[0]
    coef = sc.coefficients.replace(secretion_pM_per_s=jnp.asarray(secretion, sc.coefficients.dtype),
                                   face_values_pM=jnp.zeros_like(sc.coefficients.face_values_pM))
    return dataclasses.replace(sc, coefficients=coef)


def test_closure_autocrine_is_a_lower_bound_that_the_window_makes_exact():
    """With linear uptake A does not depend on c, so sum_j p_ij sigma_j [A^-1 s_i]_j is what cell i
    takes up in the steady field that its own secretion s_i makes alone, read out as the run
    reads uptake. The (2 w + 1)^3 window gives a lower bound; a window over the whole lattice
    gives that value."""
    sc = scenario_of("grid.shape=[16,16,12]", "physics.uptake=linear", *CLOSURE, *TIGHT)
    c = steady(sc)
    a = attribute(c, sc, exact_autocrine_unknowns=0)  # the window, not the global solves of few sources
    whole = attribute(c, sc, autocrine_half_width=15, exact_autocrine_unknowns=0)  # the window clipped at the lattice is the lattice
    exact_path = attribute(c, sc)  # 20 producers on 3072 voxels: one global solve each
    pop = sc.population
    producers = np.flatnonzero(pop.type_index == pop.type_names.index("il2_producer"))
    for i in np.random.default_rng(0).choice(producers, 4, replace=False):
        alone = _alone(sc, i)
        exact = uptake_of(steady(alone), alone)[i]
        assert a.autocrine_molecules_per_s[i] <= exact * (1 + 1e-9)
        assert a.autocrine_molecules_per_s[i] == pytest.approx(exact, rel=max(a.autocrine_window_change, 1e-6))
        assert whole.autocrine_molecules_per_s[i] == pytest.approx(exact, rel=1e-8)
        assert exact_path.autocrine_exact and exact_path.autocrine_molecules_per_s[i] == pytest.approx(exact, rel=1e-8)
        own = a.sources.index(pop.type_names[pop.type_index[i]])
        assert a.autocrine_molecules_per_s[i] <= a.by_cell_molecules_per_s[i, own] * (1 + 1e-9)
    assert np.all(a.autocrine_molecules_per_s[pop.type_index != pop.type_names.index("il2_producer")] == 0)


@pytest.mark.parametrize("extra", [POINT, CLOSURE], ids=["point", "closure"])
def test_a_lone_source_in_a_small_box_is_all_autocrine_in_float32(tmp_path, extra):
    """One producer, two Tregs and a naive T cell in a 24^3 zero-flux box with decay (the newcomer's
    CSV), in the default precision: IL-2 travels ~600 um, far beyond the local window, so the
    window's lower bound is tens of % low here, and the global solve per source must give the
    producer's autocrine uptake equal to its uptake from its own type (the only producer) and to
    the window's value on a window that covers the box."""
    csv = _csv(tmp_path, [(120, 120, 120, "il2_producer"), (150, 120, 120, "treg"), (90, 90, 90, "treg"),
                          (120, 160, 130, "naive_t")])
    sc = scenario_of("grid.shape=[24,24,24]", f"cells.csv={csv}", *extra)
    c = steady(sc)
    a = attribute(c, sc)
    window = attribute(c, sc, exact_autocrine_unknowns=0)
    covering = attribute(c, sc, autocrine_half_width=24, exact_autocrine_unknowns=0)
    assert a.autocrine_exact and a.autocrine_window_change == 0.0
    own = a.by_cell_molecules_per_s[0, a.sources.index("il2_producer")]
    assert a.autocrine_molecules_per_s[0] == pytest.approx(own, rel=1e-4)  # float32 solves
    # another solver (Jacobi CG on the window) to rtol 1e-6 on an ill-conditioned, decay-dominated box
    assert a.autocrine_molecules_per_s[0] == pytest.approx(covering.autocrine_molecules_per_s[0], rel=1e-3)
    assert window.autocrine_molecules_per_s[0] < 0.9 * a.autocrine_molecules_per_s[0]  # the bound is loose here
    assert np.count_nonzero(a.autocrine_molecules_per_s) == 1
    assert "exact, one solve per secreting cell" in " ".join(a.format().split())


@pytest.mark.parametrize("h", [8.0, 20.0])  # a/h from 0.63 to 0.25
def test_isolated_cell_captures_the_spheres_autocrine_fraction(tmp_path, h):
    """One secreting, consuming linear cell (a = 5 um) in a decay-free 32^3 box with absorbing
    faces: the attributed autocrine fraction against the sphere's k/(4 pi D a + k). The closure
    makes it exact: against the sphere with the box's far field (test_subgrid.box_capacity;
    measured 1e-10), within 5 % of the infinite bath's (the box: 0.3 - 3 %): below h = 4 pi g a
    (15.9 um) through the stencil, above it through the own capture (kinetics.own_capture_rate;
    without it one voxel captured (4 pi g a / h) k/(S + k), 21 % low at 20 um)."""
    from test_subgrid import CELL, N, RADIUS, S, box_capacity

    q, km_pM, k_int = 10.0, 43.0, 1.1e-3
    centre = (CELL[0] + 0.5) * h
    csv = _csv(tmp_path, [(centre, centre, centre, "treg")])
    common = [f"grid.shape=[{N},{N},{N}]", f"grid.spacing={h}", "grid.boundary=fixed", "grid.boundary_value=0.0",
              "physics.decay=0", "physics.diffusion=10.0", "physics.uptake=linear", f"physics.cell_radius={RADIUS}",
              f"cells.csv={csv}", f"+cell_types.treg.secretion={q}", f"cell_types.treg.km={km_pM}",
              f"cell_types.treg.k_int={k_int}", *TIGHT]
    for strength in (0.1, 1.0, 10.0):
        k = strength * S  # um^3/s
        sc = scenario_of(*common, f"cell_types.treg.receptors={k * units.pM_to_molecules_per_um3(km_pM) / k_int}")
        c = steady(sc)
        a = attribute(c, sc, autocrine_half_width=N // 2)  # the window covers the box
        fraction = a.autocrine_molecules_per_s[0] / q
        # alone in the box, all it takes up is its own: the window solve and the batched one agree
        assert a.autocrine_molecules_per_s[0] == pytest.approx(uptake_of(c, sc)[0], rel=1e-8)
        assert a.by_cell_molecules_per_s[0, 0] == pytest.approx(uptake_of(c, sc)[0], rel=1e-8)
        assert sc.coupling.own_capture == (h >= subgrid.single_voxel_limit_um(RADIUS))
        assert fraction == pytest.approx(k / (k + box_capacity(h)), rel=1e-6)
        assert fraction == pytest.approx(sphere.sphere_autocrine_fraction(10.0, RADIUS, k), rel=0.05)


def test_many_sources_in_sparse_tissue_get_the_exact_autocrine_part(monkeypatch):
    """More secreting cells than EXACT_AUTOCRINE_CELLS among few consumers: IL-2 travels beyond the
    local window (it is tens of % low and still rose by more than WINDOW_CHANGE_EXACT), so the
    autocrine part comes from the global solves after all, as the few-sources route computes it."""
    sc = scenario_of("grid.shape=[16,16,16]", *TIGHT, "cell_types.treg.density=null", "cell_types.naive_t.density=null",
                     "cell_types.il2_producer.density=null", "+cell_types.il2_producer.count=40", "+cell_types.treg.count=4")
    c = steady(sc)
    assert np.count_nonzero(sc.population.type_index == sc.population.type_names.index("il2_producer")) > attribution.EXACT_AUTOCRINE_CELLS
    a = attribute(c, sc)
    window = attribute(c, sc, exact_autocrine_unknowns=0)  # no global solves allowed
    assert a.autocrine_exact and not window.autocrine_exact
    assert window.autocrine_window_change > attribution.WINDOW_CHANGE_EXACT
    mine = a.autocrine_molecules_per_s > 0
    assert np.all(window.autocrine_molecules_per_s[mine] <= a.autocrine_molecules_per_s[mine] * (1 + 1e-9))
    assert np.max(1 - window.autocrine_molecules_per_s[mine] / a.autocrine_molecules_per_s[mine]) > 0.1
    monkeypatch.setattr(attribution, "EXACT_AUTOCRINE_CELLS", 1 << 20)  # the few-sources route, batched with the shares
    direct = attribute(c, sc)
    assert direct.autocrine_exact
    np.testing.assert_allclose(a.autocrine_molecules_per_s, direct.autocrine_molecules_per_s, rtol=1e-8, atol=1e-15)


@pytest.mark.parametrize("mode", MODES)
def test_a_steady_fields_remainder_share_is_the_solve_it_replaces(mode):
    """attribute(..., steady=True) (what a steady run calls) takes the largest secreting type's part
    as the field less the other sources' parts instead of solving for it: in the default float32,
    each cell's shares agree with those of one solve per source to the solves' tolerance, and they
    add up to the uptake by construction."""
    sc = scenario_of("grid.shape=[20,20,12]", "+cell_types.treg.secretion=2.0", "grid.boundary=fixed",
                     "grid.boundary_value=3.0", *MODES[mode])
    assert sc.settings.numerics.precision == "float32"
    c = steady(sc)
    solved, remainder = attribute(c, sc), attribute(c, sc, steady=True)
    assert remainder.sources == solved.sources == ("il2_producer", "treg", BOUNDARY)
    assert (remainder.remainder, solved.remainder) == ("treg", "")  # the Tregs secrete the most here (many cells)
    assert "by construction: treg's part" in remainder.format() and "by construction" not in solved.format()
    scale = solved.by_cell_molecules_per_s.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(remainder.by_cell_molecules_per_s / scale, solved.by_cell_molecules_per_s / scale, atol=1e-4)  # 6e-6 seen
    np.testing.assert_allclose(remainder.output_molecules_per_s, solved.output_molecules_per_s, rtol=1e-6)
    assert remainder.closure < 1e-6  # 5e-8 seen (one solve per source: 5e-7)
