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

and host-side facts: `kind` (its kinds.SolverKind: whether it steps at all, carries or moves cells,
and whether its field is a solve whose source attribution adds up), `saves` (the names `checkpoint`
stores). The state is the field c,
(c, IL-2Ra per cell) for Coupled, a TissueState (the field, IL-2Ra, the walk, its random key) for
Tissue. The steppers that carry cells (Coupled, Tissue) are cell_steppers.py's. A new stepper is a class
with these methods, added to KINDS here, with its SolverKind in kinds.py.

`advance` takes n steps as one jitted lax.scan; `advance_batch` and `initialize_batch` are the
same over each member of a stack of steppers of one treedef (`stack`: parameter sets of one lattice), so
a batch of coupled runs is one compiled program as a batch of steady ones is. `for_scenario` is
the one place that reads solver.kind. The host loop over snapshots is integrate.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ..cells import dynamics, fate, motility
from .. import pytree
from ..compilation import jit
from ..cells.dynamics import CellKinetics
from ..physics.grid import Grid
from ..physics.kinetics import FieldCoefficients
from ..pytree import STATIC
from . import kinds
from .kinds import SolverKind
from .steady import NewtonInfo, SolverOptions, solve_steady
from .transient import explicit_step, explicit_substeps, implicit_step
from .cell_steppers import Coupled, Tissue


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
    kind: ClassVar[SolverKind] = kinds.STEADY

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
    kind: ClassVar[SolverKind] = kinds.IMPLICIT

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
    kind: ClassVar[SolverKind] = kinds.EXPLICIT

    def init(self, t_s):
        return _zero_field(self.grid, self.coef)

    def step(self, state, t_s, dt_s):
        return explicit_step(state, self.grid, self.coef, dt_s), NewtonInfo.trivial(self.coef.dtype)

    def substeps(self, dt_s: float) -> int:
        return explicit_substeps(self.grid, self.coef, dt_s)


Stepper = Steady | BackwardEuler | ForwardEuler | Coupled | Tissue
KINDS = {s.kind.name: s for s in (Steady, BackwardEuler, ForwardEuler, Coupled, Tissue)}


def build(kind: str, coef: FieldCoefficients, grid: Grid, options: SolverOptions, cells: CellKinetics | None = None,
          initial_field: str = "steady", **tissue) -> Stepper:
    """The stepper of solver.kind `kind` (KINDS) on these coefficients; cells and initial_field:
    a coupled run's per-cell table (dynamics.cell_kinetics) and its initial field; tissue: a tissue
    run's walk, start_position_um, seed and walk_substeps (Tissue)."""
    if kind == Tissue.kind.name:
        return Tissue(coef, cells, grid=grid, options=options, initial_field=initial_field, **tissue)
    if kind == Coupled.kind.name:
        return Coupled(coef, cells, grid, options, initial_field)
    return KINDS[kind](coef, grid, options)


def for_scenario(scenario, coef: FieldCoefficients | None = None) -> Stepper:
    """The stepper of a built scenario's solver.kind (the one place that reads it), on the
    scenario's coefficients or `coef`."""
    problem, numerics = scenario.settings.problem, scenario.settings.numerics
    coef = scenario.coefficients if coef is None else coef
    kind = numerics.solver_kind
    cells = dynamics.cell_kinetics(scenario, coef.dtype) if numerics.kind.cells else None
    tissue = {}
    if numerics.kind.moving:
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
