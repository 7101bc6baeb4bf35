"""The `il2rd` console command, run for real in a subprocess: it runs with overrides, prints the
summary, and writes the contract's HDF5 datasets (issue 2, "Interface contract"); bad input
exits non-zero with one line naming the key and the value, without a Python traceback.

Each run pays JAX's start-up (a few seconds), so the runs are few and small: a 16 x 12 x 8
lattice (every axis a different length, so that a transposed field cannot pass).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from compose import compose_config
import yaml
from omegaconf import OmegaConf

import il2rd
from il2rd.config import parse

SHAPE = (16, 12, 8)  # nx, ny, nz
# point sinks: the contract checks read each cell's IL-2 from its voxel of the stored field (with the
# default sub-grid closure a cell sees the IL-2 at its surface instead; tests/test_subgrid.py)
SMALL = [f"grid.shape=[{SHAPE[0]},{SHAPE[1]},{SHAPE[2]}]", "physics.cell_radius=null"]
SPACING = 10.0


def il2rd_command() -> str:
    beside_python = Path(sys.executable).parent / "il2rd"
    found = str(beside_python) if beside_python.is_file() else shutil.which("il2rd")
    assert found, "the il2rd console command is not installed"
    return found


def run_il2rd(workdir: Path, *overrides: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`il2rd <overrides>` in workdir, its Hydra run directory workdir/run."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [il2rd_command(), *overrides, f"hydra.run.dir={workdir / 'run'}"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout,
    )


def check_contract_file(path: Path, overrides: list[str]) -> dict:
    """Every dataset and attribute of the HDF5 contract, checked against the run's config and
    against each other. Returns the arrays the callers check further."""
    assert path.is_file(), f"no {path}"
    nx, ny, nz = SHAPE
    with h5py.File(path, "r") as f:
        # root attributes
        assert f.attrs["il2rd_version"] == il2rd.__version__
        assert f.attrs["spacing_um"] == SPACING
        np.testing.assert_array_equal(f.attrs["origin_um"], [0.0, 0.0, 0.0])

        # time axis and field, (time, z, y, x) in pM with labelled dimensions
        t = f["time"][:]
        assert t.ndim == 1 and len(t) >= 1 and np.all(np.diff(t) > 0) and t[0] == 0.0
        field = f["fields/il2"]
        assert field.shape == (len(t), nz, ny, nx)
        assert np.issubdtype(field.dtype, np.floating)
        assert field.attrs["units"] == "pM"
        assert [d.label for d in field.dims] == ["time", "z", "y", "x"]
        il2 = field[:]
        assert np.all(np.isfinite(il2)) and il2.min() >= 0.0

        # the per-cell table
        x, y, z = (f[f"cells/{a}"][:] for a in "xyz")
        n = len(x)
        assert len(y) == len(z) == n > 0
        assert np.all((x >= 0) & (x < nx * SPACING) & (y >= 0) & (y < ny * SPACING) & (z >= 0) & (z < nz * SPACING))
        types = f["cells/type"][:]
        assert np.issubdtype(types.dtype, np.integer) and types.shape == (n,)
        names = [s.decode() if isinstance(s, bytes) else str(s) for s in f["cells/type"].attrs["type_names"]]
        stored = [s.decode() if isinstance(s, bytes) else str(s) for s in f["cells/type_names"][:]]
        assert names == stored
        assert types.min() >= 0 and types.max() < len(names)
        seen, uptake = f["cells/il2"][:], f["cells/uptake"][:]
        assert seen.shape == uptake.shape == (len(t), n)

        # the resolved config, as YAML text that round-trips to the run's config
        text = f["meta/config"][()]
        text = text.decode() if isinstance(text, bytes) else text
        stored_cfg = OmegaConf.create(yaml.safe_load(text))
        expected_cfg = compose_config(*overrides)
        assert OmegaConf.to_container(stored_cfg) == OmegaConf.to_container(expected_cfg, resolve=True)
        assert parse(stored_cfg) == parse(expected_cfg)  # the same run, to the last setting
        assert names == list(expected_cfg.cell_types)

        params = {k: f[f"cell_types/{k}"][:] for k in ("secretion_molecules_per_s", "receptors", "km_pM", "k_int_per_s")}

    # the field's transposition: the (z, y, x) dataset at a cell's voxel is what the cell sees
    i, j, k = (np.floor(np.stack([x, y, z]) / SPACING)).astype(int)
    for snapshot in range(len(t)):
        np.testing.assert_allclose(il2[snapshot][k, j, i], seen[snapshot], rtol=2e-6, atol=1e-6)
    # and each cell's uptake is its receptors' saturating uptake of that concentration
    c = seen[-1]
    expected_uptake = params["k_int_per_s"][types] * params["receptors"][types] * c / (params["km_pM"][types] + c)
    np.testing.assert_allclose(uptake[-1], expected_uptake, rtol=1e-5, atol=1e-9)
    return dict(time=t, il2=il2, x=x, y=y, z=z, types=types, names=names, seen=seen, uptake=uptake)


def check_summary(stdout: str, data: dict) -> None:
    """The printed summary: mean and max IL-2 of the last field, and per type its count, the
    mean IL-2 its cells see and their mean uptake, all matching the file."""
    last = data["il2"][-1].astype(np.float64)
    field_line = re.search(r"^.*IL-2.*\bmean\s+([-+0-9.eE]+)\s*pM.*\bmax\s+([-+0-9.eE]+)\s*pM", stdout, re.M)
    assert field_line, f"no line with the mean and max IL-2 (pM) in the summary:\n{stdout}"
    assert float(field_line.group(1)) == pytest.approx(last.mean(), rel=2e-3)
    assert float(field_line.group(2)) == pytest.approx(last.max(), rel=2e-3)
    for index, name in enumerate(data["names"]):
        row = re.search(rf"^{re.escape(name)}\s+(\d+)\s+(\S+)\s+(\S+)", stdout, re.M)
        assert row, f"no summary row for cell type {name!r}:\n{stdout}"
        mask = data["types"] == index
        assert int(row.group(1)) == mask.sum()
        if mask.any():
            assert float(row.group(2)) == pytest.approx(data["seen"][-1][mask].mean(), rel=2e-3, abs=1e-9)
            assert float(row.group(3)) == pytest.approx(data["uptake"][-1][mask].mean(), rel=2e-3, abs=1e-9)


def check_success(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr + proc.stdout


# ---------------------------------------------------------------------------------------------
# Runs that work


def test_steady_run_writes_the_contract_file_and_prints_the_summary(tmp_path):
    overrides = [*SMALL]
    proc = run_il2rd(tmp_path, *overrides)
    check_success(proc)
    path = tmp_path / "run" / "il2rd.h5"  # output.dir null: Hydra's run directory
    data = check_contract_file(path, overrides)
    assert data["time"].tolist() == [0.0]
    assert data["names"] == ["il2_producer", "treg", "naive_t"]
    volume_mm3 = np.prod(SHAPE) * SPACING**3 / 1e9
    counts = [int(np.sum(data["types"] == i)) for i in range(3)]
    assert counts == [round(d * volume_mm3) for d in (1e4, 1e5, 5.9e5)]
    assert data["il2"].max() > 0
    check_summary(proc.stdout + proc.stderr, data)
    assert str(path) in proc.stdout + proc.stderr  # says where it wrote


@pytest.mark.parametrize("kind", ["implicit", "explicit"])
def test_transient_run_writes_snapshots_at_the_configured_times(tmp_path, kind):
    overrides = [*SMALL, f"solver.kind={kind}", "time.end=25", "time.snapshot_every=10", "solver.dt=5"]
    proc = run_il2rd(tmp_path, *overrides)
    check_success(proc)
    data = check_contract_file(tmp_path / "run" / "il2rd.h5", overrides)
    assert data["time"].tolist() == [0.0, 10.0, 20.0, 25.0]
    totals = data["il2"].sum(axis=(1, 2, 3))
    assert totals[0] == 0.0 and np.all(np.diff(totals) > 0)  # starts empty, fills up
    check_summary(proc.stdout + proc.stderr, data)


def test_csv_placed_run(tmp_path):
    rows = [(15.0, 25.0, 35.0, "il2_producer"), (25.0, 25.0, 35.0, "treg"), (155.0, 115.0, 75.0, "naive_t"),
            (0.0, 0.0, 0.0, "treg"), (40.0, 30.0, 20.0, "naive_t")]
    csv = tmp_path / "cells.csv"
    csv.write_text("x,y,z,type\n" + "".join(f"{x},{y},{z},{t}\n" for x, y, z, t in rows))
    overrides = [*SMALL, f"cells.csv={csv}", f"output.dir={tmp_path / 'out'}"]
    proc = run_il2rd(tmp_path, *overrides)
    check_success(proc)
    data = check_contract_file(tmp_path / "out" / "il2rd.h5", overrides)  # output.dir honoured
    assert not (tmp_path / "run" / "il2rd.h5").exists()
    np.testing.assert_allclose(np.stack([data["x"], data["y"], data["z"]], 1), [r[:3] for r in rows])
    assert [data["names"][i] for i in data["types"]] == [r[3] for r in rows]
    # the only source is the producer's voxel: the field's maximum is what the producer sees
    assert data["seen"][-1][0] == pytest.approx(data["il2"][-1].max(), rel=1e-6)
    assert data["seen"][-1][0] > data["seen"][-1][1:].max() > 0
    check_summary(proc.stdout + proc.stderr, data)


def test_type_added_on_the_command_line(tmp_path):
    overrides = [*SMALL, "+cell_types.foo.secretion=10", "+cell_types.foo.count=3"]
    proc = run_il2rd(tmp_path, *overrides)
    check_success(proc)
    path = tmp_path / "run" / "il2rd.h5"
    data = check_contract_file(path, overrides)
    assert data["names"] == ["il2_producer", "treg", "naive_t", "foo"]
    assert int(np.sum(data["types"] == 3)) == 3
    with h5py.File(path, "r") as f:  # defaults for the fields not given
        foo = 3
        assert f["cell_types/secretion_molecules_per_s"][foo] == 10.0
        assert f["cell_types/receptors"][foo] == 0.0
        assert f["cell_types/km_pM"][foo] == 43.0 and f["cell_types/k_int_per_s"][foo] == pytest.approx(1.1e-3)
    assert np.all(data["uptake"][-1][data["types"] == 3] == 0.0)  # no receptors, no uptake
    check_summary(proc.stdout + proc.stderr, data)


# ---------------------------------------------------------------------------------------------
# Bad input: a non-zero exit, one line naming the key and the value, no traceback


def check_refused(proc: subprocess.CompletedProcess, *named: str) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    for text in named:
        assert text in lines[0], f"{text!r} not named in: {lines[0]}"
    return lines[0]


def bad_csv(tmp_path: Path, body: str) -> str:
    path = tmp_path / "bad.csv"
    path.write_text("x,y,z,type\n" + body)
    return str(path)


BAD_CLI = {
    "diffusion-negative": (lambda tmp: ["physics.diffusion=-1"], ["physics.diffusion", "-1"]),
    "shape-zero": (lambda tmp: ["grid.shape=[16,0,8]"], ["grid.shape[1]", "0"]),
    "csv-missing": (lambda tmp: [f"cells.csv={tmp / 'no.csv'}"], ["cells.csv", "no.csv"]),
    "csv-unknown-type": (lambda tmp: [f"cells.csv={bad_csv(tmp, '5,5,5,treg' + chr(10) + '15,5,5,bcell' + chr(10))}"],
                         ["line 3", "bcell", "il2_producer, treg, naive_t"]),
    "csv-two-in-one-voxel": (lambda tmp: [f"cells.csv={bad_csv(tmp, '5,5,5,treg' + chr(10) + '9,9,9,treg' + chr(10))}"],
                             ["lines [2, 3]", "(0, 0, 0)"]),
    "csv-outside": (lambda tmp: [f"cells.csv={bad_csv(tmp, '5,5,500,treg' + chr(10))}"], ["line 2", "500", "outside"]),
    "csv-row-missing-a-field": (lambda tmp: [f"cells.csv={bad_csv(tmp, '5,5,5,treg' + chr(10) + '15,5,5' + chr(10))}"],
                                ["cells.csv", "line 3"]),
    "more-cells-than-voxels": (lambda tmp: ["cell_types.naive_t.density=9.5e5"], ["cell_types", "voxels"]),
}


@pytest.mark.parametrize("case", list(BAD_CLI))
def test_bad_input_exits_with_one_line_naming_key_and_value(tmp_path, case):
    make_overrides, named = BAD_CLI[case]
    proc = run_il2rd(tmp_path, *SMALL, *make_overrides(tmp_path))
    line = check_refused(proc, *named)
    assert line.startswith("il2rd: error:")
    assert not (tmp_path / "run").exists()  # a refused run leaves no folder (Hydra made one for it)
    assert tmp_path.is_dir()


def test_value_refused_by_the_schema_names_key_and_value_without_traceback(tmp_path):
    """Hydra itself refuses a shape of 2.5 voxels while composing (List[int])."""
    proc = run_il2rd(tmp_path, "grid.shape=[16,12,2.5]")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "grid.shape" in proc.stderr and "2.5" in proc.stderr


@pytest.mark.parametrize("where", ["proc", "under-a-file"])
def test_unwritable_output_dir_fails_quickly_before_computing(tmp_path, where):
    if where == "proc":
        out = "/proc/il2rd-test/out"  # not creatable, even by root
    else:
        (tmp_path / "a_file").write_text("not a directory")
        out = str(tmp_path / "a_file" / "out")
    # a run that would compute for a long time: 10^6 s of explicit steps on 64^3 voxels
    start = time.perf_counter()
    proc = run_il2rd(tmp_path, "grid.shape=[64,64,64]", "solver.kind=explicit", "time.end=1e6",
                     f"output.dir={out}", timeout=90)
    elapsed = time.perf_counter() - start
    check_refused(proc, "output.dir", out)
    assert elapsed < 30, f"took {elapsed:.0f} s to refuse an unwritable output.dir"


def test_a_run_given_output_dir_keeps_its_log_there_and_prints_plain_lines(tmp_path):
    """With output.dir (and no hydra.run.dir) the run's il2rd.log and .hydra/ sit beside its file,
    no outputs/<date>/<time> is made, and the terminal shows messages without log prefixes; a run
    refused for bad input removes the output.dir it made."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    out = tmp_path / "out"
    done = subprocess.run([il2rd_command(), "grid.shape=[6,5,4]", "output.attribution=false", f"output.dir={out}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {p.name for p in out.iterdir()} >= {"il2rd.h5", "il2rd.log", ".hydra"}
    assert not (tmp_path / "outputs").exists()
    assert re.search(r"^IL-2 field: mean", done.stdout, re.M) and "][INFO]" not in done.stdout
    assert "IL-2 field: mean" in (out / "il2rd.log").read_text()  # the log keeps everything, with times
    bad = tmp_path / "bad"
    refused = subprocess.run([il2rd_command(), "grid.shape=[6,5,4]", "physics.diffusion=-1", f"output.dir={bad}"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "physics.diffusion = -1" in refused.stderr
    assert not bad.exists() and not (tmp_path / "outputs").exists()
