"""Symmetry of the steady field, derivatives through the steady solver (implicit function
theorem, jax.lax.custom_root) against finite differences, and jax.vmap against separate solves."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import coefficients, random_cells
from il2rd.physics import kinetics, units
from il2rd.physics.grid import Grid
from il2rd.solvers.steady import SolverOptions, steady_field

D, H = 10.0, 5.0

# ---------------------------------------------------------------------------------------------
# Symmetry under the 48 axis permutations and flips of the cube.

N_SYM = 15  # odd: the centre voxel (7, 7, 7) is the centre of the lattice


def octahedral_orbit(offsets):
    """All images of the offsets (from the centre) under axis permutations and sign flips."""
    out = set()
    for a in offsets:
        for perm in itertools.permutations(range(3)):
            for signs in itertools.product((1, -1), repeat=3):
                out.add(tuple(s * a[p] for s, p in zip(signs, perm)))
    return sorted(out)


def cube_transforms(c):
    """The 48 images of a cubic array under axis permutations and flips."""
    for perm in itertools.permutations(range(3)):
        t = np.transpose(c, perm)
        for flips in itertools.product((False, True), repeat=3):
            axes = tuple(a for a, f in enumerate(flips) if f)
            yield perm, flips, (np.flip(t, axes) if axes else t)


def symmetric_problem(kind, faces):
    m = N_SYM // 2
    shape = (N_SYM,) * 3
    secretion = np.zeros(shape)
    secretion[m, m, m] = units.cell_rate_to_voxel_rate_pM_per_s(50.0, H**3)
    vmax = np.zeros(shape)
    km = np.ones(shape)
    consumers = octahedral_orbit([(1, 2, 3), (0, 0, 2), (4, 4, 1), (6, 0, 5), (3, 3, 3)])
    for o in consumers:
        vmax[m + o[0], m + o[1], m + o[2]] = 5.0
        km[m + o[0], m + o[1], m + o[2]] = 43.0
    grid = Grid(shape, H, (kind,) * 6)
    return grid, coefficients(shape, D, 1e-3, secretion, vmax, km, faces, "saturating"), len(consumers)


@pytest.mark.parametrize("kind,faces", [("fixed", [2.0] * 6), ("zero_flux", [0.0] * 6), ("periodic", [0.0] * 6)])
def test_symmetric_placement_gives_symmetric_field(kind, faces):
    grid, coef, n_consumers = symmetric_problem(kind, faces)
    # the placement really is symmetric, and not trivially so (many consumers, off-axis ones too)
    assert n_consumers > 100
    for field in (np.asarray(coef.secretion_pM_per_s), np.asarray(coef.vmax_pM_per_s)):
        for _, _, t in cube_transforms(field):
            np.testing.assert_array_equal(t, field)
    # a loose tolerance: symmetry must hold to round-off, independent of how well Newton converged
    c, info = steady_field(grid, coef, options=SolverOptions(rtol=1e-6))
    assert bool(info.converged)
    c = np.asarray(c)
    scale = np.abs(c).max()
    worst = max(np.abs(t - c).max() for _, _, t in cube_transforms(c)) / scale
    print(f"{kind}: largest asymmetry {worst:.2e} of max c")
    assert worst < 1e-12
    # the field is not flat (the symmetry is informative): consumers see less than the source voxel
    assert c.min() < 0.5 * c.max()


def test_asymmetric_placement_breaks_symmetry():
    """Control: moving one consumer by one voxel breaks the symmetry far above round-off."""
    grid, coef, _ = symmetric_problem("fixed", [2.0] * 6)
    m = N_SYM // 2
    vmax = np.asarray(coef.vmax_pM_per_s).copy()
    km = np.asarray(coef.km_pM).copy()
    vmax[m + 1, m + 2, m + 3], km[m + 1, m + 2, m + 3] = 0.0, 1.0
    vmax[m + 1, m + 2, m + 4], km[m + 1, m + 2, m + 4] = 5.0, 43.0
    coef = coef.replace(vmax_pM_per_s=jnp.asarray(vmax), km_pM=jnp.asarray(km))
    c = np.asarray(steady_field(grid, coef, options=SolverOptions(rtol=1e-6))[0])
    worst = max(np.abs(t - c).max() for _, _, t in cube_transforms(c)) / np.abs(c).max()
    assert worst > 1e-6


# ---------------------------------------------------------------------------------------------
# Gradients through steady_field against central finite differences.

GRAD_OPTIONS = SolverOptions(rtol=1e-12)
GRAD_SHAPE = (10, 9, 8)
GRAD_GRID = Grid(GRAD_SHAPE, H, ("fixed", "fixed", "zero_flux", "zero_flux", "periodic", "periodic"))
PARAMS = {"diffusion": 10.0, "decay": 0.01, "secretion_scale": 1.0, "receptor_scale": 1.0, "serum": 3.0}


@pytest.fixture(scope="module")
def gradient_problem():
    secretion, vmax, km = random_cells(GRAD_SHAPE, H, seed=9, source_fraction=0.03, consumer_fraction=0.25)
    consumer = tuple(np.argwhere(vmax > 0)[len(np.argwhere(vmax > 0)) // 2])

    def coef_of(p):
        return coefficients(GRAD_SHAPE, 0.0, 0.0, secretion, vmax, km, uptake="saturating").replace(
            diffusion_um2_per_s=p["diffusion"],
            decay_per_s=p["decay"],
            secretion_pM_per_s=p["secretion_scale"] * jnp.asarray(secretion),
            vmax_pM_per_s=p["receptor_scale"] * jnp.asarray(vmax),
            face_values_pM=jnp.asarray([p["serum"], 0.0, 0.0, 0.0, 0.0, 0.0]),
        )

    def field(p):
        c, _ = steady_field(GRAD_GRID, coef_of(p), options=GRAD_OPTIONS)
        return c

    scalars = {
        "field_at_consumer": lambda p: field(p)[consumer],
        "total_uptake": lambda p: jnp.sum(kinetics.uptake_rate(field(p), coef_of(p))) * H**3,
    }
    return coef_of, scalars


@pytest.mark.parametrize("scalar", ["field_at_consumer", "total_uptake"])
def test_gradient_matches_central_difference(gradient_problem, scalar):
    coef_of, scalars = gradient_problem
    f = scalars[scalar]
    p0 = {k: jnp.asarray(v, jnp.float64) for k, v in PARAMS.items()}
    c, info = steady_field(GRAD_GRID, coef_of(p0), options=GRAD_OPTIONS)
    assert bool(info.converged)
    grads = jax.grad(f)(p0)
    for name, value in PARAMS.items():
        eps = 1e-4 * value
        plus = dict(p0, **{name: jnp.asarray(value + eps)})
        minus = dict(p0, **{name: jnp.asarray(value - eps)})
        fd = (float(f(plus)) - float(f(minus))) / (2 * eps)
        ad = float(grads[name])
        print(f"{scalar}: d/d{name} autodiff {ad:.10g}, central difference {fd:.10g}, rel {abs(ad - fd) / abs(fd):.1e}")
        assert abs(fd) > 1e-8 * abs(float(f(p0))) / value  # a real dependence, not 0 = 0
        assert ad == pytest.approx(fd, rel=1e-5)


def test_gradient_signs_are_physical(gradient_problem):
    """More secretion or serum raises total uptake and more decay lowers it; at a consumer,
    secretion raises the field, decay and more receptors lower it."""
    coef_of, scalars = gradient_problem
    p0 = {k: jnp.asarray(v, jnp.float64) for k, v in PARAMS.items()}
    g_up = jax.grad(scalars["total_uptake"])(p0)
    g_c = jax.grad(scalars["field_at_consumer"])(p0)
    assert g_up["secretion_scale"] > 0 and g_up["serum"] > 0 and g_up["decay"] < 0
    assert g_c["secretion_scale"] > 0 and g_c["decay"] < 0 and g_c["receptor_scale"] < 0


# ---------------------------------------------------------------------------------------------
# vmap over parameter sets.


def test_vmap_over_diffusion_equals_separate_solves(gradient_problem):
    coef_of, _ = gradient_problem
    p0 = {k: jnp.asarray(v, jnp.float64) for k, v in PARAMS.items()}
    options = SolverOptions(rtol=1e-11)
    diffusions = jnp.asarray([2.0, 5.0, 10.0, 40.0, 100.0])

    def solve(d):
        return steady_field(GRAD_GRID, coef_of(dict(p0, diffusion=d)), options=options)

    batched, info = jax.vmap(solve)(diffusions)
    assert batched.shape == (len(diffusions),) + GRAD_SHAPE
    assert bool(jnp.all(info.converged))
    assert bool(jnp.all(info.relative_residual <= options.rtol))
    for i, d in enumerate(diffusions):
        single, _ = solve(d)
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(single), rtol=1e-9, atol=1e-9 * float(jnp.abs(single).max()))
    # the batch members really differ (so a mix-up between them would be caught)
    assert float(jnp.abs(batched[0] - batched[-1]).max()) > 0.1 * float(jnp.abs(batched[-1]).max())
