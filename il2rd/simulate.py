"""The host loop: jitted chunks of physics, observers (HDF5, progress) in between.

`run(cfg)` is the whole program without Hydra: parse and check the config, build the
scenario, open the output file (failing there if it cannot be written), then solve, writing
each snapshot as soon as it exists, and return a Result with the summary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import signal
import threading
import time as wallclock
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from . import config, readouts
from . import dynamics
from .attribution import Attribution, attribute
from .io.hdf5 import CELL_COLUMNS, SOLVER_COLUMNS, Hdf5Writer, OutputError, checkpoint_slot
from .io.reader import load
from .scenario import Scenario
from .solvers.steady import NewtonInfo, steady_field, steady_field_batch
from .solvers.transient import advance_batch, advance_jit, explicit_stable_dt, explicit_substeps, steps_for_interval

log = logging.getLogger("il2rd")

CHUNK_STEPS = 64  # time steps per jitted call: the granularity of progress and NaN checks


class SimulationError(RuntimeError):
    """The numerics failed (no convergence, NaN/Inf); snapshots written so far are kept."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the file keeps its n_snapshots complete snapshots."""

    def __init__(self, path: Path, n_snapshots: int):
        self.path, self.n_snapshots = path, n_snapshots
        super().__init__(f"interrupted; {path} keeps the {n_snapshots} snapshot(s) completed before")


class _DeferredInterrupt:
    """Ctrl-C during a run is honoured between jitted chunks and snapshots, never inside XLA
    (compiling or computing) or half-way through writing the file: the handler only records
    it, and `check` raises KeyboardInterrupt at the next safe point. A second Ctrl-C raises at
    once."""

    def __init__(self):
        self.requested = False

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self):
        if self.requested:
            raise KeyboardInterrupt

    def __enter__(self):
        self.requested = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


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
    return {name: np.asarray(getattr(info, name)) for name in ("relative_residual", "backward_error",
                                                                "newton_iterations", "krylov_iterations")}


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


def stored_config(path: Path) -> DictConfig:
    """The resolved config a run stored in its file, merged onto the schema."""
    with h5py.File(path, "r") as f:
        text = f["meta/config"][()]
    text = text.decode() if isinstance(text, bytes) else text
    return OmegaConf.merge(OmegaConf.structured(config.Il2rdConfig), OmegaConf.create(text))


def config_key(cfg: DictConfig) -> str:
    """What identifies a run's result: the SHA-256 of its resolved config without the keys
    that do not change the numbers (where it is written, progress bars, resume)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("resume", None)
    container.pop("output", None)
    return hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()


def completed_file(path: Path, key: str) -> bool:
    """Whether `path` holds a finished run of the config with this key (a re-run can skip it)."""
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("complete", False)) and f.attrs.get("config_sha256") == key
    except OSError:
        return False


def _output_path(settings, output_dir: Path | None) -> Path:
    out = Path(output_dir) if output_dir is not None else (settings.output_dir or default_output_dir())
    return out / "il2rd.h5"


def _resume(cfg: DictConfig):
    """(settings, scenario, writer, start state) to continue the run stored in cfg.resume."""
    path = Path(str(cfg.resume))
    if not path.is_file():
        raise config.ConfigError("resume", str(path), "no such file (an il2rd.h5 written by an interrupted transient or coupled run)")
    try:
        stored = stored_config(path)
    except (OSError, KeyError) as err:
        raise config.ConfigError("resume", str(path), f"is not a readable il2rd output file ({err})") from err
    settings = config.parse(stored)
    if settings.solver_kind == "steady":
        raise config.ConfigError("resume", str(path), "is a steady run: there is nothing to continue")
    scenario = Scenario.build(settings)
    writer, t_s, field, il2ra = Hdf5Writer.resume(path, scenario)
    if settings.solver_kind == "coupled" and il2ra is None:
        writer.close()
        raise config.ConfigError("resume", str(path), "is a coupled run written without its receptor checkpoint "
                                 "(an older il2rd); re-run it")
    log.info("resuming %s from t = %g s (snapshot %d)", path, t_s, writer.n_snapshots - 1)
    return settings, scenario, writer, (t_s, field) if il2ra is None else (t_s, field, il2ra)


def _record(scenario, writer, cells=None):
    """on_snapshot for one run: per-cell readouts and the snapshot into its file. cells: the
    dynamics.CellKinetics of a coupled run, whose snapshots come with the cells' receptors."""
    last = {}

    def on_snapshot(t, c, receptors=None, info=None):
        now = scenario
        if receptors is not None:  # uptake from the receptors and secretion of this moment
            now = dataclasses.replace(scenario, coefficients=dynamics.coefficients_at(scenario.coefficients, cells, receptors, t))
            receptors = np.asarray(receptors, np.float64)
        columns = readouts.cell_columns(c, now, receptors)
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


def _finish(writer, scenario, field, last, started: float, il2ra=None, secretion_course=None) -> Result:
    """il2ra, secretion_course: a coupled run's final IL-2Ra and secretion course factors (scenario
    then holds the coefficients of that state)."""
    # a resumed run that was already complete writes no snapshot: summarise its last field
    summary = readouts.summarise(field, last or readouts.cell_columns(field, scenario, il2ra), scenario)
    shares = None
    if _attributable(scenario.settings):
        shares = attribute(field, scenario, il2ra=il2ra, secretion_course=secretion_course)
        writer.write_attribution(shares)
    writer.write_readouts(summary, float(writer.time[writer.n_snapshots - 1]))
    wall = wallclock.perf_counter() - started
    writer.set_attrs(**summary.attrs(), wall_time_s=wall, complete=True)
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
    log.info("%s already holds this config's finished run: not recomputed", path)
    final = {}
    if il2ra is not None:
        scenario, final = _final_state(scenario, dynamics.cell_kinetics(scenario, scenario.coefficients.dtype), il2ra, t_s)
    shares = attribute(field, scenario, **final) if _attributable(scenario.settings) else None
    return Result(path, field, readouts.summarise(field, columns, scenario), wall, shares, solver)


def run(cfg: DictConfig, output_dir: Path | None = None) -> Result:
    """Run one simulation from a composed config; output_dir overrides output.dir.

    If the output file already holds a finished run of the same config (config_key), it is
    not recomputed. With `resume` set, continue the interrupted run stored in that file instead
    (with its own stored config)."""
    with interrupt:
        return _run(cfg, output_dir)


def _run(cfg: DictConfig, output_dir: Path | None) -> Result:
    started = wallclock.perf_counter()
    if cfg.get("resume") is not None:
        settings, scenario, writer, start_state = _resume(cfg)
    else:
        settings, start_state = config.parse(cfg), None
        path, key = _output_path(settings, output_dir), config_key(cfg)
        scenario = Scenario.build(settings)
        if completed_file(path, key):
            return _reuse(path, scenario)
        writer = Hdf5Writer.create(path, scenario, OmegaConf.to_yaml(cfg, resolve=True), settings.compression, key)
    cells = dynamics.cell_kinetics(scenario, scenario.coefficients.dtype) if settings.solver_kind == "coupled" else None
    final = {}  # a coupled run's final cell state, for the attribution
    with writer:
        on_snapshot, last = _record(scenario, writer, cells)
        try:
            interrupt.check()
            if cells is not None:
                field, receptors = solve(scenario.grid, settings, scenario.coefficients, on_snapshot, settings.progress,
                                         start_state, cells=cells)
                # the summary and the attribution of the last field use the coefficients of its state
                scenario, final = _final_state(scenario, cells, receptors, settings.end_s)
                field = np.asarray(field)
            else:
                field = np.asarray(solve(scenario.grid, settings, scenario.coefficients, on_snapshot, settings.progress,
                                         start_state))
        except KeyboardInterrupt:
            raise RunInterrupted(writer.path, writer.n_snapshots) from None
        except SimulationError as err:
            raise SimulationError(f"{err}\n{writer.path} keeps the {writer.n_snapshots} snapshot(s) completed before") from None
        except OSError as err:  # e.g. the disk filled up while writing a snapshot
            raise OutputError(f"output.dir = {str(writer.path.parent)!r}: writing {writer.path} failed ({err}); "
                              f"it keeps the {writer.n_snapshots} snapshot(s) completed before") from None
        finally:
            try:
                writer.set_attrs(wall_time_s=wallclock.perf_counter() - started)
            except OSError:
                pass
        return _finish(writer, scenario, field, last, started, **final)
