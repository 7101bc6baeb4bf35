"""`il2rd --describe [KEY]` (il2rd/config/describe.py): every schema key has its meaning (and its unit where
it has one) in the schema itself; the listing shows each with the composed config's value, grouped
by section, within 120 columns; one key, a section, a type and a group can be asked for; an unknown
name gets the nearest ones and exit 2. In this process but for one call of the real command."""

from __future__ import annotations

import dataclasses
import os
import subprocess

import pytest
from test_cli import il2rd_command

from il2rd.config import describe
from il2rd.config.schema import CellTypeConfig, FollicleConfig, Il2rdConfig
from il2rd.tables import WIDTH


@pytest.fixture(scope="module")
def cfg():
    return describe.compose()


def test_every_key_and_section_of_the_schema_says_what_it_means():
    sections, keys = describe.schema()
    assert not [k.name for k in keys if not k.help.strip()]
    assert not [s.name for s in sections if not s.help.strip()]
    # every field is there once: the nested sections and the cell types' keys included
    names = {k.name for k in keys}
    assert {"physics.diffusion", "node.follicles.count", "precision", "resume"} <= names
    assert {f"cell_types.<name>.{f.name}" for f in dataclasses.fields(CellTypeConfig)} <= names
    assert len(names) == len(keys)
    assert {k.name: k.unit for k in keys}["physics.diffusion"] == "um^2/s"
    assert {k.name: k.unit for k in keys}["cell_types.<name>.secretion"] == "molecules/s"
    # the metadata rides on the Hydra schema without changing it
    assert dataclasses.fields(Il2rdConfig)[0].metadata["help"]


def test_the_listing_groups_every_key_by_section_with_the_composed_values(cfg):
    text = describe.listing(cfg)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    _, keys = describe.schema()
    for key in keys:
        assert any(line.strip().startswith(f"{key.name} = ") for line in lines), key.name
    headings = [line.split(":")[0] for line in lines if line and not line.startswith(" ") and ":" in line]
    assert headings.index("grid") < headings.index("physics") < headings.index("cell_types.<name>") < headings.index("output")
    assert "  grid.shape = [128, 128, 128]  (voxels)" in lines  # configs/config.yaml's value, not the schema's 64^3
    assert "il2_producer, treg, naive_t" in text  # the default scenario's types
    assert "scenario=NAME  (here: t_zone)" in text and "treg_source" in text
    assert "_node" not in text  # the presets' shared part is not a choice


def test_one_key_section_type_and_group(cfg):
    one = describe.one("physics.diffusion", cfg)
    assert one.splitlines()[0] == "physics.diffusion = 10.0  (um^2/s)" and "diffusion coefficient" in one
    assert "[64, 64, 64]" in describe.one("grid.shape", cfg)  # the schema's default beside the config's value
    assert describe.one("node.follicles", cfg).count(" = ") == len(dataclasses.fields(FollicleConfig))
    treg = describe.one("cell_types.treg", cfg)
    assert "cell_types.treg.receptors = 20000.0  (per cell)" in treg
    assert describe.one("cell_types.treg.km", cfg).startswith("cell_types.treg.km = 43.0  (pM)")
    assert "not a type of this config" in describe.one("cell_types.dc.secretion", cfg)
    assert describe.one("cell_types.division", cfg).startswith("cell_types.<name>.division = 0.0  (1/day)")  # every type's key
    assert describe.one("grid.boundary.x_lo", cfg).startswith("grid.boundary = zero_flux")  # inside a free-form value
    assert "therapy_high" in describe.one("scenario", cfg)


@pytest.mark.parametrize("name, nearest", [
    ("diffusion", "physics.diffusion"),
    ("grid.spacng", "grid.spacing"),
    ("hill", "signalling.hill or receptor_dynamics.hill"),
    ("cell_types.treg.recptors", "cell_types.treg.receptors"),
])
def test_an_unknown_name_gets_the_nearest_and_exit_2(name, nearest, capsys):
    assert describe.main(["--describe", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"il2rd: error: {name} is not a config key") and f"did you mean {nearest}" in err
    assert len(err.strip().splitlines()) == 1


def test_overrides_choose_the_config_described(capsys):
    assert describe.main(["--describe", "scenario=treg_source", "cell_types.treg.secretion"]) == 0
    assert capsys.readouterr().out.startswith("cell_types.treg.secretion = 10.0  (molecules/s)")
    assert describe.main(["--describe", "scenario=no_such_preset"]) == 2
    assert "no_such_preset" in capsys.readouterr().err


def test_the_command_describes_a_key_before_hydra_sees_the_flag(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run([il2rd_command(), "--describe", "solver.dt"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("solver.dt = 10.0  (s)")
    assert not list(tmp_path.iterdir())  # no run folder: nothing ran
