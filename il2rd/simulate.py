"""One run: `run(cfg)` is the whole program without Hydra.

Parse and check the config, build the scenario and its stepper (steppers.for_scenario), open the
output file (failing there if it cannot be written), integrate (integrate.py, the host loop),
writing each snapshot as soon as it exists (`_record`, the run's observer), then the summary and
the attribution of the last state, and return a Result.
"""

from __future__ import annotations

import dataclasses
import logging
import time as wallclock
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from . import cells as cells_mod, compilation, config, runfolder
from .config import host
from .analysis import readouts
from .solvers import steppers
from .analysis.attribution import Attribution, attribute
from .solvers.integrate import OutOfMemory, SimulationError, integrate  # noqa: F401  (their home before integrate.py)
from .interrupts import RunInterrupted, interrupt
from .io.failures import OutputError
from .io.layout import CELL_COLUMNS, FATE_COLUMNS, SOLVER_COLUMNS, TRACK_COLUMNS, checkpoint_slot, saved_state
from .io.reader import load
from .runfolder import completed_file, config_key, stored_config  # noqa: F401  (their home before runfolder.py)
from .scenario import Scenario
from .stopwatch import Stopwatch

log = logging.getLogger("il2rd")


@dataclass
class Result:
    path: Path
    field_pM: np.ndarray  # last field, (nx, ny, nz)
    summary: readouts.Summary
    wall_time_s: float
    attribution: Attribution | None = None  # steady runs: who took up whose IL-2
    solver: dict | None = None  # the last snapshot's /solver/* values: how accurately it was solved

    def accuracy(self) -> str:
        """One line on how the last field's solve ended (solvers/steady.py's two measures)."""
        if not self.solver or not np.isfinite(self.solver.get("backward_error", np.nan)):
            return "solver: accuracy not recorded"
        s = self.solver
        return (f"solver: relative residual {s['relative_residual']:.2e}, backward error {s['backward_error']:.2e} "
                f"({int(s['newton_iterations'])} Newton steps, {int(s['krylov_iterations'])} CG iterations)")


def solve(stepper: steppers.Stepper, settings, on_snapshot, progress: bool = True, start=None, batched: bool = False):
    """Integrate `stepper` through the settings' snapshot times (integrate.integrate), calling
    on_snapshot(t_s, state, info=...) at each; returns the last state.

    start: (t_s, field, saved) of a snapshot already written, to continue a transient run from
    (resume): its checkpointed field and the rest of its state by name (stepper.checkpoint).
    batched: `stepper` is a stack (steppers.stack)."""
    if start is not None:
        t_s, field, saved = start
        start = (t_s, stepper.restore(field, saved))
    return integrate(stepper, settings.numerics.snapshot_times_s, settings.numerics.dt_s, on_snapshot, start=start, batched=batched,
                     progress=progress)


def _at_state(scenario, stepper: steppers.Stepper, state, t_s: float):
    """The scenario as `state` has it at t_s: the field coefficients of its receptors and secretion
    (coupled and tissue runs) and its cells where they are (tissue runs); and the cells' own state
    (stepper.cell_state) for the readouts and the attribution: il2ra, secretion_course (and, of a
    tissue run, position_um and voxel). A field-only state changes nothing."""
    cells = stepper.cell_state(state, t_s)
    if not cells:
        return scenario, cells
    scenario = dataclasses.replace(scenario, coefficients=stepper.coefficients_at(state, t_s))
    if "position_um" in cells:
        population = dataclasses.replace(scenario.population, voxel=cells.pop("voxel"), position_um=cells.pop("position_um"))
        if "alive" in cells:  # slots without a living cell: no chains, no secretion (fate.py)
            population, cells = _living(population, scenario.settings.problem.types, cells)
        scenario = dataclasses.replace(scenario, population=population,
                                       coupling=stepper.cells_at(state.walkers).coupling)
    return scenario, cells


def _living(population, types, cells: dict):
    """The population and cell state with the slots not alive emptied: 0 of every receptor chain
    and no secretion, so that the readouts and the attribution count nothing for them."""
    alive = cells["alive"] > 0
    chains = {chain: np.where(alive, population.receptors_per_cell(types, chain), 0.0) for chain in ("receptors", "il2rb", "gc")}
    cells = {**cells, "il2ra": np.where(alive, cells["il2ra"], 0.0),
             "secretion_course": np.where(alive, cells["secretion_course"], 0.0)}
    return dataclasses.replace(population, **chains), cells


def _columns(field, scenario, cells: dict) -> dict:
    """readouts.cell_columns of a state (_at_state), with fate.enabled its `alive` mask."""
    secretion = None
    if "secretion_course" in cells or "contact_handed" in cells:
        secretion = cells_mod.secretion_per_cell(scenario.population, scenario.settings.problem.types,
                                                 cells.get("secretion_course"), cells.get("contact_handed"))
    columns = readouts.cell_columns(field, scenario, cells.get("il2ra"), cells.get("contact_received"), secretion)
    if "contact_handed" in cells:  # contact.py: what each cell hands over and takes up in contacts
        columns.update(handed=cells["contact_handed"], received=np.sum(cells["contact_received"], axis=1))
    if "alive" in cells:
        columns["alive"] = cells["alive"] > 0
    return columns


CLOSURE_WARNING = 0.01  # a transient run's attribution whose shares miss the uptake by more is warned about


def _attributed(cells: dict) -> dict:
    """The cell state the attribution takes (il2ra, secretion_course, contact_handed, contact_received)."""
    return {name: cells[name] for name in ("il2ra", "secretion_course", "contact_handed", "contact_received") if name in cells}


def _tracks(scenario) -> dict:
    """The per-snapshot position columns (io/layout.py TRACK_COLUMNS) of cells that move."""
    return dict(zip(TRACK_COLUMNS, np.asarray(scenario.population.position_um, np.float32).T))


def _record(scenario, writer, stepper: steppers.Stepper, watch: Stopwatch | None = None):
    """on_snapshot for one run: per-cell readouts and the snapshot into its file (a transient run's
    with its checkpoint, a coupled run's with the cells' IL-2Ra); watch: the run's Stopwatch
    (stages 'readouts' and 'write'). Returns it and the dict of the last snapshot's columns."""
    last = {}
    watch = watch or Stopwatch()

    def on_snapshot(t, state, info=None):
        now, cells = _at_state(scenario, stepper, state, t)
        c = stepper.field(state)
        with watch.stage("readouts"):
            columns = _columns(c, now, cells)
            fates = {name: cells[name] for name in FATE_COLUMNS if name in cells}
        with watch.stage("write"):
            tracks = _tracks(now) if now.population is not scenario.population else {}
            written = {**columns, **tracks}
            if fates:  # what an empty slot holds: NaN, not the zeros computed for it
                written = {name: np.where(columns["alive"], v, np.nan) for name, v in written.items() if name != "alive"}
                written.update(fates)
            writer.append(t, c, written, checkpoint=stepper.kind.transient, state=stepper.checkpoint(state), solver_info=info)
        last.update(columns)

    return on_snapshot, last


def _attributable(settings, stepper: steppers.Stepper) -> bool:
    """Whether a run gets a source attribution: asked for, and a field whose shares add up
    (stepper.kind.attributable: a steady field, or a coupled run's last backward-Euler step, whose
    shares add up to the uptake up to what the field still changes, which the closure reports)."""
    return settings.output.attribution and stepper.kind.attributable


def last_solver_columns(f) -> dict | None:
    """The /solver/* values of a file's last complete snapshot (None in files before schema 3)."""
    n = int(f.attrs.get("n_snapshots", 0))
    if "solver" not in f or n == 0:
        return None
    return {name: f["solver"][name][n - 1].item() for name in SOLVER_COLUMNS if name in f["solver"]}


def _finish(writer, scenario, stepper: steppers.Stepper, state, last, started: float, watch: Stopwatch) -> Result:
    """The summary, attribution and completion of a run whose last state is `state` (the
    summary and the attribution use the coefficients of that state: _at_state)."""
    scenario, cells = _at_state(scenario, stepper, state, scenario.settings.numerics.end_s)
    field = np.asarray(stepper.field(state))
    # a resumed run that was already complete writes no snapshot: summarise its last field
    with watch.stage("readouts"):
        summary = readouts.summarise(field, last or _columns(field, scenario, cells), scenario, not stepper.kind.transient)
    shares = None
    interrupt.check()  # the attribution takes seconds: a Ctrl-C meanwhile must not wait for it
    if _attributable(scenario.settings, stepper):
        with watch.stage("attribution"):
            shares = attribute(field, scenario, steady=not stepper.kind.transient, **_attributed(cells))
        if shares.closure > CLOSURE_WARNING and stepper.kind.transient:
            log.warning("the source shares add up to the cells' uptake only within %.1f %%: the last field of a %s run "
                        "is a backward-Euler step, attributed as if it were steady (README, 'Output'); a smaller "
                        "solver.dt or a run closer to steady state tightens it", 100 * shares.closure, stepper.kind)
        with watch.stage("write"):
            writer.write_attribution(shares)
    with watch.stage("write"):
        writer.write_readouts(summary, float(writer.time[writer.n_snapshots - 1]))
        wall = wallclock.perf_counter() - started
        writer.set_attrs(**summary.attrs(), **watch.attrs(), wall_time_s=wall, complete=True)
    log.info(watch.format())
    return Result(writer.path, field, summary, wall, shares, last_solver_columns(writer.file))


def _reuse(path: Path, scenario) -> Result:
    """The Result of a finished run, read back from its file (a coupled run's from its last
    checkpointed field and IL-2Ra)."""
    stepper = steppers.for_scenario(scenario)
    with load(path) as previous:
        state = previous.field_xyz(-1)
        columns = {name: np.asarray(previous.cells[name][-1], np.float64) for name in CELL_COLUMNS}
        wall = float(previous.attrs.get("wall_time_s", 0.0))
        solver = last_solver_columns(previous.file)
        last = len(previous.time) - 1
        if stepper.saves:  # the full state of the last snapshot, from its checkpoint
            state = stepper.restore(previous.file["checkpoint"][checkpoint_slot(last)][...], saved_state(previous.file, last))
        t_s = float(previous.time[last])
        stored = _stored_attribution(previous) if _attributable(scenario.settings, stepper) else None
    log.info("%s holds this config's finished run (from before, or from its batch just now): read back, not recomputed",
             path)
    # a coupled run's summary is that of its final state, not the basal one
    scenario, cells = _at_state(scenario, stepper, state, t_s)
    field = np.asarray(stepper.field(state))
    if stored is None and _attributable(scenario.settings, stepper):
        stored = attribute(field, scenario, steady=not stepper.kind.transient, **_attributed(cells))
    if "alive" in cells:
        columns["alive"] = cells["alive"] > 0
    return Result(path, field, readouts.summarise(field, columns, scenario, not stepper.kind.transient), wall, stored, solver)


def _stored_attribution(previous) -> Attribution | None:
    """The attribution a finished run stored (hdf5.py /attribution), so that reusing the run does
    not compute it again (seconds per run: a sweep's re-run or phase 2 of il2rd_batched)."""
    g = previous.file.get("attribution")
    if g is None or "responder" not in g:
        return None
    names = lambda d: tuple(v.decode() if isinstance(v, bytes) else str(v) for v in d[:])  # noqa: E731
    return Attribution(
        sources=names(g["source"]), responders=names(g["responder"]),
        by_cell_molecules_per_s=np.asarray(g["by_cell_molecules_per_s"][:], np.float64),
        matrix_molecules_per_s=g["uptake_molecules_per_s"][:], output_molecules_per_s=g["output_molecules_per_s"][:],
        closure=float(g.attrs["closure"]), autocrine_molecules_per_s=np.asarray(g["autocrine_molecules_per_s"][:], np.float64),
        autocrine_window_change=float(g.attrs["autocrine_window_change"]), cell_type_index=np.asarray(previous.cells["type"]),
        autocrine_exact=bool(g.attrs.get("autocrine_exact", False)), remainder=str(g.attrs.get("remainder", "")))


def run(cfg: DictConfig, output_dir: Path | None = None, overrides: list[str] | None = None) -> Result:
    """Run one simulation from a composed config; output_dir overrides output.dir.

    The output folder is handled by runfolder.open_output: a finished run of the same config
    (config_key) is not recomputed, an interrupted one is continued, another run's file is not
    replaced unless output.overwrite=true. With `resume` set, continue the interrupted run stored
    in that file instead, with its own stored config; `overrides` (the command line's; inside Hydra
    they are read from it) may only extend its time.end (runfolder.open_resume).

    Raises ConfigError/PlacementError (bad input), OutputError (the file cannot be written, or
    writing it failed), SimulationError (no convergence, NaN; OutOfMemory), RunInterrupted (Ctrl-C)."""
    with interrupt:
        result = _run(cfg, output_dir, overrides)
        runfolder.clear_failed(result.path.parent)  # a failure recorded by an earlier attempt no longer holds
        if interrupt.requested:  # Ctrl-C as the run finished: it is complete, but it was asked to stop
            raise RunInterrupted(result.path, _snapshots_in(result.path), complete=True)
        return result


def _snapshots_in(path: Path) -> int:
    found = runfolder.inspect(path)
    return 0 if found is None else found.n_snapshots


def _out_of_memory(err: BaseException) -> bool:
    return isinstance(err, MemoryError) or "RESOURCE_EXHAUSTED" in str(err) or "Out of memory" in str(err)


def _run(cfg: DictConfig, output_dir: Path | None, overrides) -> Result:
    started = wallclock.perf_counter()
    watch = Stopwatch.for_run(cfg)  # with status lines while output.progress is on
    with watch.stage("set-up"):
        compilation.configure_cache(config.compilation_cache(cfg))  # before anything compiles
        if cfg.get("resume") is not None:
            settings, scenario, output = runfolder.open_resume(cfg, overrides)
        else:
            settings = config.parse(cfg)
            host.check(settings)
            path, key = runfolder.output_path(settings, output_dir), runfolder.config_key(cfg)
            scenario = Scenario.build(settings)
            output = runfolder.open_output(cfg, settings, scenario, path, key)
    if output.reuse:  # only ever for a fresh run (open_output)
        try:
            return _reuse(path, scenario)
        finally:
            output.release()
    writer, start_state = output.writer, output.start
    interrupt.writer = writer
    stepper = steppers.for_scenario(scenario)
    with writer:
        on_snapshot, last = _record(scenario, writer, stepper, watch)
        try:
            interrupt.check()
            with watch.stage("solve"):
                state = solve(stepper, settings, on_snapshot, settings.output.progress, start_state)
            return _finish(writer, scenario, stepper, state, last, started, watch)
        except KeyboardInterrupt:
            raise RunInterrupted(writer.path, writer.committed) from None
        except (SimulationError, OutputError) as err:
            if isinstance(err, OutputError) or "keeps the" in str(err):
                raise
            raise type(err)(f"{err}\n{writer.path} keeps the {writer.committed} snapshot(s) completed before") from None
        except Exception as err:
            if not _out_of_memory(err):
                raise
            raise OutOfMemory(
                f"out of memory while solving {scenario.grid.shape} voxels in {settings.numerics.precision} "
                f"({str(err).splitlines()[0][:200]}); {writer.path} keeps the {writer.committed} snapshot(s) completed "
                "before. Try precision=float32, a smaller grid.shape, a smaller hydra.launcher.batch_size, or "
                "devices.shard=true on several devices") from None
        finally:
            try:
                if writer.file.id.valid and not writer.file.attrs.get("complete", False):  # _finish set it
                    writer.set_attrs(wall_time_s=wallclock.perf_counter() - started)
            except OutputError:
                pass
