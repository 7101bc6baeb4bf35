"""Cell fate: division and death driven by each cell's time-averaged pSTAT5 (solver.kind=tissue, fate.enabled).

Signal. Each cell integrates its pSTAT5 p(t) (receptors.py) over the averaging time tau_f,

    dp_bar/dt = (p - p_bar) / tau_f,     p_bar(t + dt) = p + (p_bar - p) exp(-dt / tau_f)

(exact for p held over the step; p_bar starts at the cell's pSTAT5 at t = 0, and a daughter takes
its mother's), and responds through h = p_bar^m / (K^m + p_bar^m) (K = fate.half_pstat5, m = fate.hill):

    division rate  b = b_max h            (per type: cell_types.<name>.division, at full signal)
    death rate     d = d_0 (1 - h)        (per type: cell_types.<name>.death, without signal)

so an IL-2-deprived cell dies at d_0 and a fully signalling one divides at b_max; a cell divides
only once cell_types.<name>.cycle has passed since its own last division (or its birth).

Events. In a step of dt each living cell divides with probability P_b and dies with P_d (not both),

    P_b = b phi,  P_d = d phi,  phi = (exp((b - d) dt) - 1) / (b - d)    (phi -> dt as b -> d),

so that 1 + P_b - P_d = exp((b - d) dt): the expected population of cells at constant rates is
N0 exp((b - d) t) at every step time, the birth-death process's exact mean, whatever dt
(tests/test_fate.py against that exponential and its variance). config/cell_types.py keeps (b + d) dt small.

Daughters. Arrays have fixed capacity (fate.capacity slots per placed cell of a type that can
divide) and an alive mask, so everything stays jitted and vmappable; each slot belongs to one
type for the whole run (its parameters, radius and region are its type's; its drawn chains a
fresh draw of the type's spread). A dividing cell's daughter takes a free slot of its type and is
placed one voxel edge away from its mother in a random face direction, in the mother's region,
into a voxel with room (the walk's excluded-volume rule, motility.admit); with no free slot or
no room the division waits: the cell stays `pending` and tries again at the next step without
drawing again (a dying cell's pending division is lost). A daughter inherits its mother's IL-2Ra,
p_bar and lineage (the id of the founder among the placed cells), takes the next unused cell id,
and walks from a fresh stationary velocity. Dead cells keep their slot (free for a daughter of
their type) and take up, secrete and occupy nothing.

Units: s, per s (the config gives per day and hours).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import motility
from .. import pytree
from ..pytree import STATIC

DAY_S = 86400.0
HOUR_S = 3600.0
MAX_RATE_PER_DAY = 24.0  # one division an hour: faster than any lymphocyte cycles (~6 h at best)
MAX_EVENTS_PER_STEP = 0.25  # (b + d) dt at most: most cells see no event in a step, as the scheme assumes


@dataclass(frozen=True)
class FateSettings:
    """fate.* of the config: enabled; capacity: slots per placed cell of a type that divides
    (daughters beyond them wait); averaging_s: tau_f; half_pstat5: K; hill: m."""

    enabled: bool = False
    capacity: float = 4.0
    averaging_s: float = 6.0 * HOUR_S
    half_pstat5: float = 0.5
    hill: float = 2.0


@pytree.dataclass
@dataclass(frozen=True)
class Rates:
    """Per slot (n,): b_max division_per_s, d_0 death_per_s, cycle_s; the slots' type index and
    their order by type (`by_type`, a stable argsort of type_index; `type_start`: where each type's
    run starts in it), for matching daughters to free slots of their type. Static: tau_f, K, m."""

    division_per_s: jax.Array
    death_per_s: jax.Array
    cycle_s: jax.Array
    type_index: jax.Array
    by_type: jax.Array
    type_start: jax.Array
    averaging_s: float = field(default=FateSettings.averaging_s, metadata=STATIC)
    half_pstat5: float = field(default=FateSettings.half_pstat5, metadata=STATIC)
    hill: float = field(default=FateSettings.hill, metadata=STATIC)


class FateState(NamedTuple):
    """Per slot (n,): alive, cell_id (unique over the run; -1 for a slot never used), parent (the
    mother's id, -1 for placed cells), lineage (the founder's id), divisions (of the cell's
    ancestry: a daughter starts at its mother's count, both + 1), pstat5_mean (p_bar),
    since_division_s, pending (a division waiting for a slot or room); next_id (scalar)."""

    alive: jax.Array
    cell_id: jax.Array
    parent: jax.Array
    lineage: jax.Array
    divisions: jax.Array
    pstat5_mean: jax.Array
    since_division_s: jax.Array
    pending: jax.Array
    next_id: jax.Array


COLUMNS = ("alive", "cell_id", "parent", "lineage", "divisions", "pstat5_mean")  # per snapshot (io/layout.py FATE_COLUMNS)


def response(pstat5_mean, rates: Rates):
    """h = p_bar^m / (K^m + p_bar^m) in [0, 1]."""
    pm = jnp.maximum(pstat5_mean, 0.0) ** rates.hill
    return pm / (rates.half_pstat5**rates.hill + pm)


def event_probabilities(division_per_s, death_per_s, dt_s):
    """(P_b, P_d) of one step (module docstring): exact in the mean, 1 + P_b - P_d = exp((b - d) dt)."""
    g = division_per_s - death_per_s
    x = g * dt_s
    small = jnp.abs(x) < 1e-4
    phi = jnp.where(small, dt_s * (1.0 + 0.5 * x + x * x / 6.0), jnp.expm1(x) / jnp.where(small, 1.0, g))
    p_b, p_d = division_per_s * phi, death_per_s * phi
    scale = jnp.maximum(1.0, p_b + p_d)  # never reached within MAX_EVENTS_PER_STEP
    return p_b / scale, p_d / scale


def start(alive, pstat5, dtype=jnp.float32, cycle_s=0.0) -> FateState:
    """The fate state at t = 0: the placed cells (alive) with ids 0..n0-1 as their own lineage,
    their pSTAT5 as its average, and free to divide at once (since_division_s = cycle_s, their type's
    cycle: a placed cell's last division lies at least a cycle back)."""
    alive = jnp.asarray(alive, bool)
    n = alive.shape[0]
    ids = jnp.where(alive, jnp.cumsum(alive).astype(jnp.int32) - 1, -1)
    zero = jnp.zeros(n, jnp.int32)
    return FateState(alive, ids, jnp.full(n, -1, jnp.int32), ids, zero, jnp.where(alive, pstat5, 0.0).astype(dtype),
                     jnp.broadcast_to(jnp.asarray(cycle_s, dtype), (n,)), jnp.zeros(n, bool), jnp.sum(alive).astype(jnp.int32))


_FACES = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float64)


def step(key, state: FateState, walkers: motility.Walkers, walk: motility.Walk, rates: Rates, pstat5, dt_s, receptors):
    """One step of dt_s of every cell's fate at pSTAT5 `pstat5` (n,): p_bar, deaths, divisions and
    the daughters' placement (module docstring). Returns (state, walkers, receptors) with the
    daughters written into their slots. walk: every slot's own room (not masked by alive: a
    daughter takes the room of her slot)."""
    n = state.alive.shape[0]
    dtype = state.pstat5_mean.dtype
    event_key, place_key, order_key, speed_key = jax.random.split(key, 4)
    alive = state.alive
    since = state.since_division_s + dt_s
    a = jnp.exp(-dt_s / rates.averaging_s)
    pbar = jnp.where(alive, pstat5 + (state.pstat5_mean - pstat5) * a, state.pstat5_mean).astype(dtype)
    h = response(pbar, rates)
    may_divide = alive & ~state.pending & (since >= rates.cycle_s)
    p_b, p_d = event_probabilities(jnp.where(may_divide, rates.division_per_s * h, 0.0),
                                   rates.death_per_s * (1.0 - h), dt_s)
    u = jax.random.uniform(event_key, (n,), dtype)
    dies = alive & (u < p_d)
    dividing = alive & ~dies & (state.pending | (u >= p_d) & (u < p_d + p_b))
    alive = alive & ~dies

    # the k-th dividing cell of a type takes the k-th free slot of that type
    order, first = rates.by_type, rates.type_start
    t_sorted = rates.type_index[order]
    free = ~alive
    rank = _rank_in_type(dividing[order], first, t_sorted)
    free_rank_base = _exclusive_cumsum(free[order])[first]
    n_free = jax.ops.segment_sum(free.astype(jnp.int32), rates.type_index, first.shape[0])
    free_positions = jnp.nonzero(free[order], size=n, fill_value=n - 1)[0]
    has_slot = dividing[order] & (rank < n_free[t_sorted])
    slot_sorted = free_positions[jnp.minimum(free_rank_base[t_sorted] + rank, n - 1)]
    mother_sorted = order
    mother_of = jnp.full(n, n, jnp.int32).at[jnp.where(has_slot, order[slot_sorted], n)].set(
        mother_sorted.astype(jnp.int32), mode="drop")
    candidate = mother_of < n
    m = jnp.minimum(mother_of, n - 1)

    # each daughter one voxel edge from its mother, in a random face direction, where there is room
    h_um = walk.spacing_um
    offset = jnp.asarray(_FACES * h_um, dtype)[jax.random.randint(place_key, (n,), 0, 6)]
    extent = jnp.asarray(walk.shape, dtype) * h_um
    periodic = jnp.asarray(walk.periodic)
    target = walkers.position_um[m] + offset
    target = jnp.where(periodic, jnp.mod(target, extent), target)
    inside = jnp.all(periodic | ((target >= 0) & (target < extent)), axis=1)
    n_voxels = math.prod(walk.shape)
    own = motility.flat_index(motility.voxel_of(walkers.position_um, h_um, walk.shape), walk.shape)
    new = jnp.where(inside, motility.flat_index(motility.voxel_of(target, h_um, walk.shape), walk.shape), 0)
    wants = candidate & inside & walk.allowed[walk.region, new]
    room = jnp.where(alive | candidate, walk.room, 0.0)
    old = jnp.where(candidate, n_voxels, own)  # daughters come from outside the lattice ("limbo")
    born = motility.admit(old, jnp.where(wants, new, own), wants, room, jax.random.uniform(order_key, (n,)),
                          n_voxels + 1)
    divided = jnp.zeros(n, bool).at[jnp.where(born, m, n)].set(True, mode="drop")

    new_ids = state.next_id + jnp.cumsum(born).astype(jnp.int32) - 1
    take = lambda mine, mothers: jnp.where(born, mothers, mine)  # noqa: E731
    divisions = state.divisions + divided.astype(jnp.int32)
    velocity_sd = jnp.sqrt(jnp.where(walk.persistence_s > 0, walk.motility_um2_per_s / walk.persistence_s, 0.0)).astype(dtype)
    fresh_velocity = velocity_sd[:, None] * jax.random.normal(speed_key, walkers.position_um.shape, dtype)
    walkers = motility.Walkers(
        jnp.where(born[:, None], target, walkers.position_um),
        jnp.where(born[:, None], fresh_velocity, walkers.velocity_um_per_s),
        jnp.where(born[:, None], walkers.displacement_um[m] + offset, walkers.displacement_um),
    )
    state = FateState(
        alive=alive | born,
        cell_id=jnp.where(born, new_ids, state.cell_id),
        parent=take(state.parent, state.cell_id[m]),
        lineage=take(state.lineage, state.lineage[m]),
        divisions=take(divisions, divisions[m]),
        pstat5_mean=take(pbar, pbar[m]),
        since_division_s=jnp.where(born | divided, 0.0, since).astype(dtype),
        pending=dividing & ~divided,
        next_id=state.next_id + jnp.sum(born).astype(jnp.int32),
    )
    return state, walkers, take(receptors, receptors[m])


def _exclusive_cumsum(x):
    x = x.astype(jnp.int32)
    return jnp.cumsum(x) - x


def _rank_in_type(flags_sorted, type_start, type_sorted):
    """(n,) for flags in by-type order: how many flagged entries of the same type come before each."""
    ex = _exclusive_cumsum(flags_sorted)
    return ex - ex[type_start][type_sorted]


# ---------------------------------------------------------------------------------------------
# A scenario's fate


def divides(t) -> bool:
    """Whether cells of type t (cells.CellType) can divide."""
    return t.division_per_s > 0


def with_slots(population, types, capacity: float, seed: int):
    """The population with room to grow: for each type that can divide, ceil((capacity - 1) n_t)
    free slots after its n_t placed cells, at the position of a random placed cell of the type
    and with a random placed cell's drawn chains (a fresh draw of the type's spread). Returns
    (population, alive (n,) bool: the placed cells)."""
    import dataclasses

    rng = np.random.default_rng([seed, 0xF47E])
    extra = []
    for t, name in enumerate(population.type_names):
        members = np.flatnonzero(population.type_index == t)
        if len(members) and divides(types[name]):
            extra.append(rng.choice(members, size=math.ceil((capacity - 1.0) * len(members))))
    rows = np.concatenate([np.arange(len(population))] + extra).astype(np.int64)
    pick = lambda a: None if a is None else np.asarray(a)[rows]  # noqa: E731
    grown = dataclasses.replace(population, voxel=population.voxel[rows], position_um=population.position_um[rows],
                                type_index=population.type_index[rows], receptors=pick(population.receptors),
                                il2rb=pick(population.il2rb), gc=pick(population.gc))
    alive = np.arange(len(rows)) < len(population)
    return grown, alive


def build(population, types, settings: FateSettings, dtype=jnp.float32) -> Rates:
    """The per-slot rates of a population (with its slots: :func:`with_slots`)."""
    names = population.type_names
    per_type = lambda f: jnp.asarray(np.array([f(types[n]) for n in names], np.float64)[population.type_index], dtype)  # noqa: E731
    index = np.asarray(population.type_index, np.int32)
    order = np.argsort(index, kind="stable").astype(np.int32)
    start_of = np.searchsorted(index[order], np.arange(len(names))).astype(np.int32)
    return Rates(per_type(lambda t: t.division_per_s), per_type(lambda t: t.death_per_s), per_type(lambda t: t.cycle_s),
                 jnp.asarray(index), jnp.asarray(order), jnp.asarray(np.minimum(start_of, max(len(index) - 1, 0))),
                 settings.averaging_s, settings.half_pstat5, settings.hill)
