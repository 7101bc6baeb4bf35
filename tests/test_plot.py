"""The offline figure set (`il2rd.plot`, `il2rd-plot`, issue 5): every figure is written as a
non-empty image of the size its figsize and plot.DPI give, the animation has one frame per
snapshot, the command line writes and lists the files and refuses a missing file in one line,
and the radial profile agrees with the exact point-source solution q exp(-r/lambda)/(4 pi D r).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from compose import compose_config
from PIL import Image

import il2rd.cli
import il2rd.io
from il2rd import plot
from il2rd.simulate import run

from helpers import point_source_pM

SMALL = ["grid.shape=[16,12,8]", "precision=float64", "output.progress=false"]
TRANSIENT = [*SMALL, "solver.kind=implicit", "time.end=30", "time.snapshot_every=10"]
TRANSIENT_TIMES = [0.0, 10.0, 20.0, 30.0]
COMMON = ("slice", "pstat5_slice", "radial_profile", "distance", "histograms", "pstat5_vs_il2")
FIGURES = (*COMMON, "timeseries")  # a transient run: no attribution
STEADY_FIGURES = (*COMMON, "attribution", "main_source")  # a steady run: one snapshot, no time series
# the function of il2rd.plot that makes each file's figure
MAKER = {f"figure_{name}": f"{name}.png" for name in (*COMMON, "attribution", "main_source", "timeseries")}
MAKER["animate_slice"] = "slice.gif"
# tracks.png: tissue runs only (tests/test_tissue.py draws it)
NOT_MOVING = "skipped tracks.png: the cells do not move in this run (solver.kind=tissue walks them)"
# population.png: runs with fate only (tests/test_tissue_fate.py draws it)
NO_FATE = "skipped population.png: the cells neither divide nor die in this run (fate.enabled=true with solver.kind=tissue)"



@pytest.fixture(scope="module")
def transient_file(tmp_path_factory):
    return run(compose_config(*TRANSIENT), output_dir=tmp_path_factory.mktemp("transient")).path


@pytest.fixture(scope="module")
def steady_file(tmp_path_factory):
    return run(compose_config(*SMALL), output_dir=tmp_path_factory.mktemp("steady")).path


@pytest.fixture
def figure_sizes(monkeypatch):
    """Records the size in inches of every figure il2rd.plot makes, by the function making it."""
    sizes = {}
    real = plot.plt.subplots

    def recording(*args, **kwargs):
        fig, axes = real(*args, **kwargs)
        sizes[MAKER[sys._getframe(1).f_code.co_name]] = tuple(fig.get_size_inches())
        return fig, axes

    monkeypatch.setattr(plot.plt, "subplots", recording)
    return sizes


def expected_pixels(size_inches) -> tuple[int, int]:
    """(width, height) in pixels of a figure saved at plot.DPI."""
    return tuple(int(round(v * plot.DPI)) for v in size_inches)


def check_png(path: Path, size_inches) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 0, path
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == expected_pixels(size_inches), path.name
        pixels = np.asarray(image.convert("RGB"))
    # not blank: drawn content in several colours (axes, text, colour maps)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 16, f"{path.name}: only {len(colours)} colours"
    assert (pixels < 250).any(axis=-1).mean() > 0.02, f"{path.name}: nearly all white"
    return pixels


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def pdf_page_size_points(path: Path) -> tuple[float, float]:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-"), path
    boxes = re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", data)
    assert len(boxes) == 1, f"{path.name}: {len(boxes)} pages"
    return float(boxes[0][0]), float(boxes[0][1])


def test_figure_set_of_a_transient_run(tmp_path, transient_file, figure_sizes):
    out = tmp_path / "figs"
    skipped = []
    written = plot.make_figures(transient_file, out, pdf=True, report=skipped.append)
    # a transient run has no attribution: those two figures are skipped, each with its reason
    assert sorted(skipped) == sorted([f"skipped {name}.png: the file holds no /attribution (a transient run, or "
                                      "output.attribution=false)" for name in ("attribution", "main_source")]
                                     + [NOT_MOVING, NO_FATE])

    expected = {f"{name}.{suffix}" for name in FIGURES for suffix in ("png", "pdf")} | {"slice.gif"}
    assert {p.name for p in written} == expected and len(written) == len(expected)
    assert {p.name for p in out.iterdir()} == expected  # and nothing else
    assert set(figure_sizes) == {f"{name}.png" for name in FIGURES} | {"slice.gif"}

    for name in FIGURES:
        check_png(out / f"{name}.png", figure_sizes[f"{name}.png"])
        width, height = pdf_page_size_points(out / f"{name}.pdf")  # PDF pages are in points, 72 per inch
        assert (width, height) == pytest.approx(tuple(72.0 * v for v in figure_sizes[f"{name}.png"]), abs=0.01)

    with il2rd.io.load(transient_file) as r:
        np.testing.assert_array_equal(r.time, TRANSIENT_TIMES)
        n_snapshots = len(r.time)
    with Image.open(out / "slice.gif") as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == n_snapshots
        assert gif.size == expected_pixels(figure_sizes["slice.gif"])
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB")))
    # the field fills up from zero: successive frames differ
    for a, b in zip(frames[:-1], frames[1:]):
        assert np.any(a != b)


def test_figure_set_of_a_steady_run(tmp_path, steady_file, figure_sizes):
    out = tmp_path / "figs"
    skipped = []
    written = plot.make_figures(steady_file, out, report=skipped.append)
    assert sorted(p.name for p in written) == sorted(f"{name}.png" for name in STEADY_FIGURES)  # one snapshot: no GIF
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.png" for name in STEADY_FIGURES)
    assert skipped == ["skipped timeseries.png: the run has one snapshot (t = 0 s, steady): nothing to plot against time",
                       NOT_MOVING, NO_FATE]
    for name in STEADY_FIGURES:
        check_png(out / f"{name}.png", figure_sizes[f"{name}.png"])


def test_default_output_folder_is_figures_beside_the_file(tmp_path, steady_file):
    path = tmp_path / "run" / "il2rd.h5"
    path.parent.mkdir()
    shutil.copy(steady_file, path)
    written = plot.make_figures(path, gif=False, only=("slice", "histograms"))
    assert {p.parent for p in written} == {path.parent / "figures"} and len(written) == 2
    assert all(p.is_file() for p in written)


def test_snapshot_nearest_the_requested_time(transient_file, steady_file):
    with il2rd.io.load(transient_file) as r:
        assert r.snapshot_index(None) == len(TRANSIENT_TIMES) - 1
        assert r.snapshot_index(12.0) == 1
        assert r.snapshot_index(16.0) == 2
        assert r.snapshot_index(-4.0) == 0  # within half a snapshot interval (5 s) of the first
        assert r.snapshot_index(34.0) == len(TRANSIENT_TIMES) - 1
        for outside in (-6.0, 36.0, 1e9, float("nan"), float("inf")):
            with pytest.raises(ValueError, match=r"outside the snapshots this file holds, 0 \.\. 30 s \(4 snapshots\)"):
                r.snapshot_index(outside)
    with il2rd.io.load(steady_file) as r:
        assert r.snapshot_index(0.0) == 0
        with pytest.raises(ValueError, match="time = 100 s: outside the snapshots this file holds, 0 s"):
            r.snapshot_index(100.0)


# ---------------------------------------------------------------------------------------------
# The il2rd-plot command


def plot_command() -> str:
    beside_python = Path(sys.executable).parent / "il2rd-plot"
    found = str(beside_python) if beside_python.is_file() else shutil.which("il2rd-plot")
    assert found, "the il2rd-plot console command is not installed"
    return found


def run_plot(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([plot_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=400,
                          env=dict(os.environ))


def test_command_writes_and_lists_the_figures_for_the_requested_time(tmp_path, transient_file):
    out = tmp_path / "cli"
    # (the whole set's names and sizes: test_figure_set_of_a_transient_run; here what the command adds)
    proc = run_plot(tmp_path, str(transient_file), "--out", str(out), "--time", "12",
                    "--only", "slice,histograms,attribution")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    listed = [Path(line) for line in proc.stdout.splitlines() if line.strip()]
    expected = ["histograms.png", "slice.gif", "slice.png"]
    assert sorted(p.name for p in listed) == expected
    assert proc.stderr.count("il2rd-plot: skipped ") == 1 and "skipped attribution.png: " in proc.stderr  # with why
    assert all(p.is_file() and p.stat().st_size > 0 and p.parent == out for p in listed)
    assert sorted(p.name for p in out.iterdir()) == expected

    # the first snapshot's field is zero: its radial profile is skipped, saying why, the rest drawn
    skipped = []
    first = plot.make_figures(transient_file, tmp_path / "at_0", time_s=0.0, gif=False,
                              only=("radial_profile", "slice"), report=skipped.append)
    assert skipped == ["skipped radial_profile.png: no IL-2 around the sources at this snapshot (t = 0 s)"]
    assert [p.name for p in first] == ["slice.png"]

    # --time 12 draws the snapshot nearest 12 s (t = 10 s): the same image as asking for 10 s
    # here, and not the last snapshot's (the default)
    compared = ("slice", "histograms")
    at_10 = plot.make_figures(transient_file, tmp_path / "at_10", time_s=10.0, gif=False, only=compared)
    last = plot.make_figures(transient_file, tmp_path / "last", gif=False, only=compared)
    for name in (f"{c}.png" for c in compared):
        cli_pixels = rgb(out / name)
        assert np.array_equal(cli_pixels, rgb(tmp_path / "at_10" / name)), name
        assert not np.array_equal(cli_pixels, rgb(tmp_path / "last" / name)), name
    assert [p.name for p in at_10] == [p.name for p in last] == [f"{c}.png" for c in compared]


def test_only_refuses_an_unknown_figure_naming_the_figures(tmp_path, transient_file):
    # (--only drawing just what it names: test_command_writes_and_lists_the_figures_for_the_requested_time)
    proc = run_plot(tmp_path, str(transient_file), "--out", str(tmp_path / "none"), "--only", "slices")
    assert proc.returncode == 2 and "--only = slices" in proc.stderr and "histograms" in proc.stderr
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("when", ["100", "nan", "-20"])
def test_command_refuses_a_time_the_run_does_not_hold_before_drawing(tmp_path, steady_file, when):
    """A steady run holds t = 0 only: --time 100 (or NaN) is refused in one line naming --time and
    the file's times, and no figures/ folder is left behind."""
    path = tmp_path / "run" / "il2rd.h5"
    path.parent.mkdir()
    shutil.copy(steady_file, path)
    proc = run_plot(tmp_path, str(path), "--time", when)
    assert proc.returncode == 2 and proc.stdout.strip() == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"il2rd-plot: error: --time = {float(when):g}: outside the snapshots this file holds, 0 s")
    assert not (path.parent / "figures").exists()


def test_command_refuses_a_missing_file_in_one_line(tmp_path):
    proc = run_plot(tmp_path, "missing.h5")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "missing.h5" in lines[0], proc.stderr
    assert not (tmp_path / "figures").exists()


# ---------------------------------------------------------------------------------------------
# The radial profile against the exact point-source solution

D_UM2_PER_S = 10.0
DECAY_LENGTH_UM = 40.0  # lambda = sqrt(D / k_d): k_d = 6.25e-3 /s
Q_MOLECULES_PER_S = 10.0  # il2_producer's configured secretion
H_UM = 10.0
MAX_RADIUS = 12  # voxels


def run_one_source(tmp_path, shape, source_voxel, *extra):
    """One secreting cell without receptors at the centre of `source_voxel`, decay only, faces
    fixed at 0, steady, float64."""
    x, y, z = (np.asarray(source_voxel) + 0.5) * H_UM
    csv = tmp_path / "one_source.csv"
    csv.write_text(f"x,y,z,type\n{x},{y},{z},il2_producer\n")
    decay = D_UM2_PER_S / DECAY_LENGTH_UM**2
    cfg = compose_config("grid.shape=[{},{},{}]".format(*shape), f"grid.spacing={H_UM}", "grid.boundary=fixed",
                         "grid.boundary_value=0", f"physics.diffusion={D_UM2_PER_S}", f"physics.decay={decay}",
                         f"cells.csv={csv}", f"cell_types.il2_producer.secretion={Q_MOLECULES_PER_S}",
                         "cell_types.il2_producer.receptors=0", "precision=float64", "solver.rtol=1e-10",
                         "output.progress=false", *extra)
    return run(cfg, output_dir=tmp_path / "out")


def test_radial_profile_of_a_single_source_is_the_point_source_solution(tmp_path):
    """One secreting cell (no receptors), decay only, steady, faces fixed at 0 on a 41 x 39 x 43
    lattice with the source off-centre at voxel (20, 18, 22): the nearest face is 18.5 voxels =
    4.6 lambda away, so its image changes the profile out to 12 voxels by < 1 % (largest on the
    few voxels facing it; in a shell average less).

    Two comparisons:
    1. with the exact c(r) = q exp(-r/lambda)/(4 pi D r) averaged over the very voxels each bin
       holds (an independent numpy binning): the lattice's discretisation error (<1 % here beyond
       3 voxels, as measured) plus the faces' images: tolerance 1.5 %;
    2. with c(r) at each bin's centre r, as the figure overlays it: a bin of width h holds voxels
       from r - h/2 to r + h/2 (e.g. 4.58 to 5.48 voxels for the 5-voxel bin), and c is steep and
       convex there, so the bin's mean differs from c(r) by up to ~5 %. The tolerance per bin is
       that bin-averaging offset, computed from the formula over the bin's voxels, plus 1.5 %;
       every bin beyond 3 voxels is within 6 % in any case.
    """
    result = run_one_source(tmp_path, (41, 39, 43), (20, 18, 22))

    with il2rd.io.load(result.path) as r:
        assert len(r.cells["x"]) == 1
        r_um, mean, n_sources, q = plot.radial_profile(r, 0, max_radius_voxels=MAX_RADIUS)
    assert n_sources == 1 and q == Q_MOLECULES_PER_S
    np.testing.assert_allclose(r_um, H_UM * np.arange(1, MAX_RADIUS + 1))

    # the exact solution averaged over the voxels of each bin (bins of width h centred on r)
    offsets = np.stack(np.meshgrid(*[np.arange(-MAX_RADIUS, MAX_RADIUS + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    distance = np.sqrt(np.sum(offsets.astype(float) ** 2, axis=1)) * H_UM
    which = np.rint(distance / H_UM).astype(int)  # no voxel lies on a bin edge (r^2 is an integer)
    binned_exact = np.array([point_source_pM(distance[which == b], Q_MOLECULES_PER_S, D_UM2_PER_S,
                                             DECAY_LENGTH_UM).mean() for b in range(1, MAX_RADIUS + 1)])
    at_centre = point_source_pM(r_um, Q_MOLECULES_PER_S, D_UM2_PER_S, DECAY_LENGTH_UM)

    beyond = r_um > 3 * H_UM
    assert beyond.sum() == MAX_RADIUS - 3
    np.testing.assert_allclose(mean[beyond], binned_exact[beyond], rtol=0.015)
    averaging_offset = np.abs(binned_exact / at_centre - 1)
    assert np.all(np.abs(mean[beyond] / at_centre[beyond] - 1) <= averaging_offset[beyond] + 0.015)
    np.testing.assert_allclose(mean[beyond], at_centre[beyond], rtol=0.06)
    # and the profile falls off as the solution does: exp(-r/lambda)/r over 4..12 voxels spans 40x
    assert np.all(np.diff(mean) < 0)
    assert mean[3] / mean[-1] == pytest.approx(at_centre[3] / at_centre[-1], rel=0.03)


def test_radial_profile_on_a_2d_lattice_is_the_sheet_solution(tmp_path):
    """On a 2-D lattice (nz = 1, zero-flux z faces) one source q in a sheet of thickness h has
    c(r) = q K0(r/lambda)/(2 pi D h), not the 3-D exp(-r/lambda)/(4 pi D r) (which is 3-6x lower here):
    the profile the figure compares with. 61 x 59 lattice, faces fixed at 0 about 7 lambda away."""
    decay = D_UM2_PER_S / DECAY_LENGTH_UM**2
    result = run_one_source(tmp_path, (61, 59, 1), (30, 29, 0), "output.attribution=false")
    with il2rd.io.load(result.path) as r:
        r_um, mean, n_sources, q = plot.radial_profile(r, 0, max_radius_voxels=MAX_RADIUS)
    assert n_sources == 1
    # the exact solution averaged over the voxels of each ring (an independent binning, as in the 3-D test)
    offsets = np.stack(np.meshgrid(*[np.arange(-MAX_RADIUS, MAX_RADIUS + 1)] * 2, indexing="ij"), -1).reshape(-1, 2)
    distance = np.sqrt(np.sum(offsets.astype(float) ** 2, axis=1)) * H_UM
    which = np.rint(distance / H_UM).astype(int)
    sheet = np.array([plot.point_source_profile_pM(distance[which == b], q, D_UM2_PER_S, decay, sheet_um=H_UM).mean()
                      for b in range(1, MAX_RADIUS + 1)])
    beyond = r_um > 3 * H_UM
    np.testing.assert_allclose(mean[beyond], sheet[beyond], rtol=0.015)
    three_d = plot.point_source_profile_pM(r_um, q, D_UM2_PER_S, decay)
    assert np.all(mean[beyond] > 2.5 * three_d[beyond])  # the 3-D formula would be far off


def _brute_force_nearest_um(xyz, sources):
    out = np.empty(len(xyz))
    for i, p in enumerate(xyz):
        d = np.sqrt(((xyz[sources] - p) ** 2).sum(axis=1))
        d[sources == i] = np.inf  # a source's nearest is another source
        out[i] = d.min()
    return out


def test_nearest_source_distance_is_the_brute_force_distance(steady_file):
    with il2rd.io.load(steady_file) as r:
        distance = plot.nearest_source_distance_um(r)
        xyz = np.stack([r.cells[a] for a in "xyz"], axis=1)
        q = np.asarray(r.cell_types["secretion_molecules_per_s"])
        sources = np.flatnonzero(q[r.cells["type"]] > 0)
    assert len(sources) >= 2
    np.testing.assert_allclose(distance, _brute_force_nearest_um(xyz, sources), rtol=1e-12)
    assert np.all(distance[sources] > 0)


def test_main_source_is_the_largest_share_with_autocrine_apart(steady_file):
    """Per cell, independently: the shares by source with the cell's own secretion moved out of
    its own type's share into 'autocrine'; the main source is the largest, its fraction its share
    of the cell's uptake."""
    with il2rd.io.load(steady_file) as r:
        names, which, fraction = plot.main_source(r)
        a = r.attribution
        by_cell, own, types = np.asarray(a.by_cell_molecules_per_s, np.float64), a.autocrine_molecules_per_s, r.cells["type"]
    assert names == [*a.sources, "autocrine", "no uptake"]
    for i in range(len(by_cell)):
        shares = {s: by_cell[i, k] - (own[i] if s == a.responders[types[i]] else 0.0) for k, s in enumerate(a.sources)}
        shares["autocrine"] = own[i]
        total = sum(shares.values())
        if total <= 0:
            assert names[which[i]] == "no uptake" and np.isnan(fraction[i])
            continue
        best = max(shares, key=shares.get)
        assert names[which[i]] == best
        assert fraction[i] == pytest.approx(shares[best] / total, rel=1e-6)
    # the default producers take up mostly their own IL-2 (autocrine), everyone else the producers'
    assert "autocrine" in {names[w] for w in which} and "il2_producer" in {names[w] for w in which}


def test_a_run_without_secreting_cells_skips_the_source_figures(tmp_path):
    """IL-2 fed through fixed faces only: no secreting cell, so the radial profile and the
    distance figure are skipped with why; the attribution figures show the 'boundary' source."""
    result = run(compose_config(*SMALL, "cell_types.il2_producer.secretion=0", "grid.boundary=fixed",
                                "grid.boundary_value=5"), output_dir=tmp_path / "run")
    skipped = []
    written = plot.make_figures(result.path, tmp_path / "figs", report=skipped.append)
    assert sorted(skipped) == sorted(["skipped distance.png: the run has no secreting cells",
                                      "skipped radial_profile.png: the run has no secreting cells",
                                      "skipped timeseries.png: the run has one snapshot (t = 0 s, steady): nothing to plot "
                                      "against time", NOT_MOVING, NO_FATE])
    assert {p.name for p in written} == {f"{name}.png" for name in STEADY_FIGURES} - {"radial_profile.png", "distance.png"}
    with il2rd.io.load(result.path) as r:
        assert r.attribution.sources == ("boundary",)
        names, which, _ = plot.main_source(r)
        assert {names[w] for w in which} <= {"boundary", "no uptake"}


def test_a_file_without_a_complete_snapshot_is_refused_leaving_no_folder(tmp_path, steady_file):
    """The file of a run killed before its first snapshot completed (n_snapshots = 0): refused in
    one line, and no empty figures/ folder is left beside it."""
    import h5py

    path = tmp_path / "killed" / "il2rd.h5"
    path.parent.mkdir()
    shutil.copy(steady_file, path)
    with h5py.File(path, "r+") as f:
        f.attrs["n_snapshots"] = 0
    proc = run_plot(tmp_path, str(path))
    assert proc.returncode == 2 and proc.stdout.strip() == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "holds no complete snapshot" in lines[0], proc.stderr
    assert not (path.parent / "figures").exists()


def test_the_attribution_figure_says_when_its_closure_holds_by_construction(steady_file):
    """A steady run's lone source is the field itself (attrs remainder): the title says the zero
    closure is by construction, not a measured agreement."""
    from il2rd.figures.sources import figure_attribution

    with il2rd.io.load(steady_file) as r:
        assert r.attribution.remainder == "il2_producer"
        fig = figure_attribution(r, -1)
    assert "by construction: il2_producer's part is the steady field itself" in fig._suptitle.get_text()
    fig.clear()
