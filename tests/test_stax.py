"""stax: API semantics, robustness where neural-tangents returns NaN, bad input, tiling."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import gauss_expectation, quad_check

from theory.kernels import batch, stax
from theory.kernels.batching import tiled_kernel
from theory.kernels.kernel import input_kernel


def relu_reference(x1, x2, depth, W_std, b_std):
    """Plain-numpy float64 ReLU NNGP/NTK recursion (NTK parameterization), an independent
    route: Cho & Saul's arc-cosine kernel with θ from arccos, Jacot et al. (2018) Thm. 1."""
    d = x1.shape[1]
    k12, k11, k22 = x1 @ x2.T / d, np.sum(x1**2, 1) / d, np.sum(x2**2, 1) / d
    ntk = np.zeros_like(k12)
    for layer in range(depth + 1):
        k12, k11, k22 = (W_std**2 * k + b_std**2 for k in (k12, k11, k22))
        ntk = k12 + W_std**2 * ntk
        if layer == depth:
            break
        norm = np.sqrt(np.outer(k11, k22))
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.where(norm > 0, np.clip(k12 / np.where(norm > 0, norm, 1), -1, 1), 0)
        theta = np.arccos(c)
        ntk = ntk * (np.pi - theta) / (2 * np.pi)
        k12 = norm / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * c)
        k11, k22 = k11 / 2, k22 / 2
    return k12, ntk


def relu_net(depth, W_std, b_std, out=64):
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(out, W_std=W_std, b_std=b_std), stax.Relu()]
    return stax.serial(*layers, stax.Dense(1, W_std=W_std, b_std=b_std))


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize(
    "depth, W_std, b_std",
    [
        (1, 1.0, 0.0),
        (5, 1.5, 0.1),
        (10, 10.0, 1.0),
        # depth 50 (7 s a case): slow; test_critical_relu_preserves_the_diagonal_at_depth_50
        # checks that depth by default
        pytest.param(50, math.sqrt(2), 0.0, marks=pytest.mark.slow),
        pytest.param(50, 3.0, 0.5, marks=pytest.mark.slow),
    ],
)
def test_relu_kernel_matches_numpy_recursion_deep_and_large_weights(depth, W_std, b_std, x64):
    """Depth 50 and W_std = 10 (neural-tangents issues #14, #197 report NaN): finite, correct."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((6, 4)), rng.standard_normal((5, 4))
    k = relu_net(depth, W_std, b_std)[2](x1, x2)
    ref_nngp, ref_ntk = relu_reference(x1, x2, depth, W_std, b_std)
    assert np.all(np.isfinite(ref_nngp)) and np.all(np.isfinite(ref_ntk))
    assert np.all(np.isfinite(k.nngp)) and np.all(np.isfinite(k.ntk))
    assert rel_err(k.nngp, ref_nngp) < 1e-10
    assert rel_err(k.ntk, ref_ntk) < 1e-10


def hand_kernel(x1, x2, layers):
    """Plain-numpy float64 NNGP/NTK of Dense/ReLU chains in both parameterizations, written
    from the papers' recursions, not from the library:

    - NTK parameterization (Jacot et al. 2018): K ← σ_w² K + σ_b², Θ ← K_new + σ_w² Θ
      (σ_b = 0 and no bias give the same kernel);
    - standard (Sohl-Dickstein et al. 2020, with neural-tangents' width multipliers s):
      Θ ← (n_in / s_in) K_old + σ_w² Θ + [1 if the layer has a bias, even with σ_b = 0],
      K ← σ_w² K + σ_b², with n_in the previous layer's width out_dim · s_out (d at the input);
    - ReLU: K ← √(K₁₁K₂₂)/(2π) (sin θ + (π − θ) cos θ), Θ ← Θ (π − θ)/(2π).

    ``layers``: ``("dense", out, W_std, b_std or None, parameterization, s)`` or ``("relu",)``.
    """
    d = x1.shape[1]
    k12, k11, k22 = x1 @ x2.T / d, np.sum(x1**2, 1) / d, np.sum(x2**2, 1) / d
    ntk, width = np.zeros_like(k12), d
    for layer in layers:
        if layer[0] == "relu":
            norm = np.sqrt(np.outer(k11, k22))
            theta = np.arccos(np.clip(k12 / norm, -1, 1))
            ntk = ntk * (np.pi - theta) / (2 * np.pi)
            k12 = norm / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))
            k11, k22 = k11 / 2, k22 / 2
            continue
        _, out, w, b, param, (s_in, s_out) = layer
        bias = 0.0 if b is None else b**2
        if param == "standard":
            ntk = (width / s_in) * k12 + w**2 * ntk + (0.0 if b is None else 1.0)
            width = out * s_out
        k12, k11, k22 = (w**2 * k + bias for k in (k12, k11, k22))
        if param == "ntk":
            ntk = k12 + w**2 * ntk
            width = out
    return k12, ntk


def _dense_relu_chain(depth, b_std, param, multipliers):
    """Spec for `hand_kernel` and the matching stax network: depth × (Dense, Relu), Dense."""
    spec, net = [], []
    for i in range(depth + 1):
        s = (multipliers[i], multipliers[i + 1])
        w = 1.2 + 0.1 * i
        spec.append(("dense", 7 + i, w, b_std, param, s))
        net.append(stax.Dense(7 + i, W_std=w, b_std=b_std, parameterization=param, s=s))
        if i < depth:
            spec.append(("relu",))
            net.append(stax.Relu())
    return spec, stax.serial(*net)


@pytest.mark.parametrize("depth", [1, pytest.param(2, marks=pytest.mark.slow), 4])
@pytest.mark.parametrize("param", ["ntk", "standard"])
@pytest.mark.parametrize("b_std", [None, 0.0, 0.3])
def test_bias_none_zero_and_positive_match_hand_recursion(depth, param, b_std, x64):
    """b_std=None (no bias) and b_std=0.0 (a bias initialised at 0, still trained) are
    different networks in the standard parameterization: each Dense adds +1 to the NTK, which
    then propagates through the later layers. In the NTK parameterization the bias enters as
    σ_b·b, so σ_b = 0 is exactly no bias. Width multipliers s (standard only) vary per layer."""
    rng = np.random.default_rng(20 + depth)
    x1, x2 = rng.standard_normal((5, 3)), rng.standard_normal((4, 3))
    mult = [1, 2, 3, 2, 1, 1][: depth + 1] + [1]  # s_in of the first layer is 1 (the input)
    spec, (_, _, kernel_fn) = _dense_relu_chain(depth, b_std, param, mult)
    k = kernel_fn(x1, x2)
    nngp, ntk = hand_kernel(x1, x2, spec)
    assert rel_err(k.nngp, nngp) < 1e-12 and rel_err(k.ntk, ntk) < 1e-12
    if b_std == 0.0:
        _, ntk_none = hand_kernel(x1, x2, _dense_relu_chain(depth, None, param, mult)[0])
        gap = np.min(ntk - ntk_none)
        # standard: at least the last layer's +1; ntk parameterization: identical.
        assert gap >= 1 - 1e-12 if param == "standard" else np.array_equal(ntk, ntk_none), gap


@pytest.mark.parametrize("param", ["ntk", "standard"])
def test_zero_bias_is_a_parameter_with_gradient_one_in_standard_parameterization(param, x64):
    """One Dense layer, the finite network: ∂f/∂b = 1 (standard) or σ_b = 0 (NTK), so
    Θ̂ = x·x'/s_in + 1 (standard; None: no +1) and σ_w² x·x'/d (NTK, with or without bias)."""
    from theory.kernels.empirical import empirical_ntk

    x = np.random.default_rng(21).standard_normal((4, 3))
    for b_std in (None, 0.0):
        init_fn, apply_fn, kernel_fn = stax.Dense(5, 1.7, b_std, parameterization=param)
        _, params = init_fn(jax.random.PRNGKey(0), x.shape)
        assert (params[1] is None) == (b_std is None)
        got = np.asarray(empirical_ntk(apply_fn, params, x))
        if param == "standard":
            want = x @ x.T + (0.0 if b_std is None else 1.0)
        else:
            want = 1.7**2 * x @ x.T / 3
        np.testing.assert_allclose(got, want, rtol=1e-12)
        np.testing.assert_allclose(kernel_fn(x, None, "ntk"), want, rtol=1e-12)


def test_critical_relu_preserves_the_diagonal_at_depth_50(x64):
    """W_std² = 2, b = 0 is ReLU's critical point: K⁽ˡ⁾(x, x) = ‖x‖²/d at every depth."""
    x = np.random.default_rng(1).standard_normal((5, 3))
    k = relu_net(50, math.sqrt(2), 0.0)[2](x, get="nngp")
    np.testing.assert_allclose(np.diag(k), 2 * np.sum(x**2, 1) / 3, rtol=1e-12)


def test_zero_inputs_give_finite_exact_kernels(x64):
    """A zero input has zero variance; without biases its kernel row is exactly 0."""
    x = np.random.default_rng(2).standard_normal((4, 3))
    x[1] = 0.0
    for net in (relu_net(3, 1.5, 0.0), stax.serial(stax.Dense(8), stax.Erf(), stax.Dense(1))):
        k = net[2](x)
        assert np.all(np.isfinite(k.nngp)) and np.all(np.isfinite(k.ntk))
        assert np.all(k.nngp[1] == 0) and np.all(k.nngp[:, 1] == 0)
    k = relu_net(3, 1.5, 0.2)[2](x)  # with biases the zero input has a nonzero kernel
    ref_nngp, ref_ntk = relu_reference(x, x, 3, 1.5, 0.2)
    assert rel_err(k.nngp, ref_nngp) < 1e-12 and rel_err(k.ntk, ref_ntk) < 1e-12


def test_duplicated_points_give_equal_rows_and_psd_kernel(x64):
    x = np.random.default_rng(3).standard_normal((6, 4))
    x[4] = x[1]
    k = relu_net(4, 1.5, 0.1)[2](x)
    for m in (k.nngp, k.ntk):
        np.testing.assert_allclose(m[4], m[1], rtol=1e-7)  # √ε-conditioned angle: 1e-8
        assert np.linalg.eigvalsh(np.asarray(m)).min() > -1e-10 * np.max(m)
    np.testing.assert_allclose(np.diag(k.nngp), k.cov1, rtol=1e-14)


def test_rectified_monomial_finite_network_is_zero_below_zero():
    x = jnp.array([-1.0, 0.0, 2.0])
    for degree, want in ((0, [0, 1, 1]), (1, [0, 0, 2]), (2, [0, 0, 4])):
        np.testing.assert_array_equal(stax.RectifiedMonomial(degree)[1]((), x), want)


def test_gaussian_with_positive_b_is_finite_below_the_bound_and_named_above_it(x64):
    """φ = a e^{b z²}, b > 0: E[φ(z)²] = a²/√(1 − 4bq) while 4bq < 1 (neural-tangents
    computes it); beyond the bound the kernel diverges and the error names the bound."""
    from theory.kernels import NonFiniteKernelError

    x = np.array([[0.6, -0.2], [0.3, 0.9]])
    _, _, kernel_fn = stax.serial(stax.Dense(1, W_std=1.0, b_std=0.0), stax.Gaussian(0.7, 0.1))
    k = kernel_fn(x, None, "nngp")
    q = np.sum(x**2, axis=1) / 2
    np.testing.assert_allclose(np.diag(k), 0.49 / np.sqrt(1 - 0.4 * q), rtol=1e-12)
    _, _, too_wide = stax.serial(stax.Dense(1, W_std=3.0), stax.Gaussian(0.7, 0.5))
    with pytest.raises(NonFiniteKernelError, match=r"4b·Var\(z\) < 1"):
        too_wide(x, None, "nngp")


def test_kernel_fn_on_a_kernel_applies_get():
    _, _, kernel_fn = relu_net(1, 1.0, 0.1)
    k0 = input_kernel(jnp.ones((3, 2)), None, True)
    assert kernel_fn(k0, get="nngp").shape == (3, 3)
    with pytest.raises(ValueError, match="x2 must be None"):
        kernel_fn(k0, jnp.ones((2, 2)))


def test_get_returns_arrays_and_named_tuples():
    x = np.random.default_rng(4).standard_normal((3, 2)).astype(np.float32)
    _, _, kernel_fn = relu_net(2, 1.0, 0.1)
    full = kernel_fn(x)
    assert isinstance(full, stax.Kernel) and full.nngp.shape == (3, 3)
    assert np.array_equal(kernel_fn(x, None, "nngp"), full.nngp)
    both = kernel_fn(x, x[:2], ("ntk", "nngp"))
    assert both._fields == ("ntk", "nngp") and both.ntk.shape == (3, 2)
    assert kernel_fn(x, get="nngp").dtype == jnp.float32
    # neural-tangents' get also names the per-point variances: cov1 is the NNGP's diagonal
    var = kernel_fn(x, x[:2], ("cov1", "cov2", "ntk"))
    assert var._fields == ("cov1", "cov2", "ntk")
    np.testing.assert_allclose(var.cov1, np.diag(full.nngp), rtol=1e-6)
    np.testing.assert_allclose(var.cov2, np.diag(full.nngp)[:2], rtol=1e-6)
    assert kernel_fn(x, None, "cov2") is None  # as neural-tangents: no second batch


def test_kernel_fn_does_not_recompile_for_new_values():
    _, _, kernel_fn = relu_net(2, 1.0, 0.1)
    rng = np.random.default_rng(5)
    for _ in range(3):
        kernel_fn(rng.standard_normal((7, 3)).astype(np.float32), get="ntk")
    assert kernel_fn._jitted._cache_size() == 1


def test_finite_network_shapes_and_parameterizations():
    init_fn, apply_fn, _ = stax.serial(
        stax.Dense(16, W_std=2.0, b_std=0.5, parameterization="standard"),
        stax.Relu(),
        stax.Dense(3, parameterization="standard"),
    )
    out_shape, params = init_fn(jax.random.PRNGKey(0), (-1, 5))
    assert out_shape == (-1, 3)
    W = params[0][0]
    assert W.shape == (5, 16) and params[0][1].shape == (1, 16) and params[2][1] is None
    # Standard parameterization: W ~ N(0, W_std²/n_in); 80 entries, std of std ~ 8%.
    assert abs(float(jnp.std(W)) / (2.0 / math.sqrt(5)) - 1) < 0.3
    y = apply_fn(params, jnp.ones((4, 5)))
    assert y.shape == (4, 3)


@pytest.mark.slow  # 14 s; test_empirical.py checks Monte Carlo against kernel_fn by default
def test_finite_network_variance_matches_nngp():
    """Monte Carlo: Var f(x) over 4096 random wide (n = 256) networks ≈ NNGP(x, x);
    standard error √(2/4096) ≈ 2.2% plus O(1/n) finite-width bias; tolerance 10%."""
    init_fn, apply_fn, kernel_fn = relu_net(2, 1.5, 0.1, out=256)
    x = np.random.default_rng(6).standard_normal((2, 3)).astype(np.float32)
    keys = jax.random.split(jax.random.PRNGKey(0), 4096)

    def sample(key):
        return apply_fn(init_fn(key, x.shape)[1], x)[:, 0]

    f = jax.lax.map(sample, keys, batch_size=256)  # (4096, 2)
    emp = np.asarray(f.T @ f / f.shape[0])
    np.testing.assert_allclose(emp, kernel_fn(x, get="nngp"), rtol=0.1)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda k: k(np.ones((3, 2)), np.ones((3, 4))), "same feature dimension"),
        (lambda k: k(np.ones(3)), "at least 2 axes"),
        (lambda k: k(np.array([[1.0, np.nan]])), "x1 contains NaN"),
        (lambda k: k(np.ones((2, 2)), np.array([[np.inf, 1.0]])), "x2 contains NaN or inf"),
        (lambda k: k(np.ones((2, 2)), get="cov"), "get must be"),
        (lambda k: k(np.ones((2, 0))), "at least one feature"),
        (lambda k: k(np.ones((0, 3))), "at least one point"),
    ],
)
def test_bad_kernel_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(relu_net(1, 1.0, 0.1)[2])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: stax.Dense(8, W_std=-1.0), "W_std must be"),
        (lambda: stax.Dense(8, b_std=-0.1), "b_std must be"),
        (lambda: stax.Dense(8, W_std=float("nan")), "W_std must be"),
        (lambda: stax.Dense(0), "out_dim must be"),
        (lambda: stax.Dense(8, parameterization="mup"), "parameterization must be"),
        (lambda: stax.Monomial(-1), "degree must be"),
        (lambda: stax.RectifiedMonomial(1.5), "degree must be"),
        (lambda: stax.Rbf(gamma=-1), "gamma must be"),
        (lambda: stax.ElementwiseNumerical(jnp.tanh, 0), "deg must be"),
        (lambda: stax.Elementwise(), "needs fn"),
        (lambda: stax.FanOut(0), "num must be"),
        (lambda: stax.serial(), "at least one layer"),
    ],
)
def test_bad_layer_arguments_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_activation_on_raw_inputs_is_rejected_like_neural_tangents():
    with pytest.raises(ValueError, match="put a Dense layer before it"):
        stax.serial(stax.Relu(), stax.Dense(1))[2](np.ones((2, 3)))
    # a network ending in branches has several outputs: a list, one kernel per branch, as in
    # neural-tangents
    x = np.ones((2, 3), np.float32)
    outs = stax.serial(stax.Dense(4), stax.FanOut(2))[2](x, None, "nngp")
    want = stax.Dense(4)[2](x, None, "nngp")
    assert isinstance(outs, list) and len(outs) == 2
    for out in outs:
        np.testing.assert_array_equal(out, want)


@pytest.mark.slow  # 14 s; by default tests/test_disk.py compares batch's mirrored tiles with
# the untiled kernel, and test_batch_over_four_devices_equals_kernel_fn below
def test_tiled_evaluation_equals_untiled_including_symmetric_mirror(x64):
    """The automatic tiling (x2 = None: only tiles i ≤ j, mirrored) gives the same kernel."""
    rng = np.random.default_rng(7)
    x1, x2 = rng.standard_normal((300, 5)), rng.standard_normal((130, 5))
    _, _, kernel_fn = stax.serial(
        stax.Dense(8, W_std=1.5, b_std=0.1), stax.Gelu(), stax.Dense(8, W_std=1.2), stax.Relu(),
        stax.Dense(1),
    )  # fmt: skip
    for y in (None, x2):
        yj = None if y is None else jnp.asarray(y)
        untiled = kernel_fn.transform(input_kernel(jnp.asarray(x1), yj, True))
        tiled = jax.jit(lambda a, b: tiled_kernel(kernel_fn.transform, a, b, True, 64))(x1, yj)
        for name in ("nngp", "ntk", "cov1"):
            assert rel_err(getattr(tiled, name), getattr(untiled, name)) < 1e-13, name
        if y is None:
            np.testing.assert_allclose(tiled.nngp, tiled.nngp.T, rtol=1e-14)


def test_batch_over_four_devices_equals_kernel_fn(x64):
    assert jax.device_count() == 4  # conftest forces 4 host devices
    rng = np.random.default_rng(8)
    x1, x2 = rng.standard_normal((37, 6)), rng.standard_normal((21, 6))
    _, _, kernel_fn = relu_net(3, 1.4, 0.1)
    batched = batch(kernel_fn, 8)
    for y in (None, x2):
        ref = kernel_fn(x1, y)
        got = batched(x1, y, ("nngp", "ntk"))
        assert rel_err(got.nngp, ref.nngp) < 1e-13 and rel_err(got.ntk, ref.ntk) < 1e-13
    assert np.asarray(batched(x1, None, "nngp")).shape == (37, 37)
    assert batch(kernel_fn, 0) is kernel_fn  # neural-tangents' convention: 0 = no batching

    # any kernel function (here a linear kernel with a per-call argument) is tiled and
    # assembled; store_on_device=False returns host arrays
    def linear(a, b, scale):
        b = a if b is None else b
        return {"k": scale * a @ b.T, "k3": jnp.einsum("id,jd->ijd", a, b)}

    whole, tiled = linear(x1, x2, 2.0), batch(linear, 5, store_on_device=False)(x1, x2, 2.0)
    assert isinstance(tiled["k"], np.ndarray)
    np.testing.assert_allclose(tiled["k"], whole["k"], rtol=1e-12)
    np.testing.assert_allclose(tiled["k3"], whole["k3"], rtol=1e-12)
    with pytest.raises(ValueError, match="batch_size must be"):
        batch(kernel_fn, -1)


def test_float32_deep_kernel_is_accurate_including_the_diagonal():
    """float32 against float64 at depth 10: the exact self-pair entries keep the NTK diagonal
    at float32 accuracy (measured 4e-7; neural-tangents' float32 diagonal is off by 6e-4,
    its arccos of a correlation 1 − O(ε)). Tolerance 1e-5: ~100 float32 ulps."""
    x = np.random.default_rng(9).standard_normal((64, 20))
    _, _, kernel_fn = relu_net(10, 1.4, 0.1)
    k32 = kernel_fn(x.astype(np.float32))
    with jax.enable_x64(True):
        k64 = kernel_fn(x.astype(np.float64))
        for name in ("nngp", "ntk"):
            a, b = np.asarray(getattr(k32, name), np.float64), np.asarray(getattr(k64, name))
            assert getattr(k32, name).dtype == jnp.float32
            assert np.max(np.abs(a - b)) / np.max(np.abs(b)) < 1e-5, name
            assert np.max(np.abs(np.diag(a) - np.diag(b)) / np.diag(b)) < 1e-5, name


@pytest.mark.parametrize(
    "layer, phi, dphi",
    [
        (stax.Tanh, np.tanh, lambda z: 1 - np.tanh(z) ** 2),
        (stax.Softplus, lambda z: np.logaddexp(0, z), lambda z: 1 / (1 + np.exp(-z))),
        (stax.Sigmoid, lambda z: 1 / (1 + np.exp(-z)),
         lambda z: np.exp(-z) / (1 + np.exp(-z)) ** 2),
        (stax.Swish, lambda z: z / (1 + np.exp(-z)),
         lambda z: 1 / (1 + np.exp(-z)) + z * np.exp(-z) / (1 + np.exp(-z)) ** 2),
    ],
)  # fmt: skip
def test_quadrature_activations_match_accurate_quadrature(layer, phi, dphi, x64):
    """Dense(W=1)–φ: NNGP = E[φ(z₁)φ(z₂)], NTK = q12·E[φ'(z₁)φ'(z₂)] (z ~ N(0, Q), Q the input
    kernel, correlation −0.37) and the diagonal E[φ(z)²], against the 200-node Gauss–Legendre
    reference of conftest. The layers use 25-node Gauss–Hermite: measured error 1e-7 of the
    Cauchy–Schwarz scale for tanh (its poles at ±iπ/2 limit the rule), 1e-13 for the others;
    tolerance 1e-6. (Monte Carlo with 2²⁰ pairs and 6 standard errors allowed ~1%.)"""
    x = np.array([[1.0, 0.5, -0.3], [0.2, -1.1, 0.8]])
    q = x @ x.T / 3
    k = stax.serial(stax.Dense(4), layer())[2](x)
    name = layer.__name__
    quad_check(phi, float(k.nngp[0, 1]), q[0, 0], q[1, 1], q[0, 1], 1e-6, f"{name} nngp")
    quad_check(dphi, float(k.ntk[0, 1] / q[0, 1]), q[0, 0], q[1, 1], q[0, 1], 1e-6, f"{name} ntk")
    for i in range(2):
        want = gauss_expectation(lambda z: phi(z) ** 2, np.ones_like, q[i, i], q[i, i], 0.0)
        assert abs(float(k.nngp[i, i]) - want) <= 1e-5 * want, (name, i)  # measured 3e-6


def test_serial_gives_each_layer_its_own_key():
    """Two Dropout layers in one serial draw independent masks (serial and parallel split the
    ``rng`` keyword per layer, as neural-tangents does); without ``rng`` train-mode Dropout
    refuses to run."""
    init_fn, apply_fn, _ = stax.serial(stax.Dropout(0.5), stax.Dropout(0.5))
    x = jnp.ones((1, 4000))
    _, params = init_fn(jax.random.key(0), x.shape)
    y = apply_fn(params, x, rng=jax.random.key(1))
    # independent masks: P(kept twice) = 1/4, values 4; shared masks would keep 1/2
    kept = float(jnp.mean(y > 0))
    assert abs(kept - 0.25) < 5 * np.sqrt(0.25 * 0.75 / 4000), kept
    with pytest.raises(Exception, match="rng"):
        apply_fn(params, x)


GAUSSIAN_SCRIPT = """
def run(nt, a):
    stax = nt.stax
    _, _, kernel_fn = stax.serial(
        stax.Dense(8, W_std=1.2, b_std=0.3), stax.Gaussian(1.3, 0.1), stax.Dense(1, W_std=0.9)
    )
    k = kernel_fn(a["x1"], a["x2"], ("nngp", "ntk"))
    s = kernel_fn(a["x1"], None, ("nngp", "ntk"))
    return {"nngp": k.nngp, "ntk": k.ntk, "nngp_self": s.nngp, "ntk_self": s.ntk}
"""


def test_gaussian_with_positive_b_matches_neural_tangents(x64, nt_oracle):
    rng = np.random.default_rng(12)
    a = {"x1": rng.standard_normal((4, 3)) / 2, "x2": rng.standard_normal((3, 3)) / 2}
    req = {"script": "nt_script.py", "source": GAUSSIAN_SCRIPT, "x64": 1}
    req.update({f"a_{k}": v for k, v in a.items()})
    ref = nt_oracle(req)
    assert "error" not in ref, str(ref.get("error"))
    scope = {"jax": jax, "jnp": jnp, "np": np}
    exec(GAUSSIAN_SCRIPT, scope)  # noqa: S102 - the script above
    import theory.kernels as ours

    got = scope["run"](ours, a)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-10, err_msg=name)


REPEAT_SCRIPT = """
def run(nt, a):
    stax = nt.stax
    layer = stax.serial(stax.Dense(6, W_std=1.4, b_std=0.1), stax.Erf())
    init_fn, apply_fn, kernel_fn = stax.serial(stax.Dense(6), stax.repeat(layer, 3), stax.Dense(2))
    k = kernel_fn(a["x1"], a["x2"], ("nngp", "ntk"))
    _, params = init_fn(jax.random.PRNGKey(4), a["x1"].shape)
    return {"nngp": k.nngp, "ntk": k.ntk, "apply": apply_fn(params, a["x1"])}
"""


def test_repeat_is_serial_in_a_loop_and_matches_neural_tangents(x64, nt_oracle):
    """stax.repeat(layer, n): neural-tangents' kernel, parameters (same key schedule) and
    outputs; and the kernel of serial(*[layer] * n) exactly."""
    rng = np.random.default_rng(13)
    a = {"x1": rng.standard_normal((4, 3)), "x2": rng.standard_normal((2, 3))}
    req = {"script": "nt_script.py", "source": REPEAT_SCRIPT, "x64": 1}
    req.update({f"a_{k}": v for k, v in a.items()})
    ref = nt_oracle(req)
    assert "error" not in ref, str(ref.get("error"))
    scope = {"jax": jax, "jnp": jnp, "np": np}
    exec(REPEAT_SCRIPT, scope)  # noqa: S102 - the script above
    import theory.kernels as ours

    with jax.threefry_partitionable(False):  # jax 0.4's random streams, as the oracle's
        got = scope["run"](ours, a)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-10, err_msg=name)
    layer = stax.serial(stax.Dense(6, W_std=1.4, b_std=0.1), stax.Erf())
    unrolled = stax.serial(*[layer] * 3)[2](a["x1"], a["x2"], "ntk")
    np.testing.assert_array_equal(stax.repeat(layer, 3)[2](a["x1"], a["x2"], "ntk"), unrolled)
    with pytest.raises(ValueError, match="keeps its input's shape"):
        stax.repeat(stax.Dense(5), 2)[0](jax.random.PRNGKey(0), (3, 4))
