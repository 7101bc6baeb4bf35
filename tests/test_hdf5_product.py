"""The HDF5 data product (issue 5): the versioned schema round-trips, xarray and ParaView (XDMF)
open the file, a run killed with SIGKILL leaves a file holding its completed snapshots, and
`resume=<file>` continues it to the same result as an uninterrupted run.

Every check compares with something computed independently of the writer: the run's own
returned field, the configured snapshot times, the per-cell readouts recomputed from the stored
field and the stored per-type parameters with the formulas written out here, and, for crash and
resume, an uninterrupted run of the same config on the same device.

Lattices have three different side lengths, so that a transposed field cannot pass.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import jax
import numpy as np
import pytest
from compose import compose_config
from omegaconf import OmegaConf

import il2rd
import il2rd.io
from il2rd.config import ConfigError, parse
from il2rd.config.schema import CellTypeConfig
from il2rd.figures import make_figures
from il2rd.io import hdf5
from il2rd.simulate import run

SHAPE = (12, 10, 8)  # nx, ny, nz
SPACING = 10.0
# point sinks: the schema checks read each cell's IL-2 from its voxel of the stored field
TRANSIENT = [f"grid.shape=[{SHAPE[0]},{SHAPE[1]},{SHAPE[2]}]", "physics.cell_radius=null", "solver.kind=implicit", "time.end=40",
             "time.snapshot_every=10", "precision=float64", "output.progress=false"]
TIMES = [0.0, 10.0, 20.0, 30.0, 40.0]
GZIP_FILTER, ZSTD_FILTER = 1, 32015  # HDF5 filter ids (zstd: the registered id hdf5plugin uses)


def filter_ids(dataset: h5py.Dataset) -> list[int]:
    """The HDF5 filter pipeline of a dataset, as filter ids (1 deflate/gzip, 2 shuffle, 32015 zstd)."""
    plist = dataset.id.get_create_plist()
    return [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]


def centres(n: int, h: float = SPACING) -> np.ndarray:
    return (np.arange(n) + 0.5) * h


def il2rd_command(name: str = "il2rd") -> str:
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.is_file() else shutil.which(name)
    assert found, f"the {name} console command is not installed"
    return found


def subprocess_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}


def run_il2rd(workdir: Path, *overrides: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([il2rd_command(), *overrides, f"hydra.run.dir={workdir / 'hydra'}"], cwd=workdir,
                          env=subprocess_env(), capture_output=True, text=True, timeout=timeout)


def check_success(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stdout + proc.stderr


def read_all(path: Path) -> dict:
    """Every snapshot-indexed array of a run file, the complete snapshots only, as numpy."""
    with il2rd.io.load(path) as r:
        out = dict(time=np.asarray(r.time), field=np.asarray(r.field),
                   **{name: np.asarray(r.cells[name]) for name in ("il2", "uptake", "receptors", "pstat5")})
        out["n_snapshots"] = int(r.attrs["n_snapshots"])
        if "checkpoint" in r.file:  # the slot of the last committed snapshot
            out["checkpoint"] = r.file["checkpoint"][f"il2_{(out['n_snapshots'] - 1) % 2}"][...]
    return out


def assert_same_run(got: dict, reference: dict, n: int | None = None) -> None:
    """The first n snapshots (all for None) of two runs of the same config are equal: same
    device, same arithmetic, so exact up to 1e-6 relative."""
    n = len(reference["time"]) if n is None else n
    np.testing.assert_array_equal(got["time"][:n], reference["time"][:n])
    for name in ("field", "il2", "uptake", "receptors", "pstat5"):
        np.testing.assert_allclose(got[name][:n], reference[name][:n], rtol=1e-6, atol=0, err_msg=name)


# ---------------------------------------------------------------------------------------------
# One small transient run, shared by the schema, xarray and XDMF tests


@pytest.fixture(scope="module")
def transient(tmp_path_factory):
    out = tmp_path_factory.mktemp("transient")
    cfg = compose_config(*TRANSIENT)
    start = time.perf_counter()
    result = run(cfg, output_dir=out)
    elapsed = time.perf_counter() - start
    return cfg, result, elapsed


def test_schema_round_trip(transient):
    cfg, result, elapsed = transient
    nx, ny, nz = SHAPE
    with il2rd.io.load(result.path) as r:
        # time axis: the configured snapshot times
        assert parse(cfg).numerics.snapshot_times_s == TIMES
        np.testing.assert_array_equal(r.time, TIMES)

        # the field (time, z, y, x) float32 pM; its last snapshot is the run's final field transposed
        assert r.field.shape == (len(TIMES), nz, ny, nx) and r.field.dtype == np.float32
        np.testing.assert_array_equal(r.field[-1], result.field_pM.transpose(2, 1, 0).astype(np.float32))
        np.testing.assert_array_equal(r.field_xyz(-1), result.field_pM.astype(np.float32))
        field = np.asarray(r.field, np.float64)
        assert np.all(field[0] == 0) and np.all(np.diff(field.sum(axis=(1, 2, 3))) > 0)  # fills up from zero
        np.testing.assert_array_equal(r.x, centres(nx))
        np.testing.assert_array_equal(r.y, centres(ny))
        np.testing.assert_array_equal(r.z, centres(nz))
        assert r.spacing_um == SPACING and r.shape == SHAPE

        # per-cell columns (time, cell), recomputed from the stored field and per-type parameters
        x, y, z, types = (r.cells[k] for k in ("x", "y", "z", "type"))
        n = len(x)
        assert n > 0 and types.shape == (n,)
        assert r.type_names == list(cfg.cell_types)
        i, j, k = (np.floor(np.stack([x, y, z]) / SPACING)).astype(int)
        for name in ("il2", "uptake", "receptors", "pstat5"):
            assert r.cells[name].shape == (len(TIMES), n), name
        il2, uptake, receptors, pstat5 = (np.asarray(r.cells[name], np.float64)
                                          for name in ("il2", "uptake", "receptors", "pstat5"))
        # IL-2 seen is the field at the cell's voxel (both stored as float32: 6e-8 relative rounding)
        np.testing.assert_allclose(il2, field[:, k, j, i], rtol=1e-7, atol=0)
        np.testing.assert_allclose(il2[-1], result.field_pM[i, j, k], rtol=1e-7, atol=0)
        params = r.cell_types
        assert params["name"] == list(cfg.cell_types)
        for key, cfg_key in (("secretion_molecules_per_s", "secretion"), ("receptors", "receptors"),
                             ("km_pM", "km"), ("k_int_per_s", "k_int")):
            default = getattr(CellTypeConfig(), cfg_key)
            np.testing.assert_allclose(params[key], [float(cfg.cell_types[t].get(cfg_key, default)) for t in cfg.cell_types])
        R = params["receptors"][types]
        np.testing.assert_array_equal(receptors, np.broadcast_to(R, receptors.shape))
        expected_uptake = params["k_int_per_s"][types] * R * il2 / (params["km_pM"][types] + il2)  # molecules/s
        # (recomputed from the float32-stored c, so float32 rounding: c^3 triples c's 6e-8)
        np.testing.assert_allclose(uptake, expected_uptake, rtol=1e-6, atol=1e-30)
        # pSTAT5 (Busse et al. 2010): c^3 / (EC50^3 + c^3), EC50 = 125 pM * 860^1.5 / (860^1.5 + R^1.5)
        ec50 = 125.0 * 860.0**1.5 / (860.0**1.5 + R**1.5)
        np.testing.assert_allclose(pstat5, il2**3 / (ec50**3 + il2**3), rtol=1e-6, atol=1e-30)
        assert np.all((pstat5 >= 0) & (pstat5 <= 1))
        assert pstat5[-1].max() > 0.0  # the run is long enough for some cells to signal

        # the config round-trips: the stored YAML is the composed config, resolved
        assert r.config == OmegaConf.to_container(cfg, resolve=True)

        # versions, device and wall time
        a = r.attrs
        assert a["schema_version"] == hdf5.SCHEMA_VERSION == 3
        assert a["il2rd_version"] == il2rd.__version__
        assert a["jax_version"] == jax.__version__
        assert a["numpy_version"] == np.__version__
        assert a["h5py_version"] == h5py.__version__
        assert isinstance(a["device"], str) and jax.devices()[0].platform in a["device"]
        assert 0 < a["wall_time_s"] <= elapsed
        # where the time went, stage by stage (il2rd/stopwatch.py): the stages add up to the run's time
        stages = {k: a[k] for k in a if k.startswith("time_") and k != "time_compile_s"}
        assert {"time_set_up_s", "time_solve_s", "time_readouts_s", "time_write_s"} <= set(stages)
        assert all(v >= 0 for v in stages.values()) and sum(stages.values()) <= a["wall_time_s"] + 0.05
        assert 0 <= a["time_compile_s"] <= a["wall_time_s"]  # 0 where this process compiled it all before
        assert a["n_snapshots"] == len(TIMES)
        command_line = r.file["meta/command_line"][()]
        assert isinstance(command_line.decode() if isinstance(command_line, bytes) else command_line, str)

        # HDF5 layout: dimension scales on the field, one snapshot per chunk, gzip by default
        d = r.file["fields/il2"]
        assert d.attrs["units"] == "pM"
        assert [dim.label for dim in d.dims] == ["time", "z", "y", "x"]
        for dim, name in zip(d.dims, ("time", "z", "y", "x")):
            assert len(dim) == 1 and dim[0] == r.file[name], name  # the root scale (also linked as /cells/time)
            assert h5py.h5ds.is_scale(r.file[name].id)
        np.testing.assert_array_equal(d.dims[0][0][:], TIMES)
        np.testing.assert_array_equal(d.dims[3][0][:], centres(nx))
        assert r.file["x"].attrs["units"] == "um" and r.file["time"].attrs["units"] == "s"
        assert d.maxshape[0] is None  # the time axis grows as the run goes
        assert d.chunks == (1, nz, ny, nx)
        assert d.compression == "gzip" and GZIP_FILTER in filter_ids(d)
        assert r.file["il2"] == d  # the root link xarray reads is the same dataset
        assert sorted(r.file["checkpoint"]) == ["il2_0", "il2_1"]
        last_slot = r.file["checkpoint"][f"il2_{(len(TIMES) - 1) % 2}"]
        np.testing.assert_array_equal(last_slot[...], result.field_pM)  # full precision
        assert last_slot.dtype == np.float64


def test_compression_none_writes_unfiltered_data(tmp_path):
    result = run(compose_config(*TRANSIENT, "output.compression=none", "time.end=10"), output_dir=tmp_path)
    with h5py.File(result.path, "r") as f:
        d = f["fields/il2"]
        assert d.compression is None and filter_ids(d) == []
        assert d.chunks[0] == 1
        filtered = []
        f.visititems(lambda name, obj: filtered.append(name)
                     if isinstance(obj, h5py.Dataset) and obj.chunks and filter_ids(obj) else None)
        assert filtered == []  # no dataset of the file is filtered
        np.testing.assert_array_equal(d[-1], result.field_pM.transpose(2, 1, 0).astype(np.float32))


def test_compression_zstd_works_or_is_refused_naming_the_key(tmp_path):
    cfg = compose_config(*TRANSIENT, "output.compression=zstd", "time.end=10")
    try:
        import hdf5plugin  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError) as info:
            run(cfg, output_dir=tmp_path / "out")
        assert "output.compression" in str(info.value) and "zstd" in str(info.value)
        assert "hdf5plugin" in str(info.value)  # says what is missing
        assert not (tmp_path / "out").exists()  # refused before anything is written
        return
    result = run(cfg, output_dir=tmp_path / "out")
    with h5py.File(result.path, "r") as f:
        d = f["fields/il2"]
        assert ZSTD_FILTER in filter_ids(d)
        np.testing.assert_array_equal(d[-1], result.field_pM.transpose(2, 1, 0).astype(np.float32))


def test_steady_run_stores_one_snapshot_at_time_zero(tmp_path):
    result = run(compose_config(f"grid.shape=[{SHAPE[0]},{SHAPE[1]},{SHAPE[2]}]", "precision=float64",
                                "output.progress=false"), output_dir=tmp_path)
    with il2rd.io.load(result.path) as r:
        np.testing.assert_array_equal(r.time, [0.0])
        assert r.attrs["n_snapshots"] == 1 and r.field.shape == (1, SHAPE[2], SHAPE[1], SHAPE[0])
        np.testing.assert_array_equal(r.field_xyz(0), result.field_pM.astype(np.float32))
        assert r.field[0].max() > 0
        assert r.cells["il2"].shape == (1, len(r.cells["x"]))
        assert "checkpoint" not in r.file  # nothing to resume
    grids = xdmf_snapshots(result.path)
    assert [float(g.find("Time").get("Value")) for g in grids] == [0.0]


def test_per_type_readouts_are_stored_as_printed_and_follow_from_the_cell_columns(transient):
    """/readouts holds the printed per-type table of the last field; each column is recomputed
    here from the stored per-cell columns (means over each type's cells, the pSTAT5+ fraction
    at the stored threshold)."""
    cfg, result, _ = transient
    with il2rd.io.load(result.path) as r:
        readouts = r.readouts
        assert r.file["readouts"].attrs["time_s"] == r.time[-1]
        threshold = r.file["readouts"].attrs["pstat5_threshold"]
        types = r.cells["type"]
        last = {name: np.asarray(r.cells[name][-1], np.float64) for name in ("il2", "uptake", "pstat5", "receptors",
                                                                            "receptors_intermediate")}
        for i, name in enumerate(r.type_names):
            mine = types == i
            printed = next(t for t in result.summary.types if t.name == name)
            assert readouts["count"][i] == printed.count == mine.sum()
            assert readouts["pstat5_positive_fraction"][i] == printed.pstat5_positive_fraction
            assert readouts["pstat5_positive_fraction"][i] == pytest.approx(np.mean(last["pstat5"][mine] >= threshold), abs=1e-3)
            for column, cell_column in (("mean_il2_pM", "il2"), ("mean_pstat5", "pstat5"), ("mean_receptors", "receptors"),
                                        ("mean_receptors_intermediate", "receptors_intermediate"),
                                        ("mean_uptake_molecules_per_s", "uptake")):
                assert readouts[column][i] == pytest.approx(last[cell_column][mine].mean(), rel=1e-5, abs=1e-12), column
            assert readouts["total_uptake_molecules_per_s"][i] == pytest.approx(last["uptake"][mine].sum(), rel=1e-5, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# xarray (h5netcdf)


def test_xarray_opens_the_field_and_the_cell_table(transient):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    cfg, result, _ = transient
    nx, ny, nz = SHAPE
    with il2rd.io.load(result.path) as r:
        field, n_cells = np.asarray(r.field), len(r.cells["x"])
        il2_seen, cell_x, types = np.asarray(r.cells["il2"]), r.cells["x"], r.cells["type"]

    with xr.open_dataset(result.path, engine="h5netcdf") as ds:
        il2 = ds["il2"]
        assert il2.dims == ("time", "z", "y", "x")
        assert il2.shape == (len(TIMES), nz, ny, nx)
        assert il2.attrs["units"] == "pM"
        for name, n in (("x", nx), ("y", ny), ("z", nz)):
            assert name in ds.coords
            np.testing.assert_array_equal(ds[name].values, centres(n))
            assert ds[name].attrs["units"] == "um"
        np.testing.assert_array_equal(ds["time"].values, TIMES)
        np.testing.assert_array_equal(il2.values, field)
        # a labelled selection picks the voxel by its centre in um
        point = il2.sel(time=40.0, x=centres(nx)[7], y=centres(ny)[3], z=centres(nz)[5]).item()
        assert point == result.field_pM[7, 3, 5].astype(np.float32)

    with xr.open_dataset(result.path, engine="h5netcdf", group="cells") as cells:
        assert cells.sizes["cell"] == n_cells
        assert cells["il2"].dims[-1] == "cell" and cells["il2"].shape == (len(TIMES), n_cells)
        assert cells["x"].dims == ("cell",) and cells["type"].dims == ("cell",)
        np.testing.assert_array_equal(cells["il2"].values, il2_seen)
        np.testing.assert_array_equal(cells["x"].values, cell_x)
        np.testing.assert_array_equal(cells["type"].values, types)
        assert cells["il2"].attrs["units"] == "pM"


# ---------------------------------------------------------------------------------------------
# XDMF sidecar


def xdmf_snapshots(h5_path: Path) -> list:
    """The uniform grids of the sidecar's temporal collection, after checking its frame."""
    xmf = Path(h5_path).with_suffix(".xmf")
    assert xmf.is_file(), f"no XDMF sidecar next to {h5_path}"
    root = ET.parse(xmf).getroot()
    assert root.tag == "Xdmf" and root.get("Version") in ("2.0", "3.0")
    domains = root.findall("Domain")
    assert len(domains) == 1
    collections = domains[0].findall("Grid")
    assert len(collections) == 1
    series = collections[0]
    assert series.get("GridType") == "Collection" and series.get("CollectionType") == "Temporal"
    grids = series.findall("Grid")
    assert all(g.get("GridType", "Uniform") == "Uniform" for g in grids)
    return grids


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split()]


def test_xdmf_sidecar_describes_each_snapshot(transient):
    _, result, _ = transient
    nx, ny, nz = SHAPE
    grids = xdmf_snapshots(result.path)
    assert len(grids) == len(TIMES)
    with h5py.File(result.path, "r") as f:
        for i, g in enumerate(grids):
            assert float(g.find("Time").get("Value")) == TIMES[i]

            topology = g.find("Topology")
            assert topology.get("TopologyType") == "3DCoRectMesh"
            assert ints(topology.get("Dimensions")) == [nz + 1, ny + 1, nx + 1]  # nodes, slowest axis first
            geometry = g.find("Geometry")
            assert geometry.get("GeometryType") == "ORIGIN_DXDYDZ"
            origin, spacing = geometry.findall("DataItem")
            assert [float(v) for v in origin.text.split()] == [0.0, 0.0, 0.0]
            assert [float(v) for v in spacing.text.split()] == [SPACING] * 3

            attributes = g.findall("Attribute")
            assert len(attributes) == 1
            attribute = attributes[0]
            assert attribute.get("Center") == "Cell" and attribute.get("AttributeType") == "Scalar"
            slab = attribute.find("DataItem")
            assert slab.get("ItemType") == "HyperSlab"
            assert ints(slab.get("Dimensions")) == [nz, ny, nx]  # one value per cell of the mesh
            selection, source = slab.findall("DataItem")
            assert ints(selection.get("Dimensions")) == [3, 4]
            start, stride, count = np.array(ints(selection.text)).reshape(3, 4)
            assert start.tolist() == [i, 0, 0, 0]
            assert stride.tolist() == [1, 1, 1, 1]
            assert count.tolist() == [1, nz, ny, nx]
            assert np.prod(count) == np.prod(ints(slab.get("Dimensions")))

            # the HDF DataItem names the dataset by a path relative to the sidecar, with its real shape
            assert source.get("Format") == "HDF"
            file_name, dataset_path = source.text.strip().split(":", 1)
            h5 = (result.path.parent / file_name).resolve()
            assert h5 == result.path.resolve()
            dataset = f[dataset_path]
            assert ints(source.get("Dimensions")) == list(dataset.shape)
            assert source.get("NumberType") == "Float" and int(source.get("Precision")) == dataset.dtype.itemsize

            # reading the hyperslab it describes gives snapshot i
            block = dataset[tuple(slice(s, s + c * st, st) for s, st, c in zip(start, stride, count))]
            np.testing.assert_array_equal(block.reshape(nz, ny, nx), f["fields/il2"][i])
            if i == len(TIMES) - 1:  # and the last is the run's final field
                np.testing.assert_array_equal(block.reshape(nz, ny, nx),
                                              result.field_pM.transpose(2, 1, 0).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# Crash safety and resume: a real `il2rd` killed with SIGKILL part-way

# explicit steps on a 32 x 28 x 24 lattice: about 2 s of computing for 41 snapshots, so that the
# kill lands part-way; the float64 checkpoint (172 kB) is larger than HDF5's 64 kB sieve buffer
LONG = ["grid.shape=[32,28,24]", "solver.kind=explicit", "time.end=6000", "time.snapshot_every=150",
        "solver.dt=10", "precision=float64", "output.progress=false"]
LONG_TIMES = [150.0 * i for i in range(41)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The LONG run, uninterrupted, in this process (the same device as the subprocesses)."""
    result = run(compose_config(*LONG), output_dir=tmp_path_factory.mktemp("uninterrupted"))
    return result.path, read_all(result.path)


def n_snapshots_now(path: Path) -> int:
    """n_snapshots of a file another process is writing (no lock: the writer holds it)."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            return int(f.attrs["n_snapshots"])
    except Exception:  # not created yet, or caught mid-write: try again
        return 0


def test_killed_run_keeps_its_completed_snapshots_and_resumes_to_the_same_result(tmp_path, uninterrupted):
    _, reference = uninterrupted
    np.testing.assert_array_equal(reference["time"], LONG_TIMES)
    out = tmp_path / "out"
    path = out / "il2rd.h5"
    proc = subprocess.Popen([il2rd_command(), *LONG, f"output.dir={out}", f"hydra.run.dir={tmp_path / 'hydra'}"],
                            cwd=tmp_path, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        seen = 0
        while proc.poll() is None and time.monotonic() < deadline:
            seen = n_snapshots_now(path)
            if seen >= 2:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, (
        f"il2rd was not killed part-way (exit {proc.returncode}, {seen} snapshots seen):\n{stderr.decode()}")

    # the file opens and holds exactly the completed snapshots, equal to the uninterrupted run's
    with h5py.File(path, "r") as f:
        n = int(f.attrs["n_snapshots"])
        assert f["fields/il2"].shape[0] >= n  # a started snapshot may be allocated, but is not counted
    assert 2 <= n < len(LONG_TIMES), f"killed after {n} snapshots"
    killed = read_all(path)
    assert len(killed["time"]) == n and killed["field"].shape[0] == n and killed["il2"].shape[0] == n
    np.testing.assert_array_equal(killed["time"], LONG_TIMES[:n])
    assert np.all(np.isfinite(killed["field"])) and np.all(np.isfinite(killed["il2"]))
    assert killed["field"][0].max() == 0.0 and killed["field"][1].max() > 0.0
    assert_same_run(killed, reference, n)
    # the sidecar never lists a snapshot that is not complete (it is rewritten just after each)
    assert len(xdmf_snapshots(path)) in (n - 1, n)

    # `il2rd resume=<file>` continues it to the uninterrupted run's result
    proc = run_il2rd(tmp_path, f"resume={path}")
    check_success(proc)
    resumed = read_all(path)
    assert resumed["n_snapshots"] == len(LONG_TIMES)
    assert_same_run(resumed, reference)
    np.testing.assert_allclose(resumed["checkpoint"], reference["checkpoint"], rtol=1e-6, atol=0)
    assert len(xdmf_snapshots(path)) == len(LONG_TIMES)


# A SIGKILL can arrive at any instruction. These kill il2rd deterministically at the moments
# inside Hdf5Writer.append that the commit protocol must survive, by wrapping the h5py calls the
# writer makes (in the child process only), then resume in this process.
KILL_AT_SNAPSHOT = 3
KILLER = textwrap.dedent("""
    import os, signal, sys
    from h5py._hl.attrs import AttributeManager
    from h5py._hl.dataset import Dataset
    where, K = sys.argv[1], int(sys.argv[2])
    def die():
        os.kill(os.getpid(), signal.SIGKILL)
    set_attr, set_item = AttributeManager.__setitem__, Dataset.__setitem__
    checkpoint_writes = []
    def patched_set_attr(self, name, value):
        if where == "commit" and name == "n_snapshots" and int(value) == K + 1:
            die()  # everything of snapshot K is written and flushed, the marker not yet raised
        return set_attr(self, name, value)
    def patched_set_item(self, index, value):
        if where == "time" and self.name == "/time" and index == K:
            die()  # the field and the cell columns of snapshot K are written, its time not yet
        result = set_item(self, index, value)
        if where == "checkpoint" and self.name.startswith("/checkpoint/"):
            checkpoint_writes.append(self.name)
            if len(checkpoint_writes) == K + 1:
                self.file.flush()
                die()  # snapshot K's checkpoint slot is on disk (over snapshot K-2's), not committed
        return result
    AttributeManager.__setitem__ = patched_set_attr
    Dataset.__setitem__ = patched_set_item
    sys.argv = ["il2rd", *sys.argv[3:]]
    from il2rd.cli import main
    main()
""")
SHORT = ["grid.shape=[32,28,24]", "solver.kind=explicit", "time.end=500", "time.snapshot_every=100",
         "solver.dt=10", "precision=float64", "output.progress=false"]


@pytest.fixture(scope="module")
def uninterrupted_short(tmp_path_factory):
    result = run(compose_config(*SHORT), output_dir=tmp_path_factory.mktemp("uninterrupted_short"))
    return read_all(result.path)


@pytest.mark.parametrize("where", ["time", "checkpoint", "commit"])
def test_kill_at_any_moment_of_a_snapshot_write_still_resumes_to_the_same_result(tmp_path, uninterrupted_short, where):
    """SIGKILL while snapshot K is being written: before its time is written ("time"), between the
    checkpoint slot's data reaching the disk and the commit ("checkpoint"), and after everything
    is flushed but before n_snapshots is raised ("commit"). The file must show the K committed
    snapshots, and resuming must reproduce the uninterrupted run."""
    reference = uninterrupted_short
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", KILLER, where, str(KILL_AT_SNAPSHOT), *SHORT, f"output.dir={out}",
                           f"hydra.run.dir={tmp_path / 'hydra'}"],
                          cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"exit {proc.returncode}\n{proc.stderr}"
    path = out / "il2rd.h5"

    killed = read_all(path)  # opens; snapshot K was not committed
    assert killed["n_snapshots"] == KILL_AT_SNAPSHOT
    assert_same_run(killed, reference, KILL_AT_SNAPSHOT)

    result = run(compose_config(f"resume={path}"))
    resumed = read_all(path)
    np.testing.assert_allclose(result.field_pM, reference["checkpoint"], rtol=1e-6, atol=0)
    assert resumed["n_snapshots"] == len(reference["time"])
    assert_same_run(resumed, reference)


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    first = run(compose_config(*TRANSIENT), output_dir=tmp_path)
    before = read_all(first.path)
    again = run(compose_config(f"resume={first.path}"))
    after = read_all(first.path)
    assert again.path == first.path
    np.testing.assert_array_equal(again.field_pM, first.field_pM)
    assert after["n_snapshots"] == len(TIMES)
    assert_same_run(after, before)
    np.testing.assert_array_equal(after["checkpoint"], before["checkpoint"])


@pytest.fixture(scope="module")
def steady_file(tmp_path_factory):
    result = run(compose_config("grid.shape=[6,5,4]", "output.progress=false"),
                 output_dir=tmp_path_factory.mktemp("steady"))
    return result.path


@pytest.mark.parametrize("case", ["missing", "steady", "not-hdf5"])
def test_bad_resume_input_is_refused_naming_resume(tmp_path, steady_file, case):
    if case == "missing":
        path = tmp_path / "no_such.h5"
    elif case == "steady":
        path = tmp_path / "steady.h5"
        shutil.copy(steady_file, path)
    else:
        path = tmp_path / "text.h5"
        path.write_text("not an HDF5 file\n")
    before = path.read_bytes() if path.exists() else None
    with pytest.raises(ConfigError) as info:
        run(compose_config(f"resume={path}"))
    message = str(info.value)
    assert message.startswith("resume = ") and str(path) in message
    if case == "steady":
        assert "steady" in message
    if before is not None:
        assert path.read_bytes() == before  # left as it was


def test_bad_resume_on_the_command_line_exits_with_one_line(tmp_path, steady_file):
    proc = run_il2rd(tmp_path, f"resume={steady_file}")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("il2rd: error: resume = "), proc.stderr
    assert str(steady_file) in lines[0] and "steady" in lines[0]


# ---------------------------------------------------------------------------------------------
# output.field_every: the field at every k-th snapshot and the last


def test_field_and_cells_every_store_every_kth_snapshot_and_the_last(tmp_path, transient):
    """output.field_every=3, cells_every=2 on the TRANSIENT run (5 snapshots): fields at snapshots
    0, 3 and the last (4), cell columns at 0, 2 and 4, each bitwise the every-snapshot run's; the
    skipped ones read NaN and take no chunk on disk; time and solver columns at every snapshot;
    XDMF lists the stored fields; the figures are drawn at a snapshot holding both."""
    _, full, _ = transient
    result = run(compose_config(*TRANSIENT, "output.field_every=3", "output.cells_every=2"), output_dir=tmp_path)
    fields, cells = np.array([1, 0, 0, 1, 1], bool), np.array([1, 0, 1, 0, 1], bool)

    def chunks_written(d):  # the snapshots (first axis) that have a chunk on disk
        return {d.id.get_chunk_info(k).chunk_offset[0] for k in range(d.id.get_num_chunks())}

    with il2rd.io.load(full.path) as a, il2rd.io.load(result.path) as b:
        np.testing.assert_array_equal(b.field_stored, fields)
        np.testing.assert_array_equal(b.cells_stored, cells)
        assert a.field_stored.all() and a.cells_stored.all()
        np.testing.assert_array_equal(b.time, a.time)
        for i in range(5):
            for kept, mine, theirs in ((fields[i], b.field[i], a.field[i]),
                                       *((cells[i], b.cells[n][i], a.cells[n][i]) for n in hdf5.CELL_COLUMNS)):
                if kept:
                    np.testing.assert_array_equal(mine, theirs)
                else:
                    assert np.isnan(mine).all()
        np.testing.assert_array_equal(b.file["solver/relative_residual"][:], a.file["solver/relative_residual"][:])
        assert chunks_written(b.file["fields/il2"]) == {0, 3, 4}
        assert all(chunks_written(b.file["cells"][n]) == {0, 2, 4} for n in hdf5.CELL_COLUMNS)
        assert b.snapshot_index(None, stored=True) == 4 and b.snapshot_index(31.0, stored=True) == 4
        assert b.snapshot_index(9.0, stored=True) == 0 and b.snapshot_index(9.0) == 1
    assert [float(g.find("Time").get("Value")) for g in xdmf_snapshots(result.path)] == [0.0, 30.0, 40.0]
    lines = []
    written = make_figures(result.path, tmp_path / "figures", time_s=31.0, gif=False, report=lines.append,
                           only=["slice", "timeseries"])
    assert sorted(p.name for p in written) == ["slice.png", "timeseries.png"] and not lines


@pytest.mark.parametrize("key", ["field_every", "cells_every"])
def test_storing_every_kth_snapshot_below_one_is_refused_naming_the_key(key):
    for bad in ("0", "-2"):  # (a non-integer is refused by the schema when composing)
        with pytest.raises(ConfigError, match=rf"output\.{key} = {bad}: must be an integer >= 1"):
            parse(compose_config(*TRANSIENT, f"output.{key}={bad}"))
