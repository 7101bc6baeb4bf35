"""Cell types, the placed population, and the per-cell tables the field equation takes.

Each cell sits in one voxel. A cell is a sphere of its type's radius a (radius_um): with the
sub-grid closure (subgrid.py, the default) a voxel of edge h may hold several cells, each its
own sink on its own stencil, as long as they fit (:func:`cells_per_voxel`):

    one cell of any radius (the closure itself needs h >= 4 pi G(1,0,0) a = 1.08 a), or
    several, each with a <= h/2, whose sphere volumes add up to at most h^3.

With point sinks (physics.cell_radius = null, the one-voxel case of coupling.py) a voxel holds at
most one cell where they are placed. A cell type also
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

Where the cells sit, and their receptor draws, is placement.py.

IL-2 lives in the interstitial space, a fraction alpha (physics.volume_fraction) of each voxel of
volume V = h^3, and concentrations are per interstitial volume; so a cell's rate of q molecules/s
changes its voxel's concentration by q / (6.022e-4 alpha V) pM/s, and the diffusion coefficient
of the lattice equation is the effective D / lambda^2 (lambda the tortuosity; Nicholson & Sykova
1998). :func:`field_coefficients` applies both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from ..physics import receptors
from . import coupling as coupling_mod
from ..physics.grid import Grid
from ..physics.kinetics import FieldCoefficients
from ..physics.receptors import KM_HIGH_AFFINITY_PM, KM_INTERMEDIATE_PM


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

    def classes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(V_high, K_high, V_int, K_int): the two classes' laws, as coupling.coefficient_fields takes them."""
        return self.vmax_high_molecules_per_s, self.km_high_pM, self.vmax_intermediate_molecules_per_s, self.km_intermediate_pM

    def collapsed(self) -> tuple[np.ndarray, np.ndarray]:
        """One law per cell (V molecules/s, K_M pM) for both classes (receptors.collapsed_law)."""
        return tuple(np.asarray(a, np.float64) for a in receptors.collapsed_law(*self.classes()))


def uptake_laws(population: Population, types: dict[str, CellType], il2ra=None) -> UptakeLaws:
    """The cells' uptake laws from their chains (receptors.receptor_classes); il2ra: each cell's
    current IL-2Ra where it changes (solver.kind=coupled), else its own drawn or mean number."""
    table = type_table(types, population.type_names)
    t = population.type_index
    ra = population.receptors_per_cell(types) if il2ra is None else np.asarray(il2ra, np.float64)
    high, intermediate = (np.asarray(a, np.float64) for a in receptors.receptor_classes(
        ra, population.receptors_per_cell(types, "il2rb"), population.receptors_per_cell(types, "gc")))
    k_int = table["k_int_per_s"][t]
    return UptakeLaws(high, intermediate, k_int * high, table["km_pM"][t], k_int * intermediate, table["km_intermediate_pM"][t])


def collapsed_uptake(population: Population, types: dict[str, CellType], il2ra=None) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's single uptake law (V molecules/s, K_M pM) as the sub-grid closure uses it
    (UptakeLaws.collapsed)."""
    return uptake_laws(population, types, il2ra).collapsed()


def secretion_per_cell(population: Population, types: dict[str, CellType], secretion_course=None, contact_handed=None) -> np.ndarray:
    """(n,) molecules/s: each cell's secretion into the field, q_i f_i(t) less what it hands over in
    contacts; secretion_course f_i(t), contact_handed: a coupled or tissue run's state at the
    moment (dynamics.secretion_course, contact.py), else None (constant q_i)."""
    q = type_table(types, population.type_names)["secretion_molecules_per_s"][population.type_index]
    if secretion_course is not None:
        q = q * np.asarray(secretion_course, np.float64)
    if contact_handed is not None:
        q = q - np.asarray(contact_handed, np.float64)
    return q


def interstitial_volume_um3(grid: Grid, volume_fraction: float = 1.0) -> float:
    """alpha V: the interstitial volume of one voxel (um^3), where IL-2 lives."""
    return grid.voxel_volume_um3 * volume_fraction


# the coefficient fields no cell contributes to: no intermediate class of its own, no own capture
EMPTY_FIELDS = dict(vmax_intermediate_pM_per_s=0.0, km_intermediate_pM=1.0, vmax_own_pM_per_s=0.0, km_own_pM=1.0, own_offset_pM=0.0)


def field_coefficients(
    grid: Grid,
    population: Population,
    types: dict[str, CellType],
    diffusion_um2_per_s: float,
    decay_per_s: float,
    face_values_pM,
    coupling,
    dtype,
    *,
    tortuosity: float = 1.0,
) -> FieldCoefficients:
    """The cells' parameters as voxel fields (kinetics.FieldCoefficients), spread over their
    stencils by `coupling` (coupling.CellCoupling, :func:`coupling_of`; coupling.coefficient_fields).

    With alpha = coupling.volume_fraction and lambda = tortuosity, concentrations are per
    interstitial volume alpha V (V = h^3), so

        D_eff = D / lambda^2                          um^2/s
        s     = q / (6.022e-4 alpha V)                pM/s, secretion of the voxel's cells
        v_max = k_int R / (6.022e-4 alpha V)          pM/s, R the cells' receptors (of a class, point sinks)

    and decay acts on c as it is. alpha = lambda = 1 is free medium filling the voxel. Point sinks
    give the intermediate-affinity class fields of its own only if some cell has such receptors
    (else scalars 0 and 1, which cost nothing); the sub-grid closure collapses the two classes into
    one law (UptakeLaws.collapsed) and adds, where cells sit on one voxel each, the secreting
    ones' own capture (kinetics.own_capture_rate).
    """
    table = type_table(types, population.type_names)
    laws = uptake_laws(population, types)
    as_law = lambda a: jnp.asarray(a, coupling.radius_um.dtype)  # noqa: E731
    fields = coupling_mod.coefficient_fields_jit(coupling, tuple(as_law(a) for a in laws.classes()),
                                                 as_law(table["secretion_molecules_per_s"][population.type_index]),
                                                 intermediate=bool(np.any(laws.intermediate > 0)))
    as_array = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    return FieldCoefficients(
        diffusion_um2_per_s=as_array(diffusion_um2_per_s / tortuosity**2),
        decay_per_s=as_array(decay_per_s),
        face_values_pM=as_array(face_values_pM),
        exchange_per_s=as_array(0.0),  # vessels.py sets them; in the run's dtype so batches stack alike
        exchange_target_pM=as_array(0.0),
        uptake=coupling.uptake,
        **{name: as_array(f) for name, f in {**EMPTY_FIELDS, **fields}.items()},
    )


def coupling_of(grid: Grid, population: Population, types: dict[str, CellType], effective_diffusion_um2_per_s: float,
                volume_fraction: float, uptake: str, dtype, closure: bool = True):
    """The cells' coupling.CellCoupling: with the sub-grid closure each cell a sphere of its type's
    radius, the closure's D = alpha D_eff (:func:`closure_diffusion_um2_per_s`); else point sinks."""
    return coupling_mod.build(population.voxel, grid.shape, grid.spacing_um, cell_radii_um(population, types) if closure else None,
                              closure_diffusion_um2_per_s(effective_diffusion_um2_per_s, volume_fraction),
                              volume_fraction, uptake, dtype, periodic_axes(grid))


def closure_diffusion_um2_per_s(effective_diffusion_um2_per_s, volume_fraction: float) -> float:
    """alpha D_eff: the diffusion coefficient of the free-medium problem the sub-grid closure
    solves (a sphere in tissue takes up at most 4 pi alpha D_eff a c, c per interstitial volume)."""
    return float(effective_diffusion_um2_per_s) * volume_fraction


def periodic_axes(grid: Grid) -> tuple[bool, bool, bool]:
    """Whether each axis wraps (its faces' Boundary.wraps): cells and stencils crossing a face re-enter opposite."""
    return tuple(lo.wraps for lo in grid.faces[0::2])
