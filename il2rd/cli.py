"""Console entry point `il2rd` (a Hydra app). `il2rd.simulate.run(cfg)` is the same without Hydra."""

from __future__ import annotations

import logging
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


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from .simulate import RunInterrupted, SimulationError, run

    logging.getLogger("jax").setLevel(logging.WARNING)  # hide JAX's backend probing
    output_dir = None if cfg.output.dir is not None else Path(HydraConfig.get().runtime.output_dir)
    try:
        result = run(cfg, output_dir)
    except (ConfigError, PlacementError, OutputError) as err:
        print(f"il2rd: error: {err}", file=sys.stderr)
        sys.exit(2)
    except SimulationError as err:
        print(f"il2rd: simulation failed: {err}", file=sys.stderr)
        sys.exit(1)
    except RunInterrupted as err:
        print(f"il2rd: {err}", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:  # before the output file existed
        print("il2rd: interrupted before any output was written", file=sys.stderr)
        sys.exit(130)
    log.info("\n%s", result.summary.format())
    log.info("wrote %s (%.1f s)", result.path, result.wall_time_s)


if __name__ == "__main__":
    main()
