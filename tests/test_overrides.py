"""Mistyped command-line keys are named with their nearest allowed names before Hydra runs
(il2rd/config/overrides.py); well-formed overrides, appends, groups and Hydra's keys pass."""

from __future__ import annotations

import subprocess
import sys

import pytest

from il2rd.config import overrides

GROUPS = ("scenario", "sweep", "cell_type", "hydra")


@pytest.mark.parametrize("argument, suggestion", [
    ("grid.spacng=20", "grid.spacing"),
    ("phsyics.diffusion=3", "physics.diffusion"),
    ("cell_types.treg.receptrs=5", "cell_types.treg.receptors"),
    ("output.atribution=false", "output.attribution"),
    ("solver.rtoll=1e-5,1e-6", "solver.rtol"),
])
def test_a_typo_names_the_key_and_the_nearest_names(argument, suggestion):
    problem = overrides.check([argument], GROUPS)
    key = argument.split("=")[0]
    assert problem.startswith(f"{key} is not a config key; did you mean {suggestion}")
    assert "has:" in problem


@pytest.mark.parametrize("argument", [
    "grid.spacing=20", "cell_types.treg.receptors=5", "+cell_types.dc.receptors=1", "~cell_types.treg",
    "scenario=t_zone", "hydra.run.dir=x", "-m", "grid.boundary.x_lo=fixed", "cell_types.nk.region.kind=box",
    "precision=float64", "cell_type@cell_types.nk=nk", "hydra/launcher=il2rd_batched", "hydra.launcher.batch_size=4",
])
def test_well_formed_overrides_pass(argument):
    assert overrides.check([argument], GROUPS) is None


@pytest.mark.parametrize("argument, shown, allowed", [
    ("physics.diffusion=abc", "physics.diffusion = 'abc' is not a number", "a number (um^2/s), e.g. physics.diffusion=10.0"),
    ("grid.spacing=10um", "grid.spacing = '10um' is not a number", "a number (um)"),
    ("physics.diffusion=5,10,fast", "physics.diffusion = '5,10,fast': 'fast' is not a number", "a number (um^2/s)"),
    ("grid.shape=[32,32.5,32]", "grid.shape = '[32,32.5,32]': '32.5' is not a whole number",
     "a list of whole numbers (voxels), e.g. grid.shape=[64,64,64]"),
    ("seed=1.5", "seed = '1.5' is not a whole number", "a whole number, e.g. seed=0"),
    ("solver.rtol=tight", "solver.rtol = 'tight' is not a number", "e.g. solver.rtol=1e-06"),
])
def test_a_value_that_is_not_a_number_names_the_key_the_unit_and_an_example(argument, shown, allowed):
    problem = overrides.check([argument], GROUPS)
    assert problem.startswith(shown) and allowed in problem


@pytest.mark.parametrize("argument", [
    "physics.diffusion=5", "physics.diffusion=5,10,20", "time.end=1e4", "grid.shape=[8,8,8]", "seed=3",
    "physics.diffusion=range(1,3)", "physics.diffusion=${physics.decay}", "physics.cell_radius=null",
    "physics.cell_radius=per_type", "physics.diffusion=inf",  # inf: not a typo; the run's own check bounds it
])
def test_numbers_sweeps_interpolations_and_nulls_pass(argument):
    assert overrides.check([argument], GROUPS) is None


def test_the_command_refuses_a_typo_before_any_work(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import sys; from il2rd.cli import main; sys.argv[0] = 'il2rd'; main()",
                           "grid.spacng=20"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2
    assert "grid.spacng is not a config key; did you mean grid.spacing?" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "outputs").exists()
    done = subprocess.run([sys.executable, "-c", "import sys; from il2rd.cli import main; sys.argv[0] = 'il2rd'; main()",
                           "physics.diffusion=abc"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2 and "physics.diffusion = 'abc' is not a number" in done.stderr
    assert "Traceback" not in done.stderr and "OmegaConf" not in done.stderr and not (tmp_path / "outputs").exists()


def test_an_unknown_preset_names_the_presets_and_the_nearest():
    """scenario=<name> against configs/scenario/: a typo or a short name gets the nearest presets and
    the list without the shared parts (_node); each value of a multirun list is checked; the
    shipped presets pass."""
    from il2rd.cli import config_dir

    options = {"scenario": [p.stem for p in (config_dir() / "scenario").glob("*.yaml")]}
    assert "t_zone" in options["scenario"] and "_node" in options["scenario"]
    for argument, suggestion in (("scenario=treg_sorce", "scenario=treg_source"), ("scenario=dc", "scenario=dc_source"),
                                 ("scenario=t_zone,nk_sourc", "scenario=nk_source")):
        problem = overrides.check([argument], GROUPS, options)
        name = argument.split(",")[-1].split("=")[-1]
        assert problem.startswith(f"scenario={name}: there is no configs/scenario/{name}.yaml")
        assert f"did you mean {suggestion}" in problem and "_node" not in problem and "dc_source" in problem
    assert overrides.check(["scenario=t_zone,dc_source,therapy_high"], GROUPS, options) is None
