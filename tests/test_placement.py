"""Placement of cells on the lattice: random (count or density, lattice/box/sphere, seeded) and
from a CSV file (x,y,z,type in um), one cell per voxel at most (issue 2, "Cells")."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from compose import compose_config

from il2rd.cells.placement import PlacementError, Region, place_random, read_csv, voxel_centres_um
from il2rd.config import parse
from il2rd.physics.grid import Grid
from il2rd.scenario import Scenario

NAMES = ("producer", "treg", "naive")



def voxels(pop) -> set[tuple[int, int, int]]:
    return {tuple(int(i) for i in v) for v in pop.voxel}


def write_csv(path: Path, rows, header="x,y,z,type") -> Path:
    path.write_text(header + "\n" + "".join(",".join(str(f) for f in row) + "\n" for row in rows))
    return path


# ---------------------------------------------------------------------------------------------
# Random placement

GRID = Grid((20, 16, 10), 10.0)
REQUESTS = [("producer", 30, Region()), ("treg", 300, Region()), ("naive", 1500, Region())]


def test_random_placement_is_seeded_and_reproducible():
    a = place_random(GRID, REQUESTS, NAMES, seed=1)
    b = place_random(GRID, REQUESTS, NAMES, seed=1)
    c = place_random(GRID, REQUESTS, NAMES, seed=2)
    np.testing.assert_array_equal(a.voxel, b.voxel)
    np.testing.assert_array_equal(a.type_index, b.type_index)
    assert voxels(a) != voxels(c)
    # not merely a permutation of the same voxels: the producers sit elsewhere
    producers = lambda p: {tuple(v) for v in p.voxel[p.type_index == 0].tolist()}  # noqa: E731
    assert producers(a) != producers(c)


def test_random_placement_is_seeded_through_the_config():
    def build(seed):
        return Scenario.build(parse(compose_config("grid.shape=[16,16,8]", f"seed={seed}"))).population

    a, b, c = build(3), build(3), build(4)
    np.testing.assert_array_equal(a.voxel, b.voxel)
    np.testing.assert_array_equal(a.type_index, b.type_index)
    assert voxels(a) != voxels(c)


def test_random_placement_gives_the_counts_asked_for_one_cell_per_voxel():
    pop = place_random(GRID, REQUESTS, NAMES, seed=0)
    assert [pop.count(n) for n in NAMES] == [30, 300, 1500]
    assert len(pop) == 1830
    assert len(voxels(pop)) == len(pop)  # at most one cell per voxel
    assert np.all(pop.voxel >= 0) and np.all(pop.voxel < np.asarray(GRID.shape))
    np.testing.assert_allclose(pop.position_um, (pop.voxel + 0.5) * GRID.spacing_um)


def test_random_placement_can_fill_every_voxel():
    grid = Grid((6, 5, 4), 10.0)
    pop = place_random(grid, [("producer", 20, Region()), ("naive", 100, Region())], NAMES, seed=5)
    assert len(voxels(pop)) == 120 == grid.n_voxels


def test_random_placement_refuses_more_cells_than_voxels():
    grid = Grid((4, 4, 4), 10.0)
    with pytest.raises(PlacementError) as info:
        place_random(grid, [("producer", 40, Region()), ("naive", 30, Region())], NAMES, seed=0)
    message = str(info.value)
    assert "cell_types.naive" in message and "30" in message and "24" in message  # 24 voxels left


def test_random_placement_is_uniform_over_the_lattice():
    """Over many seeds every voxel is used about equally often (not e.g. the first free ones)."""
    grid = Grid((10, 10, 4), 10.0)
    hits = np.zeros(grid.shape)
    for seed in range(200):
        pop = place_random(grid, [("treg", 40, Region())], NAMES, seed=seed)
        np.add.at(hits, tuple(pop.voxel.T), 1)
    # each voxel: Binomial(200, 0.1), mean 20, sd 4.2
    assert hits.sum() == 8000
    assert hits.min() >= 3 and hits.max() <= 45
    # halves of the lattice along each axis hold half the cells each, within ~5 sd (sd = 44.7)
    for axis in range(3):
        half = np.take(hits, range(grid.shape[axis] // 2), axis=axis).sum()
        assert abs(half - 4000) < 250


def test_box_region_holds_its_cells():
    box = Region("box", lo_um=(20.0, 30.0, 0.0), hi_um=(90.0, 100.0, 50.0))
    pop = place_random(GRID, [("treg", 150, box), ("naive", 500, Region())], NAMES, seed=0)
    inside = pop.position_um[pop.type_index == 1]
    assert len(inside) == 150
    assert np.all(inside >= np.asarray(box.lo_um)) and np.all(inside < np.asarray(box.hi_um))
    # the lattice-wide type is not confined to the box
    outside = pop.position_um[pop.type_index == 2]
    assert not np.all(box.contains(outside))
    assert len(voxels(pop)) == 650


def test_sphere_region_holds_its_cells():
    sphere = Region("sphere", centre_um=(100.0, 80.0, 50.0), radius_um=42.0)
    pop = place_random(GRID, [("producer", 100, sphere)], NAMES, seed=0)
    distance = np.linalg.norm(pop.position_um - np.asarray(sphere.centre_um), axis=1)
    assert len(pop) == 100 and np.all(distance <= 42.0)


def test_filling_a_box_region_uses_every_voxel_of_it_and_no_other():
    box = Region("box", lo_um=(0.0, 0.0, 0.0), hi_um=(50.0, 40.0, 30.0))  # 5 x 4 x 3 voxels
    pop = place_random(GRID, [("treg", 60, box)], NAMES, seed=9)
    expected = {(i, j, k) for i in range(5) for j in range(4) for k in range(3)}
    assert voxels(pop) == expected
    with pytest.raises(PlacementError) as info:
        place_random(GRID, [("treg", 61, box)], NAMES, seed=9)
    assert "cell_types.treg" in str(info.value) and "61" in str(info.value) and "box" in str(info.value)


def test_region_voxels_already_taken_by_an_earlier_type_are_not_reused():
    box = Region("box", lo_um=(0.0, 0.0, 0.0), hi_um=(50.0, 40.0, 30.0))  # 60 voxels
    pop = place_random(GRID, [("producer", 40, box), ("treg", 20, box)], NAMES, seed=2)
    assert len(voxels(pop)) == 60
    with pytest.raises(PlacementError):
        place_random(GRID, [("producer", 40, box), ("treg", 21, box)], NAMES, seed=2)


@pytest.mark.parametrize("region, voxel_count", [
    pytest.param(None, 16 * 16 * 8, id="lattice"),
    pytest.param("{kind: box, lo: [20, 30, 0], hi: [110, 130, 60]}", 9 * 10 * 6, id="box"),
    pytest.param("{kind: box, lo: [100, 100, 0], hi: [500, 500, 500]}", 6 * 6 * 8, id="box-clipped-by-lattice"),
    pytest.param("{kind: sphere, center: [80, 80, 40], radius: 35}", None, id="sphere"),
])
def test_density_gives_cells_per_mm3_times_region_volume(region, voxel_count):
    density = 4.0e5  # cells/mm^3: 0.4 per 10 um voxel
    overrides = ["grid.shape=[16,16,8]", "cell_types.il2_producer.density=null", "cell_types.naive_t.density=null",
                 f"cell_types.treg.density={density}"]
    if region is not None:
        overrides.append(f"+cell_types.treg.region={region}")
    s = parse(compose_config(*overrides))
    grid = s.problem.grid
    if voxel_count is None:  # voxels whose centre lies in the sphere, counted here independently
        centres = np.stack(np.meshgrid(*[(np.arange(n) + 0.5) * 10.0 for n in grid.shape], indexing="ij"), -1)
        voxel_count = int(np.count_nonzero(np.sum((centres - [80.0, 80.0, 40.0]) ** 2, -1) <= 35.0**2))
        assert 150 < voxel_count < 200  # 4/3 pi 3.5^3 = 180 voxels
    volume_mm3 = voxel_count * 1000.0 / 1e9
    expected = round(density * volume_mm3)
    pop = Scenario.build(s).population
    assert pop.count("treg") == expected
    assert pop.count("il2_producer") == 0 and pop.count("naive_t") == 0
    if region is not None:
        lo_hi_or_sphere = s.problem.placement[[n for n, _, _ in s.problem.placement].index("treg")][2]
        assert np.all(lo_hi_or_sphere.contains(pop.position_um))


def test_counts_and_densities_mix():
    s = parse(compose_config("grid.shape=[16,16,8]", "cell_types.il2_producer.density=null",
                             "+cell_types.il2_producer.count=17", "cell_types.treg.density=1e5",
                             "cell_types.naive_t.density=5e5"))
    pop = Scenario.build(s).population
    volume_mm3 = 16 * 16 * 8 * 1000.0 / 1e9
    assert pop.count("il2_producer") == 17
    assert pop.count("treg") == round(1e5 * volume_mm3)
    assert pop.count("naive_t") == round(5e5 * volume_mm3)
    assert len(voxels(pop)) == len(pop)


def test_voxel_centres_are_in_c_order_of_the_field():
    grid = Grid((3, 4, 5), 2.0)
    centres = voxel_centres_um(grid).reshape(3, 4, 5, 3)
    assert tuple(centres[2, 1, 3]) == (5.0, 3.0, 7.0)


# ---------------------------------------------------------------------------------------------
# CSV placement

CSV_GRID = Grid((8, 6, 4), 10.0)


def test_csv_puts_each_cell_in_the_voxel_that_contains_it(tmp_path):
    rows = [
        (5.0, 15.0, 25.0, "producer"),  # a voxel centre
        (0.0, 0.0, 0.0, "treg"),  # the lattice's corner
        (10.0, 20.0, 30.0, "naive"),  # on faces of all three axes: the upper voxel owns a face
        (79.999, 59.999, 39.999, "naive"),  # just inside the far corner
        (19.9999, 20.0001, 0.5, "treg"),  # either side of a face
        (41.25, 33.3, 17.0, "producer"),
    ]
    pop = read_csv(write_csv(tmp_path / "cells.csv", rows), CSV_GRID, NAMES)
    assert pop.voxel.tolist() == [[0, 1, 2], [0, 0, 0], [1, 2, 3], [7, 5, 3], [1, 2, 0], [4, 3, 1]]
    # positions are kept as given (not snapped to voxel centres), types by name, in file order
    np.testing.assert_allclose(pop.position_um, [r[:3] for r in rows])
    assert [NAMES[i] for i in pop.type_index] == [r[3] for r in rows]
    assert pop.type_names == NAMES


@pytest.mark.parametrize("spacing", ["10", "2.5", "0.5", "7.5"])
def test_csv_points_on_every_voxel_face_go_to_the_upper_voxel(tmp_path, spacing):
    """A row of cells at x = i h for every i (face of voxels i-1 and i): voxel i each time."""
    n = 12
    grid = Grid((n, 2, 1), float(spacing))
    rows = [(str(Decimal(spacing) * i), str(Decimal(spacing) * (i % 2)), 0, "treg") for i in range(n)]
    pop = read_csv(write_csv(tmp_path / "faces.csv", rows), grid, NAMES)
    assert pop.voxel.tolist() == [[i, i % 2, 0] for i in range(n)]


@pytest.mark.parametrize("spacing, n", [("2.2", 16), ("1.1", 16), ("2.6", 16)])
def test_csv_faces_with_spacings_that_are_not_binary_fractions(tmp_path, spacing, n):
    """The same with spacings such as 2.2 um: a cell written at x = 3 h (6.6 um) sits on the
    face of voxels 2 and 3 and belongs to voxel 3, as the contract's [i h, (i+1) h) says."""
    grid = Grid((n, 1, 1), float(spacing))
    rows = [(str(Decimal(spacing) * i), 0, 0, "treg") for i in range(n)]
    pop = read_csv(write_csv(tmp_path / "faces.csv", rows), grid, NAMES)
    assert pop.voxel[:, 0].tolist() == list(range(n))


def test_csv_is_the_whole_population_through_the_config(tmp_path):
    rows = [(15.0, 25.0, 5.0, "il2_producer"), (55.0, 5.0, 35.0, "treg"), (45.0, 45.0, 25.0, "treg")]
    path = write_csv(tmp_path / "cells.csv", rows)
    s = parse(compose_config("grid.shape=[8,6,4]", f"cells.csv={path}"))
    pop = Scenario.build(s).population
    assert len(pop) == 3  # the densities of the config are ignored
    assert pop.count("il2_producer") == 1 and pop.count("treg") == 2 and pop.count("naive_t") == 0
    assert pop.voxel.tolist() == [[1, 2, 0], [5, 0, 3], [4, 4, 2]]


def test_csv_header_may_have_spaces_and_any_column_order(tmp_path):
    path = tmp_path / "cells.csv"
    path.write_text("type, z, y, x\ntreg, 5, 15, 25\n naive , 35, 45, 55\n")
    pop = read_csv(path, CSV_GRID, NAMES)
    assert pop.voxel.tolist() == [[2, 1, 0], [5, 4, 3]]
    assert [NAMES[i] for i in pop.type_index] == ["treg", "naive"]


def test_csv_unknown_type_lists_the_allowed_types(tmp_path):
    path = write_csv(tmp_path / "cells.csv", [(5, 5, 5, "treg"), (15, 5, 5, "bcell")])
    with pytest.raises(PlacementError) as info:
        read_csv(path, CSV_GRID, NAMES)
    message = str(info.value)
    assert "line 3" in message and "'bcell'" in message
    assert all(name in message for name in NAMES)


@pytest.mark.parametrize("point", [
    (80.0, 5.0, 5.0),  # on the far x face: outside [0, 80)
    (5.0, 60.0, 5.0),
    (5.0, 5.0, 40.0),
    (-0.001, 5.0, 5.0),
    (5.0, -10.0, 5.0),
    (5.0, 5.0, 1e6),
])
def test_csv_cell_outside_the_lattice(tmp_path, point):
    path = write_csv(tmp_path / "cells.csv", [(5, 15, 5, "treg"), (*point, "naive")])
    with pytest.raises(PlacementError) as info:
        read_csv(path, CSV_GRID, NAMES)
    message = str(info.value)
    assert "line 3" in message and "outside the lattice" in message
    assert all(str(v) in message for v in point)  # the position as written in the file
    assert "80" in message and "60" in message and "40" in message  # the lattice's extent


@pytest.mark.parametrize("spacing, n, x", [("2.1", 3, "6.3"), ("1.3", 3, "3.9"), ("2.2", 7, "15.4")])
def test_csv_cell_on_the_far_face_is_outside_whatever_the_spacing(tmp_path, spacing, n, x):
    """x = n h written in decimal lies on the lattice's far face, which is outside [0, n h): a
    PlacementError like any other position outside, never an indexing error."""
    grid = Grid((n, 1, 1), float(spacing))
    path = write_csv(tmp_path / "cells.csv", [(0.5, 0.5, 0.5, "treg"), (x, 0.5, 0.5, "naive")])
    with pytest.raises(PlacementError) as info:
        read_csv(path, grid, NAMES)
    assert "line 3" in str(info.value) and x in str(info.value)


def test_csv_two_cells_in_one_voxel_names_the_lines(tmp_path):
    rows = [(5, 5, 5, "treg"), (25, 5, 5, "naive"), (35, 15, 25, "treg"), (21, 9.5, 0.1, "producer")]
    path = write_csv(tmp_path / "cells.csv", rows)
    with pytest.raises(PlacementError) as info:
        read_csv(path, CSV_GRID, NAMES)
    message = str(info.value)
    # rows 2 and 4 of the data are file lines 3 and 5; they share voxel (2, 0, 0)
    assert "3" in message and "5" in message and "lines" in message
    assert "[3, 5]" in message and "(2, 0, 0)" in message
    assert "one cell per voxel" in message


@pytest.mark.parametrize("header", ["x,y,type", "x,y,z,kind", "x,y,z,type,extra", "X,Y,Z,Type", "", "1,2,3,treg"])
def test_csv_bad_header(tmp_path, header):
    path = tmp_path / "cells.csv"
    path.write_text(header + "\n5,5,5,treg\n" if header else "")
    with pytest.raises(PlacementError) as info:
        read_csv(path, CSV_GRID, NAMES)
    message = str(info.value)
    assert "header" in message and "x,y,z,type" in message and str(path) in message


def test_csv_position_not_a_number(tmp_path):
    path = write_csv(tmp_path / "cells.csv", [(5, 5, 5, "treg"), (15, "five", 5, "treg")])
    with pytest.raises(PlacementError) as info:
        read_csv(path, CSV_GRID, NAMES)
    assert "line 3" in str(info.value) and "five" in str(info.value)


@pytest.mark.parametrize("bad_line", ["15,5,5", "15,5,5,treg,extra"], ids=["field-missing", "field-extra"])
def test_csv_row_with_the_wrong_number_of_fields(tmp_path, bad_line):
    path = tmp_path / "cells.csv"
    path.write_text(f"x,y,z,type\n5,5,5,treg\n{bad_line}\n")
    with pytest.raises(PlacementError) as info:
        read_csv(path, CSV_GRID, NAMES)
    assert "line 3" in str(info.value)


def test_csv_missing_file(tmp_path):
    with pytest.raises(PlacementError) as info:
        read_csv(tmp_path / "nope.csv", CSV_GRID, NAMES)
    assert "cells.csv" in str(info.value) and "nope.csv" in str(info.value)
