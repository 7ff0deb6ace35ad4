"""Masked inputs (``mask_constant``): neural-tangents' semantics, one script run by both
libraries, and the identities that define masking.

What masking means (``theory/kernels/stax/_masking.py``): input entries equal to the
constant are absent; every layer zeroes its absent inputs and passes on a mask; in the
kernel, every entry that pairs an absent site is 0 and global average pooling averages over
the present sites. The identities below follow from that definition alone (float64, exact up
to rounding: rtol 1e-12). The script compares with neural-tangents 0.6.5 at rtol 1e-10 (the
same closed forms; 1e-8 on self-kernels, where neural-tangents' arccos(1 − δ) on the
diagonal is off by ~8e-10, measured in tests/test_index_nt.py) — any wrong mask rule moves
entries by O(1).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from theory.kernels import batch, monte_carlo_kernel_fn, stax

C = 10.0  # the mask constant of neural-tangents' own tests


def _inputs():
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((4, 6, 5, 3))
    x2 = rng.standard_normal((3, 6, 5, 3))
    x1[1] = C  # a whole point absent
    x1[0, 2:4, 1] = C  # whole sites (every channel)
    x1[2, :, 4] = C
    x1[3, 0, 0, 1] = C  # one channel of one site: absent entry, site present
    x2[0, 5, :] = C
    x2[2, 1:3, 2:] = C
    return {"x1": x1, "x2": x2}


SCRIPT = """
def run(nt, a):
    import jax.numpy as jnp
    stax = nt.stax
    x1, x2, C = a["x1"], a["x2"], 10.0
    conv = lambda *args, **kw: stax.Conv(8, *args, **kw)
    m = jnp.asarray(a["m"])
    nets = {
        "conv_gap": stax.serial(
            conv((3, 3), padding="SAME"), stax.Relu(),
            conv((2, 2), (2, 1), padding="VALID"), stax.Erf(),
            stax.GlobalAvgPool(), stax.Dense(1)),
        "pool_flatten": stax.serial(
            conv((3, 3), padding="SAME"), stax.Relu(), stax.AvgPool((2, 2), (2, 2), "SAME"),
            stax.Flatten(), stax.Dense(1)),
        "layernorm_sites": stax.serial(
            conv((3, 3), padding="CIRCULAR"), stax.LayerNorm(axis=(1, 2, 3)), stax.Relu(),
            stax.GlobalSumPool(), stax.Dense(1)),
        "branches": stax.serial(
            stax.FanOut(2),
            stax.parallel(stax.serial(conv((3, 3), padding="SAME"), stax.Relu(),
                                      conv((1, 1))),
                          conv((1, 1))),
            stax.FanInConcat(axis=-1), conv((2, 2), padding="SAME"), stax.Relu(),
            stax.FanOut(2), stax.parallel(stax.Dense(8), stax.Dense(8)), stax.FanInSum(),
            stax.GlobalAvgPool(), stax.Dense(1)),
        "dot_general": stax.serial(
            conv((3, 3), padding="SAME"), stax.Relu(),
            stax.DotGeneral(rhs=m, dimension_numbers=(((2,), (0,)), ((), ()))),
            stax.Dense(8, channel_axis=2), stax.Relu(),
            stax.GlobalAvgPool(channel_axis=2), stax.Dense(1)),
        "resize_index": stax.serial(
            stax.Dense(8), stax.Relu(),
            stax.ImageResize((-1, 4, 7, -1), "linear"), stax.Index(stax.Slice[:, 1:, ::2]),
            conv((2, 2), padding="SAME"), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1)),
        "transpose": stax.serial(
            stax.ConvTranspose(8, (3, 3), (2, 2), padding="SAME"), stax.Relu(),
            stax.GlobalAvgPool(), stax.Dense(1)),
        "fc": stax.serial(
            stax.Flatten(), stax.Dense(16, 1.0, 0.1), stax.Erf(),
            stax.DotGeneral(rhs=0.7), stax.Dense(16, 1.2, 0.05), stax.Exp(0.5, 0.2),
            stax.Dense(1)),
    }
    out = {}
    for name, (init_fn, apply_fn, kernel_fn) in nets.items():
        _, params = init_fn(jax.random.PRNGKey(0), x1.shape)
        out[name + "_out_mask"] = np.asarray(
            apply_fn(params, x1, mask_constant=C).mask, dtype=np.float64)
        for tag, b in (("cross", x2), ("self", None)):
            k = kernel_fn(x1, b, ("nngp", "ntk"), mask_constant=C)
            out[f"{name}_{tag}_nngp"], out[f"{name}_{tag}_ntk"] = k.nngp, k.ntk
    return out
"""


def _script_arrays():
    a = _inputs()
    m = np.arange(20.0).reshape(5, 4) / 10 - 0.4
    m[1, 2] = 0.0  # a zero coefficient: its input does not count for the output's mask
    a["m"] = m
    return a


@pytest.mark.slow  # about 40 s of compilations in each library
def test_masked_networks_agree_with_neural_tangents(x64, nt_script):
    """Eight networks, every masked layer kind: convolutions (SAME, VALID with strides,
    CIRCULAR, transposed), average pooling, Flatten, global average and sum pooling,
    LayerNorm over sites, fan-out/concatenation/sum, DotGeneral (a matrix on a site axis,
    a scalar), ImageResize, Index, Erf/Exp/ReLU; NNGP and NTK, cross and self; and the mask
    each network's apply_fn returns. ImageResize follows a Dense layer, not a convolution:
    after a convolution neural-tangents 0.6.5 resizes the wrong axes (see the README) and,
    masked, fails; on the raw inputs it refuses a mask that differs between channels."""
    nt_script(SCRIPT, _script_arrays(), lambda name: 1e-8 if "_self" in name else 1e-10)


def _net():
    return stax.serial(
        stax.Conv(8, (3, 3), padding="SAME"),
        stax.Relu(),
        stax.Conv(8, (3, 3), padding="SAME"),
        stax.Relu(),
        stax.GlobalAvgPool(),
        stax.Dense(1),
    )


def test_absent_point_has_zero_kernel_and_leaves_the_others(x64):
    """A point all of whose entries are absent has a zero row and column; every other entry
    equals the kernel computed without that point (points do not interact)."""
    x1, x2 = _inputs()["x1"].copy(), _inputs()["x2"].copy()
    x1[0] = np.random.default_rng(1).standard_normal(x1.shape[1:])  # unmasked copies
    x1[2] = np.random.default_rng(2).standard_normal(x1.shape[1:])
    x1[3] = np.random.default_rng(3).standard_normal(x1.shape[1:])
    x2 = np.random.default_rng(4).standard_normal(x2.shape)
    *_, kf = _net()
    got = kf(x1, x2, ("nngp", "ntk"), mask_constant=C)
    keep = [0, 2, 3]
    want = kf(x1[keep], x2, ("nngp", "ntk"))
    for g, w in zip(got, want):
        assert np.all(np.asarray(g)[1] == 0)
        np.testing.assert_allclose(np.asarray(g)[keep], w, rtol=1e-12)


def test_absent_sites_are_zeroed_inputs_before_pooling(x64):
    """Absent entries are zeros: with 1×1 filters and no biases (each site's output reads
    only that site, and a zero input gives a zero output) the masked kernel equals the kernel
    of the inputs with the absent entries set to 0, entry for entry — including the site
    whose one channel is absent, which stays present."""
    x1, x2 = _inputs()["x1"], _inputs()["x2"]
    layers = [stax.Conv(8, (1, 1), b_std=None), stax.Relu(), stax.Conv(8, (1, 1), b_std=None)]
    *_, kf = stax.serial(*layers, stax.Flatten(), stax.Dense(1, b_std=None))
    got = kf(x1, x2, ("nngp", "ntk"), mask_constant=C)
    z1, z2 = np.where(x1 == C, 0.0, x1), np.where(x2 == C, 0.0, x2)
    want = kf(z1, z2, ("nngp", "ntk"))
    np.testing.assert_allclose(got.nngp, want.nngp, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got.ntk, want.ntk, rtol=1e-12, atol=1e-15)


def test_global_average_is_over_present_sites(x64):
    """GlobalAvgPool after a bias-free Dense of W_std = 1 (which keeps the input kernel and
    marks a site absent when all its channels are): the kernel of the means over present
    sites, Σ_s,s' ⟨x_s, x'_s'⟩/C / (u·u'), by hand. (Right on the inputs, whose mask may
    differ between channels, global pooling refuses masks, as in neural-tangents.)"""
    x1, x2 = _inputs()["x1"], _inputs()["x2"]
    x1[3, 0, 0, 1] = 0.5
    *_, kf = stax.serial(stax.Dense(3, b_std=None), stax.GlobalAvgPool())

    def means(x):
        site_absent = np.all(x == C, axis=-1)
        z = np.where(x == C, 0.0, x)
        u = np.maximum((~site_absent).sum((1, 2)), 1)
        return z.sum((1, 2)) / u[:, None]

    m1, m2 = means(x1), means(x2)
    np.testing.assert_allclose(kf(x1, x2, "nngp", mask_constant=C), m1 @ m2.T / 3, rtol=1e-12)


def test_tiles_and_batches_agree_with_one_call(x64):
    """Tiles mask their own rows and columns: batch() in 2 × 2 tiles equals one call."""
    x1, x2 = _inputs()["x1"], _inputs()["x2"]
    *_, kf = _net()
    want = kf(x1, x2, ("nngp", "ntk"), mask_constant=C)
    got = batch(kf, 2)(x1, x2, ("nngp", "ntk"), mask_constant=C)
    np.testing.assert_allclose(got.nngp, want.nngp, rtol=1e-13)
    np.testing.assert_allclose(got.ntk, want.ntk, rtol=1e-13)
    sym = batch(kf, 2)(x1, None, "ntk", mask_constant=C)
    np.testing.assert_allclose(sym, kf(x1, None, "ntk", mask_constant=C), rtol=1e-13)


def test_nan_constant_and_traced_constant(x64):
    """NaN marks absent entries as well (NaN == NaN is False, so it is matched by isnan);
    the constant may be traced (the user jits kernel_fn with it as an argument)."""
    x1, x2 = _inputs()["x1"], _inputs()["x2"]
    *_, kf = _net()
    want = kf(x1, x2, "ntk", mask_constant=C)
    n1, n2 = np.where(x1 == C, np.nan, x1), np.where(x2 == C, np.nan, x2)
    np.testing.assert_allclose(kf(n1, n2, "ntk", mask_constant=np.nan), want, rtol=1e-14)
    jitted = jax.jit(lambda a, b, c: kf(a, b, "ntk", mask_constant=c))
    np.testing.assert_allclose(jitted(x1, x2, C), want, rtol=1e-14)
    with pytest.raises(ValueError, match="NaN or inf"):  # NaN that is not the constant
        kf(n1, n2, "ntk", mask_constant=C)


def test_apply_returns_masked_array_and_unmask_zeroes():
    x1 = jnp.asarray(_inputs()["x1"], jnp.float32)
    init_fn, apply_fn, _ = _net()
    _, params = init_fn(jax.random.PRNGKey(0), x1.shape)
    out = apply_fn(params, x1, mask_constant=C)
    assert isinstance(out, stax.MaskedArray)
    np.testing.assert_array_equal(np.asarray(out.mask).ravel(), [False, True, False, False])
    y = stax.unmask_fn(apply_fn)(params, x1, mask_constant=C)
    assert float(jnp.abs(y[1]).max()) == 0.0
    np.testing.assert_allclose(y[0], out.masked_value[0])
    plain = apply_fn(params, x1)  # no constant: a plain array, nothing masked
    assert not isinstance(plain, stax.MaskedArray)


@pytest.mark.slow  # 256 networks
def test_monte_carlo_agrees_with_masked_kernel(x64):
    """The kernel is the limit of the finite masked networks: 256 networks of width 256,
    NTK, relative Frobenius error. Monte Carlo error per entry ~ 1/√256 ≈ 6 % of its spread,
    less in Frobenius norm: measured 0.2–0.6 % over seeds 1–3; tolerance 3 %. Reading the
    constant 10 as data instead of masking it moves the kernel by a factor ~70 (measured).
    """
    x1 = _inputs()["x1"][:3, :4, :4]
    x2 = _inputs()["x2"][:, :4, :4]
    layers = [
        stax.Conv(256, (3, 3), padding="SAME"),
        stax.Relu(),
        stax.AvgPool((2, 2), (1, 1), "SAME"),
        stax.Conv(256, (2, 2), padding="SAME"),
        stax.Relu(),
        stax.GlobalAvgPool(),
        stax.Dense(1),
    ]
    init_fn, apply_fn, kf = stax.serial(*layers)
    exact = np.asarray(kf(x1, x2, "ntk", mask_constant=C))
    mc = monte_carlo_kernel_fn(init_fn, stax.unmask_fn(apply_fn), jax.random.PRNGKey(1), 256)
    est = np.asarray(mc(x1, x2, "ntk", mask_constant=C))
    err = np.linalg.norm(est - exact) / np.linalg.norm(exact)
    unmasked = np.asarray(kf(x1, x2, "ntk"))
    assert err < 0.03, err
    assert np.linalg.norm(unmasked - exact) / np.linalg.norm(exact) > 1


def test_unsupported_masks_raise_naming_the_layer():
    x = np.ones((2, 4, 4, 3))
    x[0, 0, 0, 0] = C  # one channel of one site
    *_, kf = stax.serial(stax.GlobalAvgPool(), stax.Dense(1))
    with pytest.raises(NotImplementedError, match=r"GlobalAvgPool.*differs between the channels"):
        kf(x, None, "nngp", mask_constant=C)
    *_, kf = stax.serial(stax.Dense(3), stax.GlobalAvgPool(), stax.Dense(1))  # collapsed first
    assert np.isfinite(kf(x, None, "nngp", mask_constant=C)).all()
    init_fn, apply_fn, _ = stax.MaxPool((2, 2))
    with pytest.raises(NotImplementedError, match="MaxPool.*masked"):
        apply_fn(init_fn(jax.random.PRNGKey(0), x.shape)[1], x, mask_constant=C)
    *_, kf = stax.serial(  # embeddings zeroed channel by channel have no kernel
        stax.GlobalSelfAttention(4, 4, 4, 2, pos_emb_type="SUM"), stax.GlobalAvgPool()
    )
    with pytest.raises(NotImplementedError, match="GlobalSelfAttention.*channels"):
        kf(x, None, "nngp", mask_constant=C)
    with pytest.raises(ValueError, match="contracts the points' axis.*diagonal_batch=False"):
        stax.DotGeneral(rhs=np.ones(2), dimension_numbers=(((0,), (0,)), ((), ())))[2](
            x[:, 0, 0], None, "nngp"
        )
    with pytest.raises(ValueError, match="channel axis"):
        stax.DotGeneral(rhs=np.ones(3), dimension_numbers=(((3,), (0,)), ((), ())))[2](
            x, None, "nngp"
        )


ATTENTION_SCRIPT = """
def run(nt, a):
    stax = nt.stax
    x1, x2, C = a["x1"], a["x2"], 10.0
    nets = {
        "softmax_sum": stax.GlobalSelfAttention(
            8, 4, 4, 2, linear_scaling=True, attention_mechanism="SOFTMAX",
            pos_emb_type="SUM", W_pos_emb_std=0.8),
        "relu_none": stax.GlobalSelfAttention(
            8, 4, 4, 2, linear_scaling=True, attention_mechanism="RELU", b_std=0.1),
        "identity_concat": stax.GlobalSelfAttention(
            8, 4, 4, 2, linear_scaling=False, attention_mechanism="IDENTITY",
            pos_emb_type="CONCAT", val_pos_emb=True),
    }
    out = {}
    for name, attn in nets.items():
        init_fn, apply_fn, kernel_fn = stax.serial(
            stax.Dense(8), attn, stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1))
        _, params = init_fn(jax.random.PRNGKey(0), x1.shape)
        out[name + "_out_mask"] = np.asarray(
            apply_fn(params, x1, mask_constant=C).mask, dtype=np.float64)
        for tag, b in (("cross", x2), ("self", None)):
            k = kernel_fn(x1, b, ("nngp", "ntk"), mask_constant=C)
            out[f"{name}_{tag}_nngp"], out[f"{name}_{tag}_ntk"] = k.nngp, k.ntk
    return out
"""


@pytest.mark.slow  # about 30 s of compilations in each library
def test_masked_attention_agrees_with_neural_tangents(x64, nt_script):
    """Attention over masked sites: absent keys leave the softmax (or give 0 to the
    elementwise mechanisms) and carry no positional embedding; softmax, ReLU and identity
    mechanisms, with summed, concatenated and no embeddings; NNGP and NTK."""
    a = _inputs()
    a = {"x1": a["x1"][:, :3, :4], "x2": a["x2"][:, :3, :4]}
    nt_script(ATTENTION_SCRIPT, a, lambda name: 1e-8 if "_self" in name else 1e-10)


USER_LAYER_SCRIPT = """
def run(nt, a):
    stax = nt.stax
    x1, x2, C = a["x1"], a["x2"], 10.0

    @stax.layer
    @stax.supports_masking(remask_kernel=True)
    def Shift(c):  # y = c·x + 1 at every entry: nonzero at absent sites until re-zeroed
        def init_fn(rng, input_shape):
            return input_shape, ()

        def apply_fn(params, x, **kwargs):
            return c * x + 1.0

        @stax.requires(diagonal_spatial=stax.Diagonal())
        def kernel_fn(k, **kwargs):
            def f(m):
                return None if m is None else c**2 * m + 1.0
            return k.replace(nngp=f(k.nngp), cov1=f(k.cov1), cov2=f(k.cov2),
                             ntk=None if k.ntk is None else c**2 * k.ntk)

        def mask_fn(mask, input_shape):
            return jnp.all(mask, axis=-1, keepdims=True)

        return init_fn, apply_fn, kernel_fn, mask_fn

    init_fn, apply_fn, kernel_fn = stax.serial(
        stax.Conv(8, (3, 3), padding=stax.Padding.SAME), Shift(0.7), stax.Relu(),
        stax.Conv(8, (2, 2), padding=stax.Padding.CIRCULAR),
        stax.GlobalSelfAttention(8, 4, 4, 2, attention_mechanism=stax.AttentionMechanism.SOFTMAX,
                                 pos_emb_type=stax.PositionalEmbedding.SUM),
        stax.GlobalAvgPool(), stax.Dense(1))
    _, params = init_fn(jax.random.PRNGKey(0), x1.shape)
    out = {"out_mask": np.asarray(apply_fn(params, x1, mask_constant=C).mask, np.float64)}
    for tag, b in (("cross", x2), ("self", None)):
        k = kernel_fn(x1, b, ("nngp", "ntk"), mask_constant=C)
        out[f"{tag}_nngp"], out[f"{tag}_ntk"] = k.nngp, k.ntk
    return out
"""


@pytest.mark.slow  # about 20 s of compilations in each library
def test_user_layer_with_masking_and_option_enums_agree_with_neural_tangents(x64, nt_script):
    """A user's layer built with neural-tangents' decorators (layer, supports_masking with a
    mask_fn, requires) inside a masked network, and the option enums (Padding,
    AttentionMechanism, PositionalEmbedding) in place of strings. The layer's output is
    nonzero at absent sites (c·0 + 1), so the kernel agrees only if it is re-zeroed there."""
    a = _inputs()
    a = {"x1": a["x1"][:, :3, :4], "x2": a["x2"][:, :3, :4]}
    nt_script(USER_LAYER_SCRIPT, a, lambda name: 1e-8 if "_self" in name else 1e-10)


def test_requires_and_supports_masking_validate():
    with pytest.raises(TypeError, match="unknown requirements"):
        stax.requires(diagonal_spatal=stax.Diagonal())
    with pytest.raises(TypeError, match="remask_kernel"):
        stax.supports_masking("yes")

    @stax.layer
    def Bad():
        @stax.requires(diagonal_batch=False)
        def kernel_fn(k, **kw):
            return k

        return (lambda rng, s: (s, ())), (lambda p, x, **kw: x), kernel_fn

    with pytest.raises(NotImplementedError, match="diagonal_batch=False"):
        Bad()
    assert stax.Padding.SAME == "SAME" and stax.AggregateImplementation("SPARSE") == "SPARSE"
