"""LayerNorm and Dropout: kernels against neural-tangents 0.6.5, finite networks by Monte Carlo.

Oracle: float64, NNGP and NTK, self (x2=None) and cross, 1e-6 relative (the issue's bar).
Fully connected networks and CNNs, LayerNorm over the channel axis, over sites and channels
and over one site axis and channels, in networks ending in Flatten (computed on the spatial
diagonal) and in GlobalAvgPool (full spatial covariance); Dropout in train mode in both.
Monte Carlo: the mean of f(x) f(x')ᵀ over random finite networks is within 4 standard
errors of the NNGP (the standard error estimated from the same independent draws; the
finite-width bias, O(1/width), is far below it at the widths used).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from theory.kernels import stax
from theory.kernels.kernel import input_kernel
from theory.kernels.stax import NO, YES, Diagonal

RTOL = 1e-6


def D(out=1, W=1.5, b=0.1, p="ntk"):
    kw = {"out_dim": out, "W_std": W, "parameterization": p}
    if b is not None:
        kw["b_std"] = b
    return ["Dense", kw]


def C(out, f, pad="SAME", W=1.5, b=0.1, p="ntk"):
    kw = {"out_chan": out, "filter_shape": list(f), "padding": pad, "W_std": W}
    kw["parameterization"] = p
    if b is not None:
        kw["b_std"] = b
    return ["Conv", kw]


def LN(axis=-1, eps=None):
    kw = {"axis": axis}
    if eps is not None:
        kw["eps"] = eps
    return ["LayerNorm", kw]


def DROP(rate):
    return ["Dropout", {"rate": rate, "mode": "train"}]


CL = ["ConvLocal", {"out_chan": 4, "filter_shape": [2, 2], "padding": "SAME", "W_std": 1.5}]
RELU, ERF, FLAT, GAP = ["Relu", {}], ["Erf", {}], ["Flatten", {}], ["GlobalAvgPool", {}]

FC, SPATIAL = ((6,),), ((5, 6), 2)  # input shapes: (features,) and (sites, channels)

# name: (input shape key, spec). The conv networks run by default stack several cases each
# (a kernel compilation costs seconds per network); the single-case networks in SLOW, each
# isolating one of them, run with the slow tests.
ARCHS = {
    "fc_layernorm": (FC, [D(8), LN(), RELU, D()]),
    # eps large enough to matter, axis given as a tuple, standard parameterization
    "fc_layernorm_eps_standard": (
        FC,
        [D(8, 1.3, 0.2, "standard"), LN([1], eps=0.3), ERF, D(1, p="standard")],
    ),
    "fc_dropout_then_layernorm": (FC, [D(8), RELU, DROP(0.6), D(5), LN(), ERF, D()]),
    # --- on the spatial diagonal (the network ends in Flatten): LayerNorm over the channels,
    # over sites and channels, over one site axis and the channels; Dropout
    "conv_flatten": (
        SPATIAL,
        [
            C(6, (3, 3)),
            LN(),
            RELU,
            DROP(0.7),
            C(5, (3, 2), "VALID"),
            LN([1, 2, 3]),
            ERF,
            C(4, (2, 2)),
            LN([2, -1]),
            RELU,
            FLAT,
            D(),
        ],
    ),
    # --- full spatial covariance (global pooling): the same cases; LayerNorm over one site
    # axis after an odd number of convolutions, where neural-tangents has reversed its pair
    # axes (ours never are)
    "conv_gap": (
        SPATIAL,
        [
            C(6, (3, 2)),
            LN([1, 3]),
            ERF,
            DROP(0.7),
            C(4, (2, 2), "VALID"),
            LN(),
            RELU,
            C(3, (2, 2)),
            LN([1, 2, 3], 0.2),
            RELU,
            GAP,
            D(),
        ],
    ),
    # --- one case each (slow)
    "conv_layernorm_channels_flatten": (SPATIAL, [C(6, (3, 3)), LN(), RELU, FLAT, D()]),
    "conv_layernorm_all_flatten": (SPATIAL, [C(6, (3, 3)), LN([1, 2, 3]), RELU, FLAT, D()]),
    "conv_dropout_flatten": (
        SPATIAL,
        [C(6, (3, 3)), RELU, DROP(0.7), C(4, (2, 2)), RELU, FLAT, D()],
    ),
    "conv_layernorm_channels_gap": (SPATIAL, [C(6, (3, 3)), LN(), RELU, GAP, D()]),
    "conv_layernorm_all_gap": (SPATIAL, [C(6, (3, 3)), LN([1, 2, 3]), RELU, GAP, D()]),
    "conv_layernorm_width_gap": (
        SPATIAL,
        [C(6, (3, 2)), RELU, C(4, (2, 2)), LN([2, -1]), RELU, GAP, D()],
    ),
    "conv_dropout_gap": (SPATIAL, [C(6, (3, 3)), RELU, DROP(0.7), C(4, (2, 2)), RELU, GAP, D()]),
    # after ConvLocal (output MAYBE) neural-tangents keeps the diagonal through these layers
    # into global pooling; ours run the full covariance there: the same numbers
    "convlocal_layernorm_gap": (SPATIAL, [CL, LN(), GAP, D()]),
    "convlocal_dropout_gap": (SPATIAL, [CL, DROP(0.7), GAP, D()]),
}
SLOW = {n for n in ARCHS if n.startswith(("conv_layernorm_", "conv_dropout_", "convlocal_"))}


def build(spec):
    return stax.serial(*[getattr(stax, name)(**kw) for name, kw in spec])


def inputs(shape):
    """x1 (5 points) and x2 (3 points) sharing one point, x2[0] = x1[3]."""
    rng = np.random.default_rng(11)
    dims = shape[0] if len(shape) == 1 else (*shape[0], shape[1])
    x1 = rng.standard_normal((5, *dims))
    x2 = rng.standard_normal((3, *dims))
    x2[0] = x1[3]
    return x1, x2


@pytest.fixture(scope="module")
def reference(nt_oracle):
    """One oracle process per input shape, 2 in all: neural-tangents' self kernel of the
    stacked batch [x1; x2], whose blocks are its self kernel of x1 and its cross kernel of
    (x1, x2). Each of these layers acts on a pair of points through the two points' own
    variances only, and Dropout scales only the diagonal of a self kernel (for x2 given
    and different from x1 neural-tangents' factor is 1), so the off-diagonal block is what
    ``kernel_fn(x1, x2)`` returns there (the shared point x2[0] = x1[3] sits off the
    diagonal of the stacked batch, as it is in a cross kernel)."""
    out = {}
    for shape in (FC, SPATIAL):
        names = [n for n, (s, _) in ARCHS.items() if s == shape]
        specs = [ARCHS[n][1] for n in names]
        x1, x2 = inputs(shape)
        n1 = len(x1)
        r = nt_oracle(
            {"specs": specs, "tasks": ["kernels"], "x64": 1, "jit": 1}
            | {"x1": np.concatenate([x1, x2])}
        )
        for i, n in enumerate(names):
            nngp, ntk = r[f"nngp_{i}"], r[f"ntk_{i}"]
            out[n] = {
                "sym": (nngp[:n1, :n1], ntk[:n1, :n1]),
                "cross": (nngp[:n1, n1:], ntk[:n1, n1:]),
            }
    return out


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else []) for n in ARCHS]
)
def test_matches_neural_tangents(name, reference, x64):
    shape, spec = ARCHS[name]
    x1, x2 = inputs(shape)
    kernel_fn = build(spec)[2]
    for which, args in (("sym", (x1,)), ("cross", (x1, x2))):
        k = kernel_fn(*args)
        for ours, ref, what in zip((k.nngp, k.ntk), reference[name][which], ("nngp", "ntk")):
            np.testing.assert_allclose(
                np.asarray(ours), ref, rtol=RTOL, atol=RTOL * np.abs(ref).max(),
                err_msg=f"{name} {which} {what}",
            )  # fmt: skip


def test_dropout_scales_only_self_pairs(x64):
    """Theory, without the oracle: Dropout(p) right after a Dense multiplies cov1 and the
    diagonal of the self kernel by 1/p and leaves every other entry (and the whole cross
    kernel) as it was; test mode changes nothing."""
    x1, x2 = inputs(FC)
    before = stax.Dense(4, 1.5, 0.1)[2]
    after = stax.serial(stax.Dense(4, 1.5, 0.1), stax.Dropout(0.25))[2]
    k0, k = before(x1), after(x1)
    scale = np.where(np.eye(5, dtype=bool), 4.0, 1.0)
    np.testing.assert_allclose(np.asarray(k.nngp), np.asarray(k0.nngp) * scale, rtol=1e-14)
    np.testing.assert_allclose(np.asarray(k.ntk), np.asarray(k0.ntk) * scale, rtol=1e-14)
    np.testing.assert_allclose(np.asarray(k.cov1), 4 * np.asarray(k0.cov1), rtol=1e-14)
    assert k.is_gaussian is False and k.width == 4
    kc0, kc = before(x1, x2), after(x1, x2)
    np.testing.assert_allclose(np.asarray(kc.nngp), np.asarray(kc0.nngp), rtol=1e-14)
    np.testing.assert_allclose(np.asarray(kc.cov2), 4 * np.asarray(kc0.cov2), rtol=1e-14)
    test_mode = stax.serial(stax.Dense(4, 1.5, 0.1), stax.Dropout(0.25, "test"))[2](x1)
    np.testing.assert_allclose(np.asarray(test_mode.nngp), np.asarray(k0.nngp), rtol=1e-14)


def test_tiled_kernels_match_untiled(x64):
    """kernel_fn tiles FC kernels of ≥ 512 points; the self pairs Dropout scales and the
    per-point variances LayerNorm divides by must come out the same as in one piece."""
    x = np.random.default_rng(3).standard_normal((1100, 4))
    net = stax.serial(
        stax.Dense(8, 1.5, 0.1), stax.LayerNorm(), stax.Relu(), stax.Dropout(0.6), stax.Dense(1)
    )[2]
    tiled = net(x)
    whole = jax.jit(lambda x: net.transform(input_kernel(x, None, True)))(jnp.asarray(x))
    for name in ("nngp", "ntk"):
        np.testing.assert_allclose(
            np.asarray(getattr(tiled, name)),
            np.asarray(getattr(whole, name)),
            rtol=1e-12,
            atol=1e-12 * float(jnp.abs(getattr(whole, name)).max()),
        )  # tiles round differently: entries near 0 differ by ~1e-16 (absolute)


def test_output_kernel_flags_and_diagonal_requirement(x64):
    x1, _ = inputs(FC)
    k = stax.serial(stax.Dense(7, 1.2, 0.1), stax.LayerNorm())[2](x1)
    assert k.is_gaussian is True and k.width == 7
    k = stax.serial(stax.Dense(7, 1.2, 0.1), stax.Dropout(0.5))[2](x1)
    assert k.is_gaussian is False and k.width == 7
    # neural-tangents sets no spatial-diagonal requirement for either layer
    assert stax.LayerNorm()[2].diagonal == Diagonal(YES, NO)
    assert stax.Dropout(0.5)[2].diagonal == Diagonal(YES, NO)
    for spec, diagonal in (
        (ARCHS["conv_flatten"][1], True),
        (ARCHS["conv_gap"][1], False),
        ([C(5, (3, 3)), RELU, DROP(0.5), ["AvgPool", {"window_shape": [2, 2]}], FLAT], False),
    ):
        assert bool(build(spec)[2].diagonal) is diagonal, spec


# ------------------------------------------------------------------- finite networks


def _mean_and_se(f):
    """Per draw, the mean over output units of f fᵀ (draws independent); its mean over draws
    and standard error."""
    prod = np.einsum("dik,djk->dij", f, f) / f.shape[-1]
    return prod.mean(0), prod.std(0, ddof=1) / np.sqrt(len(prod))


def _draw_params(init_fn, input_shape, draws: int, seed: int):
    """``draws`` independent parameter sets with the leaves init_fn makes (shapes from
    init_fn itself), every entry N(0, 1): init_fn's distribution in the NTK parameterization.
    Drawn by numpy, which spares compiling jax's generator for a batch of networks."""
    _, params = jax.eval_shape(lambda key: init_fn(key, input_shape), jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: jnp.asarray(rng.standard_normal((draws, *a.shape))), params)


def test_layernorm_apply_normalizes_over_axis(x64):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4, 5, 6)) * 3 + 1)
    for axis in (-1, (1, 2, 3), (2, 3)):
        _, apply_fn, _ = stax.LayerNorm(axis, eps=0.0)
        y = np.asarray(apply_fn((), x))
        ax = (axis,) if isinstance(axis, int) else axis
        np.testing.assert_allclose(y.mean(ax), 0, atol=1e-12)
        np.testing.assert_allclose(y.var(ax), 1, rtol=1e-12)
    _, apply_fn, _ = stax.LayerNorm(eps=2.0)
    xs = np.asarray(x)
    want = (xs - xs.mean(-1, keepdims=True)) / np.sqrt(xs.var(-1, keepdims=True) + 2.0)
    np.testing.assert_allclose(np.asarray(apply_fn((), x)), want, rtol=1e-12)


@pytest.mark.parametrize("which", ["fc", "conv"])
def test_layernorm_finite_networks_match_the_kernel_by_monte_carlo(which, x64):
    """300 random networks, hidden width 512 (FC) or 64 channels on 30 sites (CNN, LayerNorm
    over sites and channels), LayerNorm, ReLU and a readout of 32 units: the mean of
    f(x) f(x')ᵀ over the 8 points of x1 and x2 (self and cross pairs, the shared point
    included) within 4 standard errors of the NNGP (the largest deviation is 2.0 standard
    errors with these seeds). The standard error is a few % of the diagonal entries;
    LayerNorm's finite-width bias, O(1/number of units normalized over), is ≤ 0.5%."""
    if which == "fc":
        layers = [stax.Dense(512, 1.5, 0.1), stax.LayerNorm(), stax.Relu(), stax.Dense(32)]
        x1, x2 = inputs(FC)
    else:
        layers = [
            stax.Conv(64, (3, 3), padding="SAME", W_std=1.5, b_std=0.1),
            stax.LayerNorm((1, 2, 3)),
            stax.Relu(),
            stax.Flatten(),
            stax.Dense(32),
        ]
        x1, x2 = inputs(SPATIAL)
    init_fn, apply_fn, kernel_fn = stax.serial(*layers)
    xs = jnp.asarray(np.concatenate([x1, x2]))
    params = _draw_params(init_fn, xs.shape, 300, seed=5)
    f = np.asarray(jax.jit(jax.vmap(apply_fn, in_axes=(0, None)))(params, xs))  # (300, 8, 32)
    mean, se = _mean_and_se(f)
    nngp = np.asarray(kernel_fn(xs, get="nngp"))
    assert np.all(np.abs(mean - nngp) <= 4 * se), (np.abs(mean - nngp) / se).max()


def test_dropout_finite_network_matches_the_kernel_by_monte_carlo(x64):
    """300 random networks with Dropout(0.5) (masks drawn per point, so each point's units are
    dropped independently of the others'): the mean of f f'ᵀ within 4 standard errors of the
    self NNGP, whose diagonal is larger than without dropout."""
    layers = [stax.Dense(256, 1.5, 0.1), stax.Relu(), stax.Dropout(0.5), stax.Dense(32)]
    init_fn, apply_fn, kernel_fn = stax.serial(*layers)
    x1, _ = inputs(FC)
    x = jnp.asarray(x1)
    params = _draw_params(init_fn, x.shape, 300, seed=6)
    keys = jax.random.split(jax.random.key(6), 300)
    f = np.asarray(jax.jit(jax.vmap(lambda p, k: apply_fn(p, x, rng=k)))(params, keys))
    mean, se = _mean_and_se(f)
    nngp = np.asarray(kernel_fn(x, get="nngp"))
    assert np.all(np.abs(mean - nngp) <= 4 * se), (np.abs(mean - nngp) / se).max()
    without = np.asarray(stax.serial(*layers[:2], layers[3])[2](x, get="nngp"))
    # the diagonal doubles in the hidden layer: far outside the noise
    assert np.all(np.diag(mean) - np.diag(without) > 8 * np.diag(se))


def test_dropout_apply(x64):
    x = jnp.asarray(np.random.default_rng(1).standard_normal((40, 50)) + 3.0)  # no zeros
    _, apply_fn, _ = stax.Dropout(0.3)
    y = np.asarray(apply_fn((), x, rng=jax.random.key(0)))
    kept = y != 0
    np.testing.assert_allclose(y[kept], np.asarray(x)[kept] / 0.3, rtol=1e-14)
    # 2000 Bernoulli(0.3) draws: kept fraction within 4 standard deviations of 0.3
    assert abs(kept.mean() - 0.3) <= 4 * np.sqrt(0.3 * 0.7 / kept.size)
    with pytest.raises(ValueError, match="Dropout in train mode needs a PRNG key"):
        apply_fn((), x)
    _, apply_test, _ = stax.Dropout(0.3, mode="test")
    np.testing.assert_array_equal(np.asarray(apply_test((), x)), np.asarray(x))


# ------------------------------------------------------------------------ bad input


def test_bad_arguments():
    with pytest.raises(TypeError, match="axis must be an integer or a tuple"):
        stax.LayerNorm(axis="channels")
    with pytest.raises(TypeError, match="axis must be an integer or a tuple"):
        stax.LayerNorm(axis=(1, 2.5))
    with pytest.raises(ValueError, match="axis must name at least one axis"):
        stax.LayerNorm(axis=())
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        stax.LayerNorm(eps=-1e-3)
    with pytest.raises(TypeError, match="LayerNorm: channel_axis must be an integer"):
        stax.LayerNorm(channel_axis=None)
    for rate in (0, 0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"rate \(the keep probability\) must be in \(0, 1\]"):
            stax.Dropout(rate)
    with pytest.raises(TypeError, match="Dropout: rate must be a real number"):
        stax.Dropout("half")
    with pytest.raises(ValueError, match="mode must be 'train' or 'test'"):
        stax.Dropout(0.5, mode="eval")


def test_layernorm_refuses_what_has_no_kernel():
    fc = np.ones((2, 3))
    img = np.random.default_rng(0).standard_normal((2, 4, 4, 1))

    def conv_ln(axis, **kw):
        return stax.serial(stax.Conv(3, (2, 2)), stax.LayerNorm(axis, **kw), stax.Flatten())[2]

    with pytest.raises(ValueError, match=r"axis must include the channel axis .*axis=\(1, 2\)"):
        conv_ln((1, 2))(img)
    with pytest.raises(ValueError, match=r"axis=5 is out of range for NHWC inputs with 4 axes"):
        conv_ln(5)(img)
    with pytest.raises(ValueError, match=r"axis=-3 is out of range for fully connected"):
        stax.serial(stax.Dense(3), stax.LayerNorm(-3))[2](fc)
    with pytest.raises(NotImplementedError, match=r"over the batch axis \(0 in axis=\(0, -1\)\)"):
        stax.serial(stax.Dense(3), stax.LayerNorm((0, -1)))[2](fc)
    # channels on axis 1 of NHWC activations: the layout check names the axis to use
    with pytest.raises(ValueError, match="channel_axis=1 is axis 1 .* channel_axis=3"):
        conv_ln(-1, channel_axis=1)(img)
    with pytest.raises(NotImplementedError, match="over the batch axis"):  # points on axis 1
        ln = stax.LayerNorm((0, 1), batch_axis=1, channel_axis=0)
        stax.serial(stax.Dense(3, batch_axis=1, channel_axis=0), ln)[2](fc.T)
    with pytest.raises(ValueError, match="the input to LayerNorm must be Gaussian"):
        stax.serial(stax.Dense(3), stax.Relu(), stax.LayerNorm())[2](fc)
    with pytest.raises(ValueError, match="the input to LayerNorm must be Gaussian"):
        stax.LayerNorm()[2](fc)
    # Dropout's output is not Gaussian: an activation right after it is refused
    with pytest.raises(ValueError, match="the input to an activation must be Gaussian"):
        stax.serial(stax.Dense(3), stax.Dropout(0.5), stax.Relu())[2](fc)
    with pytest.raises(ValueError, match=r"out of range for inputs of shape \(2, 3\)"):
        stax.LayerNorm(2)[1]((), jnp.ones((2, 3)))
