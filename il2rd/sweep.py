"""Parameter sweeps: many runs of one shape solved as a single vmapped batch.

A sweep's points that differ only in values (rates, receptor numbers, diffusion, doses,
seeds, counts) share the shapes of every array the solver touches, so their steppers
(steppers.py: the coefficients, and a coupled run's per-cell table) can be stacked along a
leading axis (steppers.stack) and integrated by `jax.vmap` of the very same jitted physics
(simulate.solve with batched=True). Points that differ in anything static (lattice, boundary
kinds, solver, precision, time axis, a coupled run's number of cells) fall into separate
groups. Each point still gets its own complete il2rd.h5 in its own folder, exactly as if it
had run alone, so everything downstream (il2rd-collect, il2rd-plot, skipping finished runs)
cannot tell the difference.
"""

from __future__ import annotations

import logging
import os
import sys
import time as wallclock
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from . import compilation, config, resources, runfolder
from .config import host
from .solvers import steppers
from .cells.placement import PlacementError
from .io.failures import OutputError
from .scenario import Scenario
from .simulate import OutOfMemory, SimulationError, _finish, _out_of_memory, _record, interrupt, run, solve
from .stopwatch import Stopwatch

log = logging.getLogger("il2rd")


@dataclass
class _Point:
    cfg: DictConfig
    settings: config.Settings
    scenario: Scenario
    path: Path
    key: str
    stepper: steppers.Stepper


def _signature(p: _Point) -> tuple:
    """What must be equal for points to share one batch: everything static to the stepper (its
    treedef: kind, lattice, options, a coupled run's static cell parameters), the shapes and
    dtypes of its arrays (a scenario without intermediate-affinity receptors holds scalars there;
    a coupled run's number of cells), the time axis and, for forward Euler, the sub-steps per step."""
    numerics, stepper = p.settings.numerics, p.stepper
    shapes = tuple((np.shape(leaf), str(getattr(leaf, "dtype", type(leaf).__name__)))
                   for leaf in jax.tree_util.tree_leaves(stepper))
    return (jax.tree_util.tree_structure(stepper), shapes, numerics.dt_s, numerics.end_s, numerics.snapshot_every_s,
            p.settings.problem.uptake, stepper.substeps(numerics.dt_s))


def points_that_fit(scenario, fraction: float = 0.5) -> int:
    """How many points of this shape fit in half the device's free memory (on the CPU backend: the
    host's available memory, within resources.memory_limit), each costing what one run of its kind
    was measured to allocate (resources.run_bytes, less the start-up cost paid once)."""
    s = scenario.settings
    per_point = resources.run_bytes(scenario.grid.n_voxels, s.numerics.solver_kind, s.numerics.precision,
                                    s.problem.subgrid_uptake, s.output.attribution) - resources.START_UP_BYTES
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    else:
        free = min(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), resources.memory_limit()[0])
    return int(fraction * free // max(per_point, 1))


def run_batched(cfgs: list[DictConfig], output_dirs: list[Path], batch_size: int = 16,
                progress: bool = True) -> list[Path | None]:
    """Solve the given runs in vmapped batches of at most batch_size (fewer if that many would not
    fit the device's memory: points_that_fit), writing each run's file.

    Every point that can be run is: runs whose file already holds their finished result are
    skipped; a run whose config is refused, whose folder holds another run's file, or whose solve
    fails (no convergence, NaN, out of memory) gets an il2rd.failed in its folder saying why
    (runfolder.mark_failed), and the others go on. A batch in which something fails is run again
    one point at a time, so that only the failing points are lost. Returns, in the order of cfgs,
    each run's file (None for a refused config).
    """
    try:  # before anything compiles; a bad value is refused with its point below
        compilation.configure_cache(config.compilation_cache(cfgs[0]) if cfgs else True)
    except config.ConfigError:
        compilation.configure_cache(True)
    # Points are built one at a time and solved as soon as their batch is full, so that at most a
    # batch of scenarios per signature is held: 256 points of the default node built up front
    # (1.5 million cells each) took all 24 GiB before the first solve.
    files, pending, sizes = [], defaultdict(list), {}
    # Ctrl-C: honoured between jitted chunks and snapshots, as in a single run (simulate.interrupt)
    interrupt.outside = ("sweep interrupted: the finished runs are kept; the same command again runs the others "
                         "(continuing interrupted transient runs from their last snapshot)")
    with interrupt, tqdm(total=len(cfgs), desc="il2rd batches", unit="run", disable=not progress or len(cfgs) < 2) as bar:
        def solve(signature):
            chunk = pending.pop(signature)
            _run_chunk(chunk)
            bar.update(len(chunk))

        for cfg, out in zip(cfgs, output_dirs):
            p = _prepare(cfg, Path(out), files)
            if p is None:
                bar.update(1)
                continue
            signature = _signature(p)
            pending[signature].append(p)
            if signature not in sizes:
                sizes[signature] = max(1, min(batch_size, points_that_fit(p.scenario)))
            if len(pending[signature]) >= sizes[signature]:
                solve(signature)
        for signature in list(pending):
            solve(signature)
    return files


def _prepare(cfg: DictConfig, out: Path, files: list) -> _Point | None:
    """The point of one run, built (None where its file already holds its finished result, or its
    config is refused: then its folder's il2rd.failed says why). Appends the run's file to files."""
    try:
        settings = config.parse(cfg)
        host.check(settings)
        path, key = runfolder.output_path(settings, out), runfolder.config_key(cfg)
        files.append(path)
        if runfolder.completed_file(path, key):
            runfolder.clear_failed(path.parent)
            return None
        scenario = Scenario.build(settings)
        return _Point(cfg, settings, scenario, path, key, steppers.for_scenario(scenario))
    except (config.ConfigError, PlacementError) as err:
        log.warning("left out of the batch (%s): %s", out, err)
        runfolder.mark_failed(out, runfolder.failure_text(err))
        files.append(None)
        return None


FAILURES = (config.ConfigError, PlacementError, OutputError, SimulationError)


def _run_alone(p: _Point) -> bool:
    """One point through simulate.run (which also continues an interrupted file of its config);
    a failure is recorded in its folder. Whether it succeeded."""
    try:
        run(p.cfg, p.path.parent)
        return True
    except FAILURES as err:
        log.warning("run %s failed: %s", p.path.parent, err)
        runfolder.mark_failed(p.path.parent, runfolder.failure_text(err))
        return False


def _run_chunk(chunk: list[_Point]) -> None:
    held, batch = [], []
    for p in chunk:  # each folder locked and looked at (runfolder.open_output) before anything is written
        try:
            output = runfolder.open_output(p.cfg, p.settings, p.scenario, p.path, p.key)
        except OutputError as err:
            runfolder.mark_failed(p.path.parent, runfolder.failure_text(err))
            continue
        if output.reuse or output.start is not None:  # finished meanwhile, or an interrupted run to continue
            output.release()
            if not output.reuse:
                _run_alone(p)
            continue
        held.append(output)
        batch.append(p)
    if not batch:
        return
    started = wallclock.perf_counter()
    try:
        _solve_together(batch, [o.writer for o in held], started)
    except (SimulationError, OutputError) as err:
        if len(batch) == 1:
            runfolder.mark_failed(batch[0].path.parent, runfolder.failure_text(err))
            return
        log.warning("a batch of %d runs failed (%s): running its points one at a time", len(batch),
                    str(err).splitlines()[0])
        for o in held:
            o.release()
        for p in batch:
            _run_alone(p)
        return
    finally:
        for o in held:
            o.release()
    for p in batch:
        runfolder.clear_failed(p.path.parent)
    log.info("solved %d runs as one batch in %.2f s", len(batch), wallclock.perf_counter() - started)


def _solve_together(batch: list[_Point], writers, started: float) -> None:
    """The vmapped solve of one batch, each member's snapshots written to its own file."""
    recorders = [_record(p.scenario, w, p.stepper) for p, w in zip(batch, writers)]

    def on_snapshot(t, states, info=None):
        for i, (record, _) in enumerate(recorders):
            record(t, steppers.member(states, i), info=None if info is None else {k: v[i] for k, v in info.items()})

    first = batch[0]
    stacked = steppers.stack([p.stepper for p in batch])
    try:
        states = solve(stacked, first.settings, on_snapshot, first.settings.output.progress, batched=True)
    except Exception as err:
        if not _out_of_memory(err) or isinstance(err, SimulationError):
            raise
        raise OutOfMemory(f"out of memory solving a batch of {len(batch)} runs of {first.scenario.grid.shape} voxels "
                          f"({str(err).splitlines()[0][:200]}): lower hydra.launcher.batch_size") from None
    for i, (p, w) in enumerate(zip(batch, writers)):
        _finish(w, p.scenario, p.stepper, steppers.member(states, i), recorders[i][1], started, Stopwatch())


@dataclass
class SweepCount:
    """How the jobs of the last multirun in this process ended (SweepProgress fills it)."""

    finished: int = 0
    failed: int = 0
    where: str = ""


last_sweep = SweepCount()


class SweepProgress(Callback):
    """Hydra callback: a progress bar over the runs of a multirun, with the time left, and at its
    end the count of finished and failed runs (`46 finished, 2 failed: see ...`), kept in
    `last_sweep` for the command's exit status (cli.main).

    Counts the jobs the basic sweeper will make from the overrides and hydra.sweeper.params.
    Launchers that run jobs in other processes (joblib, submitit) report their own progress:
    the bar and the count stay in this process (they are not pickled along with the launcher).
    """

    def __init__(self):
        self.bar = None

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.bar = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        out = OmegaConf.select(config, "output.dir")  # where the jobs' folders are (cli.job_output_dir)
        last_sweep.__init__(where=str(out if out is not None else config.hydra.sweep.dir))
        launcher = str(config.hydra.launcher.get("_target_", ""))
        if launcher.endswith(("BasicLauncher", "Il2rdBatchedLauncher")):  # jobs end in this process
            self.bar = tqdm(total=_count_jobs(config), desc="il2rd sweep", unit="run")

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        from hydra.core.utils import JobStatus

        value = job_return.return_value if job_return.status == JobStatus.COMPLETED else None
        if job_return.status == JobStatus.COMPLETED and not str(value).startswith("failed"):
            last_sweep.finished += 1
        else:
            last_sweep.failed += 1
        if self.bar is not None:
            self.bar.update(1)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if self.bar is not None:
            self.bar.close()
        if not last_sweep.finished + last_sweep.failed:  # jobs ended in other processes: count their folders
            _count_folders(last_sweep)
        if last_sweep.finished + last_sweep.failed:
            print(count_line(last_sweep), file=sys.stderr if last_sweep.failed else sys.stdout, flush=True)


def _count_folders(count: SweepCount) -> None:
    """The count from the jobs' folders (launchers whose jobs end in other processes): a folder with
    il2rd.failed failed, one with a finished il2rd.h5 finished."""
    root = Path(count.where)
    if not root.is_dir():
        return
    for folder in (p for p in root.iterdir() if p.is_dir()):
        if runfolder.failure_of(folder) is not None:
            count.failed += 1
        else:
            found = runfolder.inspect(folder / runfolder.FILE_NAME)
            count.finished += bool(found is not None and found.complete)


def count_line(count: SweepCount) -> str:
    line = f"il2rd: {count.finished} finished, {count.failed} failed"
    if count.failed:
        line += (f": see {count.where}/*/{runfolder.FAILED_MARKER} (il2rd-collect {count.where} "
                 "lists every run with its status and reason)")
    return line


def _count_jobs(config: DictConfig) -> int | None:
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        overrides = list(config.hydra.overrides.task)
        params = config.hydra.sweeper.get("params") or {}
        overrides += [f"{k}={v}" for k, v in params.items()]
        parsed = OverridesParser.create().parse_overrides(overrides)
        return len(BasicSweeper.split_arguments(parsed, None)[0])
    except Exception:  # another sweeper, or Hydra internals moved: a bar without a total
        return None
