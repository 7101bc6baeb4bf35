"""The Python API (il2rd/api.py) and examples/quickstart.py, which uses all of it.

The example runs for real in a subprocess, as a user runs it (on its --small lattice, 16 x 12 x 8):
what it prints is checked against the files it says it wrote. compose and run_sweep are checked in
this process on the same small lattice.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from compose import compose_config
from matplotlib import image
from omegaconf import OmegaConf

import il2rd
import il2rd.io
from il2rd.config import ConfigError
from il2rd.runfolder import config_key

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "examples" / "quickstart.py"
SHAPE = [16, 12, 8]


def python_env() -> dict:
    """This process's environment (the test compilation cache and XLA flags) with this checkout
    first on the path, so that the subprocess imports the il2rd under test."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def test_import_il2rd_is_cheap():
    """`import il2rd` imports neither JAX nor Hydra; the API functions come on first use."""
    code = ("import sys, il2rd; assert 'jax' not in sys.modules and 'hydra' not in sys.modules, sys.modules.keys(); "
            "assert callable(il2rd.compose) and callable(il2rd.run_sweep); print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], env=python_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_quickstart_runs_and_prints_what_its_files_hold(tmp_path):
    proc = subprocess.run([sys.executable, str(QUICKSTART), str(tmp_path / "out"), "--small"], cwd=tmp_path,
                          env=python_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    assert "Traceback" not in proc.stderr

    # every file it says it wrote is there; the figures are real images, not blank
    written = [Path(p) for p in re.findall(r"^wrote (\S+)$", out, re.M)]
    assert [p.name for p in written] == ["il2rd.h5", "slice.png", "attribution.png"]
    for path in written:
        assert path.is_file() and path.stat().st_size > 0, path
    for png in written[1:]:
        pixels = image.imread(png)
        assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 400, png
        assert pixels[..., :3].std() > 0.05, f"{png} is blank"

    # the run: the printed tables and read-back numbers are the file's
    run_file = written[0]
    assert f"field: shape {tuple(SHAPE)}" in out
    share = float(re.search(r"Tregs took up ([\d.]+)% of the producers' IL-2", out).group(1)) / 100
    with il2rd.io.load(run_file) as run:
        assert run.attrs["complete"] and run.config["grid"]["shape"] == SHAPE
        assert run.attribution.shares()["il2_producer"]["treg"] == pytest.approx(share, abs=0.0005)
        stored_fraction = run.readouts_by_type["treg"]["pstat5_positive_fraction"]
    assert f"{stored_fraction:.1%}" in re.search(r"^treg .*$", out, re.M).group(0)  # the summary's pSTAT5+ column

    # the sweep: one line per point, in order, with finite numbers that move the right way: more
    # IL-2Ra per Treg, more Tregs pSTAT5+ although they see less IL-2 (they deplete it)
    lines = re.findall(r"^sweep: treg receptors (\S+): treg pSTAT5\+ fraction (\S+), "
                       r"treg mean IL-2 seen (\S+) pM, file (\S+)$", out, re.M)
    assert [float(r) for r, *_ in lines] == [3e3, 1e4, 3e4]
    fraction = [float(f) for _, f, _, _ in lines]
    seen_pM = [float(c) for _, _, c, _ in lines]
    assert all(0 <= f <= 1 for f in fraction) and all(math.isfinite(c) and c > 0 for c in seen_pM)
    assert fraction == sorted(fraction) and fraction[0] < fraction[-1]
    assert seen_pM == sorted(seen_pM, reverse=True)
    for (receptors, printed, _, path) in lines:  # each point's file holds the number printed for it
        with il2rd.io.load(path) as point:
            assert point.config["cell_types"]["treg"]["receptors"] == float(receptors)
            assert point.readouts_by_type["treg"]["pstat5_positive_fraction"] == pytest.approx(float(printed), abs=5e-5)
    assert re.search(r"^quickstart: done in [\d.]+ s$", out, re.M)


def test_compose_is_the_command_config_and_refuses_mistyped_keys():
    strings = il2rd.compose("grid.shape=[16,12,8]", "physics.diffusion=5", "+cell_types.dc.secretion=20",
                            "+cell_types.dc.count=3", "+cell_types.dc.region={kind: sphere, center: [80, 60, 40], radius: 30}")
    keywords = il2rd.compose(grid__shape=SHAPE, **{"physics.diffusion": 5, "+cell_types.dc.secretion": 20,
                                                   "+cell_types.dc.count": np.int64(3),
                                                   "+cell_types.dc.region": {"kind": "sphere", "center": [80, 60, 40],
                                                                             "radius": 30}})
    assert OmegaConf.to_yaml(strings) == OmegaConf.to_yaml(keywords)
    assert config_key(strings) == config_key(keywords)  # the same run: either reuses the other's file
    assert config_key(strings) == config_key(compose_config(  # and the command's own composition
        "grid.shape=[16,12,8]", "physics.diffusion=5", "+cell_types.dc.secretion=20", "+cell_types.dc.count=3",
        "+cell_types.dc.region={kind: sphere, center: [80, 60, 40], radius: 30}"))
    assert strings.cell_types.dc.region.center == [80, 60, 40] and keywords.physics.diffusion == 5.0

    with pytest.raises(ConfigError, match=r"grid\.spacng = .*did you mean grid\.spacing\?"):
        il2rd.compose("grid.spacng=20")
    with pytest.raises(ConfigError, match=r"cell_types\.treg\.recepters = .*did you mean cell_types\.treg\.receptors"):
        il2rd.compose(cell_types__treg__recepters=5)
    with pytest.raises(ConfigError, match=r"physics\.diffusion = -1\.0: must be a finite number > 0"):
        il2rd.compose(physics__diffusion=-1)  # a value a run refuses, refused at once
    with pytest.raises(ConfigError, match=r"grid\.spacing = 'abc': .*could not be converted"):
        il2rd.compose("grid.spacing=abc")
    with pytest.raises(TypeError, match=r"physics\.diffusion = .*no config form"):
        il2rd.compose(physics__diffusion=object())
    assert [il2rd.override_text(v) for v in (1e-5, "1e3", "t_zone", None, True, [1, 2.5], "it's")] == \
        ["1e-05", "'1e3'", "t_zone", "null", "true", "[1,2.5]", '"it\'s"']


def test_run_sweep_runs_every_point_and_tables_it(tmp_path):
    base = [f"grid.shape=[{','.join(map(str, SHAPE))}]", "output.attribution=false"]
    with pytest.raises(ConfigError, match=r"cell_types\.treg\.recepters"):  # before anything is written
        il2rd.run_sweep(base, {"cell_types.treg.recepters": [1e3, 3e4]}, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()

    sweep = il2rd.run_sweep(base, {"cell_types.treg.receptors": [1e3, 3e4]}, tmp_path / "sweep", progress=False)
    assert sweep.parameters == [{"cell_types.treg.receptors": 1e3}, {"cell_types.treg.receptors": 3e4}]
    assert sweep.files == [tmp_path / "sweep" / "0" / "il2rd.h5", tmp_path / "sweep" / "1" / "il2rd.h5"]
    assert sweep.failures() == {}
    rows = sweep.table()
    assert [(r["run"], r["cell_type"]) for r in rows] == [(run, t) for run in "01" for t in ("il2_producer", "treg", "naive_t")]
    assert {r["status"] for r in rows} == {"complete"}
    treg = [r for r in rows if r["cell_type"] == "treg"]
    assert [r["param:cell_types.treg.receptors"] for r in treg] == [1e3, 3e4]
    assert all(r["param:grid.shape"] == SHAPE for r in rows)
    for r, path in zip(treg, sweep.files):  # the table is the files' last snapshot
        with il2rd.io.load(path) as point:
            assert point.readouts_by_type["treg"]["mean_il2_pM"] == pytest.approx(r["mean_il2_pM"], rel=1e-6)
    assert treg[1]["total_uptake_molecules_per_s"] > treg[0]["total_uptake_molecules_per_s"]

    # the same sweep again reuses its finished points: nothing is rewritten
    stamps = [p.stat().st_mtime_ns for p in sweep.files]
    again = il2rd.run_sweep(base, {"cell_types.treg.receptors": [1e3, 3e4]}, tmp_path / "sweep", progress=False)
    assert again.files == sweep.files and [p.stat().st_mtime_ns for p in again.files] == stamps
