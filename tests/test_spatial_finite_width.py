"""Finite CNNs converge to their infinite-width kernels like 1/width.

For a network of width n (channels), the empirical NTK Θ̂ of one random initialization is
Θ∞ + O(1/√n) fluctuations + O(1/n) bias (Hanin & Nica 2020; Roberts, Yaida & Hanin 2022,
ch. 8–11), so the mean squared deviation E|Θ̂ − Θ∞|² = C/n + O(1/n²): n·MSE tends to a
constant. Here a CNN with pooling (Conv SAME, ReLU, Conv, ReLU, GlobalAvgPool, Dense; its
kernel needs the full spatial covariance), NHWC inputs through `empirical_ntk` and
`monte_carlo_kernel` (which take any input shape), widths 32, 128 and 512.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from theory.kernels import empirical_ntk, monte_carlo_kernel, stax


def net(width):
    return stax.serial(
        stax.Conv(width, (3, 3), padding="SAME", W_std=1.4, b_std=0.1),
        stax.Relu(),
        stax.Conv(width, (2, 2), W_std=1.4, b_std=0.1),
        stax.Relu(),
        stax.GlobalAvgPool(),
        stax.Dense(1, W_std=1.4, b_std=0.1),
    )


def data():
    return jnp.asarray(np.random.default_rng(5).standard_normal((3, 5, 4, 2)))


@pytest.mark.slow
def test_empirical_ntk_of_cnns_converges_like_one_over_width(x64):
    """The slope of log MSE against log width is −1: fitted over widths 32, 128, 512 with 24
    networks each, the MSE's relative standard error is about √(2/24) ≈ 0.3 per width (a sum
    of squared roughly Gaussian deviations over 6 entries, which helps), so the slope's error
    over log-width span ln 16 is about 0.3·√2/ln 16 ≈ 0.15; accepted within ±0.4 (2.7 s.e.).
    n·MSE must also be the same within a factor 2 at the two largest widths."""
    x = data()
    exact = np.asarray(net(8)[2](x, get="ntk"))  # the kernel does not depend on the width
    widths, mse = [32, 128, 512], []
    for width in widths:
        init_fn, apply_fn, _ = net(width)
        errs = []
        for key in jax.random.split(jax.random.key(width), 24):
            _, params = init_fn(key, x.shape)
            theta = np.asarray(empirical_ntk(apply_fn, params, x))
            errs.append(np.mean((theta - exact) ** 2))
        mse.append(np.mean(errs))
    slope = np.polyfit(np.log(widths), np.log(mse), 1)[0]
    assert -1.4 < slope < -0.6, (slope, mse)
    scaled = np.asarray(widths) * np.asarray(mse)
    assert 0.5 < scaled[2] / scaled[1] < 2.0, scaled


@pytest.mark.slow
def test_monte_carlo_kernel_of_a_cnn_matches_the_nngp(x64):
    """monte_carlo_kernel on NHWC inputs: the mean of f f' over 256 networks of width 64 is the
    NNGP within 4 standard errors (estimated from two independent halves of the draws,
    bias O(1/64) ≈ 2 % of K, smaller than the tolerance: 4 s.e. ≈ 4·√(2/256) ≈ 35 %)."""
    x = data()
    init_fn, apply_fn, kernel_fn = net(64)
    exact = np.asarray(kernel_fn(x, get="nngp"))
    halves = [
        np.asarray(monte_carlo_kernel(init_fn, apply_fn, key, x, n_samples=128, get="nngp"))
        for key in jax.random.split(jax.random.key(0), 2)
    ]
    mean = (halves[0] + halves[1]) / 2
    # the s.e. of a mean of 256 products f_i f_j: √((K_ii K_jj + K_ij²)/256) for Gaussian f
    diag = np.diag(exact)
    se = np.sqrt((np.outer(diag, diag) + exact**2) / 256)
    assert np.all(np.abs(mean - exact) <= 4 * se), (mean, exact, se)
