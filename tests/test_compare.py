"""`il2rd-compare-sources` (il2rd/compare.py): the presets run, the table and the figure are
written, shares are consistent, and a bad scenario name stops it before anything runs."""

import csv
import re
from datetime import datetime

import numpy as np
import pytest
from test_presets import QUIET, SMALL_NODE

from il2rd.compare import DEFAULT_ROOT, dated_folder, main


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


def test_by_default_each_comparison_gets_its_own_dated_folder(tmp_path, monkeypatch, capsys):
    """outputs/compare_sources/<YYYY-MM-DD>/<HH-MM-SS>/, never one a previous comparison wrote;
    the command says where it wrote."""
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["--scenarios", "no_il2", *SMALL_NODE, *QUIET]) == 0
    folders = sorted(p.parent for p in (tmp_path / DEFAULT_ROOT).glob("*/*/compare_sources.csv"))
    assert len(folders) == 2
    for folder in folders:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", folder.parent.name)
        assert re.fullmatch(r"\d\d-\d\d-\d\d(_\d+)?", folder.name)
        assert (folder / "no_il2" / "il2rd.h5").is_file()
    out = capsys.readouterr()
    assert all(f"wrote {folder.relative_to(tmp_path)}/: compare_sources.csv" in out.out for folder in folders)
    assert f"into {folders[0].relative_to(tmp_path)}/" in out.err


def test_a_dated_folder_is_never_taken_twice(tmp_path):
    now = datetime(2025, 3, 4, 5, 6, 7)
    first, second = dated_folder(tmp_path, now), dated_folder(tmp_path, now)
    assert first == tmp_path / "2025-03-04" / "05-06-07" and second == first.with_name("05-06-07_1")
    assert first.is_dir() and second.is_dir()


def test_a_refused_comparison_leaves_no_dated_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--scenarios", "no_such_preset", *SMALL_NODE, *QUIET]) == 2
    assert not list((tmp_path / DEFAULT_ROOT).rglob("*"))  # neither <date>/<time> nor <date>
