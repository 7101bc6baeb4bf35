"""The config interface: the shipped config parses, a type added from the command line takes the
schema defaults, and every bad value is refused before computing with a message that names the
key and the value (issue 2, "Bad input").

Configs are composed exactly as the `il2rd` command composes them (Hydra, the shipped
configs/config.yaml on top of the structured schema), with small lattices so that building a
scenario is cheap.
"""

from __future__ import annotations

import math

import pytest
from compose import compose_config
from omegaconf import OmegaConf

from il2rd.cells import CellType
from il2rd.cells.placement import PlacementError, Region
from il2rd.config import ConfigError, parse
from il2rd.scenario import Scenario

SMALL = ["grid.shape=[8,8,4]"]  # 256 voxels, 70 % occupied by the default densities



# ---------------------------------------------------------------------------------------------
# Good configs


def test_default_config_parses_to_the_lymph_node_scenario():
    s = parse(compose_config())
    assert s.problem.grid.shape == (128, 128, 128)
    assert s.problem.grid.spacing_um == 10.0
    assert s.problem.grid.boundary == ("zero_flux",) * 6
    assert s.numerics.solver_kind == "steady" and s.numerics.precision == "float32"
    assert s.problem.diffusion_um2_per_s == 10.0 and s.problem.decay_per_s == pytest.approx(2.8e-5)
    assert s.problem.csv is None and s.output.output_dir is None
    # at least three types: producers, high-CD25 Tregs, naive T cells
    assert set(s.problem.types) >= {"il2_producer", "treg", "naive_t"}
    assert s.problem.types["il2_producer"].secretion_molecules_per_s > 0
    assert s.problem.types["treg"].receptors > s.problem.types["naive_t"].receptors > 0
    # counts from the densities (cells/mm^3 times the lattice volume in mm^3)
    volume_mm3 = (128 * 10.0 / 1000.0) ** 3
    counts = {name: count for name, count, _ in s.problem.placement}
    assert counts["il2_producer"] == round(1.0e4 * volume_mm3)
    assert counts["treg"] == round(1.0e5 * volume_mm3)
    assert counts["naive_t"] == round(5.9e5 * volume_mm3)
    # T-zone density: most voxels hold a cell, none holds two
    occupied = sum(counts.values()) / s.problem.grid.n_voxels
    assert 0.5 < occupied <= 1.0


def test_small_overrides_reach_the_settings():
    s = parse(compose_config(
        "grid.shape=[16,12,1]", "grid.spacing=5", "grid.boundary={x_lo: fixed, x_hi: fixed}",
        "grid.boundary_value={x_lo: 2.5}", "physics.diffusion=20", "physics.decay=0",
        "solver.kind=implicit", "solver.dt=0.5", "solver.rtol=1e-4", "time.end=30",
        "time.snapshot_every=10", "precision=float64", "seed=7",
    ))
    assert s.problem.grid.shape == (16, 12, 1) and s.problem.grid.spacing_um == 5.0
    assert s.problem.grid.boundary == ("fixed", "fixed", "zero_flux", "zero_flux", "zero_flux", "zero_flux")
    assert s.problem.face_values_pM == (2.5, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert (s.problem.diffusion_um2_per_s, s.problem.decay_per_s, s.numerics.dt_s, s.numerics.end_s) == (20.0, 0.0, 0.5, 30.0)
    assert s.numerics.solver_kind == "implicit" and s.numerics.options.rtol == 1e-4
    assert s.numerics.precision == "float64" and s.problem.seed == 7
    assert s.numerics.snapshot_times_s == [0.0, 10.0, 20.0, 30.0]


def test_type_added_from_the_command_line_takes_the_defaults_for_unset_fields():
    s = parse(compose_config(*SMALL, "+cell_types.foo.secretion=10", "+cell_types.foo.count=5"))
    assert s.problem.types["foo"] == CellType("foo", secretion_molecules_per_s=10.0, receptors=0.0, km_pM=43.0, k_int_per_s=1.1e-3)
    assert ("foo", 5, Region()) in s.problem.placement
    # the shipped types are still there, and placing all of them works
    assert set(s.problem.types) == {"il2_producer", "treg", "naive_t", "foo"}
    scenario = Scenario.build(s)
    assert scenario.population.count("foo") == 5


def test_type_added_with_a_density_and_a_region():
    s = parse(compose_config(*SMALL, "+cell_types.bcell.receptors=300", "+cell_types.bcell.density=2e5",
                             "+cell_types.bcell.region={kind: box, lo: [0, 0, 0], hi: [40, 40, 40]}"))
    t = s.problem.types["bcell"]
    assert (t.secretion_molecules_per_s, t.receptors, t.km_pM, t.k_int_per_s) == (0.0, 300.0, 43.0, 1.1e-3)
    (name, count, region), = [p for p in s.problem.placement if p[0] == "bcell"]
    # the box holds 4 x 4 x 4 voxel centres of 1000 um^3: 6.4e-5 mm^3 x 2e5 cells/mm^3 = 12.8
    assert region.kind == "box" and count == 13


# ---------------------------------------------------------------------------------------------
# Bad values: ConfigError from parse, naming the key and the value

NO_CONSUMERS = ["cell_types.treg.receptors=0", "cell_types.naive_t.receptors=0", "cell_types.il2_producer.receptors=0"]

BAD = [
    # (id, overrides, key in the message, value as shown in the message)
    ("diffusion-negative", ["physics.diffusion=-1"], "physics.diffusion", "-1"),
    ("diffusion-zero", ["physics.diffusion=0"], "physics.diffusion", "0"),
    ("diffusion-nan", ["physics.diffusion=nan"], "physics.diffusion", "nan"),
    ("spacing-negative", ["grid.spacing=-10"], "grid.spacing", "-10"),
    ("spacing-zero", ["grid.spacing=0"], "grid.spacing", "0"),
    ("spacing-inf", ["grid.spacing=inf"], "grid.spacing", "inf"),
    ("dt-negative", ["solver.dt=-5"], "solver.dt", "-5"),
    ("dt-zero", ["solver.dt=0"], "solver.dt", "0"),
    ("shape-zero", ["grid.shape=[8,0,4]"], "grid.shape[1]", "0"),
    ("shape-negative", ["grid.shape=[-4,8,4]"], "grid.shape[0]", "-4"),
    ("shape-two-entries", ["grid.shape=[8,8]"], "grid.shape", "[8, 8]"),
    ("shape-four-entries", ["grid.shape=[8,8,4,2]"], "grid.shape", "[8, 8, 4, 2]"),
    ("boundary-unknown-kind", ["grid.boundary=absorbing"], "grid.boundary", "absorbing"),
    ("boundary-unknown-kind-one-face", ["grid.boundary={y_hi: leaky}"], "grid.boundary.y_hi", "leaky"),
    ("boundary-unknown-face", ["grid.boundary={x_low: fixed}"], "grid.boundary.x_low", "fixed"),
    ("periodic-one-face", ["grid.boundary={x_lo: periodic}"], "grid.boundary", "periodic"),
    ("boundary-value-negative", ["grid.boundary_value=-1"], "grid.boundary_value", "-1"),
    ("boundary-value-negative-one-face", ["grid.boundary_value={z_lo: -3}"], "grid.boundary_value.z_lo", "-3"),
    ("decay-negative", ["physics.decay=-1e-4"], "physics.decay", "-0.0001"),
    ("uptake-unknown", ["physics.uptake=hill"], "physics.uptake", "hill"),
    ("solver-unknown", ["solver.kind=rk4"], "solver.kind", "rk4"),
    ("precision-float16", ["precision=float16"], "precision", "float16"),
    ("rtol-zero", ["solver.rtol=0"], "solver.rtol", "0"),
    ("rtol-too-large", ["solver.rtol=0.5"], "solver.rtol", "0.5"),
    ("max-iter-zero", ["solver.max_iter=0"], "solver.max_iter", "0"),
    ("end-zero-transient", ["solver.kind=implicit", "time.end=0"], "time.end", "0"),
    ("snapshot-every-zero", ["solver.kind=explicit", "time.snapshot_every=0"], "time.snapshot_every", "0"),
    ("seed-negative", ["seed=-1"], "seed", "-1"),
    ("type-key-typo", ["+cell_types.il2_producer.secreton=10"], "cell_types.il2_producer.secreton", "10"),
    ("type-key-typo-new-type", ["+cell_types.foo.recepters=100", "+cell_types.foo.count=2"],
     "cell_types.foo.recepters", "100"),
    ("secretion-negative", ["cell_types.il2_producer.secretion=-10"], "cell_types.il2_producer.secretion", "-10"),
    ("receptors-negative", ["cell_types.treg.receptors=-2e4"], "cell_types.treg.receptors", "-20000"),
    ("km-zero", ["cell_types.treg.km=0"], "cell_types.treg.km", "0"),
    ("k-int-negative", ["cell_types.naive_t.k_int=-1e-3"], "cell_types.naive_t.k_int", "-0.001"),
    ("count-and-density", ["+cell_types.treg.count=5"], "cell_types.treg", "100000"),
    ("count-negative", ["cell_types.treg.density=null", "+cell_types.treg.count=-5"], "cell_types.treg.count", "-5"),
    ("count-not-integer", ["cell_types.treg.density=null", "+cell_types.treg.count=2.5"], "cell_types.treg.count", "2.5"),
    ("density-negative", ["cell_types.treg.density=-1e5"], "cell_types.treg.density", "-100000"),
    # 2e6 cells/mm^3 is two cells per 10 um voxel
    ("density-above-one-per-voxel", ["cell_types.naive_t.density=2e6"], "cell_types.naive_t.density", "2000000"),
    # 0.01 + 0.1 + 0.95 of the voxels
    ("more-cells-than-voxels-density", ["cell_types.naive_t.density=9.5e5"], "cell_types", "naive_t"),
    ("more-cells-than-voxels-count", ["grid.shape=[4,4,4]", "+cell_types.foo.count=65"], "cell_types", "65"),
    ("region-box-lo-above-hi", ["+cell_types.treg.region={kind: box, lo: [0, 50, 0], hi: [40, 40, 40]}"],
     "cell_types.treg.region", "40"),
    ("region-box-lo-equals-hi", ["+cell_types.treg.region={kind: box, lo: [10, 10, 10], hi: [10, 40, 40]}"],
     "cell_types.treg.region", "10"),
    ("region-box-missing-corner", ["+cell_types.treg.region={kind: box, lo: [0, 0, 0]}"],
     "cell_types.treg.region", "box"),
    ("region-box-outside-lattice", ["+cell_types.treg.region={kind: box, lo: [500, 0, 0], hi: [600, 40, 40]}"],
     "cell_types.treg.region", "500"),
    ("region-sphere-outside-lattice", ["+cell_types.treg.region={kind: sphere, center: [-500, 0, 0], radius: 50}"],
     "cell_types.treg.region", "-500"),
    ("region-sphere-negative-radius", ["+cell_types.treg.region={kind: sphere, center: [40, 40, 20], radius: -5}"],
     "cell_types.treg.region.radius", "-5"),
    ("region-unknown-kind", ["+cell_types.treg.region={kind: cube, lo: [0, 0, 0], hi: [40, 40, 40]}"],
     "cell_types.treg.region.kind", "cube"),
    ("region-key-of-other-kind", ["+cell_types.treg.region={kind: sphere, center: [40, 40, 20], radius: 10, hi: [1, 1, 1]}"],
     "cell_types.treg.region.hi", "[1, 1, 1]"),
    ("csv-missing", ["cells.csv=/nonexistent/il2rd/cells.csv"], "cells.csv", "/nonexistent/il2rd/cells.csv"),
    # issue 3: tissue, receptor spread, lymph-node compartments (more in test_anatomy.py)
    ("volume-fraction-zero", ["physics.volume_fraction=0"], "physics.volume_fraction", "0"),
    ("tortuosity-below-one", ["physics.tortuosity=0.9"], "physics.tortuosity", "0.9"),
    ("receptor-cv-negative", ["cell_types.treg.receptor_cv=-1"], "cell_types.treg.receptor_cv", "-1"),
    ("region-compartment-unknown", ["+cell_types.treg.region={kind: paracortex}"], "cell_types.treg.region.kind",
     "paracortex"),
    # the default 8 follicles of 80 um do not fit the node of a 400 um lattice
    ("region-t-zone-follicles-do-not-fit", ["grid.shape=[40,40,40]", "+cell_types.treg.region={kind: t_zone}"], "node.follicles.count", "8"),
    ("region-follicle-none-defined", ["grid.shape=[40,40,40]", "node.follicles.count=0", "+cell_types.treg.region={kind: follicle}"],
     "cell_types.treg.region", "follicle"),
    ("decay-zero-nothing-removes-il2", ["physics.decay=0", *NO_CONSUMERS], "physics.decay", "0"),
    ("decay-zero-no-consumers-periodic",
     ["physics.decay=0", "grid.boundary=periodic", *NO_CONSUMERS], "physics.decay", "0"),
    # consumer types are configured but none of their cells is placed: still nothing removes IL-2
    ("decay-zero-consumer-types-without-cells",
     ["physics.decay=0", "cell_types.treg.density=0", "cell_types.naive_t.density=0",
      "cell_types.il2_producer.receptors=0"], "physics.decay", "0"),
]


@pytest.mark.parametrize("overrides, key, value", [pytest.param(o, k, v, id=i) for i, o, k, v in BAD])
def test_bad_value_is_refused_naming_key_and_value(overrides, key, value):
    cfg = compose_config(*SMALL, *overrides)
    with pytest.raises(ConfigError) as info:
        parse(cfg)
    err, message = info.value, str(info.value)
    assert err.key.startswith(key), err.key
    assert err.allowed and message.endswith(err.allowed)  # says what is allowed ...
    named = message[: -len(err.allowed)]  # ... after naming the key and the value given
    assert key in named, f"message does not name the key {key!r}: {message}"
    assert value in named, f"message does not name the value {value!r}: {message}"
    assert "\n" not in message  # one line, fit for `il2rd: error: ...`


def test_the_error_carries_key_value_and_rule():
    with pytest.raises(ConfigError) as info:
        parse(compose_config(*SMALL, "physics.diffusion=-1"))
    err = info.value
    assert err.key == "physics.diffusion" and err.value == -1
    assert "> 0" in err.allowed
    assert str(err).startswith("physics.diffusion = -1")


def test_good_neighbours_of_the_bad_values_are_accepted():
    """The limits are where the messages say: the smallest allowed values parse."""
    s = parse(compose_config(*SMALL, "solver.rtol=0.1", "physics.decay=0", "seed=0", "grid.shape=[1,1,1]",
                             "cell_types.il2_producer.density=null", "cell_types.treg.density=null",
                             "cell_types.naive_t.density=null", "+cell_types.treg.count=1"))
    assert s.numerics.options.rtol == 0.1 and s.problem.decay_per_s == 0.0 and s.problem.grid.n_voxels == 1
    # density of exactly one cell per voxel
    s = parse(compose_config(*SMALL, "cell_types.il2_producer.density=null", "cell_types.treg.density=null",
                             "cell_types.naive_t.density=1e6"))
    assert dict((n, c) for n, c, _ in s.problem.placement)["naive_t"] == 256


def test_shape_with_a_fraction_is_refused_naming_key_and_value():
    """2.5 voxels: Hydra's schema (List[int]) refuses it while composing, naming the entry and
    the value; parse refuses it too when a config bypasses the schema."""
    with pytest.raises(Exception) as info:
        compose_config("grid.shape=[8,8,2.5]")
    message = _chain(info.value)  # what the command prints: Hydra's message and its cause
    assert "grid.shape[2]" in message and "2.5" in message

    raw = OmegaConf.merge(compose_config(*SMALL), {})
    OmegaConf.set_struct(raw, False)
    plain = OmegaConf.create(OmegaConf.to_container(raw))  # no schema: any value gets through
    plain.grid.shape = [8, 8, 2.5]
    with pytest.raises(ConfigError) as info:
        parse(plain)
    assert "grid.shape[2]" in str(info.value) and "2.5" in str(info.value)


def test_type_key_typo_without_plus_is_refused_by_hydra_naming_key():
    with pytest.raises(Exception) as info:
        compose_config(*SMALL, "cell_types.treg.secreton=10")
    assert "cell_types.treg.secreton" in _chain(info.value)


def _chain(err: BaseException) -> str:
    parts = []
    while err is not None:
        parts.append(str(err))
        err = err.__cause__ or err.__context__
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Placement that parses but cannot be honoured: PlacementError from Scenario.build, still before
# any computing, naming the type and the count.


@pytest.mark.parametrize("overrides, type_name, count", [
    pytest.param(["cell_types.treg.density=null", "+cell_types.treg.count=100",
                  "+cell_types.treg.region={kind: box, lo: [0, 0, 0], hi: [40, 40, 40]}"], "treg", "100",
                 id="count-above-region-voxels"),
    pytest.param(["cell_types.treg.density=8e5", "cell_types.naive_t.density=8e5",
                  "+cell_types.treg.region={kind: sphere, center: [40, 40, 20], radius: 30}",
                  "+cell_types.naive_t.region={kind: sphere, center: [40, 40, 20], radius: 30}"], "naive_t", None,
                 id="two-types-overfill-one-region"),
])
def test_region_overfilled_raises_placement_error(overrides, type_name, count):
    s = parse(compose_config(*SMALL, *overrides))
    with pytest.raises(PlacementError) as info:
        Scenario.build(s)
    message = str(info.value)
    assert f"cell_types.{type_name}" in message
    requested = dict((n, c) for n, c, _ in s.problem.placement)[type_name]
    assert str(requested) in message and (count is None or count in message)
    assert "one cell per voxel" in message


def test_density_count_rounding_never_exceeds_the_lattice():
    # 1e6 cells/mm^3 at 10 um is exactly one per voxel: every voxel filled, none left over
    s = parse(compose_config("grid.shape=[5,3,2]", "cell_types.il2_producer.density=null",
                             "cell_types.treg.density=null", "cell_types.naive_t.density=1e6"))
    pop = Scenario.build(s).population
    assert len(pop) == 30 and len({tuple(v) for v in pop.voxel}) == 30
    assert math.isclose(s.problem.grid.voxel_volume_um3, 1000.0)
