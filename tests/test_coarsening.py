"""The same tissue at 10 and 20 um (issue 12, item 5), in the default precision (float32).

A 160 um cube of the default T zone is placed once at 10 um (16^3) and written as a CSV; the
same cells are run on 8^3 voxels of 20 um, where about 5.6 cells share a voxel, each on its own
sub-grid stencil (benchmarks/coarsening.py, which prints the full table). The consumers' per-type
uptake agrees within 5 %. Not asserted, because it does not hold (see the benchmark and
subgrid.py): producers' own uptake is ~20 % lower at 20 um (on voxels above 4 pi g a = 15.9 um
their self-capture is (4 pi g a / h) of the sphere's) and the Tregs' pSTAT5+ fraction, a
threshold on the local IL-2, differs by 8 - 14 %.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from coarsening import compare  # noqa: E402


def test_consumers_take_up_the_same_at_10_and_20_um(tmp_path):
    rows, _ = compare(fine=16, spacing_um=10.0, ratio=2, seed=0, workdir=tmp_path)
    assert rows["treg"]["count"][0] == rows["treg"]["count"][1] > 300
    for name in ("treg", "naive_t"):
        fine, coarse = rows[name]["uptake"]
        assert coarse == pytest.approx(fine, rel=0.05), name
