"""theory.complexity: API, bad input, estimators on synthetic manifolds, tiled k-NN.

Tolerances are stated where they are set: closed forms are float64 transcriptions (rtol 1e-10
unless the quantity is a difference of large numbers); estimator tolerances follow from the
estimator's sampling error plus its known finite-sample bias at n = 2000.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.special import gamma as gamma_fn
from scipy.special import gammaln

import theory.complexity as tc

RTOL = 1e-10  # float64 log-space formula against a direct float64 transcription

# ------------------------------------------------------------------ closed forms


def _direct_classification(n, m, R, delta, C, eps, B=1.0):
    """Plain float64 transcription of the issue's formula (valid where nothing overflows)."""
    D = C - 1
    M = 2 * np.pi * R / delta
    K = (np.sqrt((m - 1) ** 2 + 4 * M**2) - (m - 1)) / 2

    def binom(a, b):
        return np.exp(gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1))

    E = binom(m + K, m) + binom(m + K - 1, m)
    area = 2 * np.pi ** ((m + 1) / 2) / gamma_fn((m + 1) / 2)
    W = np.sqrt(m / 6) * (C * area * R**m / n) ** (1 / m)
    Lf = K * np.sqrt(D) / R
    dq = 2 * D * C * E - n * D
    return dq * np.log2(B * np.sqrt(D * C) * Lf * W / eps), E, K, W, Lf, dq


@pytest.mark.parametrize(
    "args",
    [
        (60000, 14, 17.179, 2.3987, 10, 1e-3),
        (50000, 27, 54.92, 2.75, 10, 1e-2),
        (1000, 3, 1.0, 0.1, 2, 0.05),
        (500, 2.5, 3.0, 0.7, 5, 0.2),  # non-integer m
    ],
)
def test_classification_matches_direct_transcription(args):
    bits, E, K, W, Lf, dq = _direct_classification(*args)
    terms = tc.classification_terms(*args)
    np.testing.assert_allclose(terms.bits, bits, rtol=RTOL)
    np.testing.assert_allclose(terms.E, E, rtol=RTOL)
    np.testing.assert_allclose(terms.K, K, rtol=RTOL)
    np.testing.assert_allclose(terms.W, W, rtol=RTOL)
    np.testing.assert_allclose(terms.L_f, Lf, rtol=RTOL)
    np.testing.assert_allclose(terms.dim_theta_q, dq, rtol=RTOL)
    np.testing.assert_allclose(10**terms.log10_bits, bits, rtol=RTOL)
    assert terms.bits.dtype == np.float64


def test_breakdown_multiplies_to_bits():
    t = tc.classification_terms(60000, 14, 17.179, 2.3987, 10, 1e-3)
    np.testing.assert_allclose(t.dim_theta_q * t.bits_per_dimension, t.bits, rtol=RTOL)
    ibc = tc.inductive_bias_complexity(60000, 14, 17.179, 2.3987, 10, 1e-3)
    assert ibc.bits == t.bits and ibc.log10_bits == t.log10_bits


def test_broadcasts_over_arrays():
    ibc = tc.inductive_bias_complexity(
        60000, np.arange(5, 30)[:, None], 17.2, 2.4, 10, np.array([1e-3, 1e-2])
    )
    assert ibc.bits.shape == ibc.log10_bits.shape == (25, 2)


def test_huge_values_stay_finite_in_log10():
    # Omniglot: Ĩ ≈ 1.8e145 fits float64; pushing m up overflows `bits` but not log10.
    assert 145 < tc.OMNIGLOT.ibc().log10_bits < 146
    big = tc.inductive_bias_complexity(1e6, 400, 1000.0, 1.0, 1000, 0.1)
    assert np.isinf(big.bits) and np.isfinite(big.log10_bits) and big.log10_bits > 308


def test_tiny_task_is_clipped_to_zero():
    t = tc.classification_terms(1e9, 1, 1.0, 1.0, 2, 0.1)  # far more points than parameters
    assert bool(t.clipped) and t.bits == 0.0 and t.log10_bits == -np.inf


def test_rl_matches_cartpole_expression():
    # The cart-pole expression in T (m = 2T, D = 1) transcribed directly.
    n, delta, eps = 1e4, 1e-3, 1e-3
    for T in range(1, 6):
        direct = (2 * (2 * np.pi / delta) ** (2 * T) * np.pi**T / gamma_fn(T + 1) - n) * (
            np.log2(4 * np.pi**2 / np.sqrt(3))
            + 0.5 * np.log2(T)
            - np.log2(delta)
            - np.log2(n) / (2 * T)
            - np.log2(eps)
        )
        np.testing.assert_allclose(
            tc.rl_inductive_bias_complexity(2 * T, 1, n, delta, eps).bits, direct, rtol=RTOL
        )


def _authors_mujoco(m, D, n, delta, eps):
    """The paper's code, ``mujoco_difficulty`` (github.com/FieteLab/inductive-bias-complexity,
    task_difficulty.py), transcribed term by term in float64: D actions, m-torus observations.

        Ĩ = D (2 (2π/δ)^m π^(m/2) / Γ(m/2+1) − n)
            · (log₂(4π²/√6) + log₂ D + ½ log₂ m − log₂ δ − log₂(n)/m − log₂ ε)

    log₂ D = ½ log₂ D (the √D of B √(D C)) + ½ log₂ D (the √D of L_f = M √D).
    """
    dim_q = D * (2 * (2 * np.pi / delta) ** m * np.pi ** (m / 2) / gamma_fn(m / 2 + 1) - n)
    per_dim = (
        np.log2(4 * np.pi**2 / np.sqrt(6))
        + np.log2(D)
        + 0.5 * np.log2(m)
        - np.log2(delta)
        - np.log2(n) / m
        - np.log2(eps)
    )
    return dim_q * per_dim, dim_q, per_dim


@pytest.mark.parametrize(
    "m, D, n, delta, eps",
    [
        # The paper's MuJoCo tasks (Reacher, Hopper, Half-Cheetah): D = 2, 4, 6, not 1.
        *[(t.m, t.action_dim, t.n, t.delta, t.error) for t in tc.MUJOCO_TASKS],
        (3, 5, 1e3, 0.05, 0.02),  # log₂ D = 2.3: flipping ½ log₂ D moves Ĩ by 17%
        (2.5, 3, 50, 0.3, 0.1),  # non-integer m
    ],
)
def test_rl_matches_authors_mujoco_expression(m, D, n, delta, eps):
    """D > 1 (the cart-pole test has D = 1, where every log D term vanishes)."""
    bits, dim_q, per_dim = _authors_mujoco(m, D, n, delta, eps)
    terms = tc.rl_terms(m, D, n, delta, eps)
    np.testing.assert_allclose(terms.bits, bits, rtol=RTOL)
    np.testing.assert_allclose(terms.dim_theta_q, dim_q, rtol=RTOL)
    np.testing.assert_allclose(terms.bits_per_dimension, per_dim, rtol=RTOL)
    assert tc.rl_inductive_bias_complexity(m, D, n, delta, eps).bits == terms.bits


def test_rl_scales_with_action_dim_as_the_formula_says():
    # At fixed (m, n, δ, ε), D enters as D · (…) · (c + log₂ D): the bits-per-dimension
    # factor grows by exactly log₂(D₂/D₁), and dim Θ_q by exactly D₂/D₁.
    a, b = tc.rl_terms(4, 1, 1e4, 1e-2, 1e-3), tc.rl_terms(4, 8, 1e4, 1e-2, 1e-3)
    np.testing.assert_allclose(b.bits_per_dimension - a.bits_per_dimension, 3.0, rtol=RTOL)
    np.testing.assert_allclose(b.dim_theta_q / a.dim_theta_q, 8.0, rtol=RTOL)


def test_meta_is_classification_with_classifier_outputs():
    n, m0, m1, R, delta, eps, N = 1e6, 4, 5, 3.0, 0.9, 0.01, 3
    _, E0, *_ = _direct_classification(10, m0, R, delta, 2, 0.5)  # E(m0, 2πR/δ)
    D = 2 * N * (N - 1) * E0
    m, RR, B = m1 + (N - 1) * m0, R * np.sqrt(N), np.sqrt(N * (N - 1))
    M = 2 * np.pi * RR / delta
    K = (np.sqrt((m - 1) ** 2 + 4 * M**2) - (m - 1)) / 2
    E = np.exp(
        np.logaddexp(
            gammaln(m + K + 1) - gammaln(m + 1) - gammaln(K + 1),
            gammaln(m + K) - gammaln(m + 1) - gammaln(K),
        )
    )
    area = 2 * np.pi ** ((m + 1) / 2) / gamma_fn((m + 1) / 2)
    W = np.sqrt(m / 6) * (area * RR**m / n) ** (1 / m)
    direct = (2 * D * E - n * D) * np.log2(B * np.sqrt(D) * K * np.sqrt(D) / RR * W / eps)
    got = tc.meta_inductive_bias_complexity(n, m0, m1, R, delta, eps, ways=N)
    np.testing.assert_allclose(got.bits, direct, rtol=1e-9)


def test_no_global_x64_flip():
    before = jax.config.jax_enable_x64
    tc.inductive_bias_complexity(60000, 14, 17.179, 2.3987, 10, 1e-3)
    tc.nearest_neighbors(np.eye(4, dtype=np.float32), np.eye(4, dtype=np.float32), 1)
    assert jax.config.jax_enable_x64 == before


# -------------------------------------------------------------------- bad input

_GOOD = dict(n=60000, m=14, radius=17.2, delta=2.4, num_classes=10, error=1e-3)


@pytest.mark.parametrize(
    "name, value, exc",
    [
        ("m", 0, ValueError),
        ("m", -3, ValueError),
        ("delta", 0.0, ValueError),
        ("delta", -1.0, ValueError),
        ("radius", 0.0, ValueError),
        ("error", 0.0, ValueError),
        ("error", 1.0, ValueError),
        ("error", 1.5, ValueError),
        ("n", 0.5, ValueError),
        ("num_classes", 1, ValueError),
        ("num_classes", 2.5, ValueError),
        ("m", np.nan, ValueError),
        ("delta", "big", TypeError),
        ("m", [3, -1], ValueError),
    ],
)
def test_bad_input_names_the_argument(name, value, exc):
    with pytest.raises(exc, match=name):
        tc.inductive_bias_complexity(**{**_GOOD, name: value})


@pytest.mark.parametrize(
    "fn, kwargs, name",
    [
        (tc.rl_inductive_bias_complexity, dict(m=0, action_dim=1, n=10, delta=0.1, error=0.1), "m"),
        (tc.rl_inductive_bias_complexity, dict(m=2, action_dim=1, n=0, delta=0.1, error=0.1), "n"),
        (
            tc.rl_inductive_bias_complexity,
            dict(m=2, action_dim=1, n=9, delta=0, error=0.1),
            "delta",
        ),
        (
            tc.rl_inductive_bias_complexity,
            dict(m=2, action_dim=1, n=9, delta=0.1, error=2),
            "error",
        ),
        (
            tc.meta_inductive_bias_complexity,
            dict(n=10, m_within=0, m_across=2, radius=1, delta=0.1, error=0.1),
            "m_within",
        ),
        (
            tc.meta_inductive_bias_complexity,
            dict(n=10, m_within=2, m_across=2, radius=1, delta=0.1, error=0.1, ways=1),
            "ways",
        ),
    ],
)
def test_bad_input_variants(fn, kwargs, name):
    with pytest.raises(ValueError, match=name):
        fn(**kwargs)


# The estimator tests share one data shape, (2000, 20), so that the jitted k-NN, the
# cross-label scan and the pair sampler compile once for all of them.
N_POINTS, AMBIENT = 2000, 20
EVT_PAIRS = 2**20


def test_estimators_reject_duplicates():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N_POINTS, AMBIENT)).astype(np.float32)
    x[1000:1100] = x[:100]
    y = np.arange(N_POINTS) % 2
    y[1000:1100] = 1 - y[:100]  # each duplicate pair sits in two classes: δ would be 0
    with pytest.raises(ValueError, match="duplicate"):
        tc.mle_intrinsic_dimension(x, 10)
    with pytest.raises(ValueError, match="duplicate"):
        tc.twonn_intrinsic_dimension(x)
    with pytest.raises(ValueError, match="duplicate"):
        tc.sample_resolution(x, y)
    # ~100 of the 4M ordered pairs are duplicates: 2^20 draws hit ~50 of them.
    with pytest.raises(ValueError, match="duplicate"):
        tc.evt_resolution(x, y, num_pairs=EVT_PAIRS, k=50)
    # a floor above zero skips the conflicting duplicates, as in the paper's code
    assert tc.sample_resolution(x, y, floor=1e-6) > 0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x, y: tc.mle_intrinsic_dimension(x, 1), "k"),
        (lambda x, y: tc.mle_intrinsic_dimension(x, 500), "k"),
        (lambda x, y: tc.mle_intrinsic_dimension(x[:, 0], 5), "x"),
        (lambda x, y: tc.mle_intrinsic_dimension(np.full((50, 2), np.nan), 5), "finite"),
        (lambda x, y: tc.mle_intrinsic_dimension("abc", 5), "x"),
        (lambda x, y: tc.sample_resolution(x, y[:-1]), "y"),
        (lambda x, y: tc.sample_resolution(x, np.zeros(len(x), int)), "two classes"),
        (lambda x, y: tc.sample_resolution(x, y, floor=-1.0), "floor"),
        (lambda x, y: tc.evt_resolution(x, y, k=1), "k"),
        (lambda x, y: tc.task_complexity(x, y, 1e-3, delta="magic"), "delta"),
        (lambda x, y: tc.task_complexity(x, y, 1.5), "error"),
        (lambda x, y: tc.nearest_neighbors(x[:, :2], x, 3), "features"),
    ],
)
def test_estimator_bad_input(call, match):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((100, 3)).astype(np.float32)
    y = np.arange(100) % 3
    with pytest.raises((ValueError, TypeError), match=match):
        call(x, y)


# ------------------------------------------------------------------- k-NN tiling


def test_tiled_knn_equals_brute_force():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((333, 7)).astype(np.float32)
    q_idx = rng.choice(333, 77, replace=False)
    # Small, non-dividing tiles force several query and point blocks plus padding.
    dist, idx = tc.nearest_neighbors(
        x[q_idx], x, 6, query_indices=q_idx, query_block=16, point_block=50
    )
    brute = np.linalg.norm(x[q_idx, None].astype(np.float64) - x[None], axis=-1)  # (77, 333)
    brute[np.arange(77), q_idx] = np.inf
    np.testing.assert_allclose(dist, np.sort(brute, 1)[:, :6], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(idx, np.argsort(brute, 1)[:, :6])


def test_knn_without_self_exclusion_finds_self():
    x = np.random.default_rng(3).standard_normal((40, 3)).astype(np.float32)
    dist, idx = tc.nearest_neighbors(x, x, 2, point_block=8)
    np.testing.assert_array_equal(idx[:, 0], np.arange(40))
    assert np.all(np.asarray(dist[:, 0]) == 0)


def test_sample_resolution_equals_brute_force():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 4)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    d = np.linalg.norm(x[:, None].astype(np.float64) - x[None], axis=-1)
    differ = y[:, None] != y[None]
    np.testing.assert_allclose(
        tc.sample_resolution(x, y, point_block=64), d[differ].min(), rtol=1e-6
    )
    floor = float(np.quantile(d[differ], 0.01))
    np.testing.assert_allclose(
        tc.sample_resolution(x, y, floor=floor, point_block=64),
        d[differ & (d >= floor)].min(),
        rtol=1e-5,
    )


# ------------------------------------------------------------ intrinsic dimension


def _sphere(rng, n, m, ambient):
    g = rng.standard_normal((n, m + 1))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    basis, _ = np.linalg.qr(rng.standard_normal((ambient, m + 1)))
    return (g @ basis.T).astype(np.float32)


def _torus(rng, n, m, ambient):  # flat torus (S¹)^m in R^(2m), rotated into R^ambient
    a = rng.uniform(0, 2 * np.pi, (n, m))
    e = np.concatenate([np.cos(a), np.sin(a)], 1)
    basis, _ = np.linalg.qr(rng.standard_normal((ambient, 2 * m)))
    return (e @ basis.T).astype(np.float32)


def _subspace(rng, n, m, ambient):
    z = rng.standard_normal((n, m))
    basis, _ = np.linalg.qr(rng.standard_normal((ambient, m)))
    return (z @ basis.T).astype(np.float32)


# n = 2000 points in R^20, k = 10. Sampling error of the pooled MLE is about
# m / sqrt(n (k − 1)) ≈ 1% and of TwoNN m / sqrt(n) ≈ 2.2% at m = 4; curvature and boundary
# bias add up to ~7% at m = 4–5 (measured over seeds). Tolerance: 10% relative.
DIM_RTOL = 0.10


@pytest.mark.parametrize("manifold", [_sphere, _torus, _subspace])
@pytest.mark.parametrize("m", [2, 4])
def test_intrinsic_dimension_recovered(manifold, m):
    x = manifold(np.random.default_rng(10 + m), N_POINTS, m, AMBIENT)
    assert abs(tc.mle_intrinsic_dimension(x, 10) - m) <= DIM_RTOL * m
    assert abs(tc.twonn_intrinsic_dimension(x) - m) <= DIM_RTOL * m


def test_mle_by_k_matches_single_k_and_subsampling():
    x = _sphere(np.random.default_rng(5), N_POINTS, 3, AMBIENT)
    by_k = tc.mle_intrinsic_dimension_by_k(x, [5, 10])
    np.testing.assert_allclose(by_k[1], tc.mle_intrinsic_dimension(x, 10), rtol=1e-12)
    assert abs(by_k[0] - 3) <= DIM_RTOL * 3
    sub = tc.mle_intrinsic_dimension(x, 10, num_queries=500, key=jax.random.PRNGKey(1))
    assert abs(sub - 3) <= DIM_RTOL * 3


# ---------------------------------------------------------------------- resolution


def test_evt_recovers_the_tail_index_of_inverse_distances():
    # Points uniform in a 2-d square: P(‖x_i − x_j‖ < r) ∝ r² near 0, so Z = 1/distance has a
    # Pareto tail with extreme-value index γ = 1/2. The moment estimator's standard error is
    # ≈ sqrt(1 + γ²)/sqrt(k) = 0.035 at k = 1000; tolerance 0.15 (≈ 4σ).
    rng = np.random.default_rng(7)
    x = np.zeros((N_POINTS, AMBIENT), np.float32)
    x[:, :2] = rng.uniform(size=(N_POINTS, 2))
    y = rng.integers(0, 2, N_POINTS)
    est = tc.evt_resolution(x, y, num_pairs=EVT_PAIRS, k=1000, key=jax.random.PRNGKey(7))
    assert abs(est.gamma - 0.5) < 0.15
    # Extrapolating from ~5e5 sampled pairs to all ~2e6 can only lower the minimum.
    assert 0 < est.delta <= est.sample_min
    assert est.sample_min >= tc.sample_resolution(x, y)
    # A uniform ordered pair differs in label with p = 1 − Σ π_c²; binomial σ ≈ 5e-4.
    p_differ = 1 - np.sum((np.bincount(y) / N_POINTS) ** 2)
    assert abs(est.num_pairs / EVT_PAIRS - p_differ) < 0.003


def test_task_complexity_combines_the_estimates():
    rng = np.random.default_rng(6)
    x = 2.0 * _sphere(rng, N_POINTS, 2, AMBIENT)  # radius 2
    y = (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 0)  # 4 classes
    est = tc.task_complexity(x, y, 0.01, k=10)
    assert est.n == N_POINTS and est.num_classes == 4 and est.dimension == 2
    np.testing.assert_allclose(est.radius, 2.0, rtol=1e-5)
    np.testing.assert_allclose(est.delta, tc.sample_resolution(x, y), rtol=1e-12)
    ref = tc.inductive_bias_complexity(N_POINTS, 2, est.radius, est.delta, 4, 0.01)
    np.testing.assert_allclose(est.bits, ref.bits, rtol=1e-12)
    given = tc.task_complexity(x, y, 0.01, m=3, delta=0.5)
    np.testing.assert_allclose(
        given.bits,
        tc.inductive_bias_complexity(N_POINTS, 3, est.radius, 0.5, 4, 0.01).bits,
        rtol=1e-12,
    )


def test_sweep_replaces_one_parameter():
    t = tc.sweep(tc.IMAGENET, "m", [40, 48])
    np.testing.assert_allclose(t.bits[1], tc.IMAGENET.ibc().bits, rtol=1e-12)
    with pytest.raises(ValueError, match="parameter"):
        tc.sweep(tc.IMAGENET, "colour", [1])
