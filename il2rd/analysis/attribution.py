"""Source attribution: how much of each cell's IL-2 uptake came from each source type.

With the steady field c known, the field equation is linear in its sources:

    A c = s + b + e,    A = -D lap0 + diag(k_d + sigma(x) + k_ex(x)),    sigma = u(c) / c   (1/s)

sigma is the uptake per unit IL-2 at the solved field: v_max / (K_M + c) for saturating
uptake, v_max / K_M for linear uptake; b = D lap(0; faces) is what fixed faces at c_b > 0 feed
in (the affine part of the Laplacian: IL-2 from blood or a bath, the source 'boundary'), and
e = k_ex c_target what vessels feed in (IL-2 from blood through HEVs and capillaries, and from the
afferent lymph: the source 'circulation').
Splitting s = sum_k s_k over the source types k (the secretion of the cells of type k),

    c_k = A^-1 s_k,   c_boundary = A^-1 b,   sum_k c_k + c_boundary = c,

and cell i takes up sigma_i c_k,i (pM/s, times its voxel's volume in molecules/s) of source k's
IL-2. The sum over k is sigma_i c_i, the cell's whole uptake, to the accuracy of the solves: the
closure error sum_k c_k - c = -A^-1 F(c) is set by the steady solve's residual F(c), and is
reported. All sources share A, hence one preconditioner, and are solved in one batched call.
Of a converged steady field (attribute(..., steady=True), as a steady run calls it), the largest
secreting type's part is c less the others' instead: one solve fewer, none for a lone secreting type
with no fixed faces or vessels feeding IL-2 (the default node). The shares then close by
construction (closure ~ float rounding), and the steady solve's residual, A^-1 F(c), lands in that
type's part, within the tolerance the run reports for its solve.

Autocrine: the part of a source cell's uptake that is its own secretion s_i (pM/s in its voxel)
is sigma_i s_i [A^-1]_ii. Where the sources are few (EXACT_AUTOCRINE_UNKNOWNS), [A^-1 s_i] comes from
a global solve per secreting cell, batched with the type shares': exact to the solves' tolerance.
Beyond that, from a local solve around each cell (autocrine.py): a lower bound, with
`autocrine_window_change` saying how much it still rose with the window. Same-type shares include
the autocrine part.
Steady fields only: the shares of a transient field depend on its history.

With the sub-grid closure (physics.cell_radius, subgrid.py) each cell i secretes and takes up over
its 7-voxel stencil (a point sink: its own voxel, the one-voxel case of coupling.py), and stencils
of different cells and types overlap, so a voxel has no one type. Then s_k is the secretion of type
k's cells alone, spread over their stencils as the run spreads all (coupling.voxel_fields;
secretions.type_secretions), and a cell's uptake is its share p_ij of the uptake sigma_j c_j of each
voxel j its stencil reaches (coupling.sharing, as coupling.cell_uptake shares it), so

    cell i takes up  sum_j p_ij sigma_j c_k,j  of source k's IL-2   (pM/s, x the interstitial voxel volume),

which sums over k to the cell's uptake as readouts.cell_columns reports it. Its autocrine part is
sum_j p_ij sigma_j [A^-1 s_i]_j with s_i = q_i w_i its own stencil-spread secretion.

A secreting cell on one voxel (h >= 4 pi g a) takes up d_i of its own IL-2 before it reaches the
lattice (kinetics.own_capture_rate, coupling.own_capture): the field equation is A c = s - d + b + e,
so source k's lattice field is A^-1 (s_k - d_k), and d_i counts as cell i's uptake of its own
secretion (its type's share and its autocrine part).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from . import autocrine
from ..cells import coupling
from ..physics import units
from ..cells import secretions as secretions_mod
from ..physics import grid as grid_mod
from ..compilation import jit
from ..io.reader import closure_note
from ..physics.grid import Grid
from ..physics.kinetics import FieldCoefficients, absorption_per_s, own_capture_rate, uptake_per_il2
from ..solvers.krylov import pcg
from ..solvers.steady import SolverOptions, preconditioner
from ..tables import percent, table, value, wrap

BOUNDARY = "boundary"  # the source name of IL-2 fed in through fixed faces
CIRCULATION = "circulation"  # the source name of IL-2 fed in by exchange with blood and lymph (vessels.py)
# The autocrine part exactly, from one global solve per secreting cell (the same solves as the type
# shares, so a lone source's autocrine part equals its own type's share), where that is affordable:
# (secreting cells, to the next power of two) x (voxels or cells, the larger) within this many
# unknowns (e.g. up to 8 sources at 128^3, 512 at 32^3) ...
EXACT_AUTOCRINE_UNKNOWNS = 2**24
# ... and worth it: up to this many secreting cells at once (each solve costs about the steady
# solve's linear part: 512 of them took 3 s against a 7 ms steady solve on a 32^3 T zone), and
# beyond it wherever the window solves (autocrine.py) still rose by more than this fraction from
# half-width w - 1 to w, the sign of IL-2 travelling further than the window (sparse consumers;
# the rise overstates what remains: on the 32^3 default T zone it was 1.3 % where the window was at
# most 0.47 % (median 0.07 %) below the exact value, and the window took 0.1 s against 2.8 s)
EXACT_AUTOCRINE_CELLS = 32
WINDOW_CHANGE_EXACT = 0.03



def _solve_many(rhs, c, grid: Grid, coef: FieldCoefficients, options: SolverOptions):
    """A^-1 rhs[k] for every k (rhs: (n, nx, ny, nz)), and the PCG iteration counts."""
    absorption = absorption_per_s(c, coef)
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


@jit(static_argnames=("grid", "with_boundary", "with_blood", "options"))
def source_fields(c, secretions, grid: Grid, coef: FieldCoefficients, with_boundary: bool, options: SolverOptions,
                  with_blood: bool = False):
    """(c_k for each secretion field s_k [, c_boundary] [, c_blood]) stacked, pM, and the PCG
    iterations of each solve. secretions: (n_sources, nx, ny, nz), pM/s, each source type's part
    of coef.secretion_pM_per_s (secretions.type_secretions)."""
    rhs = list(jnp.asarray(secretions, c.dtype))
    if with_boundary:
        rhs.append(coef.diffusion_um2_per_s * grid_mod.laplacian(jnp.zeros_like(c), grid, coef.face_values_pM))
    if with_blood:
        rhs.append(jnp.broadcast_to(coef.exchange_per_s * coef.exchange_target_pM, c.shape).astype(c.dtype))
    return _solve_many(jnp.stack(rhs), c, grid, coef, options)



@dataclass(frozen=True)
class Attribution:
    """Who took up whose IL-2, for one steady field.

    sources: source names (cell types that secrete, then 'boundary' if fixed faces feed IL-2, 'circulation' if vessels or lymph do);
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
    autocrine_exact: bool = False  # the autocrine part from global solves (EXACT_AUTOCRINE_UNKNOWNS), not the window
    remainder: str = ""  # the source whose part is the steady field less the others' (attribute(steady=True)); '' if all were solved

    def format(self) -> str:
        """One column per source (they are few; columns beyond tables.WIDTH continue below), one
        row per responder type: the % of the source's output it took up, then what decayed or left
        and the autocrine part; '-' where a source put nothing in."""
        if not self.sources:
            return "IL-2 by source: no source of IL-2"
        shares, decayed, autocrine = [], [], []
        own = self.autocrine_by_source()
        for k, name in enumerate(self.sources):
            out = self.output_molecules_per_s[k]
            share = self.matrix_molecules_per_s[k] / out if out > 0 else np.full(len(self.responders), np.nan)
            shares.append(share)
            decayed.append(1 - np.sum(share))
            autocrine.append(np.nan if name in (BOUNDARY, CIRCULATION) or out <= 0 else own[k] / out)
        rows = [("output (molec/s)", [value(out) for out in self.output_molecules_per_s]),
                ("taken up by:", None),
                *((f"  {r}", [percent(share[j]) for share in shares]) for j, r in enumerate(self.responders)),
                ("decayed or left", [percent(d) for d in decayed]),
                ("autocrine", [percent(a) for a in autocrine])]
        how = ("exact, one solve per secreting cell" if self.autocrine_exact else
               f"a lower bound from a local window, which still changed by {self.autocrine_window_change:.1e}")
        note = (f"(autocrine: taken up again by the very cell that secreted it, included in its type's row; {how}; "
                f"{closure_note(self.closure, self.remainder, len(self.sources))}"
                + ("; circulation: the gross IL-2 entering from blood and afferent lymph, whose 'decayed or left' includes "
                   "what drains back out through vessels and lymph, so the balance line's net inflow is smaller"
                   if CIRCULATION in self.sources else "")
                + ("; boundary: the net inflow through fixed faces" if BOUNDARY in self.sources else "") + ")")
        return "\n".join([
            "IL-2 by source: where each source's output went, in % (a column sums to 100 % with what decayed or left)",
            *table("source", list(self.sources), rows),
            *wrap(note),
        ])

    def autocrine_by_source(self) -> np.ndarray:
        """(n_sources,) molecules/s of each source's IL-2 taken up again by the cell that made it."""
        return np.array([self.autocrine_molecules_per_s[self.cell_type_index == self.responders.index(name)].sum()
                         if name in self.responders else 0.0 for name in self.sources])


def attribute(field_pM, scenario, options: SolverOptions | None = None,
              autocrine_half_width: int = autocrine.HALF_WIDTH_VOXELS, il2ra=None, secretion_course=None,
              contact_handed=None, contact_received=None,
              exact_autocrine_unknowns: int = EXACT_AUTOCRINE_UNKNOWNS, steady: bool = False) -> Attribution:
    """The attribution of the steady field `field_pM` of `scenario` (see the module docstring).
    options: solver settings of the linear solves (default: the run's own); autocrine_half_width:
    w of the autocrine window, (2 w + 1)^3 voxels (>= 2). A coupled run's quasi-steady field:
    scenario with the coefficients of its final state (dynamics.coefficients_at), and with the
    sub-grid closure each cell's final IL-2Ra (il2ra) and secretion course factor f_i(t)
    (secretion_course, dynamics.secretion_course), which set its stencil's weights and secretion.
    contact_handed (n,), contact_received (n, contact source types): the contact route
    (contact.py, dynamics.contact_columns): a source's output is what it secretes into the field
    and what it hands over, and what a cell receives is its uptake of that source's IL-2.
    exact_autocrine_unknowns: the autocrine part by one global solve per secreting cell up to this
    size (EXACT_AUTOCRINE_UNKNOWNS) where the secreting cells are few (EXACT_AUTOCRINE_CELLS) or the
    local window has not converged (WINDOW_CHANGE_EXACT), else by the local window (autocrine.py).
    steady: `field_pM` is a converged steady solve's (A c = s + b + e to its tolerance), so the largest
    secreting type's part is c less the other sources' parts instead of a solve of its own (module
    docstring); leave it False for a transient run's field, whose closure then reports how far from
    steady it is."""
    grid, coef, pop, settings = scenario.grid, scenario.coefficients, scenario.population, scenario.settings
    options = options or settings.numerics.options
    secreting = [k for k, name in enumerate(pop.type_names)
                 if settings.problem.types[name].secretion_molecules_per_s > 0 and np.any(pop.type_index == k)]
    with_boundary = any(face.feeds(value) for face, value in zip(grid.faces, settings.problem.face_values_pM))
    with_blood = bool(np.any(np.asarray(coef.exchange_per_s) * np.asarray(coef.exchange_target_pM) > 0))
    sources = tuple(pop.type_names[k] for k in secreting) + ((BOUNDARY,) if with_boundary else ()) + ((CIRCULATION,) if with_blood else ())
    n_cells, n_types = len(pop), len(pop.type_names)
    if not sources:
        return Attribution((), pop.type_names, np.zeros((n_cells, 0)), np.zeros((0, n_types)), np.zeros(0), 0.0,
                           np.zeros(n_cells), 0.0, pop.type_index)

    c = jnp.asarray(field_pM, coef.dtype)
    law = secretions_mod.stencil_law(scenario, il2ra, secretion_course, contact_handed)
    secretions = secretions_mod.type_secretions(scenario, secreting, il2ra, secretion_course, contact_handed, law)
    volume = scenario.interstitial_voxel_volume_um3
    # what secreting cells on one voxel take up of their own IL-2 before it reaches the lattice
    # (kinetics.own_capture_rate): their own, and not a source of the lattice's field
    own_direct = np.zeros(n_cells)
    if scenario.coupling.own_capture:
        own_direct = np.asarray(coupling.own_capture_jit(scenario.coupling, c, *law, own_capture_rate(c, coef)), np.float64)
        law = (*law[:2], law[2] - jnp.asarray(own_direct, law[2].dtype))  # what each puts into the lattice
        for j, k in enumerate(secreting):
            secretions[j] -= secretions_mod.at_voxels(grid, pop.voxel, np.where(pop.type_index == k, own_direct, 0.0), volume)
    secretes = np.isin(pop.type_index, secreting)
    mine = np.flatnonzero(secretes)
    padded = 1 << max(len(mine) - 1, 0).bit_length()  # one compiled solve for every count up to a power of two
    affordable = 0 < len(mine) and padded * max(grid.n_voxels, n_cells) <= exact_autocrine_unknowns
    exact = affordable and padded <= EXACT_AUTOCRINE_CELLS
    # the sources' fields, and with `exact` each secreting cell's own one (A^-1 s_i), in one batched call;
    # of a steady field, the largest secreting type's is the field less the others' (no solve)
    remainder = int(np.argmax([np.sum(s, dtype=np.float64) for s in secretions])) if steady and secreting else None
    solved_types = [j for j in range(len(secreting)) if j != remainder]
    rhs = jnp.asarray(np.asarray(secretions)[solved_types], coef.dtype)
    if exact:
        rhs = jnp.concatenate([rhs, secretions_mod.own_secretions(scenario, mine, padded, law).astype(coef.dtype)])
    solved = (source_fields(c, rhs, grid, coef, with_boundary, options, with_blood)[0]
              if len(rhs) or with_boundary or with_blood else jnp.zeros((0, *c.shape), c.dtype))
    fields = list(solved[: len(solved_types)]) + list(solved[len(rhs):])  # the types' (less the remainder), boundary, blood
    if remainder is not None:
        fields.insert(remainder, c - sum(fields, jnp.zeros_like(c)))
    sigma = uptake_per_il2(c, coef)
    to_molecules = lambda pM_per_s: units.voxel_rate_to_cell_rate_molecules_per_s(pM_per_s, volume)  # noqa: E731
    # each cell takes up its share p_ij of sigma_j x_j of a field part x in each voxel j of its stencil
    share = coupling.sharing_jit(scenario.coupling, c, *law[:2])
    taken = lambda x: np.asarray(coupling.taken_jit(scenario.coupling, share, sigma * jnp.asarray(x, c.dtype)), np.float64)  # noqa: E731
    by_cell = np.stack([to_molecules(taken(f)) for f in fields], axis=-1)
    for j, k in enumerate(secreting):
        by_cell[:, j] += np.where(pop.type_index == k, own_direct, 0.0)
    uptake = to_molecules(taken(jnp.maximum(c, 0.0))) + own_direct
    handed = np.zeros(len(sources))
    if contact_received is not None:  # the contact route: each contact source type's IL-2 handed to each cell
        givers = [k for k, name in enumerate(pop.type_names) if settings.problem.types[name].contact_fraction > 0]
        for m, k in enumerate(givers):
            if k in secreting:
                j = secreting.index(k)
                by_cell[:, j] += contact_received[:, m]
                handed[j] = float(np.sum(np.asarray(contact_handed)[pop.type_index == k]))
        uptake = uptake + np.sum(contact_received, axis=1)
    total = max(float(uptake.sum()), np.finfo(float).tiny)
    closure = float(np.sum(np.abs(by_cell.sum(axis=-1) - uptake)) / total)

    matrix = np.zeros((len(sources), n_types))
    for t in range(n_types):
        matrix[:, t] = by_cell[pop.type_index == t].sum(axis=0)
    decay = [to_molecules(float(coef.decay_per_s) * float(np.sum(np.asarray(f, np.float64)))) for f in fields]
    output = [to_molecules(float(np.sum(secretions[j], dtype=np.float64))) + float(np.sum(own_direct[pop.type_index == k])) + handed[j]
              for j, k in enumerate(secreting)]
    if with_boundary:  # the net inflow through the faces
        k = len(secreting)
        output.append(float(matrix[k].sum()) + decay[k])
    if with_blood:  # what the vessels feed in
        output.append(to_molecules(float(np.sum(np.asarray(coef.exchange_per_s, np.float64)
                                                * np.asarray(coef.exchange_target_pM, np.float64)))))
    def own_uptake_of(own_fields):  # each secreting cell's uptake of its own field
        taken_own = np.zeros(n_cells)
        taken_own[mine] = [to_molecules(taken(own_fields[k]))[i] for k, i in enumerate(mine)]
        return taken_own

    if exact:
        own_uptake, change = own_uptake_of(solved[len(solved_types):len(rhs)]), 0.0
    else:
        own_uptake, change = autocrine.stencils(c, scenario, law, share, sigma, secretes, options, autocrine_half_width)
        if affordable and change > WINDOW_CHANGE_EXACT:  # IL-2 travels beyond the window: the global solves after all
            own = secretions_mod.own_secretions(scenario, mine, padded, law).astype(coef.dtype)
            own_uptake, change, exact = own_uptake_of(source_fields(c, own, grid, coef, False, options, False)[0]), 0.0, True
    own_uptake = own_uptake + own_direct
    return Attribution(sources, pop.type_names, by_cell, matrix, np.asarray(output), closure, own_uptake, change,
                       pop.type_index, autocrine_exact=bool(exact),
                       remainder="" if remainder is None else pop.type_names[secreting[remainder]])
