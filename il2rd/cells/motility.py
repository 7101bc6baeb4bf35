"""Cell motility: a persistent random walk, confined to each cell's region, with excluded volume.

The walk (per cell, per axis; Uhlenbeck & Ornstein 1930, Fuerth 1920): the velocity v (um/s) is an
Ornstein-Uhlenbeck process with persistence time tau (s) and motility coefficient M (um^2/s),

    dv = -v / tau dt + sqrt(2 M) / tau dW,        dx = v dt,

so that the stationary velocity variance per axis is M / tau, the mean squared speed 3 M / tau, and
from a stationary start the mean squared displacement in 3-D is Fuerth's

    <|x(t) - x(0)|^2> = 6 M [t - tau (1 - exp(-t / tau))]                                   (um^2)

(ballistic, <v^2> t^2, for t << tau; diffusive, 6 M t, for t >> tau: M is the "motility
coefficient" of two-photon imaging, MSD = 6 M t). A step of dt draws (x, v) from the walk's exact
Gaussian transition (Gillespie 1996, Phys Rev E 54:2084): with a = dt / tau,

    v' = v e^-a + sigma_v z_1,                       sigma_v^2 = (M / tau) (1 - e^-2a)
    x' = x + v tau (1 - e^-a) + (c / sigma_v) z_1 + sqrt(sigma_x^2 - c^2 / sigma_v^2) z_2
                                                     sigma_x^2 = M tau (2a - 3 + 4 e^-a - e^-2a),
                                                     c = M (1 - e^-a)^2,

so the walk's statistics at the step times are exact whatever dt (tests/test_motility.py checks the
mean squared displacement and speed against these forms).

Where a cell lives: its position is continuous (um) and it acts on the lattice from the voxel
holding its position (floor(x / h)), as placed cells do (cells.py). A step that would take a cell
out of the lattice through a non-periodic face, out of its region (its type's compartment, a
voxel mask), or into a voxel without room for it is refused: the cell stays where it was and its
velocity is reversed (it turns back, as a T cell does at the edge of the T zone). Periodic axes wrap.

Room (excluded volume, the placement rule of cells.py): the cells in one voxel must fit it by
volume, sum_i V_i <= h^3 with V_i = 4/3 pi a_i^3, and a cell that cannot share a voxel
(cells.shares_voxels: a > h/2) takes the whole voxel. Moves are decided together, in one pass: the
cells entering a voxel compete in a random order (drawn each step) and one of them, the first, is
admitted if it fits beside every cell in the voxel at the start of the step (those about to leave
included). A cell leaving a voxel frees its room for the next step, not this one (so two cells never
swap within a step, and a chain of cells following one another advances one cell per step), and a
voxel takes at most one newcomer per step (for cells of a voxel each, the room's own limit; for
small cells that share voxels a limit on how fast a voxel fills, at steps of a minute or less).
The rule is conservative, hence safe without iterating or sorting: no voxel ever holds more than
fits, at every step. (An iterated rule that lets cells enter voxels being vacated needs as many
rounds as the longest chain of refusals, ~11 in the 32^3 node and more in the default one; a sorted
queue of entrants per voxel cost a lexsort per step: both too slow for days of the default node.)

Everything here is jittable with the lattice static: cell positions, velocities and parameters are
(n, ...) arrays, so cells walk inside jitted, vmapped code. Units: um, s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from .. import pytree
from ..pytree import STATIC

ROOM_TOLERANCE = 1e-6  # relative: volumes that fit exactly still fit after float32 sums


@pytree.dataclass
@dataclass(frozen=True)
class Walk:
    """The cells' walk parameters, (n,) per cell, and their confinement.

    motility_um2_per_s: M (0: the cell does not move); persistence_s: tau (> 0); room: the share
    of a voxel's volume each cell takes, V_i / h^3 (1 for a cell that cannot share its voxel; 0:
    no excluded volume); region: (n,) int32, the row of `allowed` the cell must stay in;
    allowed: (n_regions, n_voxels) bool, the voxels of each region (flat C order). Static: the
    lattice shape, the voxel edge h (um) and which axes are periodic."""

    motility_um2_per_s: jax.Array
    persistence_s: jax.Array
    room: jax.Array
    region: jax.Array
    allowed: jax.Array
    shape: tuple[int, int, int] = field(metadata=STATIC)
    spacing_um: float = field(metadata=STATIC)
    periodic: tuple[bool, bool, bool] = field(default=(False, False, False), metadata=STATIC)


@pytree.dataclass
@dataclass(frozen=True)
class Walkers:
    """The cells' walk state: position_um (n, 3), velocity_um_per_s (n, 3), and displacement_um
    (n, 3), the total displacement since the start, not wrapped on periodic axes (tracks, MSD)."""

    position_um: jax.Array
    velocity_um_per_s: jax.Array
    displacement_um: jax.Array


def mean_speed_to_motility(speed_um_per_min: float, persistence_min: float) -> float:
    """M (um^2/min) of a walk whose mean speed is `speed_um_per_min`: the OU velocity is Maxwell
    distributed, mean speed sqrt(8/(3 pi)) v_rms with v_rms^2 = 3 M / tau, so
    M = (pi / 8) speed^2 tau."""
    return math.pi / 8.0 * speed_um_per_min**2 * persistence_min


def voxel_of(position_um, spacing_um: float, shape) -> jax.Array:
    """(n, 3) int32 voxel indices holding the positions (floor(x / h), clipped into the lattice)."""
    idx = jnp.floor(position_um / spacing_um).astype(jnp.int32)
    return jnp.clip(idx, 0, jnp.asarray(shape, jnp.int32) - 1)


def flat_index(voxel, shape) -> jax.Array:
    return (voxel[:, 0] * shape[1] + voxel[:, 1]) * shape[2] + voxel[:, 2]


def start(key, position_um, walk: Walk, dtype=jnp.float32) -> Walkers:
    """Cells at position_um (n, 3), with velocities drawn from the stationary distribution (per
    axis normal, variance M / tau), so that the MSD follows Fuerth's form from t = 0."""
    position = jnp.asarray(position_um, dtype).reshape(-1, 3)
    sd = jnp.sqrt(_safe_ratio(walk.motility_um2_per_s, walk.persistence_s)).astype(dtype)
    velocity = sd[:, None] * jax.random.normal(key, position.shape, dtype)
    return Walkers(position, velocity, jnp.zeros_like(position))


def voxel_centres_um(voxel, spacing_um: float, dtype=jnp.float32):
    """(n, 3) the centres of voxels (n, 3), um."""
    return (jnp.asarray(voxel, dtype) + 0.5) * spacing_um


def _safe_ratio(a, b):
    return jnp.where(b > 0, a / jnp.where(b > 0, b, 1.0), 0.0)


def propose(key, walkers: Walkers, walk: Walk, dt_s):
    """The unconstrained exact OU step of every cell: (new position, new velocity, displacement)."""
    dtype = walkers.position_um.dtype
    m = walk.motility_um2_per_s.astype(dtype)[:, None]
    tau = jnp.maximum(walk.persistence_s.astype(dtype), jnp.finfo(dtype).tiny)[:, None]
    a = dt_s / tau
    e1, e2 = jnp.exp(-a), jnp.exp(-2.0 * a)
    var_v = m / tau * (1.0 - e2)
    # 2a - 3 + 4 e^-a - e^-2a = 2/3 a^3 + O(a^4): its series where cancellation would eat it
    var_x = m * tau * jnp.where(a > 1e-2, 2.0 * a - 3.0 + 4.0 * e1 - e2, (2.0 / 3.0) * a**3 * (1.0 - 0.75 * a))
    cov = m * (1.0 - e1) ** 2
    sd_v = jnp.sqrt(var_v)
    along = jnp.where(sd_v > 0, cov / jnp.where(sd_v > 0, sd_v, 1.0), 0.0)
    rest = jnp.sqrt(jnp.maximum(var_x - along**2, 0.0))
    z1, z2 = jax.random.normal(key, (2,) + walkers.position_um.shape, dtype)
    v = walkers.velocity_um_per_s
    dx = v * tau * (1.0 - e1) + along * z1 + rest * z2
    return walkers.position_um + dx, v * e1 + sd_v * z1, dx


def step(key, walkers: Walkers, walk: Walk, dt_s) -> tuple[Walkers, jax.Array]:
    """One step of dt_s seconds: the OU step, then the moves refused (module docstring) that would
    leave the lattice or the cell's region or enter a voxel without room. Returns the new walkers
    and (n,) bool: which cells changed voxel."""
    move_key, order_key = jax.random.split(key)
    shape, h = walk.shape, walk.spacing_um
    extent = jnp.asarray(shape, walkers.position_um.dtype) * h
    position, velocity, dx = propose(move_key, walkers, walk, dt_s)
    periodic = jnp.asarray(walk.periodic)
    position = jnp.where(periodic, jnp.mod(position, extent), position)
    inside = jnp.all(periodic | ((position >= 0) & (position < extent)), axis=1)
    old = flat_index(voxel_of(walkers.position_um, h, shape), shape)
    new = flat_index(voxel_of(position, h, shape), shape)
    new = jnp.where(inside, new, old)
    allowed = inside & walk.allowed[walk.region, new]
    wants = allowed & (new != old)
    admitted = admit(old, new, wants, walk.room, jax.random.uniform(order_key, old.shape), math.prod(shape))
    ok = allowed & ((new == old) | admitted)
    keep = ok[:, None]
    return Walkers(jnp.where(keep, position, walkers.position_um), jnp.where(keep, velocity, -velocity),
                   walkers.displacement_um + jnp.where(keep, dx, 0.0)), ok & (new != old)


def admit(old, new, wants, room, priority, n_voxels: int):
    """Which of the cells that want to move from voxel `old` to `new` (flat, (n,)) may: into each
    voxel at most one cell per step, the one of lowest `priority` (ties: lowest index), if it fits
    beside every cell in the voxel at the start (leaving ones included): load + its room <= 1
    (module docstring). Two segment reductions, no sort."""
    room = room.astype(jnp.float32 if room.dtype == jnp.float16 else room.dtype)
    present = jax.ops.segment_sum(room, old, n_voxels)
    compete = wants & (room > 0)  # cells without excluded volume (room 0) always fit
    target = jnp.where(compete, new, n_voxels)  # n_voxels: not competing
    first = jax.ops.segment_min(jnp.where(compete, priority, jnp.inf), target, n_voxels + 1)
    index = jnp.arange(old.shape[0], dtype=jnp.int32)
    tied = compete & (priority == first[target])
    winner = jax.ops.segment_min(jnp.where(tied, index, old.shape[0]), target, n_voxels + 1)
    fits = jnp.append(present, jnp.inf)[target] + room <= 1.0 + ROOM_TOLERANCE
    return wants & ((room <= 0) | ((winner[target] == index) & fits))


def load_per_voxel(position_um, walk: Walk) -> jax.Array:
    """(n_voxels,) the summed `room` of the cells in each voxel (<= 1 everywhere when they fit)."""
    flat = flat_index(voxel_of(position_um, walk.spacing_um, walk.shape), walk.shape)
    return jax.ops.segment_sum(walk.room, flat, math.prod(walk.shape))


def fuerth_msd_um2(t_s, motility_um2_per_s: float, persistence_s: float, dimensions: int = 3):
    """Fuerth's mean squared displacement 2 d M [t - tau (1 - exp(-t / tau))] (um^2)."""
    t = np.asarray(t_s, np.float64)
    return 2 * dimensions * motility_um2_per_s * (t - persistence_s * (1.0 - np.exp(-t / persistence_s)))


# ---------------------------------------------------------------------------------------------
# A scenario's walk

MAX_SPEED_UM_PER_MIN = 60.0  # faster than any leukocyte crawls (T cells peak ~25 um/min)
MAX_MOTILITY_UM2_PER_MIN = 2000.0


def persistence_s(speed_um_per_s: float, motility_um2_per_s: float) -> float:
    """tau (s) of the walk with mean speed v and motility coefficient M: tau = 8 M / (pi v^2)
    (the inverse of :func:`mean_speed_to_motility`)."""
    return 8.0 * motility_um2_per_s / (math.pi * speed_um_per_s**2) if speed_um_per_s > 0 else 1.0


def substeps(types, dt_s: float, spacing_um: float) -> int:
    """Walk sub-steps per field step of dt_s: enough that the fastest type's mean path per
    sub-step, speed x dt, is at most one voxel edge (so a cell does not jump over its neighbours)."""
    fastest = max((t.speed_um_per_s for t in types.values()), default=0.0)
    return max(1, math.ceil(fastest * dt_s / spacing_um - 1e-9))


def build(grid, population, types, placement, subgrid: bool, dtype=jnp.float32) -> Walk:
    """The walk of a placed population: each cell's type's motility coefficient and persistence,
    its room in a voxel (the placement rule: V_i / h^3 with the sub-grid closure where the type may
    share a voxel, else the whole voxel), and its confinement: the union of the regions its type was
    placed in (placement: (type, count, placement.Region) requests; the whole lattice for a type placed
    from a CSV)."""
    from .. import cells  # placement rules and regions (the package's __init__ does not import this module)

    names = population.type_names
    per_type = lambda f: np.array([f(types[n]) for n in names], np.float64)[population.type_index]  # noqa: E731
    m = per_type(lambda t: t.motility_um2_per_s)
    tau = per_type(lambda t: persistence_s(t.speed_um_per_s, t.motility_um2_per_s))
    h = grid.spacing_um

    def room(t) -> float:
        if subgrid and cells.shares_voxels(h, t.radius_um):
            return float(cells.sphere_volume_um3(t.radius_um)) / h**3
        return 1.0

    masks = []
    for name in names:
        regions = [r for n, _, r in placement if n == name]
        mask = np.zeros(grid.shape, bool) if regions else np.ones(grid.shape, bool)
        for r in regions:
            mask |= r.mask(grid)
        masks.append(mask.ravel())
    return Walk(jnp.asarray(m, dtype), jnp.asarray(tau, dtype), jnp.asarray(per_type(room), dtype),
                jnp.asarray(population.type_index, jnp.int32), jnp.asarray(np.stack(masks) if masks else
                                                                            np.ones((1, grid.n_voxels), bool)),
                tuple(grid.shape), float(h), cells.periodic_axes(grid))
