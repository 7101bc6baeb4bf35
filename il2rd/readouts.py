"""Readouts of a field: the numbers a run prints and stores, per cell type and in total."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import grid as grid_mod
from . import units


@dataclass(frozen=True)
class TypeReadout:
    name: str
    count: int
    mean_il2_pM: float  # mean IL-2 seen by the type's cells
    mean_uptake_molecules_per_s: float
    total_uptake_molecules_per_s: float


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

    def attrs(self) -> dict:
        return {
            "summary_mean_il2_pM": self.mean_il2_pM,
            "summary_max_il2_pM": self.max_il2_pM,
            "summary_secretion_molecules_per_s": self.secretion_molecules_per_s,
            "summary_uptake_molecules_per_s": self.uptake_molecules_per_s,
        }

    def format(self) -> str:
        lines = [
            f"IL-2 field: mean {self.mean_il2_pM:.4g} pM, max {self.max_il2_pM:.4g} pM",
            f"balance (molecules/s): secreted {self.secretion_molecules_per_s:.4g} {'=' if self.steady else 'vs'} taken up "
            f"{self.uptake_molecules_per_s:.4g} + decayed {self.decay_molecules_per_s:.4g} "
            f"+ out through fixed faces {self.boundary_outflux_molecules_per_s:.4g}"
            + ("" if self.steady else " (the rest accumulates in the field)"),
            f"{'cell type':<16}{'cells':>9}{'mean IL-2 seen (pM)':>22}{'mean uptake (molec/s)':>24}{'total uptake (molec/s)':>25}",
        ]
        for t in self.types:
            lines.append(
                f"{t.name:<16}{t.count:>9}{t.mean_il2_pM:>22.4g}{t.mean_uptake_molecules_per_s:>24.4g}"
                f"{t.total_uptake_molecules_per_s:>25.4g}"
            )
        return "\n".join(lines)


def summarise(field_pM, seen_pM, uptake_molecules_per_s, scenario) -> Summary:
    grid, coef, pop = scenario.grid, scenario.coefficients, scenario.population
    volume = grid.voxel_volume_um3
    to_molecules = lambda pM_um3_per_s: float(pM_um3_per_s) * units.MOLECULES_PER_UM3_PER_PM  # noqa: E731
    field64 = np.asarray(field_pM, np.float64)
    outflux = grid_mod.boundary_outflux(field64, grid, float(coef.diffusion_um2_per_s), np.asarray(coef.face_values_pM, np.float64))
    types = []
    for i, name in enumerate(pop.type_names):
        mask = pop.type_index == i
        n = int(mask.sum())
        types.append(TypeReadout(
            name, n,
            float(seen_pM[mask].mean()) if n else float("nan"),
            float(uptake_molecules_per_s[mask].mean()) if n else float("nan"),
            float(uptake_molecules_per_s[mask].sum()),
        ))
    return Summary(
        mean_il2_pM=float(field64.mean()),
        max_il2_pM=float(field64.max()),
        secretion_molecules_per_s=to_molecules(np.asarray(coef.secretion_pM_per_s, np.float64).sum() * volume),
        uptake_molecules_per_s=float(np.sum(uptake_molecules_per_s)),
        decay_molecules_per_s=to_molecules(float(coef.decay_per_s) * field64.sum() * volume),
        boundary_outflux_molecules_per_s=to_molecules(outflux),
        types=tuple(types),
        steady=scenario.settings.solver_kind == "steady",
    )
