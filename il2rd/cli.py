"""Console entry point `il2rd` (a Hydra app). `il2rd.simulate.run(cfg)` is the same without Hydra."""

from __future__ import annotations

import logging
import os
import sys
from importlib import resources
from pathlib import Path

import hydra
from omegaconf import DictConfig

from .cells import PlacementError
from .config import ConfigError, register_configs
from .io.hdf5 import OutputError

log = logging.getLogger("il2rd")


def config_dir() -> Path:
    """The shipped configs: inside the installed package (wheel), else the repository's configs/."""
    packaged = Path(str(resources.files("il2rd"))) / "configs"
    if (packaged / "config.yaml").is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "configs"


register_configs()


class JobFailed(RuntimeError):
    """A run of a multirun failed; Hydra records it and goes on with the other runs."""


FAILED_MARKER = "il2rd.failed"  # written into a multirun job's folder with the reason, for il2rd-collect


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .simulate import RunInterrupted, SimulationError, run

    logging.getLogger("jax").setLevel(logging.WARNING)  # hide JAX's backend probing
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if multirun:  # jobs may share one GPU: none may take all its memory up front
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        result = run(cfg, None if cfg.output.dir is not None else job_dir)
    except (ConfigError, PlacementError, OutputError, SimulationError) as err:
        kind = "simulation failed" if isinstance(err, SimulationError) else "error"
        if multirun:  # record it and let Hydra go on with the other jobs
            (job_dir / FAILED_MARKER).write_text(f"{kind}: {err}\n")
            raise JobFailed(f"{kind}: {err}") from None
        print(f"il2rd: {kind}: {err}", file=sys.stderr)
        sys.exit(1 if isinstance(err, SimulationError) else 2)
    except RunInterrupted as err:
        print(f"il2rd: {err}", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:  # before the output file existed
        print("il2rd: interrupted before any output was written", file=sys.stderr)
        sys.exit(130)
    log.info("\n%s", result.summary.format())
    log.info(result.accuracy())
    if result.attribution is not None:
        log.info("\n%s", result.attribution.format())
    log.info("wrote %s (%.1f s)", result.path, result.wall_time_s)


if __name__ == "__main__":
    main()
