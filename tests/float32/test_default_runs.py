"""Whole runs through il2rd.simulate.run in the shipped default precision (float32, x64 off):
steady, implicit, explicit, coupled and tissue (cells that move), with the attribution, on small lattices. Each converges,
stores its accuracy per snapshot, and balances to float32 tolerance."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from compose import compose_config
from il2rd.simulate import run


@pytest.mark.parametrize("kind", ["steady", "implicit", "explicit", "coupled", "tissue"])
def test_default_tissue_runs_in_float32(kind, tmp_path):
    extra = [] if kind == "steady" else ["time.end=1200", "time.snapshot_every=600", "solver.dt=300"]
    if kind == "explicit":
        extra[-1] = "solver.dt=1"
    cfg = compose_config("grid.shape=[16,16,16]", f"solver.kind={kind}", "output.progress=false", *extra)
    assert cfg.precision == "float32"
    result = run(cfg, tmp_path)
    assert result.field_pM.dtype == np.float32 and np.all(np.isfinite(result.field_pM))
    with h5py.File(result.path, "r") as f:
        assert f.attrs["complete"] and f.attrs["precision"] == "float32"
        n = int(f.attrs["n_snapshots"])
        assert f["solver/backward_error"].shape == (n,)
        solved = f["solver/relative_residual"][-1], f["solver/backward_error"][-1]
    if kind != "explicit":
        assert solved[0] <= 1e-6 or solved[1] <= 1.2e-7
    if result.attribution is not None:
        # the attribution shares out the last field as if it were steady: a coupled run's changes slowly
        # (closure 7e-4 on the default T zone), a tissue run's as its cells walk (about 1 % here, reported)
        assert result.attribution.closure <= (3e-2 if kind == "tissue" else 1e-3)


def test_one_source_in_a_small_box(tmp_path):
    """The newcomer's first problem: one secreting cell in a 16^3 zero-flux box (it failed before)."""
    csv = tmp_path / "one.csv"
    csv.write_text("x,y,z,type\n80,80,80,il2_producer\n")
    cfg = compose_config("grid.shape=[16,16,16]", f"cells.csv={csv}", "output.progress=false")
    result = run(cfg, tmp_path / "out")
    assert "backward error" in result.accuracy()
