"""Receptor dynamics and secretion time courses, coupled to the IL-2 field by backward Euler.

IL-2 diffuses and is taken up in seconds to minutes where consumers are dense, but where they are
sparse the field relaxes only by decay, over 1/k_d ~ 30 h. Receptors and secretion change over
hours. So each receptor step (solver.kind=coupled, step solver.dt, typically 30 min) takes the
field one backward-Euler step of the same length dt from the previous field, with the receptors
and secretion of the step's end (solvers/transient.py implicit_step):

    (c(t + dt) - c(t)) / dt = D lap c(t + dt) - k_d c(t + dt) + s(t + dt) - u(c(t + dt); R(t + dt))

i.e. the steady problem with decay k_d + 1/dt and secretion s + c(t)/dt, Newton-Krylov warm-started
from c(t). A field mode relaxing at rate lambda (k_d + uptake + diffusion) is damped by
1/(1 + lambda dt) per step: where lambda dt >> 1 (dense consumers) that is the quasi-steady field
of Busse et al. 2010 (PNAS 107:3058) and the Thurley-lab models, up to the O(1/(lambda dt)) lag of
the true field; where lambda dt << 1 (sparse consumers, decay-dominated) it follows the slow
relaxation as the transient solvers do, which the quasi-steady field would skip. First order in dt
throughout, unconditionally stable, never negative (tests/test_coupled_transient.py: against a
fine-step explicit reference with receptors in lockstep, sparse and dense consumers; no consumers:
exactly c_ss (1 - (1 + k_d dt)^-n)).

Initial field (solver.initial_field): 'steady', the steady field of the basal receptors and the
secretion at the start (tissue at rest before t = 0, as the quasi-steady solver always started), or
'zero', no IL-2 at the start (as the transient solvers start).

Receptors (CD25-driven positive feedback, Busse 2010), per cell i, for its IL-2Ra (CD25) R_i:

    dR_i/dt = k_i(p_i) - eta R_i,    k_i(p) = eta R0_i [1 + (gamma_i - 1) p^m / (K^m + p^m)]

p_i the cell's pSTAT5 (receptors.py), R0_i its configured (basal) IL-2Ra number, gamma_i its
type's feedback gain (1: no feedback; 10 for T cells in the Thurley-lab models), eta the
turnover (1/72000 /s), K the pSTAT5 level of half-maximal induction, m = 3. Without IL-2 a cell
keeps R0; fully signalling, its IL-2Ra rises towards gamma R0 over a few 1/eta = 20 h. IL-2Rb and
gc stay as drawn, so up-regulated CD25 turns intermediate- into high-affinity receptors until
IL-2Rb/gc run out (receptors.receptor_classes); with IL-2Rb unset every IL-2Ra is high affinity.

Secretion: q_i(t) = q_i f_i(t), f = 0 before the onset, rising linearly to 1 at the peak, then
falling linearly to 0 at the shut-off (Sojka et al. 2008: on at 1-2 h after activation, peak at
6-8 h, off by 20-24 h); types without a time course secrete q_i throughout.

Coupling, one step of dt from time t, from the state (c(t), R(t)):
  1. p_i = pSTAT5(c_i(t), R_i(t));
  2. R_i(t + dt) = R*_i + (R_i(t) - R*_i) exp(-eta dt), R*_i = k_i(p_i)/eta: exact for production
     frozen over the step, so stable at any dt and never negative (first order in dt);
  3. c(t + dt) = the backward-Euler step above from c(t), for R(t + dt) and q(t + dt).

With the sub-grid closure (physics.cell_radius, subgrid.py) a cell's uptake and secretion are
spread over its 7-voxel stencil with weights that depend on its linear rate k = V/K, V and K its
two receptor classes collapsed into one law (cells.UptakeLaws.collapsed): V = k_int (R_high +
R_int), V/K = k_int (R_high/K_high + R_int/K_int). R changes every step, so the voxel fields are
rebuilt from the cells' current laws inside the jitted step (coupling.coefficient_fields, as the
steady set-up in cells.field_coefficients), on the scenario's one coupling.CellCoupling; and in step
1 a cell sees the IL-2 at its surface (coupling.surface_pM), as the readouts report it, not its
voxel's value. Point sinks are the coupling's one-voxel case: each cell's two classes in its own
voxel, and it sees that voxel's IL-2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..compilation import jit
from . import contact as contact_mod, coupling
from .. import pytree
from . import periodic_axes
from .coupling import CellCoupling
from ..physics.grid import Grid
from ..physics.kinetics import FieldCoefficients
from ..pytree import STATIC
from ..physics.receptors import KM_HIGH_AFFINITY_PM, KM_INTERMEDIATE_PM, Signalling, receptor_classes
from ..physics.receptors import collapsed_law as collapse_classes
from ..solvers.steady import NewtonInfo, SolverOptions, solve_steady
from ..solvers.transient import implicit_step

INITIAL_FIELDS = ("steady", "zero")  # solver.initial_field of a coupled run


@dataclass(frozen=True)
class ReceptorFeedback:
    """Static parameters of the receptor ODE (shared by all cells)."""

    turnover_per_s: float = 1.0 / 72000.0  # eta, Thurley-lab models
    half_pstat5: float = 0.5  # K, pSTAT5 level of half-maximal receptor induction
    hill: float = 3.0  # m, Busse 2010


@pytree.dataclass
@dataclass(frozen=True)
class CellKinetics:
    """The per-cell table (n cells) of the coupled solver: each cell's own numbers, in molecules.

    voxel: (n, 3) int32; basal_receptors: R0 (IL-2Ra); il2rb, gc: the other chains (inf: not
    limiting); gain: gamma (1 = no feedback); k_int_per_s: internalisation rate, so that a class
    of R receptors takes up at most V = k_int R molecules/s; secretion_molecules_per_s: q_i at the
    peak of its time course; onset_s, peak_s, off_s: the time course; timed: whether the cell
    follows it (else constant); km_pM, km_intermediate_pM: the Michaelis constants of its two
    receptor classes; coupling: the scenario's coupling.CellCoupling (the sub-grid closure's
    stencils, or point sinks); contact: contact.Contact where a type hands IL-2 over."""

    voxel: jax.Array
    basal_receptors: jax.Array
    gain: jax.Array
    k_int_per_s: jax.Array
    secretion_molecules_per_s: jax.Array
    onset_s: jax.Array
    peak_s: jax.Array
    off_s: jax.Array
    timed: jax.Array
    km_pM: jax.Array
    il2rb: jax.Array
    gc: jax.Array
    km_intermediate_pM: jax.Array
    coupling: CellCoupling
    signalling: Signalling = field(default=Signalling(), metadata=STATIC)
    feedback: ReceptorFeedback = field(default=ReceptorFeedback(), metadata=STATIC)
    contact: contact_mod.Contact | None = None  # contact delivery (contact.py), None where no type hands IL-2 over


def secretion_profile(t_s, onset_s, peak_s, off_s):
    """f(t) in [0, 1]: 0 before onset, linear to 1 at peak, linear to 0 at off, 0 after
    (onset <= peak <= off, all finite, s)."""
    rising = jnp.clip((t_s - onset_s) / jnp.maximum(peak_s - onset_s, 1e-30), 0.0, 1.0)
    falling = jnp.clip((off_s - t_s) / jnp.maximum(off_s - peak_s, 1e-30), 0.0, 1.0)
    return jnp.where(t_s < peak_s, rising, falling)


def production(pstat5, cells: CellKinetics):
    """k_i(p) in receptors/s."""
    f = cells.feedback
    pm = pstat5**f.hill
    induction = pm / (f.half_pstat5**f.hill + pm)
    return f.turnover_per_s * cells.basal_receptors * (1.0 + (cells.gain - 1.0) * induction)


def advance_receptors(receptors, pstat5, cells: CellKinetics, dt_s):
    """R(t + dt) for production frozen at k(p) over the step (exact exponential relaxation)."""
    eta = cells.feedback.turnover_per_s
    target = production(pstat5, cells) / eta
    return target + (receptors - target) * jnp.exp(-eta * dt_s)


def secretion_course(cells: CellKinetics, t_s):
    """f_i(t) of each cell (secretion_profile; 1 for a cell without a time course)."""
    return jnp.where(cells.timed, secretion_profile(t_s, cells.onset_s, cells.peak_s, cells.off_s), 1.0)


def handover(cells: CellKinetics, receptors, t_s) -> contact_mod.Delivery | None:
    """What each cell hands over in contacts and receives (contact.delivery) with IL-2Ra
    `receptors` at time t; None without contact delivery."""
    if cells.contact is None:
        return None
    vmax, _ = collapsed_law(cells, receptors)
    return contact_mod.delivery(cells.contact, cells.voxel, vmax, cells.secretion_molecules_per_s * secretion_course(cells, t_s))


def contact_columns(cells: CellKinetics, receptors, t_s) -> dict:
    """{contact_handed (n,), contact_received (n, contact source types)} in molecules/s, float64
    host arrays, at IL-2Ra `receptors` and time t; {} without contact delivery."""
    handed = _handover_jit(cells, receptors, t_s) if cells.contact is not None else None
    if handed is None:
        return {}
    return dict(contact_handed=np.asarray(handed.handed, np.float64), contact_received=np.asarray(handed.received, np.float64))


def field_secretion(cells: CellKinetics, receptors, t_s):
    """Each cell's secretion into the field at time t (molecules/s): q_i f_i(t), less what it
    hands over in contacts (contact.py)."""
    q = cells.secretion_molecules_per_s * secretion_course(cells, t_s)
    handed = handover(cells, receptors, t_s)
    return q if handed is None else q - handed.handed


@jit  # the host calls it at every snapshot (simulate.py), a coupled step inside its own kernel
def coefficients_at(coef: FieldCoefficients, cells: CellKinetics, receptors, t_s) -> FieldCoefficients:
    """The field coefficients for each cell's current IL-2Ra and its secretion into the field at
    time t (:func:`field_secretion`), spread as cells.field_coefficients spreads them
    (coupling.coefficient_fields), per interstitial volume:

        s = sum_i w_ij q_i f_i(t) / (6.022e-4 alpha h^3),   v_max = sum_i v_ij V_i / (6.022e-4 alpha h^3)   (pM/s)
        K_M = sum_i v_ij V_i / sum_i w_ij kappa_i                                              (pM)

    (w, v, kappa from each cell's k = V/K_M with the closure's D = alpha D_eff; point sinks: w = v = 1,
    kappa = k, each receptor class its own fields), and the own capture of secreting cells on one
    voxel (coupling.own_fields). The intermediate class has fields of its own (point sinks) only where
    the run's coefficients have them: a scalar 0 means no cell has IL-2Rb, and none gains any."""
    high, intermediate = receptor_classes(receptors, cells.il2rb, cells.gc)
    classes = (cells.k_int_per_s * high, cells.km_pM, cells.k_int_per_s * intermediate, cells.km_intermediate_pM)
    fields = coupling.coefficient_fields(cells.coupling, classes, field_secretion(cells, receptors, t_s),
                                         intermediate=bool(jnp.ndim(coef.vmax_intermediate_pM_per_s)))
    return coef.replace(**{name: f.astype(coef.dtype) for name, f in fields.items()})


def collapsed_law(cells: CellKinetics, receptors):
    """Each cell's one uptake law (V molecules/s, K_M pM) for IL-2Ra `receptors`: its two receptor
    classes collapsed (receptors.collapsed_law), V = k_int (R_high + R_int),
    V / K_M = k_int (R_high / K_high + R_int / K_int)."""
    k_int = cells.k_int_per_s
    high, intermediate = receptor_classes(receptors, cells.il2rb, cells.gc)
    return collapse_classes(k_int * high, cells.km_pM, k_int * intermediate, cells.km_intermediate_pM)


_handover_jit = jit(handover)


def pstat5_of(c, receptors, cells: CellKinetics, t_s=0.0):
    """pSTAT5 (0..1) of each cell at the field c with IL-2Ra `receptors`, with what it receives in
    contacts at time t (contact.seen_with_contact)."""
    high, intermediate = receptor_classes(receptors, cells.il2rb, cells.gc)
    c_seen = seen(c, cells, receptors, t_s)
    handed = handover(cells, receptors, t_s)
    if handed is not None:
        vmax, km = collapsed_law(cells, receptors)
        c_seen = contact_mod.seen_with_contact(c_seen, handed.received.sum(axis=1), vmax, km).astype(c_seen.dtype)
    return cells.signalling.pstat5(c_seen, high, cells.km_pM, intermediate, cells.km_intermediate_pM)


def seen(c, cells: CellKinetics, receptors=None, t_s=0.0):
    """IL-2 (pM) each cell sees at time t: the IL-2 at its surface from its own law for IL-2Ra
    `receptors` and its secretion into the field (coupling.surface_pM, what readouts.cell_columns
    reports; a point sink's voxel value)."""
    receptors = cells.basal_receptors if receptors is None else receptors
    vmax, km = collapsed_law(cells, receptors)
    q = field_secretion(cells, receptors, t_s) if cells.coupling.own_capture else 0.0
    return coupling.surface_pM(cells.coupling, c, vmax, km, q).astype(c.dtype)


def initial_state(grid: Grid, coef: FieldCoefficients, cells: CellKinetics, options: SolverOptions, t_s=0.0,
                  initial_field: str = "steady"):
    """(field, receptors) at t, and the NewtonInfo of the field: the basal receptors, and the steady
    field for them and the secretion at t ('steady') or no IL-2 ('zero'; INITIAL_FIELDS)."""
    receptors = cells.basal_receptors
    if initial_field == "zero":
        return (jnp.zeros(grid.shape, coef.dtype), receptors), NewtonInfo.trivial(coef.dtype)
    if initial_field != "steady":
        raise ValueError(f"initial_field {initial_field!r}; allowed: {INITIAL_FIELDS}")
    c, info = solve_steady(grid, coefficients_at(coef, cells, receptors, t_s), None, options)
    return (c, receptors), info


def coupled_step(state, t_s, dt_s, grid: Grid, coef: FieldCoefficients, cells: CellKinetics, options: SolverOptions):
    """One step of the coupling (module docstring): (c(t), R(t)) -> (c(t+dt), R(t+dt)), the field a
    backward-Euler step of dt from c(t) with the receptors and secretion of t + dt."""
    c, receptors = state
    pstat5 = pstat5_of(c, receptors, cells, t_s)
    receptors = advance_receptors(receptors, pstat5, cells, dt_s)
    c, info = implicit_step(c, grid, coefficients_at(coef, cells, receptors, t_s + dt_s), dt_s, options)
    return (c, receptors), info


def cell_kinetics(scenario, dtype) -> CellKinetics:
    """The CellKinetics of a built scenario: its cells, their basal receptors, their types'
    feedback gains and secretion courses (h in the config, s here)."""
    pop, settings = scenario.population, scenario.settings
    types = settings.problem.types

    def per_type(attr, default):
        values = [getattr(types[n], attr, None) for n in pop.type_names]
        return np.array([default if v is None else v for v in values], np.float64)[pop.type_index]

    onset, peak, off = (per_type(a, 0.0) for a in ("secretion_onset_s", "secretion_peak_s", "secretion_off_s"))
    timed = np.array([getattr(types[n], "secretion_onset_s", None) is not None for n in pop.type_names])[pop.type_index]
    as_array = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    return CellKinetics(
        voxel=jnp.asarray(pop.voxel, jnp.int32),
        basal_receptors=as_array(pop.receptors_per_cell(types)),
        gain=as_array(per_type("cd25_gain", 1.0)),
        k_int_per_s=as_array(per_type("k_int_per_s", 0.0)),
        secretion_molecules_per_s=as_array(per_type("secretion_molecules_per_s", 0.0)),
        onset_s=as_array(onset), peak_s=as_array(peak), off_s=as_array(off),
        timed=jnp.asarray(timed),
        km_pM=as_array(per_type("km_pM", KM_HIGH_AFFINITY_PM)),
        il2rb=as_array(pop.receptors_per_cell(types, "il2rb")),
        gc=as_array(pop.receptors_per_cell(types, "gc")),
        km_intermediate_pM=as_array(per_type("km_intermediate_pM", KM_INTERMEDIATE_PM)),
        signalling=settings.problem.signalling,
        feedback=settings.problem.feedback,
        coupling=scenario.coupling,
        contact=contact_mod.build(pop, types, scenario.grid.shape, periodic_axes(scenario.grid), dtype),
    )
