"""The sweep table's columns and figures (il2rd/analysis/collect.py, il2rd/figures/sweep.py), from a
synthetic table: the swept parameters in command-line order, keys fixed in every run and the seed
not shown as swept, labels with meanings and units, log axes for values spanning decades, and
one colour scale over all heatmap panels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from il2rd.analysis import collect
from il2rd.figures import sweep


def synthetic_rows() -> list[dict]:
    """3 D x 3 CD25 x 2 seeds x 2 types, overrides in command-line order: D first (alphabetically last)."""
    rows = []
    for run, (d, cd25, seed) in enumerate(itertools.product((5, 10, 20), (3e3, 1e4, 3e4), (0, 1))):
        for t in ("treg", "naive_t"):
            params = {"param:physics.diffusion": d, "param:cell_types.treg.receptors": cd25, "param:seed": seed,
                      "param:grid.shape": [32, 32, 32]}
            positive = min(1.0, cd25 / 3e4 * d / 20) if t == "treg" else 0.0
            rows.append({"run": str(run), **params, "status": "complete", "message": "", "seed": seed, "cell_type": t,
                         **{k: 1.0 for k in collect.READOUTS}, "pstat5_positive_fraction": positive,
                         "mean_il2_pM": 0.5 * d * (2 if t == "naive_t" else 1)})
    return rows


def test_swept_keys_keep_the_command_line_order_and_drop_fixed_keys_and_the_seed():
    rows = synthetic_rows()
    assert collect.swept_keys(rows) == ["param:physics.diffusion", "param:cell_types.treg.receptors"]
    assert collect._numeric_params(rows)[0] == "param:physics.diffusion"  # not the alphabetical first
    assert collect.fixed_overrides(rows) == {"grid.shape": [32, 32, 32]}
    columns = collect._columns(rows)
    assert "param:seed" not in columns and columns.count("seed") == 1
    assert "param:grid.shape" not in columns


def test_labels_carry_meaning_and_units():
    assert sweep.parameter_label("param:physics.diffusion") == "D (um^2/s)"
    assert sweep.parameter_label("param:cell_types.treg.receptors") == "treg IL-2Ra (CD25), per cell"
    assert sweep.setting_label("param:physics.diffusion", 5) == "D = 5 um^2/s"
    assert sweep.parameter_label("param:some.unknown_key") == "some.unknown_key"  # shown as given
    assert sweep.readout_label("mean_il2_pM") == "mean IL-2 seen (pM)"
    assert sweep.spans_decades([3e3, 1e4, 3e4]) and not sweep.spans_decades([5, 10, 20])
    assert not sweep.spans_decades([0.0, 1.0, 100.0])  # a log axis cannot show 0


def test_sweep_figures_are_written_with_log_axes_and_one_colour_scale(tmp_path, monkeypatch):
    made = []
    real = sweep.plt.subplots

    def recording(*args, **kwargs):
        fig, axes = real(*args, **kwargs)
        made.append((fig, axes))
        return fig, axes

    monkeypatch.setattr(sweep.plt, "subplots", recording)
    monkeypatch.setattr(sweep.plt, "close", lambda fig: None)  # keep them to inspect
    rows = synthetic_rows()
    # CD25 first this time: its axis spans a decade and is logarithmic
    params = ["param:cell_types.treg.receptors", "param:physics.diffusion"]
    written = sweep.plot(rows, params, tmp_path, "pstat5_positive_fraction")
    assert [p.name for p in written] == ["pstat5_positive_fraction_vs_cell_types.treg.receptors.png",
                                         "pstat5_positive_fraction_heatmap.png"]
    assert all(p.stat().st_size > 10_000 for p in written)
    (_, lines), (_, maps) = made
    assert all(ax.get_xscale() == "log" for ax in lines[0])
    assert lines[0][0].get_xlabel() == "treg IL-2Ra (CD25), per cell"
    assert lines[0][0].get_ylabel() == "pSTAT5+ fraction"
    limits = {tuple(ax.images[0].get_clim()) for ax in maps[0]}
    assert limits == {(0.0, 1.0)}  # a fraction: the same 0..1 scale in every panel

    made.clear()
    sweep.plot(rows, params, tmp_path, "mean_il2_pM")
    (_, lines), (_, maps) = made
    limits = {tuple(ax.images[0].get_clim()) for ax in maps[0]}
    assert limits == {(2.5, 20.0)}  # one scale spanning every type's values (treg 2.5-10, naive 5-20)
    grid = maps[0][0].images[0].get_array()
    np.testing.assert_allclose(grid, np.array([[2.5] * 3, [5.0] * 3, [10.0] * 3]))  # rows: D, columns: CD25
    assert lines[0][0].get_yscale() == "linear"  # 2.5..10 spans less than a decade
    with pytest.raises(KeyError):
        sweep.plot(rows, params, tmp_path, "no_such_readout")
