"""neural-tangents' call-time switches and requirement API: ``diagonal_spatial``,
``diagonal_batch``, ``get="shape1"``, `Conv` with ``filter_shape=()``, global pooling of
inputs without sites, ``stax.Bool`` / ``stax.Diagonal`` composition, layer names.

One script run by both libraries (`compare_nt_script`), float64, tolerance 1e-7 of the largest
entry (the ReLU NTK's self-pairs with x2 = None differ by up to ~1e-8 relative: neural-tangents
takes arccos of a clipped ratio whose roundoff is ~√ε there; elsewhere the two agree to 1e-15),
then the identities each switch must satisfy, checked without the oracle.
"""

import itertools

import numpy as np
import pytest

from theory.kernels import stax

RTOL = 1e-7

SCRIPT = """
def run(nt, a):
    stax = nt.stax
    out = {}
    x1, x2 = a["s1"], a["s2"]
    for readin_name, readout_name in (("Identity", "Identity"), ("Identity", "Flatten"),
                                      ("GlobalAvgPool", "Identity"), ("Flatten", "GlobalAvgPool")):
        readin, readout = getattr(stax, readin_name)(), getattr(stax, readout_name)()
        f = (2, 3) if readin[0].__name__ == "Identity" else ()
        *_, kernel_fn = stax.serial(
            readin, stax.Conv(3, f, padding="SAME", W_std=1.2, b_std=0.1), stax.Relu(),
            stax.Conv(2, f, padding="SAME"), stax.Erf(), readout,
        )
        key = readin_name + "_" + readout_name
        for same in (0, 1):
            y2 = None if same else x2
            for diag in (None, False) + ((True,) if readin_name == "Identity" else ()):
                if diag and readout_name == "GlobalAvgPool":
                    continue
                k = kernel_fn(x1, y2, diagonal_spatial=diag)
                out[f"{key}_{same}_{diag}_nngp"], out[f"{key}_{same}_{diag}_ntk"] = k.nngp, k.ntk
            k = kernel_fn(x1, y2, diagonal_batch=False)
            out[f"{key}_{same}_full_cov1"] = k.cov1
            if not same:
                out[f"{key}_{same}_full_cov2"] = k.cov2
            out[f"{key}_{same}_shape1"] = np.asarray(kernel_fn(x1, y2, "shape1"))
            out[f"{key}_{same}_shape2"] = np.asarray(kernel_fn(x1, y2, "shape2"))
    return out
"""


def _arrays():
    rng = np.random.default_rng(17)
    return {"s1": rng.standard_normal((2, 4, 3, 2)), "s2": rng.standard_normal((3, 4, 3, 2))}


def _net(readout=()):
    return stax.serial(
        stax.Conv(3, (2, 3), padding="SAME", W_std=1.2, b_std=0.1), stax.Relu(),
        stax.Conv(2, (2, 3), padding="SAME"), stax.Erf(), *readout,
    )  # fmt: skip


@pytest.mark.slow  # 25 s: 30 kernels, a compilation each; the identities below are the default
def test_switches_agree_with_neural_tangents(x64, nt_script):
    nt_script(SCRIPT, _arrays(), RTOL)


def test_diagonal_spatial_is_the_diagonal_of_the_full_covariance(x64):
    """Without a readout the output keeps its sites: the full covariance (n1, n2, H, H', W,
    W') by default; ``diagonal_spatial=True`` gives its diagonal (n1, n2, H, W), computed on
    the diagonal throughout; after Flatten all three modes are one kernel."""
    a = _arrays()
    kf = _net()[2]
    full = kf(a["s1"], a["s2"], ("nngp", "ntk"))
    diag = kf(a["s1"], a["s2"], ("nngp", "ntk"), diagonal_spatial=True)
    assert full.nngp.shape == (2, 3, 4, 4, 3, 3) and diag.nngp.shape == (2, 3, 4, 3)
    for f, d in zip(full, diag):
        np.testing.assert_allclose(d, np.einsum("abiijj->abij", f), rtol=1e-13, atol=1e-15)
    flat = _net([stax.Flatten()])[2]
    want = flat(a["s1"], a["s2"], "ntk")
    for mode in (True, False):
        np.testing.assert_allclose(
            flat(a["s1"], a["s2"], "ntk", diagonal_spatial=mode), want, rtol=1e-13
        )


def test_diagonal_spatial_true_is_refused_where_sites_mix(x64):
    a = _arrays()
    pooled = _net([stax.GlobalAvgPool()])
    with pytest.raises(ValueError, match="diagonal_spatial=True"):
        pooled[2](a["s1"], None, diagonal_spatial=True)
    # a Kernel computed on the diagonal cannot feed a readout that pools
    k = _net()[2](a["s1"], None, diagonal_spatial=True)
    with pytest.raises(ValueError, match="only the spatial diagonal"):
        stax.GlobalAvgPool()[2](k)
    with pytest.raises(TypeError, match="diagonal_spatial"):
        pooled[2](a["s1"], None, diagonal_spatial="yes")


def test_diagonal_batch_false_gives_the_full_per_input_kernels(x64):
    """cov1 is the kernel of x1 with itself (n1, n1, …), whose diagonal is the default cov1;
    likewise cov2; the pairs (nngp, ntk) are unchanged."""
    a = _arrays()
    kf = _net([stax.Flatten()])[2]
    k = kf(a["s1"], a["s2"])
    kb = kf(a["s1"], a["s2"], diagonal_batch=False)
    assert not kb.diagonal_batch and k.diagonal_batch
    np.testing.assert_array_equal(kb.nngp, k.nngp)
    np.testing.assert_allclose(kb.cov1, kf(a["s1"], None, "nngp"), rtol=1e-14)
    np.testing.assert_allclose(kb.cov2, kf(a["s2"], None, "nngp"), rtol=1e-14)
    np.testing.assert_allclose(np.diagonal(kb.cov1), k.cov1, rtol=1e-13)
    np.testing.assert_allclose(np.diagonal(kb.cov2), k.cov2, rtol=1e-13)
    assert kf(a["s1"], None, diagonal_batch=False).cov2 is None


def test_shapes_are_the_finite_networks_output_shapes(x64):
    """``get="shape1"`` is the shape of the finite network's output on x1."""
    import jax

    a = _arrays()
    for layers in ([stax.GlobalAvgPool(), stax.Dense(5)],):
        init_fn, apply_fn, kf = _net(layers)
        _, params = init_fn(jax.random.PRNGKey(0), a["s1"].shape)
        assert kf(a["s1"], a["s2"], "shape1") == apply_fn(params, a["s1"]).shape
        assert kf(a["s1"], a["s2"], "shape2") == apply_fn(params, a["s2"]).shape


def test_replacing_shapes_sets_width_and_sites():
    """neural-tangents' ``Kernel.replace(shape1=..., shape2=...)`` (its tests relabel a
    flattened kernel as the FC one): here the shapes are derived, so they set ``width`` and
    ``spatial``; shapes that disagree with the kernel's points or with each other raise."""
    x = np.random.default_rng(0).standard_normal((3, 4, 2, 2))
    k = stax.serial(stax.Dense(8), stax.Relu(), stax.Flatten())[2](x, x[:2])
    assert k.shape1 == (3, 8 * 8) and k.shape2 == (2, 64)
    r = k.replace(is_gaussian=True, shape1=(3, 512), shape2=(2, 512))
    assert (r.width, r.spatial, r.shape1, r.shape2, r.is_gaussian) == (
        512,
        (),
        (3, 512),
        (2, 512),
        True,
    )
    np.testing.assert_array_equal(r.nngp, k.nngp)
    with pytest.raises(ValueError, match="3 points"):
        k.replace(shape1=(4, 512))
    with pytest.raises(ValueError, match="share their non-point axes"):
        k.replace(shape1=(3, 512), shape2=(2, 256))


def test_conv_without_sites_is_dense_and_global_pooling_of_no_sites_is_identity(x64):
    a = _arrays()
    x = a["s1"].reshape(2, -1)
    dense = stax.serial(stax.Dense(3, 1.2, 0.1), stax.Relu(), stax.Dense(1))[2]
    conv = stax.serial(stax.Conv(3, (), W_std=1.2, b_std=0.1), stax.Relu(), stax.Conv(1, ()))[2]
    np.testing.assert_array_equal(conv(x, None, "ntk"), dense(x, None, "ntk"))
    pooled = stax.serial(stax.Dense(3, 1.2, 0.1), stax.Relu(), stax.Dense(1), stax.GlobalAvgPool())
    np.testing.assert_array_equal(pooled[2](x, None, "ntk"), dense(x, None, "ntk"))
    with pytest.raises(ValueError, match="filter_shape=()"):
        stax.Conv(3, (), strides=(2,))


def test_diagonal_requirements_compose_associatively():
    """``>>`` is associative over all 3⁶ triples of requirements and ``c << b`` is ``b >> c``."""
    for ia, oa, ib, ob, ic, oc in itertools.product(stax.Bool, repeat=6):
        a, b, c = stax.Diagonal(ia, oa), stax.Diagonal(ib, ob), stax.Diagonal(ic, oc)
        assert (a >> b) >> c == a >> (b >> c) == c << (b << a) == (c << b) << a
    assert stax.Diagonal(stax.Bool.YES, stax.Bool.YES)
    with pytest.raises(ValueError, match="input"):
        stax.Diagonal(3, 0)


def test_layers_init_fn_carries_the_layer_name():
    assert stax.Identity()[0].__name__ == "Identity"
    assert stax.Dense(3)[0].__name__ == "Dense"
    assert stax.serial(stax.Dense(3), stax.Relu())[0].__name__ == "serial"


def test_kernels_are_differentiable_in_their_inputs(x64):
    """Reverse mode through pooling and convolution (their window sums) equals forward mode
    and central differences (h = 1e-6, float64: error O(h²) plus roundoff ~1e-10 relative)."""
    import jax

    rng = np.random.default_rng(3)
    x1 = rng.standard_normal((1, 5, 4, 2))
    x2 = rng.standard_normal((1, 5, 4, 2))
    *_, kf = stax.serial(
        stax.Conv(2, (3, 3), padding="SAME"), stax.Relu(), stax.AvgPool((2, 2)), stax.Flatten()
    )
    f = jax.jit(lambda a: kf(a, x2, "ntk")[0, 0])
    g = np.asarray(jax.grad(f)(x1))
    g_fwd = np.asarray(jax.jacfwd(f)(x1))
    np.testing.assert_allclose(g, g_fwd, rtol=1e-10, atol=1e-12)
    e = np.zeros_like(x1)
    for idx in [(0, 0, 0, 0), (0, 2, 1, 1), (0, 4, 3, 0)]:
        e[idx] = 1e-6
        fd = (float(f(x1 + e)) - float(f(x1 - e))) / 2e-6
        e[idx] = 0
        assert abs(fd - g[idx]) <= 1e-6 * max(1.0, abs(g[idx])), (idx, fd, g[idx])
