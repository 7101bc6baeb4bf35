"""`il2rd-compare-sources` (il2rd/analysis/compare.py): the presets run, the table and the figure are
written, shares are consistent, and a bad scenario name stops it before anything runs."""

import csv
import re
from datetime import datetime

import numpy as np
import pytest
from test_presets import QUIET, SMALL_NODE

from il2rd.analysis.compare import DEFAULT_ROOT, dated_folder, main


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


def test_compare_over_days_writes_fold_changes_that_the_files_hold(tmp_path, capsys):
    """--days: each scenario once per seed as a tissue run with fate; the table's fold changes are
    the files' living-cell counts at the last snapshot over the first, seeds differ, the figure is
    written."""
    import h5py

    from il2rd.analysis.compare import fold_changes

    args = ["--days", "0.1", "--seeds", "2", "--every", "1.2", "--scenarios", "treg_source",
            "--out", str(tmp_path), "--no-progress", *SMALL_NODE, *QUIET]
    assert main(args) == 0
    with (tmp_path / "compare_sources_days.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert (tmp_path / "compare_sources_days.png").stat().st_size > 10_000
    assert len(rows) == 2 * 10  # seeds x the node's ten types
    for r in rows:
        with h5py.File(tmp_path / r["scenario"] / f"seed{r['seed']}" / "il2rd.h5") as f:
            names = list(f["cells/type"].attrs["type_names"])
            mine = f["cells/type"][:] == names.index(r["responder"])
            alive = f["cells/alive"][:] > 0
            assert f["time"][-1] == pytest.approx(0.1 * 86400)
        assert int(r["cells_start"]) == np.sum(alive[0] & mine) and int(r["cells_end"]) == np.sum(alive[-1] & mine)
        if int(r["cells_start"]):
            assert float(r["fold_change"]) == pytest.approx(int(r["cells_end"]) / int(r["cells_start"]))
    by_seed = [[r["cells_end"] for r in rows if r["seed"] == s] for s in ("0", "1")]
    assert by_seed[0] != by_seed[1]  # replicate seeds are replicates, not copies
    scenarios, responders, mean, sd = fold_changes([dict(r, seed=int(r["seed"]), fold_change=float(r["fold_change"]))
                                                     for r in rows])
    assert scenarios == ["treg_source"] and np.isfinite(sd[:, responders.index("treg")]).all()
    assert "fold change" in capsys.readouterr().out
