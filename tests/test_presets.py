"""Scenario presets (configs/scenario/) and the cell-type library (configs/cell_type/), issue 3
items 3 and 5.

Every preset composes and runs, on a small lattice, through the command's own path (the shipped
config composed as `il2rd` composes it, then il2rd.simulate.run; one preset and a bad name also
through the console command itself). The checks are about mechanism, not tuned numbers:

- the library's K_M values follow from the stated binding constants;
- the six IL-2-source presets (Whyte et al. 2022) share one population and differ only in which
  type secretes, and all secrete the same total;
- the no-IL-2 control secretes nothing and has a zero field;
- therapy from the blood enters through the node's vessels (HEVs in the T zone, capillaries
  everywhere in it) and its afferent lymph (capsule voxels), raises the field with the dose and
  never above the highest entry level, highest at the capsule where the lymph arrives;
- a mutein without IL-2Ra binding lowers the Tregs' uptake, at the same dose, and leaves more for
  the intermediate-affinity consumers.

The small lattice is 32^3 voxels of 10 um with a node to match (thinner capsule, two smaller
follicles) and the six count-placed source types at 1/100 of their counts, so that their totals
stay equal (each source cell keeps its per-cell secretion).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy import ndimage

import il2rd.cli
from il2rd.analysis.attribution import CIRCULATION
from il2rd.config import parse
from il2rd.config.schema import CellTypeConfig
from il2rd.physics.receptors import receptor_classes
from il2rd.scenario import Scenario
from il2rd.simulate import run

from compose import compose_config
from helpers import PM_IN_MOLECULES_PER_UM3

CONFIGS = il2rd.cli.config_dir()
PRESETS = sorted(p.stem for p in (CONFIGS / "scenario").glob("*.yaml") if not p.stem.startswith("_"))
LIBRARY = sorted(p.stem for p in (CONFIGS / "cell_type").glob("*.yaml"))

SOURCES = {  # preset -> the one cell type that secretes in it
    "treg_source": "treg",
    "cd4_source": "cd4_activated",
    "cd8_source": "cd8_activated",
    "nk_source": "nk",
    "dc_source": "dc",
    "b_cell_source": "b_cell",
}
NODE_PRESETS = [p for p in PRESETS if p != "t_zone"]  # the presets on the shared node population
TOTAL_SECRETION = 1.0e5  # molecules/s, every source preset (configs/scenario/_node.yaml)

# the six count-placed types (configs/scenario/_node.yaml), at 1/100 of their counts
SCALED_COUNTS = {"treg": 100, "cd4_activated": 20, "cd8_activated": 10, "dc": 25, "b_cell": 320, "nk": 20}
SMALL_NODE = [
    "grid.shape=[32,32,32]",
    "node.capsule_thickness=10",
    "node.t_zone_depth=30",
    "node.follicles.count=2",
    "node.follicles.radius=40",
    "node.follicles.spread=70",
    *(f"cell_types.{name}.count={n}" for name, n in SCALED_COUNTS.items()),
]
QUIET = ["output.progress=false"]

# binding constants the library's K_M values are derived from (configs/cell_type/treg.yaml, cd8_naive.yaml)
K_ON_PER_M_PER_S = 3.1e7
K_D_HIGH_PM = 7.4
K_D_INTERMEDIATE_PM = 1000.0


def small(preset: str) -> list[str]:
    """Overrides that put `preset` on the small lattice."""
    if preset == "t_zone":  # the default block fills the lattice: no node, no counts
        return ["grid.shape=[32,32,32]", *QUIET]
    return [*SMALL_NODE, *QUIET]


def composed(preset: str, *extra: str, small_lattice: bool = True):
    return compose_config(f"scenario={preset}", *(small(preset) if small_lattice else QUIET), *extra)


def total_secretion_molecules_per_s(scenario: Scenario) -> float:
    """Secretion of the whole lattice from the field coefficients (pM/s per voxel) back in molecules/s."""
    s = scenario.settings
    per_voxel = np.asarray(scenario.coefficients.secretion_pM_per_s, np.float64)
    return float(per_voxel.sum()) * PM_IN_MOLECULES_PER_UM3 * s.problem.grid.voxel_volume_um3 * s.problem.volume_fraction


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """small_run(preset, *extra): the steady run of `preset` (with overrides) on the small lattice,
    computed once per module."""

    @lru_cache(maxsize=None)
    def run_preset(preset: str, *extra: str):
        return run(composed(preset, *extra), output_dir=tmp_path_factory.mktemp(f"preset-{preset}"))

    return run_preset


def by_type(result) -> dict:
    return {t.name: t for t in result.summary.types}


# ---------------------------------------------------------------------------------------------
# The library


def test_library_has_the_issue_types_and_the_node_uses_each():
    assert set(LIBRARY) == {"cd4_naive", "cd4_activated", "treg", "cd8_naive", "cd8_activated", "cd8_treg",
                            "nk", "ilc2", "dc", "b_cell"}
    cfg = composed("no_il2", small_lattice=False)
    assert sorted(cfg.cell_types) == LIBRARY


@pytest.mark.parametrize("name", LIBRARY)
def test_library_type_is_valid_and_its_km_follows_from_the_binding_constants(name):
    entry = OmegaConf.load(CONFIGS / "cell_type" / f"{name}.yaml")
    allowed = set(OmegaConf.structured(CellTypeConfig).keys())
    assert set(entry) <= allowed, set(entry) - allowed
    assert entry.region.kind in ("t_zone", "follicle", "interfollicular", "medulla")
    # high affinity: K_M = (k_off + k_int)/k_on with k_off = K_D k_on; intermediate affinity
    # (IL-2Rb/gc): K_M = K_D + k_int/k_on
    k_int_over_k_on_pM = entry.k_int / K_ON_PER_M_PER_S * 1e12
    assert entry.km == pytest.approx(K_D_HIGH_PM + k_int_over_k_on_pM, rel=0.01), (name, entry.km)
    assert entry.get("km_intermediate", 1035.0) == pytest.approx(K_D_INTERMEDIATE_PM + k_int_over_k_on_pM, rel=0.01)
    high, intermediate = receptor_classes(entry.receptors, entry.get("il2rb") or math.inf, entry.get("gc") or math.inf)
    if name in ("nk", "cd8_naive", "cd8_treg"):  # IL-2Rb/gc consumers, little CD25
        assert intermediate > 10 * high > 0
    if name in ("treg", "cd4_activated", "cd8_activated", "ilc2"):  # CD25-high consumers
        assert high > 0 and intermediate == 0


def test_a_library_type_can_be_added_and_changed_from_the_command_line():
    cfg = composed("treg_source", "cell_types.treg.receptors=5e4", "+cell_types.foo.secretion=10",
                   "+cell_types.foo.count=3", "+cell_type@cell_types.extra_nk=nk", "+cell_types.extra_nk.count=5",
                   "cell_types.extra_nk.density=null")
    assert cfg.cell_types.treg.receptors == 5e4 and cfg.cell_types.treg.secretion == 10.0
    assert cfg.cell_types.foo.secretion == 10
    assert cfg.cell_types.extra_nk.il2rb == cfg.cell_types.nk.il2rb == 8000
    settings = parse(cfg)
    assert settings.problem.types["treg"].receptors == 5e4
    assert settings.problem.types["foo"].secretion_molecules_per_s == 10.0
    counts = {name: n for name, n, _ in settings.problem.placement}
    assert counts["foo"] == 3 and counts["extra_nk"] == 5


# ---------------------------------------------------------------------------------------------
# The presets


def test_the_default_is_the_t_zone_scenario():
    default, named = compose_config(), compose_config("scenario=t_zone")
    assert OmegaConf.to_container(default) == OmegaConf.to_container(named)
    assert list(default.cell_types) == ["il2_producer", "treg", "naive_t"]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_runs_on_a_small_lattice(small_run, preset):
    result = small_run(preset)
    field = result.field_pM
    assert field.shape == (32, 32, 32)
    assert np.all(np.isfinite(field)) and field.min() >= 0.0
    s = result.summary
    supplied = s.secretion_molecules_per_s + s.exchange_molecules_per_s  # cells, and the blood (therapy presets)
    removed = s.uptake_molecules_per_s + s.decay_molecules_per_s + s.boundary_outflux_molecules_per_s
    scale = max(supplied, s.uptake_molecules_per_s + s.decay_molecules_per_s, 1e-30)
    assert abs(supplied - removed) <= 1e-3 * scale  # global balance
    if preset != "t_zone":
        assert [t.name for t in s.types] == list(composed(preset).cell_types)


def test_node_presets_share_one_population():
    """Same seed, same node, same types and counts: every cell sits in the same voxel in every preset."""
    reference = Scenario.build(parse(composed("no_il2"))).population
    for preset in NODE_PRESETS:
        population = Scenario.build(parse(composed(preset))).population
        assert population.type_names == reference.type_names, preset
        np.testing.assert_array_equal(population.voxel, reference.voxel, err_msg=preset)
        np.testing.assert_array_equal(population.type_index, reference.type_index, err_msg=preset)


@pytest.mark.parametrize("small_lattice", [False, True], ids=["default-lattice", "small-lattice"])
def test_source_presets_secrete_the_same_total_from_one_type_each(small_lattice):
    totals = {}
    for preset, source in SOURCES.items():
        settings = parse(composed(preset, small_lattice=small_lattice))
        secreting = [name for name, t in settings.problem.types.items() if t.secretion_molecules_per_s > 0]
        assert secreting == [source], (preset, secreting)
        scenario = Scenario.build(settings)
        by_cells = sum(settings.problem.types[name].secretion_molecules_per_s * scenario.population.count(name)
                       for name in scenario.population.type_names)
        from_field = total_secretion_molecules_per_s(scenario)
        assert from_field == pytest.approx(by_cells, rel=1e-5)
        totals[preset] = from_field
    expected = TOTAL_SECRETION if not small_lattice else TOTAL_SECRETION / 100
    for preset, total in totals.items():
        assert total == pytest.approx(expected, rel=1e-5), (preset, totals)


def test_control_secretes_nothing_and_has_a_zero_field(small_run):
    settings = parse(composed("no_il2"))
    assert all(t.secretion_molecules_per_s == 0 for t in settings.problem.types.values())
    assert set(settings.problem.face_values_pM) == {0.0}
    result = small_run("no_il2")
    assert result.summary.secretion_molecules_per_s == 0.0
    assert np.all(result.field_pM == 0.0)
    assert all(t.total_uptake_molecules_per_s == 0.0 for t in result.summary.types)


def exchange_sites(settings):
    """(rate 1/s, target pM, HEV voxels, capsule voxels) of a therapy preset's exchange fields."""
    coef = Scenario.build(settings).coefficients
    rate, target = np.asarray(coef.exchange_per_s, np.float64), np.asarray(coef.exchange_target_pM, np.float64)
    capsule = settings.problem.node.mask("capsule", settings.problem.grid)
    hev = (rate >= settings.problem.vessels.hev_exchange_per_s) & ~capsule  # capsule voxels exchange faster (lymph)
    return rate, target, hev, capsule


def test_therapy_enters_through_the_node_vessels_and_afferent_lymph_not_the_faces():
    """The therapy presets feed IL-2 from the plasma through HEVs in the T zone and capillaries in the
    whole node, and from the afferent lymph through the capsule voxels (il2rd/physics/vessels.py); no face is
    fixed. On the small node the HEV density must still give HEVs (a density that rounds to none would
    leave only the capillaries). The lymph level scales with the dose and stays below the plasma's."""
    for preset in ("therapy_low", "therapy_high", "mutein"):
        settings = parse(composed(preset))
        assert set(settings.problem.grid.boundary) == {"zero_flux"} and set(settings.problem.face_values_pM) == {0.0}, preset
        v = settings.problem.vessels
        assert v.blood_il2_pM > 0 and v.hev_exchange_per_s > 0 and v.capillary_exchange_per_s > 0, preset
        assert v.afferent_exchange_per_s > 0 and 0 < v.afferent_lymph_pM < v.blood_il2_pM, preset  # R = PS/(PS + L) < 1
        rate, target, hev, capsule = exchange_sites(settings)
        node, grid = settings.problem.node, settings.problem.grid
        t_zone, inside = node.mask("t_zone", grid), node.mask("node", grid)
        expected = round(v.hev_density_per_mm3 * t_zone.sum() * grid.voxel_volume_um3 / 1e9)
        assert hev.sum() == expected > 0, (preset, hev.sum(), expected)
        assert np.all(t_zone[hev])
        assert np.all(rate[inside] > 0) and np.all(rate[~inside] == 0)  # capillaries: every node voxel
        blood = inside & ~capsule  # all towards the plasma level; the capsule also towards the lymph's
        np.testing.assert_allclose(target[blood], v.blood_il2_pM, rtol=1e-6)
        np.testing.assert_allclose(rate[capsule], v.capillary_exchange_per_s + v.afferent_exchange_per_s, rtol=1e-6)
        np.testing.assert_allclose((rate * target)[capsule], v.capillary_exchange_per_s * v.blood_il2_pM
                                   + v.afferent_exchange_per_s * v.afferent_lymph_pM, rtol=1e-6)
    low, high = (parse(composed(p)).problem.vessels for p in ("therapy_low", "therapy_high"))
    assert high.afferent_lymph_pM / high.blood_il2_pM == pytest.approx(low.afferent_lymph_pM / low.blood_il2_pM)  # same R
    assert not parse(composed("no_il2")).problem.vessels.active  # the control gets no IL-2 from blood or lymph


def test_therapy_field_rises_with_the_dose_and_stays_below_the_entry_levels(small_run):
    entry = {p: max(v.blood_il2_pM, v.afferent_lymph_pM) for p in ("therapy_low", "therapy_high")
             for v in [parse(composed(p)).problem.vessels]}
    assert 0 < entry["therapy_low"] < entry["therapy_high"]
    control, low, high = (small_run(p) for p in ("no_il2", "therapy_low", "therapy_high"))
    assert np.all(control.field_pM == 0.0) and control.summary.exchange_molecules_per_s == 0.0
    assert control.attribution is None or control.attribution.sources == ()
    settings = parse(composed("therapy_low"))  # the same node, HEVs and cells at either dose
    _, _, _, capsule = exchange_sites(settings)
    t_zone = settings.problem.node.mask("t_zone", settings.problem.grid)
    depth = ndimage.distance_transform_edt(~capsule)  # voxels from the capsule
    for preset, result in (("therapy_low", low), ("therapy_high", high)):
        s = result.summary
        assert s.secretion_molecules_per_s == 0.0  # blood and lymph are the only sources
        assert s.exchange_molecules_per_s > 0  # what enters through vessels and lymph ...
        assert s.exchange_molecules_per_s == pytest.approx(s.uptake_molecules_per_s + s.decay_molecules_per_s, rel=1e-3)
        assert result.field_pM.max() <= entry[preset] * (1 + 1e-5)  # no source inside: maximum principle
        # IL-2 is highest where most of it enters, the capsule (afferent lymph), and falls into the
        # consuming T zone: its outer half above its deep half. (HEVs add a local inflow too small
        # against the cells' uptake to stand out against this gradient: test_vessels.py tests them.)
        c = result.field_pM
        assert c[capsule].mean() > c[t_zone].mean()
        assert c[t_zone & (depth <= np.median(depth[t_zone]))].mean() > c[t_zone & (depth > np.median(depth[t_zone]))].mean()
        a = result.attribution
        assert a.sources == (CIRCULATION,)  # ... is all the cells take up: the exchange source covers both routes
        assert a.matrix_molecules_per_s.sum() == pytest.approx(s.uptake_molecules_per_s, rel=1e-3)
    assert control.summary.mean_il2_pM == 0.0 < low.summary.mean_il2_pM < high.summary.mean_il2_pM
    for name in ("treg", "cd8_naive", "nk"):
        assert by_type(low)[name].mean_il2_pM < by_type(high)[name].mean_il2_pM
        assert by_type(low)[name].mean_uptake_molecules_per_s < by_type(high)[name].mean_uptake_molecules_per_s


def test_mutein_lowers_treg_uptake_at_the_same_dose(small_run):
    wild, mutein = parse(composed("therapy_high")), parse(composed("mutein"))
    assert mutein.problem.vessels == wild.problem.vessels and mutein.problem.face_values_pM == wild.problem.face_values_pM  # the same dose, same entry
    assert mutein.problem.types["treg"].km_pM > wild.problem.types["treg"].km_pM  # lost IL-2Ra binding
    # every high-affinity receptor loses IL-2Ra binding; the intermediate ones are unchanged
    assert all(mutein.problem.types[n].km_pM == mutein.problem.types[n].km_intermediate_pM for n in mutein.problem.types)
    assert all(mutein.problem.types[n].km_intermediate_pM == wild.problem.types[n].km_intermediate_pM for n in mutein.problem.types)
    wild_run, mutein_run = small_run("therapy_high"), small_run("mutein")
    assert by_type(mutein_run)["treg"].mean_uptake_molecules_per_s < by_type(wild_run)["treg"].mean_uptake_molecules_per_s
    # what the Tregs leave reaches the others: more IL-2 everywhere, more for the NK cells
    assert mutein_run.summary.mean_il2_pM > wild_run.summary.mean_il2_pM
    # NK cells carry two receptor classes, which the default sub-grid closure folds into one law per
    # cell (cells.UptakeLaws.collapsed: 2 % high at the NKs' ~2 nM, more than the ~0.1 % gain compared
    # here); the two classes as such act in point sinks
    wild_points, mutein_points = (small_run(p, "physics.cell_radius=null") for p in ("therapy_high", "mutein"))
    assert by_type(mutein_points)["nk"].mean_uptake_molecules_per_s > by_type(wild_points)["nk"].mean_uptake_molecules_per_s


def test_removing_a_consumer_type_raises_the_il2_the_others_see(small_run, tmp_path):
    """Mechanism, not a tuned number: with the Tregs' receptors gone every other cell sees at
    least as much IL-2 (the field equation's solution is monotone in the uptake), and on average more."""
    with_tregs = small_run("cd4_source")
    without = run(composed("cd4_source", "cell_types.treg.receptors=0"), output_dir=tmp_path)
    import h5py

    with h5py.File(with_tregs.path) as a, h5py.File(without.path) as b:
        types = a["cells/type"][:]
        assert np.array_equal(types, b["cells/type"][:])
        others = types != list(a["cells/type_names"].asstr()[:]).index("treg")
        seen_with, seen_without = a["cells/il2"][-1][others], b["cells/il2"][-1][others]
    assert np.all(seen_without >= seen_with * (1 - 1e-4))
    assert seen_without.mean() > 1.5 * seen_with.mean()


# ---------------------------------------------------------------------------------------------
# Through the console command


def il2rd_command(workdir: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = Path(sys.executable).parent / "il2rd"
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([str(command), *overrides, f"hydra.run.dir={workdir / 'run'}"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=180)


def test_a_preset_runs_through_the_command(tmp_path):
    proc = il2rd_command(tmp_path, "scenario=dc_source", *SMALL_NODE, *QUIET)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert (tmp_path / "run" / "il2rd.h5").is_file()
    assert "dc " in proc.stdout + proc.stderr and "b_cell" in proc.stdout + proc.stderr


def test_unknown_scenario_is_refused_naming_the_group_and_the_value(tmp_path):
    proc = il2rd_command(tmp_path, "scenario=no_such_preset")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "scenario/no_such_preset" in proc.stderr  # Hydra: "Could not find 'scenario/no_such_preset'"
    assert "treg_source" in proc.stderr  # and it lists the presets there are
    assert not (tmp_path / "run" / "il2rd.h5").exists()
