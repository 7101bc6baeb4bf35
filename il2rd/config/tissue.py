"""The space of a run, from its config: the lattice (grid:), the lymph node (node:), the regions
cells are placed in (cell_types.<name>.region) and the exchange with blood and lymph (vessels:).
Each function checks its keys and raises ConfigError naming the key (validate.py).
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..physics import anatomy, boundaries
from .. import resources
from ..physics.anatomy import AnatomyError, NodeAnatomy
from ..cells.placement import Region
from ..physics.grid import FACES, Grid
from .validate import ConfigError, choice, integer, number, vector3
from ..physics.vessels import Vessels

REGION_KINDS = ("lattice", "box", "sphere", *anatomy.COMPARTMENTS)
# Bounds that keep float32 finite (its norms square the field: 1e12^2 x 1e8 voxels < 3.4e38) and
# catch unit slips: IL-2 above 1 M (cell-side bounds: config/cell_types.py).
MAX_CONCENTRATION_PM = 1e12  # 1 mol/L
MAX_FOLLICLES = 1000  # their seeded placement compares each candidate with every accepted centre

def _per_face(key: str, value: Any, parse_one, default):
    """A value for every face from a single value or a {face: value} mapping."""
    if isinstance(value, (dict, DictConfig)):
        unknown = [k for k in value if k not in FACES]
        if unknown:
            raise ConfigError(f"{key}.{unknown[0]}", value[unknown[0]], f"unknown face; allowed: {', '.join(FACES)}")
        return tuple(parse_one(f"{key}.{f}", value[f]) if f in value else default for f in FACES)
    return tuple(parse_one(key, value) for _ in FACES)

def lattice(cfg) -> tuple[Grid, tuple[float, ...]]:
    shape = cfg.grid.shape
    if not isinstance(shape, (list, tuple, ListConfig)) or len(shape) != 3:
        raise ConfigError("grid.shape", shape, "must be a list of 3 positive integers [nx, ny, nz] (nz = 1 for 2-D)")
    shape = tuple(integer(f"grid.shape[{i}]", n, low=1) for i, n in enumerate(shape))
    # before anything lattice-sized is made; the other keys' values are checked later (parse)
    problem = resources.memory_problem(math.prod(shape), str(OmegaConf.select(cfg, "solver.kind", default="")),
                                       str(OmegaConf.select(cfg, "precision", default="")),
                                       OmegaConf.select(cfg, "physics.cell_radius", default=None) is not None,
                                       OmegaConf.select(cfg, "output.attribution", default=False) is True)
    if problem:
        raise ConfigError("grid.shape", list(shape), problem)
    spacing = number("grid.spacing", cfg.grid.spacing, low=0, low_open=True, unit="um")
    kinds = _per_face("grid.boundary", cfg.grid.boundary, lambda k, v: choice(k, v, tuple(boundaries.KINDS)),
                      boundaries.ZeroFlux.name)
    for axis in range(3):
        lo, hi = (boundaries.of(kind) for kind in kinds[2 * axis:2 * axis + 2])
        if (lo.wraps or hi.wraps) and lo != hi:  # a wrapping axis re-enters through its other face
            wrapping = lo if lo.wraps else hi
            raise ConfigError("grid.boundary", OmegaConf.to_container(cfg.grid.boundary) if isinstance(cfg.grid.boundary, DictConfig) else cfg.grid.boundary,
                              f"{wrapping.name} must be set on both {FACES[2 * axis]} and {FACES[2 * axis + 1]}")
    values = _per_face("grid.boundary_value", cfg.grid.boundary_value, lambda k, v: number(k, v, low=0, high=MAX_CONCENTRATION_PM, unit="pM"),
                       0.0)
    return Grid(shape, spacing, kinds), values

def node_builder(cfg, grid: Grid):
    """Check the node: keys and return a function that builds the NodeAnatomy (placing the
    follicles) on first use, so that a run that places no cell by compartment never needs a
    lattice large enough for the node's follicles."""
    n = cfg.node
    semi = n.semi_axes
    if semi is not None:
        if not isinstance(semi, (list, tuple, ListConfig)) or len(semi) != 3:
            raise ConfigError("node.semi_axes", semi, "must be null or a list of 3 numbers > 0 (um)")
        semi = tuple(number(f"node.semi_axes[{i}]", v, low=0, low_open=True, unit="um") for i, v in enumerate(semi))
    side = choice("node.cortex_side", n.cortex_side, FACES)
    capsule = number("node.capsule_thickness", n.capsule_thickness, low=0, low_open=True, unit="um")
    medulla = number("node.medulla_fraction", n.medulla_fraction, low=0, high=1)
    if medulla == 1:
        raise ConfigError("node.medulla_fraction", n.medulla_fraction, "must be < 1 (1 leaves no cortex)")
    depth = n.t_zone_depth
    if depth is not None:
        depth = number("node.t_zone_depth", depth, low=0, low_open=True, unit="um")
    f = n.follicles
    count = integer("node.follicles.count", f.count, low=0)
    if count > MAX_FOLLICLES:
        raise ConfigError("node.follicles.count", count, f"must be at most {MAX_FOLLICLES} (a mouse node holds a dozen or so)")
    radius = number("node.follicles.radius", f.radius, low=0, low_open=True, unit="um")
    spread = number("node.follicles.spread", f.spread, low=0, low_open=True, high=180, unit="degrees")
    seed = integer("node.follicles.seed", f.seed, low=0)
    centers = f.centers
    if centers is not None:
        if not isinstance(centers, (list, tuple, ListConfig)):
            raise ConfigError("node.follicles.centers", centers, "must be null or a list of [x, y, z] (um)")
        centers = tuple(vector3(f"node.follicles.centers[{i}]", c) for i, c in enumerate(centers))
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

def region(key: str, node: Any, grid: Grid, lymph_node=None) -> Region:
    if node is None:
        return Region()
    if not isinstance(node, (dict, DictConfig)):
        raise ConfigError(key, node, f"must be null or a mapping {{kind: {'|'.join(REGION_KINDS[1:])}, ...}}")
    kind = choice(f"{key}.kind", node.get("kind", "lattice"), REGION_KINDS)
    allowed_keys = {"box": {"kind", "lo", "hi"}, "sphere": {"kind", "center", "radius"}}.get(kind, {"kind"})  # others: kind only
    for k in node:
        if k not in allowed_keys:
            raise ConfigError(f"{key}.{k}", node[k], f"not a key of a {kind} region; allowed: {', '.join(sorted(allowed_keys))}")
    if kind == "box":
        if "lo" not in node or "hi" not in node:
            raise ConfigError(key, node, "a box region needs lo and hi corners [x, y, z] (um)")
        lo, hi = vector3(f"{key}.lo", node["lo"]), vector3(f"{key}.hi", node["hi"])
        if any(a >= b for a, b in zip(lo, hi)):
            raise ConfigError(f"{key}.hi", list(hi), f"must exceed lo = {list(lo)} on every axis")
        region = Region("box", lo_um=lo, hi_um=hi)
    elif kind == "sphere":
        if "center" not in node or "radius" not in node:
            raise ConfigError(key, node, "a sphere region needs center [x, y, z] and radius (um)")
        region = Region("sphere", centre_um=vector3(f"{key}.center", node["center"]),
                        radius_um=number(f"{key}.radius", node["radius"], low=0, low_open=True, unit="um"))
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

def vessels(cfg, lymph_node) -> Vessels:
    vessels = Vessels(
        blood_il2_pM=number("vessels.blood_il2", cfg.blood_il2, low=0, high=MAX_CONCENTRATION_PM, unit="pM"),
        hev_density_per_mm3=number("vessels.hev_density", cfg.hev_density, low=0, unit="HEV voxels per mm^3 of T zone"),
        hev_exchange_per_s=number("vessels.hev_exchange", cfg.hev_exchange, low=0, unit="1/s"),
        lymph_drainage_per_s=number("vessels.lymph_drainage", cfg.lymph_drainage, low=0, unit="1/s"),
        capillary_exchange_per_s=number("vessels.capillary_exchange", cfg.capillary_exchange, low=0, unit="1/s"),
        afferent_lymph_pM=number("vessels.afferent_lymph_il2", cfg.afferent_lymph_il2, low=0, high=MAX_CONCENTRATION_PM,
                                  unit="pM"),
        afferent_exchange_per_s=number("vessels.afferent_exchange", cfg.afferent_exchange, low=0, unit="1/s"),
    )
    if vessels.active:
        lymph_node()  # HEVs, capillaries and sinuses sit in the node's compartments: build it (and check it fits) now
    return vessels
