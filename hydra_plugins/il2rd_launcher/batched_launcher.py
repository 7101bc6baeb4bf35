"""`il2rd -m ... hydra/launcher=il2rd_batched`: a multirun solved as vmapped batches.

Phase 1 composes every job's config and solves all of them with il2rd.sweep.run_batched, in
batches of `hydra.launcher.batch_size`, each result written to its job folder (or to
output.dir/<job> when output.dir is set: il2rd.cli.job_output_dir). Phase 2 runs each job the
ordinary Hydra way (folders, .hydra/, logs, return values); il2rd finds the job's file already
holding the finished run of that very config and does not recompute it. A job that failed in
phase 1 (refused config, no convergence, ...: its il2rd.failed says why) is reported as failed in
phase 2 without being computed again.
"""


import copy
import logging
from dataclasses import dataclass
from pathlib import Path
# no `from __future__ import annotations`: Hydra imports plugins outside sys.modules, where
# dataclasses cannot resolve string annotations
from typing import List, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, open_dict, read_write

log = logging.getLogger(__name__)


@dataclass
class Il2rdBatchedLauncherConf:
    _target_: str = "hydra_plugins.il2rd_launcher.batched_launcher.Il2rdBatchedLauncher"
    batch_size: int = 16  # runs per vmapped batch: lower it if a batch does not fit the device's memory


ConfigStore.instance().store(group="hydra/launcher", name="il2rd_batched", node=Il2rdBatchedLauncherConf,
                             provider="il2rd")


class Il2rdBatchedLauncher(Launcher):
    def __init__(self, batch_size: int = 16) -> None:
        self.batch_size = int(batch_size)
        self.config = self.hydra_context = self.task_function = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def _job_configs(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[DictConfig]:
        configs = []
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = f"job_id_for_{idx}"
                sweep_config.hydra.job.num = idx
            configs.append(sweep_config)
        return configs

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from il2rd.cli import job_output_dir, report_failure
        from il2rd.runfolder import failure_of
        from il2rd.sweep import run_batched

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        logging.getLogger("jax").setLevel(logging.WARNING)  # hide JAX's backend probing
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = self._job_configs(job_overrides, initial_job_idx)

        tasks, folders = [], []
        for sweep_config in configs:
            HydraConfig.instance().set_config(sweep_config)
            task = copy.deepcopy(sweep_config)
            with read_write(task), open_dict(task):
                del task["hydra"]
            tasks.append(task)
            job_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
            folders.append(job_output_dir(task, sweep_config.hydra) or job_dir)
        log.info(f"il2rd_batched: solving {len(tasks)} runs in batches of up to {self.batch_size}")
        run_batched(tasks, folders, self.batch_size)

        returns = []
        for sweep_config, overrides, folder in zip(configs, job_overrides, folders):
            HydraConfig.instance().set_config(sweep_config)
            log.info(f"\t#{sweep_config.hydra.job.num} : {' '.join(filter_overrides(overrides))}")
            failure = failure_of(folder)  # failed in phase 1: reported, not computed again
            task_function = self.task_function if failure is None else (
                lambda cfg, folder=folder, failure=failure, num=sweep_config.hydra.job.num:
                report_failure(folder, failure, num))
            returns.append(run_job(hydra_context=self.hydra_context, task_function=task_function,
                                   config=sweep_config, job_dir_key="hydra.sweep.dir",
                                   job_subdir_key="hydra.sweep.subdir"))
        return returns
