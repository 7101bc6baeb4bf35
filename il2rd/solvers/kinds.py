"""The solver kinds (solver.kind) and what each implies, known before a stepper is built.

The configuration's checks, the file's size and layout, resuming and the source comparison need to
know whether a kind steps in time or carries cells, not which integrator runs it; they read these
facts here, and steppers.py maps each kind to its stepper class (steppers.KINDS). A new kind is an
entry here and a stepper there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SolverKind:
    """name: the solver.kind value; transient: it steps in time (else one steady solve); cells: it
    carries a per-cell state (receptors, secretion courses, contacts: dynamics.py); moving: its cells
    walk, divide and die (motility.py, fate.py); attributable: its last field is a solve whose source
    attribution adds up (the steady field, and a coupled or tissue run's last backward-Euler step)."""

    name: str
    transient: bool
    cells: bool = False
    moving: bool = False
    attributable: bool = False

    def __str__(self) -> str:
        return self.name


STEADY = SolverKind("steady", transient=False, attributable=True)
IMPLICIT = SolverKind("implicit", transient=True)
EXPLICIT = SolverKind("explicit", transient=True)
COUPLED = SolverKind("coupled", transient=True, cells=True, attributable=True)
TISSUE = SolverKind("tissue", transient=True, cells=True, moving=True, attributable=True)

KINDS: dict[str, SolverKind] = {k.name: k for k in (STEADY, IMPLICIT, EXPLICIT, COUPLED, TISSUE)}


def steps_in_time(name: str | None) -> bool:
    """Whether a run of the solver.kind `name` (as a file's `solver` attribute holds it) steps in
    time; a name this il2rd does not know (a file from another version) is taken to, since only a
    steady run has a single field."""
    return KINDS[name].transient if name in KINDS else True
