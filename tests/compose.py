"""The shipped config composed with overrides, as the `il2rd` command composes it."""

from hydra import compose, initialize_config_dir

import il2rd.cli
from il2rd.config.schema import register_configs


def compose_config(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(il2rd.cli.config_dir()), version_base="1.3"):
        return compose("config", overrides=list(overrides))
