"""Numerical guards: no silent NaN/inf, no 16-bit inputs, no clamped indefinite kernels, no
allocation of kernels that cannot fit (see `theory.kernels.kernel`)."""

import math
import time

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from test_stax import rel_err, relu_net, relu_reference

from theory.kernels import (
    KernelMemoryError,
    NonFiniteKernelError,
    batch,
    empirical_ntk,
    monte_carlo_kernel,
    predict,
    stax,
)
from theory.kernels.kernel import available_memory


def _x(n=5, d=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


# ------------------------------------------------------------------ float32 overflow


# the NaN case by default; the inf case (16 s: its overflow needs a larger input) is slow
@pytest.mark.parametrize(
    "depth, bad", [pytest.param(22, "inf", marks=pytest.mark.slow), (25, "NaN")]
)
def test_float32_overflow_raises_naming_x64(depth, bad):
    """ReLU, W_std = 10: the kernel grows like (W_std²/2)^depth = 50^depth, past float32's
    3.4e38 at depth 22 (inf) and into inf − inf at depth 25 (NaN): an error, not a value."""
    _, _, kernel_fn = relu_net(depth, 10.0, 0.0)
    x = _x().astype(np.float32)
    # batch shares the guard; checked once (its compilation over 4 devices is slow).
    for f in (kernel_fn, batch(kernel_fn, 2)) if depth == 22 else (kernel_fn,):
        with pytest.raises(NonFiniteKernelError, match="jax_enable_x64") as info:
            f(x)
        msg = str(info.value)
        assert "float32" in msg and "ntk:" in msg and bad in msg, msg
        assert isinstance(info.value, FloatingPointError)
        assert not np.all(np.isfinite(info.value.result.ntk))  # the values stay available


@pytest.mark.parametrize("depth", [pytest.param(22, marks=pytest.mark.slow), 25])
def test_float64_gives_the_overflowing_kernels_exactly(depth, x64):
    """The same networks in float64: finite (~1e44 and ~1e50) and equal to the independent
    numpy recursion to 1e-10 (float64 roundoff through depth ~25 layers)."""
    x1, x2 = _x(6, 4, 1), _x(5, 4, 2)
    k = relu_net(depth, 10.0, 0.0)[2](x1, x2)
    ref_nngp, ref_ntk = relu_reference(x1, x2, depth, 10.0, 0.0)
    assert np.max(np.abs(ref_ntk)) > 1e40  # beyond float32
    assert rel_err(k.nngp, ref_nngp) < 1e-10 and rel_err(k.ntk, ref_ntk) < 1e-10


def test_huge_float32_inputs_explain_the_input_scale(x64):
    """|x| = 1e20: the input kernel x·xᵀ/d ≈ 1e40 already overflows float32 (all-NaN kernel
    before the guard); in float64 the same inputs are fine."""
    x = _x() * 1e20
    _, _, kernel_fn = relu_net(2, 1.0, 0.1)
    with pytest.raises(NonFiniteKernelError, match="inputs are too large") as info:
        kernel_fn(x.astype(np.float32))
    assert "jax_enable_x64" in str(info.value) and "max |x| = " in str(info.value)
    k = kernel_fn(x)
    assert np.all(np.isfinite(k.nngp)) and np.all(np.isfinite(k.ntk))


def test_exp_with_large_variance_is_reported_with_its_dual(x64):
    """Exp's dual a²·exp(b²(q11+q22)/2 + b²q12) overflows float32 once 2q > 88.7: with
    W_std = 5 the pre-activation variances reach 25·‖x‖²/d ≈ 50. In float64 a variance of
    900·‖x‖²/d passes 709.8/2 too, and the message then does not recommend float64."""
    x = _x(5, 4, 3)
    _, _, kernel_fn = stax.serial(stax.Dense(8, W_std=5.0), stax.Exp(), stax.Dense(1))
    with pytest.raises(NonFiniteKernelError, match=r"Exp\(1.0, 1.0\) is in the network") as info:
        kernel_fn(x.astype(np.float32))
    assert "88.7" in str(info.value) and "jax_enable_x64" in str(info.value)
    assert np.all(np.isfinite(kernel_fn(x).nngp))  # float64 holds these
    _, _, kernel_fn = stax.serial(stax.Dense(8, W_std=30.0), stax.Exp(), stax.Dense(1))
    with pytest.raises(NonFiniteKernelError, match="float64 overflowed too") as info:
        kernel_fn(x)
    assert "709.8" in str(info.value) and "jax_enable_x64" not in str(info.value)


@pytest.mark.slow  # 18 s; the kernel functions' overflow checks stay in the default suite
def test_finite_networks_overflowing_float32_raise_too():
    """empirical_ntk and monte_carlo_kernel follow the same rule: Θ̂ of a depth-12,
    W_std = 100 network is ~(100²/2)^12 ≈ 2e44 > float32's range."""
    init_fn, apply_fn, _ = relu_net(12, 100.0, 0.0, out=16)
    x = _x().astype(np.float32)
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(NonFiniteKernelError, match="empirical_ntk.*jax_enable_x64"):
        empirical_ntk(apply_fn, params, x)
    with pytest.raises(NonFiniteKernelError, match="monte_carlo_kernel.*jax_enable_x64"):
        monte_carlo_kernel(init_fn, apply_fn, jax.random.PRNGKey(0), x, n_samples=2)


# ------------------------------------------------------------------ 16-bit inputs


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_16_bit_inputs_are_refused_by_every_kernel_function(dtype):
    name = np.dtype(dtype).name
    init_fn, apply_fn, kernel_fn = relu_net(2, 1.4, 0.1, out=8)
    x = _x()
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    calls = {
        "x1": [
            lambda: kernel_fn(x.astype(dtype)),
            lambda: batch(kernel_fn, 2)(x.astype(dtype)),
            lambda: empirical_ntk(apply_fn, params, x.astype(dtype)),
            lambda: monte_carlo_kernel(init_fn, apply_fn, jax.random.PRNGKey(0), x.astype(dtype)),
        ],
        "x2": [lambda: kernel_fn(x, x.astype(dtype))],
        r"params\[0\]\[0\]": [  # the leaf named by its pytree path
            lambda: empirical_ntk(
                apply_fn, jax.tree_util.tree_map(lambda p: p.astype(dtype), params), x
            )
        ],
        "k_train_train": [
            lambda: predict.gradient_descent_mse(np.eye(3, dtype=dtype), np.ones((3, 1)))
        ],
    }
    for arg, fns in calls.items():
        for f in fns:
            with pytest.raises(TypeError, match=f"{arg} has dtype {name}.*float32 or float64"):
                f()


# ------------------------------------------------------------------ indefinite kernels


def test_gradient_descent_on_an_indefinite_kernel_raises():
    """λ = (2, 1, −0.1): along the last eigenvector the residual grows like e^{0.1 t/|Y|},
    which clamping λ to 0 used to hide. diag_reg ≥ 0.1 (absolute) shifts it back to PSD."""
    q, _ = np.linalg.qr(np.random.default_rng(4).standard_normal((3, 3)))
    k = q @ np.diag([2.0, 1.0, -0.1]) @ q.T
    k = (k + k.T) / 2
    y = np.ones((3, 1))
    with pytest.raises(ValueError, match="k_train_train.*indefinite.*diverges"):
        predict.gradient_descent_mse(k, y)
    with pytest.raises(ValueError, match="indefinite"):
        predict.principal_component_decay(k, y, np.array([1.0]))
    fx = predict.gradient_descent_mse(k, y, diag_reg=0.2, diag_reg_absolute_scale=True)(1.0)
    assert np.all(np.isfinite(fx))


def test_roundoff_negative_eigenvalues_are_accepted(x64):
    """A rank-1 PSD kernel in float32 has eigenvalues ±O(ε·‖K‖) below zero: within the
    N·ε tolerance, so no error, and the flow still converges on the range of K."""
    v = np.linspace(1.0, 2.0, 50)
    k = np.outer(v, v).astype(np.float32)
    lam = np.asarray(jnp.linalg.eigvalsh(jnp.asarray(k)))  # float32, as predict computes it
    assert -50 * np.finfo(np.float32).eps * lam[-1] < lam[0] < 0  # roundoff negatives
    y = (3 * v)[:, None].astype(np.float32)  # in the range of K
    fx = predict.gradient_descent_mse(k, y)(None)
    np.testing.assert_allclose(fx, y, rtol=1e-4)


# ------------------------------------------------------------------ memory


def test_kernel_too_large_for_memory_is_refused_before_allocating():
    """N = 100 000 asks for 40 GB per float32 kernel (80 GB with the NTK). The refusal must
    come before any allocation or compilation: seconds, not the minutes an 80 GB allocation
    and a 10¹⁰-entry kernel would take (10 s leaves room for a loaded CI runner compiling the
    input checks). N grows past 100 000 on a machine that would have the memory."""
    free = available_memory()
    assert free is not None and free > 0
    n = max(100_000, 2 * math.isqrt(free // 4) + 1)
    x = np.random.default_rng(5).standard_normal((n, 2)).astype(np.float32)
    _, _, kernel_fn = relu_net(2, 1.4, 0.1)
    for f in (kernel_fn, batch(kernel_fn, 1000)):
        start = time.perf_counter()
        with pytest.raises(KernelMemoryError, match=r"needs at least \d+\.\d GB") as info:
            f(x)
        assert time.perf_counter() - start < 10.0
        msg = str(info.value)
        assert "shard_output=True" in msg and "kernel_to_disk(kernel_fn, x1, x2, path)" in msg
    init_fn, apply_fn, _ = relu_net(1, 1.0, 0.0, out=4)
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(KernelMemoryError, match="empirical_ntk"):
        empirical_ntk(apply_fn, params, x)


def test_memory_estimate_counts_host_devices_and_lets_small_kernels_through(monkeypatch):
    """4 host devices (conftest) each hold a full buffer in `batch`; and kernels under the
    check's floor never look at the available memory at all."""
    from theory.kernels import kernel as kernel_mod

    monkeypatch.setattr(kernel_mod, "available_memory", lambda device=None: 100 * 2**20)
    _, _, kernel_fn = relu_net(1, 1.0, 0.0)
    x = np.random.default_rng(6).standard_normal((3000, 2)).astype(np.float32)
    # 3000² × 4 bytes = 36 MB per kernel: 72 MB fits in 105 MB on one device ...
    assert kernel_fn(x).nngp.shape == (3000, 3000)
    with pytest.raises(KernelMemoryError, match="x 4 host devices"):
        batch(kernel_fn, 500)(x)  # ... but not 4 × 72 MB
    monkeypatch.setattr(kernel_mod, "available_memory", lambda device=None: 0)
    assert jnp.shape(kernel_fn(x[:100], get="nngp")) == (100, 100)  # 40 kB: not checked
