"""Parameter sweeps: many runs of one shape solved as a single vmapped batch.

A sweep's points that differ only in values (rates, receptor numbers, diffusion, doses,
seeds, counts) share the shapes of every array the solver touches, so their coefficients can
be stacked along a leading axis and solved by `jax.vmap` of the very same jitted physics
(simulate.solve with batched=True). Points that differ in anything static (lattice, boundary
kinds, solver, precision, time axis) fall into separate groups. Each point still gets its own
complete il2rd.h5 in its own folder, exactly as if it had run alone, so everything downstream
(il2rd-collect, il2rd-plot, skipping finished runs) cannot tell the difference.
"""

from __future__ import annotations

import logging
import os
import time as wallclock
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from . import config
from .cells import PlacementError
from .io.hdf5 import Hdf5Writer
from .scenario import Scenario
from .simulate import _finish, _output_path, _record, completed_file, config_key, run, solve
from .solvers.transient import explicit_substeps

log = logging.getLogger("il2rd")


@dataclass
class _Point:
    cfg: DictConfig
    settings: config.Settings
    scenario: Scenario
    path: Path
    key: str


def _signature(p: _Point) -> tuple:
    """What must be equal for points to share one batch: everything static to the solver."""
    s = p.settings
    sub = explicit_substeps(s.grid, p.scenario.coefficients, s.dt_s) if s.solver_kind == "explicit" else 0
    # coefficient shapes: a scenario without intermediate-affinity receptors holds scalars there
    shapes = tuple(np.shape(leaf) for leaf in jax.tree_util.tree_leaves(p.scenario.coefficients))
    return (s.grid, s.solver_kind, s.options, s.dt_s, s.end_s, s.snapshot_every_s, s.precision, s.uptake, sub, shapes)


# Field-sized arrays one point of a batch holds at once: 4 coefficients, the field, the Newton
# residual and step, 4 CG vectors, the preconditioner's work array and a transient's state,
# plus headroom for XLA's temporaries.
ARRAYS_PER_POINT = 24


def points_that_fit(scenario, fraction: float = 0.5) -> int:
    """How many points of this shape fit in half the device's free memory (host memory on CPU)."""
    per_point = ARRAYS_PER_POINT * scenario.grid.n_voxels * np.dtype(scenario.coefficients.dtype).itemsize
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(fraction * free // per_point)


def _stack(trees):
    return jax.tree_util.tree_map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]), *trees)


def run_batched(cfgs: list[DictConfig], output_dirs: list[Path], batch_size: int = 16,
                progress: bool = True) -> list[Path | None]:
    """Solve the given runs in vmapped batches of at most batch_size (fewer if that many would not
    fit the device's memory: points_that_fit), writing each run's file.

    Runs whose file already holds their finished result are skipped; runs whose config is
    refused are left alone (running them alone reports the error). Returns, in the order of
    cfgs, each run's file (None for a refused config).
    """
    points, files = [], []
    for cfg, out in zip(cfgs, output_dirs):
        try:
            settings = config.parse(cfg)
            path, key = _output_path(settings, out), config_key(cfg)
            files.append(path)
            if not completed_file(path, key):
                points.append(_Point(cfg, settings, Scenario.build(settings), path, key))
        except (config.ConfigError, PlacementError) as err:
            log.warning("left out of the batch (%s): %s", out, err)
            files.append(None)
    groups = defaultdict(list)
    for p in points:
        groups[_signature(p)].append(p)
    chunks = []
    for g in groups.values():
        size = max(1, min(batch_size, points_that_fit(g[0].scenario)))
        chunks += [g[i : i + size] for i in range(0, len(g), size)]
    for chunk in tqdm(chunks, desc="il2rd batches", unit="batch", disable=not progress or len(chunks) < 2):
        _run_chunk(chunk)
    return files


def _run_chunk(chunk: list[_Point]) -> None:
    if chunk[0].settings.solver_kind == "coupled":  # per-cell dynamics: not batched yet, one run after another
        for p in chunk:
            run(p.cfg, p.path.parent)
        return
    started = wallclock.perf_counter()
    writers = [Hdf5Writer.create(p.path, p.scenario, OmegaConf.to_yaml(p.cfg, resolve=True),
                                 p.settings.compression, p.key) for p in chunk]
    try:
        recorders = [_record(p.scenario, w) for p, w in zip(chunk, writers)]

        def on_snapshot(t, c_batch, info=None):
            for i, (record, _) in enumerate(recorders):
                record(t, c_batch[i], info=None if info is None else {k: v[i] for k, v in info.items()})

        first = chunk[0]
        coef = _stack([p.scenario.coefficients for p in chunk])
        fields = np.asarray(solve(first.scenario.grid, first.settings, coef, on_snapshot, first.settings.progress,
                                  batched=True))
        for i, (p, w) in enumerate(zip(chunk, writers)):
            _finish(w, p.scenario, fields[i], recorders[i][1], started)
    finally:
        for w in writers:
            w.close()
    log.info("solved %d runs as one batch in %.2f s", len(chunk), wallclock.perf_counter() - started)


class SweepProgress(Callback):
    """Hydra callback: a progress bar over the runs of a multirun, with the time left.

    Counts the jobs the basic sweeper will make from the overrides and hydra.sweeper.params.
    Launchers that run jobs in other processes (joblib, submitit) report their own progress:
    the bar stays in this process (it is not pickled along with the launcher).
    """

    def __init__(self):
        self.bar = None

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.bar = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        launcher = str(config.hydra.launcher.get("_target_", ""))
        if launcher.endswith(("BasicLauncher", "Il2rdBatchedLauncher")):  # jobs end in this process
            self.bar = tqdm(total=_count_jobs(config), desc="il2rd sweep", unit="run")

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if self.bar is not None:
            self.bar.close()


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
