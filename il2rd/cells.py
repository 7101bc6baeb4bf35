"""Cell types, their placement on the lattice, and the per-cell table.

Each cell sits in one voxel. A cell is a sphere of its type's radius a (radius_um): with the
sub-grid closure (subgrid.py, the default) a voxel of edge h may hold several cells, each its
own sink on its own stencil, as long as they fit (:func:`cells_per_voxel`):

    one cell of any radius (the closure itself needs h >= 4 pi G(1,0,0) a = 1.08 a), or
    several, each with a <= h/2, whose sphere volumes add up to at most h^3.

With point sinks (physics.cell_radius = null) a voxel holds at most one cell. A cell type also
carries the parameters of the field equation (kinetics.py):

    secretion_molecules_per_s   q, IL-2 released by one cell
    receptors                   IL-2Ra (CD25) per cell, mean
    il2rb, gc                   IL-2Rb and gc per cell, means (inf: not limiting, the default)
    receptor_cv                 coefficient of variation of each chain between cells (0: none)
    km_pM                       K_M of the high-affinity (IL-2Ra/b/gc) receptors
    km_intermediate_pM          K_M of the intermediate-affinity (IL-2Rb/gc) receptors
    k_int_per_s                 k_int, internalisation rate of bound receptors

The chains make R_high high-affinity and R_int intermediate-affinity receptors per cell
(receptors.receptor_classes), so a cell takes up (kinetics.py)

    U(c) = k_int (R_high c / (K_high + c) + R_int c / (K_int + c))            molecules/s

Placement is uniform at random over free voxels of a region (whole lattice, a box, a sphere or a
lymph-node compartment of anatomy.py, seeded), or every cell from a CSV file with header
x,y,z,type (um; type by name) and optionally a receptors column, IL-2Ra per cell (without it,
CSV cells get their type's means: the spread below applies to random placement).

Receptor numbers vary between cells roughly log-normally (../shared/science.md); with mean m and
coefficient of variation v a cell's number of each chain is

    R = m exp(sigma Z - sigma^2 / 2),   sigma^2 = ln(1 + v^2),   Z ~ N(0, 1)

so that E[R] = m and sd(R)/E[R] = v exactly (:func:`draw_receptors`: one Z per cell and chain,
the chains independent, seeded separately from the placement so that a spread never moves a cell).

IL-2 lives in the interstitial space, a fraction alpha (physics.volume_fraction) of each voxel of
volume V = h^3, and concentrations are per interstitial volume; so a cell's rate of q molecules/s
changes its voxel's concentration by q / (6.022e-4 alpha V) pM/s, and the diffusion coefficient
of the lattice equation is the effective D / lambda^2 (lambda the tortuosity; Nicholson & Sykova
1998). :func:`field_coefficients` and :func:`seen_and_uptake` apply both.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from . import anatomy, kinetics, receptors, units
from . import coupling as coupling_mod
from .anatomy import NodeAnatomy
from .grid import Grid
from .kinetics import FieldCoefficients
from .receptors import KM_HIGH_AFFINITY_PM, KM_INTERMEDIATE_PM


class PlacementError(ValueError):
    """A placement that cannot be honoured (names the key, the value and what is allowed)."""


@dataclass(frozen=True)
class CellType:
    name: str
    secretion_molecules_per_s: float = 0.0
    receptors: float = 0.0  # IL-2Ra per cell
    km_pM: float = KM_HIGH_AFFINITY_PM
    il2rb: float = math.inf
    gc: float = math.inf
    km_intermediate_pM: float = KM_INTERMEDIATE_PM
    k_int_per_s: float = 1.1e-3
    receptor_cv: float = 0.0  # sd(R)/mean(R) between cells of the type, log-normal
    cd25_gain: float = 1.0  # solver.kind=coupled: receptors at full pSTAT5 / basal (dynamics.py)
    secretion_onset_s: float | None = None  # solver.kind=coupled: secretion time course; None = constant
    secretion_peak_s: float | None = None
    secretion_off_s: float | None = None
    radius_um: float = 5.0  # a, the cell's sphere radius (sub-grid closure, subgrid.py; placement capacity)
    speed_um_per_s: float = 0.0  # solver.kind=tissue: mean speed of the cell's walk (motility.py); 0: it stays
    motility_um2_per_s: float = 0.0  # solver.kind=tissue: motility coefficient M, MSD = 6 M t at long times
    division_per_s: float = 0.0  # fate.enabled: division rate at full IL-2 signal (fate.py)
    death_per_s: float = 0.0  # fate.enabled: death rate without IL-2 signal
    cycle_s: float = 8.0 * 3600.0  # fate.enabled: least time between two divisions of a cell
    contact_fraction: float = 0.0  # solver.kind=coupled|tissue: part of the secretion handed to a touching partner (contact.py)
    contact_partners: tuple[str, ...] | None = None  # the types that may receive it; None: every type


def sphere_volume_um3(radius_um):
    """4/3 pi a^3 (um^3)."""
    return 4.0 / 3.0 * math.pi * np.asarray(radius_um, np.float64) ** 3


def shares_voxels(spacing_um: float, radius_um: float) -> bool:
    """Whether a cell of radius a may share a voxel of edge h with others: a <= h/2 (so that its
    sphere fits between the voxel's faces) and two such cells fit by volume, 2 (4/3 pi a^3) <= h^3."""
    return radius_um <= 0.5 * spacing_um and 2.0 * float(sphere_volume_um3(radius_um)) <= spacing_um**3 * (1 + 1e-12)


def cells_per_voxel(spacing_um: float, radius_um: float | None) -> int:
    """How many cells of radius a fit one voxel of edge h: floor(h^3 / (4/3 pi a^3)) where they
    can share (:func:`shares_voxels`), else 1 (a single cell fits any voxel the closure accepts).
    radius None: point sinks, one per voxel."""
    if radius_um is None or not shares_voxels(spacing_um, radius_um):
        return 1
    return int(math.floor(spacing_um**3 * (1 + 1e-12) / float(sphere_volume_um3(radius_um))))


def cell_radii_um(population: "Population", types: dict[str, CellType]) -> np.ndarray:
    """(n,) each cell's sphere radius a (um), its type's radius_um."""
    return type_table(types, population.type_names)["radius_um"][population.type_index]


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


@dataclass(frozen=True)
class Population:
    """The per-cell table: voxel (n, 3) int, position_um (n, 3), type_index (n,), type_names,
    and each cell's chains receptors (IL-2Ra), il2rb, gc, each (n,) (None: every cell has its
    type's mean; :func:`draw_receptors` fills them)."""

    voxel: np.ndarray
    position_um: np.ndarray
    type_index: np.ndarray
    type_names: tuple[str, ...]
    receptors: np.ndarray | None = None
    il2rb: np.ndarray | None = None
    gc: np.ndarray | None = None

    def receptors_per_cell(self, types: dict[str, CellType], chain: str = "receptors") -> np.ndarray:
        """(n,) of each cell's chain ('receptors' = IL-2Ra, 'il2rb', 'gc'): its own number, or
        its type's mean when none was drawn."""
        own = getattr(self, chain)
        if own is not None:
            return np.asarray(own, np.float64)
        return type_table(types, self.type_names)[chain][self.type_index]

    def __len__(self) -> int:
        return len(self.type_index)

    def count(self, name: str) -> int:
        return int(np.count_nonzero(self.type_index == self.type_names.index(name)))


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


def type_table(types: dict[str, CellType], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per-type parameter columns in the order of `names`."""
    return {
        "secretion_molecules_per_s": np.array([types[n].secretion_molecules_per_s for n in names]),
        "receptors": np.array([types[n].receptors for n in names]),
        "il2rb": np.array([types[n].il2rb for n in names], np.float64),
        "gc": np.array([types[n].gc for n in names], np.float64),
        "km_pM": np.array([types[n].km_pM for n in names]),
        "km_intermediate_pM": np.array([types[n].km_intermediate_pM for n in names]),
        "k_int_per_s": np.array([types[n].k_int_per_s for n in names]),
        "radius_um": np.array([types[n].radius_um for n in names], np.float64),
    }


@dataclass(frozen=True)
class UptakeLaws:
    """Each cell's two receptor classes as uptake laws, (n,) arrays: high-affinity receptors
    `high` with maximum vmax_high = k_int R_high (molecules/s) and K_M km_high_pM, intermediate
    ones `intermediate` with vmax_intermediate and km_intermediate_pM."""

    high: np.ndarray
    intermediate: np.ndarray
    vmax_high_molecules_per_s: np.ndarray
    km_high_pM: np.ndarray
    vmax_intermediate_molecules_per_s: np.ndarray
    km_intermediate_pM: np.ndarray

    def collapsed(self) -> tuple[np.ndarray, np.ndarray]:
        """One Michaelis-Menten law per cell, (V molecules/s, K pM), with the same maximum and
        the same linear slope as the two classes: V = V_h + V_i, V/K = V_h/K_h + V_i/K_i (exact
        for c << K and c >> K, within the two curves in between; the sub-grid closure uses it).
        numpy, or jax.numpy for JAX arrays (the coupled step, dynamics.py)."""
        xp = receptors._xp(self.vmax_high_molecules_per_s, self.vmax_intermediate_molecules_per_s, self.km_high_pM)
        v = self.vmax_high_molecules_per_s + self.vmax_intermediate_molecules_per_s
        slope = self.vmax_high_molecules_per_s / self.km_high_pM + self.vmax_intermediate_molecules_per_s / self.km_intermediate_pM
        return v, xp.where(slope > 0, v / xp.where(slope > 0, slope, 1.0), self.km_high_pM)


def uptake_laws(population: Population, types: dict[str, CellType], il2ra=None) -> UptakeLaws:
    """The cells' uptake laws from their chains (receptors.receptor_classes); il2ra: each cell's
    current IL-2Ra where it changes (solver.kind=coupled), else its own drawn or mean number."""
    table = type_table(types, population.type_names)
    t = population.type_index
    ra = population.receptors_per_cell(types) if il2ra is None else np.asarray(il2ra, np.float64)
    high, intermediate = receptors.receptor_classes(ra, population.receptors_per_cell(types, "il2rb"),
                                                    population.receptors_per_cell(types, "gc"))
    k_int = table["k_int_per_s"][t]
    return UptakeLaws(high, intermediate, k_int * high, table["km_pM"][t], k_int * intermediate, table["km_intermediate_pM"][t])


def collapsed_uptake(population: Population, types: dict[str, CellType], il2ra=None) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's single uptake law (V molecules/s, K_M pM) as the sub-grid closure uses it
    (UptakeLaws.collapsed)."""
    return uptake_laws(population, types, il2ra).collapsed()


def interstitial_volume_um3(grid: Grid, volume_fraction: float = 1.0) -> float:
    """alpha V: the interstitial volume of one voxel (um^3), where IL-2 lives."""
    return grid.voxel_volume_um3 * volume_fraction


def field_coefficients(
    grid: Grid,
    population: Population,
    types: dict[str, CellType],
    diffusion_um2_per_s: float,
    decay_per_s: float,
    face_values_pM,
    uptake: str,
    dtype,
    *,
    volume_fraction: float = 1.0,
    tortuosity: float = 1.0,
    coupling=None,
) -> FieldCoefficients:
    """Scatter the cells' parameters onto voxel fields (kinetics.FieldCoefficients).

    With alpha = volume_fraction and lambda = tortuosity, concentrations are per interstitial
    volume alpha V (V = h^3), so

        D_eff = D / lambda^2                          um^2/s
        s     = q / (6.022e-4 alpha V)                pM/s, secretion of the voxel's cell
        v_max = k_int R / (6.022e-4 alpha V)          pM/s, R the cell's own receptors of a class

    and decay acts on c as it is. alpha = lambda = 1 is free medium filling the voxel. The
    intermediate-affinity class gets fields of its own only if some cell has such receptors
    (else scalars 0 and 1, which cost nothing).
    coupling: the cells' coupling.CellCoupling (:func:`coupling_of`): spread each cell over its
    sub-grid stencil (subgrid.py) instead, with its two classes collapsed into one law
    (UptakeLaws.collapsed), coupling.voxel_fields.
    """
    table = type_table(types, population.type_names)
    t = population.type_index
    volume = interstitial_volume_um3(grid, volume_fraction)
    laws = uptake_laws(population, types)
    secretion = np.zeros(grid.shape)
    vmax, km, vmax_int, km_int = np.zeros(grid.shape), np.ones(grid.shape), 0.0, 1.0
    index = tuple(population.voxel.T)
    if coupling is not None:
        as_law = lambda a: jnp.asarray(a, coupling.radius_um.dtype)  # noqa: E731
        secretion, vmax, km = coupling_mod.voxel_fields_jit(
            coupling, *(as_law(a) for a in laws.collapsed()), as_law(table["secretion_molecules_per_s"][t]))
    else:
        to_pM = lambda rate: units.cell_rate_to_voxel_rate_pM_per_s(rate, volume)  # noqa: E731
        secretion[index] = to_pM(table["secretion_molecules_per_s"][t])
        vmax[index] = to_pM(laws.vmax_high_molecules_per_s)
        km[index] = laws.km_high_pM
        if np.any(laws.intermediate > 0):
            vmax_int, km_int = np.zeros(grid.shape), np.ones(grid.shape)
            vmax_int[index] = to_pM(laws.vmax_intermediate_molecules_per_s)
            km_int[index] = laws.km_intermediate_pM
    as_array = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    return FieldCoefficients(
        diffusion_um2_per_s=as_array(diffusion_um2_per_s / tortuosity**2),
        decay_per_s=as_array(decay_per_s),
        secretion_pM_per_s=as_array(secretion),
        vmax_pM_per_s=as_array(vmax),
        km_pM=as_array(km),
        vmax_intermediate_pM_per_s=as_array(vmax_int),
        km_intermediate_pM=as_array(km_int),
        face_values_pM=as_array(face_values_pM),
        exchange_per_s=as_array(0.0),  # vessels.py sets them; in the run's dtype so batches stack alike
        exchange_target_pM=as_array(0.0),
        uptake=uptake,
    )


def coupling_of(grid: Grid, population: Population, types: dict[str, CellType], effective_diffusion_um2_per_s: float,
                volume_fraction: float, uptake: str, dtype):
    """The cells' coupling.CellCoupling for the sub-grid closure: each cell a sphere of its type's
    radius, the closure's D = alpha D_eff (:func:`closure_diffusion_um2_per_s`)."""
    return coupling_mod.build(population.voxel, grid.shape, grid.spacing_um, cell_radii_um(population, types),
                              closure_diffusion_um2_per_s(effective_diffusion_um2_per_s, volume_fraction),
                              volume_fraction, uptake, dtype, periodic_axes(grid))


def closure_diffusion_um2_per_s(effective_diffusion_um2_per_s, volume_fraction: float) -> float:
    """alpha D_eff: the diffusion coefficient of the free-medium problem the sub-grid closure
    solves (a sphere in tissue takes up at most 4 pi alpha D_eff a c, c per interstitial volume)."""
    return float(effective_diffusion_um2_per_s) * volume_fraction


def periodic_axes(grid: Grid) -> tuple[bool, bool, bool]:
    """Whether each axis wraps (its faces' Boundary.wraps): cells and stencils crossing a face re-enter opposite."""
    return tuple(lo.wraps for lo in grid.faces[0::2])


def seen_and_uptake(c, grid: Grid, population: Population, coef: FieldCoefficients, volume_fraction: float = 1.0):
    """IL-2 seen by each cell (pM, its voxel's interstitial concentration) and its uptake
    (molecules/s: the voxel's uptake rate in pM/s times 6.022e-4 alpha V), as numpy."""
    index = tuple(population.voxel.T)
    seen = np.maximum(np.asarray(c, np.float64)[index], 0.0)
    rate_pM_per_s = np.asarray(kinetics.uptake_rate(jnp.asarray(c), coef), np.float64)[index]
    return seen, units.voxel_rate_to_cell_rate_molecules_per_s(rate_pM_per_s, interstitial_volume_um3(grid, volume_fraction))
