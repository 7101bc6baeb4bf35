"""The config schema (Hydra structured config): every key, its default, its meaning and its unit.

Defaults here are the physics defaults of ../shared/science.md; where a domain object holds the
same quantity (cells.CellType, receptors.Signalling, dynamics.ReceptorFeedback, fate.FateSettings)
the default is written there and read here, in the key's unit. configs/config.yaml sets the
default lymph-node scenario on top. Each key's meaning and unit are written once, here, with
described(); `il2rd --describe` (describe.py) prints them, with the defaults of the composed
config, and overrides.py checks command-line keys against them. The values are checked and
turned into typed settings by config.py (with config/tissue.py and config/cell_types.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..physics import boundaries
from ..cells import CellType
from ..cells.dynamics import ReceptorFeedback
from ..cells.fate import HOUR_S, FateSettings
from ..physics.receptors import Signalling


def config_dir() -> Path:
    """The shipped configs: inside the installed package (wheel), else the repository's configs/."""
    packaged = Path(str(resources.files("il2rd"))) / "configs"
    if (packaged / "config.yaml").is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "configs"


PER_TYPE = "per_type"  # physics.cell_radius: each cell type's own radius (cell_types.<name>.radius)


def described(default: Any, help: str, unit: str = ""):
    """A schema field with its meaning (`help`) and `unit` ('' for a number without one, a name
    or a choice) in its metadata; lists and mappings get a default_factory of a copy."""
    metadata = {"help": help, "unit": unit}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)

def section(cls, help: str = ""):
    """A schema field holding a section (a nested dataclass), its meaning `help` or else the
    class docstring (whose first paragraph `il2rd --describe` prints)."""
    return field(default_factory=cls, metadata={"help": help or cls.__doc__ or ""})

@dataclass
class GridConfig:
    """The lattice: its voxels, their size and what holds at its six faces."""

    shape: List[int] = described([64, 64, 64], "voxels along x, y, z (nx, ny, nz); nz = 1 is a 2-D lattice (its z faces "
                                 "then zero flux)", "voxels")
    spacing: float = described(10.0, "voxel edge h (10 um: about one T cell per voxel)", "um")
    boundary: Any = described(boundaries.ZeroFlux.name, f"{' | '.join(boundaries.KINDS)} for all faces, or per face "
                              "{x_lo: fixed, ...}; unnamed faces zero flux, periodic needs both faces of an axis")
    boundary_value: Any = described(0.0, "IL-2 held on fixed faces (0: lymphatic drainage; or a serum level): a number, "
                                    "or per face {x_lo: value, ...}", "pM")

@dataclass
class PhysicsConfig:
    """IL-2 in the tissue: diffusion, decay, the interstitial space and how cells take it up."""

    diffusion: float = described(10.0, "D, IL-2's diffusion coefficient in tissue (~100 um^2/s in free solution: the value "
                                 "to give with physics.tortuosity)", "um^2/s")
    decay: float = described(2.8e-5, "k_d, bulk decay (2.8e-5 /s = 0.1 /h)", "1/s")
    uptake: str = described("saturating", "saturating: U = k_int R c / (K_M + c) | linear: U = k_int R c / K_M")
    volume_fraction: float = described(
        1.0, "alpha, the interstitial (extracellular) fraction of the tissue volume, where IL-2 lives; c is per "
        "interstitial volume. 1 = free medium; ~0.2 - 0.4 in packed tissue (brain 0.2; lymphoid tissue poorly "
        "measured; Nicholson & Sykova 1998)", "fraction, (0, 1]")
    tortuosity: float = described(
        1.0, "lambda >= 1: D_eff = D / lambda^2; 1 = none, ~1.6 in tissue (Nicholson & Sykova 1998); physics.diffusion is "
        "then the interstitial-fluid value (~100 um^2/s for IL-2)")
    cell_radius: Any = described(
        PER_TYPE, "a, the cells' sphere radius in the sub-grid closure (il2rd/physics/subgrid.py: uptake and secretion match a "
        "sphere of radius a at any voxel size): per_type = each type's own (cell_types.<name>.radius; point sinks on a "
        "2-D lattice, where the closure is not defined); a number = that radius for every type; null = each cell a point "
        "sink in its voxel", "um")

@dataclass
class SolverConfig:
    """How the field is solved: the kind of run, the tolerance and the solvers' budgets."""

    kind: str = described("steady", "steady (the quasi-steady field) | implicit | explicit (transient, from zero IL-2) | "
                          "coupled (receptor dynamics and secretion courses over hours, solver.dt the receptor step) | "
                          "tissue (coupled, with cells that walk: cell_types.<name>.speed, .motility; solver.dt ~60 s)")
    rtol: float = described(1e-6, "relative residual ||F(c)|| / ||F(0)|| each nonlinear solve must reach (float32 "
                            "reaches 1e-6 on the default problem)")
    dt: float = described(10.0, "time step of the transient solvers (solver.kind=coupled: the receptor step, e.g. "
                          "1800 s)", "s")
    max_iter: int = described(2000, "conjugate-gradient iterations per linear solve, at most", "iterations")
    max_newton: int = described(50, "Newton steps per nonlinear solve, at most", "steps")
    preconditioner: str = described("multigrid", "multigrid (a V-cycle: CG iterations that do not grow with the "
                                    "lattice) | mean_operator (the exact inverse of the mean operator)")
    initial_field: str = described("steady", "solver.kind=coupled: the field at t = 0, steady (the steady field of the "
                                   "basal receptors: tissue at rest before) | zero (no IL-2 yet)")

@dataclass
class TimeConfig:
    """Simulated time of the transient and coupled runs."""

    end: float = described(3600.0, "the simulated time the run ends at (transient and coupled runs)", "s")
    snapshot_every: float = described(600.0, "interval between stored snapshots (at 0, every, ..., end)", "s")

@dataclass
class CellsConfig:
    """The cells from a file instead of placed at random."""

    csv: Optional[str] = described(None, "a CSV with header x,y,z,type[,receptors] (positions in um, type a cell_types "
                                   "name): when set, the whole population (counts and densities unused)", "path")

@dataclass
class CellTypeConfig:
    """Defaults for every cell type; a type added with +cell_types.<name>.<key>=... gets these."""

    secretion: float = described(CellType.secretion_molecules_per_s, "q, IL-2 secreted per cell", "molecules/s")
    receptors: float = described(CellType.receptors, "IL-2Ra (CD25) per cell", "per cell")
    il2rb: Optional[float] = described(None, "IL-2Rb per cell; null = not limiting: every IL-2Ra forms a high-affinity "
                                       "receptor, and there are no intermediate-affinity ones", "per cell")
    gc: Optional[float] = described(None, "common gamma chain per cell; null = not limiting (needs il2rb)", "per cell")
    km: float = described(CellType.km_pM, "K_M of high-affinity uptake, (k_off + k_int) / k_on", "pM")
    km_intermediate: float = described(CellType.km_intermediate_pM, "K_M of the intermediate-affinity receptors (IL-2Rb/gc without IL-2Ra), "
                                       "K_D ~ 1 nM + k_int / k_on", "pM")
    k_int: float = described(CellType.k_int_per_s, "k_int, internalisation of bound receptors (Feinerman 2010)", "1/s")
    receptor_cv: float = described(CellType.receptor_cv, "coefficient of variation of each receptor chain between cells (log-normal around "
                                   "the type's mean, chains independent); 0 = every cell has the mean", "fraction")
    cd25_gain: float = described(CellType.cd25_gain, "solver.kind=coupled: IL-2Ra rises towards gain x basal under full pSTAT5 (1 = no "
                                 "feedback; ~10 for T cells, Busse 2010)", "x basal")
    secretion_course: Optional[List[float]] = described(
        None, "solver.kind=coupled: [onset, peak, off], secretion rising linearly from onset to peak and falling to 0 at "
        "off (Sojka 2008: [1, 7, 22]); null = constant", "h")
    count: Optional[int] = described(None, "cells of this type (give count or density)", "cells")
    density: Optional[float] = described(None, "cells per mm^3 of the type's region (1e6 = one per 10 um voxel), "
                                         "instead of count", "cells/mm^3")
    region: Optional[Dict[str, Any]] = described(
        None, "where the cells are placed; null = the whole lattice; {kind: box, lo: [x,y,z], hi: [x,y,z]} | {kind: "
        "sphere, center: [x,y,z], radius: r} (um) | {kind: node|capsule|follicle|medulla|t_zone|interfollicular} "
        "(lymph-node compartments, node.*)")
    radius: float = described(CellType.radius_um, "the cells' sphere radius: the sub-grid closure's sphere (physics.cell_radius="
                              "per_type), and how many cells share a voxel (each radius <= h/2, sphere volumes <= h^3)", "um")
    speed: float = described(0.0, "solver.kind=tissue: the mean speed of the cells' persistent random walk; 0 = they "
                             "stay (both speed and motility, or neither)", "um/min")
    motility: float = described(0.0, "solver.kind=tissue: the motility coefficient M of the walk (MSD = 6 M t at long "
                                "times); the persistence time is 8 M / (pi speed^2)", "um^2/min")
    division: float = described(0.0, "fate.enabled: the division rate at full IL-2 signal, b_max h(time-averaged "
                                "pSTAT5) (fate.py); 0 = the type does not divide", "1/day")
    death: float = described(0.0, "fate.enabled: the death rate without IL-2 signal, d_0 (1 - h(time-averaged pSTAT5))",
                             "1/day")
    cycle: float = described(CellType.cycle_s / HOUR_S, "fate.enabled: the least time between two divisions of a cell (its cell cycle)", "h")
    contact: float = described(CellType.contact_fraction, "solver.kind=coupled|tissue: the fraction of each cell's secretion handed directly to "
                               "a touching partner cell (in its voxel or a face neighbour; contact.py), the rest secreted "
                               "into the field; 0 = all into the field", "fraction")
    partners: Optional[List[str]] = described(None, "contact > 0: the cell types that may receive the handed IL-2 (a "
                                              "living cell with receptors); null = every type")

@dataclass
class FollicleConfig:
    """B-cell follicles: spheres just under the capsule on the cortical side (anatomy.py)."""

    count: int = described(8, "follicles in the node (a mouse node holds several to a dozen or so)", "follicles")
    radius: float = described(80.0, "follicle radius (follicles ~100 - 200 um across)", "um")
    spread: float = described(60.0, "the follicles' centres lie within this angle of the cortical pole", "degrees")
    seed: int = described(0, "seed of the follicle positions (separate from the cell-placement seed)")
    centers: Optional[Any] = described(None, "[[x, y, z], ...]: explicit follicle centres instead of seeded ones", "um")

@dataclass
class NodeConfig:
    """The lymph node (anatomy.py): an ellipsoid centred in the lattice, used by the region kinds
    node, capsule, follicle, medulla, t_zone and interfollicular."""

    semi_axes: Optional[List[float]] = described(None, "the node ellipsoid's semi-axes [ax, ay, az]; null: 0.45 x the "
                                                 "lattice extent per axis", "um")
    cortex_side: str = described("y_hi", "the lattice face the cortex (follicles) faces; the medulla (hilum) faces the "
                                 "opposite one")
    capsule_thickness: float = described(20.0, "the capsule compartment's shell: capsule (~5 um) and subcapsular sinus "
                                         "(~10 - 20 um)", "um")
    medulla_fraction: float = described(0.3, "the part of the node's length along the cortex axis, hilar side, that is "
                                        "medulla", "fraction")
    t_zone_depth: Optional[float] = described(None, "depth below the node's surface where the T zone begins; null: "
                                              "capsule + follicle radius", "um")
    follicles: FollicleConfig = section(FollicleConfig)

@dataclass
class SignallingConfig:
    """pSTAT5 = c^hill / (EC50(R)^hill + c^hill), EC50(R) = ec50_max k^N / (k^N + R^N) (receptors.py)."""

    ec50_max: float = described(Signalling.ec50_max_pM, "EC50 of a cell without receptors, the maximum of EC50(R)", "pM")
    ec50_k: float = described(Signalling.ec50_k_receptors, "k: the receptor number at which EC50(R) is half its maximum", "receptors")
    ec50_exponent: float = described(Signalling.ec50_exponent, "N, the steepness of EC50(R) in R")
    hill: float = described(Signalling.hill, "Hill exponent of pSTAT5 in c")
    pstat5_threshold: float = described(Signalling.positive_threshold, "pSTAT5 level counted as pSTAT5-positive (the pSTAT5+ fraction)", "0..1")
    reference_km: float = described(Signalling.reference_km_pM, "K_M of the receptors EC50(R) is calibrated on; a type with another K_M "
                                    "signals at equal receptor occupancy (at c x reference_km / K_M)", "pM")

@dataclass
class ReceptorDynamicsConfig:
    """solver.kind=coupled: dR/dt = eta R0 [1 + (gain - 1) p^hill/(half_pstat5^hill + p^hill)] - eta R (dynamics.py)."""

    turnover: float = described(ReceptorFeedback.turnover_per_s, "eta, receptor turnover (Thurley-lab models: 1/72000 s, 20 h)", "1/s")
    half_pstat5: float = described(ReceptorFeedback.half_pstat5, "pSTAT5 level of half-maximal receptor induction", "0..1")
    hill: float = described(ReceptorFeedback.hill, "Hill exponent of the induction in pSTAT5 (Busse 2010)")

@dataclass
class FateConfig:
    """solver.kind=tissue: pSTAT5-driven division and death (fate.py): per type, cell_types.<name>.division, .death, .cycle."""

    enabled: bool = described(FateSettings.enabled, "cells divide and die by their time-averaged pSTAT5 (needs solver.kind=tissue)")
    capacity: float = described(FateSettings.capacity, "cell slots per placed cell of a type that divides: a type grows at most this "
                                "fold; daughters beyond it wait", "x placed")
    averaging: float = described(FateSettings.averaging_s / HOUR_S, "tau_f, the time over which a cell averages its pSTAT5 (commitment to divide "
                                 "after hours of IL-2 signalling, Cantrell & Smith 1984; an estimate)", "h")
    half_pstat5: float = described(FateSettings.half_pstat5, "the time-averaged pSTAT5 of half the maximal division rate and half the death "
                                   "rate", "0..1")
    hill: float = described(FateSettings.hill, "Hill exponent of the fate response in the time-averaged pSTAT5 (an estimate)")

@dataclass
class VesselsConfig:
    """Exchange with blood (HEVs in the T zone, capillaries in the whole node) and lymph (capsule and
    medulla sinuses draining, afferent lymph arriving in the capsule's sinus): vessels.py."""

    blood_il2: float = described(0.0, "plasma IL-2 (therapy), the level HEVs and capillaries exchange with", "pM")
    hev_density: float = described(0.0, "HEV voxels per mm^3 of T zone, seeded (needs the node)", "voxels/mm^3")
    hev_exchange: float = described(0.0, "k_ex of an HEV voxel with plasma, P S/V (~6e-4 /s)", "1/s")
    lymph_drainage: float = described(0.0, "k_ex of a capsule (subcapsular sinus) or medulla voxel draining towards 0 "
                                      "(needs the node)", "1/s")
    capillary_exchange: float = described(0.0, "k_ex of every node voxel with plasma, the capillary network's P S/V "
                                          "(~5e-6 /s; needs the node)", "1/s")
    afferent_lymph_il2: float = described(0.0, "IL-2 in the afferent lymph arriving in the subcapsular sinus (therapy: "
                                          "~0.8 x plasma)", "pM")
    afferent_exchange: float = described(0.0, "k_ex = L / V_capsule of a capsule voxel with afferent lymph, L the lymph "
                                         "flow (~0.02 /s; needs the node)", "1/s")

@dataclass
class DevicesConfig:
    """Where the arrays live, and whether compiled kernels are kept."""

    shard: bool = described(False, "split the lattice into slabs along x over all visible devices (grid.shape[0] a "
                            "multiple of their number)")
    compilation_cache: bool = described(True, "keep compiled kernels on disk for later runs (JAX's persistent cache, in "
                                        "$JAX_COMPILATION_CACHE_DIR if set, else ~/.cache/il2rd/jax; compilation.py)")

@dataclass
class OutputConfig:
    """What a run writes and prints."""

    dir: Optional[str] = described(None, "the run's folder; null: Hydra's run directory, outputs/<date>/<time>", "path")
    progress: bool = described(True, "progress bars of transient runs, and a status line on stderr when a steady solve "
                               "or the attribution starts")
    compression: str = described("gzip", "compression of the HDF5 datasets: gzip | zstd (needs hdf5plugin) | none")
    attribution: bool = described(True, "steady and coupled runs: compute and store who took up whose IL-2 "
                                  "(attribution.py)")
    overwrite: bool = described(False, "replace another run's il2rd.h5 in output.dir (otherwise refused: runfolder.py)")
    field_every: int = described(1, "store the 3-D IL-2 field at every k-th snapshot (and the first and the last); "
                                 "a skipped field takes no disk space and reads as NaN (/fields/stored says which are "
                                 "held); the time and solver columns are stored at every snapshot, the cell columns as "
                                 "output.cells_every says", "snapshots")
    cells_every: int = described(1, "store the per-cell columns il2, uptake, receptors, receptors_intermediate, pstat5 at "
                                 "every k-th snapshot (and the first and the last); /cells/stored says which", "snapshots")

@dataclass
class Il2rdConfig:
    """il2rd's configuration: composed by Hydra from configs/config.yaml and the command line."""

    grid: GridConfig = section(GridConfig)
    physics: PhysicsConfig = section(PhysicsConfig)
    solver: SolverConfig = section(SolverConfig)
    time: TimeConfig = section(TimeConfig)
    cells: CellsConfig = section(CellsConfig)
    # an open mapping: types are checked against CellTypeConfig when the run is parsed,
    # so that a new type can be added from the command line with defaults for the rest
    cell_types: Dict[str, Any] = field(default_factory=dict, metadata={
        "help": "the cell types, one entry each with the keys below"})
    node: NodeConfig = section(NodeConfig)
    signalling: SignallingConfig = section(SignallingConfig)
    receptor_dynamics: ReceptorDynamicsConfig = section(ReceptorDynamicsConfig)
    fate: FateConfig = section(FateConfig)
    precision: str = described("float32", "the arithmetic of the field and the solvers: float32 | float64")
    seed: int = described(0, "seed of the cell placement (and of the receptor spread, receptor_cv)")
    vessels: VesselsConfig = section(VesselsConfig)
    devices: DevicesConfig = section(DevicesConfig)
    output: OutputConfig = section(OutputConfig)
    resume: Optional[str] = described(None, "an il2rd.h5 of an interrupted transient or coupled run: continue it with "
                                      "its stored config (only time.end and output.progress may be given besides)", "path")

def register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="il2rd_schema", node=Il2rdConfig)
