"""Tests of theory.attention.random_features (FAVOR+) and theory.attention.fft (RPE by FFT).

References computed here, independently of the library: exact softmax attention with
`jax.nn.softmax`, plain kernelized attention φ(Q)(φ(K)ᵀV)/φ(Q)(φ(K)ᵀ1) and the relative-position
sums in numpy (a double loop over (i, j) for the index convention). Inputs are numpy arrays,
which JAX converts in the dtype given, so that no compilation is spent on drawing them.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from theory.attention.fft import (
    fft_length,
    rpe_kernelized_attention,
    rpe_kernelized_attention_direct,
)
from theory.attention.random_features import (
    performer_attention,
    performer_features,
    random_feature_matrix,
)


def elu1(x):
    return jax.nn.elu(x) + 1


def elu1_np(x):
    return np.where(x > 0, x + 1, np.exp(np.minimum(x, 0)))


def _qkv(seed, n, d, d_v, n_k=None, batch=(), dtype=np.float64, amp=1.0):
    rng = np.random.default_rng(seed)
    n_k = n if n_k is None else n_k
    q = amp * rng.standard_normal((*batch, n, d))
    k = amp * rng.standard_normal((*batch, n_k, d))
    v = rng.standard_normal((*batch, n_k, d_v))
    return q.astype(dtype), k.astype(dtype), v.astype(dtype)


def _rpe(seed, n, spread=1.0, batch=(), dtype=np.float64):
    """Positive weights c_r = exp(spread · N(0, 1)), shape (*batch, 2n − 1)."""
    g = np.random.default_rng(seed).standard_normal((*batch, 2 * n - 1))
    return np.exp(spread * g).astype(dtype)


def _softmax_attention(q, k, v, scale):
    return np.asarray(jax.nn.softmax(scale * (q @ k.T), axis=-1) @ v)


def _linear_attention(pq, pk, v):
    return (pq @ (pk.T @ v)) / (pq @ pk.sum(0))[:, None]


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# ------------------------------------------------------------------------------------ FFT


def _smooth(j):
    for p in (2, 3, 5):
        while j % p == 0:
            j //= p
    return j == 1


def test_fft_length():
    """The shortest 5-smooth length without aliasing: L ≥ 2n − 1, nothing smooth in between."""
    for n in (1, 2, 3, 5, 8, 100, 1000, 4097):
        L = fft_length(n)
        assert L >= 2 * n - 1 and _smooth(L)
        assert not any(_smooth(j) for j in range(2 * n - 1, L))


def test_direct_matches_double_loop():
    """The index convention: rpe[i − j + n − 1] = c_{i−j} weighs query i against key j."""
    n, d, d_v = 6, 3, 2
    q, k, v = _qkv(0, n, d, d_v)
    c = _rpe(1, n, spread=1.5)
    with jax.enable_x64(True):
        z = np.asarray(rpe_kernelized_attention_direct(q, k, v, c, elu1))
    pq, pk = elu1_np(q), elu1_np(k)
    ref = np.zeros((n, d_v))
    for i in range(n):
        w = np.array([c[i - j + n - 1] * (pq[i] @ pk[j]) for j in range(n)])
        ref[i] = w @ v / w.sum()
    # float64, n = 6: a handful of roundings (FFT = direct: test_fft_equals_direct_float64)
    np.testing.assert_allclose(z, ref, rtol=1e-13, atol=0)


@pytest.mark.parametrize("n", [1, 2, 131])
def test_fft_equals_direct_float64(n):
    q, k, v = _qkv(n, n, 5, 3)
    c = _rpe(n + 1, n, spread=2.0)  # weights over ~e^±6: a wide range
    with jax.enable_x64(True):
        w = random_feature_matrix(jax.random.key(n + 2), 42, 5)
        maps = [elu1] + [functools.partial(performer_features, w=w, scale=1 / 5)] * (n > 2)
        for fm in maps:
            fast = rpe_kernelized_attention(q, k, v, c, fm)
            ref = rpe_kernelized_attention_direct(q, k, v, c, fm)
            assert fast.dtype == jnp.float64 and fast.shape == (n, 3)
            # FFT rounding ε·log₂L·‖c‖₂‖a‖₂ / denominator ≈ 1e-16 · 10 · (≲ 1e3); measured 1e-15
            assert _rel(fast, ref) < 1e-10


def test_fft_equals_direct_float32():
    n = 257
    q, k, v = _qkv(5, n, 8, 4, dtype=np.float32)
    c = _rpe(6, n, spread=1.0, dtype=np.float32)
    fast = rpe_kernelized_attention(q, k, v, c, elu1)
    ref = rpe_kernelized_attention_direct(q, k, v, c, elu1)
    assert fast.dtype == jnp.float32
    # ε = 1.2e-7, log₂L = 9, ‖c‖₂‖a‖₂/denominator ≈ a few: bound ~1e-5 (measured ~3e-7)
    assert _rel(fast, ref) < 2e-5


def test_fft_batched_and_per_head_rpe():
    """Leading axes (batch, heads) with one rpe per head equal the per-slice 2-D results."""
    n = 20
    q, k, v = _qkv(7, n, 4, 3, batch=(2, 3))
    c = _rpe(8, n, batch=(3,))
    with jax.enable_x64(True):
        z = np.asarray(rpe_kernelized_attention(q, k, v, c, elu1))
    assert z.shape == (2, 3, n, 3)
    for b in range(2):
        for h in range(3):
            qq, kk, vv = q[b, h], k[b, h], v[b, h]
            idx = np.arange(n)[:, None] - np.arange(n)[None, :] + n - 1
            a = c[h][idx] * (elu1_np(qq) @ elu1_np(kk).T)
            assert _rel(z[b, h], (a @ vv) / a.sum(1)[:, None]) < 1e-12


def test_rpe_ones_is_plain_kernelized_attention():
    n = 131  # the shapes of test_fft_equals_direct_float64[131]: no new compilation
    q, k, v = _qkv(9, n, 5, 3)
    ref = _linear_attention(elu1_np(q), elu1_np(k), v)
    ones = np.ones(2 * n - 1)
    with jax.enable_x64(True):
        for f in (rpe_kernelized_attention, rpe_kernelized_attention_direct):
            assert _rel(f(q, k, v, ones, elu1), ref) < 1e-12  # float64, positive sums
        # a constant c cancels: any multiple of the ones vector gives the same
        assert _rel(rpe_kernelized_attention(q, k, v, 7.5 * ones, elu1), ref) < 1e-12


def test_rpe_with_performer_features_approximates_rpe_softmax():
    """FFT route + positive random features ≈ Σ_j c_{i−j} exp(s q·k) v_j / Σ_j (Luo et al.)."""
    n, d, m = 24, 4, 4096
    q, k, v = _qkv(10, n, d, 2, amp=0.7)
    c = _rpe(11, n)
    s = 1 / d
    idx = np.arange(n)[:, None] - np.arange(n)[None, :] + n - 1
    a = c[idx] * np.exp(s * q @ k.T)
    ref = (a @ v) / a.sum(1)[:, None]
    with jax.enable_x64(True):
        w = random_feature_matrix(jax.random.key(12), m, d)
        fm = functools.partial(performer_features, w=w, scale=s)
        z = np.asarray(rpe_kernelized_attention(q, k, v, c, fm))
    # relative s.d. of each kernel estimate √((e^{s‖q+k‖²} − 1)/m) ≈ √(1.6/4096) = 0.02; the
    # output averages n such errors: measured 4e-3 of max|v|; 0.03 leaves a ~7x margin
    assert np.max(np.abs(z - ref)) < 0.03 * np.max(np.abs(v))


def test_rpe_gradients_match():
    n = 10
    q, k, v = _qkv(13, n, 3, 2)
    c = _rpe(14, n)

    def loss(f):
        return lambda q, k, v, c: jnp.sum(jnp.sin(f(q, k, v, c, elu1)))

    with jax.enable_x64(True):
        g_fft = jax.grad(loss(rpe_kernelized_attention), argnums=(0, 1, 2, 3))(q, k, v, c)
        g_dir = jax.grad(loss(rpe_kernelized_attention_direct), argnums=(0, 1, 2, 3))(q, k, v, c)
    for a, b in zip(g_fft, g_dir):
        assert np.all(np.isfinite(a))
        assert _rel(a, b) < 1e-9  # float64 FFT rounding as above, through the adjoint FFT


def test_rpe_under_jit():
    n = 16
    q, k, v = _qkv(15, n, 4, 3, dtype=np.float32)
    c = _rpe(16, n, dtype=np.float32)
    f = jax.jit(lambda q, k, v, c: rpe_kernelized_attention(q, k, v, c, elu1))
    assert _rel(f(q, k, v, c), rpe_kernelized_attention(q, k, v, c, elu1)) < 1e-6


def test_rpe_zero_denominator_raises():
    """relu features of all-negative queries are 0: the ratio is 0/0, never returned."""
    q, k, v = -np.ones((4, 4), np.float32), np.ones((4, 4), np.float32), np.ones((4, 2))
    for f in (rpe_kernelized_attention, rpe_kernelized_attention_direct):
        with pytest.raises(FloatingPointError, match="denominator"):
            f(q, k, v.astype(np.float32), np.ones(7, np.float32), jax.nn.relu)


# ------------------------------------------------------------------------------ Performer


def test_feature_matrix_structure():
    d, m = 5, 42  # also the W of other tests (one compilation per shape)
    with jax.enable_x64(True):
        w = np.asarray(random_feature_matrix(jax.random.key(0), m, d))
        w2 = np.asarray(random_feature_matrix(jax.random.key(0), m, d))
        w3 = random_feature_matrix(jax.random.key(0), m, d, orthogonal=False)
    assert w.dtype == np.float64 and w.shape == (m, d) and w3.shape == (m, d)
    assert np.array_equal(w, w2)  # the key determines W
    lengths = np.linalg.norm(w, axis=1)
    u = w / lengths[:, None]
    for start in range(0, m, d):  # blocks of d rows; the last truncated to m mod d = 2
        blk = u[start : start + d]
        assert np.max(np.abs(blk @ blk.T - np.eye(blk.shape[0]))) < 1e-12  # float64 QR
    assert np.std(lengths) > 0.1  # χ_d lengths, not all √d


@pytest.mark.parametrize("orthogonal", [True, False])
def test_performer_kernel_is_unbiased(orthogonal):
    """E_W[φ(q)ᵀφ(k)] = exp(s⟨q, k⟩): Monte Carlo mean over 20000 draws of W within 4 s.e."""
    d, m, draws = 4, 6, 20000
    g = np.random.default_rng(1).standard_normal((2, d))
    u = g[0] / np.linalg.norm(g[0])
    e = g[1] - (g[1] @ u) * u
    e = e / np.linalg.norm(e)
    # (q, k, s): parallel, antiparallel, orthogonal, and general at the default s = 1/d;
    # s‖q + k‖² ≤ 1.44 keeps the log-normal tails light enough for a normal-theory s.e.
    cases = [
        (0.6 * u, 0.6 * u, 1.0),
        (0.6 * u, -0.6 * u, 1.0),
        (0.6 * u, 0.6 * e, 1.0),
        (1.2 * u, 0.9 * (0.6 * u + 0.8 * e), 1 / d),
    ]
    qs = np.stack([c[0] for c in cases])
    ks = np.stack([c[1] for c in cases])
    ss = np.array([c[2] for c in cases])
    with jax.enable_x64(True):

        def one(key):
            w = random_feature_matrix(key, m, d, orthogonal=orthogonal)
            pq = performer_features(qs * np.sqrt(ss)[:, None], w)
            pk = performer_features(ks * np.sqrt(ss)[:, None], w)
            return jnp.sum(pq * pk, axis=-1)  # (cases,)

        est = np.asarray(jax.vmap(one)(jax.random.split(jax.random.key(2), draws)))
    assert np.all(est > 0)  # positive features
    mean, se = est.mean(0), est.std(0) / math.sqrt(draws)
    exact = np.exp(ss * np.sum(qs * ks, axis=1))
    # + rounding: q = −k makes every draw exactly exp(−‖q‖²) (zero variance)
    assert np.all(np.abs(mean - exact) < 4 * se + 1e-12 * exact), (mean, exact, se)


def test_performer_features_scale():
    """performer_features(x, w, scale=s) = performer_features(√s x, w)."""
    x = np.random.default_rng(3).standard_normal((5, 5))
    with jax.enable_x64(True):
        w = random_feature_matrix(jax.random.key(3), 42, 5)
        a = performer_features(x, w, scale=0.3)
        b = performer_features(math.sqrt(0.3) * x, w)
    assert a.shape == (5, 42) and _rel(a, b) < 1e-14


def test_performer_attention_is_the_feature_estimate():
    """performer_attention = φ(Q')(φ(K')ᵀV)/φ(Q')(φ(K')ᵀ1) with W = random_feature_matrix(key):
    the stabilising shifts cancel exactly (float64, 1e-12), also for a negative scale."""
    q, k, v = _qkv(3, 12, 5, 3, n_k=17)
    key = jax.random.key(4)
    with jax.enable_x64(True):
        for s, orth in ((None, True), (0.3, False), (-0.2, True)):
            sv = 1 / 5 if s is None else s
            w = random_feature_matrix(key, 42, 5, orthogonal=orth)
            root = math.sqrt(abs(sv))
            pq = np.asarray(performer_features(math.copysign(root, sv) * q, w))
            pk = np.asarray(performer_features(root * k, w))
            out = performer_attention(q, k, v, key, 42, scale=s, orthogonal=orth)
            assert out.shape == (12, 3) and _rel(out, _linear_attention(pq, pk, v)) < 1e-12


def test_performer_stabilised_in_float32():
    """Unshifted, the float32 features underflow (exponents ≈ −170 … −90) and the ratio is
    0/0; the shifted estimate is finite and equals the float64 unshifted one (same W)."""
    d, m = 4, 32
    q, k, v = _qkv(5, 10, d, 3, dtype=np.float32, amp=8.0)
    key = jax.random.key(6)
    out = performer_attention(q, k, v, key, m, scale=1.0)
    assert out.dtype == jnp.float32 and np.all(np.isfinite(out))
    w = random_feature_matrix(key, m, d, dtype=np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        naive = _linear_attention(
            np.asarray(performer_features(q, w)), np.asarray(performer_features(k, w)), v
        )
    assert not np.all(np.isfinite(naive))
    w64 = np.asarray(w, np.float64)
    with jax.enable_x64(True):
        pq = np.asarray(performer_features(q.astype(np.float64), w64))
        pk = np.asarray(performer_features(k.astype(np.float64), w64))
    # exponents ≈ 100–200 carry a float32 rounding of ≈ 200·6e-8 ≈ 1e-5 relative, times a few
    assert _rel(out, _linear_attention(pq, pk, v.astype(np.float64))) < 1e-3


def test_performer_batched_jit_grad():
    q, k, v = _qkv(7, 10, 4, 3, batch=(2,), dtype=np.float32)
    key = jax.random.key(8)
    out = performer_attention(q, k, v, key, 32)
    assert out.shape == (2, 10, 3)
    for b in range(2):  # one W for every batch element
        assert _rel(out[b], performer_attention(q[b], k[b], v[b], key, 32)) < 1e-6
    jitted = jax.jit(lambda q, k, v, key: performer_attention(q, k, v, key, 32))
    assert _rel(jitted(q, k, v, key), out) < 1e-6
    g = jax.grad(lambda q: jnp.sum(performer_attention(q, k, v, key, 32) ** 2))(q)
    assert np.all(np.isfinite(g))


def test_performer_error_falls_like_inverse_sqrt_m():
    """Mean (over 8 keys) Frobenius error against exact softmax attention at m = 64 … 4096:
    log-log slope in [−0.65, −0.35] (theory −0.5; default orthogonal features, s = 1/d).
    Measured over three disjoint sets of 8 keys: −0.45 to −0.53 (i.i.d. features the same)."""
    n, d = 32, 8
    ms = np.array([64, 512, 4096])  # 3 sizes: each is a compilation of W and of FAVOR+
    # amp 0.6: s‖q + k‖² ≈ 0.7, so the kernel estimates are not heavy-tailed and the 1/√m
    # regime starts at small m (at s‖q + k‖² ≈ 3 the fitted slope is −0.35: pre-asymptotic)
    q, k, v = _qkv(20, n, d, 4, amp=0.6)
    exact = _softmax_attention(q, k, v, 1 / d)
    errs = []
    with jax.enable_x64(True):
        for m in ms:
            outs = [performer_attention(q, k, v, jax.random.key(s), int(m)) for s in range(8)]
            errs.append(np.mean([np.linalg.norm(np.asarray(o) - exact) for o in outs]))
    slope = np.polyfit(np.log(ms), np.log(errs), 1)[0]
    assert -0.65 <= slope <= -0.35, (slope, errs)


def test_performer_converges_to_softmax():
    """m = 2¹⁶: the estimate equals exact softmax attention to the 1/√m accuracy."""
    n, d, m = 32, 8, 1 << 16
    q, k, v = _qkv(21, n, d, 4)  # s‖q + k‖² ≈ 2: relative s.d. per kernel value √(6.4/m)
    exact = _softmax_attention(q, k, v, 1 / d)
    with jax.enable_x64(True):
        out = np.asarray(performer_attention(q, k, v, jax.random.key(22), m))
    # √(6.4/65536) = 0.01 per kernel value, averaged over 32 keys in the output: measured
    # 2.5e-3 to 6.6e-3 of max|v| over 8 keys; 0.02 is 3x the worst
    assert np.max(np.abs(out - exact)) < 0.02 * np.max(np.abs(v))


# ----------------------------------------------------------------------------- bad input

_Q = np.ones((4, 4), np.float32)  # d = 4, m = 32: the shapes of the float32 tests above
_V = np.ones((4, 2), np.float32)
_C = np.ones(7, np.float32)
_KEY = jax.random.key(0)


def _with(a, idx, val):
    a = np.array(a)
    a[idx] = val
    return a


_NAN = _with(_Q, (1, 2), np.nan)
_INF = _with(_Q, (0, 0), np.inf)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(k=np.ones((4, 2))), "width"),
        (dict(v=np.ones((3, 2))), "length"),
        (dict(q=np.ones((2, 4, 4))), "batch"),
        (dict(q=np.ones(4)), "q must have shape"),
        (dict(q=_NAN), "q contains non-finite"),
        (dict(q=_INF), "q contains non-finite"),
        (dict(k=_NAN), "k contains non-finite"),
        (dict(v=np.full((4, 2), np.nan)), "v contains non-finite"),
        (dict(num_features=0), "num_features"),
        (dict(num_features=-3), "num_features"),
        (dict(num_features=2.5), "num_features"),
        (dict(num_features=True), "num_features"),
        (dict(scale=float("nan")), "scale"),
        (dict(scale="big"), "scale"),
        (dict(key=3), "key"),
        (dict(key=jax.random.split(_KEY, 2)), "key"),
    ],
)
def test_performer_bad_input(kwargs, match):
    args = dict(q=_Q, k=_Q, v=_V, key=_KEY, num_features=32) | kwargs
    with pytest.raises(ValueError, match=match):
        performer_attention(**args)


def test_performer_bad_dtype_and_features_input():
    with pytest.raises(TypeError, match="q must be float32 or float64"):
        performer_attention(_Q.astype(np.float16), _Q, _V, _KEY, 8)
    w = np.ones((5, 4), np.float32)
    with pytest.raises(ValueError, match="width"):
        performer_features(np.ones((2, 3)), w)
    with pytest.raises(ValueError, match="x contains non-finite"):
        performer_features(_NAN, w)
    with pytest.raises(ValueError, match="scale"):
        performer_features(_Q, w, scale=-1.0)
    with pytest.raises(ValueError, match="num_features"):
        random_feature_matrix(_KEY, 0, 3)
    with pytest.raises(ValueError, match="dim"):
        random_feature_matrix(_KEY, 4, 0)


@pytest.mark.parametrize("fn", [rpe_kernelized_attention, rpe_kernelized_attention_direct])
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rpe=np.ones(6)), "rpe must have length 2n - 1 = 7"),
        (dict(rpe=np.ones(8)), "rpe must have length"),
        (dict(rpe=_with(_C, 3, 0.0)), "rpe must be positive"),
        (dict(rpe=-_C), "rpe must be positive"),
        (dict(rpe=_with(_C, 0, np.nan)), "rpe contains non-finite"),
        (dict(rpe=_with(_C, 6, np.inf)), "rpe contains non-finite"),
        (dict(rpe=np.ones((5, 7))), "rpe's leading axes"),
        (dict(rpe=np.ones(())), "rpe must have shape"),
        (dict(k=np.ones((5, 4)), v=np.ones((5, 2))), "same length n"),
        (dict(k=np.ones((4, 2))), "width"),
        (dict(v=np.ones((3, 2))), "same length n"),
        (dict(q=_NAN), "q contains non-finite"),
        (dict(k=_INF), "k contains non-finite"),
        (dict(v=np.full((4, 2), np.inf)), "v contains non-finite"),
        (dict(feature_map=lambda x: x - 2), "feature_map must be non-negative"),
        (dict(feature_map=lambda x: jnp.exp(1e3 * x)), "feature_map returned non-finite"),
        (dict(feature_map=lambda x: x[..., 0]), "feature_map must map"),
        (dict(feature_map="elu"), "feature_map must be callable"),
    ],
)
def test_rpe_bad_input(fn, kwargs, match):
    args = dict(q=_Q, k=_Q, v=_V, rpe=_C, feature_map=elu1) | kwargs
    with pytest.raises(ValueError, match=match):
        fn(**args)
