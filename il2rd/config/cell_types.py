"""The cell types of a run, from its config (cell_types.<name>.*, physics.cell_radius, fate.*):
each type's secretion, receptors, radius, walk, fate rates and contact partners as a CellType,
and how many cells go where. Each function checks its keys and raises ConfigError naming the key.
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from .. import cells
from . import tissue
from ..cells import fate, motility
from ..physics import subgrid
from ..cells import CellType
from ..cells.fate import FateSettings
from ..solvers.kinds import SolverKind
from ..physics.grid import Grid
from .schema import PER_TYPE, CellTypeConfig
from .validate import ConfigError, boolean, integer, number

MAX_RECEPTOR_CV = 10.0  # a CV is a fraction (0.5 = 50 % spread); larger values are unit slips
# Bounds that catch unit slips: a cell secreting 1e9 molecules/s or bearing 1e9 receptors.
MAX_SECRETION_MOLECULES_PER_S = 1e9  # measured: ~1 - 100 per T cell
MAX_RECEPTORS_PER_CELL = 1e9  # measured: ~1e2 - 1e5

def physics_cell_radius(value: Any, grid: Grid) -> float | str | None:
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
    radius = number(key, value, low=0, low_open=True, unit=f"um; or {PER_TYPE}, or null for point sinks")
    if 1 in grid.shape:
        raise ConfigError(key, value, "the sub-grid closure is for 3-D lattices; set it to null (or per_type, which "
                          "falls back to point sinks in 2-D)")
    return radius

def _type_radius(key: str, value: Any, cell_radius: float | str | None, grid: Grid) -> float:
    """A type's sphere radius (um): its own radius key, or physics.cell_radius where that is a
    number; with the closure it must reach the voxel: h >= 4 pi G(1,0,0) a (subgrid.py)."""
    own = number(f"{key}.radius", value, low=0, low_open=True, unit="um")
    radius, source = (own, f"{key}.radius") if not isinstance(cell_radius, float) else (cell_radius, "physics.cell_radius")
    if cell_radius is not None:
        smallest = float(subgrid.cross_limit_um(radius))
        if grid.spacing_um < smallest:
            raise ConfigError(source, radius, f"needs voxels of at least {smallest:.3g} um (4 pi g1 a: below, even the "
                              f"7-voxel stencil of the sub-grid closure cannot absorb like the sphere); grid.spacing is "
                              f"{grid.spacing_um:g} um: coarsen it, give a smaller radius, or set physics.cell_radius=null "
                              f"(point sinks)")
    return radius

def _secretion_course(key: str, value: Any) -> dict:
    """CellType's secretion_onset_s, _peak_s, _off_s from [onset, peak, off] in hours (or null)."""
    if value is None:
        return {}
    if not isinstance(value, (list, tuple, ListConfig)) or len(value) != 3:
        raise ConfigError(key, value, "must be null or [onset, peak, off] in hours, e.g. [1, 7, 22] (Sojka 2008)")
    hours = [number(f"{key}[{i}]", v, low=0, unit="h") for i, v in enumerate(value)]
    if not hours[0] <= hours[1] <= hours[2]:
        raise ConfigError(key, list(value), "must satisfy onset <= peak <= off (hours)")
    return dict(zip(("secretion_onset_s", "secretion_peak_s", "secretion_off_s"), (3600.0 * h for h in hours)))

def _walk(key: str, speed: Any, motility_coefficient: Any) -> dict:
    """CellType's speed_um_per_s, motility_um2_per_s from speed (um/min) and motility (um^2/min):
    both 0 (the cells stay) or both > 0 (motility.py; persistence 8 M / (pi v^2))."""
    v = number(f"{key}.speed", speed, low=0, high=motility.MAX_SPEED_UM_PER_MIN, unit="um/min")
    m = number(f"{key}.motility", motility_coefficient, low=0, high=motility.MAX_MOTILITY_UM2_PER_MIN, unit="um^2/min")
    if (v > 0) != (m > 0):
        zero, other = (f"{key}.speed", f"{key}.motility") if v == 0 else (f"{key}.motility", f"{key}.speed")
        raise ConfigError(zero, 0.0, f"must be > 0 when {other} is (a walk needs both its mean speed and its "
                                     "motility coefficient; set both to 0 for cells that stay)")
    return dict(speed_um_per_s=v / 60.0, motility_um2_per_s=m / 60.0)

def _fate_rates(key: str, division: Any, death: Any, cycle: Any) -> dict:
    """CellType's division_per_s, death_per_s, cycle_s from division and death (1/day) and cycle (h)."""
    rate = lambda name, v: number(f"{key}.{name}", v, low=0, high=fate.MAX_RATE_PER_DAY, unit="1/day") / fate.DAY_S  # noqa: E731
    return dict(division_per_s=rate("division", division), death_per_s=rate("death", death),
                cycle_s=number(f"{key}.cycle", cycle, low=0, high=24.0 * 30, unit="h") * fate.HOUR_S)

def fate_settings(cfg, kind: SolverKind, types: dict, dt_s: float) -> FateSettings:
    """fate.*, checked: only with solver.kind=tissue, and steps short enough for the event scheme
    (fate.py: (b + d) dt <= MAX_EVENTS_PER_STEP for every type)."""
    f = cfg.fate
    enabled = boolean("fate.enabled", f.enabled)
    settings = FateSettings(
        enabled=enabled,
        capacity=number("fate.capacity", f.capacity, low=1, high=1000, unit="cell slots per placed cell"),
        averaging_s=number("fate.averaging", f.averaging, low=0, low_open=True, high=24.0 * 30, unit="h") * fate.HOUR_S,
        half_pstat5=number("fate.half_pstat5", f.half_pstat5, low=0, low_open=True, high=1),
        hill=number("fate.hill", f.hill, low=0, low_open=True, high=20),
    )
    if not enabled:
        return settings
    if not kind.moving:
        raise ConfigError("fate.enabled", True, f"needs solver.kind=tissue (cells that can be born and die); got {kind}")
    for name, t in types.items():
        events = (t.division_per_s + t.death_per_s) * dt_s
        if events > fate.MAX_EVENTS_PER_STEP:
            raise ConfigError("solver.dt", dt_s, f"gives (division + death) x dt = {events:.3g} for cell_types.{name}; at most "
                              f"{fate.MAX_EVENTS_PER_STEP} (one event in several steps: fate.py); take a shorter dt")
    return settings

def _contact(key: str, fraction: Any, partners: Any, names: list[str]) -> dict:
    """CellType's contact_fraction and contact_partners (type names; None = every type)."""
    fraction = number(f"{key}.contact", fraction, low=0, high=1, unit="fraction of the secretion")
    if partners is None:
        return dict(contact_fraction=fraction)
    if not isinstance(partners, (list, tuple, ListConfig)) or not partners:
        raise ConfigError(f"{key}.partners", partners, f"must be null or a non-empty list of cell types, from {names}")
    for p in partners:
        if p not in names:
            raise ConfigError(f"{key}.partners", list(partners), f"names {p!r}, not a cell type of this run; allowed: {names}")
    return dict(contact_fraction=fraction, contact_partners=tuple(str(p) for p in partners))

def check_contact(kind: SolverKind, types: dict) -> None:
    """Contact delivery needs a stepped run: the handed amount depends on the partner's free
    receptors at the step's start (contact.py)."""
    for name, t in types.items():
        if t.contact_fraction > 0 and not kind.cells:
            raise ConfigError(f"cell_types.{name}.contact", t.contact_fraction,
                              f"needs solver.kind=coupled or tissue (a step from the partner's receptors); got {kind}")

def _chains(key: str, il2rb: Any, gc: Any) -> dict:
    """il2rb, gc of a type: numbers >= 0 or null (inf: not limiting); gc only with il2rb."""
    if il2rb is None and gc is not None:
        raise ConfigError(f"{key}.gc", gc, "needs il2rb as well (with il2rb null every IL-2Ra is a high-affinity "
                                           "receptor and gc plays no part); set il2rb or set gc to null")
    return {chain: math.inf if value is None else number(f"{key}.{chain}", value, low=0, unit=f"{label} per cell")
            for chain, value, label in (("il2rb", il2rb, "IL-2Rb"), ("gc", gc, "gc"))}

def cell_types(cfg, grid: Grid, use_csv: bool, lymph_node=None, cell_radius: float | str | None = None):
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
            secretion_molecules_per_s=number(f"{key}.secretion", merged["secretion"], low=0,
                                              high=MAX_SECRETION_MOLECULES_PER_S, unit="molecules/s"),
            receptors=number(f"{key}.receptors", merged["receptors"], low=0, high=MAX_RECEPTORS_PER_CELL,
                              unit="IL-2Ra per cell"),
            **_chains(key, merged["il2rb"], merged["gc"]),
            km_pM=number(f"{key}.km", merged["km"], low=0, low_open=True, unit="pM"),
            km_intermediate_pM=number(f"{key}.km_intermediate", merged["km_intermediate"], low=0, low_open=True, unit="pM"),
            k_int_per_s=number(f"{key}.k_int", merged["k_int"], low=0, unit="1/s"),
            receptor_cv=number(f"{key}.receptor_cv", merged["receptor_cv"], low=0, high=MAX_RECEPTOR_CV,
                                unit="sd/mean of receptors between cells, a fraction: 0.5 is 50 %"),
            cd25_gain=number(f"{key}.cd25_gain", merged["cd25_gain"], low=1, unit="receptors at full pSTAT5 / basal"),
            **_secretion_course(f"{key}.secretion_course", merged["secretion_course"]),
            radius_um=_type_radius(key, merged["radius"], cell_radius, grid),
            **_walk(key, merged["speed"], merged["motility"]),
            **_fate_rates(key, merged["division"], merged["death"], merged["cycle"]),
            **_contact(key, merged["contact"], merged["partners"], list(cfg.cell_types)),
        )
        region = tissue.region(f"{key}.region", merged["region"], grid, lymph_node)
        count, density = merged["count"], merged["density"]
        if count is not None and density is not None:
            raise ConfigError(f"{key}.density", density, f"give count or density, not both (count = {count})")
        if use_csv:
            continue
        if density is not None:
            density = number(f"{key}.density", density, low=0, unit="cells/mm^3")
            count = round(density * region.volume_um3(grid) / 1e9)
            per_voxel = density * grid.voxel_volume_um3 / 1e9
            fit = capacity(name)
            if per_voxel > fit:
                raise ConfigError(f"{key}.density", density,
                                  f"is {per_voxel:.3g} cells per voxel; at most {_fitting(fit, name)} a {grid.spacing_um:g} um "
                                  f"voxel (<= {fit * 1e9 / grid.voxel_volume_um3:.4g} cells/mm^3)")
        count = integer(f"{key}.count", 0 if count is None else count)
        placement.append((name, count, region))
    voxels_needed = sum(c / capacity(n) for n, c, _ in placement)
    if voxels_needed > grid.n_voxels * (1 + 1e-12):
        rule = "one cell per voxel" if all(capacity(n) == 1 for n, _, _ in placement) else \
            "as many cells per voxel as fit it: sphere volumes <= h^3"
        raise ConfigError("cell_types", {n: c for n, c, _ in placement},
                          f"{sum(c for _, c, _ in placement)} cells requested need {voxels_needed:.6g} voxels but the lattice "
                          f"has {grid.n_voxels} ({rule})")
    return types, placement
