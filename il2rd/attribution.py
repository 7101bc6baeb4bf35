"""Source attribution: how much of each cell's IL-2 uptake came from each source type.

With the steady field c known, the field equation is linear in its sources:

    A c = s + b,    A = -D lap0 + diag(k_d + sigma(x)),    sigma = u(c) / c           (1/s)

sigma is the uptake per unit IL-2 at the solved field: v_max / (K_M + c) for saturating
uptake, v_max / K_M for linear uptake; b = D lap(0; faces) is what fixed faces at c_b > 0 feed
in (the affine part of the Laplacian: IL-2 from blood or a bath, the source 'boundary').
Splitting s = sum_k s_k over the source types k (the secretion of the cells of type k),

    c_k = A^-1 s_k,   c_boundary = A^-1 b,   sum_k c_k + c_boundary = c,

and cell i takes up sigma_i c_k,i (pM/s, times its voxel's volume in molecules/s) of source k's
IL-2. The sum over k is sigma_i c_i, the cell's whole uptake, to the accuracy of the solves: the
closure error sum_k c_k - c = -A^-1 F(c) is set by the steady solve's residual F(c), and is
reported. All sources share A, hence one preconditioner, and are solved in one batched call.

Same-type shares include a cell's own secretion (autocrine) with its neighbours' of the same
type (paracrine); separating the autocrine part needs a solve per source cell and is not done
here. Steady fields only: the shares of a transient field depend on its history.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from . import grid as grid_mod
from . import units
from .grid import Grid
from .kinetics import FieldCoefficients
from .solvers.krylov import pcg
from .solvers.steady import SolverOptions, preconditioner

BOUNDARY = "boundary"  # the source name of IL-2 fed in through fixed faces


def uptake_per_il2(c, coef: FieldCoefficients):
    """sigma = u(c)/c (1/s): uptake per unit IL-2 at the field c, finite where c = 0."""
    if coef.uptake == "linear":
        return coef.vmax_pM_per_s / coef.km_pM
    return coef.vmax_pM_per_s / (coef.km_pM + jnp.maximum(c, 0.0))


def _solve_many(rhs, c, grid: Grid, coef: FieldCoefficients, options: SolverOptions):
    """A^-1 rhs[k] for every k (rhs: (n, nx, ny, nz)), and the PCG iteration counts."""
    absorption = coef.decay_per_s + uptake_per_il2(c, coef)
    D = coef.diffusion_um2_per_s
    M = preconditioner(grid, options, D, absorption)

    def A(v):
        return -D * grid_mod.laplacian(v, grid) + absorption * v

    def one(b):
        x, info = pcg(A, b, M, jnp.zeros_like(b), options.rtol * jnp.sqrt(jnp.vdot(b, b)), options.max_krylov)
        return x, info.iterations

    # one batched program on an accelerator; one source after another on a CPU, where a batch
    # only adds work (vmapped loops run to the slowest member) and gains no parallelism
    batch = rhs.shape[0] if jax.default_backend() != "cpu" else 1
    return jax.lax.map(one, rhs, batch_size=batch)


@partial(jax.jit, static_argnames=("grid", "source_types", "with_boundary", "options"))
def source_fields(c, type_field, grid: Grid, coef: FieldCoefficients, source_types: tuple[int, ...],
                  with_boundary: bool, options: SolverOptions):
    """(c_k for each source type index in source_types [, c_boundary]) stacked, pM, and the
    PCG iterations of each solve. type_field: (nx, ny, nz) int, the type index of the cell in
    each voxel, -1 where none."""
    rhs = [jnp.where(type_field == k, coef.secretion_pM_per_s, 0.0) for k in source_types]
    if with_boundary:
        rhs.append(coef.diffusion_um2_per_s * grid_mod.laplacian(jnp.zeros_like(c), grid, coef.face_values_pM))
    return _solve_many(jnp.stack(rhs), c, grid, coef, options)


@dataclass(frozen=True)
class Attribution:
    """Who took up whose IL-2, for one steady field.

    sources: source names (cell types that secrete, then 'boundary' if fixed faces feed IL-2);
    responders: all cell-type names; by_cell_molecules_per_s: (n_cells, n_sources) uptake of
    each cell from each source; matrix_molecules_per_s: (n_sources, n_responders), the same
    summed over each responder type; output_molecules_per_s: (n_sources,) what each source
    puts in (its secretion; for 'boundary' the net inflow, = its uptake + decay);
    closure: sum over cells of |sum of its shares - its uptake|, over the total uptake.
    """

    sources: tuple[str, ...]
    responders: tuple[str, ...]
    by_cell_molecules_per_s: np.ndarray
    matrix_molecules_per_s: np.ndarray
    output_molecules_per_s: np.ndarray
    closure: float

    def format(self) -> str:
        if not self.sources:
            return "IL-2 by source: no source of IL-2"
        width = max(12, *(len(r) + 2 for r in self.responders))
        lines = [
            "IL-2 by source: % of each source's output taken up by each responder type (rows sum to 100 % "
            "with what decayed or left)",
            f"{'source':<16}{'output (molec/s)':>18}" + "".join(f"{r:>{width}}" for r in self.responders)
            + f"{'decay/left':>{width}}",
        ]
        for k, name in enumerate(self.sources):
            out = self.output_molecules_per_s[k]
            shares = self.matrix_molecules_per_s[k] / out if out > 0 else np.full(len(self.responders), np.nan)
            lines.append(f"{name:<16}{out:>18.4g}" + "".join(f"{s:>{width}.1%}" for s in shares)
                         + f"{1 - np.sum(shares):>{width}.1%}")
        lines.append(f"(shares of a cell's own type include its own secretion; closure of the shares {self.closure:.1e})")
        return "\n".join(lines)


def type_field(grid: Grid, population) -> np.ndarray:
    """(nx, ny, nz) int32: the type index of the cell in each voxel, -1 where none."""
    field = np.full(grid.shape, -1, np.int32)
    field[tuple(population.voxel.T)] = population.type_index
    return field


def attribute(field_pM, scenario, options: SolverOptions | None = None) -> Attribution:
    """The attribution of the steady field `field_pM` of `scenario` (see the module docstring).
    options: solver settings of the linear solves (default: the run's own)."""
    grid, coef, pop, settings = scenario.grid, scenario.coefficients, scenario.population, scenario.settings
    options = options or settings.options
    secreting = [k for k, name in enumerate(pop.type_names)
                 if settings.types[name].secretion_molecules_per_s > 0 and np.any(pop.type_index == k)]
    with_boundary = any(kind == "fixed" and value > 0 for kind, value in zip(grid.boundary, settings.face_values_pM))
    sources = tuple(pop.type_names[k] for k in secreting) + ((BOUNDARY,) if with_boundary else ())
    n_cells, n_types = len(pop), len(pop.type_names)
    if not sources:
        empty = np.zeros((0, n_types))
        return Attribution((), pop.type_names, np.zeros((n_cells, 0)), empty, np.zeros(0), 0.0)

    c = jnp.asarray(field_pM, coef.dtype)
    fields, _ = source_fields(c, jnp.asarray(type_field(grid, pop)), grid, coef, tuple(secreting), with_boundary, options)
    index = tuple(pop.voxel.T)
    volume = grid.voxel_volume_um3
    sigma = np.asarray(uptake_per_il2(c, coef), np.float64)[index]
    to_molecules = lambda pM_per_s: units.voxel_rate_to_cell_rate_molecules_per_s(pM_per_s, volume)  # noqa: E731
    by_cell = np.stack([to_molecules(sigma * np.asarray(f, np.float64)[index]) for f in fields], axis=-1)
    uptake = to_molecules(sigma * np.maximum(np.asarray(field_pM, np.float64)[index], 0.0))
    total = max(float(uptake.sum()), np.finfo(float).tiny)
    closure = float(np.sum(np.abs(by_cell.sum(axis=-1) - uptake)) / total)

    matrix = np.zeros((len(sources), n_types))
    for t in range(n_types):
        matrix[:, t] = by_cell[pop.type_index == t].sum(axis=0)
    decay = [to_molecules(float(coef.decay_per_s) * float(np.sum(np.asarray(f, np.float64)))) for f in fields]
    secretion = np.asarray(coef.secretion_pM_per_s, np.float64)
    types = type_field(grid, pop)
    output = [to_molecules(float(secretion[types == k].sum())) for k in secreting]
    if with_boundary:
        output.append(float(matrix[-1].sum()) + decay[-1])
    return Attribution(sources, pop.type_names, by_cell, matrix, np.asarray(output), closure)
