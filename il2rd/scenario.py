"""A scenario: lattice, placed cells (with their receptor numbers) and field coefficients, built
once from Settings, seeded."""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

from . import cells
from .cells import fate, placement
from .physics import vessels
from .cells import Population
from .cells.coupling import CellCoupling
from .config import Settings, check_steady_field_exists
from .io.layout import RunRecord
from .solvers.devices import shard_coefficients, x_slabs
from .physics.kinetics import FieldCoefficients


def enable_precision(precision: str):
    """The JAX dtype for 'float32' | 'float64'. float64 needs jax_enable_x64, switched on here
    (never at import), for the whole process."""
    if precision == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    return jnp.float64 if precision == "float64" else jnp.float32


@dataclass(frozen=True)
class Scenario:
    settings: Settings
    population: Population
    coefficients: FieldCoefficients
    coupling: CellCoupling  # where the cells act: their stencils with the sub-grid closure, or point sinks (coupling.py)
    alive: np.ndarray | None = None  # fate.enabled: (n,) which slots hold a placed cell at t = 0 (the rest: free)

    @property
    def grid(self):
        return self.settings.problem.grid

    @property
    def interstitial_voxel_volume_um3(self) -> float:
        """alpha h^3: the volume of one voxel that IL-2 occupies (um^3)."""
        return cells.interstitial_volume_um3(self.grid, self.settings.problem.volume_fraction)

    def record(self) -> RunRecord:
        """What the run's file records of it (io/layout.RunRecord), as plain values."""
        problem, numerics, output = self.settings.problem, self.settings.numerics, self.settings.output
        pop = self.population
        return RunRecord(
            shape=self.grid.shape, spacing_um=self.grid.spacing_um, centres_um=tuple(self.grid.centres_um(a) for a in range(3)),
            boundary=tuple(self.grid.boundary),
            face_values_pM=np.asarray(problem.face_values_pM), solver=numerics.solver_kind, precision=numerics.precision,
            seed=problem.seed, position_um=pop.position_um, type_index=pop.type_index, type_names=tuple(pop.type_names),
            type_table=cells.type_table(problem.types, pop.type_names), snapshot_times_s=tuple(numerics.snapshot_times_s),
            field_every=output.field_every, cells_every=output.cells_every, compression=output.compression,
            positive_threshold=problem.signalling.positive_threshold, moving=numerics.kind.moving, fate=problem.fate.enabled,
            contact=any(t.contact_fraction > 0 for t in problem.types.values()))

    @classmethod
    def build(cls, settings: Settings) -> "Scenario":
        dtype = enable_precision(settings.numerics.precision)
        problem = settings.problem
        names = tuple(problem.types)
        # spherical cells (the sub-grid closure) may share a voxel while they fit it; point sinks may not
        radius = {n: t.radius_um for n, t in problem.types.items()} if problem.subgrid_uptake else None
        if problem.csv is not None:
            # a CSV gives every cell: its receptors column, or else each type's mean (no spread)
            population = placement.read_csv(problem.csv, problem.grid, names, radius)
            population = replace(population, receptors=population.receptors_per_cell(problem.types))
        else:
            population = placement.place_random(problem.grid, problem.placement, names, problem.seed, radius)
            # per-cell receptors: log-normal around each type's mean with its receptor_cv
            population = placement.draw_receptors(population, problem.types, problem.seed)
        if problem.csv is not None or any(t.receptor_cv > 0 for t in problem.types.values()):
            # the counts (CSV) or the receptor numbers (spread) are known only now
            table = cells.type_table(problem.types, names)
            laws = cells.uptake_laws(population, problem.types)
            check_steady_field_exists(
                settings.numerics.kind, problem.decay_per_s, problem.grid, problem.uptake,
                float(table["secretion_molecules_per_s"][population.type_index].sum()),
                float((laws.vmax_high_molecules_per_s + laws.vmax_intermediate_molecules_per_s).sum()),
            )
        coupling_of = lambda pop: cells.coupling_of(  # noqa: E731
            problem.grid, pop, problem.types, problem.diffusion_um2_per_s / problem.tortuosity**2,
            problem.volume_fraction, problem.uptake, dtype, closure=problem.subgrid_uptake)
        coupling = coupling_of(population)
        coef = cells.field_coefficients(problem.grid, population, problem.types, problem.diffusion_um2_per_s,
                                        problem.decay_per_s, problem.face_values_pM, coupling, dtype,
                                        tortuosity=problem.tortuosity)
        if problem.vessels.active:
            rate, target = vessels.exchange_fields(problem.vessels, problem.grid, problem.node, problem.seed)
            coef = coef.replace(exchange_per_s=jnp.asarray(rate, dtype), exchange_target_pM=jnp.asarray(target, dtype))
        if settings.numerics.shard:
            coef = shard_coefficients(coef, x_slabs())
        alive = None
        if problem.fate.enabled:  # free slots for daughters (fate.py); the field above is the placed cells'
            population, alive = fate.with_slots(population, problem.types, problem.fate.capacity, problem.seed)
            coupling = coupling_of(population)
        return cls(settings, population, coef, coupling, alive)
