"""Source attribution: how much of each cell's IL-2 uptake came from each source type.

With the steady field c known, the field equation is linear in its sources:

    A c = s + b + e,    A = -D lap0 + diag(k_d + sigma(x) + k_ex(x)),    sigma = u(c) / c   (1/s)

sigma is the uptake per unit IL-2 at the solved field: v_max / (K_M + c) for saturating
uptake, v_max / K_M for linear uptake; b = D lap(0; faces) is what fixed faces at c_b > 0 feed
in (the affine part of the Laplacian: IL-2 from blood or a bath, the source 'boundary'), and
e = k_ex c_target what vessels feed in (IL-2 from blood through HEVs, the source 'blood').
Splitting s = sum_k s_k over the source types k (the secretion of the cells of type k),

    c_k = A^-1 s_k,   c_boundary = A^-1 b,   sum_k c_k + c_boundary = c,

and cell i takes up sigma_i c_k,i (pM/s, times its voxel's volume in molecules/s) of source k's
IL-2. The sum over k is sigma_i c_i, the cell's whole uptake, to the accuracy of the solves: the
closure error sum_k c_k - c = -A^-1 F(c) is set by the steady solve's residual F(c), and is
reported. All sources share A, hence one preconditioner, and are solved in one batched call.

Autocrine: the part of a source cell's uptake that is its own secretion s_i (pM/s in its voxel)
is sigma_i s_i [A^-1]_ii. The diagonal entry comes from a local solve on the cube of half-width
w voxels around the cell, with IL-2 reaching the cube's surface counted as lost (the principal
submatrix of A, the lattice's own boundary conditions where the cube meets a face). For an
M-matrix such as A that truncation can only lower [A^-1]_ii, so the local value is a lower bound
that rises to the exact one as w grows; `autocrine_window_change` reports how much it still rose
from w - 1 to w (small where consumers are dense, since IL-2 then travels a few cells; larger in
consumer-poor tissue with its long decay length). Same-type shares include the autocrine part.
Steady fields only: the shares of a transient field depend on its history.
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
from .kinetics import FieldCoefficients, uptake_per_il2
from .solvers.krylov import pcg
from .solvers.multigrid import laplacian_diagonal
from .solvers.steady import SolverOptions, preconditioner

BOUNDARY = "boundary"  # the source name of IL-2 fed in through fixed faces
BLOOD = "blood"  # the source name of IL-2 fed in through vessels (vessels.py)
# the local window of the autocrine solve, (2 w + 1)^3 voxels: w = 4 is within 0.1 % of the exact
# [A^-1]_ii on the default T-zone scenario (w = 2: 1.5 %, 3: 0.45 %, 6: 0.008 %)
AUTOCRINE_HALF_WIDTH_VOXELS = 4


def _absorption(c, coef: FieldCoefficients):
    """The diagonal of A (1/s): decay, uptake per unit IL-2, exchange with vessels."""
    return coef.decay_per_s + uptake_per_il2(c, coef) + coef.exchange_per_s


def _solve_many(rhs, c, grid: Grid, coef: FieldCoefficients, options: SolverOptions):
    """A^-1 rhs[k] for every k (rhs: (n, nx, ny, nz)), and the PCG iteration counts."""
    absorption = _absorption(c, coef)
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


@partial(jax.jit, static_argnames=("grid", "source_types", "with_boundary", "with_blood", "options"))
def source_fields(c, type_field, grid: Grid, coef: FieldCoefficients, source_types: tuple[int, ...],
                  with_boundary: bool, options: SolverOptions, with_blood: bool = False):
    """(c_k for each source type index in source_types [, c_boundary] [, c_blood]) stacked, pM, and the
    PCG iterations of each solve. type_field: (nx, ny, nz) int, the type index of the cell in
    each voxel, -1 where none."""
    rhs = [jnp.where(type_field == k, coef.secretion_pM_per_s, 0.0) for k in source_types]
    if with_boundary:
        rhs.append(coef.diffusion_um2_per_s * grid_mod.laplacian(jnp.zeros_like(c), grid, coef.face_values_pM))
    if with_blood:
        rhs.append(jnp.broadcast_to(coef.exchange_per_s * coef.exchange_target_pM, c.shape).astype(c.dtype))
    return _solve_many(jnp.stack(rhs), c, grid, coef, options)


@partial(jax.jit, static_argnames=("grid", "half_width", "chunk", "rtol", "maxiter"))
def local_green_diagonal(absorption_per_s, grid: Grid, diffusion_um2_per_s, voxels, half_width: int,
                         chunk: int = 1024, rtol: float = 1e-6, maxiter: int = 1000):
    """[A_W^-1]_ii (s) for each voxel i of voxels (n, 3): A = -D lap + diag(absorption) restricted
    to the cube W of half-width w around i (clipped at the lattice), Jacobi-preconditioned CG
    on every cube, `chunk` cubes at a time. A lower bound of [A^-1]_ii (module docstring)."""
    w = half_width
    n = 2 * w + 1
    diagonal = diffusion_um2_per_s * laplacian_diagonal(grid, absorption_per_s.dtype) + absorption_per_s
    diagonal = jnp.pad(diagonal, w, constant_values=1.0)
    inside = jnp.pad(jnp.ones(grid.shape, absorption_per_s.dtype), w)  # 0 beyond the lattice
    coupling = diffusion_um2_per_s / grid.spacing_um**2
    unit = jnp.zeros((n, n, n), absorption_per_s.dtype).at[w, w, w].set(1.0)

    def neighbours(v):  # sum of the 6 face neighbours, 0 beyond the cube
        total = jnp.zeros_like(v)
        for axis in range(3):
            padded = jnp.pad(v, [(1, 1) if a == axis else (0, 0) for a in range(3)])
            total = total + jax.lax.slice_in_dim(padded, 0, n, axis=axis) + jax.lax.slice_in_dim(padded, 2, n + 2, axis=axis)
        return total

    def one(voxel):
        d = jax.lax.dynamic_slice(diagonal, voxel, (n, n, n))
        m = jax.lax.dynamic_slice(inside, voxel, (n, n, n))
        # identity beyond the lattice keeps the operator SPD with those voxels at 0
        A = lambda v: m * (d * v - coupling * neighbours(m * v)) + (1 - m) * v  # noqa: E731
        x, _ = pcg(A, unit, lambda r: r / d, jnp.zeros_like(unit), rtol, maxiter)
        return x[w, w, w]

    return jax.lax.map(one, voxels, batch_size=chunk)


@dataclass(frozen=True)
class Attribution:
    """Who took up whose IL-2, for one steady field.

    sources: source names (cell types that secrete, then 'boundary' if fixed faces feed IL-2, 'blood' if vessels do);
    responders: all cell-type names; by_cell_molecules_per_s: (n_cells, n_sources) uptake of
    each cell from each source; matrix_molecules_per_s: (n_sources, n_responders), the same
    summed over each responder type; output_molecules_per_s: (n_sources,) what each source
    puts in (its secretion; for 'boundary' the net inflow, = its uptake + decay);
    closure: sum over cells of |sum of its shares - its uptake|, over the total uptake;
    autocrine_molecules_per_s: (n_cells,) each cell's uptake of its own secretion (0 for cells
    that do not secrete); autocrine_window_change: the largest relative rise of a cell's
    autocrine uptake from the half-width w - 1 window to w (module docstring).
    """

    sources: tuple[str, ...]
    responders: tuple[str, ...]
    by_cell_molecules_per_s: np.ndarray
    matrix_molecules_per_s: np.ndarray
    output_molecules_per_s: np.ndarray
    closure: float
    autocrine_molecules_per_s: np.ndarray
    autocrine_window_change: float
    cell_type_index: np.ndarray  # (n_cells,) index into responders

    def format(self) -> str:
        if not self.sources:
            return "IL-2 by source: no source of IL-2"
        width = max(12, *(len(r) + 2 for r in self.responders))
        lines = [
            "IL-2 by source: % of each source's output taken up by each responder type (rows sum to 100 % "
            "with what decayed or left)",
            f"{'source':<16}{'output (molec/s)':>18}" + "".join(f"{r:>{width}}" for r in self.responders)
            + f"{'decay/left':>{width}}{'autocrine':>{width}}",
        ]
        for k, name in enumerate(self.sources):
            out = self.output_molecules_per_s[k]
            shares = self.matrix_molecules_per_s[k] / out if out > 0 else np.full(len(self.responders), np.nan)
            own = self.autocrine_by_source()[k] / out if out > 0 else np.nan
            lines.append(f"{name:<16}{out:>18.4g}" + "".join(f"{s:>{width}.1%}" for s in shares)
                         + f"{1 - np.sum(shares):>{width}.1%}" + (f"{own:>{width}.1%}" if name not in (BOUNDARY, BLOOD) else f"{'-':>{width}}"))
        lines.append(f"(autocrine: taken up again by the very cell that secreted it, included in its type's column; "
                     f"closure of the shares {self.closure:.1e}; autocrine window change {self.autocrine_window_change:.1e})")
        return "\n".join(lines)

    def autocrine_by_source(self) -> np.ndarray:
        """(n_sources,) molecules/s of each source's IL-2 taken up again by the cell that made it."""
        return np.array([self.autocrine_molecules_per_s[self.cell_type_index == self.responders.index(name)].sum()
                         if name in self.responders else 0.0 for name in self.sources])


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
    with_blood = bool(np.any(np.asarray(coef.exchange_per_s) * np.asarray(coef.exchange_target_pM) > 0))
    sources = tuple(pop.type_names[k] for k in secreting) + ((BOUNDARY,) if with_boundary else ()) + ((BLOOD,) if with_blood else ())
    n_cells, n_types = len(pop), len(pop.type_names)
    if not sources:
        return Attribution((), pop.type_names, np.zeros((n_cells, 0)), np.zeros((0, n_types)), np.zeros(0), 0.0,
                           np.zeros(n_cells), 0.0, pop.type_index)

    c = jnp.asarray(field_pM, coef.dtype)
    types = type_field(grid, pop)
    fields, _ = source_fields(c, jnp.asarray(types), grid, coef, tuple(secreting), with_boundary, options, with_blood)
    index = tuple(pop.voxel.T)
    volume = scenario.interstitial_voxel_volume_um3
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
    output = [to_molecules(float(secretion[types == k].sum())) for k in secreting]
    if with_boundary:  # the net inflow through the faces
        k = len(secreting)
        output.append(float(matrix[k].sum()) + decay[k])
    if with_blood:  # what the vessels feed in
        output.append(to_molecules(float(np.sum(np.asarray(coef.exchange_per_s, np.float64)
                                                * np.asarray(coef.exchange_target_pM, np.float64)))))
    autocrine, change = _autocrine(c, grid, coef, pop, np.isin(pop.type_index, secreting), options, volume)
    return Attribution(sources, pop.type_names, by_cell, matrix, np.asarray(output), closure, autocrine, change,
                       pop.type_index)


def _autocrine(c, grid: Grid, coef: FieldCoefficients, pop, secretes: np.ndarray, options: SolverOptions, volume_um3: float):
    """Each cell's uptake of its own secretion (molecules/s) and the window change (module docstring)."""
    autocrine = np.zeros(len(pop))
    cells = np.flatnonzero(secretes)
    if len(cells) == 0:
        return autocrine, 0.0
    voxels = jnp.asarray(pop.voxel[cells], jnp.int32)
    absorption = _absorption(c, coef)
    w = AUTOCRINE_HALF_WIDTH_VOXELS
    diagonal, smaller = (np.asarray(local_green_diagonal(absorption, grid, coef.diffusion_um2_per_s, voxels, half, rtol=options.rtol),
                                    np.float64) for half in (w, w - 1))
    index = tuple(pop.voxel[cells].T)
    rate = (np.asarray(uptake_per_il2(c, coef), np.float64)[index] * np.asarray(coef.secretion_pM_per_s, np.float64)[index])
    autocrine[cells] = units.voxel_rate_to_cell_rate_molecules_per_s(rate * diagonal, volume_um3)
    change = float(np.max((diagonal - smaller) / diagonal))
    return autocrine, change
