"""The steppers that carry cells: Coupled (receptor dynamics coupled to the field) and Tissue (the
coupled run with cells that walk, divide and die). Their protocol, and the field-only steppers,
are steppers.py's; steppers.KINDS lists every kind."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import pytree
from ..cells import coupling, dynamics, fate, motility
from ..cells.dynamics import CellKinetics
from ..physics.grid import Grid
from ..physics.kinetics import FieldCoefficients
from ..pytree import STATIC
from . import kinds
from .kinds import SolverKind
from .steady import SolverOptions


def _saved(saved: dict, name: str, kind: SolverKind):
    if name not in saved:
        raise KeyError(f"a {kind} run's checkpoint holds {name}; this one holds only {sorted(saved) or 'the field'} "
                       "(written by an older il2rd?)")
    return saved[name]


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
    kind: ClassVar[SolverKind] = kinds.COUPLED
    saves: ClassVar[tuple[str, ...]] = ("il2ra",)

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
    coupling.moved). Slots not alive take up, secrete and occupy nothing."""

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
    kind: ClassVar[SolverKind] = kinds.TISSUE
    saves: ClassVar[tuple[str, ...]] = ("il2ra", "walk_position_um", "walk_velocity_um_per_s", "walk_displacement_um",
                                        "walk_key", *(f"fate_{name}" for name in fate.FateState._fields))

    def cells_at(self, walkers: motility.Walkers, alive=None) -> CellKinetics:
        """The per-cell table with each cell where the walkers are (its voxel, its stencil), and
        the slots not `alive` without uptake or secretion."""
        voxel = motility.voxel_of(walkers.position_um, self.grid.spacing_um, self.grid.shape)
        cells = dataclasses.replace(self.cells, voxel=voxel, coupling=coupling.moved(self.cells.coupling, voxel))
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
