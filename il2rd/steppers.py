"""Steppers: every time integrator behind one protocol, as JAX-MD's (init_fn, apply_fn) pairs and
diffrax's `solver.step` are.

A stepper is a frozen dataclass registered as a JAX pytree: its arrays (the field coefficients, a
coupled run's per-cell table) are traced leaves, its lattice and solver options static. It has

    init(t_s)                -> (state, NewtonInfo)   the state at the first snapshot time t_s
    step(state, t_s, dt_s)   -> (state, NewtonInfo)   one step of dt_s seconds from t_s (pure, jittable)
    field(state)             -> c (pM)                the IL-2 field of a state
    substeps(dt_s)           -> int                   equal steps one requested step of dt_s needs (host)
    coefficients_at(state, t_s)  -> FieldCoefficients  the field's coefficients in that state
    cell_state(state, t_s)   -> dict                  the cells' own state (coupled: il2ra, secretion_course)

and host-side facts: `kind` (its solver.kind name), `transient` (whether it steps at all: Steady
does not), `attributable` (whether its field is a solve whose source attribution adds up: the
steady field, and a coupled run's last backward-Euler step, whose closure the attribution reports). The state is the field c, or (c, IL-2Ra per cell) for Coupled.

`advance` takes n steps as one jitted lax.scan; `advance_batch` and `initialize_batch` are the
same vmapped over a stack of steppers of one treedef (`stack`: parameter sets of one lattice), so
a batch of coupled runs is one compiled program as a batch of steady ones is. `for_scenario` is
the one place that reads solver.kind. The host loop over snapshots is integrate.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from . import dynamics
from .compilation import jit
from .dynamics import CellKinetics
from .grid import Grid
from .kinetics import FieldCoefficients
from .solvers.steady import NewtonInfo, SolverOptions, solve_steady
from .solvers.transient import explicit_step, explicit_substeps, implicit_step

STATIC = dict(static=True)


def _zero_field(grid: Grid, coef: FieldCoefficients):
    return jnp.zeros(grid.shape, coef.dtype), NewtonInfo.trivial(coef.dtype)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Steady:
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

    def field(self, state):
        return state

    def coefficients_at(self, state, t_s) -> FieldCoefficients:
        return self.coef

    def cell_state(self, state, t_s) -> dict:
        return {}

    def substeps(self, dt_s: float) -> int:
        return 1


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class BackwardEuler:
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

    def field(self, state):
        return state

    def coefficients_at(self, state, t_s) -> FieldCoefficients:
        return self.coef

    def cell_state(self, state, t_s) -> dict:
        return {}

    def substeps(self, dt_s: float) -> int:
        return 1


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ForwardEuler:
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

    def field(self, state):
        return state

    def coefficients_at(self, state, t_s) -> FieldCoefficients:
        return self.coef

    def cell_state(self, state, t_s) -> dict:
        return {}

    def substeps(self, dt_s: float) -> int:
        return explicit_substeps(self.grid, self.coef, dt_s)


@jax.tree_util.register_dataclass
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
        """IL-2Ra per cell and each cell's secretion course factor f_i(t) (float64, host arrays)."""
        return dict(il2ra=np.asarray(state[1], np.float64),
                    secretion_course=np.asarray(dynamics.secretion_course(self.cells, t_s), np.float64))

    def substeps(self, dt_s: float) -> int:
        return 1


Stepper = Steady | BackwardEuler | ForwardEuler | Coupled
KINDS = {s.kind: s for s in (Steady, BackwardEuler, ForwardEuler, Coupled)}


def build(kind: str, coef: FieldCoefficients, grid: Grid, options: SolverOptions, cells: CellKinetics | None = None,
          initial_field: str = "steady") -> Stepper:
    """The stepper of solver.kind `kind` (KINDS) on these coefficients; cells and initial_field:
    a coupled run's per-cell table (dynamics.cell_kinetics) and its initial field."""
    if kind == Coupled.kind:
        return Coupled(coef, cells, grid, options, initial_field)
    return KINDS[kind](coef, grid, options)


def for_scenario(scenario, coef: FieldCoefficients | None = None) -> Stepper:
    """The stepper of a built scenario's solver.kind (the one place that reads it), on the
    scenario's coefficients or `coef`."""
    s = scenario.settings
    coef = scenario.coefficients if coef is None else coef
    cells = dynamics.cell_kinetics(scenario, coef.dtype) if s.solver_kind == Coupled.kind else None
    return build(s.solver_kind, coef, scenario.grid, s.options, cells, s.initial_field)


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


@jit
def initialize_batch(stepper: Stepper, t_s):
    """initialize for each member of a stacked stepper."""
    return jax.vmap(lambda s: s.init(t_s))(stepper)


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
    return jax.vmap(lambda s, x: advance(s, x, t_s, dt_s, n_steps))(stepper, state)
