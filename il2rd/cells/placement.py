"""Placement: where each cell sits on the lattice, and the receptor numbers it is drawn.

Placement is uniform at random over free voxels of a region (whole lattice, a box, a sphere or a
lymph-node compartment of anatomy.py, seeded), or every cell from a CSV file with header
x,y,z,type (um; type by name) and optionally a receptors column, IL-2Ra per cell (without it,
CSV cells get their type's means: the spread below applies to random placement).

Receptor numbers vary between cells roughly log-normally (../shared/science.md); with mean m and
coefficient of variation v a cell's number of each chain is

    R = m exp(sigma Z - sigma^2 / 2),   sigma^2 = ln(1 + v^2),   Z ~ N(0, 1)

so that E[R] = m and sd(R)/E[R] = v exactly (:func:`draw_receptors`: one Z per cell and chain,
the chains independent, seeded separately from the placement so that a spread never moves a cell).

A voxel holds as many cells as fit (cells.cells_per_voxel); a request that cannot be honoured is a
PlacementError naming the key, the value and what is allowed.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..physics import anatomy
from ..physics.anatomy import NodeAnatomy
from . import CellType, Population, shares_voxels, sphere_volume_um3, type_table
from ..physics.grid import Grid


class PlacementError(ValueError):
    """A placement that cannot be honoured (names the key, the value and what is allowed)."""


@dataclass(frozen=True)
class Region:
    """Where a type's cells may sit: 'lattice', 'box' (lo_um, hi_um corners), 'sphere'
    (centre_um, radius_um), or a lymph-node compartment (anatomy.COMPARTMENTS: 'node', 'capsule',
    'follicle', 'medulla', 't_zone', 'interfollicular') of the NodeAnatomy `anatomy`. A voxel
    belongs to the region when its centre does."""

    kind: str = "lattice"
    lo_um: tuple[float, float, float] | None = None
    hi_um: tuple[float, float, float] | None = None
    centre_um: tuple[float, float, float] | None = None
    radius_um: float | None = None
    anatomy: NodeAnatomy | None = None

    def _inside(self, x, y, z):
        """Membership of points with coordinates x, y, z (um; any broadcastable shapes)."""
        if self.kind in anatomy.COMPARTMENTS:
            return self.anatomy.contains(self.kind, x, y, z)
        if self.kind == "box":
            (x0, y0, z0), (x1, y1, z1) = self.lo_um, self.hi_um
            return (x >= x0) & (x < x1) & (y >= y0) & (y < y1) & (z >= z0) & (z < z1)
        if self.kind == "sphere":
            cx, cy, cz = self.centre_um
            return (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= self.radius_um**2
        return np.ones(np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)), bool)

    def contains(self, xyz_um: np.ndarray) -> np.ndarray:
        """Whether points (..., 3) in um lie in the region."""
        xyz_um = np.asarray(xyz_um, np.float64)
        return self._inside(xyz_um[..., 0], xyz_um[..., 1], xyz_um[..., 2])

    def mask(self, grid: Grid) -> np.ndarray:
        """(nx, ny, nz) voxels whose centres lie in the region (built from the three 1-D axes,
        never from an (n_voxels, 3) array of centres)."""
        x, y, z = (grid.centres_um(a) for a in range(3))
        inside = self._inside(x[:, None, None], y[None, :, None], z[None, None, :])
        return np.broadcast_to(inside, grid.shape)

    def volume_um3(self, grid: Grid) -> float:
        """The region's volume as counted in voxels (what a density multiplies)."""
        return float(np.count_nonzero(self.mask(grid))) * grid.voxel_volume_um3


def voxel_centres_um(grid: Grid) -> np.ndarray:
    """(nx*ny*nz, 3) voxel centres in C order of the (nx, ny, nz) field."""
    axes = [grid.centres_um(a) for a in range(3)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def place_random(grid: Grid, requests: list[tuple[str, int, Region]], type_names: tuple[str, ...], seed: int,
                 radius_um: dict[str, float] | None = None) -> Population:
    """Place `count` cells of each (type, count, region) request uniformly at random on voxels of
    its region that have room for it, in the order given.

    radius_um: each type's sphere radius (um), with the sub-grid closure: a voxel takes cells
    while they fit (module docstring). None (point sinks), or no type that can share a voxel at
    this spacing: at most one cell per voxel, drawn without replacement among the free voxels."""
    if radius_um is None or not any(shares_voxels(grid.spacing_um, radius_um[n]) for n, c, _ in requests if c):
        return _place_one_per_voxel(grid, requests, type_names, seed)
    rng = np.random.default_rng(seed)
    volume = grid.voxel_volume_um3 * (1 + 1e-12)
    used_um3 = np.zeros(grid.n_voxels)  # sphere volume in each voxel; inf once a cell that cannot share sits there
    occupied = np.zeros(grid.n_voxels, bool)
    flat_chosen, type_of = [], []
    for name, count, region in requests:
        if count == 0:
            continue
        a = radius_um[name]
        v = float(sphere_volume_um3(a))
        shares = shares_voxels(grid.spacing_um, a)
        inside = region.mask(grid).ravel()
        remaining, chosen = count, []
        while remaining:
            room = np.floor((volume - used_um3) / v) if shares else np.zeros(grid.n_voxels)
            room = np.where(occupied, np.maximum(room, 0), np.maximum(room, 1)) * inside
            candidates = np.flatnonzero(room > 0)
            if len(candidates) == 0:
                _does_not_fit(name, count - remaining, count, region, f"cells of radius {a:g} um fill its voxels of "
                              f"{grid.spacing_um:g} um (sum of sphere volumes <= h^3)")
            # each cell draws a voxel uniformly among those with room; a voxel drawn more often than
            # it has room for keeps the first ones, the others draw again
            picks = rng.choice(candidates, size=remaining, replace=True)
            order = np.argsort(picks, kind="stable")
            sorted_picks = picks[order]
            first = np.searchsorted(sorted_picks, sorted_picks, side="left")
            rank = np.empty(remaining, np.int64)
            rank[order] = np.arange(remaining) - first
            accepted = picks[rank < room[picks]]
            np.add.at(used_um3, accepted, v if shares else np.inf)
            occupied[accepted] = True
            chosen.append(accepted)
            remaining -= len(accepted)
        flat_chosen.append(np.concatenate(chosen))
        type_of.append(np.full(count, type_names.index(name)))
    return _population(grid, flat_chosen, type_of, type_names)


def _place_one_per_voxel(grid: Grid, requests, type_names, seed) -> Population:
    """place_random with at most one cell per voxel."""
    rng = np.random.default_rng(seed)
    free = np.ones(grid.n_voxels, bool)
    flat_chosen, type_of = [], []
    for name, count, region in requests:
        if count == 0:
            continue
        candidates = np.flatnonzero(free & region.mask(grid).ravel())
        if count > len(candidates):
            _does_not_fit(name, len(candidates), count, region, "one cell per voxel")
        chosen = rng.choice(candidates, size=count, replace=False)
        free[chosen] = False
        flat_chosen.append(chosen)
        type_of.append(np.full(count, type_names.index(name)))
    return _population(grid, flat_chosen, type_of, type_names)


def _does_not_fit(name: str, placed: int, count: int, region: Region, rule: str):
    where = "the lattice" if region.kind == "lattice" else f"its {region.kind} region"
    if region.kind in anatomy.COMPARTMENTS:
        where += " of the lymph node"
    raise PlacementError(
        f"cell_types.{name}: {count} cells do not fit: {where} has room for {placed} more ({rule}); "
        f"lower its count/density or enlarge the region or lattice"
    )


def _population(grid: Grid, flat_chosen, type_of, type_names) -> Population:
    flat = np.concatenate(flat_chosen) if flat_chosen else np.zeros(0, np.int64)
    voxel = np.stack(np.unravel_index(flat, grid.shape), axis=-1).astype(np.int64).reshape(-1, 3)
    types = np.concatenate(type_of) if type_of else np.zeros(0, np.int64)
    return Population(voxel, (voxel + 0.5) * grid.spacing_um, types.astype(np.int32), type_names)


RECEPTOR_STREAM = 0x52454345  # spawn key of the receptor draw, independent of the placement stream


def lognormal_sigma(cv):
    """sigma of ln R for a log-normal R with coefficient of variation cv: sqrt(ln(1 + cv^2))."""
    return np.sqrt(np.log1p(np.square(cv)))


CHAINS = ("receptors", "il2rb", "gc")  # IL-2Ra, IL-2Rb, gc: the Population fields of each cell's chains


def draw_receptors(population: Population, types: dict[str, CellType], seed: int) -> Population:
    """The population with each cell's chains R = m exp(sigma Z - sigma^2/2) (module docstring),
    m and sigma from its type's chain mean and receptor_cv, Z seeded by `seed` on a stream per
    chain. Cells of a type with receptor_cv = 0 get m exactly (inf stays inf: not limiting);
    chains already set (a CSV column) are kept."""
    names = population.type_names
    t = population.type_index
    sigma = lognormal_sigma(np.array([types[n].receptor_cv for n in names], np.float64))[t]
    drawn = {}
    for k, chain in enumerate(CHAINS):
        if getattr(population, chain) is not None:
            continue
        mean = type_table(types, names)[chain][t]
        values = mean.copy()
        spread = (sigma > 0) & np.isfinite(mean)
        if np.any(spread):  # IL-2Ra on the stream it always had, so adding IL-2Rb never changes it
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(RECEPTOR_STREAM + k,)))
            z = rng.standard_normal(len(t))  # one per cell, so a cell's draw depends on its index only
            values[spread] = mean[spread] * np.exp(sigma[spread] * z[spread] - 0.5 * sigma[spread] ** 2)
        drawn[chain] = values
    return replace(population, **drawn)


def read_csv(path: str | Path, grid: Grid, type_names: tuple[str, ...], radius_um: dict[str, float] | None = None) -> Population:
    """Every cell from a CSV with header x,y,z,type (positions in um, columns in any order) and
    optionally a receptors column (receptors per cell; without it each cell has its type's mean).
    radius_um: each type's sphere radius with the sub-grid closure (cells sharing a voxel must fit
    it, module docstring); None: point sinks, at most one cell per voxel."""
    path = Path(path)
    if not path.is_file():
        raise PlacementError(f"cells.csv = {str(path)!r}: no such file")
    try:
        return _read_csv(path, grid, type_names, radius_um)
    except (UnicodeDecodeError, OSError) as err:
        raise PlacementError(f"cells.csv = {str(path)!r}: cannot be read as a text CSV ({err})") from err


def csv_number(text: str) -> float:
    """A CSV field as a number, as a spreadsheet would read it: Python's own literals such as
    `1_5` (15 to Python) are refused (ValueError), not read as another number."""
    if "_" in text:
        raise ValueError(f"{text!r} is not a number")
    return float(text)


def _read_csv(path: Path, grid: Grid, type_names: tuple[str, ...], radius_um) -> Population:
    positions, types, line_of, receptors = [], [], [], []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        if sorted(header) not in (["type", "x", "y", "z"], ["receptors", "type", "x", "y", "z"]):
            raise PlacementError(f"cells.csv = {str(path)!r}: header is {header}; expected x,y,z,type "
                                 f"(and optionally receptors)")
        column = {name: header.index(name) for name in header}
        n_fields = len(header)
        for fields in reader:
            line = reader.line_num
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != n_fields:
                raise PlacementError(f"cells.csv line {line}: {len(fields)} fields {fields}; expected {n_fields} "
                                     f"({','.join(header)})")
            row = {name: fields[i].strip() for name, i in column.items()}
            if row["type"] not in type_names:
                raise PlacementError(
                    f"cells.csv line {line}: type {row['type']!r} is not a configured cell type; "
                    f"allowed: {', '.join(type_names)}"
                )
            try:
                xyz = np.array([csv_number(row[k]) for k in "xyz"])
            except ValueError:
                raise PlacementError(f"cells.csv line {line}: position {row['x']},{row['y']},{row['z']} is not numeric")
            if not grid.contains(xyz):
                extent = grid.extent_um
                raise PlacementError(
                    f"cells.csv line {line}: position ({row['x']}, {row['y']}, {row['z']}) um is outside the lattice "
                    f"[0, {extent[0]:g}) x [0, {extent[1]:g}) x [0, {extent[2]:g}) um"
                )
            if "receptors" in row:
                try:
                    r = csv_number(row["receptors"])
                except ValueError:
                    r = math.nan
                if not (math.isfinite(r) and r >= 0):
                    raise PlacementError(f"cells.csv line {line}: receptors {row['receptors']!r} must be a finite "
                                         f"number >= 0 (receptors per cell)")
                receptors.append(r)
            positions.append(xyz)
            types.append(type_names.index(row["type"]))
            line_of.append(line)
    if not positions:
        raise PlacementError(f"cells.csv = {str(path)!r}: holds no cells (a header and no rows): an empty tissue")
    position = np.asarray(positions, np.float64).reshape(-1, 3)
    voxel = grid.voxel_of(position)
    flat = np.ravel_multi_index(voxel.T, grid.shape) if len(voxel) else np.zeros(0, np.int64)
    types = np.asarray(types, np.int64)
    crowded = _overfilled_voxel(flat, types, grid.spacing_um, type_names, radius_um)
    if crowded is not None:
        rows = np.flatnonzero(flat == crowded)
        where = f"cells.csv lines {[line_of[i] for i in rows]}: {len(rows)} cells in voxel {tuple(int(v) for v in voxel[rows[0]])}"
        if radius_um is None:
            raise PlacementError(f"{where}; at most one cell per voxel with point sinks (physics.cell_radius = null, "
                                 f"spacing {grid.spacing_um:g} um)")
        radii = [radius_um[type_names[t]] for t in types[rows]]
        raise PlacementError(
            f"{where} do not fit it: radii {radii} um, sphere volumes {float(np.sum(sphere_volume_um3(radii))):.4g} um^3 "
            f"for a voxel of {grid.voxel_volume_um3:.4g} um^3; cells share a voxel only if each radius is <= h/2 = "
            f"{grid.spacing_um / 2:g} um and their sphere volumes add up to <= h^3 (move a cell or refine the lattice)")
    return Population(voxel, position, types.astype(np.int32), type_names,
                      np.asarray(receptors, np.float64) if "receptors" in column else None)


def _overfilled_voxel(flat: np.ndarray, type_index: np.ndarray, spacing_um: float, type_names, radius_um):
    """The first flat voxel index whose cells do not fit it (module docstring), or None.
    radius_um None: point sinks, any voxel with two cells."""
    if len(flat) == 0:
        return None
    unique, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    shared = counts[inverse] > 1
    if radius_um is None:
        bad = shared
    else:
        a = np.array([radius_um[n] for n in type_names], np.float64)[type_index]
        volume = np.bincount(inverse, weights=sphere_volume_um3(a))[inverse]
        bad = shared & ((a > 0.5 * spacing_um) | (volume > spacing_um**3 * (1 + 1e-12)))
    return int(flat[np.flatnonzero(bad)[0]]) if np.any(bad) else None
