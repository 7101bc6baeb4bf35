"""Several spherical cells per voxel (issue 12, item 5) and the cell radius as bad input.

With the sub-grid closure (the default, physics.cell_radius=per_type) each cell is its own sink
on its own stencil, so a voxel of edge h may hold several cells while they fit it: each radius
a <= h/2 and their sphere volumes 4/3 pi a^3 add up to <= h^3 (one cell of any radius fits any
voxel the closure accepts, h >= 4 pi G(1,0,0) a). Point sinks (physics.cell_radius=null) keep one
cell per voxel. The comparison of one tissue at 10 and 20 um is in test_coarsening below.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from compose import compose_config

from il2rd import cells
from il2rd.cells.placement import PlacementError, Region, place_random, read_csv
from il2rd.config import ConfigError, parse
from il2rd.physics.grid import Grid

NAMES = ("small", "big")


def _per_voxel(pop, grid):
    flat = np.ravel_multi_index(pop.voxel.T, grid.shape)
    return flat, np.bincount(flat, minlength=grid.n_voxels)


def test_capacity_follows_the_sphere_volumes():
    assert cells.cells_per_voxel(10.0, 5.0) == 1  # two 5 um spheres (1047 um^3) exceed a 10 um voxel
    assert cells.cells_per_voxel(20.0, 5.0) == math.floor(8000 / (4 / 3 * math.pi * 125))  # 15
    assert cells.cells_per_voxel(10.0, 3.0) == 8
    assert cells.cells_per_voxel(20.0, 11.0) == 1  # a > h/2: alone
    assert cells.cells_per_voxel(20.0, None) == 1  # point sinks


def test_random_placement_fills_voxels_up_to_their_volume():
    grid = Grid((4, 4, 4), 20.0)
    radius = {"small": 5.0, "big": 11.0}
    pop = place_random(grid, [("big", 10, Region()), ("small", 700, Region())], NAMES, seed=3, radius_um=radius)
    assert len(pop) == 710 and pop.count("big") == 10
    flat, count = _per_voxel(pop, grid)
    volume = np.bincount(flat, weights=cells.sphere_volume_um3(np.where(pop.type_index == 1, 11.0, 5.0)), minlength=grid.n_voxels)
    big_voxels = flat[pop.type_index == 1]
    assert np.all(count[big_voxels] == 1)  # a > h/2 shares with no one
    shared = count > 1
    assert np.any(count > 10) and np.all(volume[shared] <= grid.voxel_volume_um3 * (1 + 1e-12))
    # the same seed gives the same tissue; another seed another one
    again = place_random(grid, [("big", 10, Region()), ("small", 700, Region())], NAMES, seed=3, radius_um=radius)
    assert np.array_equal(again.voxel, pop.voxel)
    # 54 voxels of 15 small cells are 810; 811 do not fit
    with pytest.raises(PlacementError) as info:
        place_random(grid, [("big", 10, Region()), ("small", 811, Region())], NAMES, seed=3, radius_um=radius)
    assert "cell_types.small" in str(info.value) and "811" in str(info.value) and "sphere volumes" in str(info.value)


def test_one_cell_per_voxel_where_two_do_not_fit_is_the_old_placement():
    """At 10 um with 5 um cells no voxel can take two: the placement is the one-per-voxel draw."""
    grid = Grid((8, 8, 8), 10.0)
    requests = [("small", 50, Region()), ("big", 300, Region())]
    plain = place_random(grid, requests, NAMES, seed=7)
    spheres = place_random(grid, requests, NAMES, seed=7, radius_um={"small": 5.0, "big": 6.0})
    assert np.array_equal(plain.voxel, spheres.voxel) and np.array_equal(plain.type_index, spheres.type_index)


def _csv(tmp_path, rows):
    path = tmp_path / "cells.csv"
    path.write_text("x,y,z,type\n" + "".join(f"{x},{y},{z},{t}\n" for x, y, z, t in rows))
    return path


def test_csv_cells_share_a_voxel_only_if_they_fit(tmp_path):
    grid = Grid((4, 4, 4), 20.0)
    two = _csv(tmp_path, [(5, 5, 5, "small"), (15, 15, 15, "small"), (45, 5, 5, "big")])
    pop = read_csv(two, grid, NAMES, {"small": 5.0, "big": 11.0})
    assert len(pop) == 3 and np.array_equal(pop.voxel[0], pop.voxel[1])
    with pytest.raises(PlacementError) as info:  # point sinks: one per voxel
        read_csv(two, grid, NAMES)
    assert "lines [2, 3]" in str(info.value) and "one cell per voxel" in str(info.value)
    crowded = _csv(tmp_path, [(1 + i, 5, 5, "small") for i in range(16)])  # 16 x 524 um^3 > 8000 um^3
    with pytest.raises(PlacementError) as info:
        read_csv(crowded, grid, NAMES, {"small": 5.0, "big": 11.0})
    assert "16 cells in voxel (0, 0, 0)" in str(info.value) and "8000 um^3" in str(info.value)
    big_pair = _csv(tmp_path, [(5, 5, 5, "big"), (15, 15, 15, "small")])  # a = 11 > h/2 = 10
    with pytest.raises(PlacementError) as info:
        read_csv(big_pair, grid, NAMES, {"small": 5.0, "big": 11.0})
    assert "radii [11.0, 5.0]" in str(info.value) and "h/2 = 10 um" in str(info.value)


def test_default_t_zone_at_20_um_is_accepted_and_point_sinks_are_refused():
    """The refusal of issue 12 ('4.72 cells per voxel') is gone with the closure; it stays,
    naming the key and value, for point sinks."""
    settings = parse(compose_config("grid.shape=[8,8,8]", "grid.spacing=20"))
    assert settings.problem.subgrid_uptake and settings.problem.types["naive_t"].radius_um == 5.0
    with pytest.raises(ConfigError) as info:
        parse(compose_config("grid.shape=[8,8,8]", "grid.spacing=20", "physics.cell_radius=null"))
    assert info.value.key == "cell_types.naive_t.density" and "4.72 cells per voxel" in str(info.value)
    assert "point sink" in str(info.value)


@pytest.mark.parametrize("overrides, key, value, words", [
    (["grid.spacing=20", "cell_types.naive_t.density=2e6"], "cell_types.naive_t.density", 2e6, ["16 cells per voxel", "15 cells of radius 5"]),
    (["+cell_types.treg.radius=-1"], "cell_types.treg.radius", -1, ["> 0"]),
    (["+cell_types.treg.radius=12"], "cell_types.treg.radius", 12.0, ["at least 13 um", "grid.spacing is 10 um", "physics.cell_radius=null"]),
    (["physics.cell_radius=12"], "physics.cell_radius", 12.0, ["at least 13 um", "point sinks"]),
    (["physics.cell_radius=big"], "physics.cell_radius", "big", ["per_type", "null"]),
    (["grid.shape=[8,8,1]", "physics.cell_radius=5"], "physics.cell_radius", 5, ["3-D"]),
])
def test_radii_that_do_not_fit_are_refused_naming_key_and_value(overrides, key, value, words):
    with pytest.raises(ConfigError) as info:
        parse(compose_config("grid.shape=[8,8,8]", *overrides))
    assert info.value.key == key and info.value.value == value
    assert all(w in str(info.value) for w in words), str(info.value)


def test_an_override_radius_applies_to_every_type_and_2d_falls_back_to_point_sinks():
    s = parse(compose_config("grid.shape=[8,8,8]", "physics.cell_radius=4", "+cell_types.treg.radius=7"))
    assert {t.radius_um for t in s.problem.types.values()} == {4.0} and s.problem.subgrid_uptake
    s = parse(compose_config("grid.shape=[8,8,8]", "+cell_types.treg.radius=7"))
    assert s.problem.types["treg"].radius_um == 7.0 and s.problem.types["naive_t"].radius_um == 5.0
    flat = parse(compose_config("grid.shape=[8,8,1]"))  # per_type on a 2-D lattice: point sinks (documented)
    assert not flat.problem.subgrid_uptake
    assert not parse(compose_config("grid.shape=[8,8,8]", "physics.cell_radius=null")).problem.subgrid_uptake
