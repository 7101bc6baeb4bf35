"""The host loop: jitted chunks of physics, observers (HDF5, progress) in between.

`run(cfg)` is the whole program without Hydra: parse and check the config, build the
scenario, open the output file (failing there if it cannot be written), then solve, writing
each snapshot as soon as it exists, and return a Result with the summary.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import threading
import time as wallclock
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig
from tqdm.auto import tqdm

from . import compilation, config, readouts
from . import dynamics
from .attribution import Attribution, attribute
from . import runfolder
from .io.hdf5 import CELL_COLUMNS, SOLVER_COLUMNS, OutputError, checkpoint_slot
from .runfolder import completed_file, config_key, stored_config  # noqa: F401  (their home before runfolder.py)
from .io.reader import load
from .scenario import Scenario
from .stopwatch import Stopwatch
from .solvers.steady import NewtonInfo, steady_field, steady_field_batch
from .solvers.transient import advance_batch, advance_jit, explicit_stable_dt, explicit_substeps, steps_for_interval

log = logging.getLogger("il2rd")

CHUNK_STEPS = 64  # time steps per jitted call: the granularity of progress and NaN checks


class SimulationError(RuntimeError):
    """The numerics failed (no convergence, NaN/Inf); snapshots written so far are kept."""


class OutOfMemory(SimulationError):
    """The device or host ran out of memory while solving."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the file keeps its n_snapshots complete snapshots (or, when the Ctrl-C
    came as the run was finishing, the file is complete)."""

    def __init__(self, path: Path, n_snapshots: int, complete: bool = False):
        self.path, self.n_snapshots, self.complete = path, n_snapshots, complete
        if complete:
            super().__init__(f"interrupted as the run finished; {path} is complete ({n_snapshots} snapshot(s))")
        else:
            super().__init__(f"interrupted; {path} keeps the {n_snapshots} snapshot(s) completed before")


def _exit_now(message: str) -> None:
    """End the process at once with exit 130, as SIGKILL would but with a message: what is on disk
    is what the snapshot commits left there (hdf5.py), so nothing committed is lost."""
    try:
        os.write(2, f"il2rd: {message}\n".encode())
    finally:
        os._exit(130)


class _DeferredInterrupt:
    """Ctrl-C during a run is honoured between jitted chunks and snapshots, never inside XLA
    (compiling or computing) or half-way through writing the file: the handler only records
    it, and `check` raises KeyboardInterrupt at the next safe point.

    A Ctrl-C that cannot wait (a second one, or one outside a run) raises KeyboardInterrupt at
    once in the library; in the il2rd command (`for_command`) it ends the process at once with
    exit 130 and one line saying what the file keeps, rather than unwinding through HDF5 or XLA
    (where a KeyboardInterrupt can crash the interpreter)."""

    def __init__(self):
        self.requested = False
        self.depth = 0  # runs in progress (nested `with interrupt`)
        self.hard_exit = False
        self.writer = None  # the file being written, for the message
        self.outside = "interrupted before any output was written"
        self.previous = []

    def _handler(self, signum, frame):
        if self.depth and not self.requested:
            self.requested = True
            return
        if self.hard_exit:
            _exit_now(self.kept())
        raise KeyboardInterrupt

    def kept(self) -> str:
        w = self.writer
        if w is None:
            return self.outside
        return f"interrupted again: stopped at once; {w.path} keeps the {w.committed} snapshot(s) completed before"

    def for_command(self) -> None:
        """The il2rd command: install the handler for the whole process, from start-up on."""
        self.hard_exit = True
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._handler)

    def check(self):
        if self.requested:
            raise KeyboardInterrupt

    def __enter__(self):
        if self.depth == 0:
            self.requested = False
        self.depth += 1
        mine = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) != self._handler
        self.previous.append(signal.signal(signal.SIGINT, self._handler) if mine else None)
        return self

    def __exit__(self, *exc):
        self.depth -= 1
        previous = self.previous.pop()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if self.writer is not None:  # this run is over (a sweep's runs nest in the sweep's `with interrupt`)
            if self.depth == 0:  # a Ctrl-C from now on comes after the run
                self.outside = f"interrupted; {self.writer.path} keeps the {self.writer.committed} snapshot(s) written"
            self.writer = None


interrupt = _DeferredInterrupt()


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


def _check_field(c, when: str, grid) -> None:
    """Stop on NaN/Inf, naming when and where (and which batch member, for a batch)."""
    if bool(jnp.all(jnp.isfinite(c))):
        return
    bad = np.argwhere(~np.isfinite(np.asarray(c)))[0]
    member, bad = (f" in batch member {int(bad[0])}", bad[1:]) if len(bad) == 4 else ("", bad)
    where = (bad + 0.5) * grid.spacing_um
    raise SimulationError(
        f"non-finite IL-2 appeared {when}{member}, first at voxel "
        f"{tuple(int(i) for i in bad)} (x, y, z = {', '.join(f'{w:g}' for w in where)} um)"
    )


def _check_solve(info, t: float, options) -> None:
    """Stop on a nonlinear solve that met neither bound (solvers/steady.py), saying why and what helps."""
    if bool(jnp.all(info.converged)):
        return
    worst = int(jnp.argmax(jnp.ravel(jnp.where(info.converged, -jnp.inf, info.backward_error))))
    pick = lambda v: np.ravel(np.asarray(v))[worst]  # noqa: E731  (one member of a batch)
    newton = int(pick(info.newton_iterations))
    if newton >= options.max_newton:
        advice = f"raise solver.max_newton (now {options.max_newton})"
    else:  # the residual stopped falling above both bounds
        advice = (f"the residual stopped falling: raise solver.max_iter (now {options.max_krylov} CG iterations "
                  "per step), or use precision=float64 if the backward error is near the float32 floor")
    raise SimulationError(
        f"the nonlinear solve at t = {t:g} s did not converge: relative residual {float(pick(info.relative_residual)):.3g} "
        f"(solver.rtol = {options.rtol:g}), backward error {float(pick(info.backward_error)):.3g} "
        f"after {newton} Newton steps ({int(pick(info.krylov_iterations))} CG iterations): {advice}"
    )


def solver_columns(info) -> dict:
    """The /solver/* values of a NewtonInfo (io/hdf5.py SOLVER_COLUMNS); a batch's stay arrays."""
    return {name: np.asarray(getattr(info, name)) for name in SOLVER_COLUMNS}


def solve(grid, settings, coef, on_snapshot, progress: bool = True, start=None, batched: bool = False, cells=None):
    """Run the solver of `settings` on the lattice, calling on_snapshot(t_s, field, info=...) at
    each snapshot time (info: solver_columns of the worst solve since the previous snapshot);
    returns the last field.

    cells: the dynamics.CellKinetics of solver.kind=coupled, whose on_snapshot also gets the
    cells' receptors, on_snapshot(t_s, field, receptors); it returns (field, receptors).

    batched: coef has a leading batch axis (parameter sets of one shape, stacked); the same
    jitted physics is vmapped over it and the fields passed on have that axis too.
    start: (t_s, field) of a snapshot already written, to continue a transient run from (resume);
    (t_s, field, il2ra) for a coupled run.
    """
    if settings.solver_kind == "steady":
        c, info = (steady_field_batch if batched else steady_field)(grid, coef, options=settings.options)
        _check_field(c, "in the steady solve", grid)
        _check_solve(info, 0.0, settings.options)
        on_snapshot(0.0, c, info=solver_columns(info))
        interrupt.check()
        return c

    if settings.solver_kind == "coupled":
        return _solve_coupled(grid, settings, coef, cells, on_snapshot, progress, start)
    times = settings.snapshot_times_s
    exact = NewtonInfo.trivial(coef.dtype)
    if batched:
        exact = jax.tree_util.tree_map(lambda v: jnp.broadcast_to(v, jnp.shape(coef.decay_per_s)), exact)
    if start is None:
        c = jnp.zeros(coef.secretion_pM_per_s.shape, coef.dtype)
        on_snapshot(times[0], c, info=solver_columns(exact))
        interrupt.check()
    else:
        t_start, c = start[0], jnp.asarray(start[1], coef.dtype)
        times = [t_start] + [t for t in times if t > t_start * (1 + 1e-12)]
    advance = advance_batch if batched else advance_jit
    bar = _progress_bar(settings, progress, times[0])
    try:
        for t0, t1 in zip(times[:-1], times[1:]):
            n_steps, dt = steps_for_interval(t1 - t0, settings.dt_s)
            if settings.solver_kind == "explicit":
                sub = explicit_substeps(grid, coef, dt)
                if sub > 1 and t0 == times[0]:
                    total = sub * math.ceil(settings.end_s / settings.dt_s)
                    (log.warning if total > 10**6 else log.info)(
                        "solver.dt = %g s is above the forward-Euler stability limit %.3g s: taking %d sub-steps "
                        "per step, %d in all%s", settings.dt_s, explicit_stable_dt(grid, coef), sub, total,
                        "; solver.kind=implicit has no such limit" if total > 10**6 else "")
                n_steps, dt = n_steps * sub, dt / sub
            t, done, interval = t0, 0, exact
            while done < n_steps:
                n = min(CHUNK_STEPS, n_steps - done)
                c, info = advance(c, grid, coef, jnp.asarray(dt, coef.dtype), n, settings.solver_kind, settings.options)
                _check_field(c, f"between t = {t:g} s and t = {t + n * dt:g} s", grid)
                _check_solve(info, t, settings.options)
                t, done, interval = t + n * dt, done + n, interval.worst(info)
                bar.update(n * dt)
                interrupt.check()
            on_snapshot(t1, c, info=solver_columns(interval))
            interrupt.check()
    finally:
        bar.close()
    return c


def _progress_bar(settings, progress: bool, initial: float = 0.0):
    return tqdm(total=settings.end_s, initial=initial, unit="s sim", disable=not progress, desc=f"il2rd {settings.solver_kind}",
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s simulated [{elapsed}<{remaining}]")


def _solve_coupled(grid, settings, coef, cells, on_snapshot, progress: bool, start=None):
    """solver.kind=coupled (dynamics.py): backward-Euler field, receptor and secretion dynamics.
    start: (t_s, field, il2ra) of a snapshot already written (resume)."""
    times = settings.snapshot_times_s
    if start is None:
        state, info = dynamics.initial_state_jit(grid, coef, cells, settings.options, times[0], settings.initial_field)
        _check_field(state[0], "in the steady solve at t = 0 s", grid)
        _check_solve(info, times[0], settings.options)
        on_snapshot(times[0], *state, info=solver_columns(info))
        interrupt.check()
    else:
        t_start, field, il2ra = start
        state = (jnp.asarray(field, coef.dtype), jnp.asarray(il2ra, coef.dtype))
        times = [t_start] + [t for t in times if t > t_start * (1 + 1e-12)]
    bar = _progress_bar(settings, progress, times[0])
    try:
        for t0, t1 in zip(times[:-1], times[1:]):
            n_steps, dt = steps_for_interval(t1 - t0, settings.dt_s)
            t, done, interval = t0, 0, NewtonInfo.trivial(coef.dtype)
            while done < n_steps:
                n = min(CHUNK_STEPS, n_steps - done)
                state, info = dynamics.advance_coupled(state, jnp.asarray(t, coef.dtype), jnp.asarray(dt, coef.dtype), grid, coef,
                                                       cells, n, settings.options)
                _check_field(state[0], f"between t = {t:g} s and t = {t + n * dt:g} s", grid)
                _check_solve(info, t, settings.options)
                t, done, interval = t + n * dt, done + n, interval.worst(info)
                bar.update(n * dt)
                interrupt.check()
            on_snapshot(t1, *state, info=solver_columns(interval))
            interrupt.check()
    finally:
        bar.close()
    return state


def default_output_dir() -> Path:
    now = datetime.now()
    return Path("outputs") / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S")


def _record(scenario, writer, cells=None, watch: Stopwatch | None = None):
    """on_snapshot for one run: per-cell readouts and the snapshot into its file. cells: the
    dynamics.CellKinetics of a coupled run, whose snapshots come with the cells' receptors;
    watch: the run's Stopwatch (stages 'readouts' and 'write')."""
    last = {}
    watch = watch or Stopwatch()

    def on_snapshot(t, c, receptors=None, info=None):
        now = scenario
        if receptors is not None:  # uptake from the receptors and secretion of this moment
            now = dataclasses.replace(scenario, coefficients=dynamics.coefficients_at(scenario.coefficients, cells, receptors, t))
            receptors = np.asarray(receptors, np.float64)
        with watch.stage("readouts"):
            columns = readouts.cell_columns(c, now, receptors)
        with watch.stage("write"):
            writer.append(t, c, columns, checkpoint=scenario.settings.solver_kind != "steady", il2ra=receptors, solver_info=info)
        last.update(columns)

    return on_snapshot, last


def _attributable(settings) -> bool:
    """Whether a run gets a source attribution: asked for and a steady field or a coupled run's last
    field (a backward-Euler step: its shares add up to the uptake up to what the field still
    changes, which the closure reports), with point-sink cells or the sub-grid closure's stencils
    (physics.cell_radius; attribution.py shares each stencil voxel's uptake among the cells reaching it)."""
    return settings.attribution and settings.solver_kind in ("steady", "coupled")


def last_solver_columns(f) -> dict | None:
    """The /solver/* values of a file's last complete snapshot (None in files before schema 3)."""
    n = int(f.attrs.get("n_snapshots", 0))
    if "solver" not in f or n == 0:
        return None
    return {name: f["solver"][name][n - 1].item() for name in SOLVER_COLUMNS if name in f["solver"]}


def _finish(writer, scenario, field, last, started: float, watch: Stopwatch, il2ra=None, secretion_course=None) -> Result:
    """il2ra, secretion_course: a coupled run's final IL-2Ra and secretion course factors (scenario
    then holds the coefficients of that state)."""
    # a resumed run that was already complete writes no snapshot: summarise its last field
    with watch.stage("readouts"):
        summary = readouts.summarise(field, last or readouts.cell_columns(field, scenario, il2ra), scenario)
    shares = None
    interrupt.check()  # the attribution takes seconds: a Ctrl-C meanwhile must not wait for it
    if _attributable(scenario.settings):
        with watch.stage("attribution"):
            shares = attribute(field, scenario, il2ra=il2ra, secretion_course=secretion_course)
        with watch.stage("write"):
            writer.write_attribution(shares)
    with watch.stage("write"):
        writer.write_readouts(summary, float(writer.time[writer.n_snapshots - 1]))
        wall = wallclock.perf_counter() - started
        writer.set_attrs(**summary.attrs(), **watch.attrs(), wall_time_s=wall, complete=True)
    log.info(watch.format())
    return Result(writer.path, field, summary, wall, shares, last_solver_columns(writer.file))


def _final_state(scenario, cells, il2ra, t_s: float):
    """A coupled run's scenario with the coefficients of its state at t_s (IL-2Ra per cell), and
    that state for the attribution (its IL-2Ra and secretion course factors)."""
    now = dataclasses.replace(scenario, coefficients=dynamics.coefficients_at(scenario.coefficients, cells, il2ra, t_s))
    return now, dict(il2ra=np.asarray(il2ra, np.float64),
                     secretion_course=np.asarray(dynamics.secretion_course(cells, t_s), np.float64))


def _reuse(path: Path, scenario) -> Result:
    """The Result of a finished run, read back from its file (a coupled run's from its last
    checkpointed field and IL-2Ra)."""
    with load(path) as previous:
        field = previous.field_xyz(-1)
        columns = {name: np.asarray(previous.cells[name][-1], np.float64) for name in CELL_COLUMNS}
        wall = float(previous.attrs.get("wall_time_s", 0.0))
        solver = last_solver_columns(previous.file)
        last = len(previous.time) - 1
        checkpoint = previous.file.get("checkpoint", {})
        il2ra = checkpoint.get(checkpoint_slot(last, "il2ra"))
        if il2ra is not None:
            field, il2ra, t_s = checkpoint[checkpoint_slot(last)][...], il2ra[...], float(previous.time[last])
        stored = _stored_attribution(previous) if _attributable(scenario.settings) else None
    log.info("%s already holds this config's finished run: not recomputed", path)
    final = {}
    if il2ra is not None:  # a coupled run's summary is that of its final state, not the basal one
        scenario, final = _final_state(scenario, dynamics.cell_kinetics(scenario, scenario.coefficients.dtype), il2ra, t_s)
    if stored is not None or not _attributable(scenario.settings):
        return Result(path, field, readouts.summarise(field, columns, scenario), wall, stored, solver)
    shares = attribute(field, scenario, **final)
    return Result(path, field, readouts.summarise(field, columns, scenario), wall, shares, solver)


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
        autocrine_window_change=float(g.attrs["autocrine_window_change"]), cell_type_index=np.asarray(previous.cells["type"]))


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
    watch = Stopwatch()
    with watch.stage("set-up"):
        compilation.configure_cache(config.compilation_cache(cfg))  # before anything compiles
        if cfg.get("resume") is not None:
            settings, scenario, output = runfolder.open_resume(cfg, overrides)
        else:
            settings = config.parse(cfg)
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
    cells = dynamics.cell_kinetics(scenario, scenario.coefficients.dtype) if settings.solver_kind == "coupled" else None
    final = {}  # a coupled run's final cell state, for the attribution
    with writer:
        on_snapshot, last = _record(scenario, writer, cells, watch)
        try:
            interrupt.check()
            with watch.stage("solve"):
                if cells is not None:
                    field, receptors = solve(scenario.grid, settings, scenario.coefficients, on_snapshot, settings.progress,
                                             start_state, cells=cells)
                    # the summary and the attribution of the last field use the coefficients of its state
                    scenario, final = _final_state(scenario, cells, receptors, settings.end_s)
                    field = np.asarray(field)
                else:
                    field = np.asarray(solve(scenario.grid, settings, scenario.coefficients, on_snapshot, settings.progress,
                                             start_state))
            return _finish(writer, scenario, field, last, started, watch, **final)
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
                f"out of memory while solving {scenario.grid.shape} voxels in {settings.precision} "
                f"({str(err).splitlines()[0][:200]}); {writer.path} keeps the {writer.committed} snapshot(s) completed "
                "before. Try precision=float32, a smaller grid.shape, a smaller hydra.launcher.batch_size, or "
                "devices.shard=true on several devices") from None
        finally:
            try:
                if writer.file.id.valid and not writer.file.attrs.get("complete", False):  # _finish set it
                    writer.set_attrs(wall_time_s=wallclock.perf_counter() - started)
            except OutputError:
                pass
