"""The configuration: its schema, its validation, and its translation into typed settings.

This is the only module that knows config key names and the units they are given in. Every
key is checked before any work starts; a bad one raises ConfigError, whose message names the
key, the value given and what is allowed.
"""

from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from . import anatomy, fate, motility, resources
from .anatomy import AnatomyError, NodeAnatomy
from . import cells
from .cells import CellType, Region
from .receptors import Signalling, receptor_classes
from . import boundaries
from .grid import FACES, Grid
from .kinetics import UPTAKE_LAWS
from .solvers.steady import PRECONDITIONERS, SolverOptions
from . import subgrid
from .dynamics import INITIAL_FIELDS, ReceptorFeedback
from .vessels import Vessels
from .fate import FateSettings
from .solvers.transient import KINDS as TRANSIENT_KINDS

# coupled: backward-Euler field with receptor dynamics (dynamics.py); tissue: coupled, with cells that move (motility.py)
SOLVER_KINDS = (*TRANSIENT_KINDS, "coupled", "tissue")

PRECISIONS = ("float32", "float64")
COMPRESSIONS = ("gzip", "zstd", "none")
MAX_SNAPSHOTS = 100_000  # bounds on a transient run's size, to catch unit slips (1e-6 for 1e6)
MAX_STEPS = 10**8
REGION_KINDS = ("lattice", "box", "sphere", *anatomy.COMPARTMENTS)
MAX_RECEPTOR_CV = 10.0  # a CV is a fraction (0.5 = 50 % spread); larger values are unit slips
# Bounds that keep float32 finite (its norms square the field: 1e12^2 x 1e8 voxels < 3.4e38) and
# catch unit slips: IL-2 above 1 M, a cell secreting 1e9 molecules/s or bearing 1e9 receptors.
MAX_CONCENTRATION_PM = 1e12  # 1 mol/L
MAX_SECRETION_MOLECULES_PER_S = 1e9  # measured: ~1 - 100 per T cell
MAX_RECEPTORS_PER_CELL = 1e9  # measured: ~1e2 - 1e5
MAX_FOLLICLES = 1000  # their seeded placement compares each candidate with every accepted centre
PER_TYPE = "per_type"  # physics.cell_radius: each cell type's own radius (cell_types.<name>.radius)


class ConfigError(ValueError):
    """A config value that is not allowed: names the key, the value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key} = {_show(value)}: {allowed}")


def _show(value: Any) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    return repr(value)


# ---------------------------------------------------------------------------------------------
# Schema (Hydra structured config). Defaults here are the physics defaults of
# ../shared/science.md; configs/config.yaml sets the default lymph-node scenario on top.
# Each key's meaning and unit are written once, here, with described(); `il2rd --describe`
# (describe.py) prints them, with the defaults of the composed config.


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
        PER_TYPE, "a, the cells' sphere radius in the sub-grid closure (il2rd/subgrid.py: uptake and secretion match a "
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

    secretion: float = described(0.0, "q, IL-2 secreted per cell", "molecules/s")
    receptors: float = described(0.0, "IL-2Ra (CD25) per cell", "per cell")
    il2rb: Optional[float] = described(None, "IL-2Rb per cell; null = not limiting: every IL-2Ra forms a high-affinity "
                                       "receptor, and there are no intermediate-affinity ones", "per cell")
    gc: Optional[float] = described(None, "common gamma chain per cell; null = not limiting (needs il2rb)", "per cell")
    km: float = described(43.0, "K_M of high-affinity uptake, (k_off + k_int) / k_on", "pM")
    km_intermediate: float = described(1035.0, "K_M of the intermediate-affinity receptors (IL-2Rb/gc without IL-2Ra), "
                                       "K_D ~ 1 nM + k_int / k_on", "pM")
    k_int: float = described(1.1e-3, "k_int, internalisation of bound receptors (Feinerman 2010)", "1/s")
    receptor_cv: float = described(0.0, "coefficient of variation of each receptor chain between cells (log-normal around "
                                   "the type's mean, chains independent); 0 = every cell has the mean", "fraction")
    cd25_gain: float = described(1.0, "solver.kind=coupled: IL-2Ra rises towards gain x basal under full pSTAT5 (1 = no "
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
    radius: float = described(5.0, "the cells' sphere radius: the sub-grid closure's sphere (physics.cell_radius="
                              "per_type), and how many cells share a voxel (each radius <= h/2, sphere volumes <= h^3)", "um")
    speed: float = described(0.0, "solver.kind=tissue: the mean speed of the cells' persistent random walk; 0 = they "
                             "stay (both speed and motility, or neither)", "um/min")
    motility: float = described(0.0, "solver.kind=tissue: the motility coefficient M of the walk (MSD = 6 M t at long "
                                "times); the persistence time is 8 M / (pi speed^2)", "um^2/min")
    division: float = described(0.0, "fate.enabled: the division rate at full IL-2 signal, b_max h(time-averaged "
                                "pSTAT5) (fate.py); 0 = the type does not divide", "1/day")
    death: float = described(0.0, "fate.enabled: the death rate without IL-2 signal, d_0 (1 - h(time-averaged pSTAT5))",
                             "1/day")
    cycle: float = described(8.0, "fate.enabled: the least time between two divisions of a cell (its cell cycle)", "h")
    contact: float = described(0.0, "solver.kind=coupled|tissue: the fraction of each cell's secretion handed directly to "
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

    ec50_max: float = described(125.0, "EC50 of a cell without receptors, the maximum of EC50(R)", "pM")
    ec50_k: float = described(860.0, "k: the receptor number at which EC50(R) is half its maximum", "receptors")
    ec50_exponent: float = described(1.5, "N, the steepness of EC50(R) in R")
    hill: float = described(3.0, "Hill exponent of pSTAT5 in c")
    pstat5_threshold: float = described(0.5, "pSTAT5 level counted as pSTAT5-positive (the pSTAT5+ fraction)", "0..1")
    reference_km: float = described(43.0, "K_M of the receptors EC50(R) is calibrated on; a type with another K_M "
                                    "signals at equal receptor occupancy (at c x reference_km / K_M)", "pM")


@dataclass
class ReceptorDynamicsConfig:
    """solver.kind=coupled: dR/dt = eta R0 [1 + (gain - 1) p^hill/(half_pstat5^hill + p^hill)] - eta R (dynamics.py)."""

    turnover: float = described(1.0 / 72000.0, "eta, receptor turnover (Thurley-lab models: 1/72000 s, 20 h)", "1/s")
    half_pstat5: float = described(0.5, "pSTAT5 level of half-maximal receptor induction", "0..1")
    hill: float = described(3.0, "Hill exponent of the induction in pSTAT5 (Busse 2010)")


@dataclass
class FateConfig:
    """solver.kind=tissue: pSTAT5-driven division and death (fate.py): per type, cell_types.<name>.division, .death, .cycle."""

    enabled: bool = described(False, "cells divide and die by their time-averaged pSTAT5 (needs solver.kind=tissue)")
    capacity: float = described(4.0, "cell slots per placed cell of a type that divides: a type grows at most this "
                                "fold; daughters beyond it wait", "x placed")
    averaging: float = described(6.0, "tau_f, the time over which a cell averages its pSTAT5 (commitment to divide "
                                 "after hours of IL-2 signalling, Cantrell & Smith 1984; an estimate)", "h")
    half_pstat5: float = described(0.5, "the time-averaged pSTAT5 of half the maximal division rate and half the death "
                                   "rate", "0..1")
    hill: float = described(2.0, "Hill exponent of the fate response in the time-averaged pSTAT5 (an estimate)")


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
                                 "the cells, readouts and solver columns at every snapshot. A skipped field takes no "
                                 "disk space and reads as NaN (/fields/stored says which are held)", "snapshots")
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


# ---------------------------------------------------------------------------------------------
# Typed settings


@dataclass(frozen=True)
class Settings:
    grid: Grid
    face_values_pM: tuple[float, ...]
    diffusion_um2_per_s: float
    decay_per_s: float
    uptake: str
    solver_kind: str
    options: SolverOptions
    dt_s: float
    end_s: float
    snapshot_every_s: float
    precision: str
    seed: int
    types: dict[str, CellType]
    placement: list[tuple[str, int, Region]]  # (type, count, region), in config order
    csv: Path | None
    signalling: Signalling
    shard: bool
    output_dir: Path | None
    progress: bool
    compression: str
    volume_fraction: float = 1.0  # alpha, interstitial volume fraction
    tortuosity: float = 1.0  # lambda; D_eff = D / lambda^2
    node: NodeAnatomy | None = None  # the lymph node, when a region uses one of its compartments
    subgrid_uptake: bool = True  # the sub-grid closure with each type's radius_um (False: point sinks)
    vessels: Vessels = Vessels()  # exchange with blood and lymph
    attribution: bool = True  # compute the source attribution of (quasi-)steady fields
    overwrite: bool = False  # output.overwrite: replace another run's file in the output folder
    field_every: int = 1  # output.field_every: the field is stored at snapshots i % k == 0 and the last
    cells_every: int = 1  # output.cells_every: the same for the per-cell columns (io/hdf5.py CELL_COLUMNS)
    feedback: ReceptorFeedback = ReceptorFeedback()  # solver.kind=coupled
    initial_field: str = "steady"  # solver.kind=coupled: dynamics.INITIAL_FIELDS
    fate: FateSettings = FateSettings()  # solver.kind=tissue: division and death (fate.py)

    @property
    def snapshot_times_s(self) -> list[float]:
        if self.solver_kind == "steady":
            return [0.0]
        n = math.floor(self.end_s / self.snapshot_every_s + 1e-9)
        times = [i * self.snapshot_every_s for i in range(n + 1)]
        if self.end_s - times[-1] > 1e-9 * self.end_s:
            times.append(self.end_s)
        return times


def _number(key: str, value: Any, *, low: float | None = None, low_open=False, high: float | None = None, unit=""):
    rule = []
    if low is not None:
        rule.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        rule.append(f"<= {high:g}")
    allowed = f"must be a finite number {' and '.join(rule)}{' (' + unit + ')' if unit else ''}".replace("number  ", "number ")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(key, value, allowed)
    if low is not None and (value < low or (low_open and value == low)):
        raise ConfigError(key, value, allowed)
    if high is not None and value > high:
        raise ConfigError(key, value, allowed)
    return float(value)


def _integer(key: str, value: Any, *, low: int = 0):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(key, value, f"must be an integer >= {low}")
    return int(value)


def _vessels(cfg, lymph_node) -> Vessels:
    vessels = Vessels(
        blood_il2_pM=_number("vessels.blood_il2", cfg.blood_il2, low=0, high=MAX_CONCENTRATION_PM, unit="pM"),
        hev_density_per_mm3=_number("vessels.hev_density", cfg.hev_density, low=0, unit="HEV voxels per mm^3 of T zone"),
        hev_exchange_per_s=_number("vessels.hev_exchange", cfg.hev_exchange, low=0, unit="1/s"),
        lymph_drainage_per_s=_number("vessels.lymph_drainage", cfg.lymph_drainage, low=0, unit="1/s"),
        capillary_exchange_per_s=_number("vessels.capillary_exchange", cfg.capillary_exchange, low=0, unit="1/s"),
        afferent_lymph_pM=_number("vessels.afferent_lymph_il2", cfg.afferent_lymph_il2, low=0, high=MAX_CONCENTRATION_PM,
                                  unit="pM"),
        afferent_exchange_per_s=_number("vessels.afferent_exchange", cfg.afferent_exchange, low=0, unit="1/s"),
    )
    if vessels.active:
        lymph_node()  # HEVs, capillaries and sinuses sit in the node's compartments: build it (and check it fits) now
    return vessels


def _cell_radius(value: Any, grid: Grid) -> float | str | None:
    """physics.cell_radius: None (point sinks), PER_TYPE (each type's radius) or one radius (um)
    for every type. The closure is 3-D: on a 2-D lattice per_type means point sinks, a number is
    refused. Each type's radius is checked against the voxel in :func:`_type_radius`."""
    key = "physics.cell_radius"
    if value is None:
        return None
    if isinstance(value, str):
        if value != PER_TYPE:
            raise ConfigError(key, value, f"must be {PER_TYPE} (each cell type's radius, cell_types.<name>.radius), "
                              f"a radius > 0 in um for every type, or null (point sinks)")
        return None if 1 in grid.shape else PER_TYPE
    radius = _number(key, value, low=0, low_open=True, unit=f"um; or {PER_TYPE}, or null for point sinks")
    if 1 in grid.shape:
        raise ConfigError(key, value, "the sub-grid closure is for 3-D lattices; set it to null (or per_type, which "
                          "falls back to point sinks in 2-D)")
    return radius


def _type_radius(key: str, value: Any, cell_radius: float | str | None, grid: Grid) -> float:
    """A type's sphere radius (um): its own radius key, or physics.cell_radius where that is a
    number; with the closure it must reach the voxel: h >= 4 pi G(1,0,0) a (subgrid.py)."""
    own = _number(f"{key}.radius", value, low=0, low_open=True, unit="um")
    radius, source = (own, f"{key}.radius") if not isinstance(cell_radius, float) else (cell_radius, "physics.cell_radius")
    if cell_radius is not None:
        smallest = float(subgrid.cross_limit_um(radius))
        if grid.spacing_um < smallest:
            raise ConfigError(source, radius, f"needs voxels of at least {smallest:.3g} um (4 pi g1 a: below, even the "
                              f"7-voxel stencil of the sub-grid closure cannot absorb like the sphere); grid.spacing is "
                              f"{grid.spacing_um:g} um: coarsen it, give a smaller radius, or set physics.cell_radius=null "
                              f"(point sinks)")
    return radius


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "must be true or false")
    return value


def compilation_cache(cfg: DictConfig) -> bool:
    """devices.compilation_cache, checked (a stored config from before the key existed: on)."""
    return _boolean("devices.compilation_cache", OmegaConf.select(cfg, "devices.compilation_cache", default=True))


def _choice(key: str, value: Any, allowed: tuple[str, ...]):
    if value not in allowed:
        raise ConfigError(key, value, f"must be one of {', '.join(allowed)}")
    return value


def _vector3(key: str, value: Any, unit="um"):
    if not isinstance(value, (list, tuple, ListConfig)) or len(value) != 3:
        raise ConfigError(key, value, f"must be a list of 3 numbers ({unit})")
    return tuple(_number(f"{key}[{i}]", v, unit=unit) for i, v in enumerate(value))


def _per_face(key: str, value: Any, parse_one, default):
    """A value for every face from a single value or a {face: value} mapping."""
    if isinstance(value, (dict, DictConfig)):
        unknown = [k for k in value if k not in FACES]
        if unknown:
            raise ConfigError(f"{key}.{unknown[0]}", value[unknown[0]], f"unknown face; allowed: {', '.join(FACES)}")
        return tuple(parse_one(f"{key}.{f}", value[f]) if f in value else default for f in FACES)
    return tuple(parse_one(key, value) for _ in FACES)


def _grid(cfg) -> tuple[Grid, tuple[float, ...]]:
    shape = cfg.grid.shape
    if not isinstance(shape, (list, tuple, ListConfig)) or len(shape) != 3:
        raise ConfigError("grid.shape", shape, "must be a list of 3 positive integers [nx, ny, nz] (nz = 1 for 2-D)")
    shape = tuple(_integer(f"grid.shape[{i}]", n, low=1) for i, n in enumerate(shape))
    # before anything lattice-sized is made; the other keys' values are checked later (parse)
    problem = resources.memory_problem(math.prod(shape), str(OmegaConf.select(cfg, "solver.kind", default="")),
                                       str(OmegaConf.select(cfg, "precision", default="")),
                                       OmegaConf.select(cfg, "physics.cell_radius", default=None) is not None,
                                       OmegaConf.select(cfg, "output.attribution", default=False) is True)
    if problem:
        raise ConfigError("grid.shape", list(shape), problem)
    spacing = _number("grid.spacing", cfg.grid.spacing, low=0, low_open=True, unit="um")
    kinds = _per_face("grid.boundary", cfg.grid.boundary, lambda k, v: _choice(k, v, tuple(boundaries.KINDS)),
                      boundaries.ZeroFlux.name)
    for axis in range(3):
        lo, hi = (boundaries.of(kind) for kind in kinds[2 * axis:2 * axis + 2])
        if (lo.wraps or hi.wraps) and lo != hi:  # a wrapping axis re-enters through its other face
            wrapping = lo if lo.wraps else hi
            raise ConfigError("grid.boundary", OmegaConf.to_container(cfg.grid.boundary) if isinstance(cfg.grid.boundary, DictConfig) else cfg.grid.boundary,
                              f"{wrapping.name} must be set on both {FACES[2 * axis]} and {FACES[2 * axis + 1]}")
    values = _per_face("grid.boundary_value", cfg.grid.boundary_value, lambda k, v: _number(k, v, low=0, high=MAX_CONCENTRATION_PM, unit="pM"),
                       0.0)
    return Grid(shape, spacing, kinds), values


def _node(cfg, grid: Grid):
    """Check the node: keys and return a function that builds the NodeAnatomy (placing the
    follicles) on first use, so that a run that places no cell by compartment never needs a
    lattice large enough for the node's follicles."""
    n = cfg.node
    semi = n.semi_axes
    if semi is not None:
        if not isinstance(semi, (list, tuple, ListConfig)) or len(semi) != 3:
            raise ConfigError("node.semi_axes", semi, "must be null or a list of 3 numbers > 0 (um)")
        semi = tuple(_number(f"node.semi_axes[{i}]", v, low=0, low_open=True, unit="um") for i, v in enumerate(semi))
    side = _choice("node.cortex_side", n.cortex_side, FACES)
    capsule = _number("node.capsule_thickness", n.capsule_thickness, low=0, low_open=True, unit="um")
    medulla = _number("node.medulla_fraction", n.medulla_fraction, low=0, high=1)
    if medulla == 1:
        raise ConfigError("node.medulla_fraction", n.medulla_fraction, "must be < 1 (1 leaves no cortex)")
    depth = n.t_zone_depth
    if depth is not None:
        depth = _number("node.t_zone_depth", depth, low=0, low_open=True, unit="um")
    f = n.follicles
    count = _integer("node.follicles.count", f.count, low=0)
    if count > MAX_FOLLICLES:
        raise ConfigError("node.follicles.count", count, f"must be at most {MAX_FOLLICLES} (a mouse node holds a dozen or so)")
    radius = _number("node.follicles.radius", f.radius, low=0, low_open=True, unit="um")
    spread = _number("node.follicles.spread", f.spread, low=0, low_open=True, high=180, unit="degrees")
    seed = _integer("node.follicles.seed", f.seed, low=0)
    centers = f.centers
    if centers is not None:
        if not isinstance(centers, (list, tuple, ListConfig)):
            raise ConfigError("node.follicles.centers", centers, "must be null or a list of [x, y, z] (um)")
        centers = tuple(_vector3(f"node.follicles.centers[{i}]", c) for i, c in enumerate(centers))
    built = []

    def resolve() -> NodeAnatomy:
        if not built:
            try:
                built.append(anatomy.build(
                    grid, semi_axes_um=semi, cortex_side=side, capsule_um=capsule, medulla_fraction=medulla,
                    t_zone_depth_um=depth, follicle_radius_um=radius, follicle_count=count,
                    follicle_spread_deg=spread, follicle_seed=seed, follicle_centres_um=centers))
            except AnatomyError as err:
                raise ConfigError(err.key, err.value, err.allowed) from None
        return built[0]

    resolve.built = built
    return resolve


def _region(key: str, node: Any, grid: Grid, lymph_node=None) -> Region:
    if node is None:
        return Region()
    if not isinstance(node, (dict, DictConfig)):
        raise ConfigError(key, node, f"must be null or a mapping {{kind: {'|'.join(REGION_KINDS[1:])}, ...}}")
    kind = _choice(f"{key}.kind", node.get("kind", "lattice"), REGION_KINDS)
    allowed_keys = {"box": {"kind", "lo", "hi"}, "sphere": {"kind", "center", "radius"}}.get(kind, {"kind"})  # others: kind only
    for k in node:
        if k not in allowed_keys:
            raise ConfigError(f"{key}.{k}", node[k], f"not a key of a {kind} region; allowed: {', '.join(sorted(allowed_keys))}")
    if kind == "box":
        if "lo" not in node or "hi" not in node:
            raise ConfigError(key, node, "a box region needs lo and hi corners [x, y, z] (um)")
        lo, hi = _vector3(f"{key}.lo", node["lo"]), _vector3(f"{key}.hi", node["hi"])
        if any(a >= b for a, b in zip(lo, hi)):
            raise ConfigError(f"{key}.hi", list(hi), f"must exceed lo = {list(lo)} on every axis")
        region = Region("box", lo_um=lo, hi_um=hi)
    elif kind == "sphere":
        if "center" not in node or "radius" not in node:
            raise ConfigError(key, node, "a sphere region needs center [x, y, z] and radius (um)")
        region = Region("sphere", centre_um=_vector3(f"{key}.center", node["center"]),
                        radius_um=_number(f"{key}.radius", node["radius"], low=0, low_open=True, unit="um"))
    elif kind in anatomy.COMPARTMENTS:
        geometry = lymph_node()
        region = Region(kind, anatomy=geometry)
        if region.volume_um3(grid) == 0:
            raise ConfigError(key, node, f"the lymph node's {kind} compartment holds no voxel centre (node semi-axes "
                              f"{[round(a, 6) for a in geometry.semi_axes_um]} um, voxels of {grid.spacing_um:g} um); "
                              f"adjust node: (e.g. node.capsule_thickness, node.medulla_fraction, node.follicles) "
                              f"or refine the lattice")
        return region
    else:
        region = Region()
    if region.volume_um3(grid) == 0:
        raise ConfigError(key, node, f"contains no voxel centre of the lattice (extent {[round(e, 6) for e in grid.extent_um]} um)")
    return region


def _secretion_course(key: str, value: Any) -> dict:
    """CellType's secretion_onset_s, _peak_s, _off_s from [onset, peak, off] in hours (or null)."""
    if value is None:
        return {}
    if not isinstance(value, (list, tuple, ListConfig)) or len(value) != 3:
        raise ConfigError(key, value, "must be null or [onset, peak, off] in hours, e.g. [1, 7, 22] (Sojka 2008)")
    hours = [_number(f"{key}[{i}]", v, low=0, unit="h") for i, v in enumerate(value)]
    if not hours[0] <= hours[1] <= hours[2]:
        raise ConfigError(key, list(value), "must satisfy onset <= peak <= off (hours)")
    return dict(zip(("secretion_onset_s", "secretion_peak_s", "secretion_off_s"), (3600.0 * h for h in hours)))


def _walk(key: str, speed: Any, motility_coefficient: Any) -> dict:
    """CellType's speed_um_per_s, motility_um2_per_s from speed (um/min) and motility (um^2/min):
    both 0 (the cells stay) or both > 0 (motility.py; persistence 8 M / (pi v^2))."""
    v = _number(f"{key}.speed", speed, low=0, high=motility.MAX_SPEED_UM_PER_MIN, unit="um/min")
    m = _number(f"{key}.motility", motility_coefficient, low=0, high=motility.MAX_MOTILITY_UM2_PER_MIN, unit="um^2/min")
    if (v > 0) != (m > 0):
        zero, other = (f"{key}.speed", f"{key}.motility") if v == 0 else (f"{key}.motility", f"{key}.speed")
        raise ConfigError(zero, 0.0, f"must be > 0 when {other} is (a walk needs both its mean speed and its "
                                     "motility coefficient; set both to 0 for cells that stay)")
    return dict(speed_um_per_s=v / 60.0, motility_um2_per_s=m / 60.0)


def _fate_rates(key: str, division: Any, death: Any, cycle: Any) -> dict:
    """CellType's division_per_s, death_per_s, cycle_s from division and death (1/day) and cycle (h)."""
    rate = lambda name, v: _number(f"{key}.{name}", v, low=0, high=fate.MAX_RATE_PER_DAY, unit="1/day") / fate.DAY_S  # noqa: E731
    return dict(division_per_s=rate("division", division), death_per_s=rate("death", death),
                cycle_s=_number(f"{key}.cycle", cycle, low=0, high=24.0 * 30, unit="h") * fate.HOUR_S)


def _fate(cfg, kind: str, types: dict, dt_s: float) -> FateSettings:
    """fate.*, checked: only with solver.kind=tissue, and steps short enough for the event scheme
    (fate.py: (b + d) dt <= MAX_EVENTS_PER_STEP for every type)."""
    f = cfg.fate
    enabled = _boolean("fate.enabled", f.enabled)
    settings = FateSettings(
        enabled=enabled,
        capacity=_number("fate.capacity", f.capacity, low=1, high=1000, unit="cell slots per placed cell"),
        averaging_s=_number("fate.averaging", f.averaging, low=0, low_open=True, high=24.0 * 30, unit="h") * fate.HOUR_S,
        half_pstat5=_number("fate.half_pstat5", f.half_pstat5, low=0, low_open=True, high=1),
        hill=_number("fate.hill", f.hill, low=0, low_open=True, high=20),
    )
    if not enabled:
        return settings
    if kind != "tissue":
        raise ConfigError("fate.enabled", True, f"needs solver.kind=tissue (cells that can be born and die); got {kind}")
    for name, t in types.items():
        events = (t.division_per_s + t.death_per_s) * dt_s
        if events > fate.MAX_EVENTS_PER_STEP:
            raise ConfigError("solver.dt", dt_s, f"gives (division + death) x dt = {events:.3g} for cell_types.{name}; at most "
                              f"{fate.MAX_EVENTS_PER_STEP} (one event in several steps: fate.py); take a shorter dt")
    return settings


def _contact(key: str, fraction: Any, partners: Any, names: list[str]) -> dict:
    """CellType's contact_fraction and contact_partners (type names; None = every type)."""
    fraction = _number(f"{key}.contact", fraction, low=0, high=1, unit="fraction of the secretion")
    if partners is None:
        return dict(contact_fraction=fraction)
    if not isinstance(partners, (list, tuple, ListConfig)) or not partners:
        raise ConfigError(f"{key}.partners", partners, f"must be null or a non-empty list of cell types, from {names}")
    for p in partners:
        if p not in names:
            raise ConfigError(f"{key}.partners", list(partners), f"names {p!r}, not a cell type of this run; allowed: {names}")
    return dict(contact_fraction=fraction, contact_partners=tuple(str(p) for p in partners))


def _check_contact(kind: str, types: dict) -> None:
    """Contact delivery needs a stepped run: the handed amount depends on the partner's free
    receptors at the step's start (contact.py)."""
    for name, t in types.items():
        if t.contact_fraction > 0 and kind not in ("coupled", "tissue"):
            raise ConfigError(f"cell_types.{name}.contact", t.contact_fraction,
                              f"needs solver.kind=coupled or tissue (a step from the partner's receptors); got {kind}")


def _chains(key: str, il2rb: Any, gc: Any) -> dict:
    """il2rb, gc of a type: numbers >= 0 or null (inf: not limiting); gc only with il2rb."""
    if il2rb is None and gc is not None:
        raise ConfigError(f"{key}.gc", gc, "needs il2rb as well (with il2rb null every IL-2Ra is a high-affinity "
                                           "receptor and gc plays no part); set il2rb or set gc to null")
    return {chain: math.inf if value is None else _number(f"{key}.{chain}", value, low=0, unit=f"{label} per cell")
            for chain, value, label in (("il2rb", il2rb, "IL-2Rb"), ("gc", gc, "gc"))}


def _cell_types(cfg, grid: Grid, use_csv: bool, lymph_node=None, cell_radius: float | str | None = None):
    types, placement = {}, []
    if not isinstance(cfg.cell_types, (dict, DictConfig)):
        raise ConfigError("cell_types", cfg.cell_types,
                          "must be a mapping {name: {secretion, receptors, il2rb, gc, receptor_cv, km, k_int, count|density, region}}")
    schema = OmegaConf.structured(CellTypeConfig)
    capacity = lambda name: cells.cells_per_voxel(grid.spacing_um, None if cell_radius is None else types[name].radius_um)  # noqa: E731

    def _fitting(n: int, name: str) -> str:
        if cell_radius is None:
            return "one cell (a point sink; physics.cell_radius = null) fits"
        return f"{'one cell' if n == 1 else f'{n} cells'} of radius {types[name].radius_um:g} um fit{'s' if n == 1 else ''}"

    for name, node in cfg.cell_types.items():
        key = f"cell_types.{name}"
        if node is None:
            node = {}
        if not isinstance(node, (dict, DictConfig)):
            raise ConfigError(key, node, "must be a mapping of cell-type parameters")
        for k in node:
            if k not in schema:
                raise ConfigError(f"{key}.{k}", node[k], f"unknown key; allowed: {', '.join(schema.keys())}")
        merged = {**OmegaConf.to_container(schema), **(OmegaConf.to_container(node) if isinstance(node, DictConfig) else node)}
        types[name] = CellType(
            name,
            secretion_molecules_per_s=_number(f"{key}.secretion", merged["secretion"], low=0,
                                              high=MAX_SECRETION_MOLECULES_PER_S, unit="molecules/s"),
            receptors=_number(f"{key}.receptors", merged["receptors"], low=0, high=MAX_RECEPTORS_PER_CELL,
                              unit="IL-2Ra per cell"),
            **_chains(key, merged["il2rb"], merged["gc"]),
            km_pM=_number(f"{key}.km", merged["km"], low=0, low_open=True, unit="pM"),
            km_intermediate_pM=_number(f"{key}.km_intermediate", merged["km_intermediate"], low=0, low_open=True, unit="pM"),
            k_int_per_s=_number(f"{key}.k_int", merged["k_int"], low=0, unit="1/s"),
            receptor_cv=_number(f"{key}.receptor_cv", merged["receptor_cv"], low=0, high=MAX_RECEPTOR_CV,
                                unit="sd/mean of receptors between cells, a fraction: 0.5 is 50 %"),
            cd25_gain=_number(f"{key}.cd25_gain", merged["cd25_gain"], low=1, unit="receptors at full pSTAT5 / basal"),
            **_secretion_course(f"{key}.secretion_course", merged["secretion_course"]),
            radius_um=_type_radius(key, merged["radius"], cell_radius, grid),
            **_walk(key, merged["speed"], merged["motility"]),
            **_fate_rates(key, merged["division"], merged["death"], merged["cycle"]),
            **_contact(key, merged["contact"], merged["partners"], list(cfg.cell_types)),
        )
        region = _region(f"{key}.region", merged["region"], grid, lymph_node)
        count, density = merged["count"], merged["density"]
        if count is not None and density is not None:
            raise ConfigError(f"{key}.density", density, f"give count or density, not both (count = {count})")
        if use_csv:
            continue
        if density is not None:
            density = _number(f"{key}.density", density, low=0, unit="cells/mm^3")
            count = round(density * region.volume_um3(grid) / 1e9)
            per_voxel = density * grid.voxel_volume_um3 / 1e9
            fit = capacity(name)
            if per_voxel > fit:
                raise ConfigError(f"{key}.density", density,
                                  f"is {per_voxel:.3g} cells per voxel; at most {_fitting(fit, name)} a {grid.spacing_um:g} um "
                                  f"voxel (<= {fit * 1e9 / grid.voxel_volume_um3:.4g} cells/mm^3)")
        count = _integer(f"{key}.count", 0 if count is None else count)
        placement.append((name, count, region))
    voxels_needed = sum(c / capacity(n) for n, c, _ in placement)
    if voxels_needed > grid.n_voxels * (1 + 1e-12):
        rule = "one cell per voxel" if all(capacity(n) == 1 for n, _, _ in placement) else \
            "as many cells per voxel as fit it: sphere volumes <= h^3"
        raise ConfigError("cell_types", {n: c for n, c, _ in placement},
                          f"{sum(c for _, c, _ in placement)} cells requested need {voxels_needed:.6g} voxels but the lattice "
                          f"has {grid.n_voxels} ({rule})")
    return types, placement


def _check_not_empty(placement, grid: Grid, face_values, vessels: Vessels) -> None:
    """No cell placed and no IL-2 from faces or vessels: an empty tissue whose field is zero, most
    often a unit slip (grid.spacing in mm or m makes every density round to 0 cells)."""
    if sum(c for _, c, _ in placement):
        return
    faces = any(face.feeds(v) for face, v in zip(grid.faces, face_values))
    if faces or vessels.blood_il2_pM > 0 or vessels.afferent_lymph_pM > 0:
        return
    raise ConfigError("cell_types", {n: c for n, c, _ in placement},
                      f"places no cell on {grid.shape} voxels of {grid.spacing_um:g} um, and no face or vessel brings "
                      "IL-2: the run would be an empty tissue with a zero field; give counts or densities that place "
                      "cells, or check grid.spacing (um)")


def check_steady_field_exists(solver_kind: str, decay_per_s: float, grid: Grid, uptake: str,
                              secretion_molecules_per_s: float, uptake_capacity_molecules_per_s: float) -> None:
    """With no decay and no fixed face only the cells remove IL-2. Saturating uptake removes at
    most sum_i k_int R_i molecules/s, linear uptake any amount if some cell consumes; when
    secretion exceeds what can be removed, IL-2 accumulates for ever and no steady field exists
    (the transient solvers are fine: the field just grows)."""
    if solver_kind != "steady" or decay_per_s > 0 or grid.passes_flux or secretion_molecules_per_s == 0:
        return
    if uptake == "saturating":
        removable = uptake_capacity_molecules_per_s
    else:
        removable = math.inf if uptake_capacity_molecules_per_s > 0 else 0.0
    if secretion_molecules_per_s >= removable:
        raise ConfigError("physics.decay", decay_per_s,
                          f"must be > 0 for solver.kind=steady here: no face is fixed and the cells secrete "
                          f"{secretion_molecules_per_s:.4g} molecules/s but can take up at most "
                          f"{uptake_capacity_molecules_per_s:.4g} (sum of k_int R), so no steady field exists")


def _check_known_keys(cfg: DictConfig) -> None:
    """Keys added with `+` that the schema does not know (typos such as +physics.difusion)."""
    schema = OmegaConf.structured(Il2rdConfig)
    for key in cfg:
        if key == "hydra":
            continue
        if key not in schema:
            raise ConfigError(key, cfg[key], f"unknown key; allowed: {', '.join(schema.keys())}")
        node, allowed = cfg[key], schema[key]
        if key != "cell_types" and isinstance(node, DictConfig) and isinstance(allowed, DictConfig):
            for sub in node:
                if sub not in allowed:
                    raise ConfigError(f"{key}.{sub}", node[sub], f"unknown key; allowed: {', '.join(allowed.keys())}")
                if isinstance(node[sub], DictConfig) and isinstance(allowed[sub], DictConfig):  # node.follicles
                    for leaf in node[sub]:
                        if leaf not in allowed[sub]:
                            raise ConfigError(f"{key}.{sub}.{leaf}", node[sub][leaf],
                                              f"unknown key; allowed: {', '.join(allowed[sub].keys())}")


def node_anatomy(cfg: DictConfig) -> NodeAnatomy:
    """The lymph node of a composed config (grid: and node: keys), built whether or not a region
    uses it: for maps and plots of the compartments (raises ConfigError)."""
    grid, _ = _grid(cfg)
    return _node(cfg, grid)()


def parse(cfg: DictConfig) -> Settings:
    """Check every key of a composed config and return typed Settings (raises ConfigError)."""
    _check_known_keys(cfg)
    grid, face_values = _grid(cfg)
    diffusion = _number("physics.diffusion", cfg.physics.diffusion, low=0, low_open=True, unit="um^2/s")
    decay = _number("physics.decay", cfg.physics.decay, low=0, unit="1/s")
    uptake = _choice("physics.uptake", cfg.physics.uptake, UPTAKE_LAWS)
    volume_fraction = _number("physics.volume_fraction", cfg.physics.volume_fraction, low=0, low_open=True, high=1,
                              unit="interstitial fraction of the tissue volume; ~0.2 - 0.4 in packed tissue")
    tortuosity = _number("physics.tortuosity", cfg.physics.tortuosity, low=1,
                         unit="D_eff = D / tortuosity^2; ~1.6 in tissue")
    kind = _choice("solver.kind", cfg.solver.kind, SOLVER_KINDS)
    cell_radius = _cell_radius(cfg.physics.cell_radius, grid)
    dynamics_cfg = cfg.receptor_dynamics
    feedback = ReceptorFeedback(
        turnover_per_s=_number("receptor_dynamics.turnover", dynamics_cfg.turnover, low=0, low_open=True, unit="1/s"),
        half_pstat5=_number("receptor_dynamics.half_pstat5", dynamics_cfg.half_pstat5, low=0, low_open=True, high=1),
        hill=_number("receptor_dynamics.hill", dynamics_cfg.hill, low=0, low_open=True),
    )
    rtol = _number("solver.rtol", cfg.solver.rtol, low=0, low_open=True, high=0.1)
    dt = _number("solver.dt", cfg.solver.dt, low=0, low_open=True, unit="s")
    options = SolverOptions(
        rtol=rtol,
        max_krylov=_integer("solver.max_iter", cfg.solver.max_iter, low=1),
        max_newton=_integer("solver.max_newton", cfg.solver.max_newton, low=1),
        preconditioner=_choice("solver.preconditioner", cfg.solver.preconditioner, PRECONDITIONERS),
    )
    end = _number("time.end", cfg.time.end, low=0, low_open=kind != "steady", unit="s")
    every = _number("time.snapshot_every", cfg.time.snapshot_every, low=0, low_open=True, unit="s")
    if kind != "steady":
        if end / every > MAX_SNAPSHOTS:
            raise ConfigError("time.snapshot_every", every,
                              f"gives {end / every:.3g} snapshots up to time.end = {end:g} s; at most {MAX_SNAPSHOTS}")
        if end / dt > MAX_STEPS:
            raise ConfigError("solver.dt", dt, f"gives {end / dt:.3g} steps up to time.end = {end:g} s; at most {MAX_STEPS:.0e}")
    precision = _choice("precision", cfg.precision, PRECISIONS)
    seed = _integer("seed", cfg.seed, low=0)
    csv = cfg.cells.csv
    if csv is not None:
        csv = Path(str(csv))
        if not csv.is_file():
            what = "is a directory, not a file" if csv.is_dir() else "no such file"
            raise ConfigError("cells.csv", str(csv), f"{what} (a CSV with header x,y,z,type[,receptors], positions in um)")
    lymph_node = _node(cfg, grid)
    vessels = _vessels(cfg.vessels, lymph_node)
    types, placement = _cell_types(cfg, grid, csv is not None, lymph_node, cell_radius)
    if not types:
        raise ConfigError("cell_types", {}, "define at least one cell type")
    _check_contact(kind, types)
    if csv is None:  # with a CSV the counts are known once it is read (Scenario.build; cells.read_csv)
        _check_not_empty(placement, grid, face_values, vessels)
        check_steady_field_exists(
            kind, decay, grid, uptake,
            sum(c * types[n].secretion_molecules_per_s for n, c, _ in placement),
            sum(c * types[n].k_int_per_s * sum(receptor_classes(types[n].receptors, types[n].il2rb, types[n].gc))
                for n, c, _ in placement),
        )
    signalling = Signalling(
        ec50_max_pM=_number("signalling.ec50_max", cfg.signalling.ec50_max, low=0, low_open=True, unit="pM"),
        ec50_k_receptors=_number("signalling.ec50_k", cfg.signalling.ec50_k, low=0, low_open=True, unit="receptors"),
        ec50_exponent=_number("signalling.ec50_exponent", cfg.signalling.ec50_exponent, low=0),
        hill=_number("signalling.hill", cfg.signalling.hill, low=0, low_open=True),
        positive_threshold=_number("signalling.pstat5_threshold", cfg.signalling.pstat5_threshold, low=0, low_open=True, high=1),
        reference_km_pM=_number("signalling.reference_km", cfg.signalling.reference_km, low=0, low_open=True, unit="pM"),
    )
    shard = _boolean("devices.shard", cfg.devices.shard)
    compilation_cache(cfg)  # checked here with the rest; read where the run starts (simulate.run)
    if shard:
        import jax

        n = len(jax.devices())
        if grid.shape[0] % n:
            raise ConfigError("devices.shard", shard, f"splits x into {n} slabs, one per device, so grid.shape[0] = "
                              f"{grid.shape[0]} must be a multiple of {n}")
    compression = _choice("output.compression", cfg.output.compression, COMPRESSIONS)
    if compression == "zstd":
        try:
            import hdf5plugin  # noqa: F401
        except ImportError:
            raise ConfigError("output.compression", compression, "zstd needs the hdf5plugin package (pip install 'il2rd[zstd]'); or use gzip")
    output_dir = cfg.output.dir
    return Settings(
        grid=grid,
        face_values_pM=face_values,
        diffusion_um2_per_s=diffusion,
        decay_per_s=decay,
        uptake=uptake,
        solver_kind=kind,
        options=options,
        dt_s=dt,
        end_s=end,
        snapshot_every_s=every,
        precision=precision,
        seed=seed,
        types=types,
        placement=placement,
        csv=csv,
        signalling=signalling,
        feedback=feedback,
        fate=_fate(cfg, kind, types, dt),
        initial_field=_choice("solver.initial_field", cfg.solver.initial_field, INITIAL_FIELDS),
        shard=shard,
        output_dir=None if output_dir is None else Path(str(output_dir)),
        progress=bool(cfg.output.progress),
        compression=compression,
        attribution=_boolean("output.attribution", cfg.output.attribution),
        overwrite=_boolean("output.overwrite", cfg.output.overwrite),
        field_every=_integer("output.field_every", cfg.output.field_every, low=1),
        cells_every=_integer("output.cells_every", cfg.output.cells_every, low=1),
        volume_fraction=volume_fraction,
        subgrid_uptake=cell_radius is not None,
        tortuosity=tortuosity,
        node=lymph_node.built[0] if lymph_node.built else None,
        vessels=vessels,
    )
