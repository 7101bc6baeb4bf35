"""Readouts of a field: the numbers a run prints and stores, per cell type and in total."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from .. import cells
from ..cells import contact, coupling
from ..physics import grid as grid_mod, units
from ..tables import WIDTH, table, value, wrap


@dataclass(frozen=True)
class TypeReadout:
    name: str
    count: int
    mean_il2_pM: float  # mean IL-2 seen by the type's cells
    mean_uptake_molecules_per_s: float
    total_uptake_molecules_per_s: float
    mean_pstat5: float
    pstat5_positive_fraction: float
    mean_receptors: float  # high-affinity (IL-2Ra/b/gc) receptors per cell
    mean_receptors_intermediate: float = 0.0  # intermediate-affinity (IL-2Rb/gc) receptors per cell


@dataclass(frozen=True)
class Summary:
    mean_il2_pM: float
    max_il2_pM: float
    secretion_molecules_per_s: float
    uptake_molecules_per_s: float
    decay_molecules_per_s: float
    boundary_outflux_molecules_per_s: float
    types: tuple[TypeReadout, ...]
    steady: bool  # the field is a steady state, so the balance closes
    exchange_molecules_per_s: float = 0.0  # net IL-2 in from blood and afferent lymph minus out into draining lymph (vessels.py)
    contact_molecules_per_s: float = 0.0  # of the secretion, handed over in contacts (contact.py; in the uptake too)

    def attrs(self) -> dict:
        return {
            "summary_mean_il2_pM": self.mean_il2_pM,
            "summary_max_il2_pM": self.max_il2_pM,
            "summary_secretion_molecules_per_s": self.secretion_molecules_per_s,
            "summary_uptake_molecules_per_s": self.uptake_molecules_per_s,
        }

    def format(self) -> str:
        """The field, the balance and one row per cell type, in lines of at most tables.WIDTH
        characters; '-' where a type has no cells (its means are undefined)."""
        made = (f"balance (molecules/s): secreted {self.secretion_molecules_per_s:.4g}"
                + (f" ({self.contact_molecules_per_s:.4g} of it handed over in contacts)" if self.contact_molecules_per_s else "")
                + (f" + in from blood and lymph, net {self.exchange_molecules_per_s:.4g}" if self.exchange_molecules_per_s else ""))
        went = (f"{'=' if self.steady else 'vs'} taken up {self.uptake_molecules_per_s:.4g} + decayed "
                f"{self.decay_molecules_per_s:.4g} + out through fixed faces {self.boundary_outflux_molecules_per_s:.4g}"
                + ("" if self.steady else " (the rest accumulates in the field)"))
        balance = [f"{made} {went}"] if len(made) + 1 + len(went) <= WIDTH else [made, *wrap(went, initial="  ", indent="    ")]
        rows = [(t.name, [str(t.count), value(t.mean_il2_pM), value(t.mean_uptake_molecules_per_s),
                          value(t.total_uptake_molecules_per_s), value(t.mean_receptors), value(t.mean_receptors_intermediate),
                          value(t.mean_pstat5, ".3f"), value(t.pstat5_positive_fraction, ".1%")])
                for t in self.types]
        note = ("(per cell type: means over its cells; R high / R int: IL-2Ra/b/gc and IL-2Rb/gc receptors per cell; "
                "pSTAT5+: the fraction with pSTAT5 >= signalling.pstat5_threshold"
                + ("; -: no cell of that type in this run" if any(t.count == 0 for t in self.types) else "") + ")")
        return "\n".join([
            f"IL-2 field: mean {self.mean_il2_pM:.4g} pM, max {self.max_il2_pM:.4g} pM",
            *balance,
            *table("cell type", ["cells", "IL-2 seen", "uptake/cell", "total uptake", "R high", "R int", "pSTAT5", "pSTAT5+"],
                   rows, units=["", "(pM)", "(molec/s)", "(molec/s)", "", "", "", ""]),
            *wrap(note),
        ])


def cell_columns(field_pM, scenario, il2ra=None, contact_received=None, secretion_molecules_per_s=None) -> dict[str, np.ndarray]:
    """Per-cell readouts of a field: IL-2 seen (pM), uptake (molecules/s), high- and
    intermediate-affinity receptors, pSTAT5. il2ra: each cell's current IL-2Ra where it changes
    (solver.kind=coupled; the scenario's coefficients must then be the ones for it);
    contact_received (n, sources): what each cell takes up in contacts (contact.py), added to its
    uptake and to the occupancy it signals at; secretion_molecules_per_s (n,): each cell's
    secretion into the field where it changes (cells.secretion_per_cell), else its type's."""
    pop = scenario.population
    settings = scenario.settings
    laws = cells.uptake_laws(pop, settings.problem.types, il2ra)  # each cell's own chains (receptor_cv spread)
    # each cell's share of the uptake of the voxels it acts on, and the IL-2 its receptors see
    # (coupling.cell_uptake), in the run's precision
    coef = scenario.coefficients
    if secretion_molecules_per_s is None:
        secretion_molecules_per_s = cells.secretion_per_cell(pop, settings.problem.types)
    law = (*laws.collapsed(), secretion_molecules_per_s)
    uptake, seen = (np.asarray(a, np.float64) for a in coupling.cell_uptake_jit(
        scenario.coupling, jnp.asarray(field_pM, coef.dtype), *(jnp.asarray(a, coef.dtype) for a in law), coef))
    if contact_received is not None:
        received = np.sum(contact_received, axis=1)
        dtype = scenario.coefficients.dtype
        seen = np.asarray(contact.seen_with_contact(*(jnp.asarray(a, dtype) for a in (seen, received, *laws.collapsed()))),
                          np.float64)
        uptake = uptake + received
    pstat5 = np.asarray(settings.problem.signalling.pstat5(seen, laws.high, laws.km_high_pM, laws.intermediate,
                                                           laws.km_intermediate_pM), np.float64)
    return dict(il2=seen, uptake=uptake, receptors=laws.high, receptors_intermediate=laws.intermediate, pstat5=pstat5)


def summarise(field_pM, columns: dict[str, np.ndarray], scenario, steady: bool = True) -> Summary:
    """The readouts of `field_pM` and the cells' `columns`; steady: whether the field is a steady solve
    (the stepper's `not transient`), so that its balance closes (else the rest accumulates)."""
    grid, coef, pop = scenario.grid, scenario.coefficients, scenario.population
    # molecules in a voxel = c x 6.022e-4 x alpha h^3: IL-2 lives in the interstitial volume only
    volume = grid.voxel_volume_um3 * scenario.settings.problem.volume_fraction
    to_molecules = lambda pM_um3_per_s: float(pM_um3_per_s) * units.MOLECULES_PER_UM3_PER_PM  # noqa: E731
    field64 = np.asarray(field_pM, np.float64)
    outflux = grid_mod.boundary_outflux(field64, grid, float(coef.diffusion_um2_per_s), np.asarray(coef.face_values_pM, np.float64))
    threshold = scenario.settings.problem.signalling.positive_threshold
    nan = float("nan")
    types = []
    alive = columns.get("alive")  # fate.enabled: the slots holding a living cell
    for i, name in enumerate(pop.type_names):
        mask = pop.type_index == i
        if alive is not None:
            mask = mask & alive
        n = int(mask.sum())
        mean = lambda column: float(columns[column][mask].mean()) if n else nan  # noqa: E731
        types.append(TypeReadout(
            name, n, mean("il2"), mean("uptake"), float(columns["uptake"][mask].sum()), mean("pstat5"),
            float(np.mean(columns["pstat5"][mask] >= threshold)) if n else nan, mean("receptors"),
            mean("receptors_intermediate"),
        ))
    handed = float(np.sum(columns["handed"])) if "handed" in columns else 0.0  # contact.py: not in the field's secretion
    return Summary(
        mean_il2_pM=float(field64.mean()),
        max_il2_pM=float(field64.max()),
        secretion_molecules_per_s=to_molecules(np.asarray(coef.secretion_pM_per_s, np.float64).sum() * volume) + handed,
        uptake_molecules_per_s=float(np.sum(columns["uptake"])),
        decay_molecules_per_s=to_molecules(float(coef.decay_per_s) * field64.sum() * volume),
        boundary_outflux_molecules_per_s=to_molecules(outflux * scenario.settings.problem.volume_fraction),
        types=tuple(types),
        steady=steady,
        exchange_molecules_per_s=to_molecules(float(np.sum(np.asarray(coef.exchange_per_s, np.float64) * (
            np.asarray(coef.exchange_target_pM, np.float64) - field64))) * volume),
        contact_molecules_per_s=handed,
    )
