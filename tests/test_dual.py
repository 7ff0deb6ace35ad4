"""Every closed-form dual against two independent routes, in float64.

1. Quadrature: E[φ(z₁)φ(z₂)] and E[φ'(z₁)φ'(z₂)] as a 2-D integral over z₁ = σ₁u,
   z₂ = σ₂(ρu + √(1−ρ²)v), u, v ~ N(0, 1), by Gauss–Legendre rules on [−12, 12] split where
   φ(z₁) and φ(z₂) have their kink or jump (u = 0; v = −ρu/√(1−ρ²)), so that every piece is
   smooth and the rule converges geometrically (truncation at 12: e^{−72} ≈ 1e-31). Agreement
   is 1e-13 or better for every closed form (measured); the tolerance is 1e-10 of the
   Cauchy–Schwarz scale √(E φ(z₁)² · E φ(z₂)²), so a closed form off by 1% fails by eight
   orders of magnitude. (Monte Carlo with 2²¹ samples and 6 standard errors could not see 1%.)
2. Price's theorem: k̇ = ∂k/∂q12, by a central finite difference (h = 1e-5, truncation
   error O(h²) ≈ 1e-10 relative).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import LIMIT, legendre, normal_pdf, quad_check
from scipy.special import erf as serf

from theory.kernels import dual

QUAD_RTOL = 1e-10  # closed form vs quadrature, relative to the Cauchy–Schwarz scale
# `dual.gauss_hermite` with 40 nodes is itself a quadrature, of the product of two tanh: its
# error grows as ρ → 1 (measured 1e-5 for k and 1.4e-4 for k̇ at ρ = 0.95, 1e-8 at ρ = 0.3).
QUAD_RTOL_GAUSS_HERMITE = 3e-4

COVS = [  # (q11, q22, q12)
    (1.0, 1.0, 0.3),
    (0.7, 1.8, -0.6),
    (2.0, 0.5, 0.95),
]


def _relu(x):
    return np.maximum(x, 0)


CASES = {
    # name: (pair, φ (numpy), φ' (numpy) or None)
    "relu": (dual.abrelu(0, 1), _relu, lambda x: (x > 0) * 1.0),
    "leaky": (dual.abrelu(0.2, 1), lambda x: np.where(x > 0, x, 0.2 * x), None),
    "abs": (dual.abrelu(-1, 1), np.abs, np.sign),
    "abrelu": (dual.abrelu(-0.4, 1.3), lambda x: np.where(x > 0, 1.3 * x, -0.4 * x), None),
    "sign": (dual.sign(), np.sign, None),
    "erf": (
        dual.erf(1.3, 0.7, 0.2),
        lambda x: 1.3 * serf(0.7 * x) + 0.2,
        lambda x: 1.3 * 0.7 * 2 / math.sqrt(math.pi) * np.exp(-((0.7 * x) ** 2)),
    ),
    "gelu": (
        dual.gelu(),
        lambda x: x * 0.5 * (1 + serf(x / math.sqrt(2))),
        lambda x: (
            0.5 * (1 + serf(x / math.sqrt(2))) + x * np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)
        ),
    ),
    "sin": (
        dual.sin(1.2, 0.8, 0.3),
        lambda x: 1.2 * np.sin(0.8 * x + 0.3),
        lambda x: 1.2 * 0.8 * np.cos(0.8 * x + 0.3),
    ),
    "rbf": (
        dual.rbf(0.6),
        lambda x: math.sqrt(2) * np.sin(math.sqrt(1.2) * x + math.pi / 4),
        None,
    ),
    "exp": (dual.exp(0.8, 0.4), lambda x: 0.8 * np.exp(0.4 * x), lambda x: 0.32 * np.exp(0.4 * x)),
    "gaussian": (
        dual.gaussian(1.1, -0.7),
        lambda x: 1.1 * np.exp(-0.7 * x**2),
        lambda x: 1.1 * -1.4 * x * np.exp(-0.7 * x**2),
    ),
    "gaussian_positive_b": (  # finite while 2b·λ_max(Σ) < 1: here λ_max ≤ 2.6, 2b = 0.16
        dual.gaussian(0.9, 0.08),
        lambda x: 0.9 * np.exp(0.08 * x**2),
        lambda x: 0.9 * 0.16 * x * np.exp(0.08 * x**2),
    ),
    "gabor": (
        dual.gabor(),
        lambda x: np.exp(-(x**2)) * np.sin(x),
        lambda x: np.exp(-(x**2)) * (np.cos(x) - 2 * x * np.sin(x)),
    ),
    "monomial_2": (dual.monomial(2), lambda x: x**2, lambda x: 2 * x),
    "monomial_3": (dual.monomial(3), lambda x: x**3, lambda x: 3 * x**2),
    "monomial_6": (dual.monomial(6), lambda x: x**6, None),
    "rect_monomial_0": (dual.rectified_monomial(0), lambda x: (x >= 0) * 1.0, None),
    "rect_monomial_2": (
        dual.rectified_monomial(2),
        lambda x: _relu(x) ** 2,
        lambda x: 2 * _relu(x),
    ),
    "rect_monomial_3": (dual.rectified_monomial(3), lambda x: _relu(x) ** 3, None),
    "polynomial": (
        dual.polynomial([0.1, 0.9, -0.3, 0.2]),
        lambda x: 0.1 + 0.9 * x - 0.3 * x**2 + 0.2 * x**3,
        lambda x: 0.9 - 0.6 * x + 0.6 * x**2,
    ),
    "tanh_quadrature": (
        dual.gauss_hermite(jnp.tanh, 40, lambda x: 1 - jnp.tanh(x) ** 2),
        np.tanh,
        lambda x: 1 - np.tanh(x) ** 2,
    ),
}


def evaluate(pair, q11, q22, q12, need_dot=True):
    k, dot = pair(jnp.float64(q12), jnp.float64(q11), jnp.float64(q22), False, need_dot)
    return float(k), (None if dot is None else float(dot))


@pytest.mark.parametrize("cov", COVS)
@pytest.mark.parametrize("name", list(CASES))
def test_dual_matches_quadrature(name, cov, x64):
    pair, phi, dphi = CASES[name]
    q11, q22, q12 = cov
    k, dot = evaluate(pair, q11, q22, q12)
    rtol = QUAD_RTOL_GAUSS_HERMITE if name == "tanh_quadrature" else QUAD_RTOL
    quad_check(phi, k, q11, q22, q12, rtol, f"{name} k at {cov}")
    if dphi is not None:
        quad_check(dphi, dot, q11, q22, q12, rtol, f"{name} k̇ at {cov}")


@pytest.mark.parametrize("cov", COVS)
@pytest.mark.parametrize("name", [n for n in CASES if n not in ("sign", "rect_monomial_0")])
def test_dual_derivative_is_price_theorem(name, cov, x64):
    """k̇ = ∂k/∂q12 (Price 1958); sign and step functions have a point-mass derivative."""
    pair, _, _ = CASES[name]
    q11, q22, q12 = cov
    h = 1e-5
    _, dot = evaluate(pair, q11, q22, q12)
    kp, _ = evaluate(pair, q11, q22, q12 + h, need_dot=False)
    km, _ = evaluate(pair, q11, q22, q12 - h, need_dot=False)
    fd = (kp - km) / (2 * h)
    # Closed forms: finite-difference error only. Quadrature: k and k̇ are separate 40-node
    # rules whose error grows as ρ → 1 (the conditional variance shrinks); 7e-5 measured at
    # ρ = 0.95.
    tol = 2e-4 if name == "tanh_quadrature" else 1e-6
    assert abs(fd - dot) <= tol * max(1.0, abs(dot)), (name, fd, dot)


@pytest.mark.parametrize("name", [n for n in CASES if n != "tanh_quadrature"])
def test_dual_diagonal_is_second_moment(name, x64):
    """diag: E[φ(z)²] with correlation exactly 1 equals the limit of k as q12 → √(q11 q22)."""
    pair, phi, _ = CASES[name]
    q = 1.3
    diag = float(dual.diagonal(pair, jnp.float64(q)))
    u, w = legendre([-LIMIT, 0.0], [0.0, LIMIT])  # split at the kink of φ
    want = float(np.sum(w * normal_pdf(u) * phi(math.sqrt(q) * u) ** 2))
    assert abs(diag - want) <= QUAD_RTOL * abs(want), (name, diag, want)


def test_hermite_dual_is_power_of_correlation_for_unit_variance(x64):
    from numpy.polynomial import hermite_e

    pair = dual.hermite(3)
    k, dot = evaluate(pair, 1.0, 1.0, 0.4)
    assert k == pytest.approx(0.4**3, rel=1e-14) and dot == pytest.approx(3 * 0.4**2, rel=1e-14)
    he3 = hermite_e.HermiteE([0, 0, 0, 1])
    quad_check(lambda z: he3(z) / math.sqrt(6), k, 1.0, 1.0, 0.4, QUAD_RTOL, "hermite_3")


def test_float32_arccos_is_accurate_to_float32():
    c = np.linspace(-1, 1, 200_001)
    ours = np.asarray(dual.arccos(jnp.asarray(c, jnp.float32)), np.float64)
    # A&S 4.4.46 bound 2e-8 plus float32 rounding of c (|d arccos| · 6e-8 away from ±1) and
    # of the result (≤ π · 6e-8): 5e-7 absolute covers both with margin.
    exact = np.arccos(np.asarray(c, np.float32).astype(np.float64))
    assert np.max(np.abs(ours - exact)) < 5e-7
    assert ours[-1] == 0.0 and abs(ours[0] - math.pi) < 3e-7


def test_normalised_dual_fixes_one(x64):
    f = dual.normalised(dual.abrelu(0, 1))
    assert float(f(1.0)) == pytest.approx(1.0, abs=1e-15)
    # ReLU: k(0)/k(1) = (1/2π)/(1/2) = 1/π.
    assert float(f(0.0)) == pytest.approx(1 / math.pi, rel=1e-14)


def test_rectified_monomial_is_finite_at_correlation_one(x64):
    """The symbolic J_n is finite at θ = 0 and θ = π (neural-tangents: NaN)."""
    for n in range(5):
        pair = dual.rectified_monomial(n)
        k, dot = pair(jnp.asarray([1.0, -1.0]), jnp.float64(1.0), jnp.float64(1.0), False, True)
        assert np.all(np.isfinite(k)) and np.all(np.isfinite(dot))
        # E[max(z,0)^{2n}] = (2n−1)!!/2 at unit variance.
        expected = math.prod(range(2 * n - 1, 0, -2)) / 2
        assert float(k[0]) == pytest.approx(expected, rel=1e-12)


def test_duals_are_jittable_and_vectorised(x64):
    pair = dual.gelu()
    q12 = jnp.linspace(-0.5, 0.5, 12).reshape(3, 4)
    k, dot = jax.jit(lambda a: pair(a, jnp.ones((3, 1)), jnp.ones((1, 4)), False, True))(q12)
    assert k.shape == dot.shape == (3, 4)


def test_safe_sqrt_and_arccos_have_finite_derivatives_at_the_boundary(x64):
    """Away from 0 (resp. ±1) the derivatives are the textbook ones; at the boundary, where the
    textbook derivative is ∞ and the argument's own derivative 0, they are 0 (not ∞·0 = NaN),
    to every order, in both float dtypes and both AD modes."""
    x = jnp.array([0.0, 1e-300, 0.25, 4.0])
    g = jax.vmap(jax.grad(dual.safe_sqrt))(x)
    np.testing.assert_allclose(g[2:], [1.0, 0.25], rtol=1e-15)
    assert g[0] == 0.0 and np.isfinite(g[1])
    assert jax.grad(jax.grad(dual.safe_sqrt))(0.0) == 0.0
    for dtype in (jnp.float32, jnp.float64):
        c = jnp.array([-1.0, -0.5, 0.3, 1.0], dtype)
        g = jax.vmap(jax.grad(dual.arccos))(c)
        tol = 1e-6 if dtype == jnp.float32 else 1e-15
        np.testing.assert_allclose(g[1:3], -1 / np.sqrt(1 - np.array([0.25, 0.09])), rtol=tol)
        assert g[0] == 0.0 and g[3] == 0.0
        assert np.all(np.isfinite(jax.vmap(jax.grad(jax.grad(dual.arccos)))(c)))


@pytest.mark.parametrize(
    "phi",
    [
        "Relu",
        pytest.param("Erf", marks=pytest.mark.slow),
        pytest.param("Abs", marks=pytest.mark.slow),
    ],
)  # about 10 s of compilations each: ReLU in the default suite, the others in the slow one
def test_network_kernels_differentiate_where_a_point_meets_itself(phi, x64):
    """A kernel over the same inputs puts c = 1 exactly on its diagonal, and a zero input makes
    q11 = 0: before the safe derivatives, both returned NaN gradients (neural-tangents' autodiff
    tests exercise both). The diagonal entry k(x, x) is a smooth function of x (for ReLU its
    NNGP is ‖x‖²-homogeneous and the NTK's arccos term is constant there), so its gradient
    must equal a central difference (h = 1e-6 in float64: error O(h²) + roundoff ~1e-10)."""
    from theory.kernels import stax

    *_, kf = stax.serial(
        stax.Dense(8, 1.5, 0.1), getattr(stax, phi)(), stax.Dense(1, 1.2, 0.1), getattr(stax, phi)()
    )
    x = np.random.default_rng(0).standard_normal((3, 4))
    for get in ("nngp", "ntk"):
        f = jax.jit(lambda a, get=get: jnp.trace(kf(a, None, get)))
        g_rev, g_fwd = np.asarray(jax.grad(f)(x)), np.asarray(jax.jacfwd(f)(x))
        np.testing.assert_allclose(g_rev, g_fwd, rtol=1e-10, atol=1e-12)
        e = np.zeros_like(x)
        for idx in [(0, 0), (1, 2), (2, 3)]:
            e[idx] = 1e-6
            fd = (float(f(x + e)) - float(f(x - e))) / 2e-6
            e[idx] = 0
            assert abs(fd - g_rev[idx]) <= 1e-6 * max(1.0, abs(g_rev[idx])), (get, idx)
        # at a zero input (q11 = 0 without the bias of the first layer's input kernel):
        # the kernel is not differentiable there (|x|-like); its derivative is finite, equal in
        # both modes.
        z = np.zeros((2, 4))
        h = jax.jit(lambda a, get=get: kf(a, x, get).sum())
        g0, g0_fwd = np.asarray(jax.grad(h)(z)), np.asarray(jax.jacfwd(h)(z))
        assert np.all(np.isfinite(g0))
        np.testing.assert_allclose(g0, g0_fwd, rtol=1e-10, atol=1e-12)
