"""The peers, on exactly il2rd's discrete problem: SciPy (sparse CG, a direct solve, a Newton-CG
loop) and py-pde (explicit Euler with the coefficient fields as ScalarFields).

The discrete operator is il2rd's: cell-centred 7-point Laplacian with its ghost rules (here
zero flux on every face: ghost = inside voxel), A = -D lap + diag(a), C-order flattening of the
(nx, ny, nz) field. `check_operator` compares A @ v with il2rd's apply_jacobian.
"""

from __future__ import annotations

import time

import numpy as np

from common import log

try:
    import scipy
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla
except ImportError:  # the GPU image has SciPy; a bare one may not
    scipy = sp = spla = None

try:
    import pde as pypde
except ImportError:
    pypde = None


# --------------------------------------------------------------------------------------- SciPy
def minus_laplacian(grid):
    """-lap (1/um^2) of il2rd's homogeneous operator as a CSR matrix (float64)."""
    nx, ny, nz = grid.shape
    ix, iy, iz = (sp.identity(k, format="csr") for k in grid.shape)
    # each axis's -d^2/dx^2 with il2rd's ghost rules (check_operator compares the assembled matrix with
    # il2rd's matrix-free operator)
    lx, ly, lz = (sp.csr_matrix(grid.axis_second_difference(a)) for a in range(3))
    lap = sp.kron(sp.kron(lx, iy), iz) + sp.kron(sp.kron(ix, ly), iz) + sp.kron(sp.kron(ix, iy), lz)
    return (lap / grid.spacing_um**2).tocsr()


def linear_system(grid, coef, minus_lap=None):
    """A = -D lap + diag(k_d + v_max/K_M), b = s: the linear-uptake problem, which is also the
    Newton system J(0) delta = -F(0) of the saturating problem at c = 0 (zero fixed faces)."""
    lap = minus_laplacian(grid) if minus_lap is None else minus_lap
    D = float(coef.diffusion_um2_per_s)
    a = float(coef.decay_per_s) + np.asarray(coef.vmax_pM_per_s, np.float64).ravel() / np.asarray(coef.km_pM, np.float64).ravel()
    A = (D * lap + sp.diags(a)).tocsr()
    b = np.asarray(coef.secretion_pM_per_s, np.float64).ravel()
    return A, b


def check_operator(A, grid, coef_linear) -> float:
    """max |A v - il2rd J(0) v| / max |A v| for a random v."""
    import jax.numpy as jnp

    from il2rd.physics import kinetics

    v = np.random.default_rng(3).random(A.shape[0])
    mine = np.asarray(kinetics.apply_jacobian(jnp.asarray(v.reshape(grid.shape)), jnp.zeros(grid.shape), grid, coef_linear), np.float64).ravel()
    ref = A @ v
    return float(np.abs(ref - mine).max() / np.abs(ref).max())


def relative_residual(A, b, x) -> float:
    return float(np.linalg.norm(b - A @ np.asarray(x, np.float64).ravel()) / np.linalg.norm(b))


def cg(A, b, rtol: float, jacobi: bool, dtype=np.float64, maxiter: int = 20000):
    """scipy.sparse.linalg.cg to ||b - A x|| <= rtol ||b||; returns (x, iterations, info)."""
    A = A.astype(dtype)
    b = b.astype(dtype)
    M = None
    if jacobi:
        dinv = (1.0 / A.diagonal()).astype(dtype)
        M = spla.LinearOperator(A.shape, matvec=lambda r: dinv * r, dtype=dtype)
    its = [0]

    def count(_):
        its[0] += 1

    x, info = spla.cg(A, b, rtol=rtol, atol=0.0, M=M, maxiter=maxiter, callback=count)
    return x, its[0], info


def direct(A, b):
    """SuperLU (scipy.sparse.linalg.splu, minimum degree on A^T + A, the better ordering for this
    symmetric matrix here); returns (x, factor_s, solve_s, nnz(L+U))."""
    t0 = time.perf_counter()
    lu = spla.splu(A.tocsc(), permc_spec="MMD_AT_PLUS_A")
    t1 = time.perf_counter()
    x = lu.solve(b)
    t2 = time.perf_counter()
    return x, t1 - t0, t2 - t1, lu.L.nnz + lu.U.nnz


def newton_cg(grid, coef, rtol: float, forcing: float = 0.1, max_newton: int = 50, minus_lap=None):
    """The nonlinear steady problem by the same inexact Newton as il2rd (forcing eta, clip at 0,
    stop at ||F(c)|| <= rtol ||F(0)||), each linear solve by SciPy's Jacobi-preconditioned CG,
    float64 on the host. Returns (c, newton_steps, cg_iterations, relative_residual)."""
    lap = minus_laplacian(grid) if minus_lap is None else minus_lap
    D = float(coef.diffusion_um2_per_s)
    kd = float(coef.decay_per_s)
    s = np.asarray(coef.secretion_pM_per_s, np.float64).ravel()
    vmax = np.asarray(coef.vmax_pM_per_s, np.float64).ravel()
    km = np.asarray(coef.km_pM, np.float64).ravel()
    DL = (D * lap).tocsr()
    diag_lap = DL.diagonal()

    def F(c):
        cp = np.maximum(c, 0.0)
        return DL @ c + kd * c + vmax * cp / (km + cp) - s

    c = np.zeros_like(s)
    norm0 = np.linalg.norm(F(c))
    f = F(c)
    norm = norm0
    its_total = 0
    k = 0
    while norm > rtol * norm0 and k < max_newton:
        cp = np.maximum(c, 0.0)
        a = kd + vmax * km / (km + cp) ** 2
        J = (DL + sp.diags(a)).tocsr()
        dinv = 1.0 / (diag_lap + a)
        M = spla.LinearOperator(J.shape, matvec=lambda r, d=dinv: d * r, dtype=np.float64)
        its = [0]

        def count(_, its=its):
            its[0] += 1

        tol_abs = max(forcing * norm, 0.5 * rtol * norm0)
        delta, _ = spla.cg(J, -f, rtol=0.0, atol=tol_abs, M=M, callback=count, maxiter=20000)
        its_total += its[0]
        c = np.maximum(c + delta, 0.0)
        f = F(c)
        norm = np.linalg.norm(f)
        k += 1
    return c, k, its_total, norm / norm0


# -------------------------------------------------------------------------------------- py-pde
class PyPDEProblem:
    """dc/dt = D laplace(c) - k_d c + s - v_max c/(K_M + c) on a py-pde CartesianGrid with
    Neumann (derivative 0) faces, s, v_max, K_M as ScalarFields (py-pde's `consts` accept
    fields), default numba backend, float64 (py-pde's only precision)."""

    def __init__(self, grid, coef):
        if pypde is None:
            raise ImportError("py-pde is not installed")
        if any(kind != "zero_flux" for kind in grid.boundary):
            raise ValueError("this wrapper maps zero-flux faces only")
        self.grid = grid
        self.pgrid = pypde.CartesianGrid([[0.0, n * grid.spacing_um] for n in grid.shape], list(grid.shape))
        field = lambda a: pypde.ScalarField(self.pgrid, np.asarray(a, np.float64))  # noqa: E731
        self.field = field
        self.eq = pypde.PDE(
            {"c": "D * laplace(c) - kd * c + s - vmax * c / (km + c)"},
            bc={"derivative": 0},
            consts={"D": float(coef.diffusion_um2_per_s), "kd": float(coef.decay_per_s),
                    "s": field(coef.secretion_pM_per_s), "vmax": field(coef.vmax_pM_per_s), "km": field(coef.km_pM)},
        )

    def check_rate(self, tendency) -> float:
        """max |py-pde rate - il2rd tendency| / max |tendency| at a random field."""
        c = np.random.default_rng(2).random(self.grid.shape) * 10.0
        mine = self.eq.evolution_rate(self.field(c)).data
        ref = tendency(c)
        return float(np.abs(mine - ref).max() / np.abs(ref).max())

    def euler_stepper(self, dt: float):
        """(stepper, solver, compile_s): stepper(state, t0, t1) advances state in place by
        forward Euler at fixed dt (py-pde's EulerSolver, adaptive off)."""
        solver = pypde.EulerSolver(self.eq, adaptive=False)
        state = self.field(np.zeros(self.grid.shape))
        t0 = time.perf_counter()
        stepper = solver.make_stepper(state, dt)
        stepper(state, 0.0, dt)  # numba compiles on the first call
        return stepper, solver, time.perf_counter() - t0

    def run_steps(self, stepper, solver, dt: float, steps: int, c0=None):
        """Advance `steps` steps from c0 (default 0); returns (data, wall_s, steps_taken)."""
        state = self.field(np.zeros(self.grid.shape) if c0 is None else c0)
        before = solver.info["steps"]
        t0 = time.perf_counter()
        # py-pde's fixed-step stepper takes round((t_end - t_start) / dt) steps
        stepper(state, 0.0, steps * dt)
        wall = time.perf_counter() - t0
        return state.data, wall, solver.info["steps"] - before


def versions() -> dict:
    return dict(scipy=None if scipy is None else scipy.__version__, py_pde=None if pypde is None else pypde.__version__)


def available() -> dict:
    return dict(scipy=scipy is not None, py_pde=pypde is not None)


if __name__ == "__main__":  # quick self-check
    log(versions())
