"""The host loop: jitted chunks of physics, observers (HDF5, progress) in between.

`run(cfg)` is the whole program without Hydra: parse and check the config, build the
scenario, open the output file (failing there if it cannot be written), then solve, writing
each snapshot as soon as it exists, and return a Result with the summary.
"""

from __future__ import annotations

import logging
import math
import time as wallclock
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import h5py
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from . import config, readouts
from .io.hdf5 import Hdf5Writer
from .scenario import Scenario
from .solvers.steady import steady_field
from .solvers.transient import advance_jit, explicit_stable_dt, explicit_substeps, steps_for_interval

log = logging.getLogger("il2rd")

CHUNK_STEPS = 64  # time steps per jitted call: the granularity of progress and NaN checks


class SimulationError(RuntimeError):
    """The numerics failed (no convergence, NaN/Inf); snapshots written so far are kept."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the file keeps its n_snapshots complete snapshots."""

    def __init__(self, path: Path, n_snapshots: int):
        self.path, self.n_snapshots = path, n_snapshots
        super().__init__(f"interrupted; {path} keeps the {n_snapshots} snapshot(s) completed before")


@dataclass
class Result:
    path: Path
    field_pM: np.ndarray  # last field, (nx, ny, nz)
    summary: readouts.Summary
    wall_time_s: float


def _check_field(c, when: str, grid) -> None:
    if bool(jnp.all(jnp.isfinite(c))):
        return
    bad = np.argwhere(~np.isfinite(np.asarray(c)))[0]
    where = (bad + 0.5) * grid.spacing_um
    raise SimulationError(
        f"non-finite IL-2 appeared {when}, first at voxel "
        f"{tuple(int(i) for i in bad)} (x, y, z = {', '.join(f'{w:g}' for w in where)} um)"
    )


def _check_solve(info, t: float) -> None:
    if not bool(info.converged):
        raise SimulationError(
            f"the nonlinear solve at t = {t:g} s stopped at relative residual {float(info.relative_residual):.3g} "
            f"after {int(info.newton_iterations)} Newton steps ({int(info.krylov_iterations)} CG iterations): "
            "raise solver.max_iter / solver.max_newton, loosen solver.rtol, or use precision=float64"
        )


def solve(scenario: Scenario, on_snapshot, progress: bool = True, start=None):
    """Run the scenario's solver, calling on_snapshot(t_s, field) at each snapshot time.

    start: (t_s, field) of a snapshot already written, to continue a transient run from (resume).
    Returns the last field."""
    s, grid, coef = scenario.settings, scenario.grid, scenario.coefficients
    if s.solver_kind == "steady":
        c, info = steady_field(grid, coef, options=s.options)
        _check_field(c, "in the steady solve", grid)
        _check_solve(info, 0.0)
        on_snapshot(0.0, c)
        return c

    times = s.snapshot_times_s
    if start is None:
        c = jnp.zeros(grid.shape, coef.dtype)
        on_snapshot(times[0], c)
    else:
        t_start, c = start[0], jnp.asarray(start[1], coef.dtype)
        times = [t_start] + [t for t in times if t > t_start * (1 + 1e-12)]
    bar = tqdm(total=s.end_s, initial=times[0], unit="s sim", disable=not progress, desc=f"il2rd {s.solver_kind}",
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s simulated [{elapsed}<{remaining}]")
    try:
        for t0, t1 in zip(times[:-1], times[1:]):
            n_steps, dt = steps_for_interval(t1 - t0, s.dt_s)
            if s.solver_kind == "explicit":
                sub = explicit_substeps(grid, coef, dt)
                if sub > 1 and t0 == times[0]:
                    total = sub * math.ceil(s.end_s / s.dt_s)
                    (log.warning if total > 10**6 else log.info)(
                        "solver.dt = %g s is above the forward-Euler stability limit %.3g s: taking %d sub-steps "
                        "per step, %d in all%s", s.dt_s, explicit_stable_dt(grid, coef), sub, total,
                        "; solver.kind=implicit has no such limit" if total > 10**6 else "")
                n_steps, dt = n_steps * sub, dt / sub
            t, done = t0, 0
            while done < n_steps:
                n = min(CHUNK_STEPS, n_steps - done)
                c, info = advance_jit(c, grid, coef, jnp.asarray(dt, coef.dtype), n, s.solver_kind, s.options)
                _check_field(c, f"between t = {t:g} s and t = {t + n * dt:g} s", grid)
                _check_solve(info, t)
                t, done = t + n * dt, done + n
                bar.update(n * dt)
            on_snapshot(t1, c)
    finally:
        bar.close()
    return c


def default_output_dir() -> Path:
    now = datetime.now()
    return Path("outputs") / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S")


def stored_config(path: Path) -> DictConfig:
    """The resolved config a run stored in its file, merged onto the schema."""
    with h5py.File(path, "r") as f:
        text = f["meta/config"][()]
    text = text.decode() if isinstance(text, bytes) else text
    return OmegaConf.merge(OmegaConf.structured(config.Il2rdConfig), OmegaConf.create(text))


def _open_output(cfg: DictConfig, output_dir: Path | None):
    """(settings, scenario, writer, start) for a new run, or for `resume=<file>`."""
    if cfg.get("resume") is None:
        settings = config.parse(cfg)
        out = Path(output_dir) if output_dir is not None else (settings.output_dir or default_output_dir())
        scenario = Scenario.build(settings)
        writer = Hdf5Writer.create(out / "il2rd.h5", scenario, OmegaConf.to_yaml(cfg, resolve=True), settings.compression)
        return settings, scenario, writer, None
    path = Path(str(cfg.resume))
    if not path.is_file():
        raise config.ConfigError("resume", str(path), "no such file (an il2rd.h5 written by an interrupted transient run)")
    try:
        stored = stored_config(path)
    except (OSError, KeyError) as err:
        raise config.ConfigError("resume", str(path), f"is not a readable il2rd output file ({err})") from err
    settings = config.parse(stored)
    if settings.solver_kind == "steady":
        raise config.ConfigError("resume", str(path), "is a steady run: there is nothing to continue")
    scenario = Scenario.build(settings)
    writer, t_s, field = Hdf5Writer.resume(path, scenario)
    log.info("resuming %s from t = %g s (snapshot %d)", path, t_s, writer.n_snapshots - 1)
    return settings, scenario, writer, (t_s, field)


def run(cfg: DictConfig, output_dir: Path | None = None) -> Result:
    """Run one simulation from a composed config; output_dir overrides output.dir.
    With `resume` set, continue the interrupted run stored in that file instead (its own config)."""
    settings, scenario, writer, start_state = _open_output(cfg, output_dir)
    start = wallclock.perf_counter()
    last = {}
    with writer:
        def on_snapshot(t, c):
            columns = readouts.cell_columns(c, scenario)
            writer.append(t, c, columns, checkpoint=settings.solver_kind != "steady")
            last.update(columns)

        try:
            field = np.asarray(solve(scenario, on_snapshot, settings.progress, start_state))
        except KeyboardInterrupt:
            raise RunInterrupted(writer.path, writer.n_snapshots) from None
        except SimulationError as err:
            raise SimulationError(f"{err}\n{writer.path} keeps the {writer.n_snapshots} snapshot(s) completed before") from None
        finally:
            writer.set_attrs(wall_time_s=wallclock.perf_counter() - start)
        # a resumed run that was already complete writes no snapshot: summarise its last field
        summary = readouts.summarise(field, last or readouts.cell_columns(field, scenario), scenario)
        writer.set_attrs(**summary.attrs())
    return Result(writer.path, field, summary, wallclock.perf_counter() - start)
