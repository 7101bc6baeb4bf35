"""Steppers: every time integrator behind one protocol, as JAX-MD's (init_fn, apply_fn) pairs and
diffrax's `solver.step` are.

A stepper is a frozen dataclass registered as a JAX pytree (pytree.dataclass: its structure names the
class, so `initialize` and `advance` never run one stepper's program for another): its arrays (the
field coefficients, a coupled run's per-cell table) are traced leaves, its lattice and solver
options static. It has

    init(t_s)                -> (state, NewtonInfo)   the state at the first snapshot time t_s
    step(state, t_s, dt_s)   -> (state, NewtonInfo)   one step of dt_s seconds from t_s (pure, jittable)
    field(state)             -> c (pM)                the IL-2 field of a state
    substeps(dt_s)           -> int                   equal steps one requested step of dt_s needs (host)
    coefficients_at(state, t_s)  -> FieldCoefficients  the field's coefficients in that state
    cell_state(state, t_s)   -> dict                  the cells' own state (coupled: il2ra, secretion_course)
    checkpoint(state)        -> dict                  the state beside the field, by name, for the file
    restore(field, saved)    -> state                 the state again from the field and that dict (resume)

and host-side facts: `kind` (its solver.kind name), `transient` (whether it steps at all: Steady
does not), `attributable` (whether its field is a solve whose source attribution adds up: the
steady field, and a coupled or tissue run's last backward-Euler step, whose closure the
attribution reports), `saves` (the names `checkpoint` stores). The state is the field c,
(c, IL-2Ra per cell) for Coupled, a TissueState (the field, IL-2Ra, the walk, its random key) for
Tissue. A new stepper is a class here with these methods, added to KINDS (and config.SOLVER_KINDS).

`advance` takes n steps as one jitted lax.scan; `advance_batch` and `initialize_batch` are the
same over each member of a stack of steppers of one treedef (`stack`: parameter sets of one lattice), so
a batch of coupled runs is one compiled program as a batch of steady ones is. `for_scenario` is
the one place that reads solver.kind. The host loop over snapshots is integrate.py's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..cells import coupling, dynamics, fate, motility
from .. import pytree
from ..compilation import jit
from ..cells.dynamics import CellKinetics
from ..physics.grid import Grid
from ..physics.kinetics import FieldCoefficients
from ..pytree import STATIC
from .steady import NewtonInfo, SolverOptions, solve_steady
from .transient import explicit_step, explicit_substeps, implicit_step


def _saved(saved: dict, name: str, kind: str):
    if name not in saved:
        raise KeyError(f"a {kind} run's checkpoint holds {name}; this one holds only {sorted(saved) or 'the field'} "
                       "(written by an older il2rd?)")
    return saved[name]


def _zero_field(grid: Grid, coef: FieldCoefficients):
    return jnp.zeros(grid.shape, coef.dtype), NewtonInfo.trivial(coef.dtype)


class _FieldOnly:
    """What the steppers whose state is the field alone share: nothing beside it to checkpoint,
    no cells that change the coefficients, one step per requested step."""

    saves: ClassVar[tuple[str, ...]] = ()  # what `checkpoint` stores beside the field

    def field(self, state):
        return state

    def coefficients_at(self, state, t_s) -> FieldCoefficients:
        return self.coef

    def cell_state(self, state, t_s) -> dict:
        return {}

    def checkpoint(self, state) -> dict:
        return {}

    def restore(self, field, saved: dict):
        return jnp.asarray(field, self.coef.dtype)

    def substeps(self, dt_s: float) -> int:
        return 1


@pytree.dataclass
@dataclass(frozen=True)
class Steady(_FieldOnly):
    """The quasi-steady field (solvers/steady.py): init solves it; there is nothing to step."""

    coef: FieldCoefficients
    grid: Grid = field(metadata=STATIC)
    options: SolverOptions = field(metadata=STATIC)
    kind: ClassVar[str] = "steady"
    transient: ClassVar[bool] = False
    attributable: ClassVar[bool] = True

    def init(self, t_s):
        return solve_steady(self.grid, self.coef, None, self.options)

    def step(self, state, t_s, dt_s):
        raise TypeError("a steady solve has no time steps")

@pytree.dataclass
@dataclass(frozen=True)
class BackwardEuler(_FieldOnly):
    """solver.kind=implicit: backward Euler from no IL-2, first order, stable at any dt
    (solvers/transient.py implicit_step)."""

    coef: FieldCoefficients
    grid: Grid = field(metadata=STATIC)
    options: SolverOptions = field(metadata=STATIC)
    kind: ClassVar[str] = "implicit"
    transient: ClassVar[bool] = True
    attributable: ClassVar[bool] = False

    def init(self, t_s):
        return _zero_field(self.grid, self.coef)

    def step(self, state, t_s, dt_s):
        return implicit_step(state, self.grid, self.coef, dt_s, self.options)

@pytree.dataclass
@dataclass(frozen=True)
class ForwardEuler(_FieldOnly):
    """solver.kind=explicit: forward Euler from no IL-2; a requested step above the stability limit
    is taken as `substeps` equal steps below it (solvers/transient.py explicit_substeps)."""

    coef: FieldCoefficients
    grid: Grid = field(metadata=STATIC)
    options: SolverOptions = field(metadata=STATIC)  # unused by the step; kept so every stepper reports alike
    kind: ClassVar[str] = "explicit"
    transient: ClassVar[bool] = True
    attributable: ClassVar[bool] = False

    def init(self, t_s):
        return _zero_field(self.grid, self.coef)

    def step(self, state, t_s, dt_s):
        return explicit_step(state, self.grid, self.coef, dt_s), NewtonInfo.trivial(self.coef.dtype)

    def substeps(self, dt_s: float) -> int:
        return explicit_substeps(self.grid, self.coef, dt_s)


@pytree.dataclass
@dataclass(frozen=True)
class Coupled:
    """solver.kind=coupled (dynamics.py): state (c, IL-2Ra per cell); each step advances the
    receptors over dt at the pSTAT5 of the step's start, then the field one backward-Euler step
    with the receptors and secretion of the step's end."""

    coef: FieldCoefficients
    cells: CellKinetics
    grid: Grid = field(metadata=STATIC)
    options: SolverOptions = field(metadata=STATIC)
    initial_field: str = field(default="steady", metadata=STATIC)  # dynamics.INITIAL_FIELDS
    kind: ClassVar[str] = "coupled"
    saves: ClassVar[tuple[str, ...]] = ("il2ra",)
    transient: ClassVar[bool] = True
    attributable: ClassVar[bool] = True

    def init(self, t_s):
        return dynamics.initial_state(self.grid, self.coef, self.cells, self.options, t_s, self.initial_field)

    def step(self, state, t_s, dt_s):
        return dynamics.coupled_step(state, t_s, dt_s, self.grid, self.coef, self.cells, self.options)

    def field(self, state):
        return state[0]

    def coefficients_at(self, state, t_s) -> FieldCoefficients:
        return dynamics.coefficients_at(self.coef, self.cells, state[1], t_s)

    def cell_state(self, state, t_s) -> dict:
        """IL-2Ra per cell and each cell's secretion course factor f_i(t) (float64, host arrays); with
        contact delivery what each cell hands over and receives (dynamics.contact_columns)."""
        return dict(il2ra=np.asarray(state[1], np.float64),
                    secretion_course=np.asarray(dynamics.secretion_course(self.cells, t_s), np.float64),
                    **dynamics.contact_columns(self.cells, state[1], t_s))

    def checkpoint(self, state) -> dict:
        return {self.saves[0]: np.asarray(state[1])}

    def restore(self, field, saved: dict):
        dtype = self.coef.dtype
        return jnp.asarray(field, dtype), jnp.asarray(_saved(saved, "il2ra", self.kind), dtype)

    def substeps(self, dt_s: float) -> int:
        return 1


class TissueState(NamedTuple):
    """The state of solver.kind=tissue: the field (pM), each cell's IL-2Ra, the cells' walk
    (motility.Walkers), the random key of the next step (so a resumed run walks on as the
    uninterrupted one would) and the cells' fate (fate.FateState: all alive, unchanging, without
    fate.enabled)."""

    field: jax.Array
    receptors: jax.Array
    walkers: motility.Walkers
    key: jax.Array
    fate: fate.FateState


@pytree.dataclass
@dataclass(frozen=True)
class Tissue:
    """solver.kind=tissue: the coupled run (Coupled) with cells that move, and with fate.enabled
    divide and die. Each step of dt first (fate) decides each cell's division or death at its
    pSTAT5 in the state's field (fate.step), then walks the cells (motility.step, in
    `walk_substeps` equal sub-steps so that no cell crosses more than about a voxel per sub-step),
    then takes the coupled step with every living cell's uptake and secretion acting where it now
    is (its voxel, and with the sub-grid closure its stencil, rebuilt inside the step:
    coupling.stencils). Slots not alive take up, secrete and occupy nothing."""

    coef: FieldCoefficients
    cells: CellKinetics
    walk: motility.Walk
    start_position_um: jax.Array  # (n, 3) where the cells were placed
    seed: jax.Array  # the random key the walk starts from (from the run's seed)
    rates: fate.Rates
    alive: jax.Array  # (n,) bool: the slots holding a placed cell at t = 0
    grid: Grid = field(metadata=STATIC)
    options: SolverOptions = field(metadata=STATIC)
    initial_field: str = field(default="steady", metadata=STATIC)
    walk_substeps: int = field(default=1, metadata=STATIC)
    fate_enabled: bool = field(default=False, metadata=STATIC)
    kind: ClassVar[str] = "tissue"
    saves: ClassVar[tuple[str, ...]] = ("il2ra", "walk_position_um", "walk_velocity_um_per_s", "walk_displacement_um",
                                        "walk_key", *(f"fate_{name}" for name in fate.FateState._fields))
    transient: ClassVar[bool] = True
    attributable: ClassVar[bool] = True

    def cells_at(self, walkers: motility.Walkers, alive=None) -> CellKinetics:
        """The per-cell table with each cell where the walkers are (its voxel, its stencil), and
        the slots not `alive` without uptake or secretion."""
        voxel = motility.voxel_of(walkers.position_um, self.grid.spacing_um, self.grid.shape)
        cp = self.cells.coupling
        if cp is not None:
            flat, inside = coupling.stencils(voxel, cp.shape, cp.periodic)
            cp = dataclasses.replace(cp, flat=flat, inside=inside)
        cells = dataclasses.replace(self.cells, voxel=voxel, coupling=cp)
        if alive is None:
            return cells
        off = lambda a: jnp.where(alive, a, 0.0).astype(a.dtype)  # noqa: E731
        return dataclasses.replace(cells, k_int_per_s=off(cells.k_int_per_s),
                                   secretion_molecules_per_s=off(cells.secretion_molecules_per_s))

    def _walk_of(self, alive) -> motility.Walk:
        return dataclasses.replace(self.walk, room=jnp.where(alive, self.walk.room, 0.0).astype(self.walk.room.dtype))

    def init(self, t_s):
        key, start_key = jax.random.split(self.seed)
        dtype = self.coef.dtype
        walkers = motility.start(start_key, self.start_position_um, self.walk, dtype)
        cells = self.cells_at(walkers, self.alive)
        (c, receptors), info = dynamics.initial_state(self.grid, self.coef, cells, self.options, t_s, self.initial_field)
        fates = fate.start(self.alive, dynamics.pstat5_of(c, receptors, cells, t_s), dtype, self.rates.cycle_s)
        return TissueState(c, receptors, walkers, key, fates), info

    def step(self, state, t_s, dt_s):
        key, fate_key, *walk_keys = jax.random.split(state.key, 2 + self.walk_substeps)
        walkers, receptors, fates = state.walkers, state.receptors, state.fate
        if self.fate_enabled:  # first, at the pSTAT5 of the state (the field where the cells were), so that
            # the field step below acts with the cells that live at its end: its balance holds for them
            pstat5 = dynamics.pstat5_of(state.field, receptors, self.cells_at(walkers, fates.alive), t_s)
            fates, walkers, receptors = fate.step(fate_key, fates, walkers, self.walk, self.rates, pstat5, dt_s,
                                                  receptors)
        walk = self._walk_of(fates.alive)
        for k in walk_keys:
            walkers, _ = motility.step(k, walkers, walk, dt_s / self.walk_substeps)
        (c, receptors), info = dynamics.coupled_step((state.field, receptors), t_s, dt_s, self.grid, self.coef,
                                                     self.cells_at(walkers, fates.alive), self.options)
        return TissueState(c, receptors, walkers, key, fates), info

    def field(self, state):
        return state.field

    def coefficients_at(self, state, t_s) -> FieldCoefficients:
        return dynamics.coefficients_at(self.coef, self.cells_at(state.walkers, state.fate.alive), state.receptors, t_s)

    def cell_state(self, state, t_s) -> dict:
        """As Coupled's, and where the cells are: position_um (n, 3) and voxel (n, 3); with
        fate.enabled the fate columns (fate.COLUMNS: alive, cell_id, ...), float64 host arrays."""
        cells = self.cells_at(state.walkers)
        out = dict(il2ra=np.asarray(state.receptors, np.float64),
                   secretion_course=np.asarray(dynamics.secretion_course(cells, t_s), np.float64),
                   position_um=np.asarray(state.walkers.position_um, np.float64), voxel=np.asarray(cells.voxel),
                   **dynamics.contact_columns(self.cells_at(state.walkers, state.fate.alive), state.receptors, t_s))
        if self.fate_enabled:
            out.update({name: np.asarray(getattr(state.fate, name), np.float64) for name in fate.COLUMNS})
        return out

    def checkpoint(self, state) -> dict:
        w = state.walkers
        values = (state.receptors, w.position_um, w.velocity_um_per_s, w.displacement_um, state.key, *state.fate)
        return {name: np.asarray(v) for name, v in zip(self.saves, values)}

    def restore(self, field, saved: dict):
        dtype = self.coef.dtype
        get = lambda name, t=dtype: jnp.asarray(_saved(saved, name, self.kind), t)  # noqa: E731
        walkers = motility.Walkers(get("walk_position_um"), get("walk_velocity_um_per_s"), get("walk_displacement_um"))
        reference = fate.start(self.alive, jnp.zeros(self.alive.shape, dtype), dtype, self.rates.cycle_s)
        if "fate_alive" in saved or self.fate_enabled:
            fates = fate.FateState(*(get(f"fate_{name}", ref.dtype) for name, ref in zip(fate.FateState._fields, reference)))
        else:  # a file of a tissue run without fate from before fate existed: nothing was born or died
            fates = reference
        return TissueState(jnp.asarray(field, dtype), get("il2ra"), walkers, get("walk_key", jnp.uint32), fates)

    def substeps(self, dt_s: float) -> int:
        return 1


Stepper = Steady | BackwardEuler | ForwardEuler | Coupled | Tissue
KINDS = {s.kind: s for s in (Steady, BackwardEuler, ForwardEuler, Coupled, Tissue)}


def build(kind: str, coef: FieldCoefficients, grid: Grid, options: SolverOptions, cells: CellKinetics | None = None,
          initial_field: str = "steady", **tissue) -> Stepper:
    """The stepper of solver.kind `kind` (KINDS) on these coefficients; cells and initial_field:
    a coupled run's per-cell table (dynamics.cell_kinetics) and its initial field; tissue: a tissue
    run's walk, start_position_um, seed and walk_substeps (Tissue)."""
    if kind == Tissue.kind:
        return Tissue(coef, cells, grid=grid, options=options, initial_field=initial_field, **tissue)
    if kind == Coupled.kind:
        return Coupled(coef, cells, grid, options, initial_field)
    return KINDS[kind](coef, grid, options)


def for_scenario(scenario, coef: FieldCoefficients | None = None) -> Stepper:
    """The stepper of a built scenario's solver.kind (the one place that reads it), on the
    scenario's coefficients or `coef`."""
    problem, numerics = scenario.settings.problem, scenario.settings.numerics
    coef = scenario.coefficients if coef is None else coef
    kind = numerics.solver_kind
    cells = dynamics.cell_kinetics(scenario, coef.dtype) if kind in (Coupled.kind, Tissue.kind) else None
    tissue = {}
    if kind == Tissue.kind:
        pop = scenario.population
        alive = np.ones(len(pop), bool) if scenario.alive is None else scenario.alive
        tissue = dict(walk=motility.build(scenario.grid, pop, problem.types, problem.placement, problem.subgrid_uptake,
                                          coef.dtype),
                      start_position_um=jnp.asarray(pop.position_um, coef.dtype), seed=jax.random.PRNGKey(problem.seed),
                      rates=fate.build(pop, problem.types, problem.fate, coef.dtype), alive=jnp.asarray(alive),
                      walk_substeps=motility.substeps(problem.types, numerics.dt_s, scenario.grid.spacing_um),
                      fate_enabled=problem.fate.enabled)
    return build(kind, coef, scenario.grid, numerics.options, cells, numerics.initial_field, **tissue)


def saved_names(kind: str, fate_enabled: bool = False) -> tuple[str, ...]:
    """What a run of solver.kind `kind` needs from its checkpoint beside the field (its stepper's
    `saves`; a tissue run without fate can do without the fate state: Tissue.restore)."""
    names = KINDS[kind].saves
    return names if fate_enabled else tuple(n for n in names if not n.startswith("fate_"))


def stack(steppers: list[Stepper]) -> Stepper:
    """One stepper whose every array has a leading batch axis (same kind, lattice and shapes)."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *steppers)


def member(stacked, i: int):
    """Member i of a stacked stepper, or of a batch's state."""
    return jax.tree_util.tree_map(lambda leaf: leaf[i], stacked)


@jit
def initialize(stepper: Stepper, t_s):
    """stepper.init(t_s), compiled."""
    return stepper.init(t_s)


def _each(fn, *stacked):
    """fn over the members (the leading axis) of stacked pytrees: vmapped on an accelerator; on a CPU
    one member after another (lax.map), where a vmapped Newton or CG loop runs every member to the
    slowest one's iterations and gains no parallelism (a batch of 16 steady 64^3 solves took 2.7x
    as long vmapped as one by one). Either way one compiled program serves the whole batch."""
    if jax.default_backend() == "cpu":
        return jax.lax.map(lambda members: fn(*members), stacked)
    return jax.vmap(fn)(*stacked)


@jit
def initialize_batch(stepper: Stepper, t_s):
    """initialize for each member of a stacked stepper."""
    return _each(lambda s: s.init(t_s), stepper)


@jit(static_argnames=("n_steps",))
def advance(stepper: Stepper, state, t_s, dt_s, n_steps: int):
    """n_steps steps of dt_s from t_s as one lax.scan: the new state and the worst NewtonInfo
    of the steps (NewtonInfo.worst)."""
    dtype = stepper.coef.dtype

    def body(carry, k):
        state, info = carry
        state, step_info = stepper.step(state, t_s + k * dt_s, dt_s)
        return (state, info.worst(step_info)), None

    (state, info), _ = jax.lax.scan(body, (state, NewtonInfo.trivial(dtype)), jnp.arange(n_steps, dtype=dtype))
    return state, info


@jit(static_argnames=("n_steps",))
def advance_batch(stepper: Stepper, state, t_s, dt_s, n_steps: int):
    """advance for each member of a stacked stepper and its stacked state."""
    return _each(lambda s, x: advance(s, x, t_s, dt_s, n_steps), stepper, state)
