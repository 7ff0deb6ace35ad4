"""Convolutional kernels (CNN-GP, CNTK, pooling) against neural-tangents 0.6.5.

Networks of `stax.Conv`, activations and per-site `Dense` layers ending in `Flatten` are
computed on the spatial diagonal, networks with pooling with the full spatial covariance;
the choice is made once per network as neural-tangents' requirements pass makes it. Float64,
NNGP and NTK, cross and self
(diagonal included): 1e-6 relative, the issue's bar (agreement is ~1e-14). Inputs have odd and
even site counts so that SAME padding is asymmetric, and a point shared by both batches.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from theory.kernels import stax
from theory.kernels.kernel import KernelMemoryError

RTOL = 1e-6


def C(out, f, pad="SAME", W=1.5, b=0.1, strides=None, p="ntk"):
    kw = {"out_chan": out, "filter_shape": list(f), "padding": pad, "W_std": W}
    kw["parameterization"] = p
    if b is not None:
        kw["b_std"] = b
    if strides is not None:
        kw["strides"] = list(strides)
    return ["Conv", kw]


def D(out=1, W=1.5, b=0.1, p="ntk"):
    kw = {"out_dim": out, "W_std": W, "parameterization": p}
    if b is not None:
        kw["b_std"] = b
    return ["Dense", kw]


RELU, FLAT, GAP = ["Relu", {}], ["Flatten", {}], ["GlobalAvgPool", {}]


def POOL(window, strides=None, pad="VALID", normalize_edges=False):
    kw = {"window_shape": list(window), "padding": pad, "normalize_edges": normalize_edges}
    if strides is not None:
        kw["strides"] = list(strides)
    return ["AvgPool", kw]


def WRN(channels, strides=(1, 1), mismatch=False):
    main = ["serial", [RELU, C(channels, (3, 3), strides=strides), RELU, C(channels, (3, 3))]]
    shortcut = C(channels, (3, 3), strides=strides) if mismatch else ["Identity", {}]
    return [["FanOut", {"num": 2}], ["parallel", [main, shortcut]], ["FanInSum", {}]]


# name: (spatial shape of the inputs, channels, spec)
ARCHS = {
    "conv2d_same_ntk": ((5, 6), 2, [C(6, (3, 3)), RELU, FLAT, D()]),
    "conv2d_valid_standard": (
        (5, 6),
        2,
        [
            C(6, (3, 2), "VALID", 1.3, 0.0, p="standard"),
            ["Erf", {}],
            C(4, (2, 2), "VALID", 1.2, None, p="standard"),
            RELU,
            FLAT,
            D(1, 1.1, None, "standard"),
        ],
    ),
    "conv_strided_same": ((5, 6), 2, [C(5, (3, 2), strides=(2, 1)), RELU, FLAT, D()]),
    "conv_strided_valid": ((5, 6), 2, [C(5, (2, 2), "VALID", strides=(2, 2)), RELU, FLAT, D()]),
    "conv1d_same": ((7,), 3, [C(4, (3,)), ["Gelu", {}], C(4, (2,)), RELU, FLAT, D()]),
    "conv3d_valid": ((3, 4, 3), 2, [C(4, (2, 2, 2), "VALID"), RELU, FLAT, D()]),
    "conv_circular": ((5, 6), 2, [C(5, (3, 3), "CIRCULAR"), RELU, FLAT, D()]),
    "conv_deep_activations": (
        (5, 6),
        2,
        [
            C(6, (3, 3)),
            RELU,
            C(6, (3, 3)),
            ["Gelu", {}],
            C(6, (2, 3), W=1.2, b=0.3),
            ["ABRelu", {"a": -0.3, "b": 1.2}],
            C(6, (3, 3)),
            ["Erf", {}],
            FLAT,
            D(),
        ],
    ),
    "conv_dense_per_site": (
        (5, 6),
        2,
        [C(6, (3, 3)), RELU, D(8, 1.3, 0.2), RELU, FLAT, D()],
    ),
    "flatten_then_dense_standard": (
        (5, 6),
        2,
        [
            C(6, (3, 3), p="standard"),
            RELU,
            FLAT,
            D(5, 1.2, 0.1, "standard"),
            RELU,
            D(1, p="standard"),
        ],
    ),
    # --- full spatial covariance (pooling): neural-tangents' requirements pass picks it too
    "conv_relu_gap": ((5, 6), 2, [C(6, (3, 3)), RELU, GAP, D()]),
    "conv_relu_global_sum_pool": ((5, 6), 2, [C(6, (3, 3)), RELU, ["GlobalSumPool", {}], D()]),
    "avgpool_valid_flatten": ((5, 6), 2, [C(6, (3, 3)), RELU, POOL([2, 2], [2, 2]), FLAT, D()]),
    "avgpool_same_normalize_edges": (
        (5, 6),
        2,
        [C(6, (3, 3)), RELU, POOL([3, 2], [2, 1], "SAME", True), FLAT, D()],
    ),
    "avgpool_same_window_norm_then_conv": (
        (5, 6),
        2,
        [C(6, (3, 3)), RELU, POOL([3, 2], [2, 1], "SAME"), C(5, (2, 2)), ["Erf", {}], FLAT, D()],
    ),
    "sumpool_circular": (
        (5, 6),
        2,
        [
            C(6, (3, 3), "CIRCULAR"),
            RELU,
            ["SumPool", {"window_shape": [2, 2], "padding": "CIRCULAR"}],
            C(4, (2, 2), "VALID"),
            RELU,
            GAP,
            D(),
        ],
    ),
    "myrtle_like_standard": (
        (5, 6),
        2,
        [
            C(6, (3, 3)),
            RELU,
            C(6, (3, 3)),
            RELU,
            POOL([2, 2], [2, 2]),
            C(6, (3, 3), p="standard"),
            RELU,
            GAP,
            D(1, p="standard"),
        ],
    ),
    # residual networks: a WideResNet block (neural-tangents' example: ReLU, Conv, ReLU, Conv
    # beside an identity or, with a channel or stride change, a Conv shortcut; FanInSum)
    "wide_resnet_blocks": (
        (5, 6),
        2,
        [C(4, (3, 3)), *WRN(4), *WRN(3, (2, 2), True), RELU, GAP, D()],
    ),
    "residual_flatten": ((5, 6), 2, [C(4, (3, 3)), *WRN(4), RELU, FLAT, D()]),
    "conv1d_pool_gap": ((7,), 3, [C(4, (3,)), RELU, POOL([2], [2]), C(3, (2,)), RELU, GAP, D()]),
    "conv3d_gap": ((3, 4, 3), 2, [C(4, (2, 2, 2), "SAME"), RELU, GAP, D()]),
}


def build(spec):
    def one(node):
        name, arg = node
        if name in ("serial", "parallel"):
            return getattr(stax, name)(*[one(c) for c in arg])
        return getattr(stax, name)(**arg)

    return stax.serial(*[one(n) for n in spec])


def inputs(sites, chan):
    rng = np.random.default_rng(7)
    x1 = rng.standard_normal((5, *sites, chan))
    x2 = rng.standard_normal((3, *sites, chan))
    x2[0] = x1[3]
    return x1, x2


# Checked by default: every padding, strides, 1–3 spatial dimensions, both
# parameterizations, diagonal and full covariance, pooling, a residual block and a Myrtle
# network. The other architectures (deeper stacks, more pools, WideResNet) are marked slow.
CORE = (
    "conv2d_same_ntk",
    "conv2d_valid_standard",
    "conv_strided_valid",
    "conv1d_same",
    "conv3d_valid",
    "conv_circular",
    "conv_relu_gap",
    "avgpool_same_normalize_edges",
    "myrtle_like_standard",
    "residual_flatten",
)


@pytest.fixture(scope="module")
def reference(nt_oracle):
    """``reference(name)``: neural-tangents' (nngp, ntk) for self and cross inputs, asked once
    per input shape and tier (default or slow), both together."""
    cache = {}

    def get(name):
        sites, chan, _ = ARCHS[name]
        group = (sites, chan, name in CORE)
        if group not in cache:
            names = [n for n, (s, c, _) in ARCHS.items() if (s, c, n in CORE) == group]
            x1, x2 = inputs(sites, chan)
            req = {"specs": [ARCHS[n][2] for n in names], "tasks": ["kernels"], "x64": 1, "jit": 1}
            cache[group] = {n: {} for n in names}
            for which, xs in (("sym", {"x1": x1}), ("cross", {"x1": x1, "x2": x2})):
                r = nt_oracle({**req, **xs})
                for i, n in enumerate(names):
                    cache[group][n][which] = (r[f"nngp_{i}"], r[f"ntk_{i}"])
        return cache[group][name]

    return get


@pytest.mark.parametrize(
    "name", [n if n in CORE else pytest.param(n, marks=pytest.mark.slow) for n in ARCHS]
)
def test_matches_neural_tangents(name, reference, x64):
    sites, chan, spec = ARCHS[name]
    x1, x2 = inputs(sites, chan)
    kernel_fn = build(spec)[2]
    for which, args in (("sym", (x1,)), ("cross", (x1, x2))):
        k = kernel_fn(*args)
        for ours, ref, what in zip((k.nngp, k.ntk), reference(name)[which], ("nngp", "ntk")):
            np.testing.assert_allclose(
                np.asarray(ours), ref, rtol=RTOL, atol=RTOL * np.abs(ref).max(),
                err_msg=f"{name} {which} {what}",
            )  # fmt: skip


def test_finite_network_shapes_follow_init(x64):
    """init_fn's output shape and apply_fn agree for every padding and stride (traced only)."""
    import jax

    for _, (sites, chan, spec) in ARCHS.items():
        init_fn, apply_fn, _ = build(spec)
        x1, _ = inputs(sites, chan)
        shape = {}

        def params_of(key, init_fn=init_fn, x1=x1, shape=shape):
            shape["out"], params = init_fn(key, x1.shape)
            return params

        params = jax.eval_shape(params_of, jax.random.key(0))
        out = jax.eval_shape(apply_fn, params, jnp.asarray(x1))
        assert out.shape == tuple(shape["out"])


def test_conv_networks_need_nhwc_inputs_and_flatten():
    net = build([C(4, (3, 3)), RELU, FLAT, D()])
    with pytest.raises(ValueError, match="must be a 4-D array .*NHWC"):
        net[2](np.ones((3, 5)))
    with pytest.raises(ValueError, match="the input to an activation must be Gaussian"):
        build([C(4, (3, 3)), FLAT, RELU])[2](np.ones((2, 4, 4, 1)))
    with pytest.raises(ValueError, match="1-D filter .* needs inputs with 1 spatial axes"):
        stax.serial(stax.Conv(3, (3, 3)), stax.Conv(3, (2,)))[2](np.ones((2, 4, 4, 1)))
    with pytest.raises(ValueError, match="padding must be one of"):
        stax.Conv(3, (3, 3), padding="FULL")
    with pytest.raises(ValueError, match="strides must have 2 positive entries"):
        stax.Conv(3, (3, 3), strides=(1,))
    # Dense on NHWC inputs acts on every site's channels: a 1×1 convolution (neural-tangents)
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 2))
    dense = stax.serial(stax.Dense(3, 1.3, 0.2), stax.Relu(), stax.Dense(2), stax.Flatten())
    conv = stax.serial(
        stax.Conv(3, (1, 1), W_std=1.3, b_std=0.2), stax.Relu(), stax.Conv(2, (1, 1)),
        stax.Flatten(),
    )  # fmt: skip
    np.testing.assert_allclose(dense[2](x, None, "ntk"), conv[2](x, None, "ntk"), rtol=1e-6)


def test_memory_check_counts_sites(monkeypatch):
    """The refusal before allocating counts N1·N2 times the output's site pairs (a network
    that ends in a Conv keeps its full site covariance: |S|² = 1024² per pair of points)."""
    import theory.kernels.kernel as kernel

    monkeypatch.setattr(kernel, "available_memory", lambda device=None: 10**9)
    monkeypatch.setattr(kernel, "_MEMORY_CHECK_FLOOR", 0)
    net = build([C(4, (3, 3)), RELU, C(2, (3, 3))])
    with pytest.raises(KernelMemoryError, match=r"x 1048576 sites"):
        net[2](np.ones((400, 32, 32, 1), np.float32))


@pytest.mark.slow  # 12 s; test_spatial_finite_width.py (slow) checks the 1/width law too
def test_finite_cnn_matches_the_kernel_by_monte_carlo(x64):
    """The finite network our Conv builds has the analytic NNGP as its mean: 2000 random
    CNNs (width 8, one Conv SAME + ReLU + Flatten + Dense), the mean of f(x1)f(x2)ᵀ within
    4 standard errors of kernel_fn's NNGP (the mean over networks of a product has variance
    estimated from the same draws)."""
    import jax

    init_fn, apply_fn, kernel_fn = build([C(8, (3, 3)), RELU, FLAT, D()])
    x1, x2 = inputs((5, 6), 2)
    xs = jnp.asarray(np.concatenate([x1, x2]))

    @jax.jit
    def outputs(key):
        _, params = init_fn(key, xs.shape)
        return apply_fn(params, xs)[:, 0]

    f = np.stack([np.asarray(outputs(k)) for k in jax.random.split(jax.random.key(3), 2000)])
    prod = f[:, :5, None] * f[:, None, 5:]  # (draws, 5, 3)
    mean, se = prod.mean(0), prod.std(0, ddof=1) / np.sqrt(len(f))
    nngp = np.asarray(kernel_fn(x1, x2, get="nngp"))
    assert np.all(np.abs(mean - nngp) <= 4 * se + 1e-12), (mean, nngp, se)


@pytest.mark.slow
def test_full_and_diagonal_modes_agree(x64):
    """On networks that need only the diagonal, the full covariance's site diagonal is the
    diagonal computation (Conv's same-offset sum, activations with correlation 1 only on the
    site diagonal, Flatten as the diagonal's mean), and a network that ends in a Conv returns
    its full (n1, n2, S1, S1', S2, S2') kernel whose site diagonal is the diagonal one."""
    import functools

    import jax

    from theory.kernels.kernel import input_kernel
    from theory.kernels.spatial import site_diagonal

    x1, x2 = (jnp.asarray(x) for x in inputs((5, 6), 2))
    for spec in (
        ARCHS["conv_deep_activations"][2],
        [C(6, (3, 2), strides=(2, 1)), RELU, C(5, (2, 2), "CIRCULAR"), ["Gelu", {}]],
    ):
        transform = build(spec)[2].transform

        @functools.partial(jax.jit, static_argnums=(1, 2))
        def run(xs, cross, diagonal, transform=transform):
            return transform(input_kernel(xs[0], xs[1] if cross else None, True, diagonal))

        for cross in (False, True):
            diag = run((x1, x2), cross, True)
            full = run((x1, x2), cross, False)
            for name in ("nngp", "ntk", "cov1"):
                a, b = getattr(diag, name), getattr(full, name)
                batch_nd = 1 if name == "cov1" else 2
                if diag.spatial:
                    b = site_diagonal(b, batch_nd)
                # 1e-8: x2[0] = x1[3] is a point shared across batches, whose correlation
                # q12/√(q11 q22) = 1 − O(ε) puts O(√ε) into arccos differently in the two modes
                np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-8, atol=1e-14)
    out = build([C(6, (3, 3)), RELU, C(4, (2, 2))])[2](x1, x2)
    assert out.nngp.shape == (5, 3, 5, 5, 6, 6)


def test_pooling_needs_a_gaussian_input_and_spatial_axes():
    with pytest.raises(ValueError, match="the input to an activation must be Gaussian"):
        build([C(4, (3, 3)), RELU, POOL([2, 2]), RELU, GAP, D()])[2](np.ones((2, 4, 4, 1)))
    # (N, C) inputs have no sites: global pooling passes them unchanged (neural-tangents too)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(
        stax.serial(stax.Dense(2), stax.GlobalAvgPool())[2](x, None, "nngp"),
        stax.Dense(2)[2](x, None, "nngp"),
    )
    with pytest.raises(ValueError, match=r"window \(2, 2\) .* does not fit the input sites"):
        build([C(2, (3, 3)), RELU, POOL([2, 2], [2, 2]), POOL([2, 2], [2, 2])])[2](
            np.ones((2, 2, 2, 1))
        )


def test_max_pool_runs_finite_networks_and_refuses_a_kernel():
    import jax

    init_fn, apply_fn, kernel_fn = stax.serial(
        stax.Conv(3, (2, 2)), stax.Relu(), stax.MaxPool((2, 2), strides=(2, 2)), stax.Flatten()
    )
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 5, 6, 1)), jnp.float32)
    shape, params = init_fn(jax.random.key(0), x.shape)
    out = apply_fn(params, x)
    assert out.shape == tuple(shape) == (2, 2 * 2 * 3)
    conv_relu = stax.serial(stax.Conv(3, (2, 2)), stax.Relu())[1]
    pre = conv_relu(params[:2], x)  # (2, 4, 5, 3): max over 2×2 windows, VALID
    np.testing.assert_allclose(
        np.asarray(out).reshape(2, 2, 2, 3),
        np.asarray(pre)[:, :4, :4].reshape(2, 2, 2, 2, 2, 3).max((2, 4)),
    )
    with pytest.raises(NotImplementedError, match="MaxPool has no infinite-width kernel"):
        kernel_fn(x)
