"""`il2rd-compare-sources` (il2rd/compare.py): the presets run, the table and the figure are
written, shares are consistent, and a bad scenario name stops it before anything runs."""

import csv

import numpy as np
import pytest
from test_presets import QUIET, SMALL_NODE

from il2rd.compare import main


def test_compare_writes_a_consistent_table_and_figure(tmp_path, capsys):
    scenarios = ["treg_source", "b_cell_source", "no_il2"]
    assert main(["--scenarios", *scenarios, "--out", str(tmp_path), "--no-progress", *SMALL_NODE, *QUIET]) == 0
    with (tmp_path / "compare_sources.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert (tmp_path / "compare_sources.png").stat().st_size > 10_000
    for name in scenarios:
        assert (tmp_path / name / "il2rd.h5").is_file()
        mine = [r for r in rows if r["scenario"] == name]
        assert len(mine) == 10  # the node's ten cell types
        shares = np.array([float(r["uptake_share"]) for r in mine])
        uptake = np.array([float(r["uptake_molecules_per_s"]) for r in mine])
        if name == "no_il2":
            assert np.all(uptake == 0) and np.all(shares == 0)
            assert all(float(r["pstat5_positive_fraction"]) == 0 for r in mine)
        else:
            assert shares.sum() == pytest.approx(1.0, rel=1e-9)
            np.testing.assert_allclose(shares, uptake / uptake.sum(), rtol=1e-9)
    assert "wrote" in capsys.readouterr().out


def test_an_unknown_scenario_stops_it_before_any_run(tmp_path, capsys):
    assert main(["--scenarios", "treg_source", "no_such_preset", "--out", str(tmp_path), *SMALL_NODE, *QUIET]) == 2
    assert "no_such_preset" in capsys.readouterr().err
    assert not (tmp_path / "treg_source").exists()
