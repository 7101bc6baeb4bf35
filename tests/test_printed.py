"""What a run prints on the terminal, in this process: the summary and attribution tables fit 120
columns and show '-' (never nan) for a type without cells; the status lines of the slow stages
come while output.progress is on, in order, and never when it is off."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from compose import compose_config

from il2rd.analysis.attribution import Attribution
from il2rd.simulate import run
from il2rd.tables import WIDTH

SMALL = ["grid.shape=[16,12,8]"]
STATUS_SOLVE = "il2rd: solving the steady field (16x12x8 voxels, float32) ..."
STATUS_ATTRIBUTION = "il2rd: attributing each cell's uptake to the IL-2 sources ..."


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default run on a small lattice, progress on, with what it wrote on stderr."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        result = run(compose_config(*SMALL), output_dir=tmp_path_factory.mktemp("default"))
    return result, stderr.getvalue()


def test_the_default_runs_tables_fit_120_columns(default_run):
    result, _ = default_run
    text = result.summary.format() + "\n" + result.attribution.format()
    too_wide = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not too_wide, "\n".join(too_wide)
    assert "nan" not in text
    for t in result.summary.types:  # a row per type: name, count, then its means
        assert any(line.split()[:2] == [t.name, str(t.count)] for line in text.splitlines())
    for name in result.attribution.responders:  # and a row per responder in the attribution
        assert any(line.split()[:1] == [name] and line.startswith("  ") for line in text.splitlines())


def test_many_sources_continue_in_another_block_within_120_columns():
    """Ten secreting types and both outside sources: every share printed, no line over 120."""
    names = ("treg", "cd4_activated", "cd8_activated", "dc", "cd8_treg", "cd4_naive", "cd8_naive", "b_cell", "nk", "ilc2")
    sources = (*names, "boundary", "circulation")
    matrix = np.full((len(sources), len(names)), 0.09)
    a = Attribution(sources, names, np.zeros((1, len(sources))), matrix, np.full(len(sources), 1.0), 1e-6,
                    np.zeros(1), 1e-3, np.zeros(1, int))
    lines = a.format().splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    assert sum(line.startswith("source ") for line in lines) >= 2  # split into blocks
    assert all(sum(name in line.split() for line in lines if line.startswith("source ")) == 1 for name in sources)
    assert sum(line.split().count("9.0%") for line in lines) == len(sources) * len(names)  # every share
    assert sum(line.split().count("10.0%") for line in lines if line.startswith("decayed or left")) == len(sources)


def test_a_type_without_cells_prints_a_dash_not_nan(tmp_path):
    """A CSV population without naive_t cells: its row says 0 cells and '-' for its means."""
    csv = tmp_path / "cells.csv"
    csv.write_text("x,y,z,type\n15,25,35,il2_producer\n25,25,35,treg\n75,55,45,treg\n")
    result = run(compose_config(*SMALL, f"cells.csv={csv}", "output.progress=false"), output_dir=tmp_path / "out")
    naive = next(t for t in result.summary.types if t.name == "naive_t")
    assert naive.count == 0 and np.isnan(naive.mean_il2_pM)  # the readout itself stays NaN
    text = result.summary.format() + "\n" + result.attribution.format()
    assert "nan" not in text.lower()
    row = next(line.split() for line in text.splitlines() if line.startswith("naive_t "))
    assert row[:3] == ["naive_t", "0", "-"] and row.count("-") == 6  # total uptake is 0, the means are '-'
    assert "-: no cell of that type" in text
    assert max(len(line) for line in text.splitlines()) <= WIDTH


def test_status_lines_come_in_order_while_progress_is_on(default_run):
    _, stderr = default_run
    lines = [line for line in stderr.splitlines() if line.startswith("il2rd: ")]
    assert lines == [STATUS_SOLVE, STATUS_ATTRIBUTION]


def test_no_status_line_with_progress_off(tmp_path, capsys):
    run(compose_config(*SMALL, "output.progress=false"), output_dir=tmp_path)
    captured = capsys.readouterr()
    assert "il2rd:" not in captured.err + captured.out
