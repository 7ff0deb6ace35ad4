"""theory.information: the Tishby data set and the four MI estimators against exact values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from theory.information import (
    ANTIPODES,
    NEIGHBOURS,
    adaptive_binned_mi,
    adaptive_kde_mi,
    binned_mi,
    fixed_width_edges,
    icosahedron_edges,
    kde_mi,
    range_edges,
    tishby_dataset,
    tishby_edges,
)

H_Y = 0.999157  # bits, 2118 positives of 4096 (issue 10)
TOL = 1e-6  # bits: the exact values are quoted to 6 decimals


@pytest.fixture(scope="module")
def data():
    x, y = tishby_dataset()
    return x.astype(np.float32), y


def entropy_bits(counts):
    p = np.asarray(counts, np.float64) / np.sum(counts)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def np_binned_reference(codes, y):
    """Plug-in (H(T), I(T;Y)) from integer codes by np.unique over rows, in float64."""
    _, c_t = np.unique(codes, axis=0, return_counts=True)
    _, c_ty = np.unique(np.column_stack([codes, y]), axis=0, return_counts=True)
    h_t = entropy_bits(c_t)
    return h_t, h_t + entropy_bits(np.bincount(y)) - entropy_bits(c_ty)


# ---------------------------------------------------------------------------------- data set


def test_dataset_shape_labels_and_entropy():
    x, y = tishby_dataset()
    assert x.shape == (4096, 12) and y.shape == (4096,)
    assert set(np.unique(x)) == {0, 1} and set(np.unique(y)) == {0, 1}
    # Row i is i in binary, most significant bit first.
    assert np.array_equal(x @ (2 ** np.arange(11, -1, -1)), np.arange(4096))
    assert int(y.sum()) == 2118
    assert entropy_bits(np.bincount(y)) == pytest.approx(H_Y, abs=TOL)


def test_icosahedron_structure():
    for i, nb in NEIGHBOURS.items():
        assert len(set(nb)) == 5 and i not in nb
        for j in nb:
            assert i in NEIGHBOURS[j], f"adjacency not symmetric at ({i}, {j})"
    assert len(icosahedron_edges()) == 30
    assert sorted(v for pair in ANTIPODES for v in pair) == list(range(12))
    for a, b in ANTIPODES:
        assert b not in NEIGHBOURS[a]
        # On an icosahedron a vertex's antipode is the one vertex at graph distance 3.
        second = set().union(*(NEIGHBOURS[j] for j in NEIGHBOURS[a]))
        assert b not in second


# ---------------------------------------------------------------------------------- binning


def test_binned_exact_values(data):
    x, y = data
    i_xt, i_ty = binned_mi(x, y, tishby_edges())
    assert float(i_xt) == pytest.approx(12.0, abs=TOL)
    assert float(i_ty) == pytest.approx(H_Y, abs=TOL)

    k = x.sum(axis=1, keepdims=True)
    i_xt, i_ty = binned_mi(k, y, range_edges(k, 12))  # edges at the integers 0..12
    assert float(i_xt) == pytest.approx(2.838529, abs=TOL)
    assert float(i_ty) == pytest.approx(0.627641, abs=TOL)

    i_xt, i_ty = binned_mi(x[:, :1], y, [0.5])
    assert float(i_xt) == pytest.approx(1.0, abs=TOL)
    assert float(i_ty) == pytest.approx(0.033906, abs=TOL)


@pytest.mark.parametrize("edges_kind", ["tishby", "saxe", "range"])
def test_binned_matches_numpy_digitize_and_unique(data, edges_kind):
    _, y = data
    rng = np.random.default_rng(0)
    # Values beyond [-1, 1] exercise the two outer bins of np.digitize.
    t = (1.3 * np.tanh(rng.normal(size=(4096, 5)))).astype(np.float32)
    edges = {
        "tishby": tishby_edges(),
        "saxe": fixed_width_edges(t, 0.07),
        "range": range_edges(t, 30),
    }[edges_kind]
    ref = np_binned_reference(np.digitize(t, edges), y)
    got = binned_mi(t, y, edges)
    np.testing.assert_allclose([float(g) for g in got], ref, rtol=0, atol=1e-9)
    assert 0 < float(got[1]) < float(got[0]) <= 12.0


def test_fixed_width_edges_anchor_at_zero():
    e = fixed_width_edges(np.array([0.0, 0.3]), 0.07)
    np.testing.assert_allclose(e[:2], [0.0, 0.07])
    assert e[-1] > 0.3 and np.allclose(np.diff(e), 0.07)


# ------------------------------------------------------------------------------------ EBAB


def np_ebab_codes(t, n_bins):
    vals = np.unique(t[t != 0])
    m = len(vals)
    inner = vals[np.clip((np.arange(1, n_bins) * m) // n_bins, 0, m - 1)]
    return np.where(t == 0, 0, 1 + np.digitize(t, inner))


def test_adaptive_binned_exact_values(data):
    x, y = data
    i_xt, i_ty = adaptive_binned_mi(x, y)
    assert (float(i_xt), float(i_ty)) == pytest.approx((12.0, H_Y), abs=TOL)
    i_xt, i_ty = adaptive_binned_mi(x.sum(axis=1, keepdims=True), y)
    assert (float(i_xt), float(i_ty)) == pytest.approx((2.838529, 0.627641), abs=TOL)


def test_adaptive_binned_matches_reference_and_is_monotone_invariant(data):
    _, y = data
    rng = np.random.default_rng(1)
    t = np.maximum(rng.normal(size=(4096, 4)), 0).astype(np.float32)  # ReLU: ~half exact zeros
    got = adaptive_binned_mi(t, y, n_bins=8)
    ref = np_binned_reference(np_ebab_codes(t, 8), y)
    np.testing.assert_allclose([float(g) for g in got], ref, rtol=0, atol=1e-9)
    # Equal-count bins of distinct values depend only on the order of the values.
    cubed = adaptive_binned_mi(t**3, y, n_bins=8)
    np.testing.assert_array_equal(np.asarray(cubed), np.asarray(got))


def test_adaptive_binned_relu_zeros_get_their_own_bin(data):
    _, y = data
    # One bin for all non-zero values: the pattern is exactly "which units are zero".
    rng = np.random.default_rng(2)
    t = np.where(rng.random((4096, 1)) < 0.25, 0.0, rng.random((4096, 1)) + 1e-3)
    i_xt, _ = adaptive_binned_mi(t.astype(np.float32), y, n_bins=1)
    assert float(i_xt) == pytest.approx(entropy_bits(np.bincount((t[:, 0] == 0).astype(int))))


# ------------------------------------------------------------------------------------- KDE


def np_kde_reference(t, y, var):
    """(upper I(X;T), upper I(T;Y), lower I(X;T), lower I(T;Y)) in bits, float64 brute force."""
    d2 = ((t[:, None, :] - t[None, :, :]) ** 2).sum(-1).astype(np.float64)
    out = []
    for c in (2.0, 8.0):
        k = np.exp(-d2 / (c * var))
        i_xt = -np.mean(np.log(k.mean(1)))
        h_cond = sum(
            np.mean(y == v) * -np.mean(np.log(k[np.ix_(y == v, y == v)].mean(1)))
            for v in np.unique(y)
        )
        out += [i_xt / math.log(2), (i_xt - h_cond) / math.log(2)]
    return out[0], out[1], out[2], out[3]


def test_kde_matches_brute_force():
    rng = np.random.default_rng(3)
    t = np.tanh(rng.normal(size=(300, 3))).astype(np.float32)
    y = rng.integers(0, 3, 300)
    got = kde_mi(t, y, 0.05)
    # float32 Gram distances: relative error ~1e-6 on D_ij, far below 1e-4 bits after the sums.
    np.testing.assert_allclose(
        [float(g) for g in got], np_kde_reference(t, y, 0.05), rtol=0, atol=1e-4
    )
    assert float(got.lower_i_xt) <= float(got.upper_i_xt)


def test_kde_separated_points_and_clusters(data):
    x, y = data
    sep = kde_mi(100 * x, y, 0.1)  # pairwise distances ≥ 100: every kernel overlap underflows
    for i_xt, i_ty in (sep.upper, sep.lower):
        assert (float(i_xt), float(i_ty)) == pytest.approx((12.0, H_Y), abs=TOL)
    two = kde_mi(100 * x[:, :1], y, 0.1)  # two far clusters of 2048 points each
    for i_xt, i_ty in (two.upper, two.lower):
        assert (float(i_xt), float(i_ty)) == pytest.approx((1.0, 0.033906), abs=TOL)


@pytest.mark.parametrize("snr", [0.25, 4.0, 16.0])
def test_kde_bounds_on_correlated_gaussians(snr):
    """T takes N equiprobable values at the quantiles of N(0, 1); T + Z, Z ~ N(0, σ²) with
    σ² = 1/snr, is jointly Gaussian with T at ρ² = snr/(1 + snr), so the true
    I(X;T+Z) → −½ log₂(1 − ρ²) = ½ log₂(1 + snr) as N → ∞. In that limit the bounds are
    (replace the mean over j by the Gaussian integral):
        upper = ½ ln(1 + snr) + ½ ρ²,  lower = ½ ln(1 + snr/4) + ½ snr/(snr + 4)   (nats),
    and lower < true < upper. The quantile grid is deterministic (no Monte Carlo error); its
    second moment misses 1 by δ = 3.2e-4 at N = 4096, which moves the bounds by at most
    δ/(2 ln 2) = 2.3e-4 bits, so the tolerance is 1e-3 bits."""
    n = 4096
    t = norm.ppf((np.arange(n) + 0.5) / n)[:, None]
    delta = 1 - np.mean(t**2)
    assert 0 < delta < 4e-4
    est = kde_mi(t, np.zeros(n, int), 1.0 / snr)
    rho2 = snr / (1 + snr)
    true = -0.5 * math.log2(1 - rho2)
    upper = (0.5 * math.log(1 + snr) + 0.5 * rho2) / math.log(2)
    lower = (0.5 * math.log(1 + snr / 4) + 0.5 * snr / (snr + 4)) / math.log(2)
    assert float(est.upper_i_xt) == pytest.approx(upper, abs=1e-3)
    assert float(est.lower_i_xt) == pytest.approx(lower, abs=1e-3)
    assert float(est.lower_i_xt) < true < float(est.upper_i_xt)
    assert float(est.upper_i_ty) == 0.0 and float(est.lower_i_ty) == 0.0  # one class


def test_adaptive_kde_is_scale_invariant_and_matches_kde():
    rng = np.random.default_rng(4)
    t = np.maximum(rng.normal(size=(512, 4)), 0).astype(np.float32)
    y = rng.integers(0, 2, 512)
    a = adaptive_kde_mi(t, y, 0.1)
    b = kde_mi(t, y, 0.1 * float(np.abs(t).max()) ** 2)
    np.testing.assert_allclose([float(v) for v in a], [float(v) for v in b], atol=1e-6)
    c = adaptive_kde_mi(8 * t, y, 0.1)  # powers of 2 keep float32 distances exact
    np.testing.assert_allclose([float(v) for v in c], [float(v) for v in a], atol=1e-6)


# ------------------------------------------------------------------------- vectorisation


@pytest.mark.slow  # 8 s
def test_epochs_axis_equals_per_epoch_results(data):
    _, y = data
    rng = np.random.default_rng(5)
    tb = np.tanh(rng.normal(size=(3, 4096, 4)) * np.array([0.5, 2.0, 8.0])[:, None, None])
    tb = tb.astype(np.float32)
    for fn in (
        lambda t: binned_mi(t, y, tishby_edges()),
        lambda t: adaptive_binned_mi(t, y, 10),
    ):
        batched = np.asarray(fn(tb))
        assert batched.shape == (2, 3)
        for e in range(3):
            np.testing.assert_array_equal(batched[:, e], np.asarray(fn(tb[e])))
    small = tb[:, :512]
    ys = y[:512]
    for fn in (lambda t: kde_mi(t, ys, 0.1), lambda t: adaptive_kde_mi(t, ys, 0.1)):
        batched = np.asarray(fn(small))
        assert batched.shape == (4, 3)
        for e in range(3):
            np.testing.assert_array_equal(batched[:, e], np.asarray(fn(small[e])))


def test_estimators_run_inside_jit(data):
    x, y = data
    t = np.tanh(3 * x[:, :6] - 1.5 + 0.1 * x[:, 6:]).astype(np.float32)
    for fn in (
        lambda a: binned_mi(a, y, tishby_edges()),
        lambda a: adaptive_binned_mi(a, y),
        lambda a: kde_mi(a[:512], y[:512], 0.1),
    ):
        np.testing.assert_allclose(
            np.asarray(jax.jit(fn)(jnp.asarray(t))), np.asarray(fn(t)), rtol=0, atol=1e-9
        )


# ------------------------------------------------------------------------------ bad input


def test_bad_input_names_the_argument(data):
    x, y = data
    with pytest.raises(ValueError, match="t and y"):
        binned_mi(x[:-1], y, tishby_edges())
    with pytest.raises(ValueError, match="t and y"):
        kde_mi(x, y[:-1], 0.1)
    bad = x.copy()
    bad[3, 2] = np.nan
    for call in (
        lambda: binned_mi(bad, y, tishby_edges()),
        lambda: adaptive_binned_mi(bad, y),
        lambda: kde_mi(bad, y, 0.1),
        lambda: adaptive_kde_mi(bad, y, 0.1),
    ):
        with pytest.raises(ValueError, match="t contains NaN"):
            call()
    with pytest.raises(ValueError, match="edges must be strictly increasing"):
        binned_mi(x, y, [0.0, 0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match="edges must be strictly increasing"):
        binned_mi(x, y, [1.0, 0.0])
    for v in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="noise_var must be a positive"):
            kde_mi(x, y, v)
    with pytest.raises(ValueError, match="scale must be a positive"):
        adaptive_kde_mi(x, y, 0.0)
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        adaptive_binned_mi(x, y, 0)
    with pytest.raises(ValueError, match="t must have shape"):
        binned_mi(x[:, 0], y, tishby_edges())
    with pytest.raises(ValueError, match="y must have shape"):
        binned_mi(x, y[:, None], tishby_edges())
