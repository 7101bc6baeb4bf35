"""The boundary objects (il2rd/physics/boundaries.py) against the mathematics of their faces: each kind's
ghost rule, its end of the 1-D second difference -d^2/dx^2 on profiles whose second derivative
or outflux is known exactly, its coarsening, and the registry the config parses."""

import jax.numpy as jnp
import numpy as np
import pytest

from il2rd.physics import boundaries, grid as grid_mod
from il2rd.physics.boundaries import KINDS, Fixed, Periodic, ZeroFlux, second_difference_matrix
from il2rd.physics.grid import Grid
from il2rd.solvers.multigrid import hierarchy

N = 12
H_UM = 2.5
CENTRES = (np.arange(N) + 0.5) * H_UM  # cell centres, faces at x = 0 and x = N h


def minus_second_difference(faces, c, h=H_UM):
    """-d^2c/dx^2 (c's unit / um^2) by the faces' 1-D row, with the fixed faces at c_b = 0."""
    return second_difference_matrix(len(c), faces) @ c / h**2


def test_registry_names_the_config_values_and_rejects_unknown_kinds():
    assert tuple(KINDS) == ("zero_flux", "fixed", "periodic")
    for name, kind in KINDS.items():
        assert kind.name == name and boundaries.of(name) == kind() and boundaries.of(kind()) == kind()
    with pytest.raises(ValueError, match="absorbing"):
        boundaries.of("absorbing")
    with pytest.raises(ValueError, match="leaky"):
        Grid((4, 4, 4), 1.0, ("leaky",) * 6)


def test_grid_holds_objects_and_keeps_the_names():
    by_name = Grid((4, 4, 4), 1.0, ("fixed", "zero_flux", "periodic", "periodic", "zero_flux", "fixed"))
    by_object = Grid((4, 4, 4), 1.0, (Fixed(), ZeroFlux(), Periodic(), Periodic(), ZeroFlux(), Fixed()))
    assert by_name == by_object and hash(by_name) == hash(by_object)
    assert by_object.boundary == ("fixed", "zero_flux", "periodic", "periodic", "zero_flux", "fixed")
    assert by_name.faces == (Fixed(), ZeroFlux(), Periodic(), Periodic(), ZeroFlux(), Fixed())
    assert by_name.axis_faces(1) == (Periodic(), Periodic())
    flat = Grid((4, 4, 1), 1.0, ("fixed",) * 6)  # 2-D: the z faces are zero flux
    assert flat.faces[4:] == (ZeroFlux(), ZeroFlux()) and flat.boundary[4:] == ("zero_flux", "zero_flux")


def test_ghost_rules():
    inside, opposite = np.array([3.0, -1.5]), np.array([7.0, 2.0])
    np.testing.assert_array_equal(ZeroFlux().ghost(inside, opposite, 4.0), inside)  # (ghost - inside) / h = 0
    np.testing.assert_array_equal(Periodic().ghost(inside, opposite, 4.0), opposite)
    # fixed: the face, midway between ghost and inside centres, is at c_b (linear interpolation)
    np.testing.assert_array_equal(0.5 * (Fixed().ghost(inside, opposite, 4.0) + inside), [4.0, 4.0])
    np.testing.assert_array_equal(Fixed().ghost(inside, opposite, None), -inside)  # homogeneous: c_b = 0


def test_zero_flux_rows_give_the_exact_second_derivative_of_a_profile_flat_at_the_face():
    # c = x^2 has dc/dx = 0 at x = 0, so its mirror ghost is exact: -c'' = -2 in every row but the
    # far end's (whose face the profile does not suit); likewise (N h - x)^2 at the high face
    faces = (ZeroFlux(), ZeroFlux())
    np.testing.assert_allclose(minus_second_difference(faces, CENTRES**2)[:-1], -2.0, rtol=1e-12)
    np.testing.assert_allclose(minus_second_difference(faces, (N * H_UM - CENTRES) ** 2)[1:], -2.0, rtol=1e-12)


def test_fixed_rows_are_exact_on_a_linear_profile_through_the_face_values():
    # c = c_lo + g x: c'' = 0, and the affine part of the operator (value_weight c_b / h^2 in the
    # end rows) brings the face values in
    c_lo, g = 3.0, 0.4
    c_hi = c_lo + g * N * H_UM
    c = c_lo + g * CENTRES
    affine = np.zeros(N)
    affine[0], affine[-1] = Fixed.value_weight * c_lo, Fixed.value_weight * c_hi
    residual = minus_second_difference((Fixed(), Fixed()), c) - affine / H_UM**2
    np.testing.assert_allclose(residual, 0.0, atol=1e-12)


def test_periodic_row_is_circulant_and_diagonalised_by_fourier_modes():
    m = second_difference_matrix(N, (Periodic(), Periodic()))
    for i in range(N):
        np.testing.assert_array_equal(m[i], np.roll(m[0], i))
    for k in range(N):
        mode = np.cos(2 * np.pi * k * np.arange(N) / N)
        np.testing.assert_allclose(m @ mode, 4 * np.sin(np.pi * k / N) ** 2 * mode, atol=1e-12)


@pytest.mark.parametrize("kind", [ZeroFlux, Periodic])
def test_closed_axes_conserve_mass(kind):
    # -d^2/dx^2 with no flux through either end: its columns sum to 0 (the lattice total is
    # unchanged) and a uniform field is in its null space
    m = second_difference_matrix(N, (kind(), kind()))
    np.testing.assert_array_equal(m.sum(axis=0), 0.0)
    np.testing.assert_array_equal(m @ np.ones(N), 0.0)


def test_fixed_outflux_is_the_exact_flux_of_a_linear_profile():
    # c = c_b + g x near the face x = 0: IL-2 leaves through it at D g per um^2 (pM um/s); the
    # face layer (4 x 3 voxels of h^2) sits at c_b + g h/2
    d, c_b, g = 7.0, 2.0, 0.3
    layer = jnp.full((4, 3), c_b + g * H_UM / 2)
    area = 4 * 3 * H_UM**2
    assert float(Fixed().outflux(layer, c_b, d, H_UM)) == pytest.approx(d * g * area, rel=1e-12)
    assert float(Fixed().outflux(jnp.full((4, 3), c_b), c_b, d, H_UM)) == 0.0  # uniform at the face value
    assert ZeroFlux().outflux(layer, c_b, d, H_UM) == 0.0 and Periodic().outflux(layer, c_b, d, H_UM) == 0.0


def test_which_faces_pass_and_feed_il2():
    assert Fixed().passes_flux and Fixed().feeds(1.0) and not Fixed().feeds(0.0)
    for kind in (ZeroFlux, Periodic):
        assert not kind().passes_flux and not kind().feeds(5.0)
    assert [kind().wraps for kind in (ZeroFlux, Fixed, Periodic)] == [False, False, True]


def test_a_lone_voxel_axis():
    # one voxel: its 1x1 operator is 0 for mirror or wrapping ghosts, 2 per fixed face
    for lo in KINDS.values():
        for hi in KINDS.values():
            faces = (lo(), hi())
            entry = second_difference_matrix(1, faces)[0, 0]
            assert entry == 2.0 * sum(f.passes_flux for f in faces)
            assert boundaries.lone_voxel_is_closed(faces) == (entry == 0.0)


def test_coarsening_keeps_the_kind():
    for kind in KINDS.values():
        assert kind().coarsened(lone_axis=False) == kind()
    assert ZeroFlux().coarsened(lone_axis=True) == ZeroFlux() and Periodic().coarsened(lone_axis=True) == Periodic()
    assert Fixed().coarsened(lone_axis=True) is None  # its 2/h^2 would change with the doubled h
    mixed = ("fixed", "zero_flux", "periodic", "periodic", "zero_flux", "fixed")
    levels = hierarchy(Grid((16, 16, 16), 1.0, mixed))
    assert len(levels) == 3 and all(level.boundary == mixed for level in levels)
    assert len(hierarchy(Grid((16, 1, 16), 1.0, ("zero_flux", "zero_flux", "fixed", "zero_flux", "zero_flux", "zero_flux")))) == 1


@pytest.mark.parametrize("kind", [ZeroFlux, Fixed])
def test_fast_transform_eigenvalues_are_those_of_the_row(kind):
    name, eigenvalues = boundaries.symmetric_eigenvalues(N, (kind(), kind()), H_UM)
    assert name == kind.transform
    exact = np.linalg.eigvalsh(second_difference_matrix(N, (kind(), kind()))) / H_UM**2
    np.testing.assert_allclose(np.sort(eigenvalues), exact, atol=1e-12)


def test_no_fast_transform_for_periodic_or_mixed_axes():
    assert boundaries.symmetric_eigenvalues(N, (Periodic(), Periodic()), H_UM) is None
    assert boundaries.symmetric_eigenvalues(N, (ZeroFlux(), Fixed()), H_UM) is None


def test_grid_laplacian_is_the_rows_along_each_axis():
    # a field varying along x only: the 3-D Laplacian is the x row's, per kind pair
    rng = np.random.default_rng(3)
    profile = rng.random(N)
    for lo in KINDS.values():
        for hi in KINDS.values():
            if lo().wraps != hi().wraps:
                continue
            grid = Grid((N, 3, 2), H_UM, (lo.name, hi.name) + ("zero_flux",) * 4)
            field = jnp.asarray(np.broadcast_to(profile[:, None, None], grid.shape))
            lap = np.asarray(grid_mod.laplacian(field, grid))
            np.testing.assert_allclose(lap, np.broadcast_to(-minus_second_difference((lo(), hi()), profile)[:, None, None],
                                                            grid.shape), rtol=1e-12, atol=1e-12)
