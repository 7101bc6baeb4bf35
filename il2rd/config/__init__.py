"""The configuration's translation into typed settings: parse checks every key of a composed
config and returns Settings.

The keys, their defaults, meanings and units are the schema's (schema.py); single values are
checked by validate.py, the lattice, node, regions and vessels by tissue.py, the cell
types by cell_types.py, and the checks across sections are here. Every key is checked before
any work starts; a bad one raises ConfigError, whose message names the key, the value given and
what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from . import cell_types, tissue
from ..physics.anatomy import NodeAnatomy
from ..cells import CellType
from ..cells.placement import Region
from ..physics.receptors import Signalling, receptor_classes
from ..physics.grid import Grid
from ..physics.kinetics import UPTAKE_LAWS
from .schema import Il2rdConfig
from ..solvers.steady import PRECONDITIONERS, SolverOptions
from ..cells.dynamics import INITIAL_FIELDS, ReceptorFeedback
from ..physics.vessels import Vessels
from ..cells.fate import FateSettings
from ..solvers import kinds
from ..solvers.kinds import SolverKind
from .validate import ConfigError, boolean, choice, integer, number

SOLVER_KINDS = tuple(kinds.KINDS)  # solvers/kinds.py: what each implies

PRECISIONS = ("float32", "float64")
COMPRESSIONS = ("gzip", "zstd", "none")
MAX_SNAPSHOTS = 100_000  # bounds on a transient run's size, to catch unit slips (1e-6 for 1e6)
MAX_STEPS = 10**8

@dataclass(frozen=True)
class Problem:
    """What is simulated: the tissue, its cells and the physics (the science of a run)."""
    grid: Grid
    face_values_pM: tuple[float, ...]
    diffusion_um2_per_s: float
    decay_per_s: float
    uptake: str
    seed: int
    types: dict[str, CellType]
    placement: list[tuple[str, int, Region]]  # (type, count, region), in config order
    csv: Path | None
    signalling: Signalling
    volume_fraction: float = 1.0  # alpha, interstitial volume fraction
    tortuosity: float = 1.0  # lambda; D_eff = D / lambda^2
    node: NodeAnatomy | None = None  # the lymph node, when a region uses one of its compartments
    subgrid_uptake: bool = True  # the sub-grid closure with each type's radius_um (False: point sinks)
    vessels: Vessels = Vessels()  # exchange with blood and lymph
    feedback: ReceptorFeedback = ReceptorFeedback()  # solver.kind=coupled
    fate: FateSettings = FateSettings()  # solver.kind=tissue: division and death (fate.py)


@dataclass(frozen=True)
class Numerics:
    """How it is solved: the integrator, its steps and tolerances, the precision, the devices."""
    kind: SolverKind  # solver.kind (solvers/kinds.py)
    options: SolverOptions
    dt_s: float
    end_s: float
    snapshot_every_s: float
    precision: str
    shard: bool
    initial_field: str = "steady"  # solver.kind=coupled: dynamics.INITIAL_FIELDS

    @property
    def solver_kind(self) -> str:
        """The solver.kind value."""
        return self.kind.name

    @property
    def snapshot_times_s(self) -> list[float]:
        if not self.kind.transient:
            return [0.0]
        n = math.floor(self.end_s / self.snapshot_every_s + 1e-9)
        times = [i * self.snapshot_every_s for i in range(n + 1)]
        if self.end_s - times[-1] > 1e-9 * self.end_s:
            times.append(self.end_s)
        return times


@dataclass(frozen=True)
class Output:
    """What is kept: the folder, the file's contents and compression, the analyses run at the end."""
    output_dir: Path | None
    progress: bool
    compression: str
    attribution: bool = True  # compute the source attribution of (quasi-)steady fields
    overwrite: bool = False  # output.overwrite: replace another run's file in the output folder
    field_every: int = 1  # output.field_every: the field is stored at snapshots i % k == 0 and the last
    cells_every: int = 1  # output.cells_every: the same for the per-cell columns (io/layout.py CELL_COLUMNS)


@dataclass(frozen=True)
class Settings:
    """A checked config: the problem, the numerics that solve it, the output that keeps it."""
    problem: Problem
    numerics: Numerics
    output: Output


def compilation_cache(cfg: DictConfig) -> bool:
    """devices.compilation_cache, checked (a stored config from before the key existed: on)."""
    return boolean("devices.compilation_cache", OmegaConf.select(cfg, "devices.compilation_cache", default=True))

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

def check_steady_field_exists(kind: SolverKind, decay_per_s: float, grid: Grid, uptake: str,
                              secretion_molecules_per_s: float, uptake_capacity_molecules_per_s: float) -> None:
    """With no decay and no fixed face only the cells remove IL-2. Saturating uptake removes at
    most sum_i k_int R_i molecules/s, linear uptake any amount if some cell consumes; when
    secretion exceeds what can be removed, IL-2 accumulates for ever and no steady field exists
    (the transient solvers are fine: the field just grows)."""
    if kind.transient or decay_per_s > 0 or grid.passes_flux or secretion_molecules_per_s == 0:
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
    grid, _ = tissue.lattice(cfg)
    return tissue.node_builder(cfg, grid)()

def parse(cfg: DictConfig) -> Settings:
    """Check every key of a composed config and return typed Settings (raises ConfigError). What
    the machine must offer (devices for devices.shard, hdf5plugin for zstd) is host.check's."""
    _check_known_keys(cfg)
    grid, face_values = tissue.lattice(cfg)
    diffusion = number("physics.diffusion", cfg.physics.diffusion, low=0, low_open=True, unit="um^2/s")
    decay = number("physics.decay", cfg.physics.decay, low=0, unit="1/s")
    uptake = choice("physics.uptake", cfg.physics.uptake, UPTAKE_LAWS)
    volume_fraction = number("physics.volume_fraction", cfg.physics.volume_fraction, low=0, low_open=True, high=1,
                              unit="interstitial fraction of the tissue volume; ~0.2 - 0.4 in packed tissue")
    tortuosity = number("physics.tortuosity", cfg.physics.tortuosity, low=1,
                         unit="D_eff = D / tortuosity^2; ~1.6 in tissue")
    kind = kinds.KINDS[choice("solver.kind", cfg.solver.kind, SOLVER_KINDS)]
    cell_radius = cell_types.physics_cell_radius(cfg.physics.cell_radius, grid)
    dynamics_cfg = cfg.receptor_dynamics
    feedback = ReceptorFeedback(
        turnover_per_s=number("receptor_dynamics.turnover", dynamics_cfg.turnover, low=0, low_open=True, unit="1/s"),
        half_pstat5=number("receptor_dynamics.half_pstat5", dynamics_cfg.half_pstat5, low=0, low_open=True, high=1),
        hill=number("receptor_dynamics.hill", dynamics_cfg.hill, low=0, low_open=True),
    )
    rtol = number("solver.rtol", cfg.solver.rtol, low=0, low_open=True, high=0.1)
    dt = number("solver.dt", cfg.solver.dt, low=0, low_open=True, unit="s")
    options = SolverOptions(
        rtol=rtol,
        max_krylov=integer("solver.max_iter", cfg.solver.max_iter, low=1),
        max_newton=integer("solver.max_newton", cfg.solver.max_newton, low=1),
        preconditioner=choice("solver.preconditioner", cfg.solver.preconditioner, PRECONDITIONERS),
    )
    end = number("time.end", cfg.time.end, low=0, low_open=kind.transient, unit="s")
    every = number("time.snapshot_every", cfg.time.snapshot_every, low=0, low_open=True, unit="s")
    if kind.transient:
        if end / every > MAX_SNAPSHOTS:
            raise ConfigError("time.snapshot_every", every,
                              f"gives {end / every:.3g} snapshots up to time.end = {end:g} s; at most {MAX_SNAPSHOTS}")
        if end / dt > MAX_STEPS:
            raise ConfigError("solver.dt", dt, f"gives {end / dt:.3g} steps up to time.end = {end:g} s; at most {MAX_STEPS:.0e}")
    precision = choice("precision", cfg.precision, PRECISIONS)
    seed = integer("seed", cfg.seed, low=0)
    csv = cfg.cells.csv
    if csv is not None:
        csv = Path(str(csv))
        if not csv.is_file():
            what = "is a directory, not a file" if csv.is_dir() else "no such file"
            raise ConfigError("cells.csv", str(csv), f"{what} (a CSV with header x,y,z,type[,receptors], positions in um)")
    lymph_node = tissue.node_builder(cfg, grid)
    vessels = tissue.vessels(cfg.vessels, lymph_node)
    types, placement = cell_types.cell_types(cfg, grid, csv is not None, lymph_node, cell_radius)
    if not types:
        raise ConfigError("cell_types", {}, "define at least one cell type")
    cell_types.check_contact(kind, types)
    if csv is None:  # with a CSV the counts are known once it is read (Scenario.build; placement.read_csv)
        _check_not_empty(placement, grid, face_values, vessels)
        check_steady_field_exists(
            kind, decay, grid, uptake,
            sum(c * types[n].secretion_molecules_per_s for n, c, _ in placement),
            sum(c * types[n].k_int_per_s * float(sum(receptor_classes(types[n].receptors, types[n].il2rb, types[n].gc)))
                for n, c, _ in placement),
        )
    signalling = Signalling(
        ec50_max_pM=number("signalling.ec50_max", cfg.signalling.ec50_max, low=0, low_open=True, unit="pM"),
        ec50_k_receptors=number("signalling.ec50_k", cfg.signalling.ec50_k, low=0, low_open=True, unit="receptors"),
        ec50_exponent=number("signalling.ec50_exponent", cfg.signalling.ec50_exponent, low=0),
        hill=number("signalling.hill", cfg.signalling.hill, low=0, low_open=True),
        positive_threshold=number("signalling.pstat5_threshold", cfg.signalling.pstat5_threshold, low=0, low_open=True, high=1),
        reference_km_pM=number("signalling.reference_km", cfg.signalling.reference_km, low=0, low_open=True, unit="pM"),
    )
    shard = boolean("devices.shard", cfg.devices.shard)
    compilation_cache(cfg)  # checked here with the rest; read where the run starts (simulate.run)
    compression = choice("output.compression", cfg.output.compression, COMPRESSIONS)
    output_dir = cfg.output.dir
    problem = Problem(
        grid=grid,
        face_values_pM=face_values,
        diffusion_um2_per_s=diffusion,
        decay_per_s=decay,
        uptake=uptake,
        seed=seed,
        types=types,
        placement=placement,
        csv=csv,
        signalling=signalling,
        volume_fraction=volume_fraction,
        tortuosity=tortuosity,
        node=lymph_node.built[0] if lymph_node.built else None,
        subgrid_uptake=cell_radius is not None,
        vessels=vessels,
        feedback=feedback,
        fate=cell_types.fate_settings(cfg, kind, types, dt),
    )
    numerics = Numerics(
        kind=kind,
        options=options,
        dt_s=dt,
        end_s=end,
        snapshot_every_s=every,
        precision=precision,
        shard=shard,
        initial_field=choice("solver.initial_field", cfg.solver.initial_field, INITIAL_FIELDS),
    )
    output = Output(
        output_dir=None if output_dir is None else Path(str(output_dir)),
        progress=bool(cfg.output.progress),
        compression=compression,
        attribution=boolean("output.attribution", cfg.output.attribution),
        overwrite=boolean("output.overwrite", cfg.output.overwrite),
        field_every=integer("output.field_every", cfg.output.field_every, low=1),
        cells_every=integer("output.cells_every", cfg.output.cells_every, low=1),
    )
    return Settings(problem, numerics, output)
