"""Lymph-node anatomy: an ellipsoidal node and its compartments, as voxel masks.

A mouse lymph node is a bean-shaped organ 0.5 - 2 mm across (../shared/science.md). il2rd models
it as an ellipsoid centred in the lattice,

    node = { p : rho(p) <= 1 },    rho(p)^2 = sum_i ((p_i - c_i) / a_i)^2        (um)

with centre c (the lattice's centre) and semi-axes a (um; default 0.45 x the lattice extent per
axis, so the node spans 90 % of the lattice and a margin of extranodal tissue keeps the lattice
faces off the capsule). A lattice one voxel thick (nz = 1) is a section through the node's centre:
its flat axis is left out of rho (a_z = inf).

The node is polarised along one lattice axis: the cortex (B-cell follicles) faces the lattice face
`cortex_side` (default y_hi), the medulla and hilum face the opposite one. With the normalised
coordinate along that axis

    s(p) = sigma (p_k - c_k) / a_k,     in [-1, 1] inside the node

(k the axis, sigma = +1 for a *_hi side, -1 for *_lo), the compartments are, in order of
precedence (each voxel belongs to one, by its centre):

    capsule          node voxels outside the inner ellipsoid with semi-axes a - t_capsule: the
                     capsule and subcapsular sinus, a shell about t_capsule thick (exactly so on
                     the axes; default 20 um: a ~5 um collagen capsule over a 10 - 20 um sinus).
    follicle         spheres of radius R_f (default 80 um, follicles 100 - 200 um across) whose
                     centres lie t_capsule + R_f below the surface (the follicle touches the
                     subcapsular sinus, as B-cell follicles do), in directions within
                     `spread` degrees (default 60) of the cortex axis, drawn seeded and uniform on
                     that cap, no two overlapping (centres >= 2 R_f apart).
    medulla          the remaining interior with s < -1 + 2 f_m: the fraction f_m (default 0.3)
                     of the node's length along the axis farthest from the cortex, the hilar side
                     (with f_m = 0.3 about a fifth of the node's volume; a plausible default, not a
                     measured one: set it per node).
    t_zone           the remaining interior inside the ellipsoid with semi-axes a - d_T, the deep
                     central paracortex under the follicles; d_T (default t_capsule + R_f, the
                     depth of the follicle centres) is where the T zone begins, so follicles
                     bulge into it as they do at the cortex-paracortex border. With the defaults
                     the T zone is the largest compartment (40 - 50 % of the node at 10 um voxels).
    interfollicular  the rest of the interior: the outer cortex between and around the follicles,
                     outside the T zone.

`node` is the whole ellipsoid (all five). Masks are built from the three 1-D voxel-centre axes by
broadcasting (as placement.Region.mask), never from an (n_voxels, 3) array, so a 100^3 lattice (1 mm^3
at 10 um) takes a few milliseconds per compartment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .grid import FACES, Grid

COMPARTMENTS = ("node", "capsule", "follicle", "medulla", "t_zone", "interfollicular")
"""Region kinds that refer to the node's anatomy (placement.Region kind names)."""

LABELS = {"outside": 0, "capsule": 1, "follicle": 2, "medulla": 3, "t_zone": 4, "interfollicular": 5}
"""Integer labels of :func:`NodeAnatomy.labels` (0 outside the node)."""

DEFAULT_FILL = 0.9  # node extent / lattice extent per axis when semi-axes are not given
MAX_TRIES_PER_FOLLICLE = 500  # rejection sampling of non-overlapping follicle centres


class AnatomyError(ValueError):
    """A node geometry that cannot be built; `key`, `value` and `allowed` as in ConfigError."""

    def __init__(self, key: str, value, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key} = {value!r}: {allowed}")


@dataclass(frozen=True)
class NodeAnatomy:
    """A resolved node geometry (um): hashable, so a placement.Region can carry it.

    centre_um, semi_axes_um: the ellipsoid (inf along a flat axis); cortex_axis, cortex_sign:
    the lattice axis (0, 1, 2) and direction (+1/-1) the cortex faces; capsule_um: t_capsule;
    medulla_fraction: f_m; t_zone_depth_um: d_T; follicle_radius_um: R_f;
    follicle_centres_um: one (x, y, z) per follicle.
    """

    centre_um: tuple[float, float, float]
    semi_axes_um: tuple[float, float, float]
    cortex_axis: int = 1
    cortex_sign: int = 1
    capsule_um: float = 20.0
    medulla_fraction: float = 0.3
    t_zone_depth_um: float = 100.0
    follicle_radius_um: float = 80.0
    follicle_centres_um: tuple[tuple[float, float, float], ...] = ()

    # ----------------------------------------------------------------------------- membership
    def _rho2(self, x, y, z, shrink_um: float = 0.0):
        """sum_i ((p_i - c_i)/(a_i - shrink))^2 (dimensionless); <= 1 inside that ellipsoid."""
        total = 0.0
        for p, c, a in zip((x, y, z), self.centre_um, self.semi_axes_um):
            if math.isinf(a):
                continue
            total = total + ((p - c) / (a - shrink_um)) ** 2
        return total

    def _s(self, x, y, z):
        """Normalised coordinate along the cortex axis, +1 at the cortical pole, -1 at the hilum."""
        k = self.cortex_axis
        return self.cortex_sign * ((x, y, z)[k] - self.centre_um[k]) / self.semi_axes_um[k]

    def _in_follicle(self, x, y, z):
        shape = np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z))
        inside = np.zeros(shape, bool)
        r2 = self.follicle_radius_um**2
        for cx, cy, cz in self.follicle_centres_um:
            inside |= (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= r2
        return inside

    def contains(self, kind: str, x, y, z):
        """Membership of points x, y, z (um; any broadcastable shapes) in compartment `kind`."""
        node = self._rho2(x, y, z) <= 1.0
        if kind == "node":
            return np.broadcast_to(node, np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z)))
        interior = self._rho2(x, y, z, self.capsule_um) <= 1.0  # inside the capsule, hence in the node
        if kind == "capsule":
            return node & ~interior
        follicle = interior & self._in_follicle(x, y, z)
        if kind == "follicle":
            return follicle
        rest = interior & ~follicle
        medulla = self._s(x, y, z) < -1.0 + 2.0 * self.medulla_fraction
        if kind == "medulla":
            return rest & medulla
        rest = rest & ~medulla
        t_zone = self._rho2(x, y, z, self.t_zone_depth_um) <= 1.0
        if kind == "t_zone":
            return rest & t_zone
        if kind == "interfollicular":
            return rest & ~t_zone
        raise ValueError(f"unknown compartment {kind!r}; allowed: {', '.join(COMPARTMENTS)}")

    def mask(self, kind: str, grid: Grid) -> np.ndarray:
        """(nx, ny, nz) voxels whose centres lie in compartment `kind` (from the 1-D axes)."""
        x, y, z = (grid.centres_um(a) for a in range(3))
        inside = self.contains(kind, x[:, None, None], y[None, :, None], z[None, None, :])
        return np.broadcast_to(inside, grid.shape)

    def labels(self, grid: Grid) -> np.ndarray:
        """(nx, ny, nz) int8 compartment labels (:data:`LABELS`; 0 outside the node)."""
        out = np.zeros(grid.shape, np.int8)
        for name, label in LABELS.items():
            if name != "outside":
                out[self.mask(name, grid)] = label
        return out

    def volumes_um3(self, grid: Grid) -> dict[str, float]:
        """Each compartment's volume as counted in voxels (um^3)."""
        counts = np.bincount(self.labels(grid).ravel(), minlength=len(LABELS))
        out = {name: float(counts[label]) * grid.voxel_volume_um3 for name, label in LABELS.items() if name != "outside"}
        out["node"] = sum(out.values())
        return out


# ------------------------------------------------------------------------------------- building
def default_semi_axes_um(grid: Grid) -> tuple[float, float, float]:
    """0.45 x the lattice extent per axis (the node spans 90 % of the lattice); inf on a flat axis."""
    return tuple(math.inf if n == 1 else DEFAULT_FILL * e / 2 for n, e in zip(grid.shape, grid.extent_um))


def surface_distance_um(semi_axes_um, direction) -> float:
    """Distance from the centre to the ellipsoid's surface along a unit vector: 1/sqrt(sum (e_i/a_i)^2)."""
    return 1.0 / math.sqrt(sum((e / a) ** 2 for e, a in zip(direction, semi_axes_um) if not math.isinf(a)))


def place_follicles(centre_um, semi_axes_um, cortex_axis: int, cortex_sign: int, capsule_um: float,
                    radius_um: float, count: int, spread_deg: float, seed: int) -> tuple[tuple[float, float, float], ...]:
    """`count` non-overlapping follicle centres (um), seeded.

    Each direction e is uniform on the cap of half-angle `spread_deg` around the cortex axis
    (cos(theta) uniform on [cos(spread), 1], azimuth uniform; on a section through the node,
    nz = 1, theta uniform in [-spread, spread] within the plane); the centre sits at
    c + e (r_s(e) - t_capsule - R_f), r_s(e) the distance to the surface along e. A candidate
    closer than 2 R_f to an accepted one is redrawn; AnatomyError if `count` do not fit.
    """
    rng = np.random.default_rng(seed)
    flat = [k for k, a in enumerate(semi_axes_um) if math.isinf(a)]
    k = cortex_axis
    others = [j for j in range(3) if j != k and j not in flat]
    cos_max = math.cos(math.radians(spread_deg))
    centres: list[np.ndarray] = []
    tries = 0
    while len(centres) < count:
        tries += 1
        if tries > MAX_TRIES_PER_FOLLICLE * max(count, 1):
            raise AnatomyError(
                "node.follicles.count", count,
                f"only {len(centres)} non-overlapping follicles of radius {radius_um:g} um fit within "
                f"{spread_deg:g} degrees of the cortex pole of a node with semi-axes "
                f"{[round(a, 3) for a in semi_axes_um]} um; lower node.follicles.count or .radius, "
                f"widen node.follicles.spread, or enlarge the node/lattice")
        e = np.zeros(3)
        if len(others) == 2:
            cos_t = rng.uniform(cos_max, 1.0)
            phi = rng.uniform(0.0, 2.0 * math.pi)
            sin_t = math.sqrt(max(0.0, 1.0 - cos_t**2))
            e[k] = cortex_sign * cos_t
            e[others[0]], e[others[1]] = sin_t * math.cos(phi), sin_t * math.sin(phi)
        else:
            theta = rng.uniform(-math.radians(spread_deg), math.radians(spread_deg))
            e[k] = cortex_sign * math.cos(theta)
            if others:
                e[others[0]] = math.sin(theta)
        depth = surface_distance_um(semi_axes_um, e) - capsule_um - radius_um
        if depth <= 0:
            raise AnatomyError("node.follicles.radius", radius_um,
                               f"follicles of this radius under a {capsule_um:g} um capsule do not fit in a node with "
                               f"semi-axes {[round(a, 3) for a in semi_axes_um]} um")
        p = np.asarray(centre_um) + depth * e
        if all(np.sum((p - q) ** 2) >= (2.0 * radius_um) ** 2 for q in centres):
            centres.append(p)
    return tuple(tuple(float(v) for v in p) for p in centres)


def build(grid: Grid, *, semi_axes_um=None, cortex_side: str = "y_hi", capsule_um: float = 20.0,
          medulla_fraction: float = 0.3, t_zone_depth_um: float | None = None, follicle_radius_um: float = 80.0,
          follicle_count: int = 8, follicle_spread_deg: float = 60.0, follicle_seed: int = 0,
          follicle_centres_um=None) -> NodeAnatomy:
    """A NodeAnatomy centred in `grid` (defaults as in the module docstring; AnatomyError names
    the config key of a geometry that does not fit). Explicit follicle centres replace the
    seeded ones (and the count)."""
    centre = tuple(e / 2 for e in grid.extent_um)
    axes = default_semi_axes_um(grid) if semi_axes_um is None else tuple(
        math.inf if n == 1 else float(a) for n, a in zip(grid.shape, semi_axes_um))
    for i, (a, e, n) in enumerate(zip(axes, grid.extent_um, grid.shape)):
        if n > 1 and a > e / 2 * (1 + 1e-12):
            raise AnatomyError("node.semi_axes", list(semi_axes_um),
                               f"the node must lie inside the lattice: semi-axis {'xyz'[i]} = {a:g} um exceeds half "
                               f"the lattice extent ({e / 2:g} um)")
    side = FACES.index(cortex_side)
    k, sign = side // 2, (1 if side % 2 else -1)
    if grid.shape[k] == 1:
        raise AnatomyError("node.cortex_side", cortex_side, f"the lattice is flat along {'xyz'[k]} (one voxel); "
                           f"choose a side of an axis with more than one voxel")
    finite = [a for a in axes if not math.isinf(a)]
    if capsule_um >= min(finite):
        raise AnatomyError("node.capsule_thickness", capsule_um,
                           f"must be thinner than the node's smallest semi-axis ({min(finite):g} um)")
    depth = capsule_um + follicle_radius_um if t_zone_depth_um is None else t_zone_depth_um
    if depth >= min(finite):
        key, value = ("node.t_zone_depth", t_zone_depth_um) if t_zone_depth_um is not None else (
            "node.follicles.radius", follicle_radius_um)
        raise AnatomyError(key, value, f"puts the T zone's boundary {depth:g} um below the surface of a node whose "
                           f"smallest semi-axis is {min(finite):g} um: no T zone is left")
    if follicle_centres_um is None:
        centres = place_follicles(centre, axes, k, sign, capsule_um, follicle_radius_um, follicle_count,
                                  follicle_spread_deg, follicle_seed)
    else:
        centres = tuple(tuple(float(v) for v in p) for p in follicle_centres_um)
    geometry = NodeAnatomy(centre, axes, k, sign, capsule_um, medulla_fraction, depth, follicle_radius_um, centres)
    if follicle_centres_um is not None:
        for i, p in enumerate(centres):
            if geometry._rho2(*p) > 1.0:
                raise AnatomyError(f"node.follicles.centers[{i}]", list(p),
                                   f"lies outside the node (an ellipsoid centred at {list(centre)} um with semi-axes "
                                   f"{[round(a, 6) for a in axes]} um)")
    return geometry
