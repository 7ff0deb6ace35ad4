"""theory.attention: exact softmax/tensor attention (naive, blocked) and the polynomial method."""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from theory.attention.exact import softmax_attention, tensor_attention
from theory.attention.poly import (
    degree_for,
    exp_polynomial,
    feature_weights,
    monomial_features,
    multi_attention,
    poly_attention,
    poly_multi_attention,
    poly_tensor_attention,
    rank,
    roundoff_floor,
    shifted_error_bound,
    taylor_error_bound,
)


def _draw(n, d, b=1.0, count=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-b, b, size=(n, d)) for _ in range(count)]


def _brute_tensor(q, k1, k2, v1, v2, scale):
    """Float64 numpy, straight from the definition: A (V1 ⊘ V2) / A 1 with the n × m² matrix."""
    m1, m2 = len(k1), len(k2)
    kk = np.stack([k1[j1] * k2[j2] for j2 in range(m2) for j1 in range(m1)])  # row j1 + m1 j2
    vv = np.stack([v1[j1] * v2[j2] for j2 in range(m2) for j1 in range(m1)])
    x = scale * q @ kk.T
    a = np.exp(x - x.max(1, keepdims=True))  # the softmax is shift-invariant per row
    return (a @ vv) / a.sum(1, keepdims=True)


def _brute_softmax(q, k, v, scale):
    a = np.exp(scale * q @ k.T)
    return (a @ v) / a.sum(1, keepdims=True)


# ---------------------------------------------------------------------------- exact


def test_exact_equals_brute_force_in_float64():
    with jax.enable_x64(True):
        q, k1, k2, v1, v2 = _draw(23, 6, b=1.5)
        for block in (None, 7):
            out = tensor_attention(q, k1, k2, v1, v2, block=block)
            np.testing.assert_allclose(out, _brute_tensor(q, k1, k2, v1, v2, 1 / 6), rtol=1e-12)
            out = softmax_attention(q, k1, v1, block=block)
            np.testing.assert_allclose(out, _brute_softmax(q, k1, v1, 1 / 6), rtol=1e-12)
        # other lengths for queries and key sets, and a non-default scale
        rng = np.random.default_rng(1)
        q = rng.normal(size=(9, 3))
        k1, v1 = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
        k2, v2 = rng.normal(size=(11, 3)), rng.normal(size=(11, 2))
        for block in (None, 3):
            np.testing.assert_allclose(
                tensor_attention(q, k1, k2, v1, v2, scale=0.7, block=block),
                _brute_tensor(q, k1, k2, v1, v2, 0.7),
                rtol=1e-12,
            )


def test_both_blocked_paths_equal_brute_force():
    """Concrete bounded inputs take the fixed-shift path; under jit (traced) or with large
    scores the online-softmax path runs: both equal the definition."""
    with jax.enable_x64(True):
        q, k1, k2, v1, v2 = _draw(21, 4, b=1.0, seed=12)
        ref = _brute_tensor(q, k1, k2, v1, v2, 1 / 4)
        np.testing.assert_allclose(tensor_attention(q, k1, k2, v1, v2, block=5), ref, rtol=1e-12)
        jitted = jax.jit(lambda *a: tensor_attention(*a, block=5))
        np.testing.assert_allclose(jitted(q, k1, k2, v1, v2), ref, rtol=1e-12)
        q, k1, k2, v1, v2 = _draw(11, 2, b=12.0, seed=13)  # 2 max M ≈ 1700 > 1400: online
        ref = _brute_tensor(q, k1, k2, v1, v2, 1 / 2)
        np.testing.assert_allclose(tensor_attention(q, k1, k2, v1, v2, block=4), ref, rtol=1e-10)


def test_blocked_gradients_equal_naive():
    with jax.enable_x64(True):
        q, k1, k2, v1, v2 = (jnp.asarray(a) for a in _draw(13, 4, seed=2))

        def loss(fn, block):
            return lambda *a: jnp.sum(jnp.sin(fn(*a, block=block)))

        g_naive = jax.grad(loss(tensor_attention, None), argnums=(0, 1, 2, 3, 4))(q, k1, k2, v1, v2)
        g_block = jax.grad(loss(tensor_attention, 4), argnums=(0, 1, 2, 3, 4))(q, k1, k2, v1, v2)
        for a, b in zip(g_naive, g_block):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
        g_naive = jax.grad(loss(softmax_attention, None), argnums=(0, 1, 2))(q, k1, v1)
        g_block = jax.grad(loss(softmax_attention, 5), argnums=(0, 1, 2))(q, k1, v1)
        for a, b in zip(g_naive, g_block):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_softmax_matches_jax_dot_product_attention():
    """jax.nn.dot_product_attention computes its softmax in float32: compare in float32
    (outputs of order 1: 2e-6 is ~30 units of roundoff)."""
    q, k, v = (a.astype(np.float32) for a in _draw(31, 8, count=3, seed=3))
    ref = jax.nn.dot_product_attention(q[None, :, None], k[None, :, None], v[None, :, None])
    np.testing.assert_allclose(softmax_attention(q, k, v, scale=8**-0.5), ref[0, :, 0], atol=2e-6)
    ref = jax.nn.dot_product_attention(
        q[None, :, None], k[None, :, None], v[None, :, None], scale=1 / 8
    )
    np.testing.assert_allclose(softmax_attention(q, k, v), ref[0, :, 0], atol=2e-6)


def test_tensor_attention_identities():
    with jax.enable_x64(True):
        q, k1, k2, v1, v2 = _draw(17, 5, seed=4)
        ones = np.ones_like(k2)
        # K2 = V2 = ones: every score is ⟨q, k1⟩, each j1 repeated m times: softmax attention
        np.testing.assert_allclose(
            tensor_attention(q, k1, ones, v1, ones), softmax_attention(q, k1, v1), rtol=1e-12
        )
        # swapping (K1, V1) with (K2, V2) permutes the m² columns only
        np.testing.assert_allclose(
            tensor_attention(q, k1, k2, v1, v2), tensor_attention(q, k2, k1, v2, v1), rtol=1e-12
        )
        # Q = 0: uniform weights, the mean of v1 ∘ v2 over all pairs = mean(V1) ∘ mean(V2)
        out = tensor_attention(np.zeros_like(q), k1, k2, v1, v2, block=4)
        np.testing.assert_allclose(out, np.broadcast_to(v1.mean(0) * v2.mean(0), out.shape))


def test_large_scores_do_not_overflow():
    """Scores of 10⁴ overflow a bare exp; the running max keeps the softmax exact."""
    with jax.enable_x64(True):
        q, k1, k2, v1, v2 = _draw(9, 3, b=30.0, seed=5)
        for block in (None, 4):
            out = tensor_attention(q, k1, k2, v1, v2, block=block)
            assert np.all(np.isfinite(out))
            # the output is a convex combination of the v1 ∘ v2 pairs
            pairs = (v1[:, None, :] * v2[None, :, :]).reshape(-1, 3)
            assert np.all(out <= pairs.max(0) + 1e-12) and np.all(out >= pairs.min(0) - 1e-12)


def test_bad_input_names_the_argument():
    q, k1, k2, v1, v2 = _draw(4, 3, seed=6)
    with pytest.raises(ValueError, match="k1"):
        tensor_attention(q, k1[:, :2], k2, v1, v2)
    with pytest.raises(ValueError, match="v2"):
        tensor_attention(q, k1, k2, v1, v2[:3])
    bad = q.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="q contains non-finite"):
        softmax_attention(bad, k1, v1)
    with pytest.raises(ValueError, match="block"):
        softmax_attention(q, k1, v1, block=0)
    with pytest.raises(ValueError, match="scale"):
        softmax_attention(q, k1, v1, scale=float("inf"))
    with pytest.raises(ValueError, match="degree"):
        poly_attention(q, k1, v1, degree=-1)
    with pytest.raises(ValueError, match="exactly one"):
        poly_attention(q, k1, v1)
    with pytest.raises(ValueError, match="eps"):
        poly_attention(q, k1, v1, eps=0.0)
    with pytest.raises(ValueError, match="keys"):
        poly_multi_attention(q, [k1], [v1, v2])


# ---------------------------------------------------------------------------- polynomial


def test_monomial_features_enumerate_every_multi_index_once():
    x = np.random.default_rng(7).normal(size=(3, 4))
    with jax.enable_x64(True):
        f = np.asarray(monomial_features(x, 3))
    assert f.shape == (3, rank(4, 3)) == (3, 35)
    # brute force: every α with |α| ≤ 3, as a multiset of products
    import itertools

    brute = sorted(
        np.prod(x[0] ** np.array(a)) for a in itertools.product(range(4), repeat=4) if sum(a) <= 3
    )
    np.testing.assert_allclose(sorted(f[0]), brute, rtol=1e-12)


def test_factorization_is_exact():
    """U0 (U1 ⊘ U2)ᵀ = P(scores), entry by entry, for both polynomial centres."""
    with jax.enable_x64(True):
        q, k1, k2 = _draw(7, 3, b=1.3, count=3, seed=8)
        s = 1 / 3
        scores = s * np.einsum("il,al,bl->iab", q, k1, k2)
        for poly in (exp_polynomial(1.0, degree=5), exp_polynomial(2.0, eps=1e-4)):
            w = feature_weights(3, poly, s)
            u0 = np.asarray(monomial_features(q, poly.degree)) * w
            u1 = np.asarray(monomial_features(k1, poly.degree))
            u2 = np.asarray(monomial_features(k2, poly.degree))
            fact = np.einsum("ia,ja,ka->ijk", u0, u1, u2)
            direct = np.polynomial.polynomial.polyval(scores, poly.coeffs)
            np.testing.assert_allclose(fact, direct, rtol=1e-11, atol=1e-12)


def test_certified_bounds_hold_and_degree_is_minimal():
    xs = np.linspace(-1, 1, 20001)
    for r in (0.3, 1.0, 3.0, 8.0):
        for eps in (1e-1, 1e-3, 1e-6):
            poly = exp_polynomial(r, eps=eps)
            x = r * xs
            p = np.polynomial.polynomial.polyval(x, poly.coeffs) * math.exp(poly.center)
            rel = np.max(np.abs(p - np.exp(x)) / np.exp(x))
            assert rel <= poly.error_bound <= eps  # the certificate is an upper bound
            g = poly.degree
            if g > 0:  # one degree less is not certified by either bound
                assert min(taylor_error_bound(r, g - 1), shifted_error_bound(r, g - 1)) > eps
    assert degree_for(1.0, 1e-3) == exp_polynomial(1.0, eps=1e-3).degree
    assert degree_for(2.0, 1e-3, order=2) == exp_polynomial(4.0, eps=1e-3).degree


def test_poly_matches_exact_within_the_guarantee():
    """‖poly − exact‖∞ ≤ 2ε/(1 − ε) ‖V1‖∞ ‖V2‖∞ with entries within B (one draw per case:
    each new shape and degree is a new compilation, ~1 s; the slow suite checks the bound on
    every draw of the attention experiment's quick run)."""
    with jax.enable_x64(True):
        for b, eps in ((0.5, 1e-2), (1.0, 1e-3), (1.5, 1e-5)):
            for seed in range(1):
                q, k1, k2, v1, v2 = _draw(16, 4, b=b, seed=100 + seed)
                out, info = poly_tensor_attention(q, k1, k2, v1, v2, eps=eps, return_info=True)
                err = np.max(np.abs(out - tensor_attention(q, k1, k2, v1, v2)))
                vmax = np.abs(v1).max() * np.abs(v2).max()
                assert err <= 2 * eps / (1 - eps) * vmax
                assert info.radius <= b**3 + 1e-12  # s = 1/d: scores within B³
                out = poly_attention(q, k1, v1, eps=eps)
                err = np.max(np.abs(out - softmax_attention(q, k1, v1)))
                assert err <= 2 * eps / (1 - eps) * np.abs(v1).max()


def test_higher_order_attention():
    """Order 4 (three key sets): the polynomial method against the naive definition."""
    with jax.enable_x64(True):
        q, k1, k2, k3, v1, v2, v3 = _draw(6, 3, b=1.0, count=7, seed=9)
        exact = multi_attention(q, [k1, k2, k3], [v1, v2, v3])
        approx = poly_multi_attention(q, [k1, k2, k3], [v1, v2, v3], eps=1e-8)
        np.testing.assert_allclose(approx, exact, atol=4e-8)
        # order 3 through the general routine is tensor attention
        np.testing.assert_allclose(
            multi_attention(q, [k1, k2], [v1, v2]),
            tensor_attention(q, k1, k2, v1, v2),
            rtol=1e-12,
        )


def test_float32_precision_is_refused_or_warned():
    """u e^(2R) in float32: R = 8 gives ~0.5 — ε = 1e-3 is impossible there; ε = 1e-3 at
    R ≤ 1 (B = 1) is fine."""
    assert roundoff_floor(8.0, jnp.float32) > 0.1
    assert roundoff_floor(1.0, jnp.float32) < 1e-6
    q, k1, k2, v1, v2 = (a.astype(np.float32) for a in _draw(8, 2, b=3.0, seed=10))
    with pytest.raises(ValueError, match="impossible in float32"):
        poly_tensor_attention(q, k1, k2, v1, v2, eps=1e-3)
    with pytest.warns(RuntimeWarning, match="roundoff"):
        poly_tensor_attention(q, k1, k2, v1, v2, degree=20)
    q, k1, k2, v1, v2 = (a.astype(np.float32) for a in _draw(8, 2, b=1.0, seed=10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = poly_tensor_attention(q, k1, k2, v1, v2, eps=1e-3)
    assert out.dtype == jnp.float32


def test_negative_polynomial_warns():
    """A degree-1 polynomial 1 + x is negative for x < −1: outside the bounded regime the
    denominators turn non-positive and the user is told."""
    with jax.enable_x64(True):
        _, _, _, v1, v2 = _draw(8, 2, b=3.0, seed=11)
        q, k1, k2 = -3 * np.ones((8, 2)), 3 * np.ones((8, 2)), 3 * np.ones((8, 2))  # x = −27
        with pytest.warns(RuntimeWarning, match="denominator"):
            poly_tensor_attention(q, k1, k2, v1, v2, degree=1)


def test_critical_bound():
    """(ln n)^(1/t): at B = (ln n)^(1/3) the tensor scores reach ln n; 1/t shrinks with t."""
    from theory.attention import critical_bound

    n = 10**6
    assert critical_bound(n, 3) ** 3 == pytest.approx(math.log(n))
    assert critical_bound(n, 2) > critical_bound(n, 3) > critical_bound(n, 4) > 1
    with pytest.raises(ValueError, match="order"):
        critical_bound(n, 1)


def test_small_values_do_not_underflow_in_the_one_pass_kernel():
    """Scores ±39 (2M = 78) and values 1e-3: weights ≥ e^(−78) times 1e-6 would be below
    float32's smallest normal; the kernel normalises the values first. The exact answer:
    every pair has v1 ∘ v2 = 1e-6."""
    q = np.ones((4, 1), np.float32)
    k1 = np.full((4, 1), math.sqrt(39), np.float32)
    k2 = np.full((4, 1), -math.sqrt(39), np.float32)
    v = np.full((4, 1), 1e-3, np.float32)
    out = tensor_attention(q, k1, k2, v, v, block=2)
    np.testing.assert_allclose(out, 1e-6, rtol=1e-5)


@pytest.mark.slow  # 11 s
def test_poly_under_jit_and_grad_needs_a_degree():
    with jax.enable_x64(True):
        q, k1, k2, v1, v2 = (jnp.asarray(a) for a in _draw(6, 2, b=0.5, seed=14))
        eager = poly_tensor_attention(q, k1, k2, v1, v2, degree=5)
        jitted = jax.jit(lambda *a: poly_tensor_attention(*a, degree=5))(q, k1, k2, v1, v2)
        np.testing.assert_allclose(jitted, eager, rtol=1e-12)
        # the gradient of the polynomial method approaches the exact one (degree 12, B = 0.5)
        g_poly = jax.grad(lambda q: jnp.sum(poly_tensor_attention(q, k1, k2, v1, v2, degree=12)))(q)
        g_exact = jax.grad(lambda q: jnp.sum(tensor_attention(q, k1, k2, v1, v2)))(q)
        np.testing.assert_allclose(g_poly, g_exact, atol=1e-10)
        with pytest.raises(ValueError, match="degree"):
            jax.jit(lambda *a: poly_tensor_attention(*a, eps=1e-3))(q, k1, k2, v1, v2)


@pytest.mark.slow  # 15 s; test_float32_precision_is_refused_or_warned checks the guard itself
def test_float32_breakdown_follows_the_roundoff_estimate():
    """Degree 40 makes truncation negligible (≤ 1e-12 for R ≤ 8): what is left in float32 is
    the roundoff of summing monomials of size up to e^R into values near e^(−R), ~u e^(2R).
    All scores near −R (q = −B, k1 = B, k2 ∈ [0.75B, B], d = 2: x ∈ [−B³, −0.75B³]): below
    1e-5 relative at B = 0.6 (R = 0.22), above 1e-3 at B = 2 (R = 8, u e^(2R) ≈ 0.5)."""
    rng = np.random.default_rng(15)
    errs = {}
    for b in (0.6, 2.0):
        q, k1 = -b * np.ones((6, 2)), b * np.ones((8, 2))
        k2 = rng.uniform(0.75 * b, b, size=(8, 2))
        v1, v2 = rng.normal(size=(8, 2)), rng.normal(size=(8, 2))
        with jax.enable_x64(True):
            exact = np.asarray(tensor_attention(q, k1, k2, v1, v2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            f32 = [a.astype(np.float32) for a in (q, k1, k2, v1, v2)]
            out = np.asarray(poly_tensor_attention(*f32, degree=40))
        errs[b] = np.max(np.abs(out - exact)) / np.max(np.abs(exact))
    assert errs[0.6] < 1e-5 < 1e-3 < errs[2.0]
