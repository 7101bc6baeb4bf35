"""Issue 3: lymph-node anatomy (il2rd/physics/anatomy.py) as placement regions, per-cell log-normal
receptor numbers, and the interstitial volume fraction and tortuosity of tissue.

The geometric rules are checked against their definitions, recomputed here from the voxel
centres (not through il2rd's masks); the interstitial physics against the exact point-source
solution q exp(-r/L) / (4 pi D_eff alpha r) and the global balance in molecules.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from compose import compose_config

from helpers import PM_IN_MOLECULES_PER_UM3, point_source_in_box_pM
from il2rd.physics import anatomy
from il2rd import cells
from il2rd.cells import placement
from il2rd.analysis import readouts
from il2rd.cells import CellType, Population
from il2rd.cells.placement import PlacementError, Region
from il2rd.config import ConfigError, node_anatomy, parse
from il2rd.physics.grid import Grid
from il2rd.scenario import Scenario
from il2rd.solvers.steady import SolverOptions, steady_field

NO_DEFAULT_CELLS = ["cell_types.il2_producer.density=null", "cell_types.treg.density=null",
                    "cell_types.naive_t.density=null"]
# a 600 um node lattice with small follicles: cheap to build, every compartment present
NODE = ["grid.shape=[60,60,60]", "node.follicles.count=4", "node.follicles.radius=50"]



def centres(grid: Grid):
    """Voxel centres as three broadcastable (nx,1,1), (1,ny,1), (1,1,nz) arrays (um)."""
    x, y, z = (grid.centres_um(a) for a in range(3))
    return x[:, None, None], y[None, :, None], z[None, None, :]


def rho2(grid, geometry, shrink=0.0):
    """sum_i ((p_i - c_i)/(a_i - shrink))^2 over finite semi-axes, recomputed here."""
    total = 0.0
    for p, c, a in zip(centres(grid), geometry.centre_um, geometry.semi_axes_um):
        if not math.isinf(a):
            total = total + ((p - c) / (a - shrink)) ** 2
    return np.broadcast_to(total, grid.shape)


# ---------------------------------------------------------------------------------------------
# Anatomy: the compartments and their rules

MM3_GRID = Grid((100, 100, 100), 10.0)  # 1 mm^3 at 10 um


@pytest.fixture(scope="module")
def mm3_node():
    return anatomy.build(MM3_GRID)


def test_one_mm3_lattice_is_a_fast_normal_case():
    """1 mm^3 at 10 um (1e6 voxels): the node and all six masks in well under a second."""
    started = time.perf_counter()
    geometry = anatomy.build(MM3_GRID)
    masks = {kind: geometry.mask(kind, MM3_GRID) for kind in anatomy.COMPARTMENTS}
    elapsed = time.perf_counter() - started
    print(f"1 mm^3 node: build and {len(masks)} masks in {elapsed:.3f} s")
    assert all(m.shape == MM3_GRID.shape and m.dtype == bool for m in masks.values())
    assert elapsed < 5.0  # measured ~0.1 s on 2 shared CPU cores


def test_compartments_partition_the_node(mm3_node):
    g = MM3_GRID
    masks = {kind: mm3_node.mask(kind, g) for kind in anatomy.COMPARTMENTS}
    parts = [masks[k] for k in anatomy.COMPARTMENTS if k != "node"]
    total = np.sum(parts, axis=0)
    assert total.max() == 1  # no voxel in two compartments
    np.testing.assert_array_equal(total == 1, masks["node"])  # together they are the node
    assert all(m.any() for m in parts)
    # the node is the ellipsoid: 0.45 x 1000 um semi-axes, volume 4/3 pi a^3 to voxelisation error
    assert mm3_node.semi_axes_um == (450.0, 450.0, 450.0) and mm3_node.centre_um == (500.0, 500.0, 500.0)
    node_volume = masks["node"].sum() * g.voxel_volume_um3
    assert node_volume == pytest.approx(4 / 3 * math.pi * 450.0**3, rel=0.01)
    np.testing.assert_array_equal(masks["node"], rho2(g, mm3_node) <= 1)
    # the T zone is the largest compartment; the labels and volumes agree with the masks
    volumes = mm3_node.volumes_um3(g)
    assert max((v, k) for k, v in volumes.items() if k != "node")[1] == "t_zone"
    labels = mm3_node.labels(g)
    for kind, label in anatomy.LABELS.items():
        if kind != "outside":
            np.testing.assert_array_equal(labels == label, masks[kind])
            assert volumes[kind] == masks[kind].sum() * g.voxel_volume_um3
    print({k: f"{v / volumes['node']:.3f}" for k, v in volumes.items()})


def test_capsule_is_the_thin_outer_shell(mm3_node):
    g, t = MM3_GRID, mm3_node.capsule_um
    capsule = mm3_node.mask("capsule", g)
    np.testing.assert_array_equal(capsule, (rho2(g, mm3_node) <= 1) & (rho2(g, mm3_node, t) > 1))
    # along each axis through the centre the shell is t = 20 um thick: two 10 um voxels per side
    c = g.shape[0] // 2
    for line in (capsule[:, c, c], capsule[c, :, c], capsule[c, c, :]):
        assert line.sum() == 4
    # every capsule voxel lies within t (+ half a voxel diagonal) of the surface along its ray
    x, y, z = np.broadcast_arrays(*centres(g))
    p = np.stack([x[capsule], y[capsule], z[capsule]], -1) - 500.0
    depth = 450.0 - np.linalg.norm(p, axis=1)  # a sphere here: depth below the surface
    assert depth.min() >= 0 and depth.max() <= t + 1e-9


def test_follicles_sit_under_the_capsule_on_the_cortical_side(mm3_node):
    g = MM3_GRID
    R, t = mm3_node.follicle_radius_um, mm3_node.capsule_um
    f = np.asarray(mm3_node.follicle_centres_um)
    assert f.shape == (8, 3)
    offset = f - np.asarray(mm3_node.centre_um)
    distance = np.linalg.norm(offset, axis=1)
    # just under the capsule: each centre t + R below the surface (a sphere: surface at 450 um)
    np.testing.assert_allclose(distance, 450.0 - t - R, rtol=1e-12)
    # within 60 degrees of the cortical pole (+y, cortex_side y_hi)
    cos_angle = offset[:, 1] / distance
    assert np.all(cos_angle >= math.cos(math.radians(60.0)) - 1e-12)
    # no two overlap
    gaps = np.linalg.norm(f[:, None] - f[None], axis=-1)[np.triu_indices(len(f), 1)]
    assert gaps.min() >= 2 * R - 1e-9
    # the follicle mask is the union of the spheres, inside the capsule
    x, y, z = centres(g)
    union = np.zeros(g.shape, bool)
    for cx, cy, cz in f:
        union |= (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= R**2
    np.testing.assert_array_equal(mm3_node.mask("follicle", g), union & (rho2(g, mm3_node, t) <= 1))


def test_medulla_t_zone_and_interfollicular_rules(mm3_node):
    g = MM3_GRID
    x, y, z = np.broadcast_arrays(*centres(g))
    s = (y - 500.0) / 450.0  # normalised coordinate towards the cortex (+y)
    medulla = mm3_node.mask("medulla", g)
    t_zone = mm3_node.mask("t_zone", g)
    inter = mm3_node.mask("interfollicular", g)
    # medulla: the hilar 30 % of the node's length, opposite the follicles
    assert np.all(s[medulla] < -0.4)
    interior = (rho2(g, mm3_node, 20.0) <= 1) & ~mm3_node.mask("follicle", g)
    np.testing.assert_array_equal(medulla, interior & (s < -0.4))
    assert y[medulla].mean() < 500.0 < np.asarray(mm3_node.follicle_centres_um)[:, 1].min()
    # T zone: deep and central, inside the ellipsoid shrunk by capsule + follicle radius (100 um)
    deep = rho2(g, mm3_node, 100.0) <= 1
    np.testing.assert_array_equal(t_zone, interior & (s >= -0.4) & deep)
    # interfollicular: the outer cortex between and around the follicles
    np.testing.assert_array_equal(inter, interior & (s >= -0.4) & ~deep)
    r = np.sqrt((x - 500.0) ** 2 + (y - 500.0) ** 2 + (z - 500.0) ** 2)
    assert r[inter].min() > 450.0 - 100.0 - 1e-9 and r[inter].max() <= 450.0 - 20.0 + 1e-9


def test_masks_agree_with_pointwise_membership():
    """Region.mask (from the 1-D axes) and Region.contains (points) say the same for every kind."""
    grid = Grid((40, 36, 30), 10.0)
    geometry = anatomy.build(grid, follicle_count=3, follicle_radius_um=30.0)
    points = placement.voxel_centres_um(grid)
    for kind in anatomy.COMPARTMENTS:
        region = Region(kind, anatomy=geometry)
        np.testing.assert_array_equal(region.mask(grid).ravel(), region.contains(points))


def test_follicles_are_seeded_and_independent_of_the_cell_seed():
    a = parse(compose_config(*NODE, "+cell_types.treg.region={kind: follicle}", "seed=1")).problem.node
    b = parse(compose_config(*NODE, "+cell_types.treg.region={kind: follicle}", "seed=2")).problem.node
    c = parse(compose_config(*NODE, "+cell_types.treg.region={kind: follicle}", "node.follicles.seed=5")).problem.node
    assert a == b  # the cell-placement seed does not move the follicles
    assert a.follicle_centres_um != c.follicle_centres_um


def test_explicit_follicle_centres_replace_the_seeded_ones():
    s = parse(compose_config("grid.shape=[60,60,60]", "node.follicles.radius=50",
                             "node.follicles.centers=[[300, 480, 300], [200, 450, 300]]",
                             "+cell_types.treg.region={kind: follicle}"))
    assert s.problem.node.follicle_centres_um == ((300.0, 480.0, 300.0), (200.0, 450.0, 300.0))
    x, y, z = centres(s.problem.grid)
    spheres = (((x - 300) ** 2 + (y - 480) ** 2 + (z - 300) ** 2 <= 50.0**2)
               | ((x - 200) ** 2 + (y - 450) ** 2 + (z - 300) ** 2 <= 50.0**2))
    np.testing.assert_array_equal(s.problem.node.mask("follicle", s.problem.grid), spheres & (rho2(s.problem.grid, s.problem.node, 20.0) <= 1))


def test_cortex_side_turns_the_node():
    grid = Grid((60, 60, 60), 10.0)
    geometry = anatomy.build(grid, cortex_side="x_lo", follicle_count=4, follicle_radius_um=50.0)
    f = np.asarray(geometry.follicle_centres_um)
    assert np.all(f[:, 0] < 300.0)  # follicles towards x = 0
    x = grid.centres_um(0)[:, None, None]
    assert np.all(np.broadcast_to(x, grid.shape)[geometry.mask("medulla", grid)] > 300.0)


def test_a_flat_lattice_is_a_section_through_the_node():
    grid = Grid((120, 100, 1), 10.0)
    geometry = anatomy.build(grid, follicle_count=5, follicle_radius_um=60.0)
    assert math.isinf(geometry.semi_axes_um[2]) and geometry.semi_axes_um[:2] == (540.0, 450.0)
    f = np.asarray(geometry.follicle_centres_um)
    assert np.all(f[:, 2] == 5.0)  # in the section's plane
    volumes = geometry.volumes_um3(grid)
    assert all(volumes[k] > 0 for k in anatomy.COMPARTMENTS)
    assert max((v, k) for k, v in volumes.items() if k != "node")[1] == "t_zone"


@pytest.mark.parametrize("kind", anatomy.COMPARTMENTS)
def test_density_is_per_compartment_volume_and_cells_stay_in_it(kind):
    density = 3.0e5  # cells/mm^3
    s = parse(compose_config(*NODE, *NO_DEFAULT_CELLS, f"cell_types.treg.density={density}",
                             f"+cell_types.treg.region={{kind: {kind}}}"))
    (name, count, region), = [p for p in s.problem.placement if p[0] == "treg"]
    assert region.kind == kind and region.anatomy == s.problem.node
    voxels = int(s.problem.node.mask(kind, s.problem.grid).sum())
    assert count == round(density * voxels * 1000.0 / 1e9)
    pop = Scenario.build(s).population
    assert pop.count("treg") == count > 0
    assert np.all(s.problem.node.mask(kind, s.problem.grid)[tuple(pop.voxel.T)])


def test_compartments_mix_with_the_other_region_kinds():
    s = parse(compose_config(*NODE, "cell_types.il2_producer.density=null", "+cell_types.il2_producer.count=20",
                             "+cell_types.il2_producer.region={kind: t_zone}",
                             "cell_types.treg.density=null", "+cell_types.treg.count=30",
                             "+cell_types.treg.region={kind: sphere, center: [300, 300, 300], radius: 60}",
                             "cell_types.naive_t.density=2e5",
                             "+cell_types.b_cell.count=50", "+cell_types.b_cell.region={kind: follicle}"))
    pop = Scenario.build(s).population
    assert [pop.count(n) for n in ("il2_producer", "treg", "b_cell")] == [20, 30, 50]
    assert pop.count("naive_t") == round(2e5 * 0.6**3)  # lattice-wide, as before
    assert len({tuple(v) for v in pop.voxel}) == len(pop)
    follicle = s.problem.node.mask("follicle", s.problem.grid)
    assert np.all(follicle[tuple(pop.voxel[pop.type_index == 3].T)])


def test_no_anatomy_is_built_unless_a_region_uses_it():
    """The default run places cells on the lattice: no node, however small the lattice."""
    s = parse(compose_config("grid.shape=[8,8,4]"))
    assert s.problem.node is None
    assert all(region.kind == "lattice" for _, _, region in s.problem.placement)
    # ... and the node of a config can still be had for maps: the same one a region would use
    cfg = compose_config(*NODE, "+cell_types.treg.region={kind: medulla}")
    assert node_anatomy(cfg) == parse(cfg).problem.node


BAD_NODE = [
    # (id, overrides, key named, value named)
    ("semi-axes-outside-lattice", ["node.semi_axes=[400, 200, 200]", "+cell_types.treg.region={kind: node}"],
     "node.semi_axes", "400"),
    ("semi-axes-two-numbers", ["node.semi_axes=[200, 200]"], "node.semi_axes", "[200.0, 200.0]"),
    ("semi-axes-zero", ["node.semi_axes=[200, 0, 200]"], "node.semi_axes[1]", "0"),
    ("cortex-side-unknown", ["node.cortex_side=top"], "node.cortex_side", "top"),
    ("capsule-negative", ["node.capsule_thickness=-5"], "node.capsule_thickness", "-5"),
    ("capsule-thicker-than-node", ["node.capsule_thickness=400", "+cell_types.treg.region={kind: capsule}"],
     "node.capsule_thickness", "400"),
    ("medulla-fraction-one", ["node.medulla_fraction=1"], "node.medulla_fraction", "1"),
    ("medulla-fraction-negative", ["node.medulla_fraction=-0.1"], "node.medulla_fraction", "-0.1"),
    ("t-zone-depth-too-deep", ["node.t_zone_depth=500", "+cell_types.treg.region={kind: t_zone}"],
     "node.t_zone_depth", "500"),
    ("follicle-count-negative", ["node.follicles.count=-1"], "node.follicles.count", "-1"),
    ("follicle-radius-zero", ["node.follicles.radius=0"], "node.follicles.radius", "0"),
    ("follicle-spread-above-180", ["node.follicles.spread=270"], "node.follicles.spread", "270"),
    ("follicles-do-not-fit", ["node.follicles.count=40", "+cell_types.treg.region={kind: t_zone}"],
     "node.follicles.count", "40"),
    ("follicle-centre-outside-node", ["node.follicles.centers=[[10, 10, 10]]",
                                      "+cell_types.treg.region={kind: follicle}"],
     "node.follicles.centers[0]", "10"),
    ("no-follicles-to-place-in", ["node.follicles.count=0", "+cell_types.treg.region={kind: follicle}"],
     "cell_types.treg.region", "follicle"),
    ("no-medulla-to-place-in", ["node.medulla_fraction=0", "+cell_types.treg.region={kind: medulla}"],
     "cell_types.treg.region", "medulla"),
    ("compartment-with-extra-key", ["+cell_types.treg.region={kind: t_zone, radius: 30}"],
     "cell_types.treg.region.radius", "30"),
    ("unknown-node-key", ["+node.folicles=3"], "node.folicles", "3"),
    ("unknown-follicle-key", ["+node.follicles.diameter=100"], "node.follicles.diameter", "100"),
]


@pytest.mark.parametrize("overrides, key, value", [pytest.param(o, k, v, id=i) for i, o, k, v in BAD_NODE])
def test_bad_node_is_refused_naming_key_and_value(overrides, key, value):
    with pytest.raises(ConfigError) as info:
        parse(compose_config(*NODE, *overrides))
    err, message = info.value, str(info.value)
    named = message[: -len(err.allowed)]
    assert err.key == key and key in named and value in named, message
    assert "\n" not in message


def test_follicles_that_do_not_fit_a_small_lattice_say_how_to_fix_it():
    with pytest.raises(ConfigError) as info:
        parse(compose_config("grid.shape=[32,32,32]", "+cell_types.treg.region={kind: t_zone}"))
    assert info.value.key == "node.follicles.count" and "radius" in info.value.allowed
    # ... and with fewer, smaller follicles the same lattice works
    s = parse(compose_config("grid.shape=[32,32,32]", "node.follicles.count=2", "node.follicles.radius=30",
                             "+cell_types.treg.region={kind: t_zone}"))
    assert Scenario.build(s).population.count("treg") > 0


def test_section_refuses_a_cortex_side_along_its_flat_axis():
    with pytest.raises(ConfigError) as info:
        parse(compose_config("grid.shape=[60,60,1]", "node.follicles.count=3", "node.follicles.radius=40",
                             "node.cortex_side=z_hi", "+cell_types.treg.region={kind: t_zone}"))
    assert info.value.key == "node.cortex_side" and info.value.value == "z_hi"


def test_compartment_overfilled_names_the_type_and_the_node():
    s = parse(compose_config(*NODE, *NO_DEFAULT_CELLS, "+cell_types.treg.count=100000",
                             "+cell_types.treg.region={kind: follicle}"))
    with pytest.raises(PlacementError) as info:
        Scenario.build(s)
    assert "cell_types.treg" in str(info.value) and "follicle region of the lymph node" in str(info.value)


# ---------------------------------------------------------------------------------------------
# Receptor spread: log-normal per cell with the type's mean and coefficient of variation

def test_no_spread_gives_every_cell_the_type_mean():
    s = parse(compose_config("grid.shape=[16,16,8]"))
    pop = Scenario.build(s).population
    table = cells.type_table(s.problem.types, pop.type_names)["receptors"][pop.type_index]
    np.testing.assert_array_equal(pop.receptors, table)


def test_lognormal_spread_has_the_mean_and_cv_asked_for():
    cv = 0.5
    s = parse(compose_config("grid.shape=[40,40,40]", f"cell_types.treg.receptor_cv={cv}"))
    pop = Scenario.build(s).population
    r = pop.receptors[pop.type_index == pop.type_names.index("treg")]
    n = len(r)
    assert n == 6400
    mean, sigma = 2.0e4, math.sqrt(math.log(1 + cv**2))
    # the sample mean within 4 standard errors, the CV within 4 of its standard errors (~0.006)
    assert abs(r.mean() - mean) < 4 * cv * mean / math.sqrt(n)
    assert abs(r.std() / r.mean() - cv) < 0.03
    # log R is normal with sd sigma and mean ln(m) - sigma^2/2
    assert np.log(r).std() == pytest.approx(sigma, rel=0.03)
    assert np.log(r).mean() == pytest.approx(math.log(mean) - sigma**2 / 2, abs=4 * sigma / math.sqrt(n))
    assert np.all(r > 0)
    # the other types keep their means
    naive = pop.receptors[pop.type_index == pop.type_names.index("naive_t")]
    assert np.all(naive == 100.0)


def test_spread_is_seeded_and_never_moves_a_cell():
    def population(*overrides):
        return Scenario.build(parse(compose_config("grid.shape=[16,16,8]", *overrides))).population

    flat, a, b, c = (population(), population("cell_types.treg.receptor_cv=0.8"),
                     population("cell_types.treg.receptor_cv=0.8"), population("cell_types.treg.receptor_cv=0.8", "seed=1"))
    np.testing.assert_array_equal(flat.voxel, a.voxel)  # placement unchanged by the spread
    np.testing.assert_array_equal(a.receptors, b.receptors)
    assert not np.array_equal(a.receptors[a.type_index == 1], c.receptors[c.type_index == 1])


def test_uptake_and_pstat5_use_each_cells_own_receptors():
    # point sinks: each cell's own v_max in its voxel, and the voxel's IL-2 is what it sees
    s = parse(compose_config("grid.shape=[16,16,8]", "precision=float64", "cell_types.treg.receptor_cv=1.0",
                             "cell_types.naive_t.receptor_cv=0.3", "physics.volume_fraction=0.4", "physics.cell_radius=null"))
    scenario = Scenario.build(s)
    pop = scenario.population
    table = cells.type_table(s.problem.types, pop.type_names)
    # v_max per voxel: k_int R_i / (6.022e-4 alpha V), R_i the cell's own number
    vmax = np.asarray(scenario.coefficients.vmax_pM_per_s)[tuple(pop.voxel.T)]
    expected = table["k_int_per_s"][pop.type_index] * pop.receptors / (PM_IN_MOLECULES_PER_UM3 * 0.4 * 1000.0)
    np.testing.assert_allclose(vmax, expected, rtol=1e-12)
    field = np.random.default_rng(0).uniform(0, 50, s.problem.grid.shape)
    columns = readouts.cell_columns(field, scenario)
    seen = field[tuple(pop.voxel.T)]
    km = table["km_pM"][pop.type_index]
    np.testing.assert_allclose(columns["receptors"], pop.receptors)
    np.testing.assert_allclose(columns["uptake"], table["k_int_per_s"][pop.type_index] * pop.receptors * seen / (km + seen),
                               rtol=1e-12)
    np.testing.assert_allclose(columns["pstat5"], s.problem.signalling.pstat5(seen, pop.receptors))


def test_csv_receptors_column_is_used_and_without_it_the_type_mean(tmp_path):
    grid = Grid((8, 6, 4), 10.0)
    names = ("producer", "treg")
    with_column = tmp_path / "with.csv"
    with_column.write_text("x,y,z,type,receptors\n5,5,5,treg,1234\n15,5,5,producer,0\n")
    pop = placement.read_csv(with_column, grid, names)
    np.testing.assert_array_equal(pop.receptors, [1234.0, 0.0])
    types = {"producer": CellType("producer", 10.0), "treg": CellType("treg", receptors=2e4, receptor_cv=0.5)}
    np.testing.assert_array_equal(placement.draw_receptors(pop, types, seed=0).receptors, pop.receptors)  # kept as given
    without = tmp_path / "without.csv"
    without.write_text("x,y,z,type\n5,5,5,treg\n")
    pop = placement.read_csv(without, grid, names)
    assert pop.receptors is None
    np.testing.assert_array_equal(pop.receptors_per_cell(types), [2e4])
    # through the config: the column is used, and without it the spread does not apply to CSV cells
    (tmp_path / "cfg.csv").write_text("x,y,z,type,receptors\n5,5,5,treg,1234\n15,5,5,il2_producer,7\n")
    s = parse(compose_config("grid.shape=[8,6,4]", f"cells.csv={tmp_path / 'cfg.csv'}", "cell_types.treg.receptor_cv=0.5"))
    np.testing.assert_array_equal(Scenario.build(s).population.receptors, [1234.0, 7.0])
    (tmp_path / "cfg.csv").write_text("x,y,z,type\n5,5,5,treg\n15,5,5,il2_producer\n")
    np.testing.assert_array_equal(Scenario.build(s).population.receptors, [2e4, 1500.0])
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y,z,type,receptors\n5,5,5,treg,-3\n")
    with pytest.raises(PlacementError) as info:
        placement.read_csv(bad, grid, names)
    assert "line 2" in str(info.value) and "-3" in str(info.value)


# ---------------------------------------------------------------------------------------------
# Interstitial volume fraction alpha and tortuosity lambda

def test_defaults_leave_the_coefficients_as_before():
    s = parse(compose_config("grid.shape=[16,16,8]", "physics.cell_radius=null"))  # point sinks: q in the cell's voxel
    assert (s.problem.volume_fraction, s.problem.tortuosity) == (1.0, 1.0)
    scenario = Scenario.build(s)
    pop = scenario.population
    table = cells.type_table(s.problem.types, pop.type_names)
    secretion = np.asarray(scenario.coefficients.secretion_pM_per_s)[tuple(pop.voxel.T)]
    np.testing.assert_allclose(secretion, table["secretion_molecules_per_s"][pop.type_index]
                               / (PM_IN_MOLECULES_PER_UM3 * 1000.0), rtol=1e-6)
    assert float(scenario.coefficients.diffusion_um2_per_s) == 10.0


def test_balance_in_molecules_closes_with_tissue_alpha_and_lambda():
    """alpha = 0.3, lambda = 1.6, fixed faces: secretion = uptake + decay + outflux in molecules/s,
    the secretion is n q whatever alpha is, and each cell's uptake is k_int R c/(K_M + c)."""
    alpha, lam = 0.3, 1.6
    s = parse(compose_config("grid.shape=[20,18,16]", "precision=float64", "solver.rtol=1e-11",
                             "grid.boundary=fixed", f"physics.volume_fraction={alpha}", f"physics.tortuosity={lam}",
                             "physics.diffusion=100", "cell_types.treg.receptor_cv=0.5",
                             "physics.cell_radius=null"))  # point sinks: each cell's uptake from its voxel's c
    scenario = Scenario.build(s)
    assert float(scenario.coefficients.diffusion_um2_per_s) == pytest.approx(100.0 / lam**2)
    c, info = steady_field(s.problem.grid, scenario.coefficients, options=SolverOptions(rtol=1e-11))
    assert bool(info.converged)
    columns = readouts.cell_columns(c, scenario)
    summary = readouts.summarise(c, columns, scenario)
    pop = scenario.population
    n_producers = pop.count("il2_producer")
    assert summary.secretion_molecules_per_s == pytest.approx(10.0 * n_producers, rel=1e-12)
    table = cells.type_table(s.problem.types, pop.type_names)
    seen = np.asarray(c)[tuple(pop.voxel.T)]
    uptake = table["k_int_per_s"][pop.type_index] * pop.receptors * seen / (table["km_pM"][pop.type_index] + seen)
    assert summary.uptake_molecules_per_s == pytest.approx(uptake.sum(), rel=1e-10)
    # decay of the molecules in the interstitial volume alpha V of every voxel
    decay = s.problem.decay_per_s * float(np.sum(np.asarray(c))) * PM_IN_MOLECULES_PER_UM3 * alpha * 1000.0
    assert summary.decay_molecules_per_s == pytest.approx(decay, rel=1e-10)
    balance = (summary.secretion_molecules_per_s - summary.uptake_molecules_per_s - summary.decay_molecules_per_s
               - summary.boundary_outflux_molecules_per_s)
    print(f"alpha {alpha}, lambda {lam}: secreted {summary.secretion_molecules_per_s:.6g} = uptake "
          f"{summary.uptake_molecules_per_s:.6g} + decay {summary.decay_molecules_per_s:.6g} + outflux "
          f"{summary.boundary_outflux_molecules_per_s:.6g}; imbalance {balance:.2e}")
    assert summary.boundary_outflux_molecules_per_s > 0.05 * summary.secretion_molecules_per_s
    assert abs(balance) < 1e-6 * summary.secretion_molecules_per_s


Q, L_DECAY, D_FREE, H = 10.0, 10.0, 40.0, 2.0  # molecules/s, um, um^2/s, um
HALF = 6 * L_DECAY


def point_source(alpha, lam, diffusion=D_FREE):
    """One secreting cell in the centre voxel of a cube with c = 0 on its faces, decay chosen so
    that L = sqrt(D_eff / k) = 10 um; through cells.field_coefficients."""
    m = int(round(HALF / H))
    n = 2 * m + 1
    grid = Grid((n, n, n), H, ("fixed",) * 6)
    pop = Population(np.array([[m, m, m]]), np.array([[m + 0.5, m + 0.5, m + 0.5]]) * H, np.array([0], np.int32), ("src",))
    d_eff = diffusion / lam**2
    types = {"src": CellType("src", Q)}
    point_sinks = cells.coupling_of(grid, pop, types, d_eff, alpha, "linear", np.float64, closure=False)
    coef = cells.field_coefficients(grid, pop, types, diffusion, d_eff / L_DECAY**2, np.zeros(6), point_sinks, np.float64,
                                    tortuosity=lam)
    c, info = steady_field(grid, coef, options=SolverOptions(rtol=1e-11))
    assert bool(info.converged)
    return np.asarray(c), m, d_eff


def test_point_source_in_tissue_matches_the_exact_solution_and_scales_as_one_over_alpha():
    alpha, lam = 0.25, 1.6
    tissue, m, d_eff = point_source(alpha, lam)
    free, _, _ = point_source(1.0, 1.0, diffusion=d_eff)  # the same D_eff, alpha = lambda = 1
    # discrete: c(alpha, lambda, D) = c(1, 1, D / lambda^2) / alpha, to round-off
    np.testing.assert_allclose(tissue, free / alpha, rtol=1e-8, atol=1e-12 * tissue.max())
    # continuum: q exp(-r/L) / (4 pi D_eff alpha r), converted to pM, with the box's images
    for r in (16.0, 20.0, 24.0, 32.0, 40.0):
        j = int(round(r / H))
        exact = point_source_in_box_pM(r, 0.0, 0.0, (2 * m + 1) * H / 2, Q / alpha, d_eff, L_DECAY)
        # written out without the helper: the images (c = 0 on the faces) lower it < 1 % up to 40 um
        plain = Q * math.exp(-r / L_DECAY) / (4 * math.pi * d_eff * alpha * r) / PM_IN_MOLECULES_PER_UM3
        assert exact == pytest.approx(plain, rel=1e-2)
        print(f"r = {r:g} um: lattice {tissue[m + j, m, m]:.5g} pM, exact {exact:.5g} pM")
        assert tissue[m + j, m, m] == pytest.approx(exact, rel=0.02)  # second order: ~1 % at h = 2 um


BAD_TISSUE = [
    ("volume-fraction-zero", ["physics.volume_fraction=0"], "physics.volume_fraction", "0"),
    ("volume-fraction-above-one", ["physics.volume_fraction=1.5"], "physics.volume_fraction", "1.5"),
    ("tortuosity-below-one", ["physics.tortuosity=0.5"], "physics.tortuosity", "0.5"),
    ("tortuosity-nan", ["physics.tortuosity=nan"], "physics.tortuosity", "nan"),
    ("receptor-cv-negative", ["cell_types.treg.receptor_cv=-0.2"], "cell_types.treg.receptor_cv", "-0.2"),
    ("receptor-cv-a-percentage", ["cell_types.treg.receptor_cv=50"], "cell_types.treg.receptor_cv", "50"),
]


@pytest.mark.parametrize("overrides, key, value", [pytest.param(o, k, v, id=i) for i, o, k, v in BAD_TISSUE])
def test_bad_tissue_value_is_refused_naming_key_and_value(overrides, key, value):
    with pytest.raises(ConfigError) as info:
        parse(compose_config("grid.shape=[8,8,4]", *overrides))
    err, message = info.value, str(info.value)
    assert err.key == key and key in message[: -len(err.allowed)] and value in message[: -len(err.allowed)]
