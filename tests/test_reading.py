"""Reading a run (il2rd.io.load, xarray): every HDF5 group opens alone in xarray with named
dimensions and coordinates (cells with time, readouts and cell_types by type name, attribution
by cell, source and responder), and load() gives the attribution and the readouts by name, each
checked against an independent sum over the stored per-cell data. Default precision (float32)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from compose import compose_config

import il2rd.io
from il2rd.simulate import run

xr = pytest.importorskip("xarray")
pytest.importorskip("h5netcdf")

SMALL = ["grid.shape=[16,12,8]", "output.progress=false"]  # float32, the default


@pytest.fixture(scope="module")
def steady(tmp_path_factory):
    return run(compose_config(*SMALL), output_dir=tmp_path_factory.mktemp("steady")).path


@pytest.fixture(scope="module")
def transient(tmp_path_factory):
    cfg = compose_config(*SMALL, "solver.kind=implicit", "time.end=20", "time.snapshot_every=10")
    return run(cfg, output_dir=tmp_path_factory.mktemp("transient")).path


def open_group(path, group=None):
    return xr.open_dataset(path, engine="h5netcdf", group=group)


def test_every_group_opens_in_xarray_with_named_dimensions_and_coordinates(steady):
    with h5py.File(steady, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f["cells/type_names"][:]]
        n_cells = f["cells/x"].shape[0]
        groups = [name for name, obj in f.items() if isinstance(obj, h5py.Group)]
        by_cell, sources = f["attribution/by_cell_molecules_per_s"][:], f["attribution/source"].asstr()[:]
        mean_il2 = f["readouts/mean_il2_pM"][:]
        km = f["cell_types/km_pM"][:]
    assert sorted(groups) == ["attribution", "cell_types", "cells", "fields", "meta", "readouts", "solver"]
    for group in [None, *groups]:
        with open_group(steady, group) as ds:
            assert not any(str(d).startswith("phony_dim") for d in ds.dims), (group, dict(ds.sizes))

    with open_group(steady, "cells") as ds:
        assert ds["il2"].dims == ("time", "cell")
        assert "time" in ds.coords and ds["time"].values.tolist() == [0.0]
        assert ds.sizes["cell"] == n_cells
    with open_group(steady, "solver") as ds:
        assert ds["backward_error"].dims == ("time",) and ds["time"].values.tolist() == [0.0]
    with open_group(steady, "readouts") as ds:
        assert ds["mean_il2_pM"].dims == ("cell_type",)
        assert ds["cell_type"].values.tolist() == names
        np.testing.assert_array_equal(ds["mean_il2_pM"].values, mean_il2)
        assert float(ds["mean_il2_pM"].sel(cell_type="treg")) == mean_il2[names.index("treg")]
    with open_group(steady, "cell_types") as ds:
        assert ds["cell_type"].values.tolist() == names
        assert float(ds["km_pM"].sel(cell_type="naive_t")) == km[names.index("naive_t")]
    with open_group(steady, "attribution") as ds:
        assert ds["by_cell_molecules_per_s"].dims == ("cell", "source")
        assert ds["uptake_molecules_per_s"].dims == ("source", "responder")
        assert ds["autocrine_molecules_per_s"].dims == ("cell",)
        assert ds["source"].values.tolist() == list(sources) and ds["responder"].values.tolist() == names
        assert ds["cell"].values.tolist() == list(range(n_cells))
        np.testing.assert_array_equal(ds["by_cell_molecules_per_s"].values, by_cell)
        treg_from_producer = ds["uptake_molecules_per_s"].sel(source="il2_producer", responder="treg").item()
        assert treg_from_producer > 0


def test_the_cells_group_of_a_transient_run_has_its_time_coordinate(transient):
    with il2rd.io.load(transient) as r:
        times, il2 = r.time, np.asarray(r.cells["il2"])
        assert r.attribution is None  # transient: no attribution
    with open_group(transient, "cells") as ds:
        np.testing.assert_array_equal(ds["time"].values, [0.0, 10.0, 20.0])
        np.testing.assert_array_equal(ds["time"].values, times)
        np.testing.assert_array_equal(ds["il2"].sel(time=10.0).values, il2[1])


def test_load_gives_the_attribution_by_name(steady):
    with il2rd.io.load(steady) as r:
        a = r.attribution
        types = r.cells["type"]
        uptake_per_cell = np.asarray(r.cells["uptake"][-1], np.float64)
        q = np.asarray(r.cell_types["secretion_molecules_per_s"], np.float64)
        names = r.type_names
    assert a.sources == ("il2_producer",) and a.responders == tuple(names)
    assert a.remainder == "il2_producer"  # a steady run's lone source: the field itself, no solve of its own
    by_cell = np.asarray(a.by_cell_molecules_per_s, np.float64)
    # by type: the per-cell shares summed over each responder type's cells (independently here)
    for k, source in enumerate(a.sources):
        for i, responder in enumerate(names):
            assert a.uptake()[source][responder] == pytest.approx(by_cell[types == i, k].sum(), rel=1e-4, abs=1e-6)
    # each cell's shares add up to its uptake (the closure, float32 storage)
    np.testing.assert_allclose(by_cell.sum(axis=1), uptake_per_cell, rtol=1e-3, atol=1e-6)
    # the output is the sources' secretion; shares and what decayed or left add up to 1
    assert a.output()["il2_producer"] == pytest.approx(q[types].sum(), rel=1e-6)
    shares = a.shares()["il2_producer"]
    assert sum(shares[n] for n in names) + shares["decay/left"] == pytest.approx(1.0, abs=1e-12)
    assert 0 < shares["decay/left"] < 0.05
    # autocrine: the producers' own uptake of their own secretion, part of their type's share
    producer = names.index("il2_producer")
    own = np.asarray(a.autocrine_molecules_per_s, np.float64)
    assert a.autocrine()["il2_producer"] == pytest.approx(own[types == producer].sum(), rel=1e-6)
    assert np.all(own[types != producer] == 0)
    assert 0 < shares["autocrine"] <= shares["il2_producer"]


def test_load_gives_the_readouts_by_type_name(steady):
    with il2rd.io.load(steady) as r:
        table = r.readouts_by_type
        il2 = np.asarray(r.cells["il2"][-1], np.float64)
        pstat5 = np.asarray(r.cells["pstat5"][-1], np.float64)
        types, names = r.cells["type"], r.type_names
        threshold = r.file["readouts"].attrs["pstat5_threshold"]
    assert list(table) == names
    for i, name in enumerate(names):
        mine = types == i
        assert table[name]["count"] == mine.sum()
        assert table[name]["mean_il2_pM"] == pytest.approx(il2[mine].mean(), rel=1e-5)
        assert table[name]["pstat5_positive_fraction"] == pytest.approx(np.mean(pstat5[mine] >= threshold), abs=1e-3)
    assert "cell_type" not in r.readouts  # the name scale is not a readout column
