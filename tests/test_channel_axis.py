"""Channel-first layouts (NCHW) through kernel_fn, init_fn and apply_fn.

neural-tangents' rule, which ours follows: the network's input kernel sums over the channel
axis named by its first layer that names one (a convolution's lhs spec, or the
``channel_axis`` of Dense, AvgPool/SumPool, GlobalAvgPool/GlobalSumPool, LayerNorm,
GlobalSelfAttention, Aggregate); a convolution's out spec sets where the channels are
after it; every later layer that names a ``channel_axis`` must name that one, else a
ValueError says which axis to use.

Checks:
- against neural-tangents 0.6.5 (float64, NNGP and NTK, self and cross, 1e-6 relative, the
  issue's bar): channel-first networks on the spatial diagonal (Flatten) and with the full
  covariance (AvgPool, LayerNorm, global pooling, attention), and a network that switches
  layout mid-way (NHWC → NCHW → NHWC); the finite network's output on the same parameters
  (1e-12 relative: the same lax operations);
- layout equivariance, an identity: each network's kernel on NCHW inputs equals its
  channel-last twin's on the same inputs transposed, to 1e-12 (the sites are the same, in the
  same order, so the arithmetic is the same);
- a mismatched ``channel_axis`` raises naming the layer and the axis to use.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from theory.kernels import batch, stax

RTOL = 1e-6
NCHW = ("NCHW", "OIHW", "NCHW")


def conv(out, f, pad="SAME", dn=NCHW, **kw):
    kw = {"out_chan": out, "filter_shape": list(f), "padding": pad, "W_std": 1.3, **kw}
    return ["Conv", {**kw, "dimension_numbers": list(dn) if dn else None}]


def ca(name, c, **kw):
    """A layer named ``name`` with channel_axis ``c`` (omitted for the default −1)."""
    return [name, {**kw, **({} if c == -1 else {"channel_axis": c})}]


RELU, ERF, FLAT = ["Relu", {}], ["Erf", {}], ["Flatten", {}]


def archs(c: int) -> dict:
    """The test networks with channels on axis ``c`` (1: NCHW) or last (−1: their twins)."""
    dn = NCHW if c == 1 else None
    return {
        "diagonal_flatten": [
            conv(4, (3, 3), dn=dn, b_std=0.1), RELU, conv(3, (2, 3), "VALID", dn=dn), ERF,
            FLAT, ["Dense", {"out_dim": 1, "W_std": 1.1, "b_std": 0.2}],
        ],
        "pool_layernorm_gap": [
            conv(4, (2, 2), dn=dn), RELU, ca("AvgPool", c, window_shape=[2, 2], padding="SAME"),
            conv(3, (2, 2), dn=dn, b_std=0.3), ca("LayerNorm", c, axis=c), ERF,
            ca("GlobalAvgPool", c), ["Dense", {"out_dim": 1}],
        ],
        "dense_per_site_sumpool": [
            ca("Dense", c, out_dim=5, W_std=1.2, b_std=0.1), RELU,
            ca("SumPool", c, window_shape=[2, 1], strides=[1, 1]), conv(3, (2, 2), dn=dn),
            RELU, ca("GlobalSumPool", c), ["Dense", {"out_dim": 1}],
        ],
        "attention": [
            conv(4, (2, 2), dn=dn),
            ca("GlobalSelfAttention", c, n_chan_out=3, n_chan_key=2, n_chan_val=2, n_heads=2,
               linear_scaling=True, attention_mechanism="SOFTMAX"),
            RELU, ca("GlobalAvgPool", c), ["Dense", {"out_dim": 1}],
        ],
    }  # fmt: skip


# NHWC in, NCHW between, NHWC out: a Dense per site and a pool on channel-first activations
SWITCH = [
    conv(4, (2, 2), dn=("NHWC", "HWIO", "NCHW")), RELU,
    ca("Dense", 1, out_dim=3, b_std=0.1), RELU, ca("AvgPool", 1, window_shape=[2, 2]),
    conv(3, (2, 2), dn=("NCHW", "OIHW", "NHWC")), RELU, ["GlobalAvgPool", {}],
    ["Dense", {"out_dim": 1}],
]  # fmt: skip

# The finite network compared with neural-tangents on the same parameters (every layer that
# takes a channel_axis, with channels on axis 1)
APPLY_SPEC = archs(1)["pool_layernorm_gap"][:-2] + archs(1)["dense_per_site_sumpool"][:3]

N1, N2 = 4, 2
SITES, CHANNELS = (5, 4), 3


def build(spec):
    return stax.serial(*[getattr(stax, name)(**kw) for name, kw in spec])


def inputs():
    """x1 (4, C, H, W), x2 (2, C, H, W) with x2[0] = x1[2] (NCHW)."""
    rng = np.random.default_rng(3)
    x1 = rng.standard_normal((N1, CHANNELS, *SITES))
    x2 = rng.standard_normal((N2, CHANNELS, *SITES))
    x2[0] = x1[2]
    return x1, x2


def last(x):
    return np.moveaxis(x, 1, -1)


@pytest.fixture(scope="module")
def reference(nt_oracle):
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        xall = np.concatenate(inputs())
        names = list(archs(1))
        specs = [archs(1)[n] for n in names]
        x_switch = last(xall)  # SWITCH takes NHWC inputs: its own request
        _, params = build(APPLY_SPEC)[0](jax.random.key(7), xall.shape)
        leaves = [np.asarray(p) for p in jax.tree_util.tree_leaves(params)]
        req = {"specs": specs, "tasks": ["kernels", "apply"], "spec": APPLY_SPEC, "x64": 1}
        req.update({f"params_{i}": leaf for i, leaf in enumerate(leaves)}, jit=1, x1=xall)
        r = nt_oracle(req)
        out = {n: (r[f"nngp_{i}"], r[f"ntk_{i}"]) for i, n in enumerate(names)}
        out["apply"] = (r["apply"], params)
        r = nt_oracle({"specs": [SWITCH], "tasks": ["kernels"], "x64": 1, "jit": 1, "x1": x_switch})
        out["switch"] = (r["nngp_0"], r["ntk_0"])
        return out
    finally:
        jax.config.update("jax_enable_x64", old)


def _compare(kernel_fn, x1, x2, ref, name):
    for which, args, block in (
        ("self", (x1,), np.s_[:N1, :N1]),
        ("cross", (x1, x2), np.s_[:N1, N1:]),
    ):
        k = kernel_fn(*args, get=("nngp", "ntk"))
        for ours, r, what in zip(k, ref, ("nngp", "ntk")):
            r = r[block]
            np.testing.assert_allclose(
                np.asarray(ours), r, rtol=RTOL, atol=RTOL * np.abs(r).max(),
                err_msg=f"{name} {which} {what}",
            )  # fmt: skip


# by default the diagonal, the pooled network and the layout switch; the slow suite adds the
# per-site Dense network and attention (the same channels_last path as the pools)
ORACLE_CORE = ("diagonal_flatten", "pool_layernorm_gap", "switch")


@pytest.mark.parametrize(
    "name",
    [n if n in ORACLE_CORE else pytest.param(n, marks=pytest.mark.slow)
     for n in [*archs(1), "switch"]],
)  # fmt: skip
def test_kernel_matches_neural_tangents(name, reference, x64):
    x1, x2 = inputs()
    if name == "switch":
        _compare(build(SWITCH)[2], last(x1), last(x2), reference[name], name)
    else:
        _compare(build(archs(1)[name])[2], x1, x2, reference[name], name)


def test_finite_network_matches_neural_tangents(reference, x64):
    """Dense, AvgPool, SumPool, LayerNorm and Conv on channel-first activations: our apply_fn
    on our parameters equals neural-tangents' on the same parameters; init_fn's shape is
    apply_fn's."""
    ref, params = reference["apply"]
    xall = jnp.asarray(np.concatenate(inputs()))
    init_fn, apply_fn, _ = build(APPLY_SPEC)
    ours = np.asarray(apply_fn(params, xall))
    assert ours.shape == ref.shape == tuple(init_fn(jax.random.key(0), xall.shape)[0])
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


# by default the diagonal network (tiled too); the slow suite adds the other three
EQUIVARIANCE_CORE = ("diagonal_flatten",)


@pytest.mark.parametrize(
    "name",
    [n if n in EQUIVARIANCE_CORE else pytest.param(n, marks=pytest.mark.slow) for n in archs(1)],
)
def test_layout_equivariance(name, x64):
    """A channel-first network's kernel on NCHW inputs is its channel-last twin's on the
    transposed inputs (identical arithmetic: 1e-12), tiled and batched alike."""
    x1, x2 = inputs()
    first, twin = build(archs(1)[name])[2], build(archs(-1)[name])[2]
    assert first.channel_axis == 1 and twin.channel_axis in (None, -1, 3)
    for args, args_last in (((x1,), (last(x1),)), ((x1, x2), (last(x1), last(x2)))):
        a = first(*args, get=("nngp", "ntk"))
        b = twin(*args_last, get=("nngp", "ntk"))
        for u, v in zip(a, b):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-12, atol=1e-14)
    tiled = batch(first, 2)(x1, get="ntk")  # each tile builds its own input kernel
    whole = twin(last(x1), get="ntk")
    np.testing.assert_allclose(np.asarray(tiled), np.asarray(whole), rtol=1e-12, atol=1e-14)


def test_finite_layers_follow_the_channel_axis(x64):
    """With the same parameters, each layer on NCHW inputs is its NHWC twin on the
    transposed inputs, transposed back (Dense, pools, global pools, LayerNorm, Aggregate;
    Dense's bias transposed too)."""
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))  # NCHW
    pattern = np.random.default_rng(1).standard_normal((2, 4, 5, 4, 5))
    for make, kw in (
        (stax.Dense, {"out_dim": 6, "b_std": 0.1}),
        (stax.AvgPool, {"window_shape": (2, 3), "padding": "SAME", "normalize_edges": True}),
        (stax.SumPool, {"window_shape": (3, 2), "strides": (1, 2)}),
        (stax.GlobalAvgPool, {}),
        (stax.GlobalSumPool, {}),
        (stax.LayerNorm, {"axis": (1, 3)}),
        (stax.Aggregate, {}),
    ):
        init1, apply1, _ = make(**kw, channel_axis=1)
        init2, apply2, _ = make(**{**kw, "axis": (3, 2)} if make is stax.LayerNorm else kw)
        shape1, params = init1(jax.random.key(0), x.shape)
        shape2, _ = init2(jax.random.key(0), last(x).shape)
        extra = {"pattern": pattern} if make is stax.Aggregate else {}
        y1 = np.asarray(apply1(params, jnp.asarray(x), **extra))
        if make is stax.Dense:  # the bias has the output's layout (neural-tangents')
            assert params[1].shape == (1, 6, 1, 1)
            params = (params[0], last(params[1]))
        y2 = np.asarray(apply2(params, jnp.asarray(last(x)), **extra))
        if y1.ndim > 2:
            y2 = np.moveaxis(y2, -1, 1)
            assert shape1 == tuple(y1.shape) and shape2 == tuple(np.moveaxis(y2, 1, -1).shape)
        else:
            assert shape1 == shape2 == tuple(y1.shape)
        np.testing.assert_allclose(y1, y2, rtol=1e-12, atol=1e-12, err_msg=make.__name__)


def test_mismatched_channel_axis_is_refused_clearly():
    x = np.ones((2, 3, 4, 4))  # NCHW
    net = stax.serial(stax.Conv(2, (2, 2), dimension_numbers=NCHW), stax.Relu(),
                      stax.GlobalAvgPool())  # fmt: skip
    with pytest.raises(ValueError, match=r"GlobalAvgPool: channel_axis=-1 is axis 3 .* axis 1"):
        net[2](x)
    net = stax.serial(stax.Conv(2, (2, 2)), stax.Dense(3, channel_axis=1))
    with pytest.raises(ValueError, match=r"Dense\(3\): channel_axis=1 .* build Dense with "
                                         r"channel_axis=3"):  # fmt: skip
        net[2](x)
    with pytest.raises(ValueError, match="channel_axis=0 is the batch axis"):
        stax.AvgPool((2, 2), channel_axis=0)
    with pytest.raises(ValueError, match="channel_axis=1 is the batch axis"):
        stax.serial(stax.Conv(2, (2, 2)), stax.AvgPool((2, 2), batch_axis=1, channel_axis=1))[2](x)
    with pytest.raises(ValueError, match="channel_axis=5 is not a channel axis of 4-D inputs"):
        stax.serial(stax.Conv(2, (2, 2)), stax.AvgPool((2, 2), channel_axis=5))[2](x)
